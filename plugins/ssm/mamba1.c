/* "mamba1": the Mamba-1 selective scan (Gu & Dao), including Jamba's RMSNorms of dt, B and C.
 *
 *   [x, z] = in_proj(u)                       x, z: d_inner
 *   x = silu(causal_conv1d(x) + conv_bias)    depthwise, kernel d_conv
 *   [dt, B, C] = x_proj(x)                    dt_rank, d_state, d_state (optionally RMSNormed)
 *   dt = softplus(dt_proj(dt) + dt_bias)      d_inner
 *   h[c] = exp(dt[c] A[c]) * h[c] + dt[c] x[c] B    per channel c, h[c]: d_state
 *   y[c] = C . h[c] + D[c] x[c];  y *= silu(z);  out = out_proj(y)
 *
 * State per copy: the conv tail [d_inner][d_conv-1], then h [d_inner][d_state].  A is used as the
 * GGUF stores it (already -exp(A_log)).  Prefill and decode run the same per-token recurrence, so
 * they agree by construction; the matmuls batch all rows of all sessions. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/kernels.h"
#include "plugins/ssm/ssm.h"

/* Channels per conv/scan task.  192 (mamba-130m's 1536 channels in 8 tasks) rather than 32
 * (48 tasks): alternating the two on every other decoded token, two threads, 192 was 1-4.5 %
 * faster than 96 and 96 2-3.7 % faster than 32 (fewer claims of the shared task counter and
 * fewer per-task kernel calls); 384 measured the same as 192, one thread the same for all.
 * (Decode on several threads now takes the blocks in one run per thread, see
 * hyd__ssm_run_units; the blocks still size prefill's tasks.) */
#define CHAN_BLOCK 192u

struct m1_layer {
	struct hyd_mixer_hparams hp;
	const struct hyd_plugin_support *sup;
	const struct hyd_tensor *w_in;   /* {n_embd, 2*d_inner}: x rows then z rows */
	const struct hyd_tensor *w_x;    /* {d_inner, dt_rank + 2*d_state} */
	const struct hyd_tensor *w_dt;   /* {dt_rank, d_inner} */
	const struct hyd_tensor *w_out;  /* {d_inner, n_embd} */
	const float *conv_w;             /* [d_inner][d_conv] */
	const float *conv_b;             /* [d_inner] or NULL */
	const float *dt_b;               /* [d_inner] */
	const float *a;                  /* [d_inner][d_state] */
	const float *d;                  /* [d_inner] */
	const float *dt_norm, *b_norm, *c_norm; /* Jamba: [dt_rank], [d_state], [d_state] or NULL */
	uint32_t d_inner, d_state, d_conv, dt_rank, n_x;
	uint64_t tail_floats;            /* d_inner * (d_conv - 1) */
	uint64_t copy_floats;            /* one copy of the state, rounded up to 64 bytes */
};

static int m1_bind(const struct hyd_layer_desc *desc, const struct hyd_plugin_support *sup, void **ret_layer)
{
	const struct hyd_mixer_hparams *hp = desc ? desc->hp : NULL;
	if (!hp || hp->struct_size < sizeof(*hp) || !desc->tensor)
		return -EINVAL;
	if (hp->n_embd == 0 || hp->ssm_d_inner == 0 || hp->ssm_d_state == 0 || hp->ssm_dt_rank == 0 ||
	    hp->ssm_d_conv == 0 || hp->ssm_d_conv > HYD_SSM_MAX_CONV) {
		hyd__ssm_log(sup, HYD_LOG_ERROR,
			     "layer %u: bad mamba1 hyper-parameters (n_embd %u, d_inner %u, d_state %u, dt_rank %u, d_conv %u)",
			     hp->layer, hp->n_embd, hp->ssm_d_inner, hp->ssm_d_state, hp->ssm_dt_rank, hp->ssm_d_conv);
		return -EINVAL;
	}
	struct m1_layer *L = hyd_calloc(1, sizeof(*L));
	if (!L)
		return -ENOMEM;
	L->hp = *hp;
	L->sup = sup;
	L->d_inner = hp->ssm_d_inner;
	L->d_state = hp->ssm_d_state;
	L->d_conv = hp->ssm_d_conv;
	L->dt_rank = hp->ssm_dt_rank;
	L->n_x = L->dt_rank + 2 * L->d_state;
	const int64_t di = L->d_inner, ds = L->d_state;
	int r;
	if ((r = hyd__ssm_matrix(desc, sup, "ssm_in.weight", hp->n_embd, 2 * di, &L->w_in)) ||
	    (r = hyd__ssm_matrix(desc, sup, "ssm_x.weight", di, L->n_x, &L->w_x)) ||
	    (r = hyd__ssm_matrix(desc, sup, "ssm_dt.weight", L->dt_rank, di, &L->w_dt)) ||
	    (r = hyd__ssm_matrix(desc, sup, "ssm_out.weight", di, hp->n_embd, &L->w_out)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_conv1d.weight", L->d_conv, di, true, &L->conv_w)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_conv1d.bias", di, 1, false, &L->conv_b)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_dt.bias", di, 1, true, &L->dt_b)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_a", ds, di, true, &L->a)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_d", di, 1, true, &L->d)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_dt_norm.weight", L->dt_rank, 1, false, &L->dt_norm)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_b_norm.weight", ds, 1, false, &L->b_norm)) ||
	    (r = hyd__ssm_f32(desc, sup, "ssm_c_norm.weight", ds, 1, false, &L->c_norm))) {
		hyd_free(L);
		return r;
	}
	/* A = -exp(A_log) is never positive; the vectorised update relies on it (dt A <= 0, see
	 * EXP2_PS in ssm_kern.c), and a positive or NaN A would make the state grow without bound */
	for (uint64_t i = 0; i < (uint64_t)di * ds; i++)
		if (!(L->a[i] <= 0.0f)) {
			hyd__ssm_log(sup, HYD_LOG_ERROR,
				     "blk.%u.ssm_a: element %llu (channel %llu, state %llu) is %g, but Mamba's A = -exp(A_log) "
				     "is never positive: the file is damaged or not a Mamba model",
				     hp->layer, (unsigned long long)i, (unsigned long long)(i / ds),
				     (unsigned long long)(i % ds), (double)L->a[i]);
			hyd_free(L);
			return -EINVAL;
		}
	L->tail_floats = (uint64_t)di * (L->d_conv - 1);
	L->copy_floats = (L->tail_floats + (uint64_t)di * ds + 15) & ~(uint64_t)15;
	*ret_layer = L;
	return 0;
}

static void m1_unbind(void *layer)
{
	hyd_free(layer);
}

static int m1_state_layout(const void *layer, const struct hyd_state_limits *lim, struct hyd_state_layout *ret)
{
	const struct m1_layer *L = layer;
	if (!L || !ret)
		return -EINVAL;
	*ret = (struct hyd_state_layout){
		.fixed_bytes = 2 * L->copy_floats * sizeof(float),
		.flags = HYD_STATE_DOUBLE_BUFFERED,
	};
	return 0;
}

/* Scratch: xz [rows][2*d_inner], xc [rows][d_inner], dbc [rows][n_x], dt/y [rows][d_inner]. */
static uint64_t scratch_floats(const struct m1_layer *L, uint64_t rows)
{
	return rows * (4ull * L->d_inner + L->n_x);
}

static uint64_t m1_scratch_size(const void *layer, const struct hyd_state_limits *lim, uint32_t max_rows,
				uint32_t n_threads)
{
	return scratch_floats(layer, max_rows) * sizeof(float) + 64;
}

static void m1_state_init(const void *layer, void *state, const struct hyd_state_limits *lim)
{
	const struct m1_layer *L = layer;
	memset(state, 0, 2 * L->copy_floats * sizeof(float));
}

struct m1_job {
	const struct m1_layer *L;
	const struct hyd_mixer_batch *b;
	float *xz, *xc, *dbc, *dt;
	uint32_t n_blocks; /* channel blocks per session */
};

static float *state_copy(const struct m1_layer *L, const struct hyd_mixer_seq *s, uint32_t which)
{
	return (float *)s->state + (uint64_t)which * L->copy_floats;
}

/* One channel block of one session: task = session * n_blocks + block. */
static void m1_conv_task(void *arg, uint32_t task, uint32_t thread)
{
	const struct m1_job *j = arg;
	const struct m1_layer *L = j->L;
	const struct hyd_mixer_seq *s = &j->b->seqs[task / j->n_blocks];
	const uint32_t c0 = (task % j->n_blocks) * CHAN_BLOCK;
	const uint32_t c1 = c0 + CHAN_BLOCK < L->d_inner ? c0 + CHAN_BLOCK : L->d_inner;
	const float *src = state_copy(L, s, s->state_index);
	float *dst = state_copy(L, s, hyd__ssm_write_copy(s));
	hyd__ssm_conv(j->xz + (uint64_t)s->row0 * 2 * L->d_inner, 2 * L->d_inner,
		      j->xc + (uint64_t)s->row0 * L->d_inner, L->d_inner, s->n_rows, L->conv_w, L->conv_b,
		      L->d_conv, src, dst, c0, c1);
}

static void m1_scan_task(void *arg, uint32_t task, uint32_t thread)
{
	const struct m1_job *j = arg;
	const struct m1_layer *L = j->L;
	const struct hyd__ssm_kern *K = hyd__ssm_kern();
	const struct hyd_mixer_seq *s = &j->b->seqs[task / j->n_blocks];
	const uint32_t c0 = (task % j->n_blocks) * CHAN_BLOCK;
	const uint32_t c1 = c0 + CHAN_BLOCK < L->d_inner ? c0 + CHAN_BLOCK : L->d_inner, nc = c1 - c0;
	const uint32_t di = L->d_inner, ds = L->d_state;
	const float *src = state_copy(L, s, s->state_index) + L->tail_floats + (uint64_t)c0 * ds;
	float *dst = state_copy(L, s, hyd__ssm_write_copy(s)) + L->tail_floats + (uint64_t)c0 * ds;
	const float *a = L->a + (uint64_t)c0 * ds;
	float dt[CHAN_BLOCK], gate[CHAN_BLOCK], y[CHAN_BLOCK];
	const bool streams = hyd__ssm_streams(s, L->copy_floats);
	if (s->n_rows == 0 && dst != src)
		memcpy(dst, src, (uint64_t)nc * ds * sizeof(float));
	for (uint32_t t = 0; t < s->n_rows; t++) {
		const uint64_t row = s->row0 + t;
		const float *bc = j->dbc + row * L->n_x + L->dt_rank;
		const float *x = j->xc + row * di + c0;
		/* dt[row] is consumed here: the gated output takes its place */
		float *dt_y = j->dt + row * di + c0;
		K->softplus(dt, dt_y, L->dt_b + c0, nc);
		K->silu(gate, j->xz + row * 2 * di + di + c0, nc);
		/* the first token reads the committed copy, the others what the step wrote */
		K->update_dot(dst, t ? dst : src, a, dt, x, bc, bc + ds, nc, ds, y, streams && t + 1 == s->n_rows);
		for (uint32_t c = 0; c < nc; c++)
			dt_y[c] = (y[c] + L->d[c0 + c] * x[c]) * gate[c];
	}
	if (streams)
		K->stream_fence();
}

static int m1_forward(const void *layer, const struct hyd_mixer_batch *b)
{
	const struct m1_layer *L = layer;
	int r = hyd__ssm_check_batch(b);
	if (r)
		return r;
	const uint32_t n = b->n_rows, di = L->d_inner;
	if (n == 0)
		return 0;
	if (scratch_floats(L, n) * sizeof(float) > b->scratch_bytes || !b->scratch)
		return -ENOBUFS;
	struct m1_job j = { .L = L, .b = b, .n_blocks = (di + CHAN_BLOCK - 1) / CHAN_BLOCK };
	j.xz = b->scratch;
	j.xc = j.xz + (uint64_t)n * 2 * di;
	j.dbc = j.xc + (uint64_t)n * di;
	j.dt = j.dbc + (uint64_t)n * L->n_x;
	if ((r = hyd__ssm_matmul(b, L->w_in, b->x, L->hp.n_embd, j.xz, 2 * di)))
		return r;
	/* work in multiply-add equivalents: a SiLU (an exp and a division) counts as ~20 */
	hyd__ssm_run_units(b, j.n_blocks, m1_conv_task, &j, (uint64_t)n * di * (L->d_conv + 20));
	if ((r = hyd__ssm_matmul(b, L->w_x, j.xc, di, j.dbc, L->n_x)))
		return r;
	if (L->dt_norm || L->b_norm || L->c_norm) {
		const float eps = L->hp.norm_eps;
		for (uint32_t row = 0; row < n; row++) {
			float *dt = j.dbc + (uint64_t)row * L->n_x, *bv = dt + L->dt_rank, *cv = bv + L->d_state;
			if (L->dt_norm)
				hyd_rmsnorm(dt, dt, L->dt_norm, L->dt_rank, eps);
			if (L->b_norm)
				hyd_rmsnorm(bv, bv, L->b_norm, L->d_state, eps);
			if (L->c_norm)
				hyd_rmsnorm(cv, cv, L->c_norm, L->d_state, eps);
		}
	}
	if ((r = hyd__ssm_matmul(b, L->w_dt, j.dbc, L->n_x, j.dt, di)))
		return r;
	/* an exp and 3 multiply-adds per state element, a softplus and a SiLU per channel */
	hyd__ssm_run_units(b, j.n_blocks, m1_scan_task, &j, (uint64_t)n * di * (L->d_state * 11 + 60));
	return hyd__ssm_matmul(b, L->w_out, j.dt, di, b->y, L->hp.n_embd);
}

const struct hyd_mixer_factory hyd__mamba1_factory = {
	.abi_version = HYD_PLUGIN_ABI_VERSION,
	.struct_size = sizeof(struct hyd_mixer_factory),
	.kind = "mamba1",
	.description = "Mamba-1 selective state space (optional dt/B/C RMSNorm for Jamba), fixed-size state",
	.bind = m1_bind,
	.unbind = m1_unbind,
	.state_layout = m1_state_layout,
	.scratch_size = m1_scratch_size,
	.state_init = m1_state_init,
	.forward = m1_forward,
};
