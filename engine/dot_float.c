/* F32, F16 and BF16 weights: conversions and dot products against f32 activations.
 * The AVX2 versions are compiled with target attributes and chosen at run time. */
#include "config.h"

#include <string.h>

#include "engine/types_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define HYD_X86 1
#endif

static void f32_to_float(const void *src, float *dst, int64_t n)
{
	memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f32_from_float(const float *src, void *dst, int64_t n)
{
	memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_to_float(const void *src, float *dst, int64_t n)
{
	const uint16_t *h = src;
	for (int64_t i = 0; i < n; i++)
		dst[i] = hyd_fp16_to_fp32(h[i]);
}

static void f16_from_float(const float *src, void *dst, int64_t n)
{
	uint16_t *h = dst;
	for (int64_t i = 0; i < n; i++)
		h[i] = hyd_fp32_to_fp16(src[i]);
}

static void bf16_to_float(const void *src, float *dst, int64_t n)
{
	const uint16_t *h = src;
	for (int64_t i = 0; i < n; i++)
		dst[i] = hyd_bf16_to_fp32(h[i]);
}

static void bf16_from_float(const float *src, void *dst, int64_t n)
{
	uint16_t *h = dst;
	for (int64_t i = 0; i < n; i++)
		h[i] = hyd_fp32_to_bf16(src[i]);
}

/* Scalar references accumulate in double so they are a trustworthy yardstick. */
static float f32_dot_ref(int64_t n, const void *w, const void *x)
{
	const float *a = w, *b = x;
	double s = 0;
	for (int64_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return (float)s;
}

static float f16_dot_ref(int64_t n, const void *w, const void *x)
{
	const uint16_t *a = w;
	const float *b = x;
	double s = 0;
	for (int64_t i = 0; i < n; i++)
		s += (double)hyd_fp16_to_fp32(a[i]) * b[i];
	return (float)s;
}

static float bf16_dot_ref(int64_t n, const void *w, const void *x)
{
	const uint16_t *a = w;
	const float *b = x;
	double s = 0;
	for (int64_t i = 0; i < n; i++)
		s += (double)hyd_bf16_to_fp32(a[i]) * b[i];
	return (float)s;
}

#ifdef HYD_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum256(__m256 v)
{
	__m128 lo = _mm256_castps256_ps128(v);
	__m128 hi = _mm256_extractf128_ps(v, 1);
	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
}

AVX2 static float f32_dot_avx2(int64_t n, const void *w, const void *x)
{
	const float *a = w, *b = x;
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	int64_t i = 0;
	for (; i + 32 <= n; i += 32) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
		s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
		s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
	float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

AVX2 static inline __m256 load_f16x8(const uint16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

AVX2 static float f16_dot_avx2(int64_t n, const void *w, const void *x)
{
	const uint16_t *a = w;
	const float *b = x;
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	int64_t i = 0;
	for (; i + 32 <= n; i += 32) {
		s0 = _mm256_fmadd_ps(load_f16x8(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(load_f16x8(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
		s2 = _mm256_fmadd_ps(load_f16x8(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
		s3 = _mm256_fmadd_ps(load_f16x8(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(load_f16x8(a + i), _mm256_loadu_ps(b + i), s0);
	float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
	for (; i < n; i++)
		s += hyd_fp16_to_fp32(a[i]) * b[i];
	return s;
}

AVX2 static inline __m256 load_bf16x8(const uint16_t *p)
{
	__m128i h = _mm_loadu_si128((const __m128i *)p);
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2 static float bf16_dot_avx2(int64_t n, const void *w, const void *x)
{
	const uint16_t *a = w;
	const float *b = x;
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	int64_t i = 0;
	for (; i + 32 <= n; i += 32) {
		s0 = _mm256_fmadd_ps(load_bf16x8(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(load_bf16x8(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
		s2 = _mm256_fmadd_ps(load_bf16x8(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
		s3 = _mm256_fmadd_ps(load_bf16x8(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(load_bf16x8(a + i), _mm256_loadu_ps(b + i), s0);
	float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
	for (; i < n; i++)
		s += hyd_bf16_to_fp32(a[i]) * b[i];
	return s;
}
#endif

void hyd__float_register(struct hyd_type_traits *tab, enum hyd_simd level)
{
	struct hyd_type_traits *f32 = &tab[HYD_TYPE_F32], *f16 = &tab[HYD_TYPE_F16],
			       *bf16 = &tab[HYD_TYPE_BF16];
	f32->to_float = f32_to_float;
	f32->from_float = f32_from_float;
	f32->vec_dot_type = HYD_TYPE_F32;
	f32->vec_dot = f32->vec_dot_ref = f32_dot_ref;
	f16->to_float = f16_to_float;
	f16->from_float = f16_from_float;
	f16->vec_dot_type = HYD_TYPE_F32;
	f16->vec_dot = f16->vec_dot_ref = f16_dot_ref;
	bf16->to_float = bf16_to_float;
	bf16->from_float = bf16_from_float;
	bf16->vec_dot_type = HYD_TYPE_F32;
	bf16->vec_dot = bf16->vec_dot_ref = bf16_dot_ref;
#ifdef HYD_X86
	if (level >= HYD_SIMD_AVX2) {
		f32->vec_dot = f32_dot_avx2;
		f16->vec_dot = f16_dot_avx2;
		bf16->vec_dot = bf16_dot_avx2;
	}
#else
	(void)level;
#endif
}
