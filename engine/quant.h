/* Internal: GGML's quantized block layouts and every kernel version that operates on them.
 *
 * The layouts are GGUF's on-disk format and must not change.  Each weight type has a scalar
 * reference dequantizer (bit-exact with the reference implementation), a reference quantizer,
 * a scalar reference dot product against its activation type (Q8_0 for Q8_0/Q4_0, Q8_K for the
 * K-quants), and SIMD dot products.  The per-level accessors at the end are what quant.c
 * registers in the type table; tests and benchmarks call them directly to reach a level the
 * table did not pick. */
#ifndef HYD_ENGINE_QUANT_H
#define HYD_ENGINE_QUANT_H

#include <assert.h>
#include <stdint.h>

#include "engine/types_internal.h"

#define HYD_QK 32    /* elements per Q8_0/Q4_0 block */
#define HYD_QK_K 256 /* elements per K-quant super-block */

/* fp16 fields are raw IEEE half bits (hyd_fp16_to_fp32). */
struct hyd_block_q8_0 {
	uint16_t d;
	int8_t qs[HYD_QK];
};

struct hyd_block_q4_0 {
	uint16_t d;
	uint8_t qs[HYD_QK / 2]; /* element j in the low nibble of qs[j], j+16 in the high one */
};

/* Q4_K/Q5_K: 8 sub-blocks of 32, each with a 6-bit scale and min packed in scales[12]
 * (hyd__scale_min_k4).  y = d*sc*q - dmin*m. */
struct hyd_block_q4_k {
	uint16_t d;
	uint16_t dmin;
	uint8_t scales[12];
	uint8_t qs[HYD_QK_K / 2]; /* per 64 elements: 32 bytes, low nibbles first, then high */
};

struct hyd_block_q5_k {
	uint16_t d;
	uint16_t dmin;
	uint8_t scales[12];
	uint8_t qh[HYD_QK_K / 8]; /* 5th bit: chunk c of 64 uses bits 2c (low half), 2c+1 */
	uint8_t qs[HYD_QK_K / 2];
};

/* Q6_K: 16 sub-blocks of 16 with int8 scales; q in 0..63, y = d*sc*(q-32). */
struct hyd_block_q6_k {
	uint8_t ql[HYD_QK_K / 2];
	uint8_t qh[HYD_QK_K / 4];
	int8_t scales[HYD_QK_K / 16];
	uint16_t d;
};

/* Activations for the K-quants: bsums[k] = sum of qs[16k .. 16k+15]. */
struct hyd_block_q8_k {
	float d;
	int8_t qs[HYD_QK_K];
	int16_t bsums[HYD_QK_K / 16];
};

static_assert(sizeof(struct hyd_block_q8_0) == 34, "Q8_0 block");
static_assert(sizeof(struct hyd_block_q4_0) == 18, "Q4_0 block");
static_assert(sizeof(struct hyd_block_q4_k) == 144, "Q4_K block");
static_assert(sizeof(struct hyd_block_q5_k) == 176, "Q5_K block");
static_assert(sizeof(struct hyd_block_q6_k) == 210, "Q6_K block");
static_assert(sizeof(struct hyd_block_q8_k) == 292, "Q8_K block");

/* Scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. */
static inline void hyd__scale_min_k4(int j, const uint8_t *q, uint8_t *ret_sc, uint8_t *ret_m)
{
	if (j < 4) {
		*ret_sc = q[j] & 63;
		*ret_m = q[j + 4] & 63;
	} else {
		*ret_sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
		*ret_m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
	}
}

/* All 8 scales and mins of a Q4_K/Q5_K block at once, word-parallel (the SIMD kernels do
 * the same on vectors). */
static inline void hyd__scales_mins_k4(const uint8_t *q, uint8_t sc[8], uint8_t m[8])
{
	uint32_t u[3];
	__builtin_memcpy(u, q, 12);
	uint32_t s[4] = {
		u[0] & 0x3f3f3f3fu,
		(u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u),
		u[1] & 0x3f3f3f3fu,
		((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u),
	};
	__builtin_memcpy(sc, &s[0], 8);
	__builtin_memcpy(m, &s[2], 8);
}

/* fp16 -> fp32 for every half value, filled when the type table is initialised; the SIMD dot
 * products convert their per-block scales with it (the references use hyd_fp16_to_fp32). */
extern float hyd__fp16_table[1 << 16];
/* How far ahead of its reads a four-row kernel prefetches each of its four decode streams,
 * in bytes (0: not at all); set by the type table's initialisation for the CPU it runs on. */
extern int32_t hyd__stream_ahead;

/* ---- scalar references (quant_ref.c) */
void hyd__q8_0_to_float(const void *src, float *dst, int64_t n);
void hyd__q4_0_to_float(const void *src, float *dst, int64_t n);
void hyd__q4_k_to_float(const void *src, float *dst, int64_t n);
void hyd__q5_k_to_float(const void *src, float *dst, int64_t n);
void hyd__q6_k_to_float(const void *src, float *dst, int64_t n);
void hyd__q8_k_to_float(const void *src, float *dst, int64_t n);

/* Quantizers.  The activation ones (Q8_0, Q8_K) make llama.cpp's x86 CPU backend's bytes
 * (quant_ref.c says which definition), and their SIMD versions make the same bytes. */
void hyd__q8_0_from_float_ref(const float *src, void *dst, int64_t n);
void hyd__q8_k_from_float_ref(const float *src, void *dst, int64_t n);
void hyd__q4_0_from_float_ref(const float *src, void *dst, int64_t n);
void hyd__q4_k_from_float_ref(const float *src, void *dst, int64_t n);
void hyd__q5_k_from_float_ref(const float *src, void *dst, int64_t n);
void hyd__q6_k_from_float_ref(const float *src, void *dst, int64_t n);

/* Dot products: w in the weight type, x in its vec_dot_type.  Q8_0 activation bytes must be
 * in -127..127 (the Q8_0/Q4_0 SIMD kernels move the weight's sign onto them); the quantizers
 * above never make -128.  The K-quant kernels take any Q8_K bytes (unsigned weights times
 * signed activations), -128 included. */
float hyd__q8_0_dot_ref(int64_t n, const void *w, const void *x);
float hyd__q4_0_dot_ref(int64_t n, const void *w, const void *x);
float hyd__q4_k_dot_ref(int64_t n, const void *w, const void *x);
float hyd__q5_k_dot_ref(int64_t n, const void *w, const void *x);
float hyd__q6_k_dot_ref(int64_t n, const void *w, const void *x);

#if defined(__x86_64__)
/* ---- AVX2 + FMA + F16C (quant_avx2.c) */
float hyd__q8_0_dot_avx2(int64_t n, const void *w, const void *x);
float hyd__q4_0_dot_avx2(int64_t n, const void *w, const void *x);
float hyd__q4_k_dot_avx2(int64_t n, const void *w, const void *x);
float hyd__q5_k_dot_avx2(int64_t n, const void *w, const void *x);
float hyd__q6_k_dot_avx2(int64_t n, const void *w, const void *x);
/* Four consecutive rows (w, w + w_stride, ...) against one activation row; ret_out[k] is
 * bit for bit the single-row kernel's result for row k. */
void hyd__q8_0_dot4_avx2(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out);
void hyd__q4_0_dot4_avx2(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out);
void hyd__q4_k_dot4_avx2(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out);
void hyd__q5_k_dot4_avx2(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out);
void hyd__q6_k_dot4_avx2(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out);
/* The four rows against two activation rows: out[k] for x0, out[4 + k] for x1, each bit for
 * bit the four-row kernel's (prefill) */
void hyd__q4_k_dot4x2_avx2(int64_t n, const void *w, int64_t w_stride, const void *x0, const void *x1,
			   float *ret_out);
void hyd__q6_k_dot4x2_avx2(int64_t n, const void *w, int64_t w_stride, const void *x0, const void *x1,
			   float *ret_out);
void hyd__q8_0_from_float_avx2(const float *src, void *dst, int64_t n);
void hyd__q8_k_from_float_avx2(const float *src, void *dst, int64_t n);

/* ---- AVX512-VL + AVX512-VNNI twins of AVX2 kernels (quant_avx2.c): the same bits */
float hyd__q8_0_dot_avx512vnni(int64_t n, const void *w, const void *x);
float hyd__q4_0_dot_avx512vnni(int64_t n, const void *w, const void *x);
float hyd__q4_k_dot_avx512vnni(int64_t n, const void *w, const void *x);
float hyd__q6_k_dot_avx512vnni(int64_t n, const void *w, const void *x);
void hyd__q8_0_dot4_avx512vnni(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out);
void hyd__q4_0_dot4_avx512vnni(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out);
void hyd__q4_k_dot4_avx512vnni(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out);
void hyd__q6_k_dot4_avx512vnni(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out);

/* ---- the four-row kernels' runs (hyd_vec_dot4_run_fn), for each of them above */
#define HYD_DOT4_RUN_DECL(T, SUFFIX)                                                                    \
	void hyd__##T##_dot4run_##SUFFIX(int64_t n, const void *w, int64_t w_stride, int64_t quarter,  \
					 int64_t n_groups, const void *x, float *ret_out);
HYD_DOT4_RUN_DECL(q8_0, avx2)
HYD_DOT4_RUN_DECL(q4_0, avx2)
HYD_DOT4_RUN_DECL(q4_k, avx2)
HYD_DOT4_RUN_DECL(q5_k, avx2)
HYD_DOT4_RUN_DECL(q6_k, avx2)
HYD_DOT4_RUN_DECL(q8_0, avx512vnni)
HYD_DOT4_RUN_DECL(q4_0, avx512vnni)
HYD_DOT4_RUN_DECL(q4_k, avx512vnni)
HYD_DOT4_RUN_DECL(q6_k, avx512vnni)
#undef HYD_DOT4_RUN_DECL

/* ---- AVX-512 F/BW/DQ/VL (quant_avx512.c), each in a summation order of its own: the type
 * table uses them only where no level up to the CPU's has a four-row kernel (quant.c). */
float hyd__q8_0_dot_avx512(int64_t n, const void *w, const void *x);
float hyd__q4_0_dot_avx512(int64_t n, const void *w, const void *x);
float hyd__q4_k_dot_avx512(int64_t n, const void *w, const void *x);
float hyd__q5_k_dot_avx512(int64_t n, const void *w, const void *x);
float hyd__q6_k_dot_avx512(int64_t n, const void *w, const void *x);
#endif

/* ---- per-level selection (quant.c)
 * The kernel for weight type t at exactly `level` or the best lower level that has one;
 * NULL when t is not a type implemented here.  `level` must be one the CPU supports.
 * Initialises the type table (and hyd__fp16_table) first, so SIMD kernels obtained here
 * are ready to call. */
hyd_vec_dot_fn hyd__quant_vec_dot_at(uint32_t t, enum hyd_simd level);
/* The four-row kernel paired with hyd__quant_vec_dot_at(t, level): bit-identical to it, or
 * NULL when that level has none. */
hyd_vec_dot4_fn hyd__quant_vec_dot4_at(uint32_t t, enum hyd_simd level);
/* The two-activation-row kernel paired with hyd__quant_vec_dot4_at(t, level), or NULL. */
hyd_vec_dot4x2_fn hyd__quant_vec_dot4x2_at(uint32_t t, enum hyd_simd level);
/* The run of hyd__quant_vec_dot4_at(t, level)'s groups, or NULL. */
hyd_vec_dot4_run_fn hyd__quant_vec_dot4_run_at(uint32_t t, enum hyd_simd level);
/* Same for the quantizer of type t (Q8_0, Q8_K, Q4_0, Q4_K, Q5_K, Q6_K). */
hyd_from_float_fn hyd__quant_from_float_at(uint32_t t, enum hyd_simd level);

#endif
