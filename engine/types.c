/* The type table: block geometry of every GGUF type (so the loader can validate any file)
 * and, for the types hyd computes with, the kernels picked for this CPU. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/types_internal.h"

static struct hyd_type_traits table[HYD_TYPE_COUNT] = {
	[HYD_TYPE_F32] = { "F32", 1, 4, false },
	[HYD_TYPE_F16] = { "F16", 1, 2, false },
	[HYD_TYPE_Q4_0] = { "Q4_0", 32, 18, true },
	[HYD_TYPE_Q4_1] = { "Q4_1", 32, 20, true },
	[HYD_TYPE_Q5_0] = { "Q5_0", 32, 22, true },
	[HYD_TYPE_Q5_1] = { "Q5_1", 32, 24, true },
	[HYD_TYPE_Q8_0] = { "Q8_0", 32, 34, true },
	[HYD_TYPE_Q8_1] = { "Q8_1", 32, 36, true },
	[HYD_TYPE_Q2_K] = { "Q2_K", 256, 84, true },
	[HYD_TYPE_Q3_K] = { "Q3_K", 256, 110, true },
	[HYD_TYPE_Q4_K] = { "Q4_K", 256, 144, true },
	[HYD_TYPE_Q5_K] = { "Q5_K", 256, 176, true },
	[HYD_TYPE_Q6_K] = { "Q6_K", 256, 210, true },
	[HYD_TYPE_Q8_K] = { "Q8_K", 256, 292, true },
	[HYD_TYPE_IQ2_XXS] = { "IQ2_XXS", 256, 66, true },
	[HYD_TYPE_IQ2_XS] = { "IQ2_XS", 256, 74, true },
	[HYD_TYPE_IQ3_XXS] = { "IQ3_XXS", 256, 98, true },
	[HYD_TYPE_IQ1_S] = { "IQ1_S", 256, 50, true },
	[HYD_TYPE_IQ4_NL] = { "IQ4_NL", 32, 18, true },
	[HYD_TYPE_IQ3_S] = { "IQ3_S", 256, 110, true },
	[HYD_TYPE_IQ2_S] = { "IQ2_S", 256, 82, true },
	[HYD_TYPE_IQ4_XS] = { "IQ4_XS", 256, 136, true },
	[HYD_TYPE_I8] = { "I8", 1, 1, false },
	[HYD_TYPE_I16] = { "I16", 1, 2, false },
	[HYD_TYPE_I32] = { "I32", 1, 4, false },
	[HYD_TYPE_I64] = { "I64", 1, 8, false },
	[HYD_TYPE_F64] = { "F64", 1, 8, false },
	[HYD_TYPE_IQ1_M] = { "IQ1_M", 256, 56, true },
	[HYD_TYPE_BF16] = { "BF16", 1, 2, false },
	[HYD_TYPE_TQ1_0] = { "TQ1_0", 256, 54, true },
	[HYD_TYPE_TQ2_0] = { "TQ2_0", 256, 66, true },
	[HYD_TYPE_MXFP4] = { "MXFP4", 32, 17, true },
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static enum hyd_simd chosen;

static void init_table(void)
{
	chosen = hyd__simd_detect();
	hyd__float_register(table, chosen);
	hyd__quant_register(table, chosen);
}

void hyd_types_init(void)
{
	pthread_once(&init_once, init_table);
}

const char *hyd_simd_level(void)
{
	static const char *names[] = { "scalar", "avx2", "avx512", "avx512vnni" };
	hyd_types_init();
	return names[chosen];
}

const struct hyd_type_traits *hyd_type_traits(uint32_t t)
{
	if (t >= HYD_TYPE_COUNT || table[t].blck == 0)
		return NULL;
	hyd_types_init();
	return &table[t];
}

const char *hyd_type_name(uint32_t t)
{
	if (t >= HYD_TYPE_COUNT || table[t].blck == 0)
		return "unknown";
	return table[t].name;
}

int64_t hyd_row_size(uint32_t t, int64_t n)
{
	if (t >= HYD_TYPE_COUNT || table[t].blck == 0 || n < 0)
		return -EINVAL;
	if (n % table[t].blck)
		return -EINVAL;
	int64_t blocks = n / table[t].blck;
	if (blocks > INT64_MAX / table[t].type_size)
		return -EOVERFLOW;
	return blocks * table[t].type_size;
}

bool hyd_type_computable(uint32_t t)
{
	const struct hyd_type_traits *tr = hyd_type_traits(t);
	return tr && tr->to_float && tr->vec_dot;
}

/* CPUID-based detection; the OS must also have enabled the wide registers (XCR0). */
enum hyd_simd hyd__simd_detect(void)
{
	enum hyd_simd level = HYD_SIMD_SCALAR;
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	    __builtin_cpu_supports("f16c"))
		level = HYD_SIMD_AVX2;
	if (level == HYD_SIMD_AVX2 && __builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
	    __builtin_cpu_supports("avx512vl"))
		level = HYD_SIMD_AVX512;
	if (level == HYD_SIMD_AVX512 && __builtin_cpu_supports("avx512vnni"))
		level = HYD_SIMD_AVX512VNNI;
#endif
	const char *cap = getenv("HYD_SIMD");
	if (cap) {
		enum hyd_simd want = level;
		if (!strcmp(cap, "scalar"))
			want = HYD_SIMD_SCALAR;
		else if (!strcmp(cap, "avx2"))
			want = HYD_SIMD_AVX2;
		else if (!strcmp(cap, "avx512"))
			want = HYD_SIMD_AVX512;
		if (want < level)
			level = want;
	}
	return level;
}

/* IEEE half <-> single, exact in both directions where representable. */
float hyd_fp16_to_fp32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t man = h & 0x3ff;
	uint32_t bits;
	if (exp == 0) {
		if (man == 0) {
			bits = sign;
		} else {
			/* subnormal: normalise */
			int e = -1;
			do {
				e++;
				man <<= 1;
			} while (!(man & 0x400));
			man &= 0x3ff;
			bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
		}
	} else if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (man << 13);
	} else {
		bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
	}
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t hyd_fp32_to_fp16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint32_t sign = (x >> 16) & 0x8000;
	uint32_t exp = (x >> 23) & 0xff;
	uint32_t man = x & 0x7fffff;
	if (exp == 0xff)
		return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
	int32_t e = (int32_t)exp - 127 + 15;
	if (e >= 0x1f)
		return (uint16_t)(sign | 0x7c00);
	if (e <= 0) {
		if (e < -10)
			return (uint16_t)sign;
		man |= 0x800000;
		uint32_t shift = (uint32_t)(14 - e);
		uint32_t half = man >> shift;
		uint32_t rem = man & ((1u << shift) - 1);
		uint32_t mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
	uint32_t rem = man & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
		half++; /* may carry into the exponent, which is the right rounding */
	return (uint16_t)half;
}

float hyd_bf16_to_fp32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t hyd_fp32_to_bf16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	if ((x & 0x7fffffff) > 0x7f800000) /* NaN: keep it quiet */
		return (uint16_t)((x >> 16) | 64);
	return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}
