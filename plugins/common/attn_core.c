/* See attn_core.h.  K and V are stored as f16 rows, as in llama.cpp's default KV cache: per
 * position, K is n_kv*hd_k halves and V n_kv*hd_v halves.  Paged layout: a page holds page_tokens positions, all K rows then all V
 * rows.  Ring layout: the fixed region holds ring = window - 1 + max_chunk slots (K rows then V
 * rows); position p lives in slot p % ring.  A chunk of at most max_chunk rows therefore never
 * overwrites a position that a query of the chunk, or a replay after a crash, still needs. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/kernels.h"
#include "engine/types.h"
#include "plugins/common/attn_core.h"

void hyd__plugin_log(const struct hyd_plugin_support *sup, enum hyd_log_level level, const char *fmt, ...)
{
	if (!sup || !sup->log)
		return;
	va_list ap;
	va_start(ap, fmt);
	sup->log(sup->log_ctx, level, fmt, ap);
	va_end(ap);
}

static int check_matrix(const struct hyd_attn_layer *L, const struct hyd_tensor *t, const char *what,
			int64_t n_in, int64_t n_out)
{
	if (!t) {
		hyd__plugin_log(L->sup, HYD_LOG_ERROR, "layer %u: missing tensor blk.%u.%s", L->hp.layer,
				L->hp.layer, what);
		return -EINVAL;
	}
	if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != 1 || t->ne[3] != 1) {
		hyd__plugin_log(L->sup, HYD_LOG_ERROR,
				"%s: shape {%lld, %lld} but the hyper-parameters need {%lld, %lld}", t->name,
				(long long)t->ne[0], (long long)t->ne[1], (long long)n_in, (long long)n_out);
		return -EINVAL;
	}
	if (!hyd_type_computable(t->type)) {
		hyd__plugin_log(L->sup, HYD_LOG_ERROR, "%s: tensor type %s is not supported", t->name,
				hyd_type_name(t->type));
		return -ENOTSUP;
	}
	return 0;
}

static int opt_vector(const struct hyd_attn_layer *L, const struct hyd_layer_desc *d, const char *suffix,
		      int64_t n, const float **ret)
{
	const struct hyd_tensor *t = d->tensor(d, suffix);
	if (!t) {
		*ret = NULL;
		return 0;
	}
	if (t->type != HYD_TYPE_F32 || hyd_tensor_nelements(t) != n) {
		hyd__plugin_log(L->sup, HYD_LOG_ERROR, "%s: expected %lld F32 values, found %lld %s", t->name,
				(long long)n, (long long)hyd_tensor_nelements(t), hyd_type_name(t->type));
		return -EINVAL;
	}
	*ret = t->data;
	return 0;
}

int hyd__attn_bind(const struct hyd_layer_desc *d, const struct hyd_plugin_support *sup,
		   enum hyd_kv_mode mode, void **ret_layer)
{
	const struct hyd_mixer_hparams *hp = d->hp;
	if (!hp || hp->struct_size < sizeof(*hp))
		return -EINVAL;
	struct hyd_attn_layer *L = hyd_calloc(1, sizeof(*L));
	if (!L)
		return -ENOMEM;
	L->hp = *hp;
	L->mode = mode;
	L->sup = sup;
	int r = -EINVAL;
	if (hp->n_head == 0 || hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv || hp->head_dim_k == 0 ||
	    hp->head_dim_v == 0 || hp->n_embd == 0) {
		hyd__plugin_log(sup, HYD_LOG_ERROR,
				"layer %u: bad attention hyper-parameters (heads %u, kv heads %u, head dims %u/%u)",
				hp->layer, hp->n_head, hp->n_head_kv, hp->head_dim_k, hp->head_dim_v);
		goto fail;
	}
	if (hp->rope_type != HYD_ROPE_NONE &&
	    (hp->n_rot == 0 || hp->n_rot > hp->head_dim_k || hp->n_rot % 2 || hp->n_rot > 1024)) {
		hyd__plugin_log(sup, HYD_LOG_ERROR, "layer %u: rope dimension %u does not fit head size %u",
				hp->layer, hp->n_rot, hp->head_dim_k);
		goto fail;
	}
	if (mode == HYD_KV_RING && hp->window == 0) {
		hyd__plugin_log(sup, HYD_LOG_ERROR, "layer %u: sliding-window layer without a window", hp->layer);
		goto fail;
	}
	L->q_dim = hp->n_head * hp->head_dim_k;
	L->k_dim = hp->n_head_kv * hp->head_dim_k;
	L->v_dim = hp->n_head_kv * hp->head_dim_v;
	L->wq = d->tensor(d, "attn_q.weight");
	L->wk = d->tensor(d, "attn_k.weight");
	L->wv = d->tensor(d, "attn_v.weight");
	L->wo = d->tensor(d, "attn_output.weight");
	if ((r = check_matrix(L, L->wq, "attn_q.weight", hp->n_embd, L->q_dim)) ||
	    (r = check_matrix(L, L->wk, "attn_k.weight", hp->n_embd, L->k_dim)) ||
	    (r = check_matrix(L, L->wv, "attn_v.weight", hp->n_embd, L->v_dim)) ||
	    (r = check_matrix(L, L->wo, "attn_output.weight", hp->n_head * hp->head_dim_v, hp->n_embd)))
		goto fail;
	if ((r = opt_vector(L, d, "attn_q_norm.weight", hp->head_dim_k, &L->q_norm)) ||
	    (r = opt_vector(L, d, "attn_k_norm.weight", hp->head_dim_k, &L->k_norm)) ||
	    (r = opt_vector(L, d, "attn_q.bias", L->q_dim, &L->bq)) ||
	    (r = opt_vector(L, d, "attn_k.bias", L->k_dim, &L->bk)) ||
	    (r = opt_vector(L, d, "attn_v.bias", L->v_dim, &L->bv)) ||
	    (r = opt_vector(L, d, "attn_output.bias", hp->n_embd, &L->bo)))
		goto fail;
	L->scale = hp->attn_scale > 0 ? hp->attn_scale : 1.0f / sqrtf((float)hp->head_dim_k);
	*ret_layer = L;
	return 0;
fail:
	hyd_free(L);
	return r;
}

void hyd__attn_unbind(void *layer)
{
	hyd_free(layer);
}

static uint32_t ring_slots(const struct hyd_attn_layer *L, const struct hyd_state_limits *lim)
{
	uint32_t w = L->hp.window;
	if (w > lim->max_ctx)
		w = lim->max_ctx; /* a window longer than the context never wraps */
	return w - 1 + lim->max_chunk;
}

/* bytes of one position's K and V rows: f16, as llama.cpp's default KV cache */
static uint64_t row_bytes(const struct hyd_attn_layer *L)
{
	return ((uint64_t)L->k_dim + L->v_dim) * sizeof(uint16_t);
}

int hyd__attn_state_layout(const void *layer, const struct hyd_state_limits *lim, struct hyd_state_layout *ret)
{
	const struct hyd_attn_layer *L = layer;
	if (!lim || lim->max_chunk == 0 || lim->max_ctx == 0 || lim->page_tokens == 0)
		return -EINVAL;
	struct hyd_state_layout out = { 0 };
	if (L->mode == HYD_KV_PAGED) {
		out.page_bytes = (uint64_t)lim->page_tokens * row_bytes(L);
		out.page_tokens = lim->page_tokens;
	} else {
		out.fixed_bytes = (uint64_t)ring_slots(L, lim) * row_bytes(L);
	}
	*ret = out;
	return 0;
}

/* llama.cpp's CPU flash attention switches to a tiled kernel when a step has at least this many
 * query rows; its tiles of keys start at multiples of FA_TILE_KV. */
#define FA_TILE_Q 64
#define FA_TILE_KV 64
/* keys per chunk of the one-row (decode) kernel */
#define DECODE_CHUNK 32

/* query rows one task of the blocked tiled kernel takes (attn_block_tiled_avx2) */
#define TILED_ROWS 32

/* Floats per thread of the tiled kernels: the reference's f32 accumulator row and tile of
 * scores, or the blocked kernel's K and V tiles in f32 and its rows' accumulators, running
 * maxima and sums. */
static uint64_t tiled_floats(const struct hyd_attn_layer *L)
{
	const uint64_t dk = L->hp.head_dim_k, dv = L->hp.head_dim_v;
	const uint64_t dv_pad = (dv + 31) & ~(uint64_t)31;
	const uint64_t ref = dv_pad + FA_TILE_KV;
	const uint64_t block = FA_TILE_KV * (dk + dv) + TILED_ROWS * (dv + 2);
	return ((ref > block ? ref : block) + 15) & ~(uint64_t)15;
}

/* Scratch: q, k, v, o rows for the batch (f32), q rows as f16, then per thread one f16
 * accumulator row (the one-row kernel) and the tiled kernels' floats. */
static uint64_t acc_halves(const struct hyd_attn_layer *L)
{
	const uint64_t dv = ((uint64_t)L->hp.head_dim_v + 31) & ~(uint64_t)31;
	return dv + 2 * tiled_floats(L);
}

uint64_t hyd__attn_scratch_size(const void *layer, const struct hyd_state_limits *lim, uint32_t max_rows,
				uint32_t n_threads)
{
	const struct hyd_attn_layer *L = layer;
	(void)lim;
	uint64_t per_row = (uint64_t)L->q_dim + L->k_dim + L->v_dim + (uint64_t)L->hp.n_head * L->hp.head_dim_v;
	uint64_t halves = (uint64_t)L->q_dim * max_rows + 1 + acc_halves(L) * (n_threads ? n_threads : 1);
	return per_row * max_rows * sizeof(float) + halves * sizeof(uint16_t) + 256;
}

void hyd__attn_state_init(const void *layer, void *state, const struct hyd_state_limits *lim)
{
	struct hyd_state_layout lay;
	if (hyd__attn_state_layout(layer, lim, &lay) == 0 && lay.fixed_bytes)
		memset(state, 0, lay.fixed_bytes);
}

/* Address of position p's K row (V row with v set) for one session. */
static inline uint16_t *kv_row(const struct hyd_attn_layer *L, const struct hyd_mixer_seq *s,
			    const struct hyd_state_limits *lim, uint32_t p, int v)
{
	if (L->mode == HYD_KV_PAGED) {
		const uint32_t pt = lim->page_tokens;
		uint16_t *page = s->pages[p / pt];
		const uint32_t slot = p % pt;
		return v ? page + (uint64_t)pt * L->k_dim + (uint64_t)slot * L->v_dim
			 : page + (uint64_t)slot * L->k_dim;
	}
	const uint32_t ring = ring_slots(L, lim);
	uint16_t *base = s->state;
	const uint32_t slot = p % ring;
	return v ? base + (uint64_t)ring * L->k_dim + (uint64_t)slot * L->v_dim
		 : base + (uint64_t)slot * L->k_dim;
}

struct attn_job {
	const struct hyd_attn_layer *L;
	const struct hyd_mixer_batch *b;
	const uint16_t *q;  /* f16 */
	float *o;
	uint16_t *acc;      /* per thread */
	uint64_t acc_stride;
	uint32_t *row_seq;  /* seq index of each row */
	hyd_vec_dot_fn dot; /* f16 x f16 */
	hyd_vec_dot4_fn dot4; /* the same, four keys at a time (NULL: none at this SIMD level) */
	const float *q32;   /* q rows in f32, for the tiled kernel */
	const uint8_t *tiled; /* per row: its sequence's step takes the tiled kernel */
	uint32_t n_tasks, n_groups; /* (row, head) tasks, run as n_groups pool tasks (attn_group) */
};

/* The visible span [first, p] of row task's query position. */
static void visible_span(const struct attn_job *j, uint32_t row, uint32_t *ret_first, uint32_t *ret_p)
{
	const struct hyd_attn_layer *L = j->L;
	const struct hyd_mixer_seq *s = &j->b->seqs[j->row_seq[row]];
	const uint32_t p = s->pos + (row - s->row0);
	uint32_t first = 0;
	if (L->mode == HYD_KV_RING && p + 1 > L->hp.window)
		first = p + 1 - L->hp.window;
	*ret_first = first;
	*ret_p = p;
}

/* Sum of 16 floats as a 512-bit horizontal add does: halves folded until one lane is left. */
static float hsum16(const float *x)
{
	float t[16];
	memcpy(t, x, sizeof(t));
	for (int w = 8; w >= 1; w /= 2)
		for (int i = 0; i < w; i++)
			t[i] += t[i + w];
	return t[0];
}

/* One (row, head) of ggml's tiled flash attention (a step of FA_TILE_Q rows or more): q stays f32,
 * K and V are widened from f16 to f32, scores are plain f32 FMA chains, softmax is online per tile
 * of FA_TILE_KV keys, and V is accumulated in f32. */
static void attn_task_tiled(const struct attn_job *j, uint32_t row, uint32_t h, uint32_t thread)
{
	const struct hyd_attn_layer *L = j->L;
	const struct hyd_mixer_hparams *hp = &L->hp;
	const struct hyd_mixer_seq *s = &j->b->seqs[j->row_seq[row]];
	const struct hyd_state_limits *lim = j->b->limits;
	uint32_t first, p;
	visible_span(j, row, &first, &p);
	const uint32_t kvh = h / (hp->n_head / hp->n_head_kv);
	const uint32_t dk = hp->head_dim_k, dv = hp->head_dim_v;
	const uint64_t dv_pad = ((uint64_t)dv + 31) & ~(uint64_t)31;
	const float *q = j->q32 + (uint64_t)row * L->q_dim + (uint64_t)h * dk;
	float *acc = (float *)(j->acc + (uint64_t)thread * j->acc_stride + dv_pad);
	float *sc = acc + dv_pad;
	float scale = L->scale;
	if (hp->attn_softcap > 0)
		scale /= hp->attn_softcap;
	memset(acc, 0, dv * sizeof(float));
	float S = 0, M = -INFINITY;
	for (uint32_t t0 = first - first % FA_TILE_KV; t0 <= p; t0 += FA_TILE_KV) {
		float tmax = -INFINITY;
		for (uint32_t i = 0; i < FA_TILE_KV; i++) {
			const uint32_t t = t0 + i;
			if (t < first || t > p) {
				sc[i] = -INFINITY;
				continue;
			}
			const uint16_t *kr = kv_row(L, s, lim, t, 0) + (uint64_t)kvh * dk;
			float d = 0;
			for (uint32_t e = 0; e < dk; e++)
				d = fmaf(q[e], hyd_fp16_to_fp32(kr[e]), d);
			d *= scale;
			if (hp->attn_softcap > 0)
				d = tanhf(d) * hp->attn_softcap;
			sc[i] = d;
			tmax = fmaxf(tmax, d);
		}
		if (tmax == -INFINITY)
			continue;
		const float mnew = fmaxf(M, tmax);
		if (mnew > M) {
			const float ms = expf(M - mnew);
			for (uint32_t d = 0; d < dv; d++)
				acc[d] *= ms;
			S *= ms;
		}
		M = mnew;
		for (uint32_t i = 0; i < FA_TILE_KV; i++)
			sc[i] = expf(sc[i] - mnew);
		double sum = 0;
		for (uint32_t i = 0; i < FA_TILE_KV; i += 16)
			sum += hsum16(sc + i);
		S += (float)sum;
		for (uint32_t i = 0; i < FA_TILE_KV; i++) {
			const uint32_t t = t0 + i;
			if (t < first || t > p)
				continue;
			const uint16_t *vr = kv_row(L, s, lim, t, 1) + (uint64_t)kvh * dv;
			for (uint32_t d = 0; d < dv; d++)
				acc[d] = fmaf(sc[i], hyd_fp16_to_fp32(vr[d]), acc[d]);
		}
	}
	float *o = j->o + (uint64_t)row * hp->n_head * dv + (uint64_t)h * dv;
	const float inv = S == 0 ? 0 : 1.0f / S;
	for (uint32_t d = 0; d < dv; d++)
		o[d] = acc[d] * inv;
}

#if defined(__x86_64__)
#include <immintrin.h>
#define TILED_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TILED_MAX_DK 512

/* hsum16's sum in the same order: the 16 floats folded in halves, 8, 4, 2, 1 */
TILED_AVX2 static inline float hsum16_avx2(const float *x)
{
	const __m256 h8 = _mm256_add_ps(_mm256_load_ps(x), _mm256_load_ps(x + 8));
	const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
	const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
	return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

/* fmaxf(m, v) as the reference uses it, inline: NaN-ignoring; when they are equal either is
 * the value (only the sign of a zero could differ, and nothing downstream tells them apart) */
static inline float max_as_fmaxf(float m, float v)
{
	if (isnan(v))
		return m;
	return isnan(m) || v > m ? v : m;
}

/* The address of key t's K (v = 0) or V (v = 1) row of one KV head, or NULL outside [lo, hi]:
 * those keys are never read (they may lie in pages the session does not have). */
static inline const uint16_t *tile_row(const struct attn_job *j, const struct hyd_mixer_seq *s, uint32_t kvh,
				       int v, uint32_t dim, uint32_t t, uint32_t lo, uint32_t hi)
{
	return t < lo || t > hi ? NULL : kv_row(j->L, s, j->b->limits, t, v) + (uint64_t)kvh * dim;
}

/* One tile's K, widened to f32 by F16C (exact) and transposed: kt[e * FA_TILE_KV + i] is
 * element e of key t0 + i, so that eight keys' elements e are one vector.  Keys outside
 * [lo, hi] are zeros.  Transposed eight keys by eight elements at a time. */
TILED_AVX2 static void k_tile_transposed(const struct attn_job *j, const struct hyd_mixer_seq *s, uint32_t kvh,
					 uint32_t dk, uint32_t t0, uint32_t lo, uint32_t hi, float *kt)
{
	for (uint32_t i0 = 0; i0 < FA_TILE_KV; i0 += 8) {
		const uint16_t *k[8];
		for (uint32_t l = 0; l < 8; l++)
			k[l] = tile_row(j, s, kvh, 0, dk, t0 + i0 + l, lo, hi);
		uint32_t e = 0;
		for (; e + 8 <= dk; e += 8) {
			__m256 r[8];
			for (uint32_t l = 0; l < 8; l++)
				r[l] = k[l] ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k[l] + e))) : _mm256_setzero_ps();
			/* 8 x 8 transpose: r[l][c] -> out[c][l] */
			const __m256 u0 = _mm256_unpacklo_ps(r[0], r[1]), u1 = _mm256_unpackhi_ps(r[0], r[1]);
			const __m256 u2 = _mm256_unpacklo_ps(r[2], r[3]), u3 = _mm256_unpackhi_ps(r[2], r[3]);
			const __m256 u4 = _mm256_unpacklo_ps(r[4], r[5]), u5 = _mm256_unpackhi_ps(r[4], r[5]);
			const __m256 u6 = _mm256_unpacklo_ps(r[6], r[7]), u7 = _mm256_unpackhi_ps(r[6], r[7]);
			const __m256 v0 = _mm256_shuffle_ps(u0, u2, 0x44), v1 = _mm256_shuffle_ps(u0, u2, 0xee);
			const __m256 v2 = _mm256_shuffle_ps(u1, u3, 0x44), v3 = _mm256_shuffle_ps(u1, u3, 0xee);
			const __m256 v4 = _mm256_shuffle_ps(u4, u6, 0x44), v5 = _mm256_shuffle_ps(u4, u6, 0xee);
			const __m256 v6 = _mm256_shuffle_ps(u5, u7, 0x44), v7 = _mm256_shuffle_ps(u5, u7, 0xee);
			float *o = kt + (uint64_t)e * FA_TILE_KV + i0;
			_mm256_storeu_ps(o, _mm256_permute2f128_ps(v0, v4, 0x20));
			_mm256_storeu_ps(o + FA_TILE_KV, _mm256_permute2f128_ps(v1, v5, 0x20));
			_mm256_storeu_ps(o + 2 * FA_TILE_KV, _mm256_permute2f128_ps(v2, v6, 0x20));
			_mm256_storeu_ps(o + 3 * FA_TILE_KV, _mm256_permute2f128_ps(v3, v7, 0x20));
			_mm256_storeu_ps(o + 4 * FA_TILE_KV, _mm256_permute2f128_ps(v0, v4, 0x31));
			_mm256_storeu_ps(o + 5 * FA_TILE_KV, _mm256_permute2f128_ps(v1, v5, 0x31));
			_mm256_storeu_ps(o + 6 * FA_TILE_KV, _mm256_permute2f128_ps(v2, v6, 0x31));
			_mm256_storeu_ps(o + 7 * FA_TILE_KV, _mm256_permute2f128_ps(v3, v7, 0x31));
		}
		for (; e < dk; e++)
			for (uint32_t l = 0; l < 8; l++)
				kt[(uint64_t)e * FA_TILE_KV + i0 + l] = k[l] ? hyd_fp16_to_fp32(k[l][e]) : 0.0f;
	}
}

/* One tile's V widened to f32, a row of dv floats per key (zeros outside [lo, hi]). */
TILED_AVX2 static void v_tile(const struct attn_job *j, const struct hyd_mixer_seq *s, uint32_t kvh, uint32_t dv,
			      uint32_t t0, uint32_t lo, uint32_t hi, float *vf)
{
	for (uint32_t i = 0; i < FA_TILE_KV; i++) {
		float *row = vf + (uint64_t)i * dv;
		const uint16_t *src = tile_row(j, s, kvh, 1, dv, t0 + i, lo, hi);
		if (!src) {
			memset(row, 0, dv * sizeof(float));
			continue;
		}
		uint32_t e = 0;
		for (; e + 8 <= dv; e += 8)
			_mm256_storeu_ps(row + e, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + e))));
		for (; e < dv; e++)
			row[e] = hyd_fp16_to_fp32(src[e]);
	}
}

/* Eight independent FMA chains, one step: acc[k] = fma(w, v[8k .. 8k + 7], acc[k]).  The
 * loops over k are unrolled so that the chains live in registers. */
TILED_AVX2 static inline void fma_x8(__m256 acc[8], __m256 w, const float *v)
{
#pragma GCC unroll 8
	for (int k = 0; k < 8; k++)
		acc[k] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8 * k), acc[k]);
}

/* The tile's 64 scores of one query row q, keys in the lanes: key i is one FMA chain over
 * e = 0..dk-1 in order, as the reference computes q.k; eight vectors side by side. */
TILED_AVX2 static void scores_row(const float *q, const float *kt, uint32_t dk, float *sc)
{
	__m256 d[8];
#pragma GCC unroll 8
	for (int k = 0; k < 8; k++)
		d[k] = _mm256_setzero_ps();
	for (uint32_t e = 0; e < dk; e++)
		fma_x8(d, _mm256_broadcast_ss(q + e), kt + (uint64_t)e * FA_TILE_KV);
#pragma GCC unroll 8
	for (int k = 0; k < 8; k++)
		_mm256_storeu_ps(sc + 8 * k, d[k]);
}

/* acc[d] = fma(p[i], vf[i][d], acc[d]) for keys i = a..b in order: per element the chain the
 * reference runs, eight independent chains (64 elements) at a time, kept in registers. */
TILED_AVX2 static void pv_steps(float *acc, const float *p, const float *vf, uint32_t dv, uint32_t a, uint32_t b)
{
	uint32_t d0 = 0;
	for (; d0 + 64 <= dv; d0 += 64) {
		__m256 r[8];
	#pragma GCC unroll 8
	for (int k = 0; k < 8; k++)
			r[k] = _mm256_loadu_ps(acc + d0 + 8 * k);
		for (uint32_t i = a; i <= b; i++)
			fma_x8(r, _mm256_broadcast_ss(p + i), vf + (uint64_t)i * dv + d0);
	#pragma GCC unroll 8
	for (int k = 0; k < 8; k++)
			_mm256_storeu_ps(acc + d0 + 8 * k, r[k]);
	}
	for (; d0 + 8 <= dv; d0 += 8) {
		__m256 a0 = _mm256_loadu_ps(acc + d0);
		for (uint32_t i = a; i <= b; i++)
			a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + i), _mm256_loadu_ps(vf + (uint64_t)i * dv + d0), a0);
		_mm256_storeu_ps(acc + d0, a0);
	}
	for (; d0 < dv; d0++)
		for (uint32_t i = a; i <= b; i++)
			acc[d0] = __builtin_fmaf(p[i], vf[(uint64_t)i * dv + d0], acc[d0]);
}

/* max over sc[a..b] * scale of the reference's fmaxf chain (NaN-ignoring; -inf if all NaN),
 * writing the scaled scores back.  A multiply rounds the same in a vector lane. */
TILED_AVX2 static float scale_and_max(float *sc, float scale, uint32_t a, uint32_t b)
{
	const __m256 vs = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY);
	__m256 m = ninf;
	uint32_t i = a;
	for (; i + 8 <= b + 1; i += 8) {
		const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(sc + i), vs);
		_mm256_storeu_ps(sc + i, x);
		m = _mm256_max_ps(m, _mm256_blendv_ps(x, ninf, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
	}
	_Alignas(32) float l[8];
	_mm256_store_ps(l, m);
	float mx = -INFINITY;
	for (int k = 0; k < 8; k++)
		mx = l[k] > mx ? l[k] : mx;
	for (; i <= b; i++) {
		sc[i] *= scale;
		mx = max_as_fmaxf(mx, sc[i]);
	}
	return mx;
}

/* Up to TILED_ROWS consecutive query rows of one sequence, one head, of ggml's tiled flash
 * attention: each row gets exactly what attn_task_tiled computes for it (the same tiles, FMA
 * chains, roundings and order), but each tile of K and V is widened to f32 once for all the
 * rows, K transposed so that a row's scores run eight keys to a vector instead of one scalar
 * chain per key, and the V steps keep eight vectors of the accumulator in registers. */
TILED_AVX2 static void attn_block_tiled_avx2(const struct attn_job *j, uint32_t row0, uint32_t n_rows, uint32_t h,
					     uint32_t thread)
{
	const struct hyd_attn_layer *L = j->L;
	const struct hyd_mixer_hparams *hp = &L->hp;
	const struct hyd_mixer_seq *s = &j->b->seqs[j->row_seq[row0]];
	const uint32_t kvh = h / (hp->n_head / hp->n_head_kv);
	const uint32_t dk = hp->head_dim_k, dv = hp->head_dim_v;
	const uint64_t dv_pad = ((uint64_t)dv + 31) & ~(uint64_t)31;
	float *kt = (float *)(j->acc + (uint64_t)thread * j->acc_stride + dv_pad);
	float *vf = kt + (uint64_t)FA_TILE_KV * dk;
	float *acc = vf + (uint64_t)FA_TILE_KV * dv;
	float *Ms = acc + (uint64_t)TILED_ROWS * dv, *Ss = Ms + TILED_ROWS;
	float scale = L->scale;
	if (hp->attn_softcap > 0)
		scale /= hp->attn_softcap;
	uint32_t first[TILED_ROWS], last[TILED_ROWS], lo = UINT32_MAX, hi = 0;
	for (uint32_t r = 0; r < n_rows; r++) {
		visible_span(j, row0 + r, &first[r], &last[r]);
		lo = first[r] < lo ? first[r] : lo;
		hi = last[r] > hi ? last[r] : hi;
		Ms[r] = -INFINITY, Ss[r] = 0;
	}
	memset(acc, 0, (uint64_t)n_rows * dv * sizeof(float));
	for (uint32_t t0 = lo - lo % FA_TILE_KV; t0 <= hi; t0 += FA_TILE_KV) {
		k_tile_transposed(j, s, kvh, dk, t0, lo, hi, kt);
		v_tile(j, s, kvh, dv, t0, lo, hi, vf);
		for (uint32_t r = 0; r < n_rows; r++) {
			/* the tiles this row's own loop visits */
			if (t0 + FA_TILE_KV <= first[r] - first[r] % FA_TILE_KV || t0 > last[r])
				continue;
			/* the row's keys in this tile: [ka, kb]; the others' scores are -inf, their
			 * weights expf(-inf) = +0, and the reference skips their V rows */
			const uint32_t ka = first[r] > t0 ? first[r] - t0 : 0;
			const uint32_t kb = last[r] - t0 < FA_TILE_KV - 1 ? last[r] - t0 : FA_TILE_KV - 1;
			_Alignas(32) float sc[FA_TILE_KV];
			scores_row(j->q32 + (uint64_t)(row0 + r) * L->q_dim + (uint64_t)h * dk, kt, dk, sc);
			float tmax;
			if (hp->attn_softcap > 0) {
				tmax = -INFINITY;
				for (uint32_t i = ka; i <= kb; i++) {
					sc[i] = tanhf(sc[i] * scale) * hp->attn_softcap;
					tmax = max_as_fmaxf(tmax, sc[i]);
				}
			} else {
				tmax = scale_and_max(sc, scale, ka, kb);
			}
			if (tmax == -INFINITY)
				continue;
			float *a = acc + (uint64_t)r * dv;
			const float mnew = fmaxf(Ms[r], tmax);
			if (mnew > Ms[r]) {
				const float ms = expf(Ms[r] - mnew);
				const __m256 vms = _mm256_set1_ps(ms);
				uint32_t d = 0;
				for (; d + 8 <= dv; d += 8)
					_mm256_storeu_ps(a + d, _mm256_mul_ps(_mm256_loadu_ps(a + d), vms));
				for (; d < dv; d++)
					a[d] *= ms;
				Ss[r] *= ms;
			}
			Ms[r] = mnew;
			_Alignas(32) float e[FA_TILE_KV] = { 0 };
			for (uint32_t i = ka; i <= kb; i++)
				e[i] = expf(sc[i] - mnew);
			double sum = 0;
			for (uint32_t i = 0; i < FA_TILE_KV; i += 16)
				sum += hsum16_avx2(e + i);
			Ss[r] += (float)sum;
			pv_steps(a, e, vf, dv, ka, kb);
		}
	}
	for (uint32_t r = 0; r < n_rows; r++) {
		float *o = j->o + (uint64_t)(row0 + r) * hp->n_head * dv + (uint64_t)h * dv;
		const float *a = acc + (uint64_t)r * dv;
		const float inv = Ss[r] == 0 ? 0 : 1.0f / Ss[r];
		for (uint32_t d = 0; d < dv; d++)
			o[d] = a[d] * inv;
	}
}

#endif

#if defined(__x86_64__)
/* The AVX2 tiled path computes exactly what attn_task_tiled computes (same chains, same
 * order, one rounding per FMA); HYD_SIMD=scalar selects the reference. */
static bool tiled_use_avx2(void)
{
	/* decided on first use, by whichever pool thread comes first: racing threads compute the
	 * same value, but the word is shared, so it is read and written atomically */
	static int use = -1;
	int u = __atomic_load_n(&use, __ATOMIC_RELAXED);
	if (u < 0) {
		const char *cap = getenv("HYD_SIMD");
		__builtin_cpu_init();
		u = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
		    !(cap && !strcmp(cap, "scalar"));
		__atomic_store_n(&use, u, __ATOMIC_RELAXED);
	}
	return u;
}
#endif

static void attn_task(void *arg, uint32_t task, uint32_t thread);

/* Pool task g: the (row, head) tasks of its consecutive run, one after another. */
static void attn_group(void *arg, uint32_t g, uint32_t thread)
{
	const struct attn_job *j = arg;
	for (uint32_t t = (uint32_t)((uint64_t)g * j->n_tasks / j->n_groups);
	     t < (uint32_t)((uint64_t)(g + 1) * j->n_tasks / j->n_groups); t++)
		attn_task(arg, t, thread);
}

/* One task = one (row, head).  This is ggml's CPU flash attention (llama.cpp's default), so that
 * greedy decoding makes llama.cpp's choices on near-ties: q rounded to f16, q.k in ggml's f16 dot
 * order, online softmax in f32, and the weighted sum of V rows accumulated in f16. */
static void attn_task(void *arg, uint32_t task, uint32_t thread)
{
	const struct attn_job *j = arg;
	const struct hyd_attn_layer *L = j->L;
	const struct hyd_mixer_hparams *hp = &L->hp;
	const uint32_t row = task / hp->n_head, h = task % hp->n_head;
	if (j->tiled[row]) {
#if defined(__x86_64__)
		if (tiled_use_avx2() && L->hp.head_dim_k <= TILED_MAX_DK) {
			/* the first row of each block of TILED_ROWS rows of its sequence takes the
			 * block; the other rows' tasks are empty */
			const struct hyd_mixer_seq *s = &j->b->seqs[j->row_seq[row]];
			const uint32_t k = row - s->row0;
			if (k % TILED_ROWS == 0)
				attn_block_tiled_avx2(j, row, s->n_rows - k < TILED_ROWS ? s->n_rows - k : TILED_ROWS, h,
						      thread);
			return;
		}
#endif
		attn_task_tiled(j, row, h, thread);
		return;
	}
	const struct hyd_mixer_seq *s = &j->b->seqs[j->row_seq[row]];
	const struct hyd_state_limits *lim = j->b->limits;
	const uint32_t p = s->pos + (row - s->row0);
	uint32_t first = 0;
	if (L->mode == HYD_KV_RING && p + 1 > hp->window)
		first = p + 1 - hp->window;
	const uint32_t kvh = h / (hp->n_head / hp->n_head_kv);
	const uint32_t dk = hp->head_dim_k, dv = hp->head_dim_v;
	const uint16_t *q = j->q + (uint64_t)row * L->q_dim + (uint64_t)h * dk;
	uint16_t *acc = j->acc + (uint64_t)thread * j->acc_stride;
	memset(acc, 0, dv * sizeof(uint16_t));
	float sum = 0, mx = -INFINITY;
	/* ggml's loop is per key: score, online-softmax update, then scale and add into the f16
	 * accumulator.  The accumulator never feeds back into the scores, so keys are taken a
	 * chunk at a time: all the chunk's scores (four keys per call where their rows are
	 * evenly spaced, which is the same bits), the softmax updates in key order, then the
	 * chunk's accumulator steps in one call that keeps the accumulator in registers. */
	const uint16_t *kr[DECODE_CHUNK], *vr[DECODE_CHUNK];
	float sc[DECODE_CHUNK], ms[DECODE_CHUNK], vs[DECODE_CHUNK];
	for (uint32_t t0 = first; t0 <= p; t0 += DECODE_CHUNK) {
		const uint32_t n = p - t0 + 1 < DECODE_CHUNK ? p - t0 + 1 : DECODE_CHUNK;
		for (uint32_t i = 0; i < n; i++) {
			kr[i] = kv_row(L, s, lim, t0 + i, 0) + (uint64_t)kvh * dk;
			vr[i] = kv_row(L, s, lim, t0 + i, 1) + (uint64_t)kvh * dv;
		}
		uint32_t i = 0;
		if (j->dot4)
			for (; i + 4 <= n; i += 4) {
				/* rows may lie in different pages: compare addresses, not pointers */
				const uintptr_t r0 = (uintptr_t)kr[i], r1 = (uintptr_t)kr[i + 1];
				const uintptr_t r2 = (uintptr_t)kr[i + 2], r3 = (uintptr_t)kr[i + 3];
				if (r2 - r1 == r1 - r0 && r3 - r2 == r1 - r0)
					j->dot4(dk, kr[i], (int64_t)(r1 - r0), q, sc + i);
				else
					for (uint32_t k = i; k < i + 4; k++)
						sc[k] = j->dot(dk, kr[k], q);
			}
		for (; i < n; i++)
			sc[i] = j->dot(dk, kr[i], q);
		for (i = 0; i < n; i++) {
			float v = sc[i] * L->scale;
			if (hp->attn_softcap > 0)
				v = hp->attn_softcap * tanhf(v / hp->attn_softcap);
			ms[i] = 1.0f, vs[i] = 1.0f;
			if (v > mx) {
				ms[i] = expf(mx - v);
				mx = v;
			} else {
				vs[i] = expf(v - mx);
			}
			sum = sum * ms[i] + vs[i];
		}
		hyd_f16acc_steps(acc, vr, ms, vs, n, dv);
	}
	float *o = j->o + (uint64_t)row * hp->n_head * dv + (uint64_t)h * dv;
	const float inv = 1.0f / sum;
	for (uint32_t d = 0; d < dv; d++)
		o[d] = hyd_fp16_to_fp32(acc[d]) * inv;
}

static void add_bias(float *x, const float *b, uint32_t n_rows, uint32_t dim)
{
	if (!b)
		return;
	for (uint32_t r = 0; r < n_rows; r++)
		for (uint32_t i = 0; i < dim; i++)
			x[(uint64_t)r * dim + i] += b[i];
}

int hyd__attn_forward(const void *layer, const struct hyd_mixer_batch *b)
{
	const struct hyd_attn_layer *L = layer;
	const struct hyd_mixer_hparams *hp = &L->hp;
	const struct hyd_state_limits *lim = b->limits;
	const uint32_t n = b->n_rows;
	const uint64_t o_dim = (uint64_t)hp->n_head * hp->head_dim_v;
	const uint32_t n_threads = b->par ? b->par->n_threads : 1;
	const struct hyd_type_traits *f16 = hyd_type_traits(HYD_TYPE_F16);
	if (hyd__attn_scratch_size(L, lim, n, n_threads) > b->scratch_bytes)
		return -ENOBUFS;
	float *q = b->scratch;
	float *k = q + (uint64_t)n * L->q_dim;
	float *v = k + (uint64_t)n * L->k_dim;
	float *o = v + (uint64_t)n * L->v_dim;
	uint16_t *q16 = (uint16_t *)(o + (uint64_t)n * o_dim);
	uint16_t *acc = q16 + (((uint64_t)n * L->q_dim + 1) & ~(uint64_t)1);
	uint32_t row_seq_small[64];
	uint8_t alone_small[64];
	uint32_t *row_seq = n <= 64 ? row_seq_small : (uint32_t *)hyd_malloc(n * sizeof(uint32_t));
	uint8_t *alone = n <= 64 ? alone_small : (uint8_t *)hyd_malloc(n);
	uint8_t tiled_small[64];
	uint8_t *tiled = n <= 64 ? tiled_small : (uint8_t *)hyd_malloc(n);
	int r = -ENOMEM;
	if (!row_seq || !alone || !tiled)
		goto out;
	for (uint32_t si = 0; si < b->n_seqs; si++) {
		const struct hyd_mixer_seq *s = &b->seqs[si];
		/* HYD_SEQ_STATE_IN_PLACE concerns double-buffered state, which attention has none of */
		if ((s->flags & ~HYD_SEQ_FLAGS_KNOWN) || s->row0 + s->n_rows > n || s->n_rows > lim->max_chunk ||
		    s->pos + s->n_rows > lim->max_ctx ||
		    (L->mode == HYD_KV_PAGED &&
		     (uint64_t)s->n_pages * lim->page_tokens < (uint64_t)s->pos + s->n_rows)) {
			r = -EINVAL;
			goto out;
		}
		for (uint32_t i = 0; i < s->n_rows; i++) {
			row_seq[s->row0 + i] = si;
			alone[s->row0 + i] = s->n_rows == 1;
			tiled[s->row0 + i] = s->n_rows >= FA_TILE_Q;
		}
	}
	{
		const struct hyd_tensor *const w[3] = { L->wq, L->wk, L->wv };
		float *const y[3] = { q, k, v };
		const int64_t ld[3] = { L->q_dim, L->k_dim, L->v_dim };
		if ((r = hyd_matmul_multi(b->par, 3, w, b->x, hp->n_embd, y, ld, n, alone)))
			goto out;
	}
	add_bias(q, L->bq, n, L->q_dim);
	add_bias(k, L->bk, n, L->k_dim);
	add_bias(v, L->bv, n, L->v_dim);
	for (uint32_t row = 0; row < n; row++) {
		const struct hyd_mixer_seq *s = &b->seqs[row_seq[row]];
		const uint32_t p = s->pos + (row - s->row0);
		float *qr = q + (uint64_t)row * L->q_dim, *kr = k + (uint64_t)row * L->k_dim;
		if (L->q_norm)
			for (uint32_t h = 0; h < hp->n_head; h++)
				hyd_rmsnorm(qr + h * hp->head_dim_k, qr + h * hp->head_dim_k, L->q_norm,
					    hp->head_dim_k, hp->norm_eps);
		if (L->k_norm)
			for (uint32_t h = 0; h < hp->n_head_kv; h++)
				hyd_rmsnorm(kr + h * hp->head_dim_k, kr + h * hp->head_dim_k, L->k_norm,
					    hp->head_dim_k, hp->norm_eps);
		hyd_rope(qr, hp->n_head, hp->head_dim_k, hp->n_rot, p, hp->rope_freq_base, hp->rope_freq_scale,
			 hp->rope_type);
		hyd_rope(kr, hp->n_head_kv, hp->head_dim_k, hp->n_rot, p, hp->rope_freq_base,
			 hp->rope_freq_scale, hp->rope_type);
		/* store this position's K and V: positions >= the committed count are free to write */
		f16->from_float(kr, kv_row(L, s, lim, p, 0), L->k_dim);
		f16->from_float(v + (uint64_t)row * L->v_dim, kv_row(L, s, lim, p, 1), L->v_dim);
	}
	f16->from_float(q, q16, (int64_t)n * L->q_dim);
	struct attn_job j = {
		.L = L, .b = b, .q = q16, .o = o, .acc = acc, .acc_stride = acc_halves(L), .row_seq = row_seq,
		.dot = f16->vec_dot, .dot4 = f16->vec_dot4, .q32 = q, .tiled = tiled,
	};
	const uint32_t tasks = n * hp->n_head;
	/* scores are computed against every visible position: skip threading for tiny work.  At
	 * ~30 ns per (head, key) with the chunked decode kernel, splitting pays for the fork and
	 * join (~1-2 us) from about a dozen keys on for a 12-head model (2^13 = keys * heads *
	 * head size); below, decode attention would leave the other cores idle. */
	uint64_t work = 0;
	for (uint32_t si = 0; si < b->n_seqs; si++)
		work += (uint64_t)b->seqs[si].n_rows * (b->seqs[si].pos + b->seqs[si].n_rows);
	work *= (uint64_t)hp->n_head * hp->head_dim_k;
	/* Decode (one row per session) on T threads: T pool tasks of consecutive heads, as the
	 * SSM layers do (hyd__ssm_run_units): one claim of the shared task counter per
	 * thread instead of one per head, 0.4-1.8 % faster two-thread decode of llama-125m
	 * (alternate tokens, docs/PERFORMANCE.md).  Prefill's tasks, whose cost grows with the
	 * row, stay one per (row, head) to balance. */
	j.n_tasks = tasks;
	j.n_groups = b->par && n == b->n_seqs && b->par->n_threads > 1 && b->par->n_threads < tasks ? b->par->n_threads
												     : tasks;
	if (b->par && tasks > 1 && work >= (1u << 13))
		b->par->run(b->par->ctx, j.n_groups, j.n_groups < tasks ? attn_group : attn_task, &j);
	else
		for (uint32_t t = 0; t < tasks; t++)
			attn_task(&j, t, 0);
	r = hyd_matmul_rows(b->par, L->wo, o, (int64_t)o_dim, b->y, hp->n_embd, n, alone);
	if (!r)
		add_bias(b->y, L->bo, n, hp->n_embd);
out:
	if (row_seq != row_seq_small)
		hyd_free(row_seq);
	if (alone != alone_small)
		hyd_free(alone);
	if (tiled != tiled_small)
		hyd_free(tiled);
	return r;
}
