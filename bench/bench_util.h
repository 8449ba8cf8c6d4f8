/* Small helpers shared by the benchmark programs. */
#ifndef HYD_BENCH_UTIL_H
#define HYD_BENCH_UTIL_H

#include <stdint.h>

struct hyd_model;

double hyd__bench_now(void); /* monotonic seconds */
/* Parses "1,2,4" into at most max positive numbers; returns the count, or -EINVAL. */
int hyd__bench_parse_list(const char *s, double *out, int max);
/* Uniform pseudo-random float in [-1, 1) from a 64-bit LCG state (deterministic data). */
float hyd__bench_frand(uint64_t *state);
/* Median of n values (sorts them in place). */
double hyd__bench_median(double *v, int n);
/* Bytes of weights one decoded token reads: every tensor once, except an untied token
 * embedding, of which only one row is read. */
uint64_t hyd__bench_weight_bytes(const struct hyd_model *m);

#endif
