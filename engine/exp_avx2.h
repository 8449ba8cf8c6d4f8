/* exp in double precision for AVX2 and AVX-512 lanes, rounded once to float, and the SiLU
 * built on it: shared by the engine's element-wise kernels (kernels.c) and the SSM plugin's
 * activations (plugins/ssm/ssm_kern.c).  The AVX-512 functions are the AVX2 ones' arithmetic
 * lane for lane, so the same bits.
 *
 * Rounding exp(x) once from double gives expf's correctly rounded result; glibc's expf
 * returns the same float for all but about 1 in 10^4 arguments, where it lands on the other
 * neighbour.  Callers that must match the scalar C exactly cannot use these. */
#ifndef HYD_ENGINE_EXP_AVX2_H
#define HYD_ENGINE_EXP_AVX2_H

#if defined(__x86_64__)
#include <immintrin.h>

#define HYD_EXP_AVX2 __attribute__((target("avx2,fma")))

/* exp(x) in double for the lanes of a V (PFX the intrinsics' prefix, VI its integer twin,
 * ROUND to nearest integer), |x| <= 700: x = k ln2 + r, |r| <= ln2/2, exp(r) by its Taylor
 * series to r^12 (truncation < 2e-16 relative), 2^k through the exponent bits.  One body for
 * every width, so each lane gets the same bits. */
#define HYD_EXP_PD(NAME, ATTR, V, VI, PFX, ROUND, CASTPI, CASTIP)                                        \
	ATTR static inline V NAME(V x)                                                                   \
	{                                                                                                \
		x = PFX##_min_pd(PFX##_max_pd(x, PFX##_set1_pd(-700.0)), PFX##_set1_pd(700.0));          \
		const V k = ROUND(PFX##_mul_pd(x, PFX##_set1_pd(1.4426950408889634)),                    \
				  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);                        \
		/* ln2 split so that k * LN2_HI is exact for |k| < 2^11 */                               \
		V r = PFX##_fnmadd_pd(k, PFX##_set1_pd(0x1.62e42fefa3800p-1), x);                        \
		r = PFX##_fnmadd_pd(k, PFX##_set1_pd(0x1.ef35793c76730p-45), r);                         \
		/* sum r^i / i! for i <= 12, in Estrin's form (a short dependency chain) */              \
		const V r2 = PFX##_mul_pd(r, r), r4 = PFX##_mul_pd(r2, r2), r8 = PFX##_mul_pd(r4, r4);    \
		const V q0 = PFX##_fmadd_pd(r, PFX##_set1_pd(1.0), PFX##_set1_pd(1.0));                  \
		const V q1 = PFX##_fmadd_pd(r, PFX##_set1_pd(1.0 / 6.0), PFX##_set1_pd(1.0 / 2.0));      \
		const V q2 = PFX##_fmadd_pd(r, PFX##_set1_pd(1.0 / 120.0), PFX##_set1_pd(1.0 / 24.0));   \
		const V q3 = PFX##_fmadd_pd(r, PFX##_set1_pd(1.0 / 5040.0), PFX##_set1_pd(1.0 / 720.0)); \
		const V q4 = PFX##_fmadd_pd(r, PFX##_set1_pd(1.0 / 362880.0), PFX##_set1_pd(1.0 / 40320.0)); \
		const V q5 = PFX##_fmadd_pd(r, PFX##_set1_pd(1.0 / 39916800.0), PFX##_set1_pd(1.0 / 3628800.0)); \
		const V u0 = PFX##_fmadd_pd(q1, r2, q0), u1 = PFX##_fmadd_pd(q3, r2, q2);                \
		const V u2 = PFX##_fmadd_pd(q5, r2, q4);                                                 \
		const V v0 = PFX##_fmadd_pd(u1, r4, u0);                                                 \
		const V v1 = PFX##_fmadd_pd(PFX##_set1_pd(1.0 / 479001600.0), r4, u2);                   \
		const V p = PFX##_fmadd_pd(v1, r8, v0);                                                  \
		/* k + 1.5 * 2^52 holds k in its low mantissa bits */                                    \
		const V magic = PFX##_set1_pd(6755399441055744.0);                                       \
		const VI ki = PFX##_sub_epi64(CASTPI(PFX##_add_pd(k, magic)), CASTPI(magic));            \
		return CASTIP(PFX##_add_epi64(CASTPI(p), PFX##_slli_epi64(ki, 52)));                      \
	}
HYD_EXP_PD(hyd__exp4d, HYD_EXP_AVX2, __m256d, __m256i, _mm256, _mm256_round_pd, _mm256_castpd_si256,
	   _mm256_castsi256_pd)

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

/* The same on 512-bit registers, lane for lane the same bits: 8 doubles, 16 floats */
#define HYD_EXP_AVX512 __attribute__((target("avx2,fma,avx512f,avx512dq")))

HYD_EXP_PD(hyd__exp8d, HYD_EXP_AVX512, __m512d, __m512i, _mm512, _mm512_roundscale_pd, _mm512_castpd_si512,
	   _mm512_castsi512_pd)

HYD_EXP_AVX512 static inline __m512 hyd__expf16(__m512 x)
{
	const __m256 lo = _mm512_cvtpd_ps(hyd__exp8d(_mm512_cvtps_pd(_mm512_castps512_ps256(x))));
	const __m256 hi = _mm512_cvtpd_ps(hyd__exp8d(_mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1))));
	return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

HYD_EXP_AVX512 static inline __m512 hyd__silu16(__m512 x)
{
	const __m512 e = hyd__expf16(_mm512_sub_ps(_mm512_setzero_ps(), x));
	return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

#endif

#endif
