/* Activation quantizers against llama.cpp's definitions, byte for byte, at every SIMD level
 * this CPU has, on inputs where implementations part ways: the block maximum negative or
 * positive, +m and -m both present (the first one decides the sign of Q8_K's scale), values
 * exactly halfway between two quants, all-zero and -0.0 blocks, the maximum in the last lane.
 * Also: the K-quant dot products take Q8_K bytes of -128 (which llama.cpp's older Q8_K made)
 * exactly, at every level.
 *
 * The definitions, as this file restates them:
 *  - Q8_0 (x86 AVX path of quantize_row_q8_0): amax over the 32 elements, d = fp16(amax/127),
 *    q = nearest-even(x * (127/amax)), q = 0 when amax is 0.
 *  - Q8_K (quantize_row_q8_K_ref): max = the first element of largest magnitude,
 *    iscale = -127/max, q = min(127, nearest-even(iscale * x)), bsums of 16, d = 1/iscale;
 *    an all-zero block is all zero (llama.cpp leaves its bsums unset; zero is their sum). */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/quant.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static float uniform(float lo, float hi)
{
	return lo + (hi - lo) * (float)((rnd() >> 40) * 0x1p-24);
}

static bool cpu_has(enum hyd_simd level)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
		    __builtin_cpu_supports("f16c");
	bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
		      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
		      __builtin_cpu_supports("avx512vl");
	switch (level) {
	case HYD_SIMD_SCALAR:
		return true;
	case HYD_SIMD_AVX2:
		return avx2;
	case HYD_SIMD_AVX512:
		return avx512;
	case HYD_SIMD_AVX512VNNI:
		return avx512 && __builtin_cpu_supports("avx512vnni");
	}
	return false;
#else
	return level == HYD_SIMD_SCALAR;
#endif
}

/* Round to nearest, ties to even, by adding 1.5 * 2^23 (exact for |v| < 2^22): a rounding
 * independent of lrintf and cvtps, which the code under test uses. */
static int nearest_even(float v)
{
	volatile float t = v + 12582912.0f;
	return (int)(t - 12582912.0f);
}

static void want_q8_0(const float *x, struct hyd_block_q8_0 *y, int64_t n)
{
	for (int64_t i = 0; i < n / HYD_QK; i++, x += HYD_QK) {
		float amax = 0;
		for (int j = 0; j < HYD_QK; j++)
			if (fabsf(x[j]) > amax)
				amax = fabsf(x[j]);
		const float id = amax != 0 ? 127.0f / amax : 0.0f;
		y[i].d = hyd_fp32_to_fp16(amax / 127.0f);
		for (int j = 0; j < HYD_QK; j++)
			y[i].qs[j] = (int8_t)nearest_even(x[j] * id);
	}
}

static void want_q8_k(const float *x, struct hyd_block_q8_k *y, int64_t n)
{
	for (int64_t i = 0; i < n / HYD_QK_K; i++, x += HYD_QK_K) {
		memset(&y[i], 0, sizeof(y[i]));
		float amax = 0, max = 0;
		for (int j = 0; j < HYD_QK_K; j++) {
			if (fabsf(x[j]) > amax) {
				amax = fabsf(x[j]);
				max = x[j];
			}
		}
		if (amax == 0)
			continue;
		const float iscale = -127.0f / max;
		for (int j = 0; j < HYD_QK_K; j++) {
			const int v = nearest_even(iscale * x[j]);
			y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
			y[i].bsums[j / 16] = (int16_t)(y[i].bsums[j / 16] + y[i].qs[j]);
		}
		y[i].d = 1 / iscale;
	}
}

/* ------------------------------------------------------------------ Q8_K */

#define KB 12 /* Q8_K blocks in the tricky row */

/* One block per case; the rest of each block is noise below the planted maximum. */
static void tricky_q8_k(float *x)
{
	for (int i = 0; i < KB * HYD_QK_K; i++)
		x[i] = uniform(-1.0f, 1.0f);
	float *b = x;
	b[17] = -3.0f; /* 0: maximum negative: d > 0 */
	b += HYD_QK_K;
	b[5] = 3.0f; /* 1: maximum positive: d < 0, that element -127 */
	b += HYD_QK_K;
	b[3] = 2.0f; /* 2: +m before -m: +m decides */
	b[9] = -2.0f;
	b += HYD_QK_K;
	b[3] = -2.0f; /* 3: -m before +m, in the same 8 lanes */
	b[4] = 2.0f;
	b += HYD_QK_K;
	b[200] = -2.0f; /* 4: -m, then +m in another 8 lanes */
	b[255] = 2.0f;
	b += HYD_QK_K;
	b[255] = 5.0f; /* 5: maximum in the very last lane */
	b += HYD_QK_K;
	/* 6, 7: max -127 gives iscale exactly 1 (+127: exactly -1): every other element is
	 * halfway between two integers and must round to even */
	for (int s = 0; s < 2; s++, b += HYD_QK_K) {
		for (int j = 0; j < HYD_QK_K; j++)
			b[j] = (float)(j % 254 - 127) + 0.5f;
		b[100] = s ? 127.0f : -127.0f;
	}
	memset(b, 0, HYD_QK_K * sizeof(float)); /* 8: all zero */
	b += HYD_QK_K;
	for (int j = 0; j < HYD_QK_K; j++) /* 9: all -0.0 */
		b[j] = -0.0f;
	b += HYD_QK_K;
	for (int j = 0; j < HYD_QK_K; j++) /* 10: one tiny nonzero among zeros */
		b[j] = 0.0f;
	b[77] = -1e-30f;
	b += HYD_QK_K;
	for (int j = 0; j < HYD_QK_K; j++) /* 11: huge values */
		b[j] *= 1e30f;
}

START_TEST(test_q8_k_llama)
{
	enum { N = KB * HYD_QK_K };
	float *x = hyd_malloc(N * sizeof(float));
	struct hyd_block_q8_k *want = hyd_malloc(KB * sizeof(*want)), *got = hyd_malloc(KB * sizeof(*got));
	ck_assert(x && want && got);
	rng_state = 0x1234567;
	for (int round = 0; round < 50; round++) {
		tricky_q8_k(x);
		if (round & 1) /* odd rounds: the same cases mirrored */
			for (int i = 0; i < N; i++)
				x[i] = -x[i];
		want_q8_k(x, want, N);
		if (round == 0) { /* the cases say what they claim */
			ck_assert(want[0].d > 0 && want[0].qs[17] == -127);
			ck_assert(want[1].d < 0 && want[1].qs[5] == -127);
			ck_assert(want[2].qs[3] == -127 && want[2].qs[9] == 127);
			ck_assert(want[3].qs[3] == -127 && want[3].qs[4] == 127);
			ck_assert(want[5].qs[255] == -127);
			ck_assert(want[6].d == 1.0f && want[6].qs[2] == -124 && want[6].qs[3] == -124);
			ck_assert(want[7].d == -1.0f && want[7].qs[1] == 126 && want[7].qs[2] == 124);
			ck_assert(want[8].d == 0 && want[9].d == 0 && want[10].d != 0);
		}
		for (int lv = HYD_SIMD_SCALAR; lv <= HYD_SIMD_AVX512VNNI; lv++) {
			if (!cpu_has((enum hyd_simd)lv))
				continue;
			memset(got, 0x5a, KB * sizeof(*got));
			hyd__quant_from_float_at(HYD_TYPE_Q8_K, (enum hyd_simd)lv)(x, got, N);
			for (int i = 0; i < KB; i++)
				ck_assert_msg(!memcmp(&want[i], &got[i], sizeof(got[i])),
					      "round %d level %d: Q8_K block %d differs from llama.cpp's", round,
					      lv, i);
		}
		/* later rounds: random blocks over many scales */
		for (int i = 0; i < N; i++)
			x[i] = uniform(-1.0f, 1.0f) * powf(10.0f, uniform(-6.0f, 6.0f));
		want_q8_k(x, want, N);
		for (int lv = HYD_SIMD_SCALAR; lv <= HYD_SIMD_AVX512VNNI; lv++) {
			if (!cpu_has((enum hyd_simd)lv))
				continue;
			hyd__quant_from_float_at(HYD_TYPE_Q8_K, (enum hyd_simd)lv)(x, got, N);
			ck_assert_msg(!memcmp(want, got, KB * sizeof(*got)), "round %d level %d: random row",
				      round, lv);
		}
	}
	hyd_free(x);
	hyd_free(want);
	hyd_free(got);
}
END_TEST

/* ------------------------------------------------------------------ Q8_0 */

#define QB 8

/* Finds amax and x in (0, amax) where x*(127/amax) and x*(1/(amax/127)) round to different
 * integers: the block that tells llama.cpp's AVX path (127/amax) from its scalar one. */
static bool find_divergent(float *ret_amax, float *ret_x)
{
	for (int tries = 0; tries < 200000; tries++) {
		const float amax = uniform(1.0f, 2.0f);
		const float id1 = 127.0f / amax, id2 = 1.0f / (amax / 127.0f);
		if (id1 == id2)
			continue;
		const float k = (float)(rnd() % 126) + 0.5f;
		float x = k / id1;
		for (int step = 0; step < 4; step++, x = nextafterf(x, 2.0f)) {
			if (nearest_even(x * id1) != nearest_even(x * id2)) {
				*ret_amax = amax;
				*ret_x = x;
				return true;
			}
		}
	}
	return false;
}

START_TEST(test_q8_0_llama)
{
	enum { N = QB * HYD_QK };
	float x[N];
	struct hyd_block_q8_0 want[QB], got[QB];
	float damax, dx;
	rng_state = 0x7654321;
	ck_assert_msg(find_divergent(&damax, &dx), "no input tells 127/amax from 1/d");
	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < N; i++)
			x[i] = uniform(-1.0f, 1.0f) * (round ? powf(10.0f, uniform(-6.0f, 6.0f)) : 1.0f);
		float *b = x;
		b[7] = -4.0f; /* 0: maximum negative */
		b += HYD_QK;
		b[31] = 4.0f; /* 1: maximum positive, last lane */
		b += HYD_QK;
		for (int j = 0; j < HYD_QK; j++) /* 2: id exactly 1, halfway values */
			b[j] = (float)(j * 8 - 127) + 0.5f;
		b[0] = -127.0f;
		b += HYD_QK;
		memset(b, 0, HYD_QK * sizeof(float)); /* 3: all zero */
		b += HYD_QK;
		for (int j = 0; j < HYD_QK; j++) /* 4: all -0.0 */
			b[j] = -0.0f;
		b += HYD_QK;
		for (int j = 0; j < HYD_QK; j++) /* 5: 127/amax and 1/d round apart */
			b[j] = uniform(-1.0f, 1.0f);
		b[0] = damax;
		b[1] = dx;
		b += HYD_QK;
		b[2] = -1e-30f; /* 6: tiny: the fp16 scale underflows to 0 */
		for (int j = 0; j < HYD_QK; j++)
			b[j] = j == 2 ? b[j] : b[j] * 1e-32f;
		/* 7: noise as generated */
		want_q8_0(x, want, N);
		if (round == 0) {
			ck_assert(want[0].qs[7] == -127 && want[1].qs[31] == 127);
			ck_assert(want[2].qs[1] == -118 && want[2].qs[16] == 2);
			ck_assert(want[3].d == 0 && want[4].d == 0);
			const float id2 = 1.0f / (damax / 127.0f);
			ck_assert(want[5].qs[1] != nearest_even(dx * id2));
		}
		for (int lv = HYD_SIMD_SCALAR; lv <= HYD_SIMD_AVX512VNNI; lv++) {
			if (!cpu_has((enum hyd_simd)lv))
				continue;
			memset(got, 0x5a, sizeof(got));
			hyd__quant_from_float_at(HYD_TYPE_Q8_0, (enum hyd_simd)lv)(x, got, N);
			for (int i = 0; i < QB; i++)
				ck_assert_msg(!memcmp(&want[i], &got[i], sizeof(got[i])),
					      "round %d level %d: Q8_0 block %d differs from llama.cpp's", round,
					      lv, i);
		}
	}
}
END_TEST

/* ------------------------------------------------------------------ -128 in Q8_K */

static const uint32_t k_types[] = { HYD_TYPE_Q4_K, HYD_TYPE_Q5_K, HYD_TYPE_Q6_K };

/* K-quant dot products at every level equal the scalar reference (whose integer sums are
 * exact) on activations full of -128: the SIMD kernels multiply unsigned weights by signed
 * activations, so the whole int8 range is theirs. */
START_TEST(test_k_dot_minus128)
{
	const uint32_t t = k_types[_i];
	enum { N = 8 * HYD_QK_K };
	const struct hyd_type_traits *tr = hyd_type_traits(t);
	float *wf = hyd_malloc(N * sizeof(float));
	void *w = hyd_malloc((size_t)hyd_row_size(t, N));
	struct hyd_block_q8_k *x = hyd_malloc(N / HYD_QK_K * sizeof(*x));
	ck_assert(wf && w && x);
	rng_state = 0xabcdef + t;
	for (int round = 0; round < 100; round++) {
		for (int i = 0; i < N; i++)
			wf[i] = uniform(-1.0f, 1.0f) + (round & 1 ? 0.3f : 0.0f);
		hyd__quant_from_float_at(t, HYD_SIMD_SCALAR)(wf, w, N);
		for (int i = 0; i < N / HYD_QK_K; i++) {
			x[i].d = uniform(-0.01f, 0.01f);
			for (int j = 0; j < HYD_QK_K; j++)
				x[i].qs[j] = (round & 2) || rnd() % 4 == 0 ? -128 : (int8_t)rnd();
			for (int k = 0; k < HYD_QK_K / 16; k++) {
				int s = 0;
				for (int j = 0; j < 16; j++)
					s += x[i].qs[16 * k + j];
				x[i].bsums[k] = (int16_t)s;
			}
		}
		/* exact value in double from the dequantized operands, and its magnitude */
		float *xd = hyd_malloc(N * sizeof(float));
		ck_assert_ptr_nonnull(xd);
		tr->to_float(w, wf, N);
		hyd__q8_k_to_float(x, xd, N);
		double want = 0, mag = 0;
		for (int i = 0; i < N; i++) {
			want += (double)wf[i] * xd[i];
			mag += fabs((double)wf[i] * xd[i]);
		}
		hyd_free(xd);
		const float ref = tr->vec_dot_ref(N, w, x);
		ck_assert_msg(fabs(ref - want) <= 1e-5 * mag + 1e-6, "%s round %d: ref %.9g, exact %.9g",
			      tr->name, round, ref, want);
		for (int lv = HYD_SIMD_AVX2; lv <= HYD_SIMD_AVX512VNNI; lv++) {
			if (!cpu_has((enum hyd_simd)lv))
				continue;
			const float got = hyd__quant_vec_dot_at(t, (enum hyd_simd)lv)(N, w, x);
			ck_assert_msg(fabs(got - ref) <= 1e-5 * mag + 1e-6,
				      "%s level %d round %d: simd %.9g, ref %.9g (mag %.3g)", tr->name, lv,
				      round, got, ref, mag);
		}
	}
	hyd_free(wf);
	hyd_free(w);
	hyd_free(x);
}
END_TEST

int main(void)
{
	hyd_types_init();
	Suite *su = suite_create("quant_act");
	TCase *tc = tcase_create("act");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_q8_k_llama);
	tcase_add_test(tc, test_q8_0_llama);
	tcase_add_loop_test(tc, test_k_dot_minus128, 0, sizeof(k_types) / sizeof(k_types[0]));
	suite_add_tcase(su, tc);
	SRunner *sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
