/* The hyd tool's in-process commands: run, eval and tokenize load the model themselves and
 * need no daemon. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <time.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/cli.h"
#include "daemon/gguf.h"
#include "daemon/local_seq.h"
#include "daemon/model.h"
#include "daemon/sampler.h"
#include "daemon/tokenizer.h"
#include "engine/alloc.h"

struct common_opts {
	const char *model;
	struct hyd_model_opts mo;
};

static int load_model(struct common_opts *c, struct hyd_model **ret)
{
	char err[1024] = "";
	if (!c->model) {
		c->model = hyd_cli_default_model();
		if (!c->model) {
			fprintf(stderr, "hyd: no model given (-m FILE) and the bundled default model is not installed\n");
			return -ENOENT;
		}
	}
	int r = hyd_model_load(c->model, &c->mo, ret, err, sizeof(err));
	if (r)
		fprintf(stderr, "hyd: cannot load model: %s\n", err[0] ? err : strerror(-r));
	return r;
}

static const char run_usage[] =
	"Usage: hyd run [-m MODEL] [-p TEXT | < TEXT] [OPTIONS]\n"
	"Generate a completion of TEXT in this process (no daemon) and stream it to stdout.\n"
	"When the prompt comes from stdin, one trailing newline is removed.\n\n"
	"  -m, --model FILE        GGUF model (default: the bundled Shakespeare model)\n"
	"  -p, --prompt TEXT       prompt text (default: read stdin)\n"
	"  -n, --n-predict N       tokens to generate (default 128); stops early at end of text\n"
	"      --temp T            temperature; 0 = greedy (default 0.8)\n"
	"      --top-k K           keep the K most likely tokens (default 40; 0 = off)\n"
	"      --top-p P           nucleus sampling (default 0.95; 1 = off)\n"
	"      --min-p P           drop tokens below P x the best one's probability (default 0.05)\n"
	"      --repeat-penalty R  penalise recent tokens (default 1 = off)\n"
	"      --repeat-last-n N   how many recent tokens the penalty sees (default 64)\n"
	"      --seed S            random seed (default: from the clock)\n"
	"  -t, --threads N         worker threads (default: the CPUs available)\n"
	"  -c, --ctx N             context length in tokens (default: the model's, at most 32768)\n"
	"      --echo              print the prompt before the completion\n"
	"  -v, --verbose           print the model's plan and timings to stderr\n"
	"  -h, --help              show this help\n";

enum {
	OPT_TEMP = 256,
	OPT_TOPK,
	OPT_TOPP,
	OPT_MINP,
	OPT_REPP,
	OPT_REPN,
	OPT_SEED,
	OPT_ECHO,
	OPT_TOKENS,
	OPT_LOGITS_OUT,
	OPT_STEP,
	OPT_SPLIT,
	OPT_NO_SPECIAL,
	OPT_PLUGIN_DIR,
};

#define COMMON_LONG_OPTS                                                  \
	{ "model", required_argument, NULL, 'm' },                        \
	{ "threads", required_argument, NULL, 't' },                      \
	{ "ctx", required_argument, NULL, 'c' },                          \
	{ "verbose", no_argument, NULL, 'v' },                            \
	{ "plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR },        \
	{ "help", no_argument, NULL, 'h' }

static bool common_opt(struct common_opts *c, int ch, const char *arg)
{
	switch (ch) {
	case 'm': c->model = arg; return true;
	case 't': c->mo.n_threads = hyd_cli_u32("--threads", arg); return true;
	case 'c': c->mo.max_ctx = hyd_cli_u32("--ctx", arg); return true;
	case 'v': c->mo.verbose = true; return true;
	case OPT_PLUGIN_DIR: c->mo.plugin_path = arg; return true;
	}
	return false;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int hyd_cmd_run(int argc, char **argv)
{
	static const struct option longs[] = {
		COMMON_LONG_OPTS,
		{ "prompt", required_argument, NULL, 'p' },
		{ "n-predict", required_argument, NULL, 'n' },
		{ "temp", required_argument, NULL, OPT_TEMP },
		{ "top-k", required_argument, NULL, OPT_TOPK },
		{ "top-p", required_argument, NULL, OPT_TOPP },
		{ "min-p", required_argument, NULL, OPT_MINP },
		{ "repeat-penalty", required_argument, NULL, OPT_REPP },
		{ "repeat-last-n", required_argument, NULL, OPT_REPN },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "echo", no_argument, NULL, OPT_ECHO },
		{ 0 },
	};
	struct common_opts c = { 0 };
	struct hyd_sampler_params sp;
	hyd_sampler_defaults(&sp);
	sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	const char *prompt = NULL;
	uint32_t n_predict = 128;
	bool echo = false;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "m:p:n:t:c:vh", longs, NULL)) != -1) {
		if (common_opt(&c, ch, optarg))
			continue;
		switch (ch) {
		case 'p': prompt = optarg; break;
		case 'n': n_predict = hyd_cli_u32("--n-predict", optarg); break;
		case OPT_TEMP: sp.temperature = hyd_cli_f32("--temp", optarg); break;
		case OPT_TOPK: sp.top_k = (int32_t)hyd_cli_u32("--top-k", optarg); break;
		case OPT_TOPP: sp.top_p = hyd_cli_f32("--top-p", optarg); break;
		case OPT_MINP: sp.min_p = hyd_cli_f32("--min-p", optarg); break;
		case OPT_REPP: sp.repeat_penalty = hyd_cli_f32("--repeat-penalty", optarg); break;
		case OPT_REPN: sp.repeat_last_n = (int32_t)hyd_cli_u32("--repeat-last-n", optarg); break;
		case OPT_SEED: sp.seed = strtoull(optarg, NULL, 0); break;
		case OPT_ECHO: echo = true; break;
		case 'h': fputs(run_usage, stdout); return HYD_EXIT_OK;
		default: hyd_cli_usage_error("bad option for 'hyd run'");
		}
	}
	if (optind < argc)
		hyd_cli_usage_error("unexpected argument '%s' (the prompt goes in -p or stdin)", argv[optind]);
	char err[256];
	if (hyd_sampler_validate(&sp, err, sizeof(err)))
		hyd_cli_usage_error("%s", err);
	char *text = NULL;
	size_t len = 0;
	if (prompt) {
		text = hyd_strdup(prompt);
		len = strlen(prompt);
	} else {
		int r = hyd_cli_read_all(STDIN_FILENO, &text, &len);
		if (r) {
			fprintf(stderr, "hyd: cannot read the prompt from stdin: %s\n", strerror(-r));
			return HYD_EXIT_FAIL;
		}
		if (len && text[len - 1] == '\n')
			text[--len] = 0;
	}
	struct hyd_model *m = NULL;
	struct hyd_local_seq *seq = NULL;
	struct hyd_sampler *smp = NULL;
	int32_t *toks = NULL;
	float *logits = NULL;
	size_t n_tok = 0;
	int rc = HYD_EXIT_FAIL, r;
	if (load_model(&c, &m))
		goto out;
	const struct hyd_tokenizer *tk = hyd_model_tokenizer(m);
	const uint32_t n_vocab = hyd_model_n_vocab(m), max_ctx = hyd_model_limits(m)->max_ctx;
	if ((r = hyd_tokenizer_encode(tk, text, len, HYD_TOK_ADD_SPECIAL, &toks, &n_tok))) {
		fprintf(stderr, "hyd: cannot tokenize the prompt: %s\n", strerror(-r));
		goto out;
	}
	if (n_tok == 0) {
		fprintf(stderr, "hyd: the prompt is empty and this model adds no BOS token: nothing to continue\n");
		goto out;
	}
	if (n_tok + n_predict > max_ctx) {
		fprintf(stderr, "hyd: prompt (%zu tokens) + %u to generate exceed the context of %u tokens (use -c)\n",
			n_tok, n_predict, max_ctx);
		goto out;
	}
	int32_t *hist = hyd_realloc(toks, (n_tok + n_predict + 1) * sizeof(int32_t));
	logits = hyd_malloc((size_t)n_vocab * sizeof(float));
	if (!hist || !logits || hyd_local_seq_new(m, &seq) || hyd_sampler_new(n_vocab, &smp)) {
		if (hist)
			toks = hist;
		fprintf(stderr, "hyd: out of memory\n");
		goto out;
	}
	toks = hist;
	if (echo) {
		fwrite(text, 1, len, stdout);
		fflush(stdout);
	}
	struct hyd_rng rng;
	hyd_rng_seed(&rng, sp.seed);
	double t0 = now_s();
	if ((r = hyd_local_seq_feed(m, seq, toks, (uint32_t)n_tok, logits, false))) {
		fprintf(stderr, "hyd: evaluation failed: %s\n", strerror(-r));
		goto out;
	}
	double t1 = now_s();
	struct hyd_detok dt;
	hyd_detok_init(tk, &dt);
	dt.strip_leading_space = false; /* a continuation keeps its leading space */
	const size_t piece_cap = hyd_tokenizer_max_piece(tk);
	char *piece = hyd_malloc(piece_cap);
	uint32_t generated = 0;
	if (!piece) {
		fprintf(stderr, "hyd: out of memory\n");
		goto out;
	}
	for (; generated < n_predict; generated++) {
		int32_t id = hyd_sampler_pick(smp, &sp, &rng, logits, toks, n_tok);
		if (hyd_tokenizer_is_eog(tk, id))
			break;
		toks[n_tok++] = id;
		int n = hyd_detok_push(tk, &dt, id, piece, piece_cap);
		if (n > 0) {
			fwrite(piece, 1, (size_t)n, stdout);
			fflush(stdout);
		}
		if (generated + 1 == n_predict)
			break;
		if ((r = hyd_local_seq_feed(m, seq, &id, 1, logits, false))) {
			fprintf(stderr, "hyd: evaluation failed: %s\n", strerror(-r));
			hyd_free(piece);
			goto out;
		}
	}
	int n = hyd_detok_flush(tk, &dt, piece, piece_cap);
	if (n > 0)
		fwrite(piece, 1, (size_t)n, stdout);
	hyd_free(piece);
	fputc('\n', stdout);
	fflush(stdout);
	if (c.mo.verbose) {
		double t2 = now_s();
		fprintf(stderr, "hyd: prompt %zu tokens in %.3f s (%.1f tok/s); generated %u tokens in %.3f s (%.1f tok/s)\n",
			n_tok - generated, t1 - t0, (n_tok - generated) / (t1 - t0 + 1e-9), generated, t2 - t1,
			generated / (t2 - t1 + 1e-9));
	}
	rc = HYD_EXIT_OK;
out:
	hyd_free(text);
	hyd_free(toks);
	hyd_free(logits);
	hyd_sampler_free(smp);
	hyd_local_seq_free(seq);
	hyd_model_free(m);
	return rc;
}

static const char eval_usage[] =
	"Usage: hyd eval [-m MODEL] --tokens \"ID ID ...\" --logits-out FILE [--step | --split K]\n"
	"Evaluate a token sequence and write the logits after every token as float32 rows\n"
	"([tokens][vocab], little-endian: the goldens' format).\n\n"
	"  --tokens LIST      token ids separated by spaces or commas\n"
	"  --logits-out FILE  where to write the logits\n"
	"  --step             feed the tokens one at a time (default: one prefill)\n"
	"  --split K          prefill the first K tokens, then feed the rest one at a time\n"
	"  -t, -c, -v, -m     as for 'hyd run'\n";

static int parse_tokens(const char *s, int32_t **ret, size_t *ret_n)
{
	size_t cap = 64, n = 0;
	int32_t *v = hyd_malloc(cap * sizeof(int32_t));
	if (!v)
		return -ENOMEM;
	while (*s) {
		while (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n')
			s++;
		if (!*s)
			break;
		char *end;
		errno = 0;
		long x = strtol(s, &end, 10);
		if (end == s || errno || x < 0 || x > INT32_MAX) {
			hyd_free(v);
			return -EINVAL;
		}
		if (n == cap) {
			int32_t *nv = hyd_realloc(v, cap * 2 * sizeof(int32_t));
			if (!nv) {
				hyd_free(v);
				return -ENOMEM;
			}
			v = nv;
			cap *= 2;
		}
		v[n++] = (int32_t)x;
		s = end;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int hyd_cmd_eval(int argc, char **argv)
{
	static const struct option longs[] = {
		COMMON_LONG_OPTS,
		{ "tokens", required_argument, NULL, OPT_TOKENS },
		{ "logits-out", required_argument, NULL, OPT_LOGITS_OUT },
		{ "step", no_argument, NULL, OPT_STEP },
		{ "split", required_argument, NULL, OPT_SPLIT },
		{ 0 },
	};
	struct common_opts c = { 0 };
	const char *tokens_s = NULL, *out_path = NULL;
	bool step = false;
	long split = -1;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "m:t:c:vh", longs, NULL)) != -1) {
		if (common_opt(&c, ch, optarg))
			continue;
		switch (ch) {
		case OPT_TOKENS: tokens_s = optarg; break;
		case OPT_LOGITS_OUT: out_path = optarg; break;
		case OPT_STEP: step = true; break;
		case OPT_SPLIT: split = hyd_cli_u32("--split", optarg); break;
		case 'h': fputs(eval_usage, stdout); return HYD_EXIT_OK;
		default: hyd_cli_usage_error("bad option for 'hyd eval'");
		}
	}
	if (!tokens_s || !out_path)
		hyd_cli_usage_error("'hyd eval' needs --tokens and --logits-out");
	if (step && split >= 0)
		hyd_cli_usage_error("--step and --split cannot be combined");
	int32_t *toks = NULL;
	size_t n = 0;
	if (parse_tokens(tokens_s, &toks, &n) || n == 0)
		hyd_cli_usage_error("--tokens expects a non-empty list of non-negative token ids");
	if (split > (long)n)
		hyd_cli_usage_error("--split %ld is past the %zu tokens given", split, n);
	/* one prefill means one step: size the chunk to hold the whole prompt */
	if (!step && c.mo.max_chunk == 0)
		c.mo.max_chunk = (uint32_t)(split >= 0 ? (split > 0 ? split : 1) : n);
	if (c.mo.max_ctx == 0)
		c.mo.max_ctx = (uint32_t)n < 4096 ? 4096 : (uint32_t)n;
	struct hyd_model *m = NULL;
	struct hyd_local_seq *seq = NULL;
	float *logits = NULL;
	int rc = HYD_EXIT_FAIL, r = 0;
	if (load_model(&c, &m))
		goto out;
	const uint32_t nv = hyd_model_n_vocab(m);
	logits = hyd_malloc(n * nv * sizeof(float));
	if (!logits || hyd_local_seq_new(m, &seq)) {
		fprintf(stderr, "hyd: out of memory\n");
		goto out;
	}
	size_t done = 0;
	if (!step) {
		size_t first = split >= 0 ? (size_t)split : n;
		if (first) {
			r = hyd_local_seq_feed(m, seq, toks, (uint32_t)first, logits, true);
			done = first;
		}
	}
	for (; !r && done < n; done++)
		r = hyd_local_seq_feed(m, seq, toks + done, 1, logits + done * nv, false);
	if (r) {
		fprintf(stderr, "hyd: evaluation failed at token %zu: %s\n", done, strerror(-r));
		goto out;
	}
	FILE *f = fopen(out_path, "wb");
	if (!f || fwrite(logits, sizeof(float) * nv, n, f) != n || fclose(f)) {
		fprintf(stderr, "hyd: cannot write %s: %s\n", out_path, strerror(errno));
		goto out;
	}
	rc = HYD_EXIT_OK;
out:
	hyd_free(toks);
	hyd_free(logits);
	hyd_local_seq_free(seq);
	hyd_model_free(m);
	return rc;
}

static const char tokenize_usage[] =
	"Usage: hyd tokenize [-m MODEL] [--no-special] < TEXT\n"
	"Print the token ids of stdin on one line, separated by spaces.\n\n"
	"  --no-special   add no BOS/EOS and do not parse special-token text (conformance files' convention)\n";

int hyd_cmd_tokenize(int argc, char **argv)
{
	static const struct option longs[] = {
		COMMON_LONG_OPTS,
		{ "no-special", no_argument, NULL, OPT_NO_SPECIAL },
		{ 0 },
	};
	struct common_opts c = { 0 };
	bool special = true;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "m:t:c:vh", longs, NULL)) != -1) {
		if (common_opt(&c, ch, optarg))
			continue;
		switch (ch) {
		case OPT_NO_SPECIAL: special = false; break;
		case 'h': fputs(tokenize_usage, stdout); return HYD_EXIT_OK;
		default: hyd_cli_usage_error("bad option for 'hyd tokenize'");
		}
	}
	char *text;
	size_t len;
	int r = hyd_cli_read_all(STDIN_FILENO, &text, &len);
	if (r) {
		fprintf(stderr, "hyd: cannot read stdin: %s\n", strerror(-r));
		return HYD_EXIT_FAIL;
	}
	/* Tokenizing needs only the vocabulary: no plugins, no weights in use. */
	char err[1024] = "";
	const char *path = c.model ? c.model : hyd_cli_default_model();
	struct hyd_gguf *g = NULL;
	struct hyd_tokenizer *tk = NULL;
	int32_t *toks = NULL;
	size_t n = 0;
	int rc = HYD_EXIT_FAIL;
	if (!path) {
		fprintf(stderr, "hyd: no model given (-m FILE) and the bundled default model is not installed\n");
		goto out;
	}
	if ((r = hyd_gguf_open(path, &g, err, sizeof(err))) || (r = hyd_tokenizer_load(g, &tk, err, sizeof(err)))) {
		fprintf(stderr, "hyd: %s\n", err[0] ? err : strerror(-r));
		goto out;
	}
	if ((r = hyd_tokenizer_encode(tk, text, len, special ? HYD_TOK_ADD_SPECIAL | HYD_TOK_PARSE_SPECIAL : 0, &toks, &n))) {
		fprintf(stderr, "hyd: cannot tokenize: %s\n", strerror(-r));
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		printf(i ? " %d" : "%d", toks[i]);
	putchar('\n');
	rc = fflush(stdout) ? HYD_EXIT_FAIL : HYD_EXIT_OK;
out:
	hyd_free(text);
	hyd_free(toks);
	hyd_tokenizer_free(tk);
	hyd_gguf_close(g);
	return rc;
}
