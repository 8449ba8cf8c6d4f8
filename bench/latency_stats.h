/* Latency samples and their percentiles, shared by bench/ipc_latency.c and bench/unix_baseline.c
 * so both print the same table. */
#ifndef HYD_BENCH_LATENCY_STATS_H
#define HYD_BENCH_LATENCY_STATS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct lat {
	uint64_t *ns;
	size_t n, cap;
};

static inline uint64_t lat_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int lat_add(struct lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		uint64_t *n = realloc(l->ns, cap * sizeof(*n));
		if (!n)
			return -1;
		l->ns = n;
		l->cap = cap;
	}
	l->ns[l->n++] = ns;
	return 0;
}

static inline int lat_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* nearest-rank percentile, in µs */
static inline double lat_pct(struct lat *l, double p)
{
	if (!l->n)
		return 0;
	qsort(l->ns, l->n, sizeof(*l->ns), lat_cmp);
	size_t k = (size_t)(p / 100.0 * (double)l->n + 0.5);
	if (k > 0)
		k--;
	if (k >= l->n)
		k = l->n - 1;
	return (double)l->ns[k] / 1000.0;
}

static inline void lat_header(void)
{
	printf("%-40s %8s %10s %10s %10s %12s\n", "measurement", "samples", "p50 us", "p99 us", "max us", "rate /s");
}

/* rate: events per second over the whole measurement, 0 to leave it out */
static inline void lat_row(const char *what, struct lat *l, double rate)
{
	double p50 = lat_pct(l, 50), p99 = lat_pct(l, 99), mx = lat_pct(l, 100);
	if (rate > 0)
		printf("%-40s %8zu %10.1f %10.1f %10.1f %12.0f\n", what, l->n, p50, p99, mx, rate);
	else
		printf("%-40s %8zu %10.1f %10.1f %10.1f %12s\n", what, l->n, p50, p99, mx, "-");
}

static inline void lat_free(struct lat *l)
{
	free(l->ns);
	l->ns = NULL;
	l->n = l->cap = 0;
}

#endif
