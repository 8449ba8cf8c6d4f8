/* hydd's scheduler with the bundled model: batched generation equals `hyd run`'s greedy loop,
 * a SIGKILL mid-generation loses nothing (greedy and sampled: the random stream is kept in the
 * session), stop strings, truncate, cancel, slow clients. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/local_seq.h"
#include "daemon/scheduler.h"
#include "daemon/session_format.h"
#include "daemon/tokenizer.h"
#include "engine/alloc.h"

#define CHUNK 16
#define CTX 512
#define MAXREQ 8

static char model_path[4096];
static struct hyd_model *M;
static const char *kinds[64];
static struct hyd_state_layout layouts[64];
static struct hyd__sess_model SM;

struct rec {
	int32_t toks[MAXREQ][CTX];
	uint32_t n[MAXREQ];
	char text[MAXREQ][16384];
	size_t tlen[MAXREQ];
	bool done[MAXREQ];
	struct hyd_sched_done d[MAXREQ];
	bool paused[MAXREQ]; /* by conn */
};

static int rec_token(void *ctx, uint64_t conn, uint64_t req, int32_t tok, const char *text, uint32_t len)
{
	struct rec *r = ctx;
	ck_assert_uint_lt(req, MAXREQ);
	ck_assert(!r->done[req]);
	if (tok >= 0)
		r->toks[req][r->n[req]++] = tok;
	ck_assert_uint_lt(r->tlen[req] + len, sizeof(r->text[req]));
	memcpy(r->text[req] + r->tlen[req], text, len);
	r->tlen[req] += len;
	return 0;
}

static void rec_done(void *ctx, uint64_t conn, uint64_t req, const struct hyd_sched_done *d)
{
	struct rec *r = ctx;
	ck_assert(!r->done[req]);
	r->done[req] = true;
	r->d[req] = *d;
}

static bool rec_paused(void *ctx, uint64_t conn)
{
	struct rec *r = ctx;
	return r->paused[conn];
}

static void state_init(void *ctx, void *const *fixed)
{
	hyd_model_state_init(ctx, fixed);
}

static void setup(void)
{
	const char *src = getenv("HYD_SRCDIR");
	snprintf(model_path, sizeof(model_path), "%s/models/shakespeare-granitehybrid-f16.gguf", src ? src : "..");
	if (access(model_path, R_OK) != 0) {
		const char *ci = getenv("CI");
		fprintf(stderr, "%s: %s\n", ci && !strcmp(ci, "true") ? "FAIL" : "SKIP", model_path);
		exit(ci && !strcmp(ci, "true") ? 1 : 77);
	}
	struct hyd_model_opts mo = { .n_threads = 1, .max_ctx = CTX, .max_chunk = CHUNK };
	char err[512];
	if (hyd_model_load(model_path, &mo, &M, err, sizeof(err)) < 0) {
		fprintf(stderr, "cannot load %s: %s\n", model_path, err);
		exit(1);
	}
	const uint32_t n = hyd_model_n_layer(M);
	if (n > 64) {
		fprintf(stderr, "%u layers: too many for this test\n", n);
		exit(1);
	}
	for (uint32_t i = 0; i < n; i++) {
		kinds[i] = hyd_model_layer_kind(M, i);
		layouts[i] = *hyd_model_layer_layout(M, i);
	}
	hyd_model_fingerprint(M, SM.fingerprint);
	SM.n_layer = n;
	SM.max_ctx = hyd_model_limits(M)->max_ctx;
	SM.kinds = kinds;
	SM.layouts = layouts;
	SM.state_init = state_init;
	SM.state_init_ctx = M;
}

static struct hyd__sess_store *open_store(const char *dir)
{
	struct hyd__sess_store_opts o = { .dir = dir };
	struct hyd__sess_store *st;
	char err[256];
	ck_assert_int_eq(hyd__sess_store_open(&o, &SM, &st, err, sizeof(err)), 0);
	return st;
}

static char *tmp_dir(void)
{
	static char d[64];
	snprintf(d, sizeof(d), "/tmp/check_hydd_sched.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(d));
	return d;
}

static void tokenize_prompt(const char *text, int32_t **ret, size_t *ret_n)
{
	ck_assert_int_eq(hyd_tokenizer_encode(hyd_model_tokenizer(M), text, strlen(text), HYD_TOK_ADD_SPECIAL, ret, ret_n), 0);
}

/* What `hyd run -n n` with sampler parameters sp does, in tokens. */
static void reference_sp(const char *prompt, uint32_t n, const struct hyd_sampler_params *sp, int32_t *out,
			 uint32_t *ret_n)
{
	int32_t *toks;
	size_t nt;
	tokenize_prompt(prompt, &toks, &nt);
	const uint32_t nv = hyd_model_n_vocab(M);
	float *logits = hyd_malloc(nv * sizeof(float));
	int32_t *hist = hyd_malloc((nt + n) * sizeof(int32_t));
	memcpy(hist, toks, nt * sizeof(int32_t));
	struct hyd_local_seq *seq;
	struct hyd_sampler *smp;
	ck_assert_int_eq(hyd_local_seq_new(M, &seq), 0);
	ck_assert_int_eq(hyd_sampler_new(nv, &smp), 0);
	struct hyd_rng rng;
	hyd_rng_seed(&rng, sp->seed);
	ck_assert_int_eq(hyd_local_seq_feed(M, seq, toks, (uint32_t)nt, logits, false), 0);
	uint32_t k = 0;
	for (; k < n; k++) {
		int32_t id = hyd_sampler_pick(smp, sp, &rng, logits, hist, nt + k);
		if (hyd_tokenizer_is_eog(hyd_model_tokenizer(M), id))
			break;
		hist[nt + k] = out[k] = id;
		if (k + 1 < n)
			ck_assert_int_eq(hyd_local_seq_feed(M, seq, &id, 1, logits, false), 0);
	}
	*ret_n = k;
	hyd_local_seq_free(seq);
	hyd_sampler_free(smp);
	hyd_free(logits);
	hyd_free(hist);
	hyd_free(toks);
}

static void greedy(struct hyd_sched_gen *g, uint32_t max_tokens);

/* What `hyd run --temp 0 -n n` does, in tokens. */
static void reference(const char *prompt, uint32_t n, int32_t *out, uint32_t *ret_n)
{
	struct hyd_sched_gen g;
	greedy(&g, n);
	reference_sp(prompt, n, &g.sp, out, ret_n);
}

static struct hyd_sched *new_sched(struct rec *r)
{
	struct hyd_sched_sink sink = { .ctx = r, .token = rec_token, .done = rec_done, .paused = rec_paused };
	struct hyd_sched *sc;
	ck_assert_int_eq(hyd__sched_new(M, NULL, &sink, &sc), 0);
	return sc;
}

static struct hyd_sched_sess *new_session(struct hyd__sess_store *st, struct hyd_sched *sc, const char *prompt)
{
	struct hyd__sess *s;
	struct hyd_sched_sess *e;
	ck_assert_int_eq(hyd__sess_create(st, 1000, "t", &s), 0);
	ck_assert_int_eq(hyd__sched_add(sc, s, &e), 0);
	int32_t *toks;
	size_t n;
	tokenize_prompt(prompt, &toks, &n);
	char err[256];
	ck_assert_int_eq(hyd__sched_append(sc, e, toks, (uint32_t)n, err, sizeof(err)), 0);
	ck_assert_uint_eq(hyd__sched_n_tokens(e), n);
	hyd_free(toks);
	return e;
}

static void greedy(struct hyd_sched_gen *g, uint32_t max_tokens)
{
	memset(g, 0, sizeof(*g));
	hyd_sampler_defaults(&g->sp);
	g->sp.temperature = 0;
	g->sp.seed = 1;
	g->max_tokens = max_tokens;
}

/* temperature 0.8 with top-k 40, top-p 0.95, min-p 0.05 (the defaults) and seed 42 */
static void sampled(struct hyd_sched_gen *g, uint32_t max_tokens)
{
	memset(g, 0, sizeof(*g));
	hyd_sampler_defaults(&g->sp);
	g->sp.temperature = 0.8f;
	g->sp.top_k = 40;
	g->sp.top_p = 0.95f;
	g->sp.seed = 42;
	g->max_tokens = max_tokens;
}

static void run_all(struct hyd_sched *sc)
{
	for (int i = 0; i < 100000 && hyd__sched_step(sc) > 0; i++)
		;
}

static const char *prompts[] = {
	"ROMEO:",
	"First Citizen:\nBefore we proceed any further, hear me speak. You are all resolved rather to die than to famish?",
	"KING HENRY:\nNow",
};

START_TEST(test_batch_equals_reference)
{
	struct rec *r = hyd_calloc(1, sizeof(*r));
	struct hyd__sess_store *st = open_store(tmp_dir());
	struct hyd_sched *sc = new_sched(r);
	struct hyd_sched_gen g;
	greedy(&g, 40);
	char err[256];
	for (int i = 0; i < 3; i++) {
		struct hyd_sched_sess *e = new_session(st, sc, prompts[i]);
		ck_assert_int_eq(hyd__sched_generate(sc, e, 7, (uint64_t)i + 1, &g, err, sizeof(err)), 0);
		ck_assert_int_eq(hyd__sched_generate(sc, e, 7, 5, &g, err, sizeof(err)), -EBUSY);
	}
	run_all(sc);
	struct hyd_sched_stats ss;
	hyd__sched_stats(sc, &ss);
	ck_assert_uint_eq(ss.n_jobs, 0);
	ck_assert_uint_gt(ss.seqs, ss.steps); /* sessions really shared steps */
	for (int i = 0; i < 3; i++) {
		int32_t ref[64];
		uint32_t nref;
		reference(prompts[i], 40, ref, &nref);
		ck_assert(r->done[i + 1]);
		ck_assert_uint_eq(r->d[i + 1].reason, nref == 40 ? HYD_SCHED_MAX_TOKENS : HYD_SCHED_EOS);
		ck_assert_uint_eq(r->n[i + 1], nref);
		ck_assert_uint_eq(r->d[i + 1].n_generated, nref);
		for (uint32_t k = 0; k < nref; k++)
			ck_assert_int_eq(r->toks[i + 1][k], ref[k]);
	}
	hyd__sched_free(sc);
	hyd__sess_store_close(st);
	hyd_free(r);
}
END_TEST

/* A child generates, is SIGKILLed mid-way; the parent attaches the session and continues (the
 * same request, for the tokens still missing): the tokens are those of one uninterrupted run. */
static void kill_and_continue(void (*params)(struct hyd_sched_gen *g, uint32_t max_tokens))
{
	const char *dir = tmp_dir();
	const uint32_t N = 48;
	for (uint32_t kill_after = 1; kill_after < 12; kill_after += 5) {
		struct hyd__sess_store *st = open_store(dir);
		struct rec *r = hyd_calloc(1, sizeof(*r));
		struct hyd_sched *sc = new_sched(r);
		struct hyd_sched_sess *e = new_session(st, sc, prompts[1]);
		const size_t n_prompt = hyd__sched_n_tokens(e);
		char id[64], err[256];
		snprintf(id, sizeof(id), "%s", hyd__sess_id(e->s));
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			struct hyd_sched_gen g;
			params(&g, N);
			if (hyd__sched_generate(sc, e, 1, 1, &g, err, sizeof(err)) < 0)
				_exit(2);
			for (uint32_t i = 0; i < kill_after + 16; i++)
				hyd__sched_step(sc);
			raise(SIGKILL);
		}
		int status;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		hyd__sched_free(sc);
		hyd__sess_store_close(st);

		st = open_store(dir);
		memset(r, 0, sizeof(*r));
		sc = new_sched(r);
		struct hyd__sess *s;
		ck_assert_int_eq(hyd__sess_attach(st, id, 1000, &s, err, sizeof(err)), 0);
		ck_assert_int_eq(hyd__sched_add(sc, s, &e), 0);
		const uint32_t have = hyd__sched_n_tokens(e) - (uint32_t)n_prompt;
		ck_assert_uint_gt(have, 0);
		ck_assert_uint_lt(have, N);
		ck_assert_uint_gt(hyd__sched_n_tokens(e), hyd__sess_pos(s)); /* the last token is pending */
		struct hyd_sched_gen g;
		params(&g, N - have);
		ck_assert_int_eq(hyd__sched_generate(sc, e, 1, 2, &g, err, sizeof(err)), 0);
		run_all(sc);
		ck_assert(r->done[2]);
		int32_t ref[64];
		uint32_t nref;
		params(&g, N);
		reference_sp(prompts[1], N, &g.sp, ref, &nref);
		ck_assert_uint_eq(hyd__sched_n_tokens(e), n_prompt + nref);
		const int32_t *hist = hyd__sess_tokens(s);
		for (uint32_t k = 0; k < nref; k++)
			ck_assert_msg(hist[n_prompt + k] == ref[k], "kill after %u: token %u is %d, expected %d",
				      kill_after, k, hist[n_prompt + k], ref[k]);
		for (uint32_t k = 0; k < r->n[2]; k++)
			ck_assert_int_eq(r->toks[2][k], ref[have + k]);
		hyd__sched_free(sc);
		hyd__sess_store_close(st);
		hyd_free(r);
	}
}

START_TEST(test_kill_and_continue)
{
	kill_and_continue(greedy);
}
END_TEST

START_TEST(test_kill_and_continue_sampled)
{
	kill_and_continue(sampled);
}
END_TEST

/* A sampled generation in pieces with the same seed is one generation; new history (append,
 * truncate) or another seed starts a fresh stream. */
START_TEST(test_sampled_pieces)
{
	const uint32_t N = 40;
	struct rec *r = hyd_calloc(1, sizeof(*r));
	const char *dir = tmp_dir();
	struct hyd__sess_store *st = open_store(dir);
	struct hyd_sched *sc = new_sched(r);
	struct hyd_sched_sess *e = new_session(st, sc, prompts[0]);
	const uint32_t n_prompt = hyd__sched_n_tokens(e);
	struct hyd_sched_gen g;
	char err[256];
	int32_t ref[64];
	uint32_t nref;
	sampled(&g, N);
	reference_sp(prompts[0], N, &g.sp, ref, &nref);
	ck_assert_uint_gt(nref, 15);
	uint32_t got = 0;
	for (uint32_t req = 1, piece = 5; got < nref; req++, piece += 3) {
		sampled(&g, piece < nref - got ? piece : nref - got);
		ck_assert_int_eq(hyd__sched_generate(sc, e, 1, req, &g, err, sizeof(err)), 0);
		run_all(sc);
		ck_assert(r->done[req]);
		for (uint32_t k = 0; k < r->n[req]; k++)
			ck_assert_msg(r->toks[req][k] == ref[got + k], "piece %u: token %u is %d, expected %d", req,
				      got + k, r->toks[req][k], ref[got + k]);
		got += r->n[req];
		ck_assert_uint_lt(req, MAXREQ - 2);
	}
	/* back to the prompt: the stream starts again from the seed */
	ck_assert_int_eq(hyd__sched_truncate(sc, e, n_prompt), 0);
	sampled(&g, 12);
	ck_assert_int_eq(hyd__sched_generate(sc, e, 1, MAXREQ - 1, &g, err, sizeof(err)), 0);
	run_all(sc);
	ck_assert_uint_eq(r->n[MAXREQ - 1], 12);
	ck_assert(!memcmp(r->toks[MAXREQ - 1], ref, 12 * sizeof(int32_t)));

	/* the stored stream is in the file: a corrupt slot is refused, an old version reported */
	char id[64], path[512];
	snprintf(id, sizeof(id), "%s", hyd__sess_id(e->s));
	snprintf(path, sizeof(path), "%s/%s", dir, id);
	hyd__sched_free(sc);
	hyd__sess_store_close(st);
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	struct hyd_sess_hdr h;
	ck_assert_int_eq(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	ck_assert_uint_eq(h.gen_seed, 42);
	ck_assert(h.gen[0].n_tokens || h.gen[1].n_tokens);
	struct hyd_sess_hdr bad = h;
	bad.gen[1].n_tokens = h.max_ctx + 1;
	ck_assert_int_eq(pwrite(fd, &bad, sizeof(bad), 0), (ssize_t)sizeof(bad));
	st = open_store(dir);
	struct hyd__sess *s;
	ck_assert_int_eq(hyd__sess_attach(st, id, 1000, &s, err, sizeof(err)), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "generation state"));
	bad = h;
	bad.version = 1;
	ck_assert_int_eq(pwrite(fd, &bad, sizeof(bad), 0), (ssize_t)sizeof(bad));
	ck_assert_int_eq(hyd__sess_attach(st, id, 1000, &s, err, sizeof(err)), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "version 1"));
	ck_assert_int_eq(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	ck_assert_int_eq(hyd__sess_attach(st, id, 1000, &s, err, sizeof(err)), 0);
	hyd__sess_detach(s);
	close(fd);
	hyd__sess_store_close(st);
	hyd_free(r);
}
END_TEST

START_TEST(test_stop_truncate_cancel)
{
	struct rec *r = hyd_calloc(1, sizeof(*r));
	struct hyd__sess_store *st = open_store(tmp_dir());
	struct hyd_sched *sc = new_sched(r);
	struct hyd_sched_sess *e = new_session(st, sc, prompts[0]);
	const uint32_t n_prompt = hyd__sched_n_tokens(e);
	struct hyd_sched_gen g;
	char err[256];
	greedy(&g, 30);
	ck_assert_int_eq(hyd__sched_generate(sc, e, 1, 1, &g, err, sizeof(err)), 0);
	run_all(sc);
	ck_assert(r->done[1]);
	ck_assert_uint_gt(r->tlen[1], 12);
	const char *full = r->text[1];

	/* a stop string from the middle of that text: the stream ends just before it */
	ck_assert_int_eq(hyd__sched_truncate(sc, e, n_prompt), 0);
	ck_assert_uint_eq(hyd__sched_n_tokens(e), n_prompt);
	greedy(&g, 30);
	g.n_stop = 1;
	g.stop_len[0] = 4;
	memcpy(g.stop[0], full + 8, 4);
	ck_assert_int_eq(hyd__sched_generate(sc, e, 1, 2, &g, err, sizeof(err)), 0);
	run_all(sc);
	ck_assert(r->done[2]);
	ck_assert_uint_eq(r->d[2].reason, HYD_SCHED_STOP);
	const char *hit = memmem(full, r->tlen[1], g.stop[0], 4);
	ck_assert_uint_eq(r->tlen[2], (size_t)(hit - full));
	ck_assert(!memcmp(r->text[2], full, r->tlen[2]));

	/* truncate back to the prompt: the same tokens again */
	ck_assert_int_eq(hyd__sched_truncate(sc, e, n_prompt + 100), -EINVAL);
	ck_assert_int_eq(hyd__sched_truncate(sc, e, n_prompt), 0);
	greedy(&g, 10);
	ck_assert_int_eq(hyd__sched_generate(sc, e, 1, 3, &g, err, sizeof(err)), 0);
	ck_assert_int_eq(hyd__sched_truncate(sc, e, 1), -EBUSY);
	run_all(sc);
	ck_assert_uint_eq(r->n[3], 10);
	ck_assert(!memcmp(r->toks[3], r->toks[1], 10 * sizeof(int32_t)));

	/* cancel */
	greedy(&g, 0);
	ck_assert_int_eq(hyd__sched_generate(sc, e, 1, 4, &g, err, sizeof(err)), 0);
	hyd__sched_step(sc);
	ck_assert_int_eq(hyd__sched_cancel(sc, 1, 4), 0);
	ck_assert(r->done[4]);
	ck_assert_uint_eq(r->d[4].reason, HYD_SCHED_CANCELLED);
	ck_assert_int_eq(hyd__sched_cancel(sc, 1, 4), -ENOENT);
	ck_assert_uint_eq(hyd__sched_step(sc), 0);

	/* an empty session cannot generate */
	struct hyd__sess *s;
	struct hyd_sched_sess *e2;
	ck_assert_int_eq(hyd__sess_create(st, 1000, NULL, &s), 0);
	ck_assert_int_eq(hyd__sched_add(sc, s, &e2), 0);
	ck_assert_int_eq(hyd__sched_generate(sc, e2, 1, 5, &g, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "empty"));
	int32_t bad = 1 << 30;
	ck_assert_int_eq(hyd__sched_append(sc, e2, &bad, 1, err, sizeof(err)), -EINVAL);
	hyd__sched_free(sc);
	hyd__sess_store_close(st);
	hyd_free(r);
}
END_TEST

/* A paused client's job waits; the others go on; nothing is lost. */
START_TEST(test_paused_client)
{
	struct rec *r = hyd_calloc(1, sizeof(*r));
	struct hyd__sess_store *st = open_store(tmp_dir());
	struct hyd_sched *sc = new_sched(r);
	struct hyd_sched_sess *a = new_session(st, sc, prompts[0]), *b = new_session(st, sc, prompts[2]);
	struct hyd_sched_gen g;
	char err[256];
	greedy(&g, 20);
	ck_assert_int_eq(hyd__sched_generate(sc, a, 1, 1, &g, err, sizeof(err)), 0);
	ck_assert_int_eq(hyd__sched_generate(sc, b, 2, 2, &g, err, sizeof(err)), 0);
	r->paused[2] = true;
	run_all(sc);
	ck_assert(r->done[1]);
	ck_assert(!r->done[2]);
	ck_assert_uint_eq(r->n[2], 0);
	r->paused[2] = false;
	run_all(sc);
	ck_assert(r->done[2]);
	int32_t ref[32];
	uint32_t nref;
	reference(prompts[2], 20, ref, &nref);
	ck_assert_uint_eq(r->n[2], nref);
	ck_assert(!memcmp(r->toks[2], ref, nref * sizeof(int32_t)));
	/* a client that goes away ends its job without events */
	greedy(&g, 0);
	ck_assert_int_eq(hyd__sched_generate(sc, b, 3, 3, &g, err, sizeof(err)), 0);
	hyd__sched_drop_conn(sc, 3);
	ck_assert(!r->done[3]);
	ck_assert_ptr_null(b->job);
	hyd__sched_free(sc);
	hyd__sess_store_close(st);
	hyd_free(r);
}
END_TEST

int main(void)
{
	setup();
	Suite *s = suite_create("hydd_sched");
	TCase *tc = tcase_create("sched");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_batch_equals_reference);
	tcase_add_test(tc, test_kill_and_continue);
	tcase_add_test(tc, test_kill_and_continue_sampled);
	tcase_add_test(tc, test_sampled_pieces);
	tcase_add_test(tc, test_stop_truncate_cancel);
	tcase_add_test(tc, test_paused_client);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	hyd_model_free(M);
	if (system("rm -rf /tmp/check_hydd_sched.*") != 0)
		failed++;
	return failed ? 1 : 0;
}
