/* The memory read pass that bench/bandwidth times and bench_model --bw measure repeats
 * beside each decode run: n threads each sum their own contiguous part of a buffer. */
#ifndef HYD_BENCH_READ_PASS_H
#define HYD_BENCH_READ_PASS_H

#include <stddef.h>
#include <stdint.h>

#define HYD_BENCH_MAX_READERS 64

/* One timed pass of n_threads (1..HYD_BENCH_MAX_READERS) readers over words uint64 of buf
 * (64-byte aligned): returns the wall seconds, the sum of all words in ret_sum and in
 * ret_cpu the longest CPU time of a reader, i.e. the pass's duration had no other process
 * taken the cores. */
double hyd__bench_read_pass(const uint64_t *buf, size_t words, unsigned n_threads, uint64_t *ret_sum,
			    double *ret_cpu);

#endif
