/* "mamba2": the Mamba-2 (SSD) mixer, as in the reference kernels and llama.cpp.
 *
 *   [z, xBC, dt] = in_proj(u)                 d_inner, d_inner + 2*n_group*d_state, n_head
 *   xBC = silu(causal_conv1d(xBC) + bias)     -> x (d_inner = n_head*head_dim), B, C (n_group*d_state each)
 *   dt[h] = softplus(dt[h] + dt_bias[h]);  head h reads group g = h / (n_head / n_group)
 *   S[h][p] = exp(dt[h] A[h]) S[h][p] + dt[h] x[h][p] B[g]       S[h][p]: d_state
 *   y[h][p] = C[g] . S[h][p] + D[h] x[h][p]
 *   y = rmsnorm_per_group(y * silu(z)) * norm_weight;  out = out_proj(y)
 *
 * The normalisation is taken over each group's d_inner/n_group channels (the reference
 * RMSNormGated with group_size), which is not the same as over all of d_inner when n_group > 1.
 *
 * State per copy: the conv tail [conv_dim][d_conv-1], then S [n_head][head_dim][d_state].
 * A is used as stored (already -exp(A_log)).  The scan runs token by token inside a chunk: the
 * decay is one scalar per (token, head), so this costs the same multiply-adds as one pass of the
 * chunked SSD form, and prefill agrees with decode by construction. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/kernels.h"
#include "plugins/ssm/ssm.h"

#define CHAN_BLOCK 64u  /* conv channels per task */
#define NORM_ROWS 16u   /* rows per gated-norm task */

struct m2_layer {
	struct hyd_mixer_hparams hp;
	const struct hyd_plugin_support *sup;
	const struct hyd_tensor *w_in;   /* {n_embd, d_in_proj} */
	const struct hyd_tensor *w_out;  /* {d_inner, n_embd} */
	const float *conv_w;             /* [conv_dim][d_conv] */
	const float *conv_b;             /* [conv_dim] or NULL */
	const float *dt_b, *a, *d;       /* [n_head] each */
	const float *norm_w;             /* [d_inner] (GGUF {d_inner/n_group, n_group}) */
	uint32_t d_inner, d_state, d_conv, n_head, n_group, head_dim;
	uint32_t conv_dim, d_in_proj;
	uint64_t tail_floats;            /* conv_dim * (d_conv - 1) */
	uint64_t copy_floats;
};

static int m2_bind(const struct hyd_layer_desc *desc, const struct hyd_plugin_support *sup, void **ret_layer)
{
	const struct hyd_mixer_hparams *hp = desc ? desc->hp : NULL;
	if (!hp || hp->struct_size < sizeof(*hp) || !desc->tensor)
		return -EINVAL;
	const uint32_t di = hp->ssm_d_inner, nh = hp->ssm_dt_rank, ng = hp->ssm_n_group;
	if (hp->n_embd == 0 || di == 0 || hp->ssm_d_state == 0 || nh == 0 || ng == 0 || di % nh || nh % ng ||
	    hp->ssm_d_conv == 0 || hp->ssm_d_conv > HYD_SSM_MAX_CONV) {
		hyd__ssm_log(sup, HYD_LOG_ERROR,
			     "layer %u: bad mamba2 hyper-parameters (n_embd %u, d_inner %u, d_state %u, heads %u, groups %u, d_conv %u)",
			     hp->layer, hp->n_embd, di, hp->ssm_d_state, nh, ng, hp->ssm_d_conv);
		return -EINVAL;
	}
	struct m2_layer *L = hyd_calloc(1, sizeof(*L));
	if (!L)
		return -ENOMEM;
	L->hp = *hp;
	L->sup = sup;
	L->d_inner = di;
	L->d_state = hp->ssm_d_state;
	L->d_conv = hp->ssm_d_conv;
	L->n_head = nh;
	L->n_group = ng;
	L->head_dim = di / nh;
	L->conv_dim = di + 2 * ng * L->d_state;
	L->d_in_proj = di + L->conv_dim + nh;
	int r;
	if ((r = hyd__ssm_matrix(desc, sup, "ssm_in.weight", hp->n_embd, L->d_in_proj, &L->w_in)) ||
	    (r = hyd__ssm_matrix(desc, sup, "ssm_out.weight", di, hp->n_embd, &L->w_out)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_conv1d.weight", L->d_conv, L->conv_dim, true, &L->conv_w)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_conv1d.bias", L->conv_dim, 1, false, &L->conv_b)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_dt.bias", nh, 1, true, &L->dt_b)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_a", 1, nh, true, &L->a)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_d", 1, nh, true, &L->d)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_norm.weight", di / ng, ng, true, &L->norm_w))) {
		hyd_free(L);
		return r;
	}
	L->tail_floats = (uint64_t)L->conv_dim * (L->d_conv - 1);
	L->copy_floats = (L->tail_floats + (uint64_t)di * L->d_state + 15) & ~(uint64_t)15;
	*ret_layer = L;
	return 0;
}

static void m2_unbind(void *layer)
{
	hyd_free(layer);
}

static int m2_state_layout(const void *layer, const struct hyd_state_limits *lim, struct hyd_state_layout *ret)
{
	const struct m2_layer *L = layer;
	if (!L || !ret)
		return -EINVAL;
	*ret = (struct hyd_state_layout){
		.fixed_bytes = 2 * L->copy_floats * sizeof(float),
		.flags = HYD_STATE_DOUBLE_BUFFERED,
	};
	return 0;
}

/* Scratch: zxbcdt [rows][d_in_proj], xbc after conv [rows][conv_dim], y [rows][d_inner]. */
static uint64_t scratch_floats(const struct m2_layer *L, uint64_t rows)
{
	return rows * ((uint64_t)L->d_in_proj + L->conv_dim + L->d_inner);
}

static uint64_t m2_scratch_size(const void *layer, const struct hyd_state_limits *lim, uint32_t max_rows,
				uint32_t n_threads)
{
	return scratch_floats(layer, max_rows) * sizeof(float) + 64;
}

static void m2_state_init(const void *layer, void *state, const struct hyd_state_limits *lim)
{
	const struct m2_layer *L = layer;
	memset(state, 0, 2 * L->copy_floats * sizeof(float));
}

struct m2_job {
	const struct m2_layer *L;
	const struct hyd_mixer_batch *b;
	float *zx, *xbc, *y;
	uint32_t n_blocks; /* conv channel blocks per session */
	uint32_t n_rows;
};

static float *state_copy(const struct m2_layer *L, const struct hyd_mixer_seq *s, uint32_t which)
{
	return (float *)s->state + (uint64_t)which * L->copy_floats;
}

/* One channel block of one session: task = session * n_blocks + block. */
static void m2_conv_task(void *arg, uint32_t task, uint32_t thread)
{
	const struct m2_job *j = arg;
	const struct m2_layer *L = j->L;
	const struct hyd_mixer_seq *s = &j->b->seqs[task / j->n_blocks];
	const uint32_t c0 = (task % j->n_blocks) * CHAN_BLOCK;
	const uint32_t c1 = c0 + CHAN_BLOCK < L->conv_dim ? c0 + CHAN_BLOCK : L->conv_dim;
	hyd__ssm_conv(j->zx + (uint64_t)s->row0 * L->d_in_proj + L->d_inner, L->d_in_proj,
		      j->xbc + (uint64_t)s->row0 * L->conv_dim, L->conv_dim, s->n_rows, L->conv_w, L->conv_b,
		      L->d_conv, state_copy(L, s, s->state_index), state_copy(L, s, hyd__ssm_write_copy(s)), c0, c1);
}

/* One task = one (session, head). */
static void m2_scan_task(void *arg, uint32_t task, uint32_t thread)
{
	const struct m2_job *j = arg;
	const struct m2_layer *L = j->L;
	const struct hyd_mixer_seq *s = &j->b->seqs[task / L->n_head];
	const uint32_t h = task % L->n_head, g = h / (L->n_head / L->n_group);
	const uint32_t hd = L->head_dim, ds = L->d_state;
	const uint64_t hs = (uint64_t)hd * ds;
	const struct hyd__ssm_kern *K = hyd__ssm_kern();
	float *S = state_copy(L, s, hyd__ssm_write_copy(s)) + L->tail_floats + h * hs;
	/* the first token reads the committed copy, the others what the step wrote */
	const float *S_in = state_copy(L, s, s->state_index) + L->tail_floats + h * hs;
	if (s->n_rows == 0 && S != S_in)
		memcpy(S, S_in, hs * sizeof(float));
	const float a = L->a[h], dd = L->d[h], dtb = L->dt_b[h];
	const bool streams = hyd__ssm_streams(s, L->copy_floats);
	for (uint32_t t = 0; t < s->n_rows; t++) {
		const uint64_t row = s->row0 + t;
		const float *xr = j->xbc + row * L->conv_dim;
		const float *x = xr + (uint64_t)h * hd;
		const float *B = xr + L->d_inner + (uint64_t)g * ds;
		const float *C = xr + L->d_inner + (uint64_t)L->n_group * ds + (uint64_t)g * ds;
		const float dt = hyd_softplus(j->zx[row * L->d_in_proj + L->d_inner + L->conv_dim + h] + dtb);
		const float da = expf(dt * a);
		float *y = j->y + row * L->d_inner + (uint64_t)h * hd;
		/* the last token's state is next read a whole model step later */
		const bool stream = streams && t + 1 == s->n_rows;
		for (uint32_t p = 0; p < hd; p++)
			y[p] = K->decay_dot(S + (uint64_t)p * ds, S_in + (uint64_t)p * ds, da, x[p] * dt, B, C, ds,
					    stream) +
			       dd * x[p];
		S_in = S;
	}
	if (streams)
		K->stream_fence();
}

/* y = rmsnorm_per_group(y * silu(z)) * w over NORM_ROWS rows. */
static void m2_norm_task(void *arg, uint32_t task, uint32_t thread)
{
	const struct m2_job *j = arg;
	const struct m2_layer *L = j->L;
	const uint32_t gs = L->d_inner / L->n_group;
	const uint32_t r0 = task * NORM_ROWS, r1 = r0 + NORM_ROWS < j->n_rows ? r0 + NORM_ROWS : j->n_rows;
	for (uint32_t row = r0; row < r1; row++) {
		float *y = j->y + (uint64_t)row * L->d_inner;
		const float *z = j->zx + (uint64_t)row * L->d_in_proj;
		hyd__ssm_kern()->silu_mul(y, z, L->d_inner);
		for (uint32_t g = 0; g < L->n_group; g++)
			hyd_rmsnorm(y + (uint64_t)g * gs, y + (uint64_t)g * gs, L->norm_w + (uint64_t)g * gs, gs,
				    L->hp.norm_eps);
	}
}

static int m2_forward(const void *layer, const struct hyd_mixer_batch *b)
{
	const struct m2_layer *L = layer;
	int r = hyd__ssm_check_batch(b);
	if (r)
		return r;
	const uint32_t n = b->n_rows;
	if (n == 0)
		return 0;
	if (scratch_floats(L, n) * sizeof(float) > b->scratch_bytes || !b->scratch)
		return -ENOBUFS;
	struct m2_job j = {
		.L = L, .b = b, .n_blocks = (L->conv_dim + CHAN_BLOCK - 1) / CHAN_BLOCK, .n_rows = n,
	};
	j.zx = b->scratch;
	j.xbc = j.zx + (uint64_t)n * L->d_in_proj;
	j.y = j.xbc + (uint64_t)n * L->conv_dim;
	if ((r = hyd__ssm_matmul(b, L->w_in, b->x, L->hp.n_embd, j.zx, L->d_in_proj)))
		return r;
	/* work as Mamba-1's conv counts it (a SiLU ~20 multiply-adds): a decode step's 1,792
	 * channels (granite-4.0-h-350m) then go to both threads, 0.6-0.7 % faster two-thread
	 * decode than on the caller's alone (alternate tokens of one process, docs/PERFORMANCE.md) */
	hyd__ssm_run_units(b, j.n_blocks, m2_conv_task, &j, (uint64_t)n * L->conv_dim * (L->d_conv + 20));
	hyd__ssm_run_units(b, L->n_head, m2_scan_task, &j, (uint64_t)n * L->d_inner * L->d_state * 3);
	hyd__ssm_run(b->par, (n + NORM_ROWS - 1) / NORM_ROWS, m2_norm_task, &j, (uint64_t)n * L->d_inner * 4);
	return hyd__ssm_matmul(b, L->w_out, j.y, L->d_inner, b->y, L->hp.n_embd);
}

const struct hyd_mixer_factory hyd__mamba2_factory = {
	.abi_version = HYD_PLUGIN_ABI_VERSION,
	.struct_size = sizeof(struct hyd_mixer_factory),
	.kind = "mamba2",
	.description = "Mamba-2 (SSD) state space with grouped B/C and gated grouped RMSNorm, fixed-size state",
	.bind = m2_bind,
	.unbind = m2_unbind,
	.state_layout = m2_state_layout,
	.scratch_size = m2_scratch_size,
	.state_init = m2_state_init,
	.forward = m2_forward,
};
