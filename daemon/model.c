/* The block runner: evaluates a model plan (daemon/arch.h) over a batch of sessions, calling
 * the mixer plugins for the layers that hold per-session state and doing the norms, FFNs,
 * residuals, embeddings and output head here. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon/arch.h"
#include "daemon/gguf.h"
#include "daemon/model.h"
#include "daemon/plugin_loader.h"
#include "daemon/tokenizer.h"
#include "engine/alloc.h"
#include "engine/kernels.h"
#include "engine/pool.h"
#include "engine/types.h"

struct layer_rt {
	const struct hyd_mixer_factory *f;
	void *layer;
	struct hyd_state_layout layout;
	struct hyd_layer_desc desc;
	const struct hyd_model *m;
};

struct hyd_model {
	struct hyd_gguf *g;
	struct hyd_tokenizer *tok;
	struct hyd_model_plan plan;
	struct hyd_plugin_set *plugins;
	struct hyd_pool *pool;
	struct hyd_plugin_support sup;
	struct hyd_state_limits lim;
	struct layer_rt *layers;
	uint8_t fp[32];
	bool verbose;
	/* work buffers, grown to the largest batch seen */
	uint32_t cap_rows;
	float *x, *xn, *y, *fa, *fb;
	uint8_t *alone; /* per row: alone in its session's step (see hyd_matmul_rows) */
	uint8_t *ones;  /* all rows alone */
	float *router, *moe_out; /* MoE: router probabilities [rows][n_expert], one expert's output */
	uint32_t max_expert;
	void *scratch;
	uint64_t scratch_bytes;
	struct hyd_mixer_seq *mseqs;
	uint32_t cap_seqs;
	uint32_t max_ff;
};

static void log_stderr(void *ctx, enum hyd_log_level level, const char *fmt, va_list ap)
{
	const struct hyd_model *m = ctx;
	if (level >= HYD_LOG_INFO && !(m && m->verbose))
		return;
	static const char *names[] = { "error", "warning", "info", "debug" };
	fprintf(stderr, "hyd: %s: ", names[level <= HYD_LOG_DEBUG ? level : HYD_LOG_DEBUG]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static const struct hyd_tensor *desc_tensor(const struct hyd_layer_desc *d, const char *suffix)
{
	const struct layer_rt *rt = d->ctx;
	char name[256];
	snprintf(name, sizeof(name), "blk.%u.%s", d->hp->layer, suffix);
	return hyd_gguf_find_tensor(rt->m->g, name);
}

/* FNV-1a over what identifies a model: metadata keys, tensor records and samples of the data.
 * Identity, not security: session files are private to the daemon's user. */
static void fingerprint(struct hyd_model *m)
{
	uint64_t h[4] = { 0xcbf29ce484222325ull, 0x84222325cbf29ce4ull, 0x9e3779b97f4a7c15ull, 0x7f4a7c159e3779b9ull };
#define MIX(ptr, len)                                                   \
	do {                                                            \
		const unsigned char *p_ = (const unsigned char *)(ptr);  \
		for (size_t i_ = 0; i_ < (size_t)(len); i_++)           \
			for (int k_ = 0; k_ < 4; k_++)                   \
				h[k_] = (h[k_] ^ (p_[i_] + k_)) * 0x100000001b3ull; \
	} while (0)
	uint64_t size = hyd_gguf_file_size(m->g), n = hyd_gguf_n_tensors(m->g), nkv = hyd_gguf_n_kv(m->g);
	MIX(&size, 8);
	for (uint64_t i = 0; i < nkv; i++) {
		struct hyd_str k;
		if (!hyd_gguf_kv_key(m->g, i, &k))
			MIX(k.p, k.n);
	}
	for (uint64_t i = 0; i < n; i++) {
		const struct hyd_tensor *t = hyd_gguf_tensor(m->g, i);
		MIX(t->name, strlen(t->name));
		MIX(&t->type, 4);
		MIX(t->ne, sizeof(t->ne));
		MIX(t->data, t->nbytes < 64 ? t->nbytes : 64);
		if (t->nbytes > 64)
			MIX((const char *)t->data + t->nbytes - 64, 64);
	}
#undef MIX
	memcpy(m->fp, h, 32);
}

static int print_plan(const struct hyd_model *m)
{
	fprintf(stderr, "hyd: model %s: arch %s, %u layers, width %u, vocab %u, context %u tokens/session\n",
		hyd_gguf_path(m->g), m->plan.arch, m->plan.n_layer, m->plan.n_embd, m->plan.n_vocab, m->lim.max_ctx);
	uint64_t total = 0;
	for (uint32_t i = 0; i < m->plan.n_layer; i++) {
		const struct layer_rt *l = &m->layers[i];
		uint64_t pages = l->layout.page_bytes
					 ? (m->lim.max_ctx + l->layout.page_tokens - 1) / l->layout.page_tokens
					 : 0;
		uint64_t bytes = l->layout.fixed_bytes + pages * l->layout.page_bytes;
		total += bytes;
		fprintf(stderr, "hyd:   layer %2u  %-6s  %10llu bytes/session at %u tokens%s\n", i,
			m->plan.layers[i].mixer_kind, (unsigned long long)bytes, m->lim.max_ctx,
			l->layout.page_bytes ? " (grows with the context)" : " (constant)");
	}
	fprintf(stderr, "hyd:   total %llu bytes/session at %u tokens\n", (unsigned long long)total, m->lim.max_ctx);
	return 0;
}

static int grow_buffers(struct hyd_model *m, uint32_t rows, uint32_t n_seqs)
{
	if (n_seqs > m->cap_seqs) {
		struct hyd_mixer_seq *s = hyd_calloc(n_seqs, sizeof(*s));
		if (!s)
			return -ENOMEM;
		hyd_free(m->mseqs);
		m->mseqs = s;
		m->cap_seqs = n_seqs;
	}
	if (rows <= m->cap_rows)
		return 0;
	const uint32_t n_threads = hyd_pool_parallel(m->pool)->n_threads;
	uint64_t scratch = 0;
	for (uint32_t i = 0; i < m->plan.n_layer; i++) {
		uint64_t s = m->layers[i].f->scratch_size(m->layers[i].layer, &m->lim, rows, n_threads);
		if (s > scratch)
			scratch = s;
	}
	const uint64_t width = m->plan.n_embd > m->plan.n_vocab ? m->plan.n_embd : m->plan.n_vocab;
	float *x = hyd_aligned_alloc(64, (uint64_t)rows * m->plan.n_embd * 4);
	float *xn = hyd_aligned_alloc(64, (uint64_t)rows * m->plan.n_embd * 4);
	float *y = hyd_aligned_alloc(64, (uint64_t)rows * width * 4);
	float *fa = hyd_aligned_alloc(64, (uint64_t)rows * (m->max_ff ? m->max_ff : 1) * 4);
	float *fb = hyd_aligned_alloc(64, (uint64_t)rows * (m->max_ff ? m->max_ff : 1) * 4);
	void *sc = hyd_aligned_alloc(64, scratch ? scratch : 64);
	float *router = hyd_aligned_alloc(64, (uint64_t)rows * (m->max_expert ? m->max_expert : 1) * 4);
	float *moe_out = hyd_aligned_alloc(64, (uint64_t)m->plan.n_embd * 4);
	uint8_t *alone = hyd_malloc(rows), *ones = hyd_malloc(rows);
	if (!x || !xn || !y || !fa || !fb || !sc || !router || !moe_out || !alone || !ones) {
		hyd_free(x), hyd_free(xn), hyd_free(y), hyd_free(fa), hyd_free(fb), hyd_free(sc);
		hyd_free(router), hyd_free(moe_out), hyd_free(alone), hyd_free(ones);
		return -ENOMEM;
	}
	hyd_free(m->x), hyd_free(m->xn), hyd_free(m->y), hyd_free(m->fa), hyd_free(m->fb), hyd_free(m->scratch);
	hyd_free(m->router), hyd_free(m->moe_out);
	m->x = x, m->xn = xn, m->y = y, m->fa = fa, m->fb = fb, m->scratch = sc;
	m->router = router, m->moe_out = moe_out;
	memset(ones, 1, rows);
	hyd_free(m->alone), hyd_free(m->ones);
	m->alone = alone, m->ones = ones;
	m->scratch_bytes = scratch;
	m->cap_rows = rows;
	return 0;
}

int hyd_model_load(const char *path, const struct hyd_model_opts *opts, struct hyd_model **ret_model, char *err,
		   size_t errlen)
{
	struct hyd_model_opts o = opts ? *opts : (struct hyd_model_opts){ 0 };
	struct hyd_model *m = hyd_calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->verbose = o.verbose;
	m->sup = (struct hyd_plugin_support){ HYD_PLUGIN_ABI_VERSION, sizeof(m->sup), log_stderr, m };
	int r;
	if ((r = hyd_gguf_open(path, &m->g, err, errlen)))
		goto fail;
	if ((r = hyd_arch_plan(m->g, &m->plan, err, errlen)))
		goto fail;
	if ((r = hyd_tokenizer_load(m->g, &m->tok, err, errlen)))
		goto fail;
	if (hyd_tokenizer_n_vocab(m->tok) > m->plan.n_vocab) {
		r = -EINVAL;
		snprintf(err, errlen, "%s: tokenizer has %u tokens but the embeddings only %u rows", path,
			 hyd_tokenizer_n_vocab(m->tok), m->plan.n_vocab);
		goto fail;
	}
	m->lim.struct_size = sizeof(m->lim);
	m->lim.max_ctx = o.max_ctx ? o.max_ctx : (m->plan.n_ctx_train < 32768 ? m->plan.n_ctx_train : 32768);
	m->lim.max_chunk = o.max_chunk ? o.max_chunk : 256;
	if (m->lim.max_chunk > m->lim.max_ctx)
		m->lim.max_chunk = m->lim.max_ctx;
	m->lim.page_tokens = o.page_tokens ? o.page_tokens : 64;
	if ((r = hyd_pool_create(o.n_threads ? o.n_threads : hyd_default_threads(), &m->pool))) {
		snprintf(err, errlen, "cannot start worker threads: %s", strerror(-r));
		goto fail;
	}
	if ((r = hyd_plugins_load(o.plugin_path, &m->sup, &m->plugins, err, errlen)))
		goto fail;
	m->layers = hyd_calloc(m->plan.n_layer, sizeof(*m->layers));
	if (!m->layers) {
		r = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < m->plan.n_layer; i++) {
		struct layer_rt *l = &m->layers[i];
		const struct hyd_layer_plan *lp = &m->plan.layers[i];
		l->m = m;
		l->f = hyd_plugins_find(m->plugins, lp->mixer_kind);
		if (!l->f) {
			r = -ENOENT;
			snprintf(err, errlen, "layer %u needs a '%s' plugin; loaded plugins provide: %s", i,
				 lp->mixer_kind, hyd_plugins_kinds(m->plugins));
			goto fail;
		}
		l->desc = (struct hyd_layer_desc){ sizeof(l->desc), 0, &lp->hp, desc_tensor, l };
		if ((r = l->f->bind(&l->desc, &m->sup, &l->layer))) {
			snprintf(err, errlen, "%s: layer %u (%s) does not fit its plugin: %s (see the message above)",
				 path, i, lp->mixer_kind, strerror(-r));
			goto fail;
		}
		if ((r = l->f->state_layout(l->layer, &m->lim, &l->layout))) {
			snprintf(err, errlen, "layer %u: state layout failed: %s", i, strerror(-r));
			goto fail;
		}
		if (lp->ffn.n_ff > m->max_ff)
			m->max_ff = lp->ffn.n_ff;
		if (lp->ffn.gate_shexp && lp->ffn.gate_shexp->ne[1] > m->max_ff)
			m->max_ff = (uint32_t)lp->ffn.gate_shexp->ne[1];
		if (lp->ffn.kind == HYD_FFN_MOE) {
			if (lp->ffn.n_expert_used > 64 || lp->ffn.n_expert > 4096) {
				r = -ENOTSUP;
				snprintf(err, errlen, "%s: layer %u routes %u of %u experts; hyd supports up to 64 of 4096",
					 path, i, lp->ffn.n_expert_used, lp->ffn.n_expert);
				goto fail;
			}
			if (lp->ffn.n_expert > m->max_expert)
				m->max_expert = lp->ffn.n_expert;
		}
	}
	fingerprint(m);
	if (m->verbose)
		print_plan(m);
	*ret_model = m;
	return 0;
fail:
	hyd_model_free(m);
	return r;
}

void hyd_model_free(struct hyd_model *m)
{
	if (!m)
		return;
	if (m->layers)
		for (uint32_t i = 0; i < m->plan.n_layer; i++)
			if (m->layers[i].f)
				m->layers[i].f->unbind(m->layers[i].layer);
	hyd_free(m->layers);
	hyd_plugins_free(m->plugins);
	hyd_pool_destroy(m->pool);
	hyd_tokenizer_free(m->tok);
	hyd_arch_plan_free(&m->plan);
	hyd_gguf_close(m->g);
	hyd_free(m->x), hyd_free(m->xn), hyd_free(m->y), hyd_free(m->fa), hyd_free(m->fb), hyd_free(m->scratch);
	hyd_free(m->router), hyd_free(m->moe_out);
	hyd_free(m->alone), hyd_free(m->ones);
	hyd_free(m->mseqs);
	hyd_free(m);
}

const struct hyd_tokenizer *hyd_model_tokenizer(const struct hyd_model *m) { return m->tok; }
const struct hyd_gguf *hyd_model_gguf(const struct hyd_model *m) { return m->g; }
const char *hyd_model_arch(const struct hyd_model *m) { return m->plan.arch; }
uint32_t hyd_model_n_vocab(const struct hyd_model *m) { return m->plan.n_vocab; }
uint32_t hyd_model_n_layer(const struct hyd_model *m) { return m->plan.n_layer; }
const struct hyd_state_limits *hyd_model_limits(const struct hyd_model *m) { return &m->lim; }
void hyd_model_fingerprint(const struct hyd_model *m, uint8_t ret_fp[32]) { memcpy(ret_fp, m->fp, 32); }
const char *hyd_model_layer_kind(const struct hyd_model *m, uint32_t i) { return m->plan.layers[i].mixer_kind; }
const struct hyd_state_layout *hyd_model_layer_layout(const struct hyd_model *m, uint32_t i)
{
	return &m->layers[i].layout;
}

int hyd_model_layer_layout_for(const struct hyd_model *m, uint32_t i, const struct hyd_state_limits *lim,
			       struct hyd_state_layout *ret)
{
	if (i >= m->plan.n_layer)
		return -ERANGE;
	return m->layers[i].f->state_layout(m->layers[i].layer, lim, ret);
}

void hyd_model_state_init(const struct hyd_model *m, void *const *fixed)
{
	for (uint32_t i = 0; i < m->plan.n_layer; i++)
		if (m->layers[i].layout.fixed_bytes)
			m->layers[i].f->state_init(m->layers[i].layer, fixed[i], &m->lim);
}

struct rows_job {
	float *dst;
	const float *src;
	const float *w;
	uint32_t n;
	float eps;
};

static void norm_rows(float *dst, const float *src, const struct hyd_tensor *w, uint32_t rows, uint32_t n, float eps)
{
	const float *wf = hyd_tensor_f32(w);
	for (uint32_t r = 0; r < rows; r++)
		hyd_rmsnorm(dst + (uint64_t)r * n, src + (uint64_t)r * n, wf, n, eps);
}

/* Four floats at a time through GCC's generic vectors (SSE on any x86-64, each lane the same
 * IEEE operation as the scalar one): -O2 leaves these loops scalar, and as first written
 * (m->fa[i] *= m->fb[i]) every store might have changed m->fa, so each element also reloaded
 * both pointers: with the logit scaling below, 0.3-1.8 % of a granite-h-350m decode token. */
typedef float v4f __attribute__((vector_size(16)));

static inline v4f load4(const float *p)
{
	v4f v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* a[i] *= b[i] */
static void mul_into(float *restrict a, const float *restrict b, uint64_t n)
{
	uint64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		const v4f v = load4(a + i) * load4(b + i);
		memcpy(a + i, &v, sizeof(v));
	}
	for (; i < n; i++)
		a[i] *= b[i];
}

static int run_ffn(struct hyd_model *m, const struct hyd_ffn_plan *f, uint32_t rows, const uint8_t *alone)
{
	const struct hyd_parallel *par = hyd_pool_parallel(m->pool);
	const uint32_t n_embd = m->plan.n_embd, n_ff = f->n_ff;
	int r;
	const struct hyd_tensor *const w[2] = { f->gate, f->up };
	float *const y[2] = { m->fa, m->fb };
	const int64_t ld[2] = { n_ff, n_ff };
	if ((r = hyd_matmul_multi(par, 2, w, m->xn, n_embd, y, ld, rows, alone)))
		return r;
	const uint64_t n = (uint64_t)rows * n_ff;
	if (f->kind == HYD_FFN_GEGLU)
		hyd_gelu_tanh(m->fa, (int64_t)n);
	else
		hyd_silu(m->fa, (int64_t)n);
	mul_into(m->fa, m->fb, n);
	return hyd_matmul_rows(par, f->down, m->fa, n_ff, m->y, n_embd, rows, alone);
}

/* Expert e of a stacked expert tensor {n_in, n_out, n_expert} as a plain matrix view. */
static struct hyd_tensor expert_view(const struct hyd_tensor *t, uint32_t e)
{
	struct hyd_tensor v = *t;
	const uint64_t bytes = (uint64_t)hyd_row_size(t->type, t->ne[0]) * (uint64_t)t->ne[1];
	v.ne[2] = 1;
	v.n_dims = 2;
	v.data = (const char *)t->data + (uint64_t)e * bytes;
	v.nbytes = bytes;
	return v;
}

/* y = down(silu(gate x) * up x) for one row, into out (n_embd). */
static int swiglu_row(struct hyd_model *m, const struct hyd_tensor *gate, const struct hyd_tensor *up,
		      const struct hyd_tensor *down, const float *x, float *out)
{
	const struct hyd_parallel *par = hyd_pool_parallel(m->pool);
	const int64_t n_ff = gate->ne[1], n_embd = m->plan.n_embd;
	int r;
	const struct hyd_tensor *const w[2] = { gate, up };
	float *const y[2] = { m->fa, m->fb };
	const int64_t ld[2] = { n_ff, n_ff };
	if ((r = hyd_matmul_multi(par, 2, w, x, n_embd, y, ld, 1, NULL)))
		return r;
	hyd_silu(m->fa, n_ff);
	mul_into(m->fa, m->fb, (uint64_t)n_ff);
	return hyd_matmul(par, down, m->fa, n_ff, out, n_embd, 1);
}

/* Routed experts: softmax over the router's logits, the n_expert_used most likely experts
 * (weights renormalised to 1 where the architecture does), SwiGLU per expert, weighted sum;
 * plus the shared expert when there is one.  Row by row: MoE models route every token
 * differently, and the experts' weights are read once per token either way. */
static int run_moe(struct hyd_model *m, const struct hyd_ffn_plan *f, uint32_t rows, const uint8_t *alone)
{
	const struct hyd_parallel *par = hyd_pool_parallel(m->pool);
	const uint32_t n_embd = m->plan.n_embd, ne = f->n_expert, k = f->n_expert_used;
	int r = hyd_matmul_rows(par, f->gate_inp, m->xn, n_embd, m->router, ne, rows, alone);
	if (r)
		return r;
	memset(m->y, 0, (uint64_t)rows * n_embd * sizeof(float));
	for (uint32_t row = 0; row < rows; row++) {
		float *p = m->router + (uint64_t)row * ne;
		const float *x = m->xn + (uint64_t)row * n_embd;
		float *y = m->y + (uint64_t)row * n_embd;
		hyd_softmax(p, ne);
		uint32_t chosen[64];
		float w[64], wsum = 0;
		for (uint32_t j = 0; j < k; j++) {
			uint32_t best = UINT32_MAX;
			for (uint32_t e = 0; e < ne; e++) {
				bool taken = false;
				for (uint32_t q = 0; q < j; q++)
					taken |= chosen[q] == e;
				if (!taken && (best == UINT32_MAX || p[e] > p[best]))
					best = e;
			}
			chosen[j] = best;
			w[j] = p[best];
			wsum += w[j];
		}
		for (uint32_t j = 0; j < k; j++) {
			const struct hyd_tensor g = expert_view(f->gate_exps, chosen[j]), u = expert_view(f->up_exps, chosen[j]),
						d = expert_view(f->down_exps, chosen[j]);
			if ((r = swiglu_row(m, &g, &u, &d, x, m->moe_out)))
				return r;
			hyd_axpy_f32(y, f->norm_topk ? w[j] / wsum : w[j], m->moe_out, n_embd);
		}
		if (f->gate_shexp) {
			if ((r = swiglu_row(m, f->gate_shexp, f->up_shexp, f->down_shexp, x, m->moe_out)))
				return r;
			hyd_axpy_f32(y, 1.0f, m->moe_out, n_embd);
		}
	}
	return 0;
}

static void add_residual(float *x, const float *y, uint64_t n, float scale)
{
	if (scale == 1.0f)
		for (uint64_t i = 0; i < n; i++)
			x[i] += y[i];
	else
		for (uint64_t i = 0; i < n; i++)
			x[i] += scale * y[i];
}

/* logits / scale, then soft-capped where cap > 0 (tanhf stays scalar) */
static void scale_logits(float *restrict logits, uint64_t n, float scale, float cap)
{
	uint64_t i = 0;
	if (cap <= 0)
		for (const v4f s4 = { scale, scale, scale, scale }; i + 4 <= n; i += 4) {
			const v4f v = load4(logits + i) / s4;
			memcpy(logits + i, &v, sizeof(v));
		}
	for (; i < n; i++) {
		float v = logits[i] / scale;
		if (cap > 0)
			v = cap * tanhf(v / cap);
		logits[i] = v;
	}
}

int hyd_model_step(struct hyd_model *m, struct hyd_seq_view *const *seqs, const int32_t *const *tokens,
		   const uint32_t *n_tokens, uint32_t n_seqs, float *logits, bool all_logits)
{
	const struct hyd_model_plan *p = &m->plan;
	const struct hyd_parallel *par = hyd_pool_parallel(m->pool);
	uint64_t total = 0;
	if (n_seqs == 0)
		return -EINVAL;
	for (uint32_t s = 0; s < n_seqs; s++) {
		if (n_tokens[s] == 0 || n_tokens[s] > m->lim.max_chunk ||
		    (uint64_t)seqs[s]->pos + n_tokens[s] > m->lim.max_ctx)
			return -E2BIG;
		for (uint32_t t = 0; t < n_tokens[s]; t++)
			if (tokens[s][t] < 0 || (uint32_t)tokens[s][t] >= p->n_vocab)
				return -EINVAL;
		total += n_tokens[s];
	}
	if (total > 1u << 20)
		return -E2BIG;
	const uint32_t rows = (uint32_t)total;
	int r = grow_buffers(m, rows, n_seqs);
	if (r)
		return r;
	const uint32_t n_embd = p->n_embd;
	/* embeddings */
	uint32_t row = 0;
	for (uint32_t s = 0; s < n_seqs; s++)
		for (uint32_t t = 0; t < n_tokens[s]; t++, row++) {
			float *x = m->x + (uint64_t)row * n_embd;
			if ((r = hyd_tensor_row(p->token_embd, tokens[s][t], x)))
				return r;
			if (p->embd_scale != 1.0f)
				for (uint32_t i = 0; i < n_embd; i++)
					x[i] *= p->embd_scale;
			m->alone[row] = n_tokens[s] == 1;
		}
	const uint64_t nx = (uint64_t)rows * n_embd;
	for (uint32_t li = 0; li < p->n_layer; li++) {
		const struct hyd_layer_plan *lp = &p->layers[li];
		const struct layer_rt *lr = &m->layers[li];
		norm_rows(m->xn, m->x, lp->mixer_norm, rows, n_embd, p->norm_eps);
		row = 0;
		for (uint32_t s = 0; s < n_seqs; s++) {
			const struct hyd_layer_state *ls = &seqs[s]->layers[li];
			m->mseqs[s] = (struct hyd_mixer_seq){
				.state = ls->fixed,
				.pages = ls->pages,
				.n_pages = ls->n_pages,
				.pos = seqs[s]->pos,
				.row0 = row,
				.n_rows = n_tokens[s],
				.state_index = seqs[s]->state_index,
				.flags = seqs[s]->flags,
			};
			row += n_tokens[s];
		}
		struct hyd_mixer_batch b = {
			.struct_size = sizeof(b),
			.n_seqs = n_seqs,
			.n_rows = rows,
			.seqs = m->mseqs,
			.limits = &m->lim,
			.x = m->xn,
			.y = m->y,
			.scratch = m->scratch,
			.scratch_bytes = m->scratch_bytes,
			.par = par,
		};
		if ((r = lr->f->forward(lr->layer, &b)))
			return r;
		if (lp->mixer_post_norm)
			norm_rows(m->y, m->y, lp->mixer_post_norm, rows, n_embd, p->norm_eps);
		add_residual(m->x, m->y, nx, p->residual_scale);
		if (lp->ffn.kind == HYD_FFN_NONE)
			continue;
		norm_rows(m->xn, m->x, lp->ffn_norm, rows, n_embd, p->norm_eps);
		/* llama.cpp runs the last block's FFN on the output rows only, each alone */
		const bool last = li + 1 == p->n_layer && !all_logits;
		r = lp->ffn.kind == HYD_FFN_MOE ? run_moe(m, &lp->ffn, rows, last ? m->ones : m->alone)
						: run_ffn(m, &lp->ffn, rows, last ? m->ones : m->alone);
		if (r)
			return r;
		if (lp->ffn_post_norm)
			norm_rows(m->y, m->y, lp->ffn_post_norm, rows, n_embd, p->norm_eps);
		add_residual(m->x, m->y, nx, p->residual_scale);
	}
	/* output head: every row, or the last row of each session */
	uint32_t n_out = 0;
	row = 0;
	for (uint32_t s = 0; s < n_seqs; s++) {
		for (uint32_t t = 0; t < n_tokens[s]; t++, row++) {
			if (!all_logits && t + 1 != n_tokens[s])
				continue;
			hyd_rmsnorm(m->xn + (uint64_t)n_out * n_embd, m->x + (uint64_t)row * n_embd,
				    hyd_tensor_f32(p->output_norm), n_embd, p->norm_eps);
			n_out++;
		}
	}
	if ((r = hyd_matmul_rows(par, p->output, m->xn, n_embd, logits, p->n_vocab, n_out,
				 all_logits ? m->alone : m->ones)))
		return r;
	if (p->logit_scale != 1.0f || p->final_softcap > 0)
		scale_logits(logits, (uint64_t)n_out * p->n_vocab, p->logit_scale, p->final_softcap);
	return 0;
}
