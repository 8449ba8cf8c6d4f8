/* AVX-512 (F/BW/DQ/VL) kernels for the quantized types (the AVX512-VNNI kernels are the AVX2
 * kernels' twins, in quant_avx2.c).  Built with target attributes;
 * quant.c registers them only at level >= HYD_SIMD_AVX512.
 *
 * Same scheme as quant_avx2.c on 64-byte registers: two Q8_0/Q4_0 blocks or one 64-element
 * K-quant chunk per register; sub-block scales are spread over lanes with pshufb (Q4_K/Q5_K)
 * or vpermw (Q6_K).  This development machine has no AVX-512: these paths are exercised by
 * tests/check_quant only where the CPU has it. */
#include "config.h"

#include "engine/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c")))

/* Weights are streamed once per token: prefetching ~1 KiB ahead keeps more DRAM reads in
 * flight than the hardware prefetcher alone (measured +10-25 % on the dev machine). */
#define PREFETCH_AHEAD 1024

static inline void prefetch_block(const void *p, int bytes)
{
	for (int o = 0; o < bytes; o += 64)
		_mm_prefetch((const char *)p + PREFETCH_AHEAD + o, _MM_HINT_T0);
}

/* 0..31: lane indices for building vpermw selectors */
static const int16_t iota16[32] = {
	0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
	16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
};

static inline float f16(uint16_t h)
{
	return hyd__fp16_table[h];
}

AVX512 static inline __m512i join256(__m256i lo, __m256i hi)
{
	return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* Scales of two 32-element blocks: d0 for lanes 0..7, d1 for lanes 8..15. */
AVX512 static inline __m512 scale2(float d0, float d1)
{
	return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(d0)),
				  _mm256_set1_ps(d1), 1);
}

/* |a| as unsigned bytes and b carrying a's sign (b must not hold -128). */
AVX512 static inline __m512i abs_i8(__m512i a)
{
	return _mm512_abs_epi8(a);
}

AVX512 static inline __m512i signed_like(__m512i b, __m512i a)
{
	return _mm512_mask_sub_epi8(b, _mm512_movepi8_mask(a), _mm512_setzero_si512(), b);
}

AVX512 static inline __m512i dot_u8s8(__m512i u, __m512i s)
{
	return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
}

AVX512 static inline __m256i unpack_nibbles(const uint8_t *p)
{
	const __m128i q = _mm_loadu_si128((const __m128i *)p);
	const __m256i v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
	return _mm256_and_si256(v, _mm256_set1_epi8(0xF));
}

AVX512 static inline __m256i load256(const void *p)
{
	return _mm256_loadu_si256((const __m256i *)p);
}

/* Two blocks per iteration; an odd last block pairs with zeros and a zero scale.  The body
 * is a macro so the plain and VNNI versions share it (a VNNI helper cannot be inlined into
 * a function compiled without VNNI). */
#define Q8_0_LOOP(DOT, LOAD_W)                                                              \
	const int64_t nb = n / HYD_QK;                                                      \
	__m512 acc = _mm512_setzero_ps();                                                   \
	for (int64_t i = 0; i < nb; i += 2) {                                               \
		prefetch_block(&a[i], 64);                                                   \
		const int two = i + 1 < nb;                                                 \
		const __m256i w1 = two ? LOAD_W(i + 1) : _mm256_setzero_si256();           \
		const __m256i x1 = two ? load256(b[i + 1].qs) : _mm256_setzero_si256();    \
		const __m512i qw = join256(LOAD_W(i), w1);                                  \
		const __m512i qx = join256(load256(b[i].qs), x1);                           \
		const __m512i p = DOT(abs_i8(qw), signed_like(qx, qw));                     \
		const float d1 = two ? f16(a[i + 1].d) * f16(b[i + 1].d) : 0.0f;            \
		acc = _mm512_fmadd_ps(scale2(f16(a[i].d) * f16(b[i].d), d1),                \
				      _mm512_cvtepi32_ps(p), acc);                          \
	}                                                                                   \
	return _mm512_reduce_add_ps(acc)

#define LOAD_Q8_0(k) load256(a[k].qs)
#define LOAD_Q4_0(k) _mm256_sub_epi8(unpack_nibbles(a[k].qs), _mm256_set1_epi8(8))

AVX512 float hyd__q8_0_dot_avx512(int64_t n, const void *w, const void *x)
{
	const struct hyd_block_q8_0 *a = w, *b = x;
	Q8_0_LOOP(dot_u8s8, LOAD_Q8_0);
}

AVX512 float hyd__q4_0_dot_avx512(int64_t n, const void *w, const void *x)
{
	const struct hyd_block_q4_0 *a = w;
	const struct hyd_block_q8_0 *b = x;
	Q8_0_LOOP(dot_u8s8, LOAD_Q4_0);
}

/* The 12 packed bytes of Q4_K/Q5_K scales -> bytes 0..7: the 8 scales, 8..15: the 8 mins.
 * Reads 16 bytes: the 4 past the scales are still inside the block. */
AVX512 static inline __m128i k4_scales_mins(const uint8_t *scales)
{
	const __m128i v = _mm_loadu_si128((const __m128i *)scales);
	const __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));
	const __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));
	const __m128i lo = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
					 _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
	const __m128i hi = _mm_and_si128(_mm_srli_epi32(b, 2),
					 _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
	return _mm_or_si128(lo, hi);
}

/* sum_j m[j] * (activation sum of sub-block j) as 8 int32: bsums[i] pairs with min i/2. */
AVX512 static inline __m256i k4_mins_dot(__m128i sm, const int16_t *bsums)
{
	const __m256i pick = _mm256_setr_epi16(
		(short)0x8008, (short)0x8008, (short)0x8009, (short)0x8009, (short)0x800a,
		(short)0x800a, (short)0x800b, (short)0x800b, (short)0x800c, (short)0x800c,
		(short)0x800d, (short)0x800d, (short)0x800e, (short)0x800e, (short)0x800f,
		(short)0x800f);
	const __m256i bs = _mm256_loadu_si256((const __m256i *)bsums);
	return _mm256_madd_epi16(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(sm), pick), bs);
}

AVX512 static inline float hsum256(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* Integer sum of one Q4_K/Q5_K block times its scales (qh NULL for Q4_K; the branch folds
 * away when inlined).  Chunk j of 64 elements is one register: sub-block 2j in int16 lanes
 * 0..15 (128-bit lanes 0-1) and 2j+1 in lanes 16..31, so one pshufb per chunk spreads the
 * scales (0x80 in the high byte zero-extends them). */
AVX512 static inline __attribute__((always_inline)) __m512i
k4_sumi(const uint8_t *qs, const uint8_t *qh, const int8_t *y, __m128i sm)
{
	const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
	const __m512i sm4 = _mm512_broadcast_i32x4(sm);
	__m256i h = qh ? load256(qh) : _mm256_setzero_si256();
	__m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
	for (int j = 0; j < 4; j++) {
		const __m256i q4 = load256(qs + 32 * j);
		__m256i lo = _mm256_and_si256(q4, m4);
		__m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
		if (qh) {
			/* 5th bit of sub-block k is bit k of the qh bytes: shift it down one
			 * step per sub-block (16-bit shifts are fine, only bit 0 is kept) */
			lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
			h = _mm256_srli_epi16(h, 1);
			hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
			h = _mm256_srli_epi16(h, 1);
		}
		const __m512i pick = join256(_mm256_set1_epi16((short)(0x8000 | (2 * j))),
					     _mm256_set1_epi16((short)(0x8000 | (2 * j + 1))));
		const __m512i s = _mm512_shuffle_epi8(sm4, pick);
		const __m512i p = _mm512_maddubs_epi16(join256(lo, hi), _mm512_loadu_si512(y + 64 * j));
		if (j & 1)
			s1 = _mm512_add_epi32(s1, _mm512_madd_epi16(p, s));
		else
			s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(p, s));
	}
	return _mm512_add_epi32(s0, s1);
}

AVX512 float hyd__q4_k_dot_avx512(int64_t n, const void *w, const void *x)
{
	const struct hyd_block_q4_k *a = w;
	const struct hyd_block_q8_k *b = x;
	__m512 acc = _mm512_setzero_ps();
	__m256 accm = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / HYD_QK_K; i++) {
		prefetch_block(&a[i], 192);
		const __m128i sm = k4_scales_mins(a[i].scales);
		const float d = b[i].d * f16(a[i].d), dmin = b[i].d * f16(a[i].dmin);
		accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin),
				       _mm256_cvtepi32_ps(k4_mins_dot(sm, b[i].bsums)), accm);
		const __m512i sumi = k4_sumi(a[i].qs, NULL, b[i].qs, sm);
		acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
	}
	return _mm512_reduce_add_ps(acc) - hsum256(accm);
}

AVX512 float hyd__q5_k_dot_avx512(int64_t n, const void *w, const void *x)
{
	const struct hyd_block_q5_k *a = w;
	const struct hyd_block_q8_k *b = x;
	__m512 acc = _mm512_setzero_ps();
	__m256 accm = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / HYD_QK_K; i++) {
		prefetch_block(&a[i], 192);
		const __m128i sm = k4_scales_mins(a[i].scales);
		const float d = b[i].d * f16(a[i].d), dmin = b[i].d * f16(a[i].dmin);
		accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin),
				       _mm256_cvtepi32_ps(k4_mins_dot(sm, b[i].bsums)), accm);
		const __m512i sumi = k4_sumi(a[i].qs, a[i].qh, b[i].qs, sm);
		acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
	}
	return _mm512_reduce_add_ps(acc) - hsum256(accm);
}

/* Q6_K: a register holds 64 elements = 4 sub-blocks of 16 (int16 lanes 8 per sub-block);
 * q in 0..63 unsigned, the -32 offset applied once per block through bsums. */
AVX512 float hyd__q6_k_dot_avx512(int64_t n, const void *w, const void *x)
{
	const struct hyd_block_q6_k *a = w;
	const struct hyd_block_q8_k *b = x;
	const int64_t nb = n / HYD_QK_K;
	const __m512i m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30);
	const __m512i sel0 = _mm512_srli_epi16(_mm512_loadu_si512(iota16), 3);
	__m512 acc = _mm512_setzero_ps();
	for (int64_t i = 0; i < nb; i++) {
		prefetch_block(&a[i], 256);
		const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a[i].scales));
		const __m256i bs = _mm256_loadu_si256((const __m256i *)b[i].bsums);
		const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5);
		__m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(corr));
		const __m512i sc = _mm512_zextsi256_si512(sc16);
#pragma GCC unroll 2
		for (int g = 0; g < 2; g++) {
			const __m512i ql = _mm512_loadu_si512(a[i].ql + 64 * g);
			const __m256i h = load256(a[i].qh + 32 * g);
			const __m512i hlo = _mm512_and_si512(
				join256(_mm256_slli_epi16(h, 4), _mm256_slli_epi16(h, 2)), m30);
			const __m512i hhi = _mm512_and_si512(join256(h, _mm256_srli_epi16(h, 2)), m30);
			const __m512i q01 = _mm512_or_si512(_mm512_and_si512(ql, m4), hlo);
			const __m512i q23 = _mm512_or_si512(
				_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), hhi);
			const int8_t *y = b[i].qs + 128 * g;
			const __m512i s01 = _mm512_permutexvar_epi16(
				_mm512_add_epi16(sel0, _mm512_set1_epi16((short)(8 * g))), sc);
			const __m512i s23 = _mm512_permutexvar_epi16(
				_mm512_add_epi16(sel0, _mm512_set1_epi16((short)(8 * g + 4))), sc);
			const __m512i p01 = _mm512_maddubs_epi16(q01, _mm512_loadu_si512(y));
			const __m512i p23 = _mm512_maddubs_epi16(q23, _mm512_loadu_si512(y + 64));
			sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(p01, s01));
			sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(p23, s23));
		}
		const float d = f16(a[i].d) * b[i].d;
		acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
	}
	return _mm512_reduce_add_ps(acc);
}
#endif
