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
/* Fill the quantized types' entries (engine/quant.c). */
void hyd__quant_register(struct hyd_type_traits *tab, enum hyd_simd level);

#endif
