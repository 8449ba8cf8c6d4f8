/* Element-wise and reduction kernels.  These are cheap next to the matmuls, so they are plain
 * C that the compiler vectorises, except dot/axpy and attention's f16 accumulator steps, which
 * run per (query, key), and SiLU, whose libm call per element the compiler cannot vectorise:
 * those get an AVX2 path picked at run time. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/exp_avx2.h"
#include "engine/kernels.h"
#include "engine/types_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#endif

const float *hyd_tensor_f32(const struct hyd_tensor *t)
{
	return t && t->type == HYD_TYPE_F32 ? t->data : NULL;
}

int hyd_tensor_row(const struct hyd_tensor *W, int64_t r, float *out)
{
	const struct hyd_type_traits *tr = hyd_type_traits(W->type);
	if (!tr || !tr->to_float)
		return -ENOTSUP;
	int64_t rows = W->ne[1] * W->ne[2] * W->ne[3];
	if (r < 0 || r >= rows)
		return -ERANGE;
	int64_t rs = hyd_row_size(W->type, W->ne[0]);
	if (rs < 0)
		return (int)rs;
	tr->to_float((const char *)W->data + r * rs, out, W->ne[0]);
	return 0;
}

void hyd_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
	/* squares rounded to float, summed in double: ggml's order */
	double ss = 0;
	for (int64_t i = 0; i < n; i++)
		ss += (double)(x[i] * x[i]);
	const float scale = 1.0f / sqrtf((float)(ss / n) + eps);
	if (w) {
		for (int64_t i = 0; i < n; i++)
			y[i] = x[i] * scale * w[i];
	} else {
		for (int64_t i = 0; i < n; i++)
			y[i] = x[i] * scale;
	}
}

void hyd_rope(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, float base,
	      float freq_scale, enum hyd_rope_type type)
{
	if (type == HYD_ROPE_NONE || n_rot <= 0)
		return;
	const int64_t half = n_rot / 2;
	float cs[512], sn[512]; /* n_rot <= 1024 checked by the plugins at bind */
	/* the angles are stepped by repeated multiplication in float, as ggml does */
	const float step = powf(base, -2.0f / (float)n_rot);
	float theta = (float)pos;
	for (int64_t i = 0; i < half && i < 512; i++) {
		cs[i] = cosf(freq_scale * theta);
		sn[i] = sinf(freq_scale * theta);
		theta *= step;
	}
	for (int64_t h = 0; h < n_head; h++) {
		float *v = x + h * head_dim;
		for (int64_t i = 0; i < half && i < 512; i++) {
			int64_t a, b;
			if (type == HYD_ROPE_NORM) {
				a = 2 * i;
				b = 2 * i + 1;
			} else {
				a = i;
				b = i + half;
			}
			const float x0 = v[a], x1 = v[b];
			v[a] = x0 * cs[i] - x1 * sn[i];
			v[b] = x0 * sn[i] + x1 * cs[i];
		}
	}
}

void hyd_softmax(float *x, int64_t n)
{
	float mx = -INFINITY;
	for (int64_t i = 0; i < n; i++)
		if (x[i] > mx)
			mx = x[i];
	double sum = 0;
	for (int64_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - mx);
		sum += x[i];
	}
	const float inv = (float)(1.0 / sum);
	for (int64_t i = 0; i < n; i++)
		x[i] *= inv;
}

static float dot_f32_ref(const float *a, const float *b, int64_t n)
{
	float s = 0;
	for (int64_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

static void axpy_f32_ref(float *y, float a, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] += a * x[i];
}

#ifdef AVX2
AVX2 static float dot_f32_avx2(const float *a, const float *b, int64_t n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = s0;
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
	s0 = _mm256_add_ps(s0, s1);
	__m128 lo = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	float s = _mm_cvtss_f32(lo);
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

AVX2 static void axpy_f32_avx2(float *y, float a, const float *x, int64_t n)
{
	const __m256 va = _mm256_set1_ps(a);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
	for (; i < n; i++)
		y[i] += a * x[i];
}
#endif

/* One rounding of y + x * a (FMA) per element, as ggml_vec_mad_f16 does with FMA hardware. */
void hyd__mad_f16_ref(uint16_t *y, const uint16_t *x, float a, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = hyd_fp32_to_fp16(fmaf(hyd_fp16_to_fp32(x[i]), a, hyd_fp16_to_fp32(y[i])));
}

void hyd__scale_f16_ref(uint16_t *y, float a, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = hyd_fp32_to_fp16(hyd_fp16_to_fp32(y[i]) * a);
}

void hyd__f16acc_steps_ref(uint16_t *acc, const uint16_t *const *v, const float *ms, const float *vs, int64_t n,
			   int64_t dv)
{
	for (int64_t t = 0; t < n; t++) {
		if (ms[t] != 1.0f)
			hyd__scale_f16_ref(acc, ms[t], dv);
		hyd__mad_f16_ref(acc, v[t], vs[t], dv);
	}
}

#ifdef AVX2
#define F16C __attribute__((target("avx2,fma,f16c")))

/* a float rounded to f16 and back: what storing and reloading an f16 accumulator does */
F16C static inline __m256 round_f16(__m256 x)
{
	return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
}

/* hyd_f16acc_steps on W * 8 accumulator values from acc + d, held in W registers. */
F16C static inline __attribute__((always_inline)) void f16acc_slab(uint16_t *acc, const uint16_t *const *v,
								   const float *ms, const float *vs, int64_t n,
								   int64_t d, const int W)
{
	__m256 a[8];
#pragma GCC unroll 8
	for (int k = 0; k < W; k++)
		a[k] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(acc + d + 8 * k)));
	for (int64_t t = 0; t < n; t++) {
		const uint16_t *vr = v[t] + d;
		if (ms[t] != 1.0f) {
			const __m256 m = _mm256_set1_ps(ms[t]);
#pragma GCC unroll 8
			for (int k = 0; k < W; k++)
				a[k] = round_f16(_mm256_mul_ps(a[k], m));
		}
		const __m256 s = _mm256_set1_ps(vs[t]);
#pragma GCC unroll 8
		for (int k = 0; k < W; k++)
			a[k] = round_f16(_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vr + 8 * k))),
							 s, a[k]));
	}
#pragma GCC unroll 8
	for (int k = 0; k < W; k++)
		_mm_storeu_si128((__m128i *)(acc + d + 8 * k), _mm256_cvtps_ph(a[k], _MM_FROUND_TO_NEAREST_INT));
}

F16C static void f16acc_steps_avx2(uint16_t *acc, const uint16_t *const *v, const float *ms, const float *vs,
				   int64_t n, int64_t dv)
{
	int64_t d = 0;
	for (; d + 64 <= dv; d += 64)
		f16acc_slab(acc, v, ms, vs, n, d, 8);
	for (; d + 8 <= dv; d += 8)
		f16acc_slab(acc, v, ms, vs, n, d, 1);
	if (d == dv)
		return;
	/* the last dv % 8 values: each value's steps are independent of the others' */
	for (int64_t t = 0; t < n; t++) {
		if (ms[t] != 1.0f)
			hyd__scale_f16_ref(acc + d, ms[t], dv - d);
		hyd__mad_f16_ref(acc + d, v[t] + d, vs[t], dv - d);
	}
}

#endif

#ifdef AVX2
/* SiLU was ~3 % of a one-thread decode with libm's expf per element (llama-125m Q4_K_M) */
AVX2 static void silu_avx2(float *x, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, hyd__silu8(_mm256_loadu_ps(x + i)));
	hyd__silu_ref(x + i, n - i);
}

/* 16 lanes, the same bits as silu_avx2 (hyd__silu16 is hyd__silu8's arithmetic; the SSM
 * plugin's tests hold the two to each other) */
HYD_EXP_AVX512 static void silu_avx512(float *x, int64_t n)
{
	int64_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(x + i, hyd__silu16(_mm512_loadu_ps(x + i)));
	silu_avx2(x + i, n - i);
}
#endif

static float (*dot_impl)(const float *, const float *, int64_t);
static void (*silu_impl)(float *, int64_t);
static void (*axpy_impl)(float *, float, const float *, int64_t);
static void (*f16acc_steps_impl)(uint16_t *, const uint16_t *const *, const float *, const float *, int64_t,
				 int64_t);
/* Set (release) once the pointers above are; the callers' fast path is one acquire load, a
 * plain load on x86, and pthread_once makes concurrent first callers wait for one choice. */
static atomic_bool impls_ready;
static pthread_once_t impls_once = PTHREAD_ONCE_INIT;

static void pick_impls(void)
{
	f16acc_steps_impl = hyd__f16acc_steps_ref;
	axpy_impl = axpy_f32_ref;
	silu_impl = hyd__silu_ref;
	dot_impl = dot_f32_ref;
#ifdef AVX2
	if (hyd__simd_detect() >= HYD_SIMD_AVX2) {
		f16acc_steps_impl = f16acc_steps_avx2;
		silu_impl = silu_avx2;
		axpy_impl = axpy_f32_avx2;
		dot_impl = dot_f32_avx2;
	}
	if (hyd__simd_detect() >= HYD_SIMD_AVX512)
		silu_impl = silu_avx512;
#endif
	atomic_store_explicit(&impls_ready, true, memory_order_release);
}

static inline void need_impls(void)
{
	if (__builtin_expect(!atomic_load_explicit(&impls_ready, memory_order_acquire), 0))
		pthread_once(&impls_once, pick_impls);
}

float hyd_dot_f32(const float *a, const float *b, int64_t n)
{
	need_impls();
	return dot_impl(a, b, n);
}

void hyd_axpy_f32(float *y, float a, const float *x, int64_t n)
{
	need_impls();
	axpy_impl(y, a, x, n);
}

void hyd_f16acc_steps(uint16_t *acc, const uint16_t *const *v, const float *ms, const float *vs, int64_t n,
		      int64_t dv)
{
	need_impls();
	f16acc_steps_impl(acc, v, ms, vs, n, dv);
}

void hyd__silu_ref(float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = x[i] / (1.0f + expf(-x[i]));
}

void hyd_silu(float *x, int64_t n)
{
	need_impls();
	silu_impl(x, n);
}

float hyd_gelu_tanh_ref(float x)
{
	const float c = 0.79788456080286535587989211986876f; /* sqrt(2/pi) */
	return 0.5f * x * (1.0f + tanhf(c * x * (1.0f + 0.044715f * x * x)));
}

/* ggml's CPU backend evaluates GELU through a table indexed by the input rounded to f16 and
 * holding f16 results; hyd does the same so that greedy decoding matches llama.cpp's. */
static uint16_t gelu_table[1 << 16];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static void gelu_table_init(void)
{
	for (uint32_t i = 0; i < (1u << 16); i++)
		gelu_table[i] = hyd_fp32_to_fp16(hyd_gelu_tanh_ref(hyd_fp16_to_fp32((uint16_t)i)));
}

void hyd_gelu_tanh(float *x, int64_t n)
{
	pthread_once(&gelu_once, gelu_table_init);
	for (int64_t i = 0; i < n; i++) {
		const float v = x[i];
		if (v <= -10.0f)
			x[i] = 0.0f;
		else if (v < 10.0f)
			x[i] = hyd_fp16_to_fp32(gelu_table[hyd_fp32_to_fp16(v)]);
	}
}

void hyd_gelu_erf(float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

float hyd_softplus(float x)
{
	return x > 20.0f ? x : log1pf(expf(x));
}
