/* Helpers shared by the benchmark programs (see bench_util.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "bench/bench_util.h"
#include "daemon/gguf.h"
#include "engine/alloc.h"
#include "daemon/model.h"
#include "engine/types.h"

double hyd__bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int hyd__bench_parse_list(const char *s, double *out, int max)
{
	int n = 0;
	while (*s) {
		char *e;
		const double v = strtod(s, &e);
		if (e == s || v <= 0 || n == max || (*e && *e != ','))
			return -EINVAL;
		out[n++] = v;
		s = *e ? e + 1 : e;
	}
	return n ? n : -EINVAL;
}

char *hyd__bench_random_rows(uint32_t t, int64_t n_in, int64_t n_rows, float scale, uint64_t seed)
{
	const struct hyd_type_traits *tr = hyd_type_traits(t);
	const int64_t rb = hyd_row_size(t, n_in);
	if (!tr || !tr->from_float || rb <= 0)
		return NULL;
	char *w = hyd_aligned_alloc(64, (size_t)(rb * n_rows));
	/* large sets of rows stand for weights, which hydd maps with 2 MiB pages: ask for them
	 * before the first write faults the pages in (bench/pages.h) */
	const uintptr_t huge = (uintptr_t)2 << 20, a = ((uintptr_t)w + huge - 1) & ~(huge - 1);
	if (w && a + huge <= (uintptr_t)w + (uintptr_t)(rb * n_rows))
		(void)madvise((void *)a, ((uintptr_t)w + (uintptr_t)(rb * n_rows) - a) & ~(huge - 1), MADV_HUGEPAGE);
	float *tmp = hyd_malloc((size_t)n_in * sizeof(float));
	if (!w || !tmp) {
		hyd_free(w);
		hyd_free(tmp);
		return NULL;
	}
	for (int64_t r = 0; r < n_rows; r++) {
		for (int64_t i = 0; i < n_in; i++)
			tmp[i] = scale * hyd__bench_frand(&seed);
		tr->from_float(tmp, w + r * rb, n_in);
	}
	hyd_free(tmp);
	return w;
}

static int cmp_double(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double hyd__bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

uint64_t hyd__bench_weight_bytes(const struct hyd_model *m)
{
	const struct hyd_gguf *g = hyd_model_gguf(m);
	const bool tied = !hyd_gguf_find_tensor(g, "output.weight");
	uint64_t total = 0;
	for (uint64_t i = 0; i < hyd_gguf_n_tensors(g); i++) {
		const struct hyd_tensor *t = hyd_gguf_tensor(g, i);
		if (!tied && !strcmp(t->name, "token_embd.weight"))
			total += (uint64_t)hyd_row_size(t->type, t->ne[0]);
		else
			total += t->nbytes;
	}
	return total;
}

void hyd__bench_weight_span(const struct hyd_model *m, const void **ret_p, size_t *ret_bytes)
{
	const struct hyd_gguf *g = hyd_model_gguf(m);
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (uint64_t i = 0; i < hyd_gguf_n_tensors(g); i++) {
		const struct hyd_tensor *t = hyd_gguf_tensor(g, i);
		const uintptr_t a = (uintptr_t)t->data;
		if (!t->data || !t->nbytes)
			continue;
		lo = a < lo ? a : lo;
		hi = a + t->nbytes > hi ? a + t->nbytes : hi;
	}
	*ret_p = hi ? (const void *)lo : NULL;
	*ret_bytes = hi ? (size_t)(hi - lo) : 0;
}

float hyd__bench_frand(uint64_t *state)
{
	*state = *state * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((int64_t)(*state >> 33) - (1ll << 30)) / (float)(1ll << 30);
}
