/* See ssm.h. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/kernels.h"
#include "engine/types.h"
#include "plugins/ssm/ssm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#endif

void hyd__ssm_log(const struct hyd_plugin_support *sup, enum hyd_log_level level, const char *fmt, ...)
{
	if (!sup || !sup->log)
		return;
	va_list ap;
	va_start(ap, fmt);
	sup->log(sup->log_ctx, level, fmt, ap);
	va_end(ap);
}

int hyd__ssm_matrix(const struct hyd_layer_desc *d, const struct hyd_plugin_support *sup, const char *suffix,
		    int64_t n_in, int64_t n_out, const struct hyd_tensor **ret)
{
	const struct hyd_tensor *t = d->tensor(d, suffix);
	if (!t) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "layer %u: missing tensor blk.%u.%s", d->hp->layer, d->hp->layer,
			     suffix);
		return -EINVAL;
	}
	if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != 1 || t->ne[3] != 1) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: shape {%lld, %lld, %lld, %lld} but the hyper-parameters need {%lld, %lld}",
			     t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
			     (long long)t->ne[3], (long long)n_in, (long long)n_out);
		return -EINVAL;
	}
	if (!hyd_type_computable(t->type) || hyd_row_size(t->type, n_in) < 0) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: tensor type %s is not supported for rows of %lld", t->name,
			     hyd_type_name(t->type), (long long)n_in);
		return -ENOTSUP;
	}
	if (t->nbytes < (uint64_t)hyd_row_size(t->type, n_in) * (uint64_t)n_out) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: %llu bytes of data, too few for its shape", t->name,
			     (unsigned long long)t->nbytes);
		return -EINVAL;
	}
	*ret = t;
	return 0;
}

int hyd__ssm_f32(const struct hyd_layer_desc *d, const struct hyd_plugin_support *sup, const char *suffix,
		 int64_t ne0, int64_t ne1, bool required, const float **ret)
{
	const struct hyd_tensor *t = d->tensor(d, suffix);
	if (!t) {
		if (!required) {
			*ret = NULL;
			return 0;
		}
		hyd__ssm_log(sup, HYD_LOG_ERROR, "layer %u: missing tensor blk.%u.%s", d->hp->layer, d->hp->layer,
			     suffix);
		return -EINVAL;
	}
	/* a per-head vector may be stored as {1, n} (llama.cpp's converter) or as {n} */
	bool shape_ok = t->ne[2] == 1 && t->ne[3] == 1 &&
			((t->ne[0] == ne0 && t->ne[1] == ne1) || (ne0 == 1 && t->ne[0] == ne1 && t->ne[1] == 1));
	if (!shape_ok) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: shape {%lld, %lld, %lld, %lld} but the hyper-parameters need {%lld, %lld}",
			     t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
			     (long long)t->ne[3], (long long)ne0, (long long)ne1);
		return -EINVAL;
	}
	if (t->type != HYD_TYPE_F32) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: type %s, but small SSM tensors must be F32", t->name,
			     hyd_type_name(t->type));
		return -ENOTSUP;
	}
	if (t->nbytes < (uint64_t)(ne0 * ne1) * sizeof(float) || ((uintptr_t)t->data & 3)) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: data too short or misaligned", t->name);
		return -EINVAL;
	}
	*ret = t->data;
	return 0;
}

#define SSM_PARALLEL_MIN_WORK (1u << 17)

void hyd__ssm_run(const struct hyd_parallel *par, uint32_t n, hyd_task_fn fn, void *arg, uint64_t work)
{
	if (par && par->run && par->n_threads > 1 && n > 1 && work >= SSM_PARALLEL_MIN_WORK) {
		par->run(par->ctx, n, fn, arg);
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		fn(arg, i, 0);
}

void hyd__ssm_conv(const float *in, int64_t ld_in, float *out, int64_t ld_out, uint32_t n_rows,
		   const float *w, const float *bias, uint32_t d_conv, const float *tail_src, float *tail_dst,
		   uint32_t c0, uint32_t c1)
{
	const uint32_t k1 = d_conv - 1;
	for (uint32_t c = c0; c < c1; c++) {
		/* win[0..k1) are the k1 previous inputs (oldest first), win[k1] the current one */
		float win[HYD_SSM_MAX_CONV];
		const float *wc = w + (uint64_t)c * d_conv;
		const float b = bias ? bias[c] : 0.0f;
		memcpy(win, tail_src + (uint64_t)c * k1, k1 * sizeof(float));
		for (uint32_t r = 0; r < n_rows; r++) {
			win[k1] = in[(int64_t)r * ld_in + c];
			float acc = b;
			for (uint32_t k = 0; k < d_conv; k++)
				acc += wc[k] * win[k];
			out[(int64_t)r * ld_out + c] = hyd__ssm_silu(acc);
			for (uint32_t k = 0; k < k1; k++)
				win[k] = win[k + 1];
		}
		memcpy(tail_dst + (uint64_t)c * k1, win, k1 * sizeof(float));
	}
}

int hyd__ssm_check_batch(const struct hyd_mixer_batch *b)
{
	if (!b || !b->seqs || !b->x || !b->y || (b->n_seqs && !b->limits))
		return -EINVAL;
	for (uint32_t i = 0; i < b->n_seqs; i++) {
		const struct hyd_mixer_seq *s = &b->seqs[i];
		if (!s->state || s->state_index > 1 || s->row0 > b->n_rows || s->n_rows > b->n_rows - s->row0 ||
		    s->n_rows > b->limits->max_chunk)
			return -EINVAL;
	}
	return 0;
}

static float update_dot_scalar(float *h, const float *a, float dt, float bx, const float *bv, const float *c,
			       uint32_t n)
{
	float y = 0.0f;
	for (uint32_t i = 0; i < n; i++) {
		h[i] = expf(dt * a[i]) * h[i] + bx * bv[i];
		y += h[i] * c[i];
	}
	return y;
}

static float decay_dot_scalar(float *s, float da, float bx, const float *bv, const float *c, uint32_t n)
{
	float y = 0.0f;
	for (uint32_t i = 0; i < n; i++) {
		s[i] = s[i] * da + bx * bv[i];
		y += s[i] * c[i];
	}
	return y;
}

#if defined(__x86_64__)
AVX2 static float hsum8(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

AVX2 static float decay_dot_avx2(float *s, float da, float bx, const float *bv, const float *c, uint32_t n)
{
	const __m256 vda = _mm256_set1_ps(da), vbx = _mm256_set1_ps(bx);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
	uint32_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256 s0 = _mm256_mul_ps(_mm256_loadu_ps(s + i), vda);
		__m256 s1 = _mm256_mul_ps(_mm256_loadu_ps(s + i + 8), vda);
		s0 = _mm256_fmadd_ps(vbx, _mm256_loadu_ps(bv + i), s0);
		s1 = _mm256_fmadd_ps(vbx, _mm256_loadu_ps(bv + i + 8), s1);
		_mm256_storeu_ps(s + i, s0);
		_mm256_storeu_ps(s + i + 8, s1);
		acc0 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(c + i), acc0);
		acc1 = _mm256_fmadd_ps(s1, _mm256_loadu_ps(c + i + 8), acc1);
	}
	for (; i + 8 <= n; i += 8) {
		__m256 s0 = _mm256_fmadd_ps(vbx, _mm256_loadu_ps(bv + i), _mm256_mul_ps(_mm256_loadu_ps(s + i), vda));
		_mm256_storeu_ps(s + i, s0);
		acc0 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(c + i), acc0);
	}
	float y = hsum8(_mm256_add_ps(acc0, acc1));
	if (i < n)
		y += decay_dot_scalar(s + i, da, bx, bv + i, c + i, n - i);
	return y;
}

/* exp(x) for 8 lanes: x = k ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial, 2^k
 * through the exponent bits.  Relative error ~2 ulp over the range, far inside the tolerance of
 * a recurrence that multiplies by values <= 1. */
AVX2 static inline __m256 exp8(__m256 x)
{
	x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
	const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
					 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
	r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
	__m256 p = _mm256_set1_ps(1.9875691500e-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
	p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
	const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

AVX2 static float update_dot_avx2(float *h, const float *a, float dt, float bx, const float *bv, const float *c,
				  uint32_t n)
{
	const __m256 vdt = _mm256_set1_ps(dt), vbx = _mm256_set1_ps(bx);
	__m256 acc = _mm256_setzero_ps();
	uint32_t i = 0;
	for (; i + 8 <= n; i += 8) {
		const __m256 da = exp8(_mm256_mul_ps(vdt, _mm256_loadu_ps(a + i)));
		__m256 hv = _mm256_mul_ps(da, _mm256_loadu_ps(h + i));
		hv = _mm256_fmadd_ps(vbx, _mm256_loadu_ps(bv + i), hv);
		_mm256_storeu_ps(h + i, hv);
		acc = _mm256_fmadd_ps(hv, _mm256_loadu_ps(c + i), acc);
	}
	float y = hsum8(acc);
	if (i < n)
		y += update_dot_scalar(h + i, a + i, dt, bx, bv + i, c + i, n - i);
	return y;
}
#endif

typedef float (*update_dot_fn)(float *, const float *, float, float, const float *, const float *, uint32_t);
typedef float (*decay_dot_fn)(float *, float, float, const float *, const float *, uint32_t);

static update_dot_fn update_dot_impl;
static decay_dot_fn decay_dot_impl;

static void pick_impls(void)
{
	update_dot_fn u = update_dot_scalar;
	decay_dot_fn d = decay_dot_scalar;
#if defined(__x86_64__)
	/* HYD_SIMD=scalar caps every kernel at the reference path (tests, benchmarks) */
	const char *cap = getenv("HYD_SIMD");
	__builtin_cpu_init();
	if ((!cap || strcmp(cap, "scalar")) && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
		u = update_dot_avx2;
		d = decay_dot_avx2;
	}
#endif
	__atomic_store_n(&decay_dot_impl, d, __ATOMIC_RELAXED);
	__atomic_store_n(&update_dot_impl, u, __ATOMIC_RELEASE);
}

float hyd__ssm_update_dot(float *h, const float *a, float dt, float bx, const float *bv, const float *c,
			  uint32_t d_state)
{
	update_dot_fn f = __atomic_load_n(&update_dot_impl, __ATOMIC_ACQUIRE);
	if (__builtin_expect(!f, 0)) {
		pick_impls();
		f = update_dot_impl;
	}
	return f(h, a, dt, bx, bv, c, d_state);
}

float hyd__ssm_decay_dot(float *s, float da, float bx, const float *bv, const float *c, uint32_t d_state)
{
	if (__builtin_expect(!__atomic_load_n(&update_dot_impl, __ATOMIC_ACQUIRE), 0))
		pick_impls();
	return __atomic_load_n(&decay_dot_impl, __ATOMIC_RELAXED)(s, da, bx, bv, c, d_state);
}

int hyd__ssm_matmul(const struct hyd_mixer_batch *b, const struct hyd_tensor *W, const float *X, int64_t ldx,
		    float *Y, int64_t ldy)
{
	const uint32_t n = b->n_rows;
	uint8_t small[64];
	uint8_t *alone = n <= sizeof(small) ? small : hyd_malloc(n);
	if (!alone)
		return -ENOMEM;
	memset(alone, 0, n);
	for (uint32_t s = 0; s < b->n_seqs; s++)
		for (uint32_t i = 0; i < b->seqs[s].n_rows; i++)
			alone[b->seqs[s].row0 + i] = b->seqs[s].n_rows == 1;
	int r = hyd_matmul_rows(b->par, W, X, ldx, Y, ldy, n, alone);
	if (alone != small)
		hyd_free(alone);
	return r;
}
