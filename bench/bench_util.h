/* Small helpers shared by the benchmark programs. */
#ifndef HYD_BENCH_UTIL_H
#define HYD_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct hyd_model;

double hyd__bench_now(void); /* monotonic seconds */
/* Parses "1,2,4" into at most max positive numbers; returns the count, or -EINVAL. */
int hyd__bench_parse_list(const char *s, double *out, int max);
/* Uniform pseudo-random float in [-1, 1) from a 64-bit LCG state (deterministic data). */
float hyd__bench_frand(uint64_t *state);
/* n_rows rows of n_in values of type t (uniform in [-scale, scale), the same for the same
 * seed), converted by the type's from_float, 64-byte aligned; free with hyd_free.  NULL when
 * out of memory or t has no from_float. */
char *hyd__bench_random_rows(uint32_t t, int64_t n_in, int64_t n_rows, float scale, uint64_t seed);
/* Median of n values (sorts them in place). */
double hyd__bench_median(double *v, int n);
/* Bytes of weights one decoded token reads: every tensor once, except an untied token
 * embedding, of which only one row is read. */
uint64_t hyd__bench_weight_bytes(const struct hyd_model *m);
/* The address range the model's tensor data spans (ret_bytes 0 when it has none). */
void hyd__bench_weight_span(const struct hyd_model *m, const void **ret_p, size_t *ret_bytes);

#endif
