/* Internal: how kernel files register their functions in the type table. */
#ifndef HYD_ENGINE_TYPES_INTERNAL_H
#define HYD_ENGINE_TYPES_INTERNAL_H

#include "engine/types.h"

enum hyd_simd {
	HYD_SIMD_SCALAR = 0,
	HYD_SIMD_AVX2 = 1,      /* AVX2 + FMA + F16C */
	HYD_SIMD_AVX512 = 2,    /* AVX-512 F/BW/DQ/VL */
	HYD_SIMD_AVX512VNNI = 3,
};

/* Level detected from CPUID (and capped by $HYD_SIMD). */
enum hyd_simd hyd__simd_detect(void);

/* Fill F32/F16/BF16 entries (engine/dot_float.c). */
void hyd__float_register(struct hyd_type_traits *tab, enum hyd_simd level);
/* F16 x F16 dot products in ggml's two summation orders (see engine/dot_float.c): the one
 * ggml_vec_dot_f16 uses (the F16 traits' vec_dot) and the one tinyBLAS uses when a matmul has
 * two activation rows or more.  The _ref versions are the scalar definitions. */
float hyd__f16_dot_f16_ref(int64_t n, const void *w, const void *x);
float hyd__f16_dot_f16_gemm_ref(int64_t n, const void *w, const void *x);
hyd_vec_dot_fn hyd__f16_gemm_dot(void);
/* Four gemm-order dots at once: out = {w0.x0, w0.x1, w1.x0, w1.x1}, each bit-identical to
 * hyd__f16_gemm_dot()'s result (the block only interleaves independent sums). */
typedef void (*hyd_gemm2x2_fn)(int64_t n, const void *w0, const void *w1, const void *x0, const void *x1,
			       float out[4]);
hyd_gemm2x2_fn hyd__f16_gemm_2x2(void);
hyd_gemm2x2_fn hyd__f16_gemm_2x2_ref(void);
/* Fill the quantized types' entries (engine/quant.c). */
void hyd__quant_register(struct hyd_type_traits *tab, enum hyd_simd level);

#endif
