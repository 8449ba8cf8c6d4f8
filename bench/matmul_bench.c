/* hyd_matmul speed per weight type, one thread, separating the kernel from memory:
 *
 *   bench/matmul_bench [-r repeats] [-p rows] [-k row_length]
 *
 * For each type: decode (one activation row) over a weight matrix that stays in L2 (the
 * kernel's own speed) and over one of ~256 MB streamed from DRAM (what decode sees), both as
 * GB/s of weight bytes; and prefill (-p rows, default 128) as GFLOP/s.  If the cache-resident
 * number is not well above the machine's DRAM bandwidth, decode is bound by the kernel, not
 * by memory.  Times are this thread's CPU time (the machine is shared: wall time would count
 * other processes' turns on the core). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_util.h"
#include "engine/alloc.h"
#include "engine/kernels.h"
#include "engine/types.h"
#include "hyd/tensor.h"

#define MAX_REPEATS 51

/* A weight tensor of n_out rows of n_in in type t, random values. */
static int make_weights(uint32_t t, int64_t n_in, int64_t n_out, struct hyd_tensor *w)
{
	const int64_t row = hyd_row_size(t, n_in);
	char *data = row < 0 ? NULL : hyd__bench_random_rows(t, n_in, n_out, 0.05f, 1234 + t);
	if (!data)
		return -1;
	*w = (struct hyd_tensor){ .name = "w", .type = t, .n_dims = 2, .ne = { n_in, n_out, 1, 1 },
				  .data = data, .nbytes = (uint64_t)(row * n_out) };
	return 0;
}

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Median CPU seconds of one hyd_matmul call (n_rows activation rows). */
static double time_mm(const struct hyd_tensor *w, const float *x, float *y, int64_t n_rows, int repeats, int inner)
{
	double v[MAX_REPEATS];
	hyd_matmul(NULL, w, x, w->ne[0], y, w->ne[1], n_rows); /* warm-up */
	for (int r = 0; r < repeats; r++) {
		const double t0 = cpu_s();
		for (int i = 0; i < inner; i++)
			hyd_matmul(NULL, w, x, w->ne[0], y, w->ne[1], n_rows);
		v[r] = (cpu_s() - t0) / inner;
	}
	return hyd__bench_median(v, repeats);
}

int main(int argc, char **argv)
{
	int repeats = 5;
	int64_t pp = 128, n_in = 2048;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-r"))
			repeats = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "-p"))
			pp = atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "-k"))
			n_in = atoll(argv[i + 1]);
	}
	if (repeats < 1 || repeats > MAX_REPEATS || pp < 1 || pp > 4096 || n_in < 256 ||
	    n_in > 65536 || n_in % 256 || argc % 2 == 0) {
		fprintf(stderr, "usage: matmul_bench [-r REPEATS (5)] [-p PREFILL_ROWS (128)] "
				"[-k ROW_LENGTH (2048, a multiple of 256)]\n");
		return 2;
	}
	static const uint32_t types[] = { HYD_TYPE_F32, HYD_TYPE_F16, HYD_TYPE_Q8_0, HYD_TYPE_Q4_0,
					  HYD_TYPE_Q4_K, HYD_TYPE_Q5_K, HYD_TYPE_Q6_K };
	/* the cache-resident matrix: 256 KiB of weights (half this core's L2), at least 16 rows */
	const int64_t small_bytes = 256 << 10, n_big_bytes = 256ll << 20;
	const int64_t max_small = small_bytes / hyd_row_size(HYD_TYPE_Q4_0, n_in) + 16;
	float *x = hyd_aligned_alloc(64, (size_t)(pp * n_in) * sizeof(float));
	/* outputs: the most rows any type has in 256 MB (rows of 128+ bytes), or a prefill's */
	float *y = hyd_aligned_alloc(64, (size_t)(n_big_bytes / 128 + pp * max_small) * sizeof(float));
	if (!x || !y)
		return 1;
	uint64_t s = 99;
	for (int64_t i = 0; i < pp * n_in; i++)
		x[i] = hyd__bench_frand(&s);
	printf("simd %s, 1 thread, rows of %lld; decode = 1 activation row, prefill = %lld rows; median of %d, by thread CPU time\n",
	       hyd_simd_level(), (long long)n_in, (long long)pp, repeats);
	printf("| type | decode, cache-resident (256 KiB) | decode, from DRAM (256 MB) | prefill %lld rows, cache-resident weights |\n",
	       (long long)pp);
	printf("| --- | --- | --- | --- |\n");
	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
		const uint32_t t = types[k];
		if (!hyd_type_computable(t))
			continue;
		struct hyd_tensor ws, wb;
		int64_t n_small = small_bytes / hyd_row_size(t, n_in);
		if (n_small < 16)
			n_small = 16;
		const int64_t n_big = n_big_bytes / hyd_row_size(t, n_in);
		if (make_weights(t, n_in, n_small, &ws) || make_weights(t, n_in, n_big, &wb))
			return 1;
		const double t_small = time_mm(&ws, x, y, 1, repeats, 100);
		const double t_big = time_mm(&wb, x, y, 1, repeats, 1);
		const double t_pp = time_mm(&ws, x, y, pp, repeats, 2);
		printf("| %s | %.1f GB/s | %.1f GB/s | %.1f GFLOP/s |\n", hyd_type_name(t),
		       (double)ws.nbytes / t_small / 1e9, (double)wb.nbytes / t_big / 1e9,
		       2.0 * (double)n_in * (double)n_small * (double)pp / t_pp / 1e9);
		fflush(stdout);
		hyd_free((void *)ws.data);
		hyd_free((void *)wb.data);
	}
	hyd_free(x);
	hyd_free(y);
	return 0;
}
