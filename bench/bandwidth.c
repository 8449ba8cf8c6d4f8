/* Memory read bandwidth: the sum of a large buffer (1 GiB unless told otherwise) read by 1..N
 * threads, each summing its own contiguous part, median of repeats.  This is the number the
 * decode bound in docs/PERFORMANCE.md divides by: decode streams every weight once per token.
 * Besides wall-clock GB/s it prints GB/s over the readers' CPU time, which is what the pass
 * would take if no other process competed for the cores.  The buffer is in 2 MiB pages, as
 * hydd maps model weights (bench/pages.h).
 *
 *   bench/bandwidth [-s MiB] [-t 1,2] [-r repeats]
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/pages.h"
#include "bench/read_pass.h"

#define MAX_THREADS HYD_BENCH_MAX_READERS
#define MAX_REPEATS 101

static int cmp_double(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void usage(void)
{
	fprintf(stderr, "usage: bandwidth [-s MiB (1024)] [-t THREADS,... (1,2)] [-r REPEATS (7)]\n");
}

int main(int argc, char **argv)
{
	size_t mib = 1024;
	unsigned threads[MAX_THREADS] = { 1, 2 }, n_threads_list = 2, repeats = 7;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "-s") && v) {
			mib = strtoul(v, NULL, 10);
			i++;
		} else if (!strcmp(argv[i], "-r") && v) {
			repeats = (unsigned)strtoul(v, NULL, 10);
			i++;
		} else if (!strcmp(argv[i], "-t") && v) {
			n_threads_list = 0;
			for (char *s = (char *)v, *e; *s && n_threads_list < MAX_THREADS; s = *e ? e + 1 : e) {
				threads[n_threads_list] = (unsigned)strtoul(s, &e, 10);
				if (threads[n_threads_list] == 0 || threads[n_threads_list] > MAX_THREADS ||
				    (*e && *e != ',')) {
					usage();
					return 2;
				}
				n_threads_list++;
			}
			i++;
		} else {
			usage();
			return 2;
		}
	}
	if (mib == 0 || repeats == 0 || repeats > MAX_REPEATS) {
		usage();
		return 2;
	}
	const size_t bytes = mib << 20, words = bytes / sizeof(uint64_t);
	uint64_t *buf = hyd__bench_huge_alloc(bytes);
	if (!buf) {
		fprintf(stderr, "bandwidth: cannot allocate %zu MiB\n", mib);
		return 1;
	}
	/* touch every page (and give the sum something to add) before timing */
	for (size_t i = 0; i < words; i++)
		buf[i] = i;
	const uint64_t expect = (uint64_t)words * (words - 1) / 2;
	const double huge = hyd__bench_huge_share(buf, bytes);
	printf("buffer %zu MiB (%.0f %% in 2 MiB pages), %u repeats (median), GB = 1e9 bytes\n", mib,
	       huge < 0 ? 0.0 : 100 * huge, repeats);
	printf("| threads | read bandwidth (wall) | min .. max | by CPU time | min .. max |\n| --- | --- | --- | --- | --- |\n");
	for (unsigned k = 0; k < n_threads_list; k++) {
		double gbs[MAX_REPEATS], gbc[MAX_REPEATS], cpu;
		uint64_t sum;
		hyd__bench_read_pass(buf, words, threads[k], &sum, &cpu); /* warm-up */
		for (unsigned r = 0; r < repeats; r++) {
			const double dt = hyd__bench_read_pass(buf, words, threads[k], &sum, &cpu);
			if (sum != expect) {
				fprintf(stderr, "bandwidth: wrong sum %llu (expected %llu)\n", (unsigned long long)sum,
					(unsigned long long)expect);
				return 1;
			}
			gbs[r] = (double)bytes / dt / 1e9;
			gbc[r] = (double)bytes / cpu / 1e9;
		}
		qsort(gbs, repeats, sizeof(gbs[0]), cmp_double);
		qsort(gbc, repeats, sizeof(gbc[0]), cmp_double);
		printf("| %u | %.1f GB/s | %.1f .. %.1f | %.1f GB/s | %.1f .. %.1f |\n", threads[k], gbs[repeats / 2],
		       gbs[0], gbs[repeats - 1], gbc[repeats / 2], gbc[0], gbc[repeats - 1]);
	}
	hyd__bench_huge_free(buf, bytes);
	return 0;
}
