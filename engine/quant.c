/* Quantized types: registration of their kernels in the type table, by SIMD level. */
#include "config.h"

#include <stdbool.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "engine/quant.h"

/* Kernel versions of one type, indexed by enum hyd_simd; NULL = use the next lower level. */
struct quant_impl {
	uint32_t type;
	hyd_to_float_fn to_float;
	enum hyd_type vec_dot_type;
	hyd_from_float_fn from_float[4];
	hyd_vec_dot_fn vec_dot[4];
	/* four-row versions, each bit-identical to vec_dot at the same level; NULL = none */
	hyd_vec_dot4_fn vec_dot4[4];
	/* two-activation-row versions of vec_dot4 at the same level (prefill); NULL = none */
	hyd_vec_dot4x2_fn vec_dot4x2[4];
	/* runs of vec_dot4's groups at the same level (decode); NULL = none */
	hyd_vec_dot4_run_fn vec_dot4_run[4];
};

#if defined(__x86_64__)
#define X86(...) __VA_ARGS__
#else
#define X86(...) NULL
#endif

static const struct quant_impl impls[] = {
	{ HYD_TYPE_Q8_0, hyd__q8_0_to_float, HYD_TYPE_Q8_0,
	  { hyd__q8_0_from_float_ref, X86(hyd__q8_0_from_float_avx2) },
	  { hyd__q8_0_dot_ref, X86(hyd__q8_0_dot_avx2), X86(hyd__q8_0_dot_avx512),
	    X86(hyd__q8_0_dot_avx512vnni) },
	  { NULL, X86(hyd__q8_0_dot4_avx2), NULL, X86(hyd__q8_0_dot4_avx512vnni) },
	  { NULL },
	  { NULL, X86(hyd__q8_0_dot4run_avx2), NULL, X86(hyd__q8_0_dot4run_avx512vnni) } },
	{ HYD_TYPE_Q4_0, hyd__q4_0_to_float, HYD_TYPE_Q8_0,
	  { hyd__q4_0_from_float_ref },
	  { hyd__q4_0_dot_ref, X86(hyd__q4_0_dot_avx2), X86(hyd__q4_0_dot_avx512),
	    X86(hyd__q4_0_dot_avx512vnni) },
	  { NULL, X86(hyd__q4_0_dot4_avx2), NULL, X86(hyd__q4_0_dot4_avx512vnni) },
	  { NULL },
	  { NULL, X86(hyd__q4_0_dot4run_avx2), NULL, X86(hyd__q4_0_dot4run_avx512vnni) } },
	{ HYD_TYPE_Q4_K, hyd__q4_k_to_float, HYD_TYPE_Q8_K,
	  { hyd__q4_k_from_float_ref },
	  { hyd__q4_k_dot_ref, X86(hyd__q4_k_dot_avx2), X86(hyd__q4_k_dot_avx512),
	    X86(hyd__q4_k_dot_avx512vnni) },
	  { NULL, X86(hyd__q4_k_dot4_avx2), NULL, X86(hyd__q4_k_dot4_avx512vnni) },
	  /* the VNNI level's four-row kernel has the AVX2 one's bits: the same prefill kernel */
	  { NULL, X86(hyd__q4_k_dot4x2_avx2), NULL, X86(hyd__q4_k_dot4x2_avx2) },
	  { NULL, X86(hyd__q4_k_dot4run_avx2), NULL, X86(hyd__q4_k_dot4run_avx512vnni) } },
	{ HYD_TYPE_Q5_K, hyd__q5_k_to_float, HYD_TYPE_Q8_K,
	  { hyd__q5_k_from_float_ref },
	  { hyd__q5_k_dot_ref, X86(hyd__q5_k_dot_avx2), X86(hyd__q5_k_dot_avx512) },
	  { NULL, X86(hyd__q5_k_dot4_avx2) },
	  { NULL },
	  { NULL, X86(hyd__q5_k_dot4run_avx2) } },
	{ HYD_TYPE_Q6_K, hyd__q6_k_to_float, HYD_TYPE_Q8_K,
	  { hyd__q6_k_from_float_ref },
	  { hyd__q6_k_dot_ref, X86(hyd__q6_k_dot_avx2), X86(hyd__q6_k_dot_avx512),
	    X86(hyd__q6_k_dot_avx512vnni) },
	  { NULL, X86(hyd__q6_k_dot4_avx2), NULL, X86(hyd__q6_k_dot4_avx512vnni) },
	  { NULL, X86(hyd__q6_k_dot4x2_avx2), NULL, X86(hyd__q6_k_dot4x2_avx2) },
	  { NULL, X86(hyd__q6_k_dot4run_avx2), NULL, X86(hyd__q6_k_dot4run_avx512vnni) } },
	/* Q8_K only exists as the K-quants' activation type: no dot product of its own */
	{ HYD_TYPE_Q8_K, hyd__q8_k_to_float, HYD_TYPE_Q8_K,
	  { hyd__q8_k_from_float_ref, X86(hyd__q8_k_from_float_avx2) },
	  { NULL },
	  { NULL },
	  { NULL },
	  { NULL } },
};

float hyd__fp16_table[1 << 16];
int32_t hyd__stream_ahead = 1024;

/* The decode streams' prefetch distance for this CPU.  The hardware prefetchers differ:
 * - Zen 3 (the first development machine): 1 KiB ahead was best; 512 and 1536 bytes
 *   measured the same, 2 KiB 0.5-4.6 % slower.
 * - Zen 4: 256 bytes best; 1 KiB makes one-thread decode 1.27-1.35x slower on the Q8_0
 *   models and 1.03-1.08x on the Q4_K_M ones, AVX2 and VNNI kernels alike (llama-125m,
 *   gemma3-270m, mamba-130m, granite-h-350m, alternating settings; docs/PERFORMANCE.md);
 *   none at all about as good as 256.
 * AMD's family 19h is Zen 3 or Zen 4, and only Zen 4 has AVX-512; 1Ah and later (Zen 5, the
 * reference machine of ../shared/docs/ANCHORS.md) take Zen 4's distance.  Other CPUs keep
 * Zen 3's 1 KiB: no other has been measured with both. */
static int32_t stream_ahead_for_cpu(void)
{
#if defined(__x86_64__)
	unsigned a, b, c, d;
	if (!__get_cpuid(0, &a, &b, &c, &d))
		return 1024;
	const bool amd = b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163; /* "AuthenticAMD" */
	if (!amd || !__get_cpuid(1, &a, &b, &c, &d))
		return 1024;
	unsigned family = (a >> 8) & 0xf;
	if (family == 0xf)
		family += (a >> 20) & 0xff;
	if (family >= 0x1a || (family == 0x19 && __builtin_cpu_supports("avx512f")))
		return 256;
#endif
	return 1024;
}

static const struct quant_impl *find(uint32_t t)
{
	for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++)
		if (impls[i].type == t)
			return &impls[i];
	return NULL;
}

/* The level whose single-row kernel serves `level`: itself or the best lower one that has
 * one; -1 if none. */
static int dot_level(const struct quant_impl *q, enum hyd_simd level)
{
	if (!q || level < HYD_SIMD_SCALAR || level > HYD_SIMD_AVX512VNNI)
		return -1;
	for (int l = (int)level; l >= 0; l--)
		if (q->vec_dot[l])
			return l;
	return -1;
}

static hyd_vec_dot_fn vec_dot_at(uint32_t t, enum hyd_simd level)
{
	const struct quant_impl *q = find(t);
	const int l = dot_level(q, level);
	return l < 0 ? NULL : q->vec_dot[l];
}

/* The four-row kernel that matches vec_dot_at(t, level) bit for bit: only one of the same
 * level qualifies. */
static hyd_vec_dot4_fn vec_dot4_at(uint32_t t, enum hyd_simd level)
{
	const struct quant_impl *q = find(t);
	const int l = dot_level(q, level);
	return l < 0 ? NULL : q->vec_dot4[l];
}

static hyd_vec_dot4x2_fn vec_dot4x2_at(uint32_t t, enum hyd_simd level)
{
	const struct quant_impl *q = find(t);
	const int l = dot_level(q, level);
	return l < 0 || !q->vec_dot4[l] ? NULL : q->vec_dot4x2[l];
}

static hyd_vec_dot4_run_fn vec_dot4_run_at(uint32_t t, enum hyd_simd level)
{
	const struct quant_impl *q = find(t);
	const int l = dot_level(q, level);
	return l < 0 || !q->vec_dot4[l] ? NULL : q->vec_dot4_run[l];
}

static hyd_from_float_fn from_float_at(uint32_t t, enum hyd_simd level)
{
	const struct quant_impl *q = find(t);
	if (!q || level < HYD_SIMD_SCALAR || level > HYD_SIMD_AVX512VNNI)
		return NULL;
	for (int l = (int)level; l >= 0; l--)
		if (q->from_float[l])
			return q->from_float[l];
	return NULL;
}

hyd_vec_dot4_fn hyd__quant_vec_dot4_at(uint32_t t, enum hyd_simd level)
{
	hyd_types_init();
	return vec_dot4_at(t, level);
}

hyd_vec_dot4x2_fn hyd__quant_vec_dot4x2_at(uint32_t t, enum hyd_simd level)
{
	hyd_types_init();
	return vec_dot4x2_at(t, level);
}

hyd_vec_dot4_run_fn hyd__quant_vec_dot4_run_at(uint32_t t, enum hyd_simd level)
{
	hyd_types_init();
	return vec_dot4_run_at(t, level);
}

hyd_vec_dot_fn hyd__quant_vec_dot_at(uint32_t t, enum hyd_simd level)
{
	hyd_types_init();
	return vec_dot_at(t, level);
}

hyd_from_float_fn hyd__quant_from_float_at(uint32_t t, enum hyd_simd level)
{
	hyd_types_init();
	return from_float_at(t, level);
}

/* Runs once, inside hyd_types_init(). */
void hyd__quant_register(struct hyd_type_traits *tab, enum hyd_simd level)
{
	for (uint32_t h = 0; h < (1u << 16); h++)
		hyd__fp16_table[h] = hyd_fp16_to_fp32((uint16_t)h);
	hyd__stream_ahead = stream_ahead_for_cpu();
	for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
		const struct quant_impl *q = &impls[i];
		struct hyd_type_traits *tr = &tab[q->type];
		tr->to_float = q->to_float;
		tr->from_float = from_float_at(q->type, level);
		tr->vec_dot_type = q->vec_dot_type;
		/* The table takes the best level that has a four-row kernel, with that level's
		 * single-row kernel (the two must agree bit for bit).  Measured on an AVX-512 VNNI
		 * Xeon (bench/dot_bench): the AVX2 four-row kernels stream weights from DRAM 5-33 %
		 * faster than the single-row AVX-512 ones, so AVX-512 CPUs without VNNI use the
		 * AVX2 pair, and VNNI CPUs the VNNI twins of the AVX2 kernels (Q8_0, Q4_0, Q4_K,
		 * Q6_K; the AVX2 pair for Q5_K); the AVX-512 kernels stay reachable through
		 * hyd__quant_vec_dot_at(). */
		enum hyd_simd lv = level;
		while (lv > HYD_SIMD_SCALAR && !vec_dot4_at(q->type, lv))
			lv = (enum hyd_simd)(lv - 1);
		if (!vec_dot4_at(q->type, lv))
			lv = level;
		tr->vec_dot = vec_dot_at(q->type, lv);
		tr->vec_dot4 = vec_dot4_at(q->type, lv);
		tr->vec_dot4x2 = vec_dot4x2_at(q->type, lv);
		tr->vec_dot4_run = vec_dot4_run_at(q->type, lv);
		tr->vec_dot_ref = q->vec_dot[HYD_SIMD_SCALAR];
	}
}
