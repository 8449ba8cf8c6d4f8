/* Tensor element types (GGML's numbering, as stored in GGUF) and their traits.
 *
 * A "block" is the unit a quantized type is stored in: blck elements packed into
 * type_size bytes. Plain types have blck == 1.  Rows (ne[0] elements) are always a
 * whole number of blocks. */
#ifndef HYD_ENGINE_TYPES_H
#define HYD_ENGINE_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum hyd_type {
	HYD_TYPE_F32 = 0,
	HYD_TYPE_F16 = 1,
	HYD_TYPE_Q4_0 = 2,
	HYD_TYPE_Q4_1 = 3,
	HYD_TYPE_Q5_0 = 6,
	HYD_TYPE_Q5_1 = 7,
	HYD_TYPE_Q8_0 = 8,
	HYD_TYPE_Q8_1 = 9,
	HYD_TYPE_Q2_K = 10,
	HYD_TYPE_Q3_K = 11,
	HYD_TYPE_Q4_K = 12,
	HYD_TYPE_Q5_K = 13,
	HYD_TYPE_Q6_K = 14,
	HYD_TYPE_Q8_K = 15,
	HYD_TYPE_IQ2_XXS = 16,
	HYD_TYPE_IQ2_XS = 17,
	HYD_TYPE_IQ3_XXS = 18,
	HYD_TYPE_IQ1_S = 19,
	HYD_TYPE_IQ4_NL = 20,
	HYD_TYPE_IQ3_S = 21,
	HYD_TYPE_IQ2_S = 22,
	HYD_TYPE_IQ4_XS = 23,
	HYD_TYPE_I8 = 24,
	HYD_TYPE_I16 = 25,
	HYD_TYPE_I32 = 26,
	HYD_TYPE_I64 = 27,
	HYD_TYPE_F64 = 28,
	HYD_TYPE_IQ1_M = 29,
	HYD_TYPE_BF16 = 30,
	HYD_TYPE_TQ1_0 = 34,
	HYD_TYPE_TQ2_0 = 35,
	HYD_TYPE_MXFP4 = 39,
	HYD_TYPE_COUNT = 40,
};

/* Dot product of one weight row (n elements, in the weight's type) with one activation row
 * already converted to the type's vec_dot_type.  n is a multiple of the type's blck. */
typedef float (*hyd_vec_dot_fn)(int64_t n, const void *w, const void *x);
/* Dot products of four weight rows (w, w + w_stride, w + 2 w_stride, w + 3 w_stride) with one
 * activation row; ret_out[k] is bit for bit vec_dot(n, row k, x).  Reading four rows per pass
 * shares the activation loads and the per-row overhead (short rows: 768 elements are three
 * K-quant blocks).  The rows may be consecutive (w_stride is one row) or far apart (decode
 * reads four streams, engine/matmul.c); kernels prefetch accordingly. */
typedef void (*hyd_vec_dot4_fn)(int64_t n, const void *w, int64_t w_stride, const void *x, float *ret_out);
/* n_out weight rows, w_stride bytes apart, against one activation row: ret_out[k] is row k's
 * vec_dot result, bit for bit. */
typedef void (*hyd_vec_dot_rows_fn)(int64_t n, const void *w, int64_t w_stride, const void *x, int64_t n_out,
				    float *ret_out);
/* A run of four-row groups, as decode reads a task (engine/matmul.c): group g (0 <= g <
 * n_groups) is rows g, g + quarter, g + 2 quarter and g + 3 quarter of w (w_stride bytes per
 * row), and ret_out[g + k quarter] gets row g + k quarter's result: vec_dot4's bits.  One call
 * for the run spares a call, a prologue and a reload of the results per group. */
typedef void (*hyd_vec_dot4_run_fn)(int64_t n, const void *w, int64_t w_stride, int64_t quarter, int64_t n_groups,
				    const void *x, float *ret_out);
/* The same four weight rows against two activation rows x0, x1 (prefill): ret_out[k] is
 * vec_dot4's result for x0 and ret_out[4 + k] for x1, bit for bit.  Each weight block is
 * unpacked once for both rows. */
typedef void (*hyd_vec_dot4x2_fn)(int64_t n, const void *w, int64_t w_stride, const void *x0, const void *x1,
				  float *ret_out);
/* Convert n floats (n a multiple of blck) into the type's storage. */
typedef void (*hyd_from_float_fn)(const float *src, void *dst, int64_t n);
/* Convert n elements of storage into floats. */
typedef void (*hyd_to_float_fn)(const void *src, float *dst, int64_t n);

struct hyd_type_traits {
	const char *name;
	uint32_t blck;        /* elements per block; 0 = unknown/unsupported layout */
	uint32_t type_size;   /* bytes per block */
	bool quantized;
	/* Compute (NULL where hyd cannot compute with this type yet): */
	hyd_to_float_fn to_float;          /* scalar reference dequantizer */
	hyd_from_float_fn from_float;      /* quantize (used for activations) */
	enum hyd_type vec_dot_type;        /* activations are converted to this type */
	hyd_vec_dot_fn vec_dot;            /* best implementation for this CPU */
	hyd_vec_dot_fn vec_dot_ref;        /* plain scalar reference */
	hyd_vec_dot4_fn vec_dot4;          /* four rows at once, same bits as vec_dot; or NULL */
	hyd_vec_dot4x2_fn vec_dot4x2;      /* four rows x two activation rows, same bits; or NULL */
	hyd_vec_dot_rows_fn vec_dot_rows;  /* many rows at once, same bits as vec_dot; or NULL */
	hyd_vec_dot4_run_fn vec_dot4_run;  /* runs of vec_dot4 groups, same bits; or NULL */
};

/* Traits of type t, or NULL if t is not a type GGUF defines. */
const struct hyd_type_traits *hyd_type_traits(uint32_t t);
/* Name of a type ("F32", "Q4_K", ...), or "unknown". */
const char *hyd_type_name(uint32_t t);
/* Bytes of one row of n elements; -EINVAL if n is not a whole number of blocks or the type
 * is unknown, -EOVERFLOW on overflow. */
int64_t hyd_row_size(uint32_t t, int64_t n);
/* True if hyd can compute with weights of type t (to_float and vec_dot present). */
bool hyd_type_computable(uint32_t t);

/* Picks the fastest kernels for this CPU (CPUID) and fills the traits' vec_dot.  Safe to
 * call more than once; called by hyd_type_traits() on first use. Setting the environment
 * variable HYD_SIMD=scalar|avx2|avx512 caps the level (for tests and benchmarks). */
void hyd_types_init(void);
/* The SIMD level chosen: "scalar", "avx2", "avx512" or "avx512vnni". */
const char *hyd_simd_level(void);

/* fp16 / bf16 scalar conversions (exact, round-to-nearest-even on the way down). */
float hyd_fp16_to_fp32(uint16_t h);
uint16_t hyd_fp32_to_fp16(float f);
float hyd_bf16_to_fp32(uint16_t h);
uint16_t hyd_fp32_to_bf16(float f);

#endif
