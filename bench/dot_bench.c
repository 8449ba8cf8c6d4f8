/* Every dot-product kernel of the quantized types on its own, one thread: each SIMD level
 * this CPU runs, single-row and four-row (given four consecutive rows, as prefill does, or one
 * row from each quarter of the matrix, as decode does), fed from L2 and from DRAM, in GB/s of
 * weights:
 *
 *   bench/dot_bench [-k row_length] [-r repeats] [-m DRAM_MiB]
 *
 * matmul_bench measures what hyd_matmul does with the kernels the type table picked; this
 * one shows why the table picks them (engine/quant.c pairs the four-row kernel of the best
 * level that has one with that level's single-row kernel).  Times are this thread's CPU
 * time. */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_util.h"
#include "engine/alloc.h"
#include "engine/quant.h"
#include "engine/types.h"

#define MAX_REPEATS 51

static const char *const level_names[] = { "scalar", "avx2", "avx512", "avx512vnni" };

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct rows {
	char *w;
	int64_t row_bytes, n_rows;
};

static int make_rows(uint32_t t, int64_t n, int64_t bytes, struct rows *ret)
{
	const int64_t rb = hyd_row_size(t, n);
	int64_t n_rows = bytes / rb & ~(int64_t)3;
	if (n_rows < 4)
		n_rows = 4;
	char *w = hyd__bench_random_rows(t, n, n_rows, 1.0f, 42 + t);
	if (!w)
		return -1;
	*ret = (struct rows){ .w = w, .row_bytes = rb, .n_rows = n_rows };
	return 0;
}

/* How the four-row kernel is given its rows: four consecutive rows per call (prefill's
 * tiles), or one row from each quarter of the matrix per call (decode, engine/matmul.c). */
enum layout { SINGLE, CONSECUTIVE, STREAMS };

/* GB/s of weights: median of repeats, each pass over all rows `passes` times. */
static double speed(hyd_vec_dot_fn dot, hyd_vec_dot4_fn dot4, enum layout layout, int64_t n,
		    const struct rows *m, const void *x, int passes, int repeats)
{
	static float y[4];
	double v[MAX_REPEATS];
	volatile float sink = 0;
	const int64_t quarter = m->n_rows / 4;
	for (int rep = 0; rep <= repeats; rep++) { /* the first pass warms up */
		const double t0 = cpu_s();
		for (int p = 0; p < passes; p++)
			for (int64_t r = 0; r < m->n_rows; r += 4) {
				const char *w = m->w + r * m->row_bytes;
				if (layout == STREAMS) {
					dot4(n, m->w + r / 4 * m->row_bytes, quarter * m->row_bytes, x, y);
				} else if (layout == CONSECUTIVE) {
					dot4(n, w, m->row_bytes, x, y);
				} else {
					for (int k = 0; k < 4; k++)
						y[k] = dot(n, w + k * m->row_bytes, x);
				}
				sink += y[0];
			}
		if (rep)
			v[rep - 1] = (double)(m->row_bytes * m->n_rows) * passes / (cpu_s() - t0) / 1e9;
	}
	(void)sink;
	return hyd__bench_median(v, repeats);
}

int main(int argc, char **argv)
{
	int64_t n = 768, dram_mib = 200;
	int repeats = 5;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-k"))
			n = atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "-r"))
			repeats = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "-m"))
			dram_mib = atoll(argv[i + 1]);
	}
	if (argc % 2 == 0 || n < 256 || n > 65536 || n % 256 || repeats < 1 || repeats > MAX_REPEATS ||
	    dram_mib < 64 || dram_mib > 16384) {
		fprintf(stderr, "usage: dot_bench [-k ROW_LENGTH (768, a multiple of 256)] [-r REPEATS (5)] "
				"[-m DRAM_MiB (200, at least 64)]\n");
		return 2;
	}
	static const uint32_t types[] = { HYD_TYPE_Q8_0, HYD_TYPE_Q4_0, HYD_TYPE_Q4_K, HYD_TYPE_Q5_K, HYD_TYPE_Q6_K };
	/* the CPU's level, as the type table sees it ($HYD_SIMD caps it) */
	const char *top = hyd_simd_level();
	int max_level = 0;
	for (int l = 0; l < 4; l++)
		if (!strcmp(top, level_names[l]))
			max_level = l;
	printf("cpu level %s, 1 thread, rows of %lld; GB/s of weights, median of %d, by thread CPU time\n", top,
	       (long long)n, repeats);
	printf("| type | kernel | from L2 (96 KiB) | from DRAM (%lld MiB) | in the type table |\n", (long long)dram_mib);
	printf("| --- | --- | --- | --- | --- |\n");
	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
		const uint32_t t = types[k];
		const struct hyd_type_traits *tr = hyd_type_traits(t), *at = hyd_type_traits(tr->vec_dot_type);
		struct rows l2, dram;
		void *x = hyd_aligned_alloc(64, (size_t)hyd_row_size(tr->vec_dot_type, n));
		float *xf = hyd_malloc((size_t)n * sizeof(float));
		if (!x || !xf || make_rows(t, n, 96 << 10, &l2) || make_rows(t, n, dram_mib << 20, &dram))
			return 1;
		uint64_t s = 7;
		for (int64_t i = 0; i < n; i++)
			xf[i] = hyd__bench_frand(&s);
		at->from_float(xf, x, n);
		const int l2_passes = (int)(2e8 / (double)(l2.row_bytes * l2.n_rows)) + 1;
		for (int l = 1; l <= max_level; l++) {
			const hyd_vec_dot_fn dot = hyd__quant_vec_dot_at(t, (enum hyd_simd)l);
			const hyd_vec_dot4_fn dot4 = hyd__quant_vec_dot4_at(t, (enum hyd_simd)l);
			/* a level without its own kernel falls back to a lower one: skip the repeat */
			if (dot == hyd__quant_vec_dot_at(t, (enum hyd_simd)(l - 1)) && l > 1)
				continue;
			static const char *const layout_names[] = { "single-row", "four-row, consecutive rows",
								    "four-row, four streams" };
			for (int lay = SINGLE; lay <= (dot4 ? STREAMS : SINGLE); lay++) {
				const bool four = lay != SINGLE;
				printf("| %s | %s %s | %.1f | %.1f | %s |\n", hyd_type_name(t), level_names[l],
				       layout_names[lay], speed(dot, dot4, (enum layout)lay, n, &l2, x, l2_passes, repeats),
				       speed(dot, dot4, (enum layout)lay, n, &dram, x, 1, repeats),
				       (four ? tr->vec_dot4 == dot4 : tr->vec_dot == dot && !tr->vec_dot4) ?
					       (lay == STREAMS ? "yes (decode)" : lay == CONSECUTIVE ? "yes (prefill)" : "yes") :
				       (!four && tr->vec_dot == dot) ? "(tails)" : "");
				fflush(stdout);
			}
		}
		hyd_free(l2.w);
		hyd_free(dram.w);
		hyd_free(x);
		hyd_free(xf);
	}
	return 0;
}
