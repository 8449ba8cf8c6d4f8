/* The SSM plugin's per-element kernels on their own, one thread, for each table this CPU runs
 * (plain C, AVX2, AVX-512): the Mamba-1 state update, the Mamba-2 decay, the convolution step
 * and the activations, on one layer of mamba-130m's shape by default (1,536 channels, 16
 * states) with everything in L2, in nanoseconds per element:
 *
 *   bench/ssm_bench [-c CHANNELS (1536)] [-s D_STATE (16)] [-r REPEATS (7)]
 *
 * One "element" is one state value for the updates (channels x d_state per call) and one
 * channel for the rest.  bench_model shows what these cost in a decoded token; this one shows
 * where a kernel change lands.  Times are this thread's CPU time, the median of the repeats. */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_util.h"
#include "engine/alloc.h"
#include "plugins/ssm/ssm.h"

#define MAX_REPEATS 51

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct data {
	uint32_t nc, ds;
	float *h, *h_out, *a, *dt, *x, *bv, *c, *y, *w, *bias, *tail, *tail_out;
};

enum kernel { UPDATE, DECAY, CONV, SOFTPLUS, SILU, SILU_MUL, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {
	"Mamba-1 update (exp, state, dot)", "Mamba-2 decay (state, dot)", "conv step (d_conv 4)",
	"softplus", "SiLU", "y SiLU(z) (with a copy of y)",
};

static void run(const struct hyd__ssm_kern *k, enum kernel which, struct data *d)
{
	switch (which) {
	case UPDATE:
		k->update_dot(d->h_out, d->h, d->a, d->dt, d->x, d->bv, d->c, d->nc, d->ds, d->y, false);
		break;
	case DECAY:
		for (uint32_t ch = 0; ch < d->nc; ch++)
			d->y[ch] = k->decay_dot(d->h_out + (uint64_t)ch * d->ds, d->h + (uint64_t)ch * d->ds, 0.9f,
						d->x[ch], d->bv, d->c, d->ds, false);
		break;
	case CONV:
		k->conv_step(d->x, d->y, d->w, d->bias, d->tail, d->tail_out, 4, d->nc);
		break;
	case SOFTPLUS:
		k->softplus(d->y, d->x, d->bias, d->nc);
		break;
	case SILU:
		k->silu(d->y, d->x, d->nc);
		break;
	case SILU_MUL:
		/* y *= SiLU(z) in place: y is restored first, or repeated calls would drive it to
		 * zeros and infinities (the copy, ~0.05 ns per element, is in the time) */
		memcpy(d->y, d->bias, d->nc * sizeof(float));
		k->silu_mul(d->y, d->x, d->nc);
		break;
	default:
		break;
	}
}

/* ns per element: median of repeats, each as many calls as fill ~20 ms */
static double time_kernel(const struct hyd__ssm_kern *k, enum kernel which, struct data *d, int repeats)
{
	const double elements = which == UPDATE || which == DECAY ? (double)d->nc * d->ds : (double)d->nc;
	int calls = 1;
	for (;;) {
		const double t0 = cpu_s();
		for (int i = 0; i < calls; i++)
			run(k, which, d);
		if (cpu_s() - t0 > 0.005 || calls > (1 << 24))
			break;
		calls *= 2;
	}
	calls *= 4;
	double v[MAX_REPEATS];
	for (int r = 0; r < repeats; r++) {
		const double t0 = cpu_s();
		for (int i = 0; i < calls; i++)
			run(k, which, d);
		v[r] = (cpu_s() - t0) / calls / elements * 1e9;
	}
	return hyd__bench_median(v, repeats);
}

static float *vec(uint64_t n, float lo, float hi, uint64_t *seed)
{
	float *p = hyd_aligned_alloc(64, (n + 16) * sizeof(float));
	if (!p) {
		fprintf(stderr, "ssm_bench: out of memory\n");
		exit(1);
	}
	for (uint64_t i = 0; i < n + 16; i++)
		p[i] = lo + (hi - lo) * 0.5f * (hyd__bench_frand(seed) + 1.0f);
	return p;
}

int main(int argc, char **argv)
{
	long nc = 1536, ds = 16, repeats = 7;
	for (int i = 1; i < argc; i++) {
		long *dst = !strcmp(argv[i], "-c") ? &nc : !strcmp(argv[i], "-s") ? &ds : !strcmp(argv[i], "-r") ? &repeats : NULL;
		char *end = NULL;
		if (dst && i + 1 < argc)
			*dst = strtol(argv[++i], &end, 10);
		if (!dst || !end || *end || *dst < 1 || (dst == &repeats && *dst > MAX_REPEATS) || *dst > (1 << 20)) {
			fprintf(stderr, "usage: ssm_bench [-c CHANNELS (1536)] [-s D_STATE (16)] [-r REPEATS (7, at most %d)]\n",
				MAX_REPEATS);
			return 2;
		}
	}
	uint64_t seed = 7;
	const uint64_t n = (uint64_t)nc * (uint64_t)ds;
	struct data d = { .nc = (uint32_t)nc, .ds = (uint32_t)ds };
	d.h = vec(n, -2.0f, 2.0f, &seed);
	d.h_out = vec(n, 0.0f, 0.0f, &seed);
	d.a = vec(n, -16.0f, -1.0f, &seed); /* A = -exp(A_log), A_log from log(1) to log(16) */
	d.dt = vec((uint64_t)nc, 0.001f, 0.5f, &seed);
	d.x = vec((uint64_t)nc, -3.0f, 3.0f, &seed);
	d.bv = vec((uint64_t)ds, -1.0f, 1.0f, &seed);
	d.c = vec((uint64_t)ds, -1.0f, 1.0f, &seed);
	d.y = vec((uint64_t)nc, -1.0f, 1.0f, &seed);
	d.w = vec(4 * (uint64_t)nc, -0.5f, 0.5f, &seed);
	d.bias = vec((uint64_t)nc, -2.0f, 0.5f, &seed);
	d.tail = vec(3 * (uint64_t)nc, -1.0f, 1.0f, &seed);
	d.tail_out = vec(3 * (uint64_t)nc, 0.0f, 0.0f, &seed);

	const struct hyd__ssm_kern *tables[3] = { hyd__ssm_kern_at(false), hyd__ssm_kern_avx2(), hyd__ssm_kern_at(true) };
	int n_tables = 0;
	const struct hyd__ssm_kern *uniq[3];
	for (int t = 0; t < 3; t++) {
		bool seen = !tables[t];
		for (int u = 0; u < n_tables && !seen; u++)
			seen = uniq[u] == tables[t];
		if (!seen)
			uniq[n_tables++] = tables[t];
	}
	printf("%ld channels x %ld states, one thread; ns per element (a state value for the updates, a channel "
	       "otherwise), median of %ld, by thread CPU time\n",
	       nc, ds, repeats);
	printf("| kernel |");
	for (int t = 0; t < n_tables; t++)
		printf(" %s |", uniq[t]->name);
	printf("\n| --- |");
	for (int t = 0; t < n_tables; t++)
		printf(" --- |");
	printf("\n");
	for (int kk = 0; kk < N_KERNELS; kk++) {
		printf("| %s |", kernel_names[kk]);
		for (int t = 0; t < n_tables; t++)
			printf(" %.3f |", time_kernel(uniq[t], (enum kernel)kk, &d, (int)repeats));
		printf("\n");
		fflush(stdout);
	}
	float *all[] = { d.h, d.h_out, d.a, d.dt, d.x, d.bv, d.c, d.y, d.w, d.bias, d.tail, d.tail_out };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		hyd_free(all[i]);
	return 0;
}
