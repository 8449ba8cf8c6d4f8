/* Quantized types: properties of every kernel version this CPU can run, over many random
 * rows.  SIMD dot products against the scalar reference (integer parts exact, so only float
 * accumulation order may differ), the reference against dequantize-then-dot, quantizer
 * round-trip error, exactness of the activation quantizers, and the per-level registration. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/kernels.h"
#include "engine/pool.h"
#include "engine/quant.h"

#define ROWS 200

/* ------------------------------------------------------------------ helpers */

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

static float gauss(void)
{
	float u = uniform(1e-7f, 1.0f), v = uniform(0.0f, 1.0f);
	return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static void seed(uint64_t s)
{
	rng_state = s * 0x9E3779B97F4A7C15ULL + 1;
}

static int64_t blck(uint32_t t)
{
	return hyd_type_traits(t)->blck;
}

static size_t row_bytes(uint32_t t, int64_t n)
{
	int64_t s = hyd_row_size(t, n);
	ck_assert_int_ge(s, 0);
	return (size_t)s;
}

/* A random row length: multiple of the type's block, 256..4096 (32-element types also get
 * lengths that are odd numbers of blocks so the SIMD tails run). */
static int64_t rand_len(uint32_t t)
{
	const int64_t b = blck(t);
	int64_t n = b * (1 + (int64_t)(rnd() % (uint64_t)(4096 / b)));
	return n < 256 ? n + 256 : n;
}

static uint16_t rand_scale(float lo, float hi)
{
	return hyd_fp32_to_fp16(uniform(lo, hi));
}

/* Random but valid weight blocks: arbitrary quant bytes, sane fp16 scales. */
static void rand_weights(uint32_t t, void *dst, int64_t n)
{
	size_t bytes = row_bytes(t, n);
	uint8_t *p = dst;
	for (size_t i = 0; i < bytes; i++)
		p[i] = (uint8_t)rnd();
	int64_t nb = n / blck(t);
	for (int64_t i = 0; i < nb; i++) {
		switch (t) {
		case HYD_TYPE_Q8_0:
			((struct hyd_block_q8_0 *)dst)[i].d = rand_scale(1e-4f, 1e-2f);
			break;
		case HYD_TYPE_Q4_0:
			((struct hyd_block_q4_0 *)dst)[i].d = rand_scale(-0.05f, 0.05f);
			break;
		case HYD_TYPE_Q4_K: {
			struct hyd_block_q4_k *b = dst;
			b[i].d = rand_scale(1e-4f, 1e-3f);
			b[i].dmin = rand_scale(1e-4f, 1e-3f);
			break;
		}
		case HYD_TYPE_Q5_K: {
			struct hyd_block_q5_k *b = dst;
			b[i].d = rand_scale(1e-4f, 1e-3f);
			b[i].dmin = rand_scale(1e-4f, 1e-3f);
			break;
		}
		case HYD_TYPE_Q6_K:
			((struct hyd_block_q6_k *)dst)[i].d = rand_scale(-1e-3f, 1e-3f);
			break;
		default:
			ck_abort_msg("no generator for type %u", t);
		}
	}
}

static void rand_floats(float *x, int64_t n, float scale)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = scale * gauss();
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

/* Magnitude against which a dot product's float rounding is judged: sum of |terms|, where a
 * K-quant weight counts its scale part and its min part separately (they are rounded
 * separately before they cancel). */
static double dot_magnitude(uint32_t t, const void *w, const float *xf, int64_t n, float *tmp)
{
	const struct hyd_type_traits *tr = hyd_type_traits(t);
	size_t bytes = row_bytes(t, n);
	uint8_t *copy = hyd_malloc(bytes);
	ck_assert_ptr_nonnull(copy);
	double mag = 0;
	int parts = (t == HYD_TYPE_Q4_K || t == HYD_TYPE_Q5_K) ? 2 : 1;
	for (int part = 0; part < parts; part++) {
		memcpy(copy, w, bytes);
		if (parts == 2) {
			for (int64_t i = 0; i < n / HYD_QK_K; i++) {
				/* d and dmin are the first two halves of both block layouts */
				uint16_t *dd = (uint16_t *)(copy + i * tr->type_size);
				dd[part == 0 ? 1 : 0] = 0;
			}
		}
		tr->to_float(copy, tmp, n);
		for (int64_t i = 0; i < n; i++)
			mag += fabs((double)tmp[i] * xf[i]);
	}
	hyd_free(copy);
	return mag;
}

static const uint32_t weight_types[] = {
	HYD_TYPE_Q8_0, HYD_TYPE_Q4_0, HYD_TYPE_Q4_K, HYD_TYPE_Q5_K, HYD_TYPE_Q6_K,
};
#define N_WEIGHT_TYPES (sizeof(weight_types) / sizeof(weight_types[0]))

/* ------------------------------------------------------------------ dot products */

/* The types whose AVX512-VNNI kernels are twins of the AVX2 ones (engine/quant_avx2.c). */
static bool has_avx2_twin(uint32_t t)
{
	return t == HYD_TYPE_Q8_0 || t == HYD_TYPE_Q4_0 || t == HYD_TYPE_Q4_K || t == HYD_TYPE_Q6_K;
}

/* Every SIMD level the CPU has agrees with the scalar reference; the reference agrees with
 * the float dot of both dequantized rows. */
START_TEST(test_dot_levels)
{
	const uint32_t t = weight_types[_i];
	const struct hyd_type_traits *tr = hyd_type_traits(t), *at;
	at = hyd_type_traits(tr->vec_dot_type);
	ck_assert_ptr_nonnull(tr->vec_dot_ref);
	ck_assert_ptr_nonnull(at->from_float);
	const int64_t nmax = 4096 + 256;
	void *w = hyd_malloc(row_bytes(t, nmax));
	void *xq = hyd_malloc(row_bytes(tr->vec_dot_type, nmax));
	float *x = hyd_malloc(nmax * sizeof(float));
	float *wf = hyd_malloc(nmax * sizeof(float));
	float *xf = hyd_malloc(nmax * sizeof(float));
	ck_assert(w && xq && x && wf && xf);
	int tested_levels = 0;
	for (int lv = HYD_SIMD_SCALAR; lv <= HYD_SIMD_AVX512VNNI; lv++)
		tested_levels += cpu_has((enum hyd_simd)lv);

	seed(1000 + t);
	for (int r = 0; r < ROWS; r++) {
		const int64_t n = rand_len(t);
		rand_weights(t, w, n);
		rand_floats(x, n, r % 3 == 0 ? 100.0f : 1.0f);
		at->from_float(x, xq, n);
		tr->to_float(w, wf, n);
		at->to_float(xq, xf, n);
		const double mag = dot_magnitude(t, w, xf, n, wf);
		tr->to_float(w, wf, n); /* dot_magnitude used wf as scratch */
		double want = 0;
		for (int64_t i = 0; i < n; i++)
			want += (double)wf[i] * xf[i];
		const float ref = tr->vec_dot_ref(n, w, xq);
		ck_assert_msg(fabs(ref - want) <= 1e-5 * mag + 1e-30,
			      "%s n=%ld row %d: ref %.9g, dequantized dot %.9g (mag %.3g)",
			      tr->name, (long)n, r, ref, want, mag);
		for (int lv = HYD_SIMD_AVX2; lv <= HYD_SIMD_AVX512VNNI; lv++) {
			if (!cpu_has((enum hyd_simd)lv))
				continue;
			hyd_vec_dot_fn fn = hyd__quant_vec_dot_at(t, (enum hyd_simd)lv);
			ck_assert_ptr_nonnull(fn);
			const float got = fn(n, w, xq);
			ck_assert_msg(fabs(got - ref) <= 1e-5 * mag + 1e-30,
				      "%s level %d n=%ld row %d: simd %.9g, ref %.9g (mag %.3g)",
				      tr->name, lv, (long)n, r, got, ref, mag);
			/* the references sum in the AVX2 kernels' order (engine/quant_ref.c), and the
			 * VNNI twins of the AVX2 kernels do too, so that every CPU gives the same bits */
			if (lv == HYD_SIMD_AVX2 || (lv == HYD_SIMD_AVX512VNNI && has_avx2_twin(t)))
				ck_assert_msg(memcmp(&got, &ref, sizeof(got)) == 0,
					      "%s level %d n=%ld row %d: %a, reference %a (not the same bits)", tr->name,
					      lv, (long)n, r, got, ref);
		}
	}
	/* the table's vec_dot is the best level available */
	const float probe = tr->vec_dot(HYD_QK_K, w, xq);
	ck_assert(isfinite(probe));
	if (tested_levels == 1)
		fprintf(stderr, "note: only the scalar level can run on this CPU\n");
	hyd_free(w);
	hyd_free(xq);
	hyd_free(x);
	hyd_free(wf);
	hyd_free(xf);
}
END_TEST

/* Saturation corners: every quant at its extreme, activations at +-127. */
START_TEST(test_dot_extremes)
{
	const uint32_t t = weight_types[_i];
	const struct hyd_type_traits *tr = hyd_type_traits(t), *at;
	at = hyd_type_traits(tr->vec_dot_type);
	const int64_t n = 1024;
	void *w = hyd_malloc(row_bytes(t, n));
	void *xq = hyd_malloc(row_bytes(tr->vec_dot_type, n));
	float *x = hyd_malloc(n * sizeof(float));
	float *wf = hyd_malloc(n * sizeof(float));
	float *xf = hyd_malloc(n * sizeof(float));
	ck_assert(w && xq && x && wf && xf);
	seed(77 + t);
	for (int pattern = 0; pattern < 8; pattern++) {
		rand_weights(t, w, n);
		/* bytes all-ones give every quant its maximum (and scales/mins 63 in K-quants);
		 * scales are rewritten, all else 0xff or 0x00 */
		size_t bytes = row_bytes(t, n);
		static const uint8_t fills[] = { 0xff, 0x80, 0x7f, 0x00 };
		const uint8_t fill = fills[pattern % 4];
		uint8_t *keep = hyd_malloc(bytes);
		ck_assert_ptr_nonnull(keep);
		memcpy(keep, w, bytes);
		memset(w, fill, bytes);
		for (int64_t i = 0; i < n / blck(t); i++) {
			uint8_t *b = (uint8_t *)w + i * tr->type_size, *k = keep + i * tr->type_size;
			if (t == HYD_TYPE_Q6_K)
				memcpy(b + 208, k + 208, 2);
			else if (t == HYD_TYPE_Q4_K || t == HYD_TYPE_Q5_K)
				memcpy(b, k, 4);
			else
				memcpy(b, k, 2);
		}
		hyd_free(keep);
		for (int64_t i = 0; i < n; i++)
			x[i] = pattern >= 4 ? ((i & 1) ? -1.0f : 1.0f) : -1.0f;
		at->from_float(x, xq, n);
		tr->to_float(w, wf, n);
		at->to_float(xq, xf, n);
		double want = 0, mag = 0;
		for (int64_t i = 0; i < n; i++) {
			want += (double)wf[i] * xf[i];
			mag += fabs((double)wf[i] * xf[i]);
		}
		const double tol = 1e-5 * (mag + 1e-3);
		const float ref = tr->vec_dot_ref(n, w, xq);
		ck_assert_msg(fabs(ref - want) <= tol * 64, "%s pattern %d: ref %.9g want %.9g",
			      tr->name, pattern, ref, want);
		for (int lv = HYD_SIMD_AVX2; lv <= HYD_SIMD_AVX512VNNI; lv++) {
			if (!cpu_has((enum hyd_simd)lv))
				continue;
			const float got = hyd__quant_vec_dot_at(t, (enum hyd_simd)lv)(n, w, xq);
			ck_assert_msg(fabs(got - ref) <= tol * 64,
				      "%s level %d pattern %d: simd %.9g ref %.9g", tr->name, lv,
				      pattern, got, ref);
		}
	}
	hyd_free(w);
	hyd_free(xq);
	hyd_free(x);
	hyd_free(wf);
	hyd_free(xf);
}
END_TEST

/* The four-row kernels give each row exactly the bits of the single-row kernel of the same
 * level (matmul relies on it: a row's result must not depend on its neighbours), for random
 * and saturating blocks, any row stride, odd block counts. */
START_TEST(test_dot4_same_bits)
{
	const uint32_t t = weight_types[_i];
	const struct hyd_type_traits *tr = hyd_type_traits(t), *at;
	at = hyd_type_traits(tr->vec_dot_type);
	const int64_t nmax = 4096 + 256;
	const size_t stride_max = row_bytes(t, nmax) + 64;
	uint8_t *w = hyd_malloc(4 * stride_max);
	void *xq = hyd_malloc(row_bytes(tr->vec_dot_type, nmax));
	float *x = hyd_malloc(nmax * sizeof(float));
	ck_assert(w && xq && x);
	int kernels = 0;
	seed(3000 + t);
	for (int lv = HYD_SIMD_SCALAR; lv <= HYD_SIMD_AVX512VNNI; lv++) {
		if (!cpu_has((enum hyd_simd)lv))
			continue;
		hyd_vec_dot4_fn dot4 = hyd__quant_vec_dot4_at(t, (enum hyd_simd)lv);
		hyd_vec_dot_fn dot = hyd__quant_vec_dot_at(t, (enum hyd_simd)lv);
		if (!dot4)
			continue;
		kernels++;
		for (int r = 0; r < ROWS; r++) {
			const int64_t n = rand_len(t);
			/* any even stride: blocks hold 16-bit scales, rows need not be 32-aligned */
			const size_t stride = row_bytes(t, n) + 2 * (size_t)(rnd() % 32);
			for (int k = 0; k < 4; k++) {
				rand_weights(t, w + k * stride, n);
				if (r % 5 == 4) /* saturating quants, scales kept */
					for (int64_t i = 0; i < n / blck(t); i++) {
						uint8_t *b = w + k * stride + i * tr->type_size;
						const size_t keep_lo = t == HYD_TYPE_Q6_K ? 0 : t == HYD_TYPE_Q4_K || t == HYD_TYPE_Q5_K ? 4 : 2;
						const size_t keep_hi = t == HYD_TYPE_Q6_K ? 2 : 0;
						memset(b + keep_lo, r % 10 == 4 ? 0xff : 0x80, tr->type_size - keep_lo - keep_hi);
					}
			}
			rand_floats(x, n, r % 3 == 0 ? 100.0f : 1.0f);
			at->from_float(x, xq, n);
			float out[4];
			dot4(n, w, (int64_t)stride, xq, out);
			for (int k = 0; k < 4; k++) {
				const float want = dot(n, w + k * stride, xq);
				ck_assert_msg(memcmp(&out[k], &want, sizeof(float)) == 0,
					      "%s level %d n=%ld case %d row %d: dot4 %.9g, single-row %.9g",
					      tr->name, lv, (long)n, r, k, out[k], want);
			}
		}
	}
	/* the table pairs its vec_dot4 with its vec_dot */
	if (tr->vec_dot4)
		ck_assert_int_gt(kernels, 0);
	hyd_free(w);
	hyd_free(xq);
	hyd_free(x);
}
END_TEST

/* A run of four-row groups (decode's streams) gives each row the four-row kernel's bits and
 * stores it at its place, for runs of one group and more, at every level that has one. */
START_TEST(test_dot4_run_same_bits)
{
	const uint32_t t = weight_types[_i];
	const struct hyd_type_traits *tr = hyd_type_traits(t), *at;
	at = hyd_type_traits(tr->vec_dot_type);
	const int64_t n = 768, quarter = 9;
	const size_t rb = row_bytes(t, n), xb = row_bytes(tr->vec_dot_type, n);
	uint8_t *w = hyd_malloc(4 * quarter * rb);
	uint8_t *xq = hyd_malloc(xb);
	float *x = hyd_malloc(n * sizeof(float));
	float *y = hyd_malloc(4 * quarter * sizeof(float));
	ck_assert(w && xq && x && y);
	seed(4700 + t);
	for (int64_t o = 0; o < 4 * quarter; o++)
		rand_weights(t, w + o * rb, n);
	rand_floats(x, n, 1.0f);
	at->from_float(x, xq, n);
	int runs = 0;
	for (int lv = HYD_SIMD_SCALAR; lv <= HYD_SIMD_AVX512VNNI; lv++) {
		hyd_vec_dot4_run_fn run = hyd__quant_vec_dot4_run_at(t, (enum hyd_simd)lv);
		hyd_vec_dot4_fn dot4 = hyd__quant_vec_dot4_at(t, (enum hyd_simd)lv);
		if (!cpu_has((enum hyd_simd)lv) || !run)
			continue;
		ck_assert_ptr_nonnull(dot4);
		runs++;
		for (int64_t groups = 1; groups <= quarter; groups += quarter - 1) {
			for (int64_t o = 0; o < 4 * quarter; o++)
				y[o] = NAN;
			run(n, w, (int64_t)rb, quarter, groups, xq, y);
			for (int64_t g = 0; g < quarter; g++) {
				float want[4];
				dot4(n, w + g * rb, quarter * (int64_t)rb, xq, want);
				for (int k = 0; k < 4; k++)
					if (g < groups)
						ck_assert_msg(memcmp(&y[g + k * quarter], &want[k], sizeof(float)) == 0,
							      "%s level %d, %ld groups: row %ld %.9g, dot4 %.9g", tr->name,
							      lv, (long)groups, (long)(g + k * quarter), y[g + k * quarter],
							      want[k]);
					else /* past the run: untouched */
						ck_assert(isnan(y[g + k * quarter]));
			}
		}
	}
	/* every level with a four-row kernel has its run */
	if (tr->vec_dot4)
		ck_assert_int_gt(runs, 0);
	hyd_free(w);
	hyd_free(xq);
	hyd_free(x);
	hyd_free(y);
}
END_TEST

/* The two-activation-row kernels give each (row, activation) exactly the four-row kernel's
 * bits: prefill may pair any two rows of a step, and a row's result must not depend on which
 * row it was paired with. */
START_TEST(test_dot4x2_same_bits)
{
	const uint32_t t = weight_types[_i];
	const struct hyd_type_traits *tr = hyd_type_traits(t), *at;
	at = hyd_type_traits(tr->vec_dot_type);
	const int64_t nmax = 4096 + 256;
	const size_t stride_max = row_bytes(t, nmax) + 64;
	const size_t xbytes = row_bytes(tr->vec_dot_type, nmax);
	uint8_t *w = hyd_malloc(4 * stride_max);
	uint8_t *xq = hyd_malloc(2 * xbytes);
	float *x = hyd_malloc(nmax * sizeof(float));
	ck_assert(w && xq && x);
	seed(5000 + t);
	for (int lv = HYD_SIMD_SCALAR; lv <= HYD_SIMD_AVX512VNNI; lv++) {
		if (!cpu_has((enum hyd_simd)lv))
			continue;
		hyd_vec_dot4x2_fn dot4x2 = hyd__quant_vec_dot4x2_at(t, (enum hyd_simd)lv);
		hyd_vec_dot4_fn dot4 = hyd__quant_vec_dot4_at(t, (enum hyd_simd)lv);
		if (!dot4x2)
			continue;
		ck_assert_ptr_nonnull(dot4);
		for (int r = 0; r < ROWS; r++) {
			const int64_t n = rand_len(t);
			const size_t stride = row_bytes(t, n) + 2 * (size_t)(rnd() % 32);
			for (int k = 0; k < 4; k++)
				rand_weights(t, w + k * stride, n);
			for (int a = 0; a < 2; a++) {
				rand_floats(x, n, (r + a) % 3 == 0 ? 100.0f : 1.0f);
				at->from_float(x, xq + a * xbytes, n);
			}
			float out[8], want[8];
			dot4x2(n, w, (int64_t)stride, xq, xq + xbytes, out);
			dot4(n, w, (int64_t)stride, xq, want);
			dot4(n, w, (int64_t)stride, xq + xbytes, want + 4);
			for (int k = 0; k < 8; k++)
				ck_assert_msg(memcmp(&out[k], &want[k], sizeof(float)) == 0,
					      "%s level %d n=%ld case %d activation %d row %d: dot4x2 %.9g, dot4 %.9g",
					      tr->name, lv, (long)n, r, k / 4, k % 4, out[k], want[k]);
		}
	}
	hyd_free(w);
	hyd_free(xq);
	hyd_free(x);
}
END_TEST

/* hyd_matmul (which uses the four-row kernels for whole groups and the single-row one for the
 * rest) computes every output exactly as vec_dot does, for any output count and batch. */
START_TEST(test_matmul_rows_exact)
{
	const uint32_t t = weight_types[_i];
	const struct hyd_type_traits *tr = hyd_type_traits(t), *at;
	at = hyd_type_traits(tr->vec_dot_type);
	const int64_t n = 512, max_out = 13, max_rows = 9;
	const size_t rb = row_bytes(t, n), xb = row_bytes(tr->vec_dot_type, n);
	uint8_t *w = hyd_malloc(rb * max_out);
	uint8_t *xq = hyd_malloc(xb);
	float *x = hyd_malloc(max_rows * n * sizeof(float));
	float *y = hyd_malloc(max_rows * max_out * sizeof(float));
	ck_assert(w && xq && x && y);
	seed(4000 + t);
	for (int64_t o = 0; o < max_out; o++)
		rand_weights(t, w + o * rb, n);
	rand_floats(x, max_rows * n, 1.0f);
	for (int64_t n_out = 1; n_out <= max_out; n_out++)
		for (int64_t n_rows = 1; n_rows <= max_rows; n_rows += 4) {
			struct hyd_tensor W = { .name = "w", .type = t, .n_dims = 2, .ne = { n, n_out, 1, 1 },
						.data = w, .nbytes = rb * n_out };
			ck_assert_int_eq(hyd_matmul(NULL, &W, x, n, y, n_out, n_rows), 0);
			for (int64_t r = 0; r < n_rows; r++) {
				at->from_float(x + r * n, xq, n);
				for (int64_t o = 0; o < n_out; o++) {
					const float want = tr->vec_dot(n, w + o * rb, xq);
					ck_assert_msg(memcmp(&y[r * n_out + o], &want, sizeof(float)) == 0,
						      "%s n_out=%ld rows=%ld: y[%ld][%ld] = %.9g, vec_dot %.9g",
						      tr->name, (long)n_out, (long)n_rows, (long)r, (long)o,
						      y[r * n_out + o], want);
				}
			}
		}
	hyd_free(w);
	hyd_free(xq);
	hyd_free(x);
	hyd_free(y);
}
END_TEST

/* Decode of a large matrix reads each task as four long streams, one row from each quarter
 * per four-row call (engine/matmul.c): every output still lands in its own place with
 * vec_dot's bits, with the rows that do not fill the quarters done one by one, on one
 * thread (one task) and on two (tasks of many sizes, down to groups of consecutive rows). */
START_TEST(test_matmul_decode_streams)
{
	const uint32_t t = weight_types[_i];
	const struct hyd_type_traits *tr = hyd_type_traits(t), *at;
	at = hyd_type_traits(tr->vec_dot_type);
	const int64_t n = 512, n_out = 4 * 256 + 3; /* quarters of 72-136 KiB, and a tail */
	const size_t rb = row_bytes(t, n), xb = row_bytes(tr->vec_dot_type, n);
	uint8_t *w = hyd_malloc(rb * n_out);
	uint8_t *xq = hyd_malloc(xb);
	float *x = hyd_malloc(n * sizeof(float));
	float *y = hyd_malloc(n_out * sizeof(float));
	ck_assert(w && xq && x && y);
	seed(4500 + t);
	for (int64_t o = 0; o < n_out; o++)
		rand_weights(t, w + o * rb, n);
	rand_floats(x, n, 1.0f);
	at->from_float(x, xq, n);
	struct hyd_pool *pool;
	ck_assert_int_eq(hyd_pool_create(2, &pool), 0);
	const struct hyd_parallel *pars[2] = { NULL, hyd_pool_parallel(pool) };
	struct hyd_tensor W = { .name = "w", .type = t, .n_dims = 2, .ne = { n, n_out, 1, 1 },
				.data = w, .nbytes = rb * n_out };
	for (int p = 0; p < 2; p++) {
		for (int64_t o = 0; o < n_out; o++)
			y[o] = NAN;
		ck_assert_int_eq(hyd_matmul(pars[p], &W, x, n, y, n_out, 1), 0);
		for (int64_t o = 0; o < n_out; o++) {
			const float want = tr->vec_dot(n, w + o * rb, xq);
			ck_assert_msg(memcmp(&y[o], &want, sizeof(float)) == 0,
				      "%s, %d thread(s): y[%ld] = %.9g, vec_dot %.9g", tr->name, p + 1,
				      (long)o, y[o], want);
		}
	}
	hyd_pool_destroy(pool);
	hyd_free(w);
	hyd_free(xq);
	hyd_free(x);
	hyd_free(y);
}
END_TEST

/* ------------------------------------------------------------------ quantizers */

struct rt_case {
	uint32_t type;
	double max_rel_rms; /* bound on rms(error) / rms(x) for gaussian rows */
};

static const struct rt_case rt_cases[] = {
	{ HYD_TYPE_Q8_0, 0.008 }, { HYD_TYPE_Q8_K, 0.013 }, { HYD_TYPE_Q4_0, 0.12 },
	{ HYD_TYPE_Q4_K, 0.10 },  { HYD_TYPE_Q5_K, 0.05 },  { HYD_TYPE_Q6_K, 0.025 },
};
#define N_RT_CASES (sizeof(rt_cases) / sizeof(rt_cases[0]))

/* quantize -> dequantize on gaussian rows (some with outliers, offsets or zero blocks):
 * relative rms error bounded, every output finite, zero blocks stay zero. */
START_TEST(test_round_trip)
{
	const struct rt_case *c = &rt_cases[_i];
	const struct hyd_type_traits *tr = hyd_type_traits(c->type);
	ck_assert_ptr_nonnull(tr->from_float);
	ck_assert_ptr_nonnull(tr->to_float);
	const int64_t nmax = 4096;
	float *x = hyd_malloc(nmax * sizeof(float)), *y = hyd_malloc(nmax * sizeof(float));
	void *q = hyd_malloc(row_bytes(c->type, nmax));
	ck_assert(x && y && q);
	seed(4242 + c->type);
	double worst = 0;
	for (int r = 0; r < ROWS; r++) {
		const int64_t n = blck(c->type) * (1 + (int64_t)(rnd() % (uint64_t)(nmax / blck(c->type))));
		const float scale = powf(10.0f, uniform(-3.0f, 2.0f));
		rand_floats(x, n, scale);
		if (r % 5 == 1) /* a shifted distribution: mins matter */
			for (int64_t i = 0; i < n; i++)
				x[i] += 1.5f * scale;
		if (r % 7 == 2) /* a zero block */
			memset(x, 0, blck(c->type) * sizeof(float));
		for (int v = 0; v < 2; v++) {
			hyd_from_float_fn from = v == 0 ? tr->from_float :
						 hyd__quant_from_float_at(c->type, HYD_SIMD_SCALAR);
			from(x, q, n);
			tr->to_float(q, y, n);
			double se = 0, sx = 0;
			for (int64_t i = 0; i < n; i++) {
				ck_assert_msg(isfinite(y[i]), "%s: non-finite output", tr->name);
				se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
				sx += (double)x[i] * x[i];
			}
			if (r % 7 == 2)
				for (int64_t i = 0; i < blck(c->type); i++)
					ck_assert_msg(y[i] == 0.0f, "%s: zero block gave %g at %ld",
						      tr->name, y[i], (long)i);
			if (sx == 0) { /* an all-zero row must come back all zero */
				ck_assert_msg(se == 0, "%s: zero row came back nonzero", tr->name);
				continue;
			}
			const double rel = sqrt(se / sx);
			worst = fmax(worst, rel);
			ck_assert_msg(rel <= c->max_rel_rms, "%s row %d n=%ld: rel rms error %.4g > %.4g",
				      tr->name, r, (long)n, rel, c->max_rel_rms);
		}
	}
	fprintf(stderr, "%s: worst relative rms round-trip error %.4g\n", tr->name, worst);
	hyd_free(x);
	hyd_free(y);
	hyd_free(q);
}
END_TEST

/* Q8_0 / Q8_K: every element within half a step (plus the fp16 rounding of Q8_0's scale) and
 * the block maximum at +-127; SIMD quantizers bit-identical with the references. */
START_TEST(test_act_quant_exact)
{
	const int64_t n = 4096;
	float *x = hyd_malloc(n * sizeof(float)), *y = hyd_malloc(n * sizeof(float));
	void *q0 = hyd_malloc(row_bytes(HYD_TYPE_Q8_K, n)), *q1 = hyd_malloc(row_bytes(HYD_TYPE_Q8_K, n));
	ck_assert(x && y && q0 && q1);
	seed(99);
	for (int r = 0; r < ROWS; r++) {
		rand_floats(x, n, powf(10.0f, uniform(-4.0f, 3.0f)));
		/* Q8_0 */
		hyd__q8_0_from_float_ref(x, q0, n);
		hyd__q8_0_to_float(q0, y, n);
		const struct hyd_block_q8_0 *b0 = q0;
		for (int64_t i = 0; i < n / HYD_QK; i++) {
			float amax = 0;
			int qmax = 0;
			for (int j = 0; j < HYD_QK; j++) {
				amax = fmaxf(amax, fabsf(x[i * HYD_QK + j]));
				qmax = abs(b0[i].qs[j]) > qmax ? abs(b0[i].qs[j]) : qmax;
			}
			ck_assert_int_eq(qmax, 127);
			/* half a step, plus what rounding the scale to fp16 (subnormal for tiny
			 * blocks) moves the largest quant */
			const float d = amax / 127, d16 = hyd_fp16_to_fp32(b0[i].d);
			const float tol = 0.5001f * d + 127 * fabsf(d - d16);
			for (int j = 0; j < HYD_QK; j++)
				ck_assert_msg(fabsf(x[i * HYD_QK + j] - y[i * HYD_QK + j]) <= tol,
					      "Q8_0 block %ld: %g -> %g (d %g)", (long)i,
					      x[i * HYD_QK + j], y[i * HYD_QK + j], d);
		}
		/* Q8_K: scale is float, so the error is at most half a step */
		hyd__q8_k_from_float_ref(x, q0, n);
		hyd__q8_k_to_float(q0, y, n);
		const struct hyd_block_q8_k *bk = q0;
		for (int64_t i = 0; i < n / HYD_QK_K; i++) {
			for (int k = 0; k < 16; k++) {
				int s = 0;
				for (int j = 0; j < 16; j++)
					s += bk[i].qs[16 * k + j];
				ck_assert_int_eq(bk[i].bsums[k], s);
			}
			for (int j = 0; j < HYD_QK_K; j++)
				ck_assert(fabsf(x[i * HYD_QK_K + j] - y[i * HYD_QK_K + j]) <=
					  0.5001f * fabsf(bk[i].d));
		}
		for (int lv = HYD_SIMD_AVX2; lv <= HYD_SIMD_AVX512VNNI; lv++) {
			if (!cpu_has((enum hyd_simd)lv))
				continue;
			hyd__q8_0_from_float_ref(x, q0, n);
			hyd__quant_from_float_at(HYD_TYPE_Q8_0, (enum hyd_simd)lv)(x, q1, n);
			ck_assert_mem_eq(q0, q1, row_bytes(HYD_TYPE_Q8_0, n));
			hyd__q8_k_from_float_ref(x, q0, n);
			hyd__quant_from_float_at(HYD_TYPE_Q8_K, (enum hyd_simd)lv)(x, q1, n);
			ck_assert_mem_eq(q0, q1, row_bytes(HYD_TYPE_Q8_K, n));
		}
	}
	hyd_free(x);
	hyd_free(y);
	hyd_free(q0);
	hyd_free(q1);
}
END_TEST

/* Values on the Q8_0 grid of a power-of-two step come back exactly; zeros give d = 0. */
START_TEST(test_q8_0_exact_grid)
{
	enum { N = 4 * HYD_QK };
	float x[N], y[N];
	struct hyd_block_q8_0 b[N / HYD_QK];
	seed(5);
	for (int i = 0; i < N; i++)
		x[i] = (float)((int)(rnd() % 255) - 127) / 16.0f;
	x[3] = 127.0f / 16.0f;           /* block 0 max: d = 1/16 exactly */
	x[HYD_QK + 7] = -127.0f / 16.0f; /* block 1 max, negative */
	for (int j = 0; j < HYD_QK; j++)  /* block 2: all zero */
		x[2 * HYD_QK + j] = 0.0f;
	for (int j = 0; j < HYD_QK; j++)  /* block 3: scaled by 2^-10, max +127 */
		x[3 * HYD_QK + j] = ((int)(rnd() % 255) - 127) * 0x1p-10f;
	x[3 * HYD_QK] = 127 * 0x1p-10f;
	for (int lv = HYD_SIMD_SCALAR; lv <= HYD_SIMD_AVX512VNNI; lv++) {
		if (!cpu_has((enum hyd_simd)lv))
			continue;
		memset(b, 0x55, sizeof(b));
		hyd__quant_from_float_at(HYD_TYPE_Q8_0, (enum hyd_simd)lv)(x, b, N);
		hyd__q8_0_to_float(b, y, N);
		ck_assert_mem_eq(x, y, sizeof(x));
		ck_assert_uint_eq(b[0].d, hyd_fp32_to_fp16(1.0f / 16));
		ck_assert_int_eq(b[0].qs[3], 127);
		ck_assert_int_eq(b[1].qs[7], -127);
		ck_assert_uint_eq(b[2].d, 0);
		for (int j = 0; j < HYD_QK; j++)
			ck_assert_int_eq(b[2].qs[j], 0);
	}
}
END_TEST

/* The dequantizers on hand-built blocks whose values are known in closed form. */
START_TEST(test_to_float_known)
{
	/* Q4_K: sub-block j gets scale j+1 (j+33 for j >= 4 to use the high bits) and min 2j */
	struct hyd_block_q4_k k4;
	memset(&k4, 0, sizeof(k4));
	k4.d = hyd_fp32_to_fp16(0.5f);
	k4.dmin = hyd_fp32_to_fp16(0.25f);
	uint8_t ls[8], lm[8];
	for (int j = 0; j < 8; j++) {
		ls[j] = (uint8_t)(j < 4 ? j + 1 : j + 33);
		lm[j] = (uint8_t)(2 * j + (j >= 4 ? 40 : 0));
	}
	for (int j = 0; j < 4; j++) {
		k4.scales[j] = (uint8_t)(ls[j] | ((ls[j + 4] >> 4) << 6));
		k4.scales[j + 4] = (uint8_t)(lm[j] | ((lm[j + 4] >> 4) << 6));
		k4.scales[j + 8] = (uint8_t)((ls[j + 4] & 0xF) | ((lm[j + 4] & 0xF) << 4));
	}
	for (int i = 0; i < 128; i++)
		k4.qs[i] = (uint8_t)((i % 16) | ((15 - i % 16) << 4));
	uint8_t sc[8], m[8];
	hyd__scales_mins_k4(k4.scales, sc, m);
	for (int j = 0; j < 8; j++) {
		uint8_t s1, m1;
		hyd__scale_min_k4(j, k4.scales, &s1, &m1);
		ck_assert_uint_eq(s1, ls[j]);
		ck_assert_uint_eq(m1, lm[j]);
		ck_assert_uint_eq(sc[j], ls[j]);
		ck_assert_uint_eq(m[j], lm[j]);
	}
	float y[HYD_QK_K];
	hyd__q4_k_to_float(&k4, y, HYD_QK_K);
	for (int e = 0; e < HYD_QK_K; e++) {
		const int j = e / 32, l = e % 32;
		const int q = (j & 1) ? 15 - l % 16 : l % 16;
		ck_assert_float_eq(y[e], 0.5f * ls[j] * q - 0.25f * lm[j]);
	}

	/* Q6_K: q = element index mod 64, scale k - 8 for sub-block k */
	struct hyd_block_q6_k k6;
	memset(&k6, 0, sizeof(k6));
	k6.d = hyd_fp32_to_fp16(2.0f);
	for (int k = 0; k < 16; k++)
		k6.scales[k] = (int8_t)(k - 8);
	for (int e = 0; e < HYD_QK_K; e++) {
		const int g = e / 128, kk = (e % 128) / 32, l = e % 32, q = e % 64;
		uint8_t *ql = &k6.ql[64 * g + 32 * (kk & 1) + l];
		*ql |= (uint8_t)(kk < 2 ? (q & 0xF) : (q & 0xF) << 4);
		k6.qh[32 * g + l] |= (uint8_t)((q >> 4) << (2 * kk));
	}
	hyd__q6_k_to_float(&k6, y, HYD_QK_K);
	for (int e = 0; e < HYD_QK_K; e++)
		ck_assert_float_eq(y[e], 2.0f * (e / 16 - 8) * (e % 64 - 32));

	/* Q5_K: all fifth bits set, low nibbles 3: q = 19 everywhere, scale 1, min 0 */
	struct hyd_block_q5_k k5;
	memset(&k5, 0, sizeof(k5));
	k5.d = hyd_fp32_to_fp16(1.0f);
	for (int j = 0; j < 4; j++)
		k5.scales[j] = 1;
	for (int j = 0; j < 4; j++)
		k5.scales[j + 8] = 1;
	memset(k5.qh, 0xff, sizeof(k5.qh));
	memset(k5.qs, 0x33, sizeof(k5.qs));
	hyd__q5_k_to_float(&k5, y, HYD_QK_K);
	for (int e = 0; e < HYD_QK_K; e++)
		ck_assert_float_eq(y[e], 19.0f);

	/* Q4_0: nibble order, low nibbles are elements 0..15 */
	struct hyd_block_q4_0 k0;
	k0.d = hyd_fp32_to_fp16(-0.5f);
	for (int j = 0; j < 16; j++)
		k0.qs[j] = (uint8_t)(j | ((15 - j) << 4));
	hyd__q4_0_to_float(&k0, y, HYD_QK);
	for (int j = 0; j < 16; j++) {
		ck_assert_float_eq(y[j], -0.5f * (j - 8));
		ck_assert_float_eq(y[j + 16], -0.5f * (7 - j));
	}
}
END_TEST

/* ------------------------------------------------------------------ registration */

START_TEST(test_registration)
{
	static const struct {
		uint32_t t;
		hyd_vec_dot_fn ref;
		enum hyd_type act;
	} types[] = {
		{ HYD_TYPE_Q8_0, hyd__q8_0_dot_ref, HYD_TYPE_Q8_0 },
		{ HYD_TYPE_Q4_0, hyd__q4_0_dot_ref, HYD_TYPE_Q8_0 },
		{ HYD_TYPE_Q4_K, hyd__q4_k_dot_ref, HYD_TYPE_Q8_K },
		{ HYD_TYPE_Q5_K, hyd__q5_k_dot_ref, HYD_TYPE_Q8_K },
		{ HYD_TYPE_Q6_K, hyd__q6_k_dot_ref, HYD_TYPE_Q8_K },
	};
	const char *lvname = hyd_simd_level();
	enum hyd_simd table_level = !strcmp(lvname, "scalar") ? HYD_SIMD_SCALAR :
				    !strcmp(lvname, "avx2")   ? HYD_SIMD_AVX2 :
				    !strcmp(lvname, "avx512") ? HYD_SIMD_AVX512 :
								HYD_SIMD_AVX512VNNI;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		const struct hyd_type_traits *tr = hyd_type_traits(types[i].t);
		ck_assert(hyd_type_computable(types[i].t));
		ck_assert_ptr_eq(tr->vec_dot_ref, types[i].ref);
		ck_assert_int_eq(tr->vec_dot_type, types[i].act);
		ck_assert_ptr_nonnull(tr->from_float);
		ck_assert_ptr_eq(hyd__quant_vec_dot_at(types[i].t, HYD_SIMD_SCALAR), types[i].ref);
		/* the table's kernels: the best level up to the CPU's that has a four-row kernel,
		 * paired with that level's single-row kernel; the CPU's own level if none has */
		enum hyd_simd lv = table_level;
		while (lv > HYD_SIMD_SCALAR && !hyd__quant_vec_dot4_at(types[i].t, lv))
			lv = (enum hyd_simd)(lv - 1);
		if (!hyd__quant_vec_dot4_at(types[i].t, lv))
			lv = table_level;
		ck_assert_ptr_eq(tr->vec_dot, hyd__quant_vec_dot_at(types[i].t, lv));
		ck_assert_ptr_eq(tr->vec_dot4, hyd__quant_vec_dot4_at(types[i].t, lv));
		ck_assert_ptr_eq(tr->vec_dot4x2, hyd__quant_vec_dot4x2_at(types[i].t, lv));
		ck_assert_ptr_eq(tr->vec_dot4_run, hyd__quant_vec_dot4_run_at(types[i].t, lv));
	}
	ck_assert_ptr_eq(hyd__quant_from_float_at(HYD_TYPE_Q8_0, HYD_SIMD_SCALAR),
			 hyd__q8_0_from_float_ref);
	ck_assert_ptr_eq(hyd__quant_from_float_at(HYD_TYPE_Q8_K, HYD_SIMD_SCALAR),
			 hyd__q8_k_from_float_ref);
	ck_assert_ptr_eq(hyd_type_traits(HYD_TYPE_Q8_K)->to_float, hyd__q8_k_to_float);
#if defined(__x86_64__)
	ck_assert_ptr_eq(hyd__quant_vec_dot_at(HYD_TYPE_Q8_0, HYD_SIMD_AVX2), hyd__q8_0_dot_avx2);
	ck_assert_ptr_eq(hyd__quant_vec_dot_at(HYD_TYPE_Q6_K, HYD_SIMD_AVX2), hyd__q6_k_dot_avx2);
	ck_assert_ptr_eq(hyd__quant_vec_dot_at(HYD_TYPE_Q4_K, HYD_SIMD_AVX512), hyd__q4_k_dot_avx512);
	/* VNNI twins of the AVX2 kernels for Q8_0, Q4_0, Q4_K and Q6_K; none for Q5_K: the AVX-512
	 * one is used */
	ck_assert_ptr_eq(hyd__quant_vec_dot_at(HYD_TYPE_Q4_K, HYD_SIMD_AVX512VNNI),
			 hyd__q4_k_dot_avx512vnni);
	ck_assert_ptr_eq(hyd__quant_vec_dot_at(HYD_TYPE_Q6_K, HYD_SIMD_AVX512VNNI),
			 hyd__q6_k_dot_avx512vnni);
	ck_assert_ptr_eq(hyd__quant_vec_dot_at(HYD_TYPE_Q5_K, HYD_SIMD_AVX512VNNI),
			 hyd__q5_k_dot_avx512);
	ck_assert_ptr_eq(hyd__quant_vec_dot_at(HYD_TYPE_Q8_0, HYD_SIMD_AVX512VNNI),
			 hyd__q8_0_dot_avx512vnni);
	/* the weight quantizers have only the scalar version */
	ck_assert_ptr_eq(hyd__quant_from_float_at(HYD_TYPE_Q4_K, HYD_SIMD_AVX512VNNI),
			 hyd__q4_k_from_float_ref);
	ck_assert_ptr_eq(hyd__quant_from_float_at(HYD_TYPE_Q8_0, HYD_SIMD_AVX2),
			 hyd__q8_0_from_float_avx2);
#endif
	ck_assert_ptr_null(hyd__quant_vec_dot_at(HYD_TYPE_F32, HYD_SIMD_SCALAR));
	ck_assert_ptr_null(hyd__quant_vec_dot_at(HYD_TYPE_Q8_K, HYD_SIMD_AVX2));
	ck_assert_ptr_null(hyd__quant_vec_dot_at(HYD_TYPE_Q2_K, HYD_SIMD_AVX2));
#if defined(__x86_64__)
	/* a four-row kernel only where it matches the single-row one of its level */
	ck_assert_ptr_eq(hyd__quant_vec_dot4_at(HYD_TYPE_Q4_K, HYD_SIMD_AVX2), hyd__q4_k_dot4_avx2);
	ck_assert_ptr_null(hyd__quant_vec_dot4_at(HYD_TYPE_Q4_K, HYD_SIMD_AVX512));
	ck_assert_ptr_eq(hyd__quant_vec_dot4_at(HYD_TYPE_Q8_0, HYD_SIMD_AVX512VNNI), hyd__q8_0_dot4_avx512vnni);
	ck_assert_ptr_eq(hyd__quant_vec_dot4_at(HYD_TYPE_Q4_K, HYD_SIMD_AVX512VNNI), hyd__q4_k_dot4_avx512vnni);
	ck_assert_ptr_eq(hyd__quant_vec_dot4_at(HYD_TYPE_Q4_0, HYD_SIMD_AVX512VNNI), hyd__q4_0_dot4_avx512vnni);
	ck_assert_ptr_null(hyd__quant_vec_dot4_at(HYD_TYPE_Q5_K, HYD_SIMD_AVX512VNNI));
	/* and a two-activation-row kernel only beside a four-row one */
	ck_assert_ptr_eq(hyd__quant_vec_dot4x2_at(HYD_TYPE_Q4_K, HYD_SIMD_AVX2), hyd__q4_k_dot4x2_avx2);
	ck_assert_ptr_null(hyd__quant_vec_dot4x2_at(HYD_TYPE_Q4_K, HYD_SIMD_AVX512));
#endif
	ck_assert_ptr_null(hyd__quant_vec_dot4x2_at(HYD_TYPE_Q4_K, HYD_SIMD_SCALAR));
	ck_assert_ptr_null(hyd__quant_vec_dot4_at(HYD_TYPE_Q8_0, HYD_SIMD_SCALAR));
}
END_TEST

static Suite *quant_suite(void)
{
	Suite *s = suite_create("quant");
	TCase *tc = tcase_create("dot");
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_dot_levels, 0, N_WEIGHT_TYPES);
	tcase_add_loop_test(tc, test_dot_extremes, 0, N_WEIGHT_TYPES);
	tcase_add_loop_test(tc, test_dot4_same_bits, 0, N_WEIGHT_TYPES);
	tcase_add_loop_test(tc, test_dot4x2_same_bits, 0, N_WEIGHT_TYPES);
	tcase_add_loop_test(tc, test_dot4_run_same_bits, 0, N_WEIGHT_TYPES);
	tcase_add_loop_test(tc, test_matmul_rows_exact, 0, N_WEIGHT_TYPES);
	tcase_add_loop_test(tc, test_matmul_decode_streams, 0, N_WEIGHT_TYPES);
	suite_add_tcase(s, tc);
	tc = tcase_create("quantize");
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_round_trip, 0, N_RT_CASES);
	tcase_add_test(tc, test_act_quant_exact);
	tcase_add_test(tc, test_q8_0_exact_grid);
	tcase_add_test(tc, test_to_float_known);
	suite_add_tcase(s, tc);
	tc = tcase_create("registration");
	tcase_add_test(tc, test_registration);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(quant_suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
