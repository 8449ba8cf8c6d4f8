/* Kernels that follow ggml's CPU arithmetic (so that greedy decoding makes llama.cpp's choices):
 * the F16 x F16 dot products in both summation orders, f16 rounding of activations, the f16
 * multiply-add and scale of the attention accumulator, and the GELU table.  The SIMD versions
 * must give the scalar definitions' bits; the definitions are checked against values worked
 * out by hand or in double. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/pool.h"
#include "engine/types.h"
#include "engine/types_internal.h"

#include "tests/test_rand.h"

static void fill_f16(uint16_t *h, int64_t n, float scale)
{
	for (int64_t i = 0; i < n; i++)
		h[i] = hyd_fp32_to_fp16(uniform(-scale, scale));
}

static int same_bits(float a, float b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

START_TEST(test_f16_dot_simd_matches_ref)
{
	const struct hyd_type_traits *tr = hyd_type_traits(HYD_TYPE_F16);
	ck_assert_ptr_nonnull(tr);
	ck_assert_int_eq(tr->vec_dot_type, HYD_TYPE_F16);
	const hyd_vec_dot_fn gemm = hyd__f16_gemm_dot();
	static const int64_t lens[] = { 1, 7, 16, 32, 33, 63, 64, 65, 128, 384, 1000, 2048 };
	uint16_t a[2048], b[2048];
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		const int64_t n = lens[k];
		for (int rep = 0; rep < 20; rep++) {
			fill_f16(a, n, 2.0f);
			fill_f16(b, n, 3.0f);
			ck_assert_msg(same_bits(tr->vec_dot(n, a, b), hyd__f16_dot_f16_ref(n, a, b)), "vec_dot n=%lld",
				      (long long)n);
			if (n % 16 == 0)
				ck_assert_msg(same_bits(gemm(n, a, b), hyd__f16_dot_f16_gemm_ref(n, a, b)),
					      "gemm dot n=%lld", (long long)n);
		}
	}
}
END_TEST

/* The 2x2 block must give each of its four outputs bit for bit as the single gemm dot does:
 * it only interleaves independent sums. */
START_TEST(test_f16_gemm_2x2_matches_single)
{
	const hyd_vec_dot_fn gemm = hyd__f16_gemm_dot();
	const hyd_gemm2x2_fn block = hyd__f16_gemm_2x2(), block_ref = hyd__f16_gemm_2x2_ref();
	static const int64_t lens[] = { 16, 32, 64, 128, 640, 2048 };
	static uint16_t w0[2048], w1[2048], x0[2048], x1[2048];
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		const int64_t n = lens[k];
		for (int rep = 0; rep < 20; rep++) {
			fill_f16(w0, n, 2.0f), fill_f16(w1, n, 2.0f), fill_f16(x0, n, 3.0f), fill_f16(x1, n, 3.0f);
			float out[4], ref[4];
			block(n, w0, w1, x0, x1, out);
			block_ref(n, w0, w1, x0, x1, ref);
			const float want[4] = { gemm(n, w0, x0), gemm(n, w0, x1), gemm(n, w1, x0), gemm(n, w1, x1) };
			for (int i = 0; i < 4; i++) {
				ck_assert_msg(same_bits(out[i], want[i]), "2x2 output %d, n=%lld", i, (long long)n);
				ck_assert_msg(same_bits(ref[i], hyd__f16_dot_f16_gemm_ref(n, i < 2 ? w0 : w1, i % 2 ? x1 : x0)),
					      "2x2 reference output %d, n=%lld", i, (long long)n);
			}
		}
	}
}
END_TEST

START_TEST(test_f16_dot_definitions)
{
	/* small integers: every order gives the exact sum */
	uint16_t a[128], b[128];
	double want = 0;
	for (int i = 0; i < 128; i++) {
		a[i] = hyd_fp32_to_fp16((float)(i % 7) - 3.0f);
		b[i] = hyd_fp32_to_fp16((float)(i % 5) - 2.0f);
		want += ((i % 7) - 3.0) * ((i % 5) - 2.0);
	}
	ck_assert(hyd__f16_dot_f16_ref(128, a, b) == (float)want);
	ck_assert(hyd__f16_dot_f16_gemm_ref(128, a, b) == (float)want);
	/* the order shows: products 1 and fifteen of 2^-24 in lanes 0..15.  The 16-lane tree adds
	 * lane 8 to lane 0 first (1 + 2^-24 ties to 1) and ends at 1 + 7 * 2^-23; the double tail
	 * (n % 64) keeps all fifteen and rounds 1 + 7.5 * 2^-23 to even, 1 + 2^-20. */
	uint16_t x[64];
	for (int i = 0; i < 64; i++)
		x[i] = hyd_fp32_to_fp16(i == 0 ? 1.0f : (i < 16 ? 0x1p-12f : 0.0f));
	ck_assert(hyd__f16_dot_f16_ref(64, x, x) == 1.0f + 7 * 0x1p-23f);
	ck_assert(hyd__f16_dot_f16_gemm_ref(16, x, x) == 1.0f + 7 * 0x1p-23f);
	ck_assert(hyd__f16_dot_f16_ref(16, x, x) == 1.0f + 0x1p-20f);
}
END_TEST

START_TEST(test_f16_from_float_rounds_to_nearest_even)
{
	const struct hyd_type_traits *tr = hyd_type_traits(HYD_TYPE_F16);
	float src[1000];
	uint16_t got[1000];
	for (int i = 0; i < 1000; i++)
		src[i] = uniform(-70000.0f, 70000.0f) * (i % 3 ? 1e-4f : 1.0f);
	src[0] = 1.0f + 0x1p-11f; /* halfway: ties to even, 1.0 */
	src[1] = 1.0f + 3 * 0x1p-11f; /* halfway: ties to even, 1 + 2^-9 */
	tr->from_float(src, got, 1000);
	ck_assert_uint_eq(got[0], 0x3c00);
	ck_assert_uint_eq(got[1], 0x3c02);
	for (int i = 0; i < 1000; i++)
		ck_assert_uint_eq(got[i], hyd_fp32_to_fp16(src[i]));
}
END_TEST

START_TEST(test_f16_mad_one_rounding)
{
	/* one rounding: x * a = 1 + 2^-10 + 2^-14 + 2^-24 loses its last term if rounded to f32
	 * before the add; fused, y + x * a = 2^-14 + 2^-24 is an f16 number */
	const uint16_t y0 = hyd_fp32_to_fp16(-(1.0f + 0x1p-10f)), xx = hyd_fp32_to_fp16(1.0f + 0x1p-10f);
	uint16_t yy = y0;
	hyd__mad_f16_ref(&yy, &xx, 1.0f + 0x1p-14f, 1);
	ck_assert(hyd_fp16_to_fp32(yy) == 0x1p-14f + 0x1p-24f);
	/* the same step through the dispatched (SIMD where the CPU has it) accumulator kernel,
	 * in a lane of a full vector */
	uint16_t acc[8], x8[8];
	for (int i = 0; i < 8; i++)
		acc[i] = y0, x8[i] = xx;
	const uint16_t *v[1] = { x8 };
	const float ms[1] = { 1.0f }, vs[1] = { 1.0f + 0x1p-14f };
	hyd_f16acc_steps(acc, v, ms, vs, 1, 8);
	for (int i = 0; i < 8; i++)
		ck_assert(hyd_fp16_to_fp32(acc[i]) == 0x1p-14f + 0x1p-24f);
}
END_TEST

/* Attention's chunked V sum: hyd_f16acc_steps gives the bits of the per-key calls that ggml
 * makes (scale by ms, then multiply-add), the SIMD path included; accumulators that overflow
 * f16 and head sizes with a tail past the last 8 or 64 values included. */
START_TEST(test_f16acc_steps_same_bits)
{
	enum { MAX_N = 70, MAX_DV = 200 };
	static const int64_t dvs[] = { 1, 7, 8, 24, 64, 72, 128, 136, 200 };
	static uint16_t v[MAX_N][MAX_DV];
	const uint16_t *vp[MAX_N];
	uint16_t acc[MAX_DV], want[MAX_DV], plain[MAX_DV];
	float ms[MAX_N], vs[MAX_N];
	for (int seed = 0; seed < 40; seed++) {
		const int64_t dv = dvs[seed % (sizeof(dvs) / sizeof(dvs[0]))];
		const int64_t n = 1 + seed * 7 % MAX_N;
		const float range = seed % 5 == 4 ? 30000.0f : 4.0f; /* large: sums overflow to inf */
		for (int64_t t = 0; t < n; t++) {
			fill_f16(v[t], dv, range);
			vp[t] = v[t];
			/* a new maximum now and then (ms < 1, vs = 1), else ms = 1 and vs < 1 */
			const int new_max = uniform(0, 1) < 0.3f;
			ms[t] = new_max ? expf(uniform(-5, 0)) : 1.0f;
			vs[t] = new_max ? 1.0f : expf(uniform(-8, 0));
		}
		fill_f16(acc, dv, range);
		memcpy(want, acc, sizeof(acc));
		memcpy(plain, acc, sizeof(acc));
		hyd_f16acc_steps(acc, vp, ms, vs, n, dv);
		hyd__f16acc_steps_ref(want, vp, ms, vs, n, dv);
		ck_assert_mem_eq(acc, want, (size_t)dv * sizeof(uint16_t));
		/* the reference is the per-key calls, scaling by 1 included */
		for (int64_t t = 0; t < n; t++) {
			hyd__scale_f16_ref(plain, ms[t], dv);
			hyd__mad_f16_ref(plain, vp[t], vs[t], dv);
		}
		ck_assert_mem_eq(plain, want, (size_t)dv * sizeof(uint16_t));
	}
}
END_TEST

START_TEST(test_matmul_rows_batch_invariant)
{
	/* a row alone in its session's step gets the bits of a one-row matmul; rows of a longer
	 * step those of that step computed by itself, whatever they are batched with */
	enum { N_IN = 64, N_OUT = 8, ROWS = 5 };
	static uint16_t w[N_OUT * N_IN];
	fill_f16(w, N_OUT * N_IN, 1.0f);
	const struct hyd_tensor W = { "w", HYD_TYPE_F16, 2, { N_IN, N_OUT, 1, 1 }, w, sizeof(w) };
	float x[ROWS * N_IN], y[ROWS * N_OUT], one[N_OUT], pair[2 * N_OUT];
	for (int i = 0; i < ROWS * N_IN; i++)
		x[i] = uniform(-1.0f, 1.0f);
	const uint8_t alone[ROWS] = { 1, 0, 0, 1, 1 }; /* sessions of 1, 2, 1 and 1 rows */
	ck_assert_int_eq(hyd_matmul_rows(NULL, &W, x, N_IN, y, N_OUT, ROWS, alone), 0);
	ck_assert_int_eq(hyd_matmul(NULL, &W, x + N_IN, N_IN, pair, N_OUT, 2), 0);
	ck_assert_mem_eq(y + N_OUT, pair, sizeof(pair));
	for (int r = 0; r < ROWS; r++) {
		if (!alone[r])
			continue;
		ck_assert_int_eq(hyd_matmul(NULL, &W, x + r * N_IN, N_IN, one, N_OUT, 1), 0);
		ck_assert_mem_eq(y + r * N_OUT, one, sizeof(one));
	}
	/* and the two orders do differ somewhere, or this test would prove nothing */
	int differ = 0;
	for (int rep = 0; rep < 50 && !differ; rep++) {
		fill_f16(w, N_OUT * N_IN, 1.0f);
		ck_assert_int_eq(hyd_matmul(NULL, &W, x, N_IN, pair, N_OUT, 2), 0);
		ck_assert_int_eq(hyd_matmul(NULL, &W, x, N_IN, one, N_OUT, 1), 0);
		differ = memcmp(pair, one, sizeof(one)) != 0;
	}
	ck_assert(differ);
}
END_TEST

/* One job for several matrices gives every output the bits of its own hyd_matmul_rows, on a
 * real two-thread pool, for quantized and F16 weights (both F16 orders), and falls back to
 * one call per matrix when they cannot share a job. */
static void fill_weights(uint32_t type, void *dst, int64_t n_in, int64_t n_out)
{
	float row[256];
	ck_assert_int_le(n_in, 256);
	const struct hyd_type_traits *tr = hyd_type_traits(type);
	const int64_t rs = hyd_row_size(type, n_in);
	for (int64_t o = 0; o < n_out; o++) {
		for (int64_t i = 0; i < n_in; i++)
			row[i] = uniform(-1.0f, 1.0f);
		if (type == HYD_TYPE_F16)
			for (int64_t i = 0; i < n_in; i++)
				((uint16_t *)dst)[o * n_in + i] = hyd_fp32_to_fp16(row[i]);
		else
			tr->from_float(row, (char *)dst + o * rs, n_in);
	}
}

START_TEST(test_matmul_multi_same_bits)
{
	enum { N_IN = 256, ROWS = 3 };
	static const uint32_t types[] = { HYD_TYPE_Q8_0, HYD_TYPE_Q4_K, HYD_TYPE_F16 };
	/* output counts: large enough for several tasks each, one not a multiple of 4 */
	static const int64_t outs[3] = { 768, 256, 130 };
	struct hyd_pool *pool;
	ck_assert_int_eq(hyd_pool_create(2, &pool), 0);
	const struct hyd_parallel *par = hyd_pool_parallel(pool);
	static float x[ROWS * N_IN];
	for (int i = 0; i < ROWS * N_IN; i++)
		x[i] = uniform(-1.0f, 1.0f);
	const uint8_t alone[ROWS] = { 1, 0, 0 };
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		struct hyd_tensor W[3];
		const struct hyd_tensor *Wp[3];
		float *y[3], *want[3];
		int64_t ld[3];
		for (int k = 0; k < 3; k++) {
			const int64_t rs = hyd_row_size(types[t], N_IN);
			void *data = malloc((size_t)(rs * outs[k]));
			ck_assert_ptr_nonnull(data);
			fill_weights(types[t], data, N_IN, outs[k]);
			W[k] = (struct hyd_tensor){ "w", types[t], 2, { N_IN, outs[k], 1, 1 }, data, (uint64_t)(rs * outs[k]) };
			Wp[k] = &W[k];
			ld[k] = outs[k];
			y[k] = malloc(ROWS * outs[k] * sizeof(float));
			want[k] = malloc(ROWS * outs[k] * sizeof(float));
			ck_assert(y[k] && want[k]);
		}
		for (int mode = 0; mode < 3; mode++) {
			/* 1 row; 3 rows of one step; 3 rows with the first alone */
			const int64_t rows = mode == 0 ? 1 : ROWS;
			const uint8_t *al = mode == 2 ? alone : NULL;
			for (uint32_t n_w = 1; n_w <= 3; n_w++) {
				ck_assert_int_eq(hyd_matmul_multi(par, n_w, Wp, x, N_IN, y, ld, rows, al), 0);
				for (uint32_t k = 0; k < n_w; k++) {
					ck_assert_int_eq(hyd_matmul_rows(NULL, Wp[k], x, N_IN, want[k], ld[k], rows, al), 0);
					ck_assert_msg(memcmp(y[k], want[k], (size_t)(rows * outs[k]) * sizeof(float)) == 0,
						      "type %s mode %d n_w %u: matrix %u differs",
						      hyd_type_name(types[t]), mode, n_w, k);
				}
			}
		}
		for (int k = 0; k < 3; k++) {
			free((void *)W[k].data);
			free(y[k]);
			free(want[k]);
		}
	}
	/* matrices of different types: run one by one, same results */
	{
		static uint16_t wf[64 * N_IN];
		static char wq[64 * 272];
		fill_weights(HYD_TYPE_F16, wf, N_IN, 64);
		fill_weights(HYD_TYPE_Q8_0, wq, N_IN, 64);
		const struct hyd_tensor A = { "a", HYD_TYPE_F16, 2, { N_IN, 64, 1, 1 }, wf, sizeof(wf) };
		const struct hyd_tensor B = { "b", HYD_TYPE_Q8_0, 2, { N_IN, 64, 1, 1 }, wq, sizeof(wq) };
		const struct hyd_tensor *Wp[2] = { &A, &B };
		float ya[64], yb[64], wa[64], wb[64];
		float *y[2] = { ya, yb };
		const int64_t ld[2] = { 64, 64 };
		ck_assert_int_eq(hyd_matmul_multi(par, 2, Wp, x, N_IN, y, ld, 1, NULL), 0);
		ck_assert_int_eq(hyd_matmul(NULL, &A, x, N_IN, wa, 64, 1), 0);
		ck_assert_int_eq(hyd_matmul(NULL, &B, x, N_IN, wb, 64, 1), 0);
		ck_assert_mem_eq(ya, wa, sizeof(wa));
		ck_assert_mem_eq(yb, wb, sizeof(wb));
		ck_assert_int_eq(hyd_matmul_multi(par, 0, Wp, x, N_IN, y, ld, 1, NULL), -EINVAL);
		ck_assert_int_eq(hyd_matmul_multi(par, 5, Wp, x, N_IN, y, ld, 1, NULL), -EINVAL);
	}
	hyd_pool_destroy(pool);
}
END_TEST

/* The F16 four-row kernel gives each row the single-row kernel's bits, at lengths with and
 * without the 64-element main part and with every tail length. */
START_TEST(test_f16_dot4_same_bits)
{
	const struct hyd_type_traits *f16 = hyd_type_traits(HYD_TYPE_F16);
	if (!f16->vec_dot4)
		return; /* scalar level: no four-row kernel to check */
	static const int64_t lens[] = { 1, 7, 8, 48, 63, 64, 65, 72, 130, 256, 1000 };
	static uint16_t w[4 * 1040], x[1000];
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		const int64_t n = lens[k], stride = n + 3;
		for (int rep = 0; rep < 20; rep++) {
			fill_f16(w, 4 * stride, rep % 2 ? 100.0f : 1.0f);
			fill_f16(x, n, 1.0f);
			float out[4];
			f16->vec_dot4(n, w, stride * 2, x, out);
			for (int r = 0; r < 4; r++)
				ck_assert_msg(same_bits(out[r], f16->vec_dot(n, w + r * stride, x)),
					      "n=%ld rep %d row %d: %.9g vs %.9g", (long)n, rep, r, out[r],
					      f16->vec_dot(n, w + r * stride, x));
		}
	}
}
END_TEST

/* A random half for the short-row test: mode 0 moderate values, 1 any finite bit pattern,
 * 2 moderate values with now and then a subnormal or a large one, 3 mode 2 with now and then
 * an infinity or a NaN */
static uint16_t short_row_half(int mode)
{
	const float u = uniform(0.0f, 1.0f);
	if (mode == 1) {
		uint16_t h;
		do
			h = (uint16_t)(uniform(0.0f, 65536.0f));
		while ((h & 0x7c00) == 0x7c00);
		return h;
	}
	if (mode >= 2 && u < 0.05f)
		return (uint16_t)(uniform(1.0f, 1023.0f)) | (u < 0.025f ? 0x8000 : 0); /* subnormal */
	if (mode >= 2 && u < 0.1f)
		return hyd_fp32_to_fp16(uniform(-60000.0f, 60000.0f));
	if (mode == 3 && u < 0.12f)
		return u < 0.11f ? 0x7c00 : 0x7e01; /* +inf, NaN */
	return hyd_fp32_to_fp16(uniform(-4.0f, 4.0f));
}

/* Cancelling giants: x gets 65504 at two random places g0, g1 and each of `rows` rows of w
 * (stride apart) the products +-65504^2 there, and one or two small products that a double
 * sum rounds away or keeps by whether a giant is in it when they come; the rest is zero.  Any
 * order of the additions but the sequential one rounds some rows differently. */
static void cancelling_giants(uint16_t *w, int64_t stride, int rows, uint16_t *x, int64_t n)
{
	const int64_t g0 = (int64_t)uniform(0.0f, (float)n), g1 = (g0 + 1 + (int64_t)uniform(0.0f, (float)n - 1)) % n;
	x[g0] = x[g1] = 0x7bff; /* 65504 */
	for (int r = 0; r < rows; r++) {
		for (int64_t i = 0; i < n; i++)
			w[r * stride + i] = 0;
		w[r * stride + g0] = 0x7bff;
		w[r * stride + g1] = 0xfbff;
		for (int m = 0; m < 2; m++) {
			const int64_t t = (int64_t)uniform(0.0f, (float)n);
			if (t != g0 && t != g1)
				w[r * stride + t] = hyd_fp32_to_fp16(uniform(-0.01f, 0.01f));
		}
	}
}

/* Rows under 64 elements (Mamba's dt projection) are one sequential double sum in ggml's
 * order, which the four-row kernel runs as four chains side by side.  Each row must have the
 * scalar reference's bits for moderate values, any finite halves, mixtures with subnormals,
 * infinities and NaNs, and products that cancel, where any other order of the additions
 * would round differently. */
START_TEST(test_f16_dot4_short_rows_exact)
{
	const struct hyd_type_traits *f16 = hyd_type_traits(HYD_TYPE_F16);
	if (!f16->vec_dot4)
		return;
	static const int64_t lens[] = { 8, 16, 40, 48, 56 };
	uint16_t w[4 * 60], x[56];
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		for (int trial = 0; trial < 4000; trial++) {
			const int64_t n = lens[k], stride = 60;
			const int mode = trial % 5;
			for (int64_t i = 0; i < 4 * stride; i++)
				w[i] = short_row_half(mode % 4);
			for (int64_t i = 0; i < n; i++)
				x[i] = short_row_half(mode % 4);
			if (mode == 4)
				cancelling_giants(w, stride, 4, x, n);
			float out[4];
			f16->vec_dot4(n, w, stride * 2, x, out);
			for (int r = 0; r < 4; r++) {
				const float want = hyd__f16_dot_f16_ref(n, w + r * stride, x);
				ck_assert_msg(same_bits(out[r], want) || (isnan(out[r]) && isnan(want)),
					      "n=%ld trial %d row %d: %a, the reference %a", (long)n, trial, r, out[r], want);
			}
		}
}
END_TEST

/* The many-row kernel (decode's matmul tasks) gives each row the single-row kernel's bits, for
 * any number of rows (groups of four and the rest), short rows whose groups pass or fail the
 * exactness bound (the modes of the short-row test: subnormals, giants, infinities, NaNs) and
 * rows of 64 elements and more. */
START_TEST(test_f16_rows_same_bits)
{
	const struct hyd_type_traits *f16 = hyd_type_traits(HYD_TYPE_F16);
	if (!f16->vec_dot_rows)
		return; /* no many-row kernel at this level */
	static const int64_t lens[] = { 8, 16, 40, 48, 56, 64, 72, 130 };
	enum { MAX_OUT = 13, STRIDE = 136 };
	static uint16_t w[MAX_OUT * STRIDE], x[STRIDE];
	float out[MAX_OUT];
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		for (int trial = 0; trial < 600; trial++) {
			const int64_t n = lens[k], n_out = 1 + trial % MAX_OUT;
			const int mode = (trial / MAX_OUT) % 5;
			for (int64_t i = 0; i < n_out * STRIDE; i++)
				w[i] = short_row_half(mode % 4);
			for (int64_t i = 0; i < n; i++)
				x[i] = short_row_half(mode == 3 && trial % 2 ? 0 : mode % 4);
			if (mode == 4)
				cancelling_giants(w, STRIDE, (int)n_out, x, n);
			f16->vec_dot_rows(n, w, STRIDE * 2, x, n_out, out);
			for (int64_t r = 0; r < n_out; r++) {
				const float want = f16->vec_dot(n, w + r * STRIDE, x);
				ck_assert_msg(same_bits(out[r], want) || (isnan(out[r]) && isnan(want)),
					      "n=%ld n_out=%ld trial %d row %ld: %a, the one-row kernel %a", (long)n,
					      (long)n_out, trial, (long)r, out[r], want);
			}
		}
}
END_TEST

/* A batch whose rows are all alone in their steps gives each row a one-row matmul's bits
 * (it takes the four-row kernels; a mixed batch does not). */
START_TEST(test_matmul_all_alone)
{
	enum { N_IN = 48, N_OUT = 12, ROWS = 3 };
	static uint16_t w[N_OUT * N_IN];
	fill_f16(w, N_OUT * N_IN, 1.0f);
	const struct hyd_tensor W = { "w", HYD_TYPE_F16, 2, { N_IN, N_OUT, 1, 1 }, w, sizeof(w) };
	float x[ROWS * N_IN], y[ROWS * N_OUT], one[N_OUT];
	for (int i = 0; i < ROWS * N_IN; i++)
		x[i] = uniform(-1.0f, 1.0f);
	const uint8_t alone[ROWS] = { 1, 1, 1 };
	ck_assert_int_eq(hyd_matmul_rows(NULL, &W, x, N_IN, y, N_OUT, ROWS, alone), 0);
	for (int r = 0; r < ROWS; r++) {
		ck_assert_int_eq(hyd_matmul(NULL, &W, x + r * N_IN, N_IN, one, N_OUT, 1), 0);
		ck_assert_mem_eq(y + r * N_OUT, one, sizeof(one));
	}
}
END_TEST

START_TEST(test_gelu_table)
{
	float x[2000];
	for (int i = 0; i < 2000; i++)
		x[i] = uniform(-12.0f, 12.0f);
	x[0] = -10.0f;
	x[1] = 10.5f;
	x[2] = 0.0f;
	float y[2000];
	memcpy(y, x, sizeof(x));
	hyd_gelu_tanh(y, 2000);
	ck_assert(y[0] == 0.0f);
	ck_assert(y[1] == 10.5f);
	ck_assert(y[2] == 0.0f);
	for (int i = 3; i < 2000; i++) {
		float want;
		if (x[i] <= -10.0f)
			want = 0.0f;
		else if (x[i] >= 10.0f)
			want = x[i];
		else
			want = hyd_fp16_to_fp32(
				hyd_fp32_to_fp16(hyd_gelu_tanh_ref(hyd_fp16_to_fp32(hyd_fp32_to_fp16(x[i])))));
		ck_assert_msg(same_bits(y[i], want), "x=%g", x[i]);
		/* and the table stays within f16 rounding of the exact function */
		const double v = x[i], g = 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
		ck_assert_msg(fabs(y[i] - g) <= 2e-3 * fabs(g) + 4e-3, "x=%g: %g vs %g", x[i], y[i], g);
	}
}
END_TEST

/* distance in representable floats (same sign assumed: SiLU keeps x's sign) */
static int64_t float_ulps(float a, float b)
{
	int32_t ia, ib;
	memcpy(&ia, &a, sizeof(ia));
	memcpy(&ib, &b, sizeof(ib));
	return ia > ib ? (int64_t)ia - ib : (int64_t)ib - ia;
}

/* hyd_silu's vector path against the scalar definition: exp is rounded once from double there,
 * so about 1 in 10^4 results may differ from libm's expf path, by at most two ulps (one of
 * exp, one more through the division); the tails (n not a multiple of 8) and the extremes
 * (0, saturation at large |x|, overflow of exp) must agree. */
START_TEST(test_silu_vector_path)
{
	enum { N = 1 << 17 };
	float *x = malloc(N * sizeof(float)), *got = malloc(N * sizeof(float));
	float *want = malloc(N * sizeof(float));
	ck_assert(x && got && want);
	static const float special[] = { 0.0f, -0.0f, 1e-30f, -1e-30f, 20.0f, -20.0f, 88.0f, -88.0f, 89.0f,
					 -89.0f, 104.0f, -104.0f, 200.0f, -200.0f, 1e30f, -1e30f, 1e-42f };
	const int ns = (int)(sizeof(special) / sizeof(special[0]));
	for (int i = 0; i < N; i++)
		x[i] = i < ns ? special[i] : i % 16 ? uniform(-12.0f, 12.0f) : uniform(-120.0f, 120.0f);
	/* an odd length first (tail of 5), then short ones that are all or mostly tail */
	const int64_t lens[] = { N - 3, 7, 1, 8, 9 };
	for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
		const int64_t n = lens[l];
		memcpy(got, x, (size_t)n * sizeof(float));
		memcpy(want, x, (size_t)n * sizeof(float));
		hyd_silu(got, n);
		hyd__silu_ref(want, n);
		int64_t differ = 0;
		for (int64_t i = 0; i < n; i++) {
			ck_assert_msg(float_ulps(got[i], want[i]) <= 2, "silu(%a): %a, scalar %a", x[i], got[i], want[i]);
			differ += !same_bits(got[i], want[i]);
			if (i < ns)
				ck_assert_msg(same_bits(got[i], want[i]), "silu(%a): %a, scalar %a", x[i], got[i],
					      want[i]);
			else {
				/* the exact function, as a check on both */
				const double v = x[i], e = v / (1.0 + exp(-v));
				ck_assert_msg(fabs(got[i] - e) <= 1e-6 * fabs(e) + 1e-30, "silu(%g) = %g, exactly %g", v,
					      got[i], e);
			}
		}
		ck_assert_msg(differ <= n / 1000, "%lld of %lld differ", (long long)differ, (long long)n);
	}
	free(x);
	free(got);
	free(want);
}
END_TEST

START_TEST(test_rope_step)
{
	/* angles by repeated multiplication stay within float error of pos * base^(-2i/n) */
	float v[64];
	for (int i = 0; i < 64; i++)
		v[i] = i < 32 ? 1.0f : 0.0f;
	hyd_rope(v, 1, 64, 64, 100, 10000.0f, 1.0f, HYD_ROPE_NEOX);
	for (int i = 0; i < 32; i++) {
		const double th = 100.0 * pow(10000.0, -2.0 * i / 64);
		ck_assert_msg(fabs(v[i] - cos(th)) < 2e-4 && fabs(v[i + 32] - sin(th)) < 2e-4, "i=%d", i);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("kernels");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_f16_dot_simd_matches_ref);
	tcase_add_test(tc, test_f16_gemm_2x2_matches_single);
	tcase_add_test(tc, test_f16_dot_definitions);
	tcase_add_test(tc, test_f16_from_float_rounds_to_nearest_even);
	tcase_add_test(tc, test_f16_mad_one_rounding);
	tcase_add_test(tc, test_f16acc_steps_same_bits);
	tcase_add_test(tc, test_matmul_rows_batch_invariant);
	tcase_add_test(tc, test_matmul_multi_same_bits);
	tcase_add_test(tc, test_f16_dot4_same_bits);
	tcase_add_test(tc, test_f16_dot4_short_rows_exact);
	tcase_add_test(tc, test_f16_rows_same_bits);
	tcase_add_test(tc, test_matmul_all_alone);
	tcase_add_test(tc, test_gelu_table);
	tcase_add_test(tc, test_silu_vector_path);
	tcase_add_test(tc, test_rope_step);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
