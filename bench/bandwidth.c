/* Memory read bandwidth: the sum of a large buffer (1 GiB unless told otherwise) read by 1..N
 * threads, each summing its own contiguous part, median of repeats.  This is the number the
 * decode bound in docs/PERFORMANCE.md divides by: decode streams every weight once per token.
 * Besides wall-clock GB/s it prints GB/s over the readers' CPU time, which is what the pass
 * would take if no other process competed for the cores.
 *
 *   bench/bandwidth [-s MiB] [-t 1,2] [-r repeats]
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "engine/alloc.h"

#define MAX_THREADS 64
#define MAX_REPEATS 101

struct part {
	const uint64_t *p;
	size_t n; /* uint64 words, a multiple of 16 */
	pthread_barrier_t *start;
	uint64_t sum;
	double cpu_s; /* this thread's CPU time for its part */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t sum_plain(const uint64_t *p, size_t n)
{
	uint64_t a[8] = { 0 };
	for (size_t i = 0; i < n; i += 8)
		for (int k = 0; k < 8; k++)
			a[k] += p[i + k];
	return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

#if defined(__x86_64__)
/* Four independent 256-bit accumulators keep enough loads in flight to reach DRAM speed. */
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, size_t n)
{
	__m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
	for (size_t i = 0; i < n; i += 16) {
		a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
		a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 4)));
		a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 8)));
		a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 12)));
	}
	a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
	uint64_t v[4];
	_mm256_storeu_si256((__m256i *)v, a0);
	return v[0] + v[1] + v[2] + v[3];
}
#endif

static uint64_t sum_words(const uint64_t *p, size_t n)
{
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx2"))
		return sum_avx2(p, n);
#endif
	return sum_plain(p, n);
}

static void *worker(void *arg)
{
	struct part *pt = arg;
	pthread_barrier_wait(pt->start);
	const double c0 = thread_cpu_s();
	pt->sum = sum_words(pt->p, pt->n);
	pt->cpu_s = thread_cpu_s() - c0;
	return NULL;
}

/* One timed pass of n_threads readers over the buffer; returns wall seconds, and in ret_cpu
 * the longest CPU time of a reader: the pass's duration had no other process taken the cores
 * (the machine is shared; this separates CPU contention from memory speed). */
static double one_pass(const uint64_t *buf, size_t words, unsigned n_threads, uint64_t *ret_sum, double *ret_cpu)
{
	struct part parts[MAX_THREADS];
	pthread_t tids[MAX_THREADS];
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, n_threads + 1);
	const size_t per = (words / n_threads) & ~(size_t)15;
	for (unsigned t = 0; t < n_threads; t++) {
		parts[t] = (struct part){ .p = buf + t * per, .n = t + 1 == n_threads ? words - t * per : per,
					  .start = &start };
		pthread_create(&tids[t], NULL, worker, &parts[t]);
	}
	pthread_barrier_wait(&start);
	const double t0 = now_s();
	uint64_t sum = 0;
	double cpu = 0;
	for (unsigned t = 0; t < n_threads; t++) {
		pthread_join(tids[t], NULL);
		sum += parts[t].sum;
		if (parts[t].cpu_s > cpu)
			cpu = parts[t].cpu_s;
	}
	const double dt = now_s() - t0;
	pthread_barrier_destroy(&start);
	*ret_sum = sum;
	*ret_cpu = cpu;
	return dt;
}

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
	uint64_t *buf = hyd_aligned_alloc(64, bytes);
	if (!buf) {
		fprintf(stderr, "bandwidth: cannot allocate %zu MiB\n", mib);
		return 1;
	}
	/* touch every page (and give the sum something to add) before timing */
	for (size_t i = 0; i < words; i++)
		buf[i] = i;
	const uint64_t expect = (uint64_t)words * (words - 1) / 2;
	printf("buffer %zu MiB, %u repeats (median), GB = 1e9 bytes\n", mib, repeats);
	printf("| threads | read bandwidth (wall) | min .. max | by CPU time | min .. max |\n| --- | --- | --- | --- | --- |\n");
	for (unsigned k = 0; k < n_threads_list; k++) {
		double gbs[MAX_REPEATS], gbc[MAX_REPEATS], cpu;
		uint64_t sum;
		one_pass(buf, words, threads[k], &sum, &cpu); /* warm-up */
		for (unsigned r = 0; r < repeats; r++) {
			const double dt = one_pass(buf, words, threads[k], &sum, &cpu);
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
	hyd_free(buf);
	return 0;
}
