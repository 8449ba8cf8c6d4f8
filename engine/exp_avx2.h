/* exp in double precision for AVX2 lanes, rounded once to float, and the SiLU built on it:
 * shared by the engine's element-wise kernels (kernels.c) and the SSM plugin's activations
 * (plugins/ssm/ssm_kern.c).
 *
 * Rounding exp(x) once from double gives expf's correctly rounded result; glibc's expf
 * returns the same float for all but about 1 in 10^4 arguments, where it lands on the other
 * neighbour.  Callers that must match the scalar C exactly cannot use these. */
#ifndef HYD_ENGINE_EXP_AVX2_H
#define HYD_ENGINE_EXP_AVX2_H

#if defined(__x86_64__)
#include <immintrin.h>

#define HYD_EXP_AVX2 __attribute__((target("avx2,fma")))

/* exp(x) in double for 4 lanes, |x| <= 700: x = k ln2 + r, |r| <= ln2/2, exp(r) by its Taylor
 * series to r^12 (truncation < 2e-16 relative), 2^k through the exponent bits. */
HYD_EXP_AVX2 static inline __m256d hyd__exp4d(__m256d x)
{
	x = _mm256_min_pd(_mm256_max_pd(x, _mm256_set1_pd(-700.0)), _mm256_set1_pd(700.0));
	const __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)),
					  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	/* ln2 split so that k * LN2_HI is exact for |k| < 2^11 */
	__m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(0x1.62e42fefa3800p-1), x);
	r = _mm256_fnmadd_pd(k, _mm256_set1_pd(0x1.ef35793c76730p-45), r);
	/* sum r^i / i! for i <= 12, in Estrin's form (a short dependency chain) */
#define C(i) _mm256_set1_pd(1.0 / (i))
	const __m256d r2 = _mm256_mul_pd(r, r), r4 = _mm256_mul_pd(r2, r2), r8 = _mm256_mul_pd(r4, r4);
	const __m256d q0 = _mm256_fmadd_pd(r, _mm256_set1_pd(1.0), _mm256_set1_pd(1.0));
	const __m256d q1 = _mm256_fmadd_pd(r, C(6.0), C(2.0));
	const __m256d q2 = _mm256_fmadd_pd(r, C(120.0), C(24.0));
	const __m256d q3 = _mm256_fmadd_pd(r, C(5040.0), C(720.0));
	const __m256d q4 = _mm256_fmadd_pd(r, C(362880.0), C(40320.0));
	const __m256d q5 = _mm256_fmadd_pd(r, C(39916800.0), C(3628800.0));
	const __m256d u0 = _mm256_fmadd_pd(q1, r2, q0), u1 = _mm256_fmadd_pd(q3, r2, q2);
	const __m256d u2 = _mm256_fmadd_pd(q5, r2, q4);
	const __m256d v0 = _mm256_fmadd_pd(u1, r4, u0), v1 = _mm256_fmadd_pd(C(479001600.0), r4, u2);
	const __m256d p = _mm256_fmadd_pd(v1, r8, v0);
#undef C
	/* k + 1.5 * 2^52 holds k in its low mantissa bits */
	const __m256d magic = _mm256_set1_pd(6755399441055744.0);
	const __m256i ki = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(k, magic)), _mm256_castpd_si256(magic));
	return _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(p), _mm256_slli_epi64(ki, 52)));
}

/* expf for 8 lanes, rounded once from double */
HYD_EXP_AVX2 static inline __m256 hyd__expf8(__m256 x)
{
	const __m128 lo = _mm256_cvtpd_ps(hyd__exp4d(_mm256_cvtps_pd(_mm256_castps256_ps128(x))));
	const __m128 hi = _mm256_cvtpd_ps(hyd__exp4d(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))));
	return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

/* x / (1 + expf(-x)), in float, the form of the scalar SiLUs */
HYD_EXP_AVX2 static inline __m256 hyd__silu8(__m256 x)
{
	const __m256 e = hyd__expf8(_mm256_sub_ps(_mm256_setzero_ps(), x));
	return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

#endif

#endif
