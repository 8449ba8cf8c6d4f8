/* Prefill and decode speed of a model, like llama-bench's pp/tg tests:
 *
 *   bench/bench_model -m FILE[,FILE...] [-t 1,2] [-p 512] [-n 128] [-r 3] [--bw 33,60 | --bw measure]
 *                     [--state in-place | --state two-copies]
 *
 * pp: a fresh session is fed -p tokens as one chunk; tg: a fresh session is fed -n tokens one
 * at a time.  Each is run once to warm up, then -r times; the table shows the median tokens/s
 * (and the range).  Decode streams every weight once per token, so with the machine's read
 * bandwidth for each thread count (--bw, GB/s, from bench/bandwidth) it also prints the bound
 * bandwidth / weight bytes per token and the percentage of it reached.  --bw measure times
 * bench/bandwidth's read pass right before and after each timed decode run instead, with as
 * many threads, each repeated for as long as the decode run lasts, and takes the bound from
 * those reads (see struct bw_probe); its buffer is in 2 MiB pages, as hydd maps weights.
 * The table also shows how much of the weights the kernel really mapped with 2 MiB pages: a
 * model file the page cache holds in small pages (one written moments ago) decodes a few per
 * cent slower (bench/pages.h).
 *
 * --state: how SSM layers keep their state from step to step.  in-place (the default) is what
 * `hyd run` does: a process-private sequence rewrites its one current copy.  two-copies is what
 * hydd's sessions do so that a crash mid-step leaves the committed copy whole: each step reads
 * one copy and writes the other (include/hyd/plugin.h, HYD_SEQ_STATE_IN_PLACE).
 *
 * Every run checks that the last logits are finite (fails with EDOM otherwise).
 * Plugins come from $HYD_PLUGIN_PATH (in a build tree: plugins/.libs). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_util.h"
#include "bench/pages.h"
#include "bench/read_pass.h"
#include "daemon/local_seq.h"
#include "daemon/model.h"
#include "engine/alloc.h"
#include "engine/types.h"

#define MAX_LIST 16
#define MAX_REPEATS 99
#define BW_PASS_MIB 1024 /* bench/bandwidth's default buffer */

static bool two_copies; /* --state two-copies */

struct result {
	double med, lo, hi;
	double cpu; /* median process CPU time / wall time: below 100 % per thread, other load took the cores */
	double gbps;      /* --bw measure: median of the reads around the timed runs, each as long as a run */
	double gbps_pass; /* the same for the first 1 GiB pass of each read alone */
};

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

/* One measurement: tokens/s of feeding n tokens to a fresh session in chunks of `chunk`. */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run_once(struct hyd_model *m, const int32_t *toks, uint32_t n, uint32_t chunk, float *logits,
		    double *ret_tps, double *ret_cpu)
{
	struct hyd_local_seq *s;
	int r = hyd_local_seq_new(m, &s);
	if (r)
		return r;
	hyd_local_seq_set_in_place(s, !two_copies);
	/* allocate the pages up front: what is timed is compute, not page faults of the KV cache */
	if ((r = hyd_local_seq_reserve(s, n)))
		goto out;
	const double t0 = hyd__bench_now(), c0 = cpu_now();
	for (uint32_t i = 0; i < n && !r; i += chunk)
		r = hyd_local_seq_feed(m, s, toks + i, n - i < chunk ? n - i : chunk, logits, false);
	const double dt = hyd__bench_now() - t0, dc = cpu_now() - c0;
	/* random weights must still give finite logits: a NaN would mean a broken model or kernel */
	for (uint32_t i = 0; !r && i < hyd_model_n_vocab(m); i++)
		if (!isfinite(logits[i]))
			r = -EDOM;
	if (!r) {
		*ret_tps = (double)n / dt;
		*ret_cpu = dc / dt;
	}
out:
	hyd_local_seq_free(s);
	return r;
}

/* With --bw measure, each timed decode run gets a read of the same number of threads right
 * before and one right after it, and the bound uses the median of all those reads: this
 * VM's bandwidth moves from minute to minute, so a bound from another minute would move the
 * percentage with it.  Each read repeats the 1 GiB pass for as long as the decode run
 * lasted (the warm-up run, for the first): on two threads this VM's bandwidth also jumps
 * within a second, between ~31-34 GB/s and bursts of 60-99 GB/s lasting from one 256 MiB
 * pass (a few ms) to ~0.2 s (docs/PERFORMANCE.md), so one 1 GiB pass (17-35 ms) samples an
 * instant the decode run does not live in, and the bound came out of a burst or not by
 * chance.  The first pass of each read is kept apart (gbps_pass) to show the difference. */
struct bw_probe {
	const uint64_t *buf; /* NULL: bandwidth given on the command line */
	size_t words;
	unsigned n_threads;
	uint64_t wbytes; /* weight bytes read per token */
};

/* GB/s of read passes repeated for at least `seconds` (at least one pass); the first pass's
 * GB/s in ret_first */
static double read_gbps(const struct bw_probe *bw, double seconds, double *ret_first)
{
	const double bytes = (double)(bw->words * sizeof(uint64_t));
	double total = 0, n = 0;
	do {
		uint64_t sum;
		double reader_cpu;
		const double dt = hyd__bench_read_pass(bw->buf, bw->words, bw->n_threads, &sum, &reader_cpu);
		if (n == 0)
			*ret_first = bytes / dt / 1e9;
		total += dt;
		n++;
	} while (total < seconds);
	return n * bytes / total / 1e9;
}

static int measure(struct hyd_model *m, const int32_t *toks, uint32_t n, uint32_t chunk, float *logits,
		   int repeats, const struct bw_probe *bw, struct result *ret)
{
	double v[MAX_REPEATS], c[MAX_REPEATS], g[2 * MAX_REPEATS], f[2 * MAX_REPEATS], tps, cpu;
	int r = run_once(m, toks, n, chunk, logits, &tps, &cpu); /* warm-up: page in the weights, grow buffers */
	for (int i = 0; i < repeats && !r; i++) {
		if (bw && bw->buf)
			g[2 * i] = read_gbps(bw, (double)n / tps, &f[2 * i]);
		if (!(r = run_once(m, toks, n, chunk, logits, &tps, &cpu))) {
			v[i] = tps;
			c[i] = cpu;
			if (bw && bw->buf)
				g[2 * i + 1] = read_gbps(bw, (double)n / tps, &f[2 * i + 1]);
		}
	}
	if (r)
		return r;
	ret->cpu = hyd__bench_median(c, repeats);
	ret->med = hyd__bench_median(v, repeats);
	ret->lo = v[0];
	ret->hi = v[repeats - 1];
	if (bw && bw->buf) {
		ret->gbps = hyd__bench_median(g, 2 * repeats);
		ret->gbps_pass = hyd__bench_median(f, 2 * repeats);
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_model -m FILE[,FILE...] [-t THREADS,... (1,2)] [-p PROMPT_TOKENS (512)]\n"
			"                   [-n DECODE_TOKENS (128)] [-r REPEATS (3)] [--bw GBPS,... (one per thread count) | --bw measure]\n"
			"                   [--state in-place (default, as `hyd run`) | --state two-copies (as hydd's sessions)]\n");
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static int bench_file(const char *path, const double *threads, int n_threads, const double *bw, int n_bw,
		      const uint64_t *bw_buf, size_t bw_words, uint32_t pp, uint32_t tg, int repeats)
{
	for (int k = 0; k < n_threads; k++) {
		char err[512];
		struct hyd_model *m;
		const struct hyd_model_opts opts = {
			.n_threads = (uint32_t)threads[k],
			.max_ctx = (pp > tg ? pp : tg) + 64,
			.max_chunk = pp ? pp : 1,
		};
		int r = hyd_model_load(path, &opts, &m, err, sizeof(err));
		if (r) {
			fprintf(stderr, "bench_model: %s\n", err);
			return r;
		}
		const uint32_t n_vocab = hyd_model_n_vocab(m);
		const uint32_t n = pp > tg ? pp : tg;
		int32_t *toks = hyd_malloc(n * sizeof(*toks));
		float *logits = hyd_malloc((size_t)n_vocab * sizeof(float));
		if (!toks || !logits) {
			hyd_free(toks);
			hyd_free(logits);
			hyd_model_free(m);
			return -ENOMEM;
		}
		/* random tokens from the low part of the vocabulary (real text's ids) */
		for (uint32_t i = 0; i < n; i++)
			toks[i] = (int32_t)(rnd() % (n_vocab < 32000 ? n_vocab : 32000));
		const uint64_t wbytes = hyd__bench_weight_bytes(m);
		struct result rp = { 0 }, rt = { 0 };
		const struct bw_probe probe = { .buf = bw_buf, .words = bw_words, .n_threads = (unsigned)threads[k],
						.wbytes = wbytes };
		if (pp && (r = measure(m, toks, pp, pp, logits, repeats, NULL, &rp)))
			fprintf(stderr, "bench_model: %s: prefill failed: %s\n", path, strerror(-r));
		if (!r && tg && (r = measure(m, toks, tg, 1, logits, repeats, &probe, &rt)))
			fprintf(stderr, "bench_model: %s: decode failed: %s\n", path, strerror(-r));
		if (!r) {
			const void *wp;
			size_t wspan;
			hyd__bench_weight_span(m, &wp, &wspan);
			const double huge = wspan ? hyd__bench_huge_share(wp, wspan) : -1;
			printf("| %s | %s | %u | %.0f (%.0f..%.0f) | %.0f %% | %.1f (%.1f..%.1f) | %.0f %% | %.1f | ",
			       base_name(path), hyd_model_arch(m), (unsigned)threads[k], rp.med, rp.lo, rp.hi,
			       100 * rp.cpu, rt.med, rt.lo, rt.hi, 100 * rt.cpu, (double)wbytes / 1e6);
			if (huge < 0)
				printf("? |");
			else
				printf("%.0f %% |", 100 * huge);
			if (bw_buf) {
				const double bound = rt.gbps * 1e9 / (double)wbytes;
				printf(" %.1f | %.1f | %.0f %% | %.1f |", rt.gbps, bound, 100.0 * rt.med / bound, rt.gbps_pass);
			} else if (k < n_bw) {
				const double bound = bw[k] * 1e9 / (double)wbytes;
				printf(" %.1f | %.1f | %.0f %% | - |", bw[k], bound, 100.0 * rt.med / bound);
			} else {
				printf(" - | - | - | - |");
			}
			printf("\n");
			fflush(stdout);
		}
		hyd_free(toks);
		hyd_free(logits);
		hyd_model_free(m);
		if (r)
			return r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *models = NULL;
	double threads[MAX_LIST] = { 1, 2 }, bw[MAX_LIST];
	int n_threads = 2, n_bw = 0, repeats = 3;
	bool measure_bw = false;
	long pp = 512, tg = 128;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			usage();
			return 2;
		}
		if (!strcmp(argv[i], "-m"))
			models = v;
		else if (!strcmp(argv[i], "-t"))
			n_threads = hyd__bench_parse_list(v, threads, MAX_LIST);
		else if (!strcmp(argv[i], "--bw") && !strcmp(v, "measure"))
			measure_bw = true;
		else if (!strcmp(argv[i], "--bw"))
			n_bw = hyd__bench_parse_list(v, bw, MAX_LIST);
		else if (!strcmp(argv[i], "-p"))
			pp = strtol(v, NULL, 10);
		else if (!strcmp(argv[i], "-n"))
			tg = strtol(v, NULL, 10);
		else if (!strcmp(argv[i], "-r"))
			repeats = (int)strtol(v, NULL, 10);
		else if (!strcmp(argv[i], "--state") && (!strcmp(v, "in-place") || !strcmp(v, "two-copies")))
			two_copies = !strcmp(v, "two-copies");
		else {
			usage();
			return 2;
		}
		i++;
	}
	if (!models || n_threads < 0 || n_bw < 0 || pp < 0 || tg < 0 || pp + tg == 0 || pp > 65536 || tg > 65536 ||
	    repeats < 1 || repeats > MAX_REPEATS) {
		usage();
		return 2;
	}
	printf("simd %s; pp%ld = one chunk of %ld tokens, tg%ld = %ld tokens one at a time; tokens/s, median of %d (min..max)\n",
	       hyd_simd_level(), pp, pp, tg, tg, repeats);
	printf("CPU = process CPU time / wall time (100 %% per thread when nothing else competes for the cores)\n");
	printf("SSM state: %s\n", two_copies ? "two copies, one read and the other written each step (as hydd's sessions)"
					     : "rewritten in place (as `hyd run`)");
	uint64_t *bw_buf = NULL;
	const size_t bw_words = ((size_t)BW_PASS_MIB << 20) / sizeof(uint64_t);
	if (measure_bw) {
		if (!(bw_buf = hyd__bench_huge_alloc(bw_words * sizeof(uint64_t)))) {
			fprintf(stderr, "bench_model: cannot allocate the %d MiB read-pass buffer\n", BW_PASS_MIB);
			return 1;
		}
		for (size_t i = 0; i < bw_words; i++) /* give the sum something to add */
			bw_buf[i] = i;
		const double huge = hyd__bench_huge_share(bw_buf, bw_words * sizeof(uint64_t));
		printf("read GB/s: median of reads right before and right after each timed decode run, same thread "
		       "count, each repeating a %d MiB pass (as bench/bandwidth; %.0f %% in 2 MiB pages) for as long as the "
		       "run lasted; one pass: the same for the first pass of each read alone\n",
		       BW_PASS_MIB, huge < 0 ? 0.0 : 100 * huge);
	}
	printf("| model | arch | threads | pp%ld t/s | pp CPU | tg%ld t/s | tg CPU | weight MB read/token | weights in 2 MiB pages | read GB/s | decode bound t/s | tg %% of bound | read GB/s, one pass |\n",
	       pp, tg);
	printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
	int failed = 0;
	char *list = hyd_strdup(models);
	if (!list) {
		hyd__bench_huge_free(bw_buf, bw_words * sizeof(uint64_t));
		return 1;
	}
	for (char *save = NULL, *f = strtok_r(list, ",", &save); f; f = strtok_r(NULL, ",", &save))
		if (bench_file(f, threads, n_threads, bw, n_bw, bw_buf, bw_words, (uint32_t)pp, (uint32_t)tg, repeats))
			failed++;
	hyd_free(list);
	hyd__bench_huge_free(bw_buf, bw_words * sizeof(uint64_t));
	return failed ? 1 : 0;
}
