/* The tests' deterministic random numbers: xorshift64* from a fixed seed, so a failure
 * reproduces run after run.  Each test program has its own state. */
#ifndef HYD_TESTS_TEST_RAND_H
#define HYD_TESTS_TEST_RAND_H

#include <stdint.h>

static uint64_t test_rng_state = 0x9e3779b97f4a7c15ull;

/* uniform in [lo, hi) */
static inline float uniform(float lo, float hi)
{
	test_rng_state ^= test_rng_state >> 12;
	test_rng_state ^= test_rng_state << 25;
	test_rng_state ^= test_rng_state >> 27;
	const uint64_t r = test_rng_state * 0x2545F4914F6CDD1DULL;
	return lo + (hi - lo) * (float)((r >> 40) * 0x1p-24);
}

#endif
