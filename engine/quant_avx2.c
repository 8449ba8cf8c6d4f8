/* AVX2 + FMA + F16C kernels for the quantized types, and their AVX-512 VNNI twins.  Built with
 * target attributes so the file compiles without -mavx2; quant.c only registers them when the
 * CPU has them.
 *
 * The dot products stream weights at memory speed: integer products with maddubs (unsigned
 * x signed bytes -> int16 pairs) and madd (-> int32, applying the sub-block scale), exact
 * integer sums per block, one float FMA per block.
 *
 * The VNNI twins (end of the file) do the same arithmetic with fewer instructions: vpdpbusd
 * is maddubs + madd by ones, vpdpwssd is madd + add.  Each block's int32 lanes are the same
 * integers (exact sums, and maddubs never saturates on these operands) and the float steps are
 * the same instructions in the same order, so a VNNI kernel gives its AVX2 twin's bits, which
 * are the scalar reference's (engine/quant_ref.c): the same numbers on every x86 CPU. */
#include "config.h"

#include "engine/quant.h"
#include "engine/hsum_avx2.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* The run version of four-row kernel hyd__T_dot4_SUFFIX (see hyd_vec_dot4_run_fn): the
 * kernel inlined into a loop over the groups (flatten), each group's four results stored
 * where they go. */
#define DOT4_RUN(T, SUFFIX, ATTR)                                                                       \
	ATTR __attribute__((flatten)) void hyd__##T##_dot4run_##SUFFIX(int64_t n, const void *w, int64_t w_stride, \
								       int64_t quarter, int64_t n_groups,   \
								       const void *x, float *ret_out)       \
	{                                                                                               \
		const char *wr = w;                                                                     \
		for (int64_t g = 0; g < n_groups; g++) {                                                \
			float out[4];                                                                   \
			hyd__##T##_dot4_##SUFFIX(n, wr + g * w_stride, quarter * w_stride, x, out);     \
			for (int k = 0; k < 4; k++)                                                     \
				ret_out[g + k * quarter] = out[k];                                      \
		}                                                                                       \
	}

/* Weights are streamed once per token: prefetching ~1 KiB ahead keeps more DRAM reads in
 * flight than the hardware prefetcher alone (measured +10-25 % on the dev machine). */
#define PREFETCH_AHEAD 1024

static inline void prefetch_block(const void *p, int bytes)
{
	for (int o = 0; o < bytes; o += 64)
		_mm_prefetch((const char *)p + PREFETCH_AHEAD + o, _MM_HINT_T0);
}

/* Prefetching for the four-row kernels, by where their rows lie.
 *
 * Rows side by side (w_stride is one row: prefill's tiles, and groups of consecutive rows):
 * the group is one region, and the four rows read across it are four short streams that the
 * hardware prefetcher does not follow well.  The next group is prefetched front to back, four
 * bytes per byte consumed of a row, so the memory sees one sequential stream.
 *
 * Rows far apart (decode: engine/matmul.c gives each call one row from each quarter of its
 * share of the matrix): each row continues a long sequential stream, and each is prefetched
 * hyd__stream_ahead bytes ahead of where it is read (chosen per CPU by engine/quant.c).  Four
 * long streams read from DRAM ~10-20 % faster than four rows side by side for Q8_0, ~8 % for
 * Q6_K (alternating harness, 2 MiB pages, 256 MiB of rows of 768); a plain read of four such
 * streams runs at the speed of one sequential read, four short rows side by side at ~70 %
 * of it. */
struct four_prefetch {
	const char *base;  /* side by side: the next group; far apart: row 0 */
	int64_t stride;    /* far apart: bytes between the rows; 0: side by side */
	int64_t next;      /* side by side: offset from base to prefetch next */
	int64_t ahead;     /* far apart: bytes ahead of the reads; 0: no prefetching */
};

static inline struct four_prefetch four_prefetch_init(const void *w, int64_t w_stride, int64_t row_bytes)
{
	const char *c = w;
	if (w_stride == row_bytes)
		return (struct four_prefetch){ .base = c + 4 * w_stride, .stride = 0, .next = 0 };
	const int64_t ahead = hyd__stream_ahead;
	return (struct four_prefetch){ .base = c, .stride = w_stride, .ahead = ahead };
}

/* Called once per step of `step` bytes of each row (a constant), with how many bytes of each
 * row have been consumed (or are about to be), row_bytes_done, one step further each call.
 *
 * Far apart, each call prefetches the step that lies `ahead` bytes past the one being read,
 * as ceil(step / 64) lines from its start in each row: a fixed count, unrolled, so no branch
 * depends on where the step falls in its lines.  Consecutive steps start at most that many
 * lines apart, so no line is skipped; one may be prefetched twice, which costs a hit.  A loop
 * over exactly the lines not yet prefetched ran 2 or 3 times per Q4_K block, in a pattern
 * the branch predictor does not hold: on Zen 4 (bench/dot_bench, four streams, from L2) the
 * fixed count took the Q4_K kernel from 26.6 to 29.0 GB/s and Q6_K from 34.1 to 35.3; from
 * DRAM the difference was within the host's noise. */
static inline __attribute__((always_inline)) void four_prefetch_to(struct four_prefetch *p, int64_t row_bytes_done,
								  const int step)
{
	if (!p->stride) {
		for (const int64_t target = 4 * row_bytes_done; p->next < target; p->next += 64)
			_mm_prefetch(p->base + p->next, _MM_HINT_T0);
		return;
	}
	if (!p->ahead)
		return;
	const char *l = p->base + row_bytes_done - step + p->ahead;
	_Pragma("GCC unroll 8") for (int k = 0; k < (step + 63) / 64; k++, l += 64)
	{
		_mm_prefetch(l, _MM_HINT_T0);
		_mm_prefetch(l + p->stride, _MM_HINT_T0);
		_mm_prefetch(l + 2 * p->stride, _MM_HINT_T0);
		_mm_prefetch(l + 3 * p->stride, _MM_HINT_T0);
	}
}

/* The four rows a0..a3 of a four-row kernel, w_stride bytes apart from w. */
#define FOUR_ROWS(BLOCK)                                                                    \
	const struct BLOCK *a0 = w;                                                         \
	const struct BLOCK *a1 = (const void *)((const char *)w + w_stride);                \
	const struct BLOCK *a2 = (const void *)((const char *)w + 2 * w_stride);            \
	const struct BLOCK *a3 = (const void *)((const char *)w + 3 * w_stride)

AVX2 static inline float hmax_ps(__m256 v)
{
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* 32 bytes of quants that two operations use (the low and the high nibbles) loaded once,
 * into a register: otherwise GCC folds the load into one operation and loads again for the
 * other: one more load per 32 bytes beside the activation loads and scale broadcasts, which
 * cost ~1.3 % of llama-125m Q4_K_M one-thread decode (docs/PERFORMANCE.md). */
AVX2 static inline __m256i load_once(const void *p)
{
	__m256i v = _mm256_loadu_si256((const __m256i *)p);
	__asm__("" : "+x"(v));
	return v;
}

/* acc + madd(p, scale): the K-quants' scaled sum, as AVX2 does it (MADD_AVX2) and as
 * AVX512-VNNI does it in one instruction (MADD_VNNI); the same int32 lanes. */
#define MADD_AVX2(ACC, P, SC) _mm256_add_epi32(ACC, _mm256_madd_epi16(P, SC))
#define MADD_VNNI(ACC, P, SC) _mm256_dpwssd_epi32(ACC, P, SC)

/* acc + madd(p, the int32 at w broadcast): vpdpwssd with an embedded broadcast {1to8} of
 * its memory operand (one instruction; GCC emits a separate vpbroadcastd) */
#define MADD_VNNI_BCAST(ACC, P, W)                                                             \
	({                                                                                     \
		__m256i a_ = (ACC);                                                            \
		__asm__("vpdpwssd %2%{1to8%}, %1, %0" : "+v"(a_) : "v"(P), "m"(*(W)));         \
		a_;                                                                            \
	})

/* Signed x signed bytes -> 8 int32 sums of 4 products.  Moves a's sign onto b so maddubs
 * sees |a| unsigned; b must not hold -128. */
AVX2 static inline __m256i dot_i8(__m256i a, __m256i b)
{
	const __m256i ax = _mm256_sign_epi8(a, a);
	const __m256i sb = _mm256_sign_epi8(b, a);
	return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sb), _mm256_set1_epi16(1));
}


/* The fp16 scale at p, converted by table and broadcast: one load, no shuffle (cheaper than
 * vpinsrw + vcvtph2ps on the per-block path). */
AVX2 static inline __m256 bcast_f16(const uint16_t *p)
{
	return _mm256_broadcast_ss(&hyd__fp16_table[*p]);
}

/* One Q8_0 block of one weight row against the activation block (xq, dx):
 * acc += (d_w * d_x) * sum(w * x).  The scale product is the same float multiply as a scalar
 * d_w * d_x, done in every lane. */
AVX2 static inline __m256 q8_0_step(const struct hyd_block_q8_0 *a, __m256i xq, __m256 dx, __m256 acc)
{
	const __m256i p = dot_i8(_mm256_loadu_si256((const __m256i *)a->qs), xq);
	return _mm256_fmadd_ps(_mm256_mul_ps(bcast_f16(&a->d), dx), _mm256_cvtepi32_ps(p), acc);
}

/* Kernels of the 32-element formats (T = q8_0 or q4_0, weight blocks BLOCK, activations
 * Q8_0), in target ATTR, named hyd__T_dot_SUFFIX and hyd__T_dot4_SUFFIX.
 * Single-row, from a per-block STEP (a, xq, dx, acc): even blocks sum into acc0, odd ones
 * into acc1 (two FMA chains hide the FMA latency). */
#define QK32_DOT1_KERNEL(T, BLOCK, SUFFIX, ATTR, STEP)                                                   \
	ATTR float hyd__##T##_dot_##SUFFIX(int64_t n, const void *w, const void *x)                     \
	{                                                                                               \
		const struct BLOCK *a = w;                                                              \
		const struct hyd_block_q8_0 *b = x;                                                     \
		const int64_t nb = n / HYD_QK;                                                          \
		__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                          \
		int64_t i = 0;                                                                          \
		for (; i + 2 <= nb; i += 2) {                                                           \
			prefetch_block(&a[i], 64);                                                      \
			acc0 = STEP(&a[i], _mm256_loadu_si256((const __m256i *)b[i].qs), bcast_f16(&b[i].d), acc0); \
			acc1 = STEP(&a[i + 1], _mm256_loadu_si256((const __m256i *)b[i + 1].qs),         \
				    bcast_f16(&b[i + 1].d), acc1);                                      \
		}                                                                                       \
		if (i < nb)                                                                             \
			acc0 = STEP(&a[i], _mm256_loadu_si256((const __m256i *)b[i].qs), bcast_f16(&b[i].d), acc0); \
		return hyd__hsum8_ps(_mm256_add_ps(acc0, acc1));                                        \
	}

/* Four-row, from a per-block STEP (a, xq, xs, dx, acc) where xs = XS(xq) is a term of the
 * activation block computed once for the four rows: four weight rows against one activation
 * row, each row's sums exactly as in the single-row kernel. */
#define QK32_DOT4_KERNEL(T, BLOCK, SUFFIX, ATTR, STEP, XS)                                               \
	ATTR void hyd__##T##_dot4_##SUFFIX(int64_t n, const void *w, int64_t w_stride, const void *x,    \
					   float *ret_out)                                              \
	{                                                                                               \
		FOUR_ROWS(BLOCK);                                                                       \
		const struct hyd_block_q8_0 *b = x;                                                     \
		const int64_t nb = n / HYD_QK;                                                          \
		__m256 e0 = _mm256_setzero_ps(), e1 = e0, e2 = e0, e3 = e0; /* even blocks */           \
		__m256 o0 = e0, o1 = e0, o2 = e0, o3 = e0;                  /* odd blocks */            \
		struct four_prefetch pf = four_prefetch_init(w, w_stride, nb * (int64_t)sizeof(*a0));   \
		int64_t i = 0;                                                                          \
		for (; i + 2 <= nb; i += 2) {                                                           \
			four_prefetch_to(&pf, (i + 2) * (int64_t)sizeof(*a0), 2 * (int)sizeof(*a0));    \
			__m256i xq = _mm256_loadu_si256((const __m256i *)b[i].qs);                      \
			__m256i xs = XS(xq);                                                            \
			__m256 dx = bcast_f16(&b[i].d);                                                 \
			e0 = STEP(&a0[i], xq, xs, dx, e0);                                              \
			e1 = STEP(&a1[i], xq, xs, dx, e1);                                              \
			e2 = STEP(&a2[i], xq, xs, dx, e2);                                              \
			e3 = STEP(&a3[i], xq, xs, dx, e3);                                              \
			xq = _mm256_loadu_si256((const __m256i *)b[i + 1].qs);                          \
			xs = XS(xq);                                                                    \
			dx = bcast_f16(&b[i + 1].d);                                                    \
			o0 = STEP(&a0[i + 1], xq, xs, dx, o0);                                          \
			o1 = STEP(&a1[i + 1], xq, xs, dx, o1);                                          \
			o2 = STEP(&a2[i + 1], xq, xs, dx, o2);                                          \
			o3 = STEP(&a3[i + 1], xq, xs, dx, o3);                                          \
		}                                                                                       \
		if (i < nb) {                                                                           \
			const __m256i xq = _mm256_loadu_si256((const __m256i *)b[i].qs);                \
			const __m256i xs = XS(xq);                                                      \
			const __m256 dx = bcast_f16(&b[i].d);                                           \
			e0 = STEP(&a0[i], xq, xs, dx, e0);                                              \
			e1 = STEP(&a1[i], xq, xs, dx, e1);                                              \
			e2 = STEP(&a2[i], xq, xs, dx, e2);                                              \
			e3 = STEP(&a3[i], xq, xs, dx, e3);                                              \
		}                                                                                       \
		_mm_storeu_ps(ret_out, hyd__hsum8x4_ps(_mm256_add_ps(e0, o0), _mm256_add_ps(e1, o1),    \
						       _mm256_add_ps(e2, o2), _mm256_add_ps(e3, o3)));  \
	}

/* Q8_0's four-row step has no activation term */
#define NO_XS(xq) (xq)
#define Q8_0_KERNELS(SUFFIX, ATTR, STEP)                                                                 \
	ATTR static inline __m256 STEP##4(const struct hyd_block_q8_0 *a, __m256i xq, __m256i xs, __m256 dx, \
					  __m256 acc)                                                   \
	{                                                                                               \
		(void)xs;                                                                               \
		return STEP(a, xq, dx, acc);                                                            \
	}                                                                                               \
	QK32_DOT1_KERNEL(q8_0, hyd_block_q8_0, SUFFIX, ATTR, STEP)                                      \
	QK32_DOT4_KERNEL(q8_0, hyd_block_q8_0, SUFFIX, ATTR, STEP##4, NO_XS)

Q8_0_KERNELS(avx2, AVX2, q8_0_step)

/* 16 bytes of packed nibbles -> 32 bytes: low nibbles in lane 0, high nibbles in lane 1,
 * which is the Q4_0 element order. */
AVX2 static inline __m256i unpack_nibbles(const uint8_t *p)
{
	const __m128i q = _mm_loadu_si128((const __m128i *)p);
	const __m256i v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
	return _mm256_and_si256(v, _mm256_set1_epi8(0xF));
}

AVX2 static inline __m256 q4_0_step(const struct hyd_block_q4_0 *a, __m256i xq, __m256 dx, __m256 acc)
{
	const __m256i q = _mm256_sub_epi8(unpack_nibbles(a->qs), _mm256_set1_epi8(8));
	return _mm256_fmadd_ps(_mm256_mul_ps(bcast_f16(&a->d), dx), _mm256_cvtepi32_ps(dot_i8(q, xq)), acc);
}

QK32_DOT1_KERNEL(q4_0, hyd_block_q4_0, avx2, AVX2, q4_0_step)

/* The four-row Q4_0 kernel gets q4_0_step's int32 lanes another way: sum((q - 8) * x) =
 * sum(q * x) - 8 * sum(x), with q in 0..15 straight into maddubs (no sign juggling) and the
 * activation's lane sums computed once for the four rows.  Same integers, same floats. */
AVX2 static inline __m256i q4_0_unsigned(const struct hyd_block_q4_0 *a)
{
	/* low nibbles to the low 128 bits, high ones to the high 128 */
	const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)a->qs));
	return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0xF));
}

AVX2 static inline __m256 q4_0_step_unsigned(const struct hyd_block_q4_0 *a, __m256i xq, __m256i xsum8, __m256 dx,
					     __m256 acc)
{
	const __m256i p = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(q4_0_unsigned(a), xq), _mm256_set1_epi16(1)),
					   xsum8);
	return _mm256_fmadd_ps(_mm256_mul_ps(bcast_f16(&a->d), dx), _mm256_cvtepi32_ps(p), acc);
}

/* 8 * (sums of four consecutive activation bytes), the lanes dot_i8 produces */
AVX2 static inline __m256i lane_sums_x8(__m256i xq)
{
	const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xq), _mm256_set1_epi16(1));
	return _mm256_slli_epi32(s, 3);
}

QK32_DOT4_KERNEL(q4_0, hyd_block_q4_0, avx2, AVX2, q4_0_step_unsigned, lane_sums_x8)

/* The 12 packed bytes of Q4_K/Q5_K scales -> bytes 0..7: the 8 scales, 8..15: the 8 mins,
 * in both 128-bit lanes.  Reads 16 bytes: the 4 past the scales are still inside the block. */
AVX2 static inline __m256i k4_scales_mins(const uint8_t *scales)
{
	const __m128i v = _mm_loadu_si128((const __m128i *)scales);
	/* dwords: sc[0..3] = u0, sc[4..7] = u2 | u0 bits 6-7, m[0..3] = u1, m[4..7] = u2>>4 | u1 */
	const __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));
	const __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));
	const __m128i lo = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
					 _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
	const __m128i hi = _mm_and_si128(_mm_srli_epi32(b, 2),
					 _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
	return _mm256_broadcastsi128_si256(_mm_or_si128(lo, hi));
}

/* d_x * d and d_x * dmin of a Q4_K/Q5_K block, its two adjacent fp16 scales converted
 * together by F16C: the 64 Ki-entry table would be read at a random place twice per block
 * and row, evicting streamed weights from L1 and L2.  Exact conversions, so the same floats. */
AVX2 static inline void k4_d_dmin(const uint16_t *d, __m256 bd, __m256 *ret_d, __m256 *ret_dmin)
{
	int32_t both;
	memcpy(&both, d, sizeof(both));
	const __m128 v = _mm_cvtph_ps(_mm_cvtsi32_si128(both));
	*ret_d = _mm256_mul_ps(bd, _mm256_broadcastss_ps(v));
	*ret_dmin = _mm256_mul_ps(bd, _mm256_broadcastss_ps(_mm_movehdup_ps(v)));
}

/* int16 lanes all holding byte k of a k4_scales_mins() vector (pshufb: 0x80 zeroes) */
#define PICK16(k) _mm256_set1_epi16((short)(0x8000 | (k)))

/* sum_j m[j] * (activation sum of sub-block j) as 8 int32, from the 16 bsums: bsums[i]
 * pairs with min i/2 (byte 8 + i/2; lanes 8..15 live in the upper 128 bits). */
AVX2 static inline __m256i k4_mins_dot(__m256i sm, const int16_t *bsums)
{
	const __m256i pick = _mm256_setr_epi16(
		(short)0x8008, (short)0x8008, (short)0x8009, (short)0x8009, (short)0x800a,
		(short)0x800a, (short)0x800b, (short)0x800b, (short)0x800c, (short)0x800c,
		(short)0x800d, (short)0x800d, (short)0x800e, (short)0x800e, (short)0x800f,
		(short)0x800f);
	const __m256i bs = _mm256_loadu_si256((const __m256i *)bsums);
	return _mm256_madd_epi16(_mm256_shuffle_epi8(sm, pick), bs);
}

/* One 64-element chunk: 32 low quants (sub-block 2j) and 32 high (2j+1), scaled and summed
 * by MADD (MADD_AVX2 or MADD_VNNI). */
#define K4_CHUNK(j, LO, HI, Y, SCALE, SRC, SUM0, SUM1, MADD)                                \
	do {                                                                                \
		const __m256i ylo_ = _mm256_loadu_si256((const __m256i *)((Y) + 64 * (j)));   \
		const __m256i yhi_ = _mm256_loadu_si256((const __m256i *)((Y) + 64 * (j) + 32)); \
		SUM0 = MADD(SUM0, _mm256_maddubs_epi16(LO, ylo_), SCALE(SRC, 2 * (j)));       \
		SUM1 = MADD(SUM1, _mm256_maddubs_epi16(HI, yhi_), SCALE(SRC, 2 * (j) + 1));   \
	} while (0)

/* the scale of sub-block k in every int16 lane, picked out of a k4_scales_mins() vector */
#define K4_PICK(SM, k) _mm256_shuffle_epi8(SM, PICK16(k))

/* The end of a Q4_K/Q5_K block of one row: acc += d * sumi - dmin * mins, with d = d_x * d_w
 * and dmin = d_x * dmin_w (bd = d_x in every lane; d_dmin points at the block's d, dmin). */
AVX2 static inline __m256 k4_finish(const uint16_t *d_dmin, __m256 bd, __m256i sumi, __m256i mins, __m256 acc)
{
	__m256 d, dmin;
	k4_d_dmin(d_dmin, bd, &d, &dmin);
	acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
	return _mm256_fnmadd_ps(dmin, _mm256_cvtepi32_ps(mins), acc);
}

/* sum(sc * q * y) of one Q4_K block (quants QS, activations Y) as 8 int32 lanes into RET;
 * SCALE(SRC, k) gives sub-block k's scale in every int16 lane (K4_PICK). */
#define Q4_K_SUMI(QS, Y, SCALE, SRC, RET, MADD)                                             \
	do {                                                                                \
		const __m256i m4_ = _mm256_set1_epi8(0xF);                                  \
		__m256i s0_ = _mm256_setzero_si256(), s1_ = _mm256_setzero_si256();         \
		_Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                         \
		{                                                                           \
			const __m256i q4_ = load_once((QS) + 32 * j);                       \
			const __m256i lo_ = _mm256_and_si256(q4_, m4_);                     \
			const __m256i hi_ = _mm256_and_si256(_mm256_srli_epi16(q4_, 4), m4_); \
			K4_CHUNK(j, lo_, hi_, Y, SCALE, SRC, s0_, s1_, MADD);               \
		}                                                                           \
		RET = _mm256_add_epi32(s0_, s1_);                                           \
	} while (0)

/* One Q4_K super-block of one row: acc += d * sum(sc * q * y) - dmin * sum(m * bsums). */
#define Q4_K_STEP(NAME, ATTR, MADD)                                                                      \
	ATTR static inline __m256 NAME(const struct hyd_block_q4_k *a, const struct hyd_block_q8_k *b, __m256 bd, \
				       __m256 acc)                                                       \
	{                                                                                                \
		const __m256i sm = k4_scales_mins(a->scales);                                            \
		__m256i sumi;                                                                            \
		Q4_K_SUMI(a->qs, b->qs, K4_PICK, sm, sumi, MADD);                                        \
		return k4_finish(&a->d, bd, sumi, k4_mins_dot(sm, b->bsums), acc);                       \
	}

Q4_K_STEP(q4_k_step, AVX2, MADD_AVX2)

AVX2 static inline __m256 q5_k_step(const struct hyd_block_q5_k *a, const struct hyd_block_q8_k *b, __m256 bd,
				    __m256 acc)
{
	const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
	const __m256i sm = k4_scales_mins(a->scales);
	const __m256i mins = k4_mins_dot(sm, b->bsums);
	const uint8_t *q = a->qs;
	const int8_t *y = b->qs;
	/* bit j of each qh byte belongs to sub-block j: shift it down one step per sub-block
	 * (16-bit shifts are fine, only bit 0 of each byte is kept) */
	__m256i h = _mm256_loadu_si256((const __m256i *)a->qh);
	__m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
#pragma GCC unroll 4
	for (int j = 0; j < 4; j++) {
		const __m256i q4 = load_once(q + 32 * j);
		__m256i lo = _mm256_and_si256(q4, m4);
		__m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
		lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
		h = _mm256_srli_epi16(h, 1);
		hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
		h = _mm256_srli_epi16(h, 1);
		K4_CHUNK(j, lo, hi, y, K4_PICK, sm, s0, s1, MADD_AVX2);
	}
	return k4_finish(&a->d, bd, _mm256_add_epi32(s0, s1), mins, acc);
}

/* Q6_K: q in 0..63 goes to maddubs unsigned; the -32 offset is applied once per block as
 * 32 * sum(sc[k] * bsums[k]). */

/* Group g (128 weights) of a Q6_K block: its quants in q[0..3] (32 each, 0..63), and as the
 * return value its 8 int16 scales in both 128-bit lanes (sc16 = the block's 16 scales). */
AVX2 static inline __m256i q6_k_group(const struct hyd_block_q6_k *a, int g, __m256i sc16, __m256i q[4])
{
	const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
	const uint8_t *ql = a->ql + 64 * g;
	const __m256i l0 = load_once(ql), l1 = load_once(ql + 32), h = load_once(a->qh + 32 * g);
	q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
	q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
	q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
	q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
			       _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
	return g ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00);
}

/* Chunk k of a group (32 quants) takes scale 2k in its low 16 elements (lane 0) and 2k+1 in
 * its high ones: those int16 scales picked out of the group's (sg). */
AVX2 static inline __m256i q6_k_chunk_scales(__m256i sg, int k)
{
	const __m256i pick = _mm256_setr_epi8(
		4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
		4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
		4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3,
		4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3,
		4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3);
	return _mm256_shuffle_epi8(sg, pick);
}

#define Q6_K_STEP(NAME, ATTR, MADD)                                                                      \
	ATTR static inline __m256 NAME(const struct hyd_block_q6_k *a, const struct hyd_block_q8_k *b, __m256 bd, \
				       __m256 acc)                                                       \
	{                                                                                                \
		const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a->scales));  \
		const __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)b->bsums)); \
		__m256i s0 = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5));      \
		__m256i s1 = _mm256_setzero_si256();                                                     \
		_Pragma("GCC unroll 2") for (int g = 0; g < 2; g++)                                      \
		{                                                                                        \
			__m256i q[4];                                                                    \
			const __m256i sg = q6_k_group(a, g, sc16, q);                                    \
			const int8_t *y = b->qs + 128 * g;                                               \
			_Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)                              \
			{                                                                                \
				const __m256i yk = _mm256_loadu_si256((const __m256i *)(y + 32 * k));    \
				const __m256i p = _mm256_maddubs_epi16(q[k], yk);                        \
				if (k & 1)                                                               \
					s1 = MADD(s1, p, q6_k_chunk_scales(sg, k));                      \
				else                                                                     \
					s0 = MADD(s0, p, q6_k_chunk_scales(sg, k));                      \
			}                                                                                \
		}                                                                                        \
		return _mm256_fmadd_ps(_mm256_mul_ps(bcast_f16(&a->d), bd),                              \
				       _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), acc);               \
	}

Q6_K_STEP(q6_k_step, AVX2, MADD_AVX2)

/* q6_k_step for two activation rows at once: the 6-bit quants and the scale vectors are
 * built once; per activation row the integer sums, their split over s0 and s1 and the float
 * step are q6_k_step's, so each result has its bits. */
AVX2 static inline void q6_k_step2(const struct hyd_block_q6_k *a, const struct hyd_block_q8_k *b0,
				   const struct hyd_block_q8_k *b1, __m256 bd0, __m256 bd1, __m256 *acc0, __m256 *acc1)
{
	const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a->scales));
	const __m256i corr0 = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)b0->bsums));
	const __m256i corr1 = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)b1->bsums));
	__m256i s00 = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr0, 5)), s01 = _mm256_setzero_si256();
	__m256i s10 = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr1, 5)), s11 = _mm256_setzero_si256();
#pragma GCC unroll 2
	for (int g = 0; g < 2; g++) {
		__m256i q[4];
		const __m256i sg = q6_k_group(a, g, sc16, q);
		const int8_t *y0 = b0->qs + 128 * g, *y1 = b1->qs + 128 * g;
#pragma GCC unroll 4
		for (int k = 0; k < 4; k++) {
			const __m256i sk = q6_k_chunk_scales(sg, k);
			const __m256i p0 = _mm256_madd_epi16(
				_mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(y0 + 32 * k))), sk);
			const __m256i p1 = _mm256_madd_epi16(
				_mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(y1 + 32 * k))), sk);
			if (k & 1) {
				s01 = _mm256_add_epi32(s01, p0);
				s11 = _mm256_add_epi32(s11, p1);
			} else {
				s00 = _mm256_add_epi32(s00, p0);
				s10 = _mm256_add_epi32(s10, p1);
			}
		}
	}
	const __m256 d = bcast_f16(&a->d);
	*acc0 = _mm256_fmadd_ps(_mm256_mul_ps(d, bd0), _mm256_cvtepi32_ps(_mm256_add_epi32(s00, s01)), *acc0);
	*acc1 = _mm256_fmadd_ps(_mm256_mul_ps(d, bd1), _mm256_cvtepi32_ps(_mm256_add_epi32(s10, s11)), *acc1);
}

/* Single-row and four-row kernels of the K-quants from their per-block step: the four-row
 * one runs each row's steps in the single-row order, so its results are the same bits. */
#define K_DOT_KERNEL1(T, BLOCK, LINES, SUFFIX, ATTR, STEP)                                              \
	ATTR float hyd__##T##_dot_##SUFFIX(int64_t n, const void *w, const void *x)                    \
	{                                                                                               \
		const struct BLOCK *a = w;                                                              \
		const struct hyd_block_q8_k *b = x;                                                     \
		__m256 acc = _mm256_setzero_ps();                                                       \
		for (int64_t i = 0; i < n / HYD_QK_K; i++) {                                            \
			prefetch_block(&a[i], 64 * (LINES));                                            \
			acc = STEP(&a[i], &b[i], _mm256_broadcast_ss(&b[i].d), acc);                    \
		}                                                                                       \
		return hyd__hsum8_ps(acc);                                                                    \
	}

#define K_DOT_KERNELS(T, BLOCK, LINES, SUFFIX, ATTR, STEP)                                              \
	K_DOT_KERNEL1(T, BLOCK, LINES, SUFFIX, ATTR, STEP)                                              \
	ATTR void hyd__##T##_dot4_##SUFFIX(int64_t n, const void *w, int64_t w_stride, const void *x,  \
				       float *ret_out)                                                  \
	{                                                                                               \
		FOUR_ROWS(BLOCK);                                                                       \
		const struct hyd_block_q8_k *b = x;                                                     \
		__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;               \
		struct four_prefetch pf = four_prefetch_init(w, w_stride, n / HYD_QK_K * (int64_t)sizeof(*a0)); \
		for (int64_t i = 0; i < n / HYD_QK_K; i++) {                                            \
			four_prefetch_to(&pf, (i + 1) * (int64_t)sizeof(*a0), (int)sizeof(*a0));        \
			const __m256 bd = _mm256_broadcast_ss(&b[i].d);                                 \
			acc0 = STEP(&a0[i], &b[i], bd, acc0);                                           \
			acc1 = STEP(&a1[i], &b[i], bd, acc1);                                           \
			acc2 = STEP(&a2[i], &b[i], bd, acc2);                                           \
			acc3 = STEP(&a3[i], &b[i], bd, acc3);                                           \
		}                                                                                       \
		_mm_storeu_ps(ret_out, hyd__hsum8x4_ps(acc0, acc1, acc2, acc3));                               \
	}

/* lines of 64 bytes per block: 144, 176 and 210 bytes */
K_DOT_KERNEL1(q4_k, hyd_block_q4_k, 3, avx2, AVX2, q4_k_step)

/* The four-row Q4_K kernel unpacks each block's scales one block ahead, into memory: the
 * chunks then take their scale words with broadcast loads, which run on the load ports,
 * not with byte shuffles competing with the nibble splits for the vector pipes, and the
 * stores are long done when the loads come.  Unpacking in the same block and loading at once measured
 * 12-18 % slower (a store forwarded to narrower loads at other offsets stalls); one block
 * ahead, 3-5 % faster (/tmp harness of alternating runs from L2; llama-125m Q4_K_M decode
 * paired median 1.033).  Same integer sums and float steps as q4_k_step, so the same bits
 * as the single-row kernel. */
struct k4_ahead {
	int32_t words[4][8]; /* per row: sub-block scales as (sc | sc << 16) */
	int32_t mins[4][8];  /* per row: k4_mins_dot() */
};

AVX2 static inline void k4_prepare(struct k4_ahead *p, int r, const struct hyd_block_q4_k *a,
				   const struct hyd_block_q8_k *b)
{
	const __m256i sm = k4_scales_mins(a->scales);
	_mm256_store_si256((__m256i *)p->mins[r], k4_mins_dot(sm, b->bsums));
	/* dword k = scale k in both of its int16 halves, by one byte shuffle (-128 zeroes; both
	 * lanes of sm hold the 8 scales): 3 fewer vector operations than widening, shifting
	 * and or-ing (llama-125m Q4_K_M one-thread decode, paired medians 1.032 and 1.031) */
	const __m256i spread = _mm256_setr_epi8(0, -128, 0, -128, 1, -128, 1, -128, 2, -128, 2, -128, 3, -128, 3, -128,
						4, -128, 4, -128, 5, -128, 5, -128, 6, -128, 6, -128, 7, -128, 7, -128);
	_mm256_store_si256((__m256i *)p->words[r], _mm256_shuffle_epi8(sm, spread));
}

/* Chunk j (64 elements) of row R (blocks AR) into its two sums, sR0 (low nibbles) and sR1
 * (high), with the scale words of the `cur` block ahead: q4_k_step's integer steps. */
#define K4_ROW_CHUNK(R, AR, MADD)                                                                     \
	do {                                                                                          \
		const __m256i q_ = load_once((AR)[i].qs + 32 * j);                                    \
		s##R##0 = MADD(s##R##0, _mm256_maddubs_epi16(_mm256_and_si256(q_, m4), ylo),          \
			       &cur->words[R][2 * j]);                                                \
		s##R##1 = MADD(s##R##1, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q_, 4), m4), yhi), \
			       &cur->words[R][2 * j + 1]);                                            \
	} while (0)

/* The four-row Q4_K kernel (SUFFIX, target ATTR, scaled sums by MADD).  The four rows go
 * through each 64-element chunk together (chunk j of rows 0-3, then chunk j + 1): the
 * activation loads are shared, and the out-of-order core finds the four rows' independent
 * chains within a few dozen instructions instead of a whole row's block apart.  From L2
 * (bench/dot_bench, Zen 4, VNNI) 1.09x the kernel that ran a block of one row, then of the
 * next.  Same integer sums (sR0 + sR1 are q4_k_step's s0_ + s1_) and float steps, so the
 * same bits.  The compiler must read the scale words back from memory, not shuffle them out
 * of the registers it stored from (the asm). */
#define Q4_K_DOT4_KERNEL(SUFFIX, ATTR, MADD)                                                             \
	ATTR void hyd__q4_k_dot4_##SUFFIX(int64_t n, const void *w, int64_t w_stride, const void *x,     \
					  float *ret_out)                                               \
	{                                                                                                \
		FOUR_ROWS(hyd_block_q4_k);                                                               \
		const struct hyd_block_q8_k *b = x;                                                      \
		const int64_t nb = n / HYD_QK_K;                                                         \
		const __m256i m4 = _mm256_set1_epi8(0xF);                                                \
		__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;                \
		struct four_prefetch pf = four_prefetch_init(w, w_stride, nb * (int64_t)sizeof(*a0));    \
		_Alignas(32) struct k4_ahead ahead[2];                                                   \
		if (nb > 0) {                                                                            \
			k4_prepare(&ahead[0], 0, &a0[0], &b[0]);                                         \
			k4_prepare(&ahead[0], 1, &a1[0], &b[0]);                                         \
			k4_prepare(&ahead[0], 2, &a2[0], &b[0]);                                         \
			k4_prepare(&ahead[0], 3, &a3[0], &b[0]);                                         \
		}                                                                                        \
		for (int64_t i = 0; i < nb; i++) {                                                       \
			four_prefetch_to(&pf, (i + 1) * (int64_t)sizeof(*a0), (int)sizeof(*a0));         \
			struct k4_ahead *cur = &ahead[i & 1], *next = &ahead[(i + 1) & 1];               \
			if (i + 1 < nb) {                                                                \
				k4_prepare(next, 0, &a0[i + 1], &b[i + 1]);                              \
				k4_prepare(next, 1, &a1[i + 1], &b[i + 1]);                              \
				k4_prepare(next, 2, &a2[i + 1], &b[i + 1]);                              \
				k4_prepare(next, 3, &a3[i + 1], &b[i + 1]);                              \
			}                                                                                \
			__asm__ volatile("" : "+m"(ahead));                                              \
			__m256i s00 = _mm256_setzero_si256(), s01 = s00, s10 = s00, s11 = s00;           \
			__m256i s20 = s00, s21 = s00, s30 = s00, s31 = s00;                              \
			const int8_t *y = b[i].qs;                                                       \
			_Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                              \
			{                                                                                \
				const __m256i ylo = _mm256_loadu_si256((const __m256i *)(y + 64 * j));   \
				const __m256i yhi = _mm256_loadu_si256((const __m256i *)(y + 64 * j + 32)); \
				K4_ROW_CHUNK(0, a0, MADD);                                               \
				K4_ROW_CHUNK(1, a1, MADD);                                               \
				K4_ROW_CHUNK(2, a2, MADD);                                               \
				K4_ROW_CHUNK(3, a3, MADD);                                               \
			}                                                                                \
			const __m256 bd = _mm256_broadcast_ss(&b[i].d);                                  \
			acc0 = k4_finish(&a0[i].d, bd, _mm256_add_epi32(s00, s01),                       \
					 _mm256_load_si256((const __m256i *)cur->mins[0]), acc0);        \
			acc1 = k4_finish(&a1[i].d, bd, _mm256_add_epi32(s10, s11),                       \
					 _mm256_load_si256((const __m256i *)cur->mins[1]), acc1);        \
			acc2 = k4_finish(&a2[i].d, bd, _mm256_add_epi32(s20, s21),                       \
					 _mm256_load_si256((const __m256i *)cur->mins[2]), acc2);        \
			acc3 = k4_finish(&a3[i].d, bd, _mm256_add_epi32(s30, s31),                       \
					 _mm256_load_si256((const __m256i *)cur->mins[3]), acc3);        \
		}                                                                                        \
		_mm_storeu_ps(ret_out, hyd__hsum8x4_ps(acc0, acc1, acc2, acc3));                         \
	}

#define MADDW_AVX2(ACC, P, W) MADD_AVX2(ACC, P, _mm256_set1_epi32(*(W)))
Q4_K_DOT4_KERNEL(avx2, AVX2, MADDW_AVX2)

/* q4_k_step for two activation rows at once (prefill): each weight block's nibbles, scale
 * words and d are unpacked once for both; per activation row the integer sums (exact) and
 * k4_finish are q4_k_step's, so each result has hyd__q4_k_dot4_avx2's bits.  1.14-1.4x the
 * four-row kernel's speed on a tile of 16 outputs x 8 rows from L1 (/tmp harness). */
AVX2 static inline void q4_k_step2(const struct hyd_block_q4_k *a, const struct hyd_block_q8_k *b0,
				   const struct hyd_block_q8_k *b1, __m256 bd0, __m256 bd1, __m256 *acc0, __m256 *acc1)
{
	const __m256i m4 = _mm256_set1_epi8(0xF);
	/* dword k = scale k in both of its int16 halves (as k4_prepare) */
	const __m256i spread = _mm256_setr_epi8(0, -128, 0, -128, 1, -128, 1, -128, 2, -128, 2, -128, 3, -128, 3, -128,
						4, -128, 4, -128, 5, -128, 5, -128, 6, -128, 6, -128, 7, -128, 7, -128);
	const __m256i sm = k4_scales_mins(a->scales);
	/* through memory, so the chunks take their words with broadcast loads */
	_Alignas(32) int32_t words[8];
	_mm256_store_si256((__m256i *)words, _mm256_shuffle_epi8(sm, spread));
	__asm__ volatile("" : "+m"(words));
	__m256i s00 = _mm256_setzero_si256(), s01 = s00, s10 = s00, s11 = s00;
#pragma GCC unroll 4
	for (int j = 0; j < 4; j++) {
		const __m256i q4 = load_once(a->qs + 32 * j);
		const __m256i lo = _mm256_and_si256(q4, m4);
		const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
		const __m256i w0 = _mm256_set1_epi32(words[2 * j]), w1 = _mm256_set1_epi32(words[2 * j + 1]);
		const int8_t *y0 = b0->qs + 64 * j, *y1 = b1->qs + 64 * j;
		s00 = _mm256_add_epi32(s00, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)y0)), w0));
		s01 = _mm256_add_epi32(s01, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(y0 + 32))), w1));
		s10 = _mm256_add_epi32(s10, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)y1)), w0));
		s11 = _mm256_add_epi32(s11, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(y1 + 32))), w1));
	}
	*acc0 = k4_finish(&a->d, bd0, _mm256_add_epi32(s00, s01), k4_mins_dot(sm, b0->bsums), *acc0);
	*acc1 = k4_finish(&a->d, bd1, _mm256_add_epi32(s10, s11), k4_mins_dot(sm, b1->bsums), *acc1);
}

/* Prefill: four rows against two activation rows from a per-block two-row step; out[k] for
 * x0 and out[4 + k] for x1, each bit for bit the four-row kernel's. */
#define K_DOT4X2_KERNEL(T, BLOCK)                                                                       \
	AVX2 void hyd__##T##_dot4x2_avx2(int64_t n, const void *w, int64_t w_stride, const void *x0,   \
					 const void *x1, float *ret_out)                                \
	{                                                                                               \
		FOUR_ROWS(BLOCK);                                                                       \
		const struct BLOCK *const rows[4] = { a0, a1, a2, a3 };                                 \
		const struct hyd_block_q8_k *b0 = x0, *b1 = x1;                                         \
		__m256 acc[2][4];                                                                       \
		for (int r = 0; r < 4; r++)                                                             \
			acc[0][r] = acc[1][r] = _mm256_setzero_ps();                                    \
		for (int64_t i = 0; i < n / HYD_QK_K; i++) {                                            \
			const __m256 bd0 = _mm256_broadcast_ss(&b0[i].d);                               \
			const __m256 bd1 = _mm256_broadcast_ss(&b1[i].d);                               \
			_Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)                             \
				T##_step2(&rows[r][i], &b0[i], &b1[i], bd0, bd1, &acc[0][r], &acc[1][r]); \
		}                                                                                       \
		_mm_storeu_ps(ret_out, hyd__hsum8x4_ps(acc[0][0], acc[0][1], acc[0][2], acc[0][3]));    \
		_mm_storeu_ps(ret_out + 4, hyd__hsum8x4_ps(acc[1][0], acc[1][1], acc[1][2], acc[1][3])); \
	}

K_DOT4X2_KERNEL(q4_k, hyd_block_q4_k)
K_DOT_KERNELS(q5_k, hyd_block_q5_k, 3, avx2, AVX2, q5_k_step)
K_DOT_KERNELS(q6_k, hyd_block_q6_k, 4, avx2, AVX2, q6_k_step)

K_DOT4X2_KERNEL(q6_k, hyd_block_q6_k)

/* ---- AVX-512 VNNI twins (see the top of the file): 256-bit registers, so AVX512VL.  On
 * Zen 4 (bench/dot_bench, rows of 768, from L2) they run 1.08-1.27x the AVX2 kernels' speed;
 * 512-bit registers (two 64-element chunks, or both halves of one, per register) measured
 * slower there: the extra shuffles cost more than the halved instruction count saves. */
#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

/* dot_i8 with vpdpbusd: the same int32 lanes, since dot_i8's maddubs cannot saturate (|a| is
 * at most 128 and the moved sign leaves b in -128..127: pair sums lie in -32768..32512) */
VNNI static inline __m256 q8_0_step_vnni(const struct hyd_block_q8_0 *a, __m256i xq, __m256 dx, __m256 acc)
{
	const __m256i wq = _mm256_loadu_si256((const __m256i *)a->qs);
	const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
	return _mm256_fmadd_ps(_mm256_mul_ps(bcast_f16(&a->d), dx), _mm256_cvtepi32_ps(p), acc);
}

Q8_0_KERNELS(avx512vnni, VNNI, q8_0_step_vnni)

/* Q4_0's unsigned step with vpdpbusd, starting from -8 * (the activation's lane sums)
 * instead of subtracting them: the same integers */
VNNI static inline __m256i neg_lane_sums_x8_vnni(__m256i xq)
{
	const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), xq);
	return _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(s, 3));
}

VNNI static inline __m256 q4_0_step_vnni(const struct hyd_block_q4_0 *a, __m256i xq, __m256i neg_xsum8, __m256 dx,
					 __m256 acc)
{
	const __m256i p = _mm256_dpbusd_epi32(neg_xsum8, q4_0_unsigned(a), xq);
	return _mm256_fmadd_ps(_mm256_mul_ps(bcast_f16(&a->d), dx), _mm256_cvtepi32_ps(p), acc);
}

VNNI static inline __m256 q4_0_step1_vnni(const struct hyd_block_q4_0 *a, __m256i xq, __m256 dx, __m256 acc)
{
	return q4_0_step_vnni(a, xq, neg_lane_sums_x8_vnni(xq), dx, acc);
}

QK32_DOT1_KERNEL(q4_0, hyd_block_q4_0, avx512vnni, VNNI, q4_0_step1_vnni)
QK32_DOT4_KERNEL(q4_0, hyd_block_q4_0, avx512vnni, VNNI, q4_0_step_vnni, neg_lane_sums_x8_vnni)

Q4_K_STEP(q4_k_step_vnni, VNNI, MADD_VNNI)
K_DOT_KERNEL1(q4_k, hyd_block_q4_k, 3, avx512vnni, VNNI, q4_k_step_vnni)
/* The VNNI four-row Q4_K kernel: q4_k_dot4_avx2's chunks with vpdpwssd, and the per-block
 * work of the four rows done together on 512-bit registers, one 128-bit lane per row.  The
 * 16 bytes at the start of each row's block (d, dmin and the 12 bytes of scales) fill one
 * lane; k4_scales_mins' unpacking runs once for the four; each pair of rows' scale words and
 * mins (k4_prepare's vectors, two rows per register) is a lane copy and a byte shuffle; and
 * the four rows' d_x d and d_x dmin are one conversion and one multiply, stored for the
 * finish to take as broadcast operands of its FMAs.  From the four-row AVX2 kernel's 12
 * operations per row and block for the unpacking and 12 for the finish to ~6 and 5.
 * Same integer sums and float steps as q4_k_step (the same products d_x d, the same FMAs in
 * the same order), so the AVX2 kernel's bits.  On Zen 4 (a /tmp harness, rows of 768 and
 * 1,536, four streams, medians of 15 alternating rounds) 1.02-1.03x the four-row macro's
 * kernel from L2 and 1.03-1.05x from DRAM; one-thread decode with the prefetch change above,
 * alternating with the previous build: mamba-130m Q4_K_M 1.014x (9 of 10 pairs won),
 * granite-h-350m Q4_K_M 1.027x (6 of 8). */
struct k4_ahead4 {
	_Alignas(64) int32_t words[4][8]; /* as k4_ahead */
	int32_t mins[4][8];
	float dm[8]; /* d_x d, d_x dmin of rows 0..3 */
};

/* lanes 0-1 of a register holding one row's k4_scales_mins() bytes in both: lane 0 gives
 * scale words 0-3, lane 1 words 4-7 (k4_prepare's spread); -128 zeroes */
static const int8_t k4_words_idx[64] __attribute__((aligned(64))) = {
#define W4(k) k, -128, k, -128
	W4(0), W4(1), W4(2), W4(3), W4(4), W4(5), W4(6), W4(7),
	W4(0), W4(1), W4(2), W4(3), W4(4), W4(5), W4(6), W4(7),
#undef W4
};

/* the same for k4_mins_dot's pick: int16 lane i holds min i/2 (byte 8 + i/2) */
static const int8_t k4_mins_idx[64] __attribute__((aligned(64))) = {
#define M4(k) k, -128, k, -128
	M4(8), M4(9), M4(10), M4(11), M4(12), M4(13), M4(14), M4(15),
	M4(8), M4(9), M4(10), M4(11), M4(12), M4(13), M4(14), M4(15),
#undef M4
};

VNNI static inline void k4_prepare4(struct k4_ahead4 *p, const struct hyd_block_q4_k *r0,
				    const struct hyd_block_q4_k *r1, const struct hyd_block_q4_k *r2,
				    const struct hyd_block_q4_k *r3, const struct hyd_block_q8_k *b)
{
	__m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)r0));
	v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)r1), 1);
	v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)r2), 2);
	v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)r3), 3);
	/* k4_scales_mins per lane, its dwords one further on (dword 0 is d, dmin) */
	const __m512i a = _mm512_shuffle_epi32(v, (_MM_PERM_ENUM)_MM_SHUFFLE(3, 2, 3, 1));
	const __m512i c = _mm512_shuffle_epi32(v, (_MM_PERM_ENUM)_MM_SHUFFLE(2, 2, 1, 1));
	const __m512i lo = _mm512_and_si512(_mm512_srlv_epi32(a, _mm512_setr4_epi32(0, 0, 0, 4)),
					    _mm512_setr4_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
	/* lo | (c >> 2 & mask) */
	const __m512i sm = _mm512_ternarylogic_epi32(lo, _mm512_srli_epi32(c, 2),
						     _mm512_setr4_epi32(0, 0x30303030, 0, 0x30303030), 0xf8);
	const __m512i p01 = _mm512_shuffle_i64x2(sm, sm, _MM_SHUFFLE(1, 1, 0, 0));
	const __m512i p23 = _mm512_shuffle_i64x2(sm, sm, _MM_SHUFFLE(3, 3, 2, 2));
	const __m512i wi = _mm512_load_si512((const void *)k4_words_idx);
	const __m512i mi = _mm512_load_si512((const void *)k4_mins_idx);
	_mm512_store_si512((void *)p->words[0], _mm512_shuffle_epi8(p01, wi));
	_mm512_store_si512((void *)p->words[2], _mm512_shuffle_epi8(p23, wi));
	const __m512i bs = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)b->bsums));
	_mm512_store_si512((void *)p->mins[0], _mm512_madd_epi16(_mm512_shuffle_epi8(p01, mi), bs));
	_mm512_store_si512((void *)p->mins[2], _mm512_madd_epi16(_mm512_shuffle_epi8(p23, mi), bs));
	/* the four (d, dmin) pairs: dword 0 of each lane */
	const __m512i dsel = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	const __m128i dm = _mm512_castsi512_si128(_mm512_permutexvar_epi32(dsel, v));
	_mm256_store_ps(p->dm, _mm256_mul_ps(_mm256_broadcast_ss(&b->d), _mm256_cvtph_ps(dm)));
}

/* acc + v * (the float at w in every lane), acc - v * (...): embedded broadcasts {1to8} */
#define FMADD_BCAST(ACC, V, W)                                                                 \
	({                                                                                     \
		__m256 a_ = (ACC);                                                             \
		__asm__("vfmadd231ps %2%{1to8%}, %1, %0" : "+v"(a_) : "v"(V), "m"(*(W)));      \
		a_;                                                                            \
	})
#define FNMADD_BCAST(ACC, V, W)                                                                \
	({                                                                                     \
		__m256 a_ = (ACC);                                                             \
		__asm__("vfnmadd231ps %2%{1to8%}, %1, %0" : "+v"(a_) : "v"(V), "m"(*(W)));     \
		a_;                                                                            \
	})

/* k4_finish of row R from the prepared block */
#define K4_FINISH4(R)                                                                                      \
	acc##R = FMADD_BCAST(acc##R, _mm256_cvtepi32_ps(_mm256_add_epi32(s##R##0, s##R##1)), &cur->dm[2 * (R)]); \
	acc##R = FNMADD_BCAST(acc##R, _mm256_cvtepi32_ps(_mm256_load_si256((const __m256i *)cur->mins[R])),    \
			      &cur->dm[2 * (R) + 1])

VNNI void hyd__q4_k_dot4_avx512vnni(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out)
{
	FOUR_ROWS(hyd_block_q4_k);
	const struct hyd_block_q8_k *b = x;
	const int64_t nb = n / HYD_QK_K;
	const __m256i m4 = _mm256_set1_epi8(0xF);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
	struct four_prefetch pf = four_prefetch_init(w, w_stride, nb * (int64_t)sizeof(*a0));
	struct k4_ahead4 ahead[2];
	if (nb > 0)
		k4_prepare4(&ahead[0], &a0[0], &a1[0], &a2[0], &a3[0], &b[0]);
	for (int64_t i = 0; i < nb; i++) {
		four_prefetch_to(&pf, (i + 1) * (int64_t)sizeof(*a0), (int)sizeof(*a0));
		struct k4_ahead4 *cur = &ahead[i & 1], *next = &ahead[(i + 1) & 1];
		if (i + 1 < nb)
			k4_prepare4(next, &a0[i + 1], &a1[i + 1], &a2[i + 1], &a3[i + 1], &b[i + 1]);
		__asm__ volatile("" : "+m"(ahead));
		__m256i s00 = _mm256_setzero_si256(), s01 = s00, s10 = s00, s11 = s00;
		__m256i s20 = s00, s21 = s00, s30 = s00, s31 = s00;
		const int8_t *y = b[i].qs;
		_Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
		{
			const __m256i ylo = _mm256_loadu_si256((const __m256i *)(y + 64 * j));
			const __m256i yhi = _mm256_loadu_si256((const __m256i *)(y + 64 * j + 32));
			K4_ROW_CHUNK(0, a0, MADD_VNNI_BCAST);
			K4_ROW_CHUNK(1, a1, MADD_VNNI_BCAST);
			K4_ROW_CHUNK(2, a2, MADD_VNNI_BCAST);
			K4_ROW_CHUNK(3, a3, MADD_VNNI_BCAST);
		}
		K4_FINISH4(0);
		K4_FINISH4(1);
		K4_FINISH4(2);
		K4_FINISH4(3);
	}
	_mm_storeu_ps(ret_out, hyd__hsum8x4_ps(acc0, acc1, acc2, acc3));
}

Q6_K_STEP(q6_k_step_vnni, VNNI, MADD_VNNI)
K_DOT_KERNELS(q6_k, hyd_block_q6_k, 4, avx512vnni, VNNI, q6_k_step_vnni)

/* Activation quantizers: the same arithmetic as the references (cvtps rounds half to even
 * like lrintf; packs never saturates since |q| <= 127), so they agree with them exactly. */
AVX2 static inline __m256 abs_ps(__m256 v)
{
	return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

/* 32 floats (already scaled) -> 32 int8 in order. */
AVX2 static inline __m256i pack_32(__m256 v0, __m256 v1, __m256 v2, __m256 v3)
{
	const __m256i i0 = _mm256_cvtps_epi32(v0), i1 = _mm256_cvtps_epi32(v1);
	const __m256i i2 = _mm256_cvtps_epi32(v2), i3 = _mm256_cvtps_epi32(v3);
	const __m256i s01 = _mm256_packs_epi32(i0, i1), s23 = _mm256_packs_epi32(i2, i3);
	const __m256i b = _mm256_packs_epi16(s01, s23);
	/* packs interleave 128-bit lanes: dword order is 0 4 1 5 2 6 3 7 */
	return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

AVX2 void hyd__q8_0_from_float_avx2(const float *src, void *dst, int64_t n)
{
	struct hyd_block_q8_0 *y = dst;
	for (int64_t i = 0; i < n / HYD_QK; i++) {
		const float *x = src + i * HYD_QK;
		const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
		const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
		const __m256 mx = _mm256_max_ps(_mm256_max_ps(abs_ps(v0), abs_ps(v1)),
						_mm256_max_ps(abs_ps(v2), abs_ps(v3)));
		const float amax = hmax_ps(mx);
		const float id = amax != 0 ? 127.0f / amax : 0.0f;
		y[i].d = hyd_fp32_to_fp16(amax / 127);
		const __m256 s = _mm256_set1_ps(id);
		_mm256_storeu_si256((__m256i *)y[i].qs,
				    pack_32(_mm256_mul_ps(v0, s), _mm256_mul_ps(v1, s),
					    _mm256_mul_ps(v2, s), _mm256_mul_ps(v3, s)));
	}
}

AVX2 void hyd__q8_k_from_float_avx2(const float *src, void *dst, int64_t n)
{
	struct hyd_block_q8_k *y = dst;
	for (int64_t i = 0; i < n / HYD_QK_K; i++) {
		const float *x = src + i * HYD_QK_K;
		__m256 mx = _mm256_setzero_ps();
		for (int j = 0; j < HYD_QK_K; j += 8)
			mx = _mm256_max_ps(mx, abs_ps(_mm256_loadu_ps(x + j)));
		const float amax = hmax_ps(mx);
		if (amax == 0) {
			memset(&y[i], 0, sizeof(y[i]));
			continue;
		}
		/* the sign of the first element of largest magnitude, as the reference scans */
		const __m256 am = _mm256_set1_ps(amax);
		int first = 0;
		for (int j = 0; j < HYD_QK_K; j += 8) {
			const int m = _mm256_movemask_ps(
				_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + j)), am, _CMP_EQ_OQ));
			if (m) {
				first = j + __builtin_ctz((unsigned)m);
				break;
			}
		}
		const float iscale = -127.0f / x[first];
		const __m256 s = _mm256_set1_ps(iscale);
		for (int j = 0; j < HYD_QK_K; j += 32) {
			const __m256i q = pack_32(_mm256_mul_ps(_mm256_loadu_ps(x + j), s),
						  _mm256_mul_ps(_mm256_loadu_ps(x + j + 8), s),
						  _mm256_mul_ps(_mm256_loadu_ps(x + j + 16), s),
						  _mm256_mul_ps(_mm256_loadu_ps(x + j + 24), s));
			_mm256_storeu_si256((__m256i *)(y[i].qs + j), q);
			/* two bsums of 16: widen to int16, pairwise-add down to 16-element sums */
			const __m256i w0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q));
			const __m256i w1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1));
			__m256i t0 = _mm256_madd_epi16(w0, _mm256_set1_epi16(1));
			__m256i t1 = _mm256_madd_epi16(w1, _mm256_set1_epi16(1));
			__m128i s0 = _mm_add_epi32(_mm256_castsi256_si128(t0),
						   _mm256_extracti128_si256(t0, 1));
			__m128i s1 = _mm_add_epi32(_mm256_castsi256_si128(t1),
						   _mm256_extracti128_si256(t1, 1));
			s0 = _mm_hadd_epi32(s0, s1);
			s0 = _mm_hadd_epi32(s0, s0);
			y[i].bsums[j / 16] = (int16_t)_mm_extract_epi32(s0, 0);
			y[i].bsums[j / 16 + 1] = (int16_t)_mm_extract_epi32(s0, 1);
		}
		y[i].d = 1.0f / iscale;
	}
}

DOT4_RUN(q8_0, avx2, AVX2)
DOT4_RUN(q4_0, avx2, AVX2)
DOT4_RUN(q4_k, avx2, AVX2)
DOT4_RUN(q5_k, avx2, AVX2)
DOT4_RUN(q6_k, avx2, AVX2)
DOT4_RUN(q8_0, avx512vnni, VNNI)
DOT4_RUN(q4_0, avx512vnni, VNNI)
DOT4_RUN(q4_k, avx512vnni, VNNI)
DOT4_RUN(q6_k, avx512vnni, VNNI)
#endif
