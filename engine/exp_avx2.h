/* exp in double precision for AVX2 and AVX-512 lanes, rounded once to float, and the SiLU
 * built on it: shared by the engine's element-wise kernels (kernels.c) and the SSM plugin's
 * activations (plugins/ssm/ssm_kern.c).  The AVX-512 functions are the AVX2 ones' arithmetic
 * lane for lane, so the same bits.
 *
 * Rounding exp(x) once from double gives expf's correctly rounded result nearly always (see
 * HYD_EXP_PD); glibc's expf returns the same float for all but about 1 in 10^4 arguments,
 * where it lands on the other neighbour.  Callers that must match the scalar C exactly cannot
 * use these. */
#ifndef HYD_ENGINE_EXP_AVX2_H
#define HYD_ENGINE_EXP_AVX2_H

#if defined(__x86_64__)
#include <immintrin.h>

#define HYD_EXP_AVX2 __attribute__((target("avx2,fma")))

/* 2^(j/16), j = 0..15, rounded to double */
static const double hyd__exp2_16ths[16] __attribute__((aligned(64))) = {
	0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
	0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0,
	0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
	0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0, 0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0,
};

/* exp(x) in double for the lanes of a V (PFX the intrinsics' prefix, VI its integer twin,
 * LOOKUP(bits) the table entry hyd__exp2_16ths[bits & 15]), |x| <= 700: x = (16 m + j) ln2/16
 * + r with |r| <= ln2/32, exp(x) = 2^m 2^(j/16) e^r, e^r - 1 by its Taylor series to r^5
 * (truncation < 1.5e-13 relative).  k = 16 m + j comes out of the low bits of x 16/ln2 +
 * 1.5 * 2^52, rounded to nearest by that addition: j is its low four bits (the table index)
 * and (k & ~15) << 48 is m in the exponent field.  Rounded to float, the result is the
 * correctly rounded exp but for ~3 in 10^7 floats (32 million random ones in [-100, 100]
 * against expl); the degree-12 series over |r| <= ln2/2 it replaced missed none, at 0.67 ns
 * per double against 0.40 (Zen 4, AVX-512, a /tmp harness).  One body for every width, so
 * each lane gets the same bits. */
#define HYD_EXP_PD(NAME, ATTR, V, VI, PFX, LOOKUP, CASTPI, CASTIP, AND, SET1_64)                                       \
	ATTR static inline V NAME(V x)                                                                   \
	{                                                                                                \
		x = PFX##_min_pd(PFX##_max_pd(x, PFX##_set1_pd(-700.0)), PFX##_set1_pd(700.0));          \
		const V magic = PFX##_set1_pd(6755399441055744.0);                                       \
		const V t = PFX##_fmadd_pd(x, PFX##_set1_pd(0x1.71547652b82fep+4), magic);              \
		const V k = PFX##_sub_pd(t, magic);                                                      \
		/* ln2/16 split so that k times its high part is exact for |k| < 2^12 (|x| <= 104, \
		 * beyond which a float exp is 0 or infinite anyway) */                                  \
		V r = PFX##_fnmadd_pd(k, PFX##_set1_pd(0x1.62e42fefa3800p-5), x);                        \
		r = PFX##_fnmadd_pd(k, PFX##_set1_pd(0x1.ef35793c76730p-49), r);                         \
		V q = PFX##_fmadd_pd(PFX##_set1_pd(1.0 / 120.0), r, PFX##_set1_pd(1.0 / 24.0));          \
		q = PFX##_fmadd_pd(q, r, PFX##_set1_pd(1.0 / 6.0));                                      \
		q = PFX##_fmadd_pd(q, r, PFX##_set1_pd(0.5));                                            \
		q = PFX##_fmadd_pd(q, r, PFX##_set1_pd(1.0));                                            \
		const VI bits = CASTPI(t);                                                               \
		const V tj = LOOKUP(bits);                                                               \
		/* 2^(j/16) (1 + r q), then 2^m into the exponent */                                     \
		const V e = PFX##_fmadd_pd(PFX##_mul_pd(tj, r), q, tj);                                  \
		const VI m = PFX##_slli_epi64(AND(bits, SET1_64(~15ll)), 48);                        \
		return CASTIP(PFX##_add_epi64(CASTPI(e), m));                                            \
	}
/* AVX2 has no two-table permute, and its gathers are slow (AMD): the entry is picked out of
 * each quarter of the table by vpermps on the index's low two bits, then the quarters by
 * bits 2 and 3 (blendv reads each 64-bit lane's sign bit). */
HYD_EXP_AVX2 static inline __m256d hyd__exp_lookup4(__m256i bits)
{
	const double *t = hyd__exp2_16ths;
	const __m256i lo2 = _mm256_slli_epi64(_mm256_and_si256(bits, _mm256_set1_epi64x(3)), 1);
	/* dwords 2 (j & 3) and 2 (j & 3) + 1: the two halves of entry j & 3 */
	const __m256i idx = _mm256_add_epi64(_mm256_or_si256(lo2, _mm256_slli_epi64(lo2, 32)),
					     _mm256_set1_epi64x(1ll << 32));
#define QUARTER(q) _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(_mm256_load_pd(t + 4 * (q))), idx))
	const __m256d b2 = _mm256_castsi256_pd(_mm256_slli_epi64(bits, 61));
	const __m256d b3 = _mm256_castsi256_pd(_mm256_slli_epi64(bits, 60));
	const __m256d q01 = _mm256_blendv_pd(QUARTER(0), QUARTER(1), b2);
	const __m256d q23 = _mm256_blendv_pd(QUARTER(2), QUARTER(3), b2);
#undef QUARTER
	return _mm256_blendv_pd(q01, q23, b3);
}
#define HYD_EXP_LOOKUP_AVX2(bits) hyd__exp_lookup4(bits)

HYD_EXP_PD(hyd__exp4d, HYD_EXP_AVX2, __m256d, __m256i, _mm256, HYD_EXP_LOOKUP_AVX2, _mm256_castpd_si256,
	   _mm256_castsi256_pd, _mm256_and_si256, _mm256_set1_epi64x)

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

/* vpermt2pd takes the low four bits of each index: the two halves of the table */
#define HYD_EXP_LOOKUP_AVX512(bits)                                                                      \
	_mm512_permutex2var_pd(_mm512_load_pd(hyd__exp2_16ths), bits, _mm512_load_pd(hyd__exp2_16ths + 8))
HYD_EXP_PD(hyd__exp8d, HYD_EXP_AVX512, __m512d, __m512i, _mm512, HYD_EXP_LOOKUP_AVX512, _mm512_castpd_si512,
	   _mm512_castsi512_pd, _mm512_and_si512, _mm512_set1_epi64)

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
