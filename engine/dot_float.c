/* F32, F16 and BF16 weights: conversions and dot products.
 * F32 and BF16 weights are dotted against f32 activations.  F16 weights follow ggml's CPU
 * backend bit for bit, so that greedy decoding makes llama.cpp's choices on near-ties: the
 * activations are rounded to f16 (vec_dot_type F16) and the products summed in f32 in the
 * order of ggml_vec_dot_f16 (one activation row) or of llamafile's tinyBLAS (two or more).
 * The AVX2 versions are compiled with target attributes and chosen at run time. */
#include "config.h"

#include <math.h>
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

/* The sum of 16 lanes as _mm512_reduce_add_ps forms it: halves added lane-wise, then again
 * and again, then the last two. */
static float reduce16(const float *l)
{
	float t8[8], t4[4];
	for (int i = 0; i < 8; i++)
		t8[i] = l[i] + l[i + 8];
	for (int i = 0; i < 4; i++)
		t4[i] = t8[i] + t8[i + 4];
	return (t4[0] + t4[2]) + (t4[1] + t4[3]);
}

/* ggml_vec_dot_f16 as built for AVX-512, where the reference outputs were made: 4 x 16 lanes
 * over steps of 64 elements, each lane an FMA chain; lanes reduced (acc0 + acc2) + (acc1 + acc3)
 * then across the 16 lanes; the tail (n % 64) is added in double. */
float hyd__f16_dot_f16_ref(int64_t n, const void *w, const void *x)
{
	const uint16_t *a = w, *b = x;
	float acc[4][16] = { { 0 } };
	const int64_t np = n & ~(int64_t)63;
	for (int64_t i = 0; i < np; i += 64)
		for (int j = 0; j < 4; j++)
			for (int l = 0; l < 16; l++)
				acc[j][l] = fmaf(hyd_fp16_to_fp32(a[i + 16 * j + l]), hyd_fp16_to_fp32(b[i + 16 * j + l]),
						 acc[j][l]);
	float l16[16];
	for (int l = 0; l < 16; l++)
		l16[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
	double s = reduce16(l16);
	for (int64_t i = np; i < n; i++)
		s += (double)(hyd_fp16_to_fp32(a[i]) * hyd_fp16_to_fp32(b[i]));
	return (float)s;
}

/* tinyBLAS (llamafile_sgemm, F16 x F16, 16 lanes): one FMA chain per lane over the whole row
 * (n % 16 == 0), then the 16 lanes summed as reduce16() does. */
float hyd__f16_dot_f16_gemm_ref(int64_t n, const void *w, const void *x)
{
	const uint16_t *a = w, *b = x;
	float acc[16] = { 0 };
	for (int64_t i = 0; i + 16 <= n; i += 16)
		for (int l = 0; l < 16; l++)
			acc[l] = fmaf(hyd_fp16_to_fp32(a[i + l]), hyd_fp16_to_fp32(b[i + l]), acc[l]);
	return reduce16(acc);
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

/* The first np (a multiple of 64) elements: the 4 x 16 lanes of the AVX-512 layout, as pairs
 * of 8-lane registers, reduced as _mm512_reduce_add_ps does. */
AVX2 static inline float f16_main_avx2(int64_t np, const uint16_t *a, const uint16_t *b)
{
	__m256 s0l = _mm256_setzero_ps(), s0h = s0l, s1l = s0l, s1h = s0l, s2l = s0l, s2h = s0l, s3l = s0l,
	       s3h = s0l;
	for (int64_t i = 0; i < np; i += 64) {
		s0l = _mm256_fmadd_ps(load_f16x8(a + i), load_f16x8(b + i), s0l);
		s0h = _mm256_fmadd_ps(load_f16x8(a + i + 8), load_f16x8(b + i + 8), s0h);
		s1l = _mm256_fmadd_ps(load_f16x8(a + i + 16), load_f16x8(b + i + 16), s1l);
		s1h = _mm256_fmadd_ps(load_f16x8(a + i + 24), load_f16x8(b + i + 24), s1h);
		s2l = _mm256_fmadd_ps(load_f16x8(a + i + 32), load_f16x8(b + i + 32), s2l);
		s2h = _mm256_fmadd_ps(load_f16x8(a + i + 40), load_f16x8(b + i + 40), s2h);
		s3l = _mm256_fmadd_ps(load_f16x8(a + i + 48), load_f16x8(b + i + 48), s3l);
		s3h = _mm256_fmadd_ps(load_f16x8(a + i + 56), load_f16x8(b + i + 56), s3h);
	}
	const __m256 lo = _mm256_add_ps(_mm256_add_ps(s0l, s2l), _mm256_add_ps(s1l, s3l));
	const __m256 hi = _mm256_add_ps(_mm256_add_ps(s0h, s2h), _mm256_add_ps(s1h, s3h));
	return hsum256(_mm256_add_ps(lo, hi));
}

AVX2 static float f16_dot_f16_avx2(int64_t n, const void *w, const void *x)
{
	const uint16_t *a = w, *b = x;
	const int64_t np = n & ~(int64_t)63;
	double s = f16_main_avx2(np, a, b);
	/* the tail, in order: each product rounded to float, then added in double (for small heads
	 * this is the whole dot, so it is vectorised up to the sequential double sum) */
	int64_t i = np;
	for (; i + 8 <= n; i += 8) {
		float pr[8];
		_mm256_storeu_ps(pr, _mm256_mul_ps(load_f16x8(a + i), load_f16x8(b + i)));
		for (int l = 0; l < 8; l++)
			s += (double)pr[l];
	}
	for (; i < n; i++)
		s += (double)(_cvtsh_ss(a[i]) * _cvtsh_ss(b[i]));
	return (float)s;
}

/* Four rows of f16_dot_f16_avx2 at once.  The tail's sequential double sums (the whole dot for
 * rows under 64, such as Mamba's dt projection with rows of 48) are one chain per row; here
 * each row is a lane of one double vector, so the four chains run side by side, each adding
 * the same products in the same order: the same bits. */
AVX2 static void f16_dot4_f16_avx2(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out)
{
	const uint16_t *b = x;
	const uint16_t *a0 = w, *a1 = (const void *)((const char *)w + w_stride);
	const uint16_t *a2 = (const void *)((const char *)w + 2 * w_stride);
	const uint16_t *a3 = (const void *)((const char *)w + 3 * w_stride);
	const int64_t np = n & ~(int64_t)63;
	__m256d s = _mm256_setzero_pd();
	if (np) { /* rows under 64 (Mamba's dt projection) have no main part: skip its four calls */
		/* one statement per row: the rows must be read front to back (the order of a
		 * call's arguments is unspecified, and reading a group backwards defeats the
		 * prefetcher) */
		const double m0 = f16_main_avx2(np, a0, b);
		const double m1 = f16_main_avx2(np, a1, b);
		const double m2 = f16_main_avx2(np, a2, b);
		const double m3 = f16_main_avx2(np, a3, b);
		s = _mm256_setr_pd(m0, m1, m2, m3);
	}
	int64_t i = np;
	for (; i + 8 <= n; i += 8) {
		const __m256 xb = load_f16x8(b + i);
		const __m256 p0 = _mm256_mul_ps(load_f16x8(a0 + i), xb), p1 = _mm256_mul_ps(load_f16x8(a1 + i), xb);
		const __m256 p2 = _mm256_mul_ps(load_f16x8(a2 + i), xb), p3 = _mm256_mul_ps(load_f16x8(a3 + i), xb);
		/* transpose: e_l = { row 0's product l, row 1's, row 2's, row 3's } */
		__m128 e0 = _mm256_castps256_ps128(p0), e1 = _mm256_castps256_ps128(p1);
		__m128 e2 = _mm256_castps256_ps128(p2), e3 = _mm256_castps256_ps128(p3);
		__m128 e4 = _mm256_extractf128_ps(p0, 1), e5 = _mm256_extractf128_ps(p1, 1);
		__m128 e6 = _mm256_extractf128_ps(p2, 1), e7 = _mm256_extractf128_ps(p3, 1);
		_MM_TRANSPOSE4_PS(e0, e1, e2, e3);
		_MM_TRANSPOSE4_PS(e4, e5, e6, e7);
		s = _mm256_add_pd(s, _mm256_cvtps_pd(e0));
		s = _mm256_add_pd(s, _mm256_cvtps_pd(e1));
		s = _mm256_add_pd(s, _mm256_cvtps_pd(e2));
		s = _mm256_add_pd(s, _mm256_cvtps_pd(e3));
		s = _mm256_add_pd(s, _mm256_cvtps_pd(e4));
		s = _mm256_add_pd(s, _mm256_cvtps_pd(e5));
		s = _mm256_add_pd(s, _mm256_cvtps_pd(e6));
		s = _mm256_add_pd(s, _mm256_cvtps_pd(e7));
	}
	for (; i < n; i++) {
		const float xb = _cvtsh_ss(b[i]);
		const __m128 p = _mm_setr_ps(_cvtsh_ss(a0[i]) * xb, _cvtsh_ss(a1[i]) * xb, _cvtsh_ss(a2[i]) * xb,
					     _cvtsh_ss(a3[i]) * xb);
		s = _mm256_add_pd(s, _mm256_cvtps_pd(p));
	}
	_mm_storeu_ps(ret_out, _mm256_cvtpd_ps(s));
}

#define AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")))

/* The largest of 8 words, by phminposuw on their complements */
AVX512 static inline uint16_t hmax_epu16(__m128i v)
{
	return (uint16_t)~_mm_cvtsi128_si32(_mm_minpos_epu16(_mm_xor_si128(v, _mm_set1_epi16(-1))));
}

/* The activation halves' largest magnitude (as bits) and smallest exponent field among the
 * nonzero ones (zeros, raised to field 31 here, add nothing to a sum, exactly), and the
 * largest magnitude of the four weight rows' halves; V the vector (__m128i or __m256i) and
 * PFX its intrinsics' prefix, for 8 or 16 halves from element k. */
#define F16_SCAN(V, PFX, LOAD, k)                                                                      \
	do {                                                                                           \
		const V mask_ = PFX##_set1_epi16(0x7fff);                                              \
		const V xa_ = PFX##_and_si##LOAD(PFX##_loadu_si##LOAD((const V *)(b + (k))), mask_);   \
		const V nz_ = PFX##_or_si##LOAD(xa_, PFX##_and_si##LOAD(PFX##_cmpeq_epi16(xa_, PFX##_setzero_si##LOAD()), \
									PFX##_set1_epi16(0x7c00)));  \
		xm_##LOAD = PFX##_max_epu16(xm_##LOAD, xa_);                                           \
		xe_##LOAD = PFX##_min_epu16(xe_##LOAD, PFX##_srli_epi16(nz_, 10));                     \
		wm_##LOAD = PFX##_max_epu16(wm_##LOAD, PFX##_and_si##LOAD(PFX##_loadu_si##LOAD((const V *)(a0 + (k))), mask_)); \
		wm_##LOAD = PFX##_max_epu16(wm_##LOAD, PFX##_and_si##LOAD(PFX##_loadu_si##LOAD((const V *)(a1 + (k))), mask_)); \
		wm_##LOAD = PFX##_max_epu16(wm_##LOAD, PFX##_and_si##LOAD(PFX##_loadu_si##LOAD((const V *)(a2 + (k))), mask_)); \
		wm_##LOAD = PFX##_max_epu16(wm_##LOAD, PFX##_and_si##LOAD(PFX##_loadu_si##LOAD((const V *)(a3 + (k))), mask_)); \
	} while (0)

/* Four rows shorter than 64 elements (n a multiple of 8), as f16_dot4_f16_avx2 sums them, where
 * that can be done without the chain.  For such rows ggml's order is one sequential double
 * sum of f32 products per row (Mamba's dt projection: rows of 48).  Each product of two
 * halves is exact in f32 and an integer multiple of u, 2^-24 (the spacing of the smallest
 * halves, as a weight may be) times the spacing of the smallest nonzero activation half;
 * while the products' magnitudes sum to less than 2^53 u, every partial sum, in any order,
 * is exact in double,
 * so the sequential sum is the exact sum, and so is a sum eight lanes at a time by fused
 * multiply-adds, reduced as a tree: the same bits.  The bound is checked from the largest
 * magnitudes, n max|w| max|x| < 2^52 u (a factor of two to spare for the check's own
 * rounding); where it fails, or a value is infinite or NaN, the rows take the chain.  On
 * Zen 4 1.46x the chain kernel on mamba-130m's dt rows (docs/PERFORMANCE.md). */
AVX512 static void f16_dot4_f16_avx512(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out)
{
	if (n >= 64 || n % 8 || n == 0) {
		f16_dot4_f16_avx2(n, w, w_stride, x, ret_out);
		return;
	}
	const uint16_t *b = x;
	const uint16_t *a0 = w, *a1 = (const void *)((const char *)w + w_stride);
	const uint16_t *a2 = (const void *)((const char *)w + 2 * w_stride);
	const uint16_t *a3 = (const void *)((const char *)w + 3 * w_stride);
	__m256i xm_256 = _mm256_setzero_si256(), wm_256 = xm_256, xe_256 = _mm256_set1_epi16(31);
	int64_t k = 0;
	for (; k + 16 <= n; k += 16)
		F16_SCAN(__m256i, _mm256, 256, k);
	__m128i xm_128 = _mm_max_epu16(_mm256_castsi256_si128(xm_256), _mm256_extracti128_si256(xm_256, 1));
	__m128i wm_128 = _mm_max_epu16(_mm256_castsi256_si128(wm_256), _mm256_extracti128_si256(wm_256, 1));
	__m128i xe_128 = _mm_min_epu16(_mm256_castsi256_si128(xe_256), _mm256_extracti128_si256(xe_256, 1));
	if (k < n)
		F16_SCAN(__m128i, _mm, 128, k);
	/* the spacing of a half with exponent field f is 2^(max(f, 1) - 25); a weight's is taken
	 * as the smallest there is, 2^-24 */
	int ex = _mm_cvtsi128_si32(_mm_minpos_epu16(xe_128)) & 0xffff;
	ex = ex > 1 ? ex : 1;
	const int32_t limit_bits = (ex - 25 - 24 + 52 + 127) << 23; /* 2^52 u: 2^4 .. 2^33 */
	float limit;
	memcpy(&limit, &limit_bits, sizeof(limit));
	const uint16_t xmax = hmax_epu16(xm_128), wmax = hmax_epu16(wm_128);
	/* an infinite or NaN half makes the bound infinite or NaN: the chain */
	if (!((float)n * _cvtsh_ss(wmax) * _cvtsh_ss(xmax) < limit)) {
		f16_dot4_f16_avx2(n, w, w_stride, x, ret_out);
		return;
	}
	__m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
	for (k = 0; k < n; k += 8) {
		const __m512d xd = _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + k))));
#define ROW_PD(a) _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((a) + k))))
		s0 = _mm512_fmadd_pd(ROW_PD(a0), xd, s0);
		s1 = _mm512_fmadd_pd(ROW_PD(a1), xd, s1);
		s2 = _mm512_fmadd_pd(ROW_PD(a2), xd, s2);
		s3 = _mm512_fmadd_pd(ROW_PD(a3), xd, s3);
#undef ROW_PD
	}
	/* the four rows' eight lanes summed as a tree, all four at once: pairs of lanes, giving
	 * 128-bit quarters A B C D = (rows 0,1 of lanes 0-3), (rows 0,1 of 4-7), (rows 2,3 ...) */
	const __m512d t01 = _mm512_add_pd(_mm512_unpacklo_pd(s0, s1), _mm512_unpackhi_pd(s0, s1));
	const __m512d t23 = _mm512_add_pd(_mm512_unpacklo_pd(s2, s3), _mm512_unpackhi_pd(s2, s3));
	const __m512d u = _mm512_add_pd(_mm512_shuffle_f64x2(t01, t23, 0x88), _mm512_shuffle_f64x2(t01, t23, 0xdd));
	/* then A + B and C + D: rows 0, 1, 2, 3 */
	const __m512d r = _mm512_add_pd(_mm512_shuffle_f64x2(u, u, 0x88), _mm512_shuffle_f64x2(u, u, 0xdd));
	_mm_storeu_ps(ret_out, _mm256_cvtpd_ps(_mm512_castpd512_pd256(r)));
}

/* Many rows shorter than 64 elements against one activation row (the matmul's decode path):
 * f16_dot4_f16_avx512's results, with the activation's side of its exactness check and the
 * activation's conversion to double done once for all the rows instead of once per four, and
 * each group's weight magnitudes taken from the loads the sums use.  The check is the same
 * comparison on the same floats, so each group takes the same path, and each row gets the
 * same bits (the exact sum, or the chain).  On Zen 4, mamba-130m's dt projection (1,536 rows
 * of 48, from L2, a /tmp harness): 5.1 ns per row against 6.7. */
AVX512 static void f16_rows_f16_avx512(int64_t n, const void *w, int64_t w_stride, const void *x, int64_t n_out,
				       float *ret_out)
{
	const uint16_t *b = x;
	int64_t o = 0;
	if (n > 0 && n < 64 && n % 8 == 0 && n_out >= 4) {
		__m128i xm = _mm_setzero_si128(), xe = _mm_set1_epi16(31);
		const __m128i mask = _mm_set1_epi16(0x7fff);
		__m512d xd[8];
		for (int64_t k = 0; k < n; k += 8) {
			const __m128i h = _mm_loadu_si128((const __m128i *)(b + k));
			const __m128i xa = _mm_and_si128(h, mask);
			/* zeros count as exponent field 31 (they add nothing, exactly) */
			const __m128i nz = _mm_or_si128(xa, _mm_and_si128(_mm_cmpeq_epi16(xa, _mm_setzero_si128()),
									  _mm_set1_epi16(0x7c00)));
			xm = _mm_max_epu16(xm, xa);
			xe = _mm_min_epu16(xe, _mm_srli_epi16(nz, 10));
			xd[k / 8] = _mm512_cvtps_pd(_mm256_cvtph_ps(h));
		}
		int ex = _mm_cvtsi128_si32(_mm_minpos_epu16(xe)) & 0xffff;
		ex = ex > 1 ? ex : 1;
		const int32_t limit_bits = (ex - 25 - 24 + 52 + 127) << 23; /* as f16_dot4_f16_avx512 */
		float limit;
		memcpy(&limit, &limit_bits, sizeof(limit));
		const float xmax = _cvtsh_ss(hmax_epu16(xm));
		for (; o + 4 <= n_out; o += 4) {
			const uint16_t *a0 = (const void *)((const char *)w + o * w_stride);
			const uint16_t *a1 = (const void *)((const char *)a0 + w_stride);
			const uint16_t *a2 = (const void *)((const char *)a0 + 2 * w_stride);
			const uint16_t *a3 = (const void *)((const char *)a0 + 3 * w_stride);
			__m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
			__m128i wm = _mm_setzero_si128();
			for (int64_t k = 0; k < n; k += 8) {
#define ROW_STEP(a, s)                                                                                 \
	do {                                                                                           \
		const __m128i h_ = _mm_loadu_si128((const __m128i *)((a) + k));                        \
		wm = _mm_max_epu16(wm, _mm_and_si128(h_, mask));                                       \
		s = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_cvtph_ps(h_)), xd[k / 8], s);               \
	} while (0)
				ROW_STEP(a0, s0);
				ROW_STEP(a1, s1);
				ROW_STEP(a2, s2);
				ROW_STEP(a3, s3);
#undef ROW_STEP
			}
			/* an infinite or NaN half makes the bound infinite or NaN: the chain */
			if (!((float)n * _cvtsh_ss(hmax_epu16(wm)) * xmax < limit)) {
				f16_dot4_f16_avx2(n, a0, w_stride, x, ret_out + o);
				continue;
			}
			/* f16_dot4_f16_avx512's tree */
			const __m512d t01 = _mm512_add_pd(_mm512_unpacklo_pd(s0, s1), _mm512_unpackhi_pd(s0, s1));
			const __m512d t23 = _mm512_add_pd(_mm512_unpacklo_pd(s2, s3), _mm512_unpackhi_pd(s2, s3));
			const __m512d u = _mm512_add_pd(_mm512_shuffle_f64x2(t01, t23, 0x88),
							_mm512_shuffle_f64x2(t01, t23, 0xdd));
			const __m512d r = _mm512_add_pd(_mm512_shuffle_f64x2(u, u, 0x88), _mm512_shuffle_f64x2(u, u, 0xdd));
			_mm_storeu_ps(ret_out + o, _mm256_cvtpd_ps(_mm512_castpd512_pd256(r)));
		}
	}
	for (; o + 4 <= n_out; o += 4)
		f16_dot4_f16_avx512(n, (const char *)w + o * w_stride, w_stride, x, ret_out + o);
	for (; o < n_out; o++)
		ret_out[o] = f16_dot_f16_avx2(n, (const char *)w + o * w_stride, x);
}

AVX2 static float f16_dot_f16_gemm_avx2(int64_t n, const void *w, const void *x)
{
	const uint16_t *a = w, *b = x;
	__m256 lo = _mm256_setzero_ps(), hi = lo;
	for (int64_t i = 0; i + 16 <= n; i += 16) {
		lo = _mm256_fmadd_ps(load_f16x8(a + i), load_f16x8(b + i), lo);
		hi = _mm256_fmadd_ps(load_f16x8(a + i + 8), load_f16x8(b + i + 8), hi);
	}
	return hsum256(_mm256_add_ps(lo, hi));
}

/* Two weight rows x two activation rows at once: four outputs, each summed exactly as
 * f16_dot_f16_gemm_avx2 sums it (same lanes, same order), but with eight independent FMA
 * chains in flight instead of two, and every load used twice. */
AVX2 static void f16_gemm_2x2_avx2(int64_t n, const void *w0, const void *w1, const void *x0, const void *x1,
				   float out[4])
{
	const uint16_t *a0 = w0, *a1 = w1, *b0 = x0, *b1 = x1;
	__m256 l00 = _mm256_setzero_ps(), h00 = l00, l01 = l00, h01 = l00, l10 = l00, h10 = l00, l11 = l00, h11 = l00;
	for (int64_t i = 0; i + 16 <= n; i += 16) {
		const __m256 wa = load_f16x8(a0 + i), wb = load_f16x8(a0 + i + 8);
		const __m256 va = load_f16x8(a1 + i), vb = load_f16x8(a1 + i + 8);
		const __m256 xa = load_f16x8(b0 + i), xb = load_f16x8(b0 + i + 8);
		const __m256 ya = load_f16x8(b1 + i), yb = load_f16x8(b1 + i + 8);
		l00 = _mm256_fmadd_ps(wa, xa, l00);
		h00 = _mm256_fmadd_ps(wb, xb, h00);
		l01 = _mm256_fmadd_ps(wa, ya, l01);
		h01 = _mm256_fmadd_ps(wb, yb, h01);
		l10 = _mm256_fmadd_ps(va, xa, l10);
		h10 = _mm256_fmadd_ps(vb, xb, h10);
		l11 = _mm256_fmadd_ps(va, ya, l11);
		h11 = _mm256_fmadd_ps(vb, yb, h11);
	}
	out[0] = hsum256(_mm256_add_ps(l00, h00)); /* w0 . x0 */
	out[1] = hsum256(_mm256_add_ps(l01, h01)); /* w0 . x1 */
	out[2] = hsum256(_mm256_add_ps(l10, h10)); /* w1 . x0 */
	out[3] = hsum256(_mm256_add_ps(l11, h11)); /* w1 . x1 */
}

AVX2 static void f16_from_float_avx2(const float *src, void *dst, int64_t n)
{
	uint16_t *h = dst;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(h + i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i++)
		h[i] = hyd_fp32_to_fp16(src[i]);
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

static hyd_vec_dot_fn f16_gemm_dot = hyd__f16_dot_f16_gemm_ref;

/* Scalar reference of the 2x2 block: four plain gemm dots. */
static void f16_gemm_2x2_ref(int64_t n, const void *w0, const void *w1, const void *x0, const void *x1,
			     float out[4])
{
	out[0] = hyd__f16_dot_f16_gemm_ref(n, w0, x0);
	out[1] = hyd__f16_dot_f16_gemm_ref(n, w0, x1);
	out[2] = hyd__f16_dot_f16_gemm_ref(n, w1, x0);
	out[3] = hyd__f16_dot_f16_gemm_ref(n, w1, x1);
}

static hyd_gemm2x2_fn f16_gemm_2x2 = f16_gemm_2x2_ref;

hyd_gemm2x2_fn hyd__f16_gemm_2x2(void)
{
	return f16_gemm_2x2;
}

hyd_gemm2x2_fn hyd__f16_gemm_2x2_ref(void)
{
	return f16_gemm_2x2_ref;
}

hyd_vec_dot_fn hyd__f16_gemm_dot(void)
{
	return f16_gemm_dot;
}

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
	f16->vec_dot_type = HYD_TYPE_F16;
	f16->vec_dot = f16->vec_dot_ref = hyd__f16_dot_f16_ref;
	f16_gemm_dot = hyd__f16_dot_f16_gemm_ref;
	f16_gemm_2x2 = f16_gemm_2x2_ref;
	bf16->to_float = bf16_to_float;
	bf16->from_float = bf16_from_float;
	bf16->vec_dot_type = HYD_TYPE_F32;
	bf16->vec_dot = bf16->vec_dot_ref = bf16_dot_ref;
#ifdef HYD_X86
	if (level >= HYD_SIMD_AVX2) {
		f32->vec_dot = f32_dot_avx2;
		f16->vec_dot = f16_dot_f16_avx2;
		f16->vec_dot4 = f16_dot4_f16_avx2;
		f16->from_float = f16_from_float_avx2;
		f16_gemm_dot = f16_dot_f16_gemm_avx2;
		f16_gemm_2x2 = f16_gemm_2x2_avx2;
		bf16->vec_dot = bf16_dot_avx2;
	}
	if (level >= HYD_SIMD_AVX512) {
		f16->vec_dot4 = f16_dot4_f16_avx512;
		f16->vec_dot_rows = f16_rows_f16_avx512;
	}
#else
	(void)level;
#endif
}
