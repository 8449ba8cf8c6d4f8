/* Horizontal sums of AVX vectors in one fixed order, shared by the engine's kernels
 * (quant_avx2.c) and the SSM plugin's (plugins/ssm/ssm_kern.c): a kernel that promises the
 * same bits as another must also sum its lanes in the same order, so there is one copy. */
#ifndef HYD_ENGINE_HSUM_AVX2_H
#define HYD_ENGINE_HSUM_AVX2_H

#if defined(__x86_64__)
#include <immintrin.h>

#define HYD_HSUM_AVX __attribute__((target("avx")))

/* The 8 lanes of v summed as (x0 + x2) + (x1 + x3) after folding the upper half onto the
 * lower one. */
HYD_HSUM_AVX static inline float hyd__hsum8_ps(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* hyd__hsum8_ps of four vectors at once: lane r of the result is hyd__hsum8_ps(vr) bit for
 * bit, the same additions in the same order done on a transposed 4 x 4 block. */
HYD_HSUM_AVX static inline __m128 hyd__hsum8x4_ps(__m256 v0, __m256 v1, __m256 v2, __m256 v3)
{
	__m128 s0 = _mm_add_ps(_mm256_castps256_ps128(v0), _mm256_extractf128_ps(v0, 1));
	__m128 s1 = _mm_add_ps(_mm256_castps256_ps128(v1), _mm256_extractf128_ps(v1, 1));
	__m128 s2 = _mm_add_ps(_mm256_castps256_ps128(v2), _mm256_extractf128_ps(v2, 1));
	__m128 s3 = _mm_add_ps(_mm256_castps256_ps128(v3), _mm256_extractf128_ps(v3, 1));
	_MM_TRANSPOSE4_PS(s0, s1, s2, s3);
	return _mm_add_ps(_mm_add_ps(s0, s2), _mm_add_ps(s1, s3));
}
#endif

#endif
