/* Memory read pass for the benchmarks (see read_pass.h). */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "bench/read_pass.h"

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
double hyd__bench_read_pass(const uint64_t *buf, size_t words, unsigned n_threads, uint64_t *ret_sum, double *ret_cpu)
{
	struct part parts[HYD_BENCH_MAX_READERS];
	pthread_t tids[HYD_BENCH_MAX_READERS];
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

