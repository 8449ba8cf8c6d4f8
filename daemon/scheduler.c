/* hydd's scheduler: attached sessions, generation jobs, continuous batching. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "daemon/scheduler.h"
#include "daemon/tokenizer.h"
#include "engine/alloc.h"

struct hyd_sched_job {
	struct hyd_sched_job *next;
	struct hyd_sched_sess *e;
	uint64_t conn, req;
	struct hyd_sched_gen g;
	struct hyd_rng rng;
	bool keep_rng;          /* the client chose the seed: the stream is kept in the session */
	struct hyd_detok dt;
	uint32_t n_prompt, n_generated;
	uint64_t t_start, t_first;
	char *hold;             /* text not yet streamed: it may begin a stop string */
	size_t hold_len, hold_cap;
};

struct hyd_sched {
	struct hyd_model *m;
	const struct hyd_tokenizer *tk;
	struct hyd_sched_sink sink;
	uint32_t n_vocab, max_chunk, max_batch, row_budget;
	struct hyd_sampler *smp;
	float *logits;                  /* [max_batch][n_vocab] */
	char *piece;
	size_t piece_cap;
	struct hyd_sched_sess *sessions;
	uint32_t n_sessions;
	struct hyd_sched_job *jobs;
	uint32_t n_jobs;
	uint64_t rr;                    /* round-robin start of the next batch */
	/* per-step scratch, [max_batch] */
	struct hyd_sched_job **bjobs;
	struct hyd_seq_view **views;
	const int32_t **toks;
	uint32_t *ns;
	struct hyd_sched_stats st;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int hyd__sched_new(struct hyd_model *m, const struct hyd_sched_opts *opts, const struct hyd_sched_sink *sink,
		   struct hyd_sched **ret)
{
	if (!m || !sink || !sink->token || !sink->done)
		return -EINVAL;
	struct hyd_sched *sc = hyd_calloc(1, sizeof(*sc));
	if (!sc)
		return -ENOMEM;
	sc->m = m;
	sc->tk = hyd_model_tokenizer(m);
	sc->sink = *sink;
	sc->n_vocab = hyd_model_n_vocab(m);
	sc->max_chunk = hyd_model_limits(m)->max_chunk;
	sc->max_batch = opts && opts->max_batch ? opts->max_batch : 16;
	sc->row_budget = opts && opts->row_budget ? opts->row_budget : 2 * sc->max_chunk;
	sc->piece_cap = hyd_tokenizer_max_piece(sc->tk);
	int r = hyd_sampler_new(sc->n_vocab, &sc->smp);
	sc->logits = hyd_calloc((size_t)sc->max_batch * sc->n_vocab, sizeof(float));
	sc->piece = hyd_malloc(sc->piece_cap);
	sc->bjobs = hyd_calloc(sc->max_batch, sizeof(*sc->bjobs));
	sc->views = hyd_calloc(sc->max_batch, sizeof(*sc->views));
	sc->toks = hyd_calloc(sc->max_batch, sizeof(*sc->toks));
	sc->ns = hyd_calloc(sc->max_batch, sizeof(*sc->ns));
	if (r || !sc->logits || !sc->piece || !sc->bjobs || !sc->views || !sc->toks || !sc->ns) {
		hyd__sched_free(sc);
		return r ? r : -ENOMEM;
	}
	*ret = sc;
	return 0;
}

static void job_free(struct hyd_sched_job *j)
{
	if (!j)
		return;
	hyd_free(j->hold);
	hyd_free(j);
}

/* Unlink j from the job list and its session. */
static void job_unlink(struct hyd_sched *sc, struct hyd_sched_job *j)
{
	for (struct hyd_sched_job **p = &sc->jobs; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			sc->n_jobs--;
			break;
		}
	j->e->job = NULL;
}

void hyd__sched_free(struct hyd_sched *sc)
{
	if (!sc)
		return;
	while (sc->jobs) {
		struct hyd_sched_job *j = sc->jobs;
		job_unlink(sc, j);
		job_free(j);
	}
	while (sc->sessions) {
		struct hyd_sched_sess *e = sc->sessions;
		sc->sessions = e->next;
		hyd__sess_detach(e->s);
		hyd_free(e);
	}
	hyd_sampler_free(sc->smp);
	hyd_free(sc->logits);
	hyd_free(sc->piece);
	hyd_free(sc->bjobs);
	hyd_free(sc->views);
	hyd_free(sc->toks);
	hyd_free(sc->ns);
	hyd_free(sc);
}

uint64_t hyd__sched_wid(const char *id)
{
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char c = id[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return 0;
		v = v << 4 | (uint64_t)d;
	}
	return v;
}

int hyd__sched_add(struct hyd_sched *sc, struct hyd__sess *s, struct hyd_sched_sess **ret)
{
	uint64_t wid = hyd__sched_wid(hyd__sess_id(s));
	if (!wid)
		return -EINVAL;
	if (hyd__sched_find(sc, wid, HYD_SESSION_ANY_UID))
		return -EEXIST;
	struct hyd_sched_sess *e = hyd_calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->s = s;
	e->wid = wid;
	e->next = sc->sessions;
	sc->sessions = e;
	sc->n_sessions++;
	if (ret)
		*ret = e;
	return 0;
}

struct hyd__sess *hyd__sched_remove(struct hyd_sched *sc, struct hyd_sched_sess *e)
{
	for (struct hyd_sched_sess **p = &sc->sessions; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			sc->n_sessions--;
			break;
		}
	if (e->job) {
		struct hyd_sched_job *j = e->job;
		job_unlink(sc, j);
		job_free(j);
	}
	struct hyd__sess *s = e->s;
	hyd_free(e);
	return s;
}

struct hyd_sched_sess *hyd__sched_find(struct hyd_sched *sc, uint64_t wid, uint32_t uid)
{
	for (struct hyd_sched_sess *e = sc->sessions; e; e = e->next)
		if (e->wid == wid && (uid == HYD_SESSION_ANY_UID || hyd__sess_owner(e->s) == uid))
			return e;
	return NULL;
}

struct hyd_sched_sess *hyd__sched_find_name(struct hyd_sched *sc, const char *name, uint32_t uid)
{
	if (!name || !name[0])
		return NULL;
	for (struct hyd_sched_sess *e = sc->sessions; e; e = e->next)
		if ((uid == HYD_SESSION_ANY_UID || hyd__sess_owner(e->s) == uid) &&
		    !strcmp(hyd__sess_label(e->s), name))
			return e;
	return NULL;
}

struct hyd_sched_sess *hyd__sched_sessions(struct hyd_sched *sc)
{
	return sc->sessions;
}

uint32_t hyd__sched_n_sessions(const struct hyd_sched *sc)
{
	return sc->n_sessions;
}

uint32_t hyd__sched_n_tokens(const struct hyd_sched_sess *e)
{
	return hyd__sess_replay_to(e->s);
}

int hyd__sched_truncate(struct hyd_sched *sc, struct hyd_sched_sess *e, uint32_t n)
{
	struct hyd__sess *s = e->s;
	if (e->job)
		return -EBUSY;
	if (n > hyd__sess_replay_to(s))
		return -EINVAL;
	const uint32_t pos = hyd__sess_pos(s);
	if (n == 0)
		return hyd__sess_reset(s);
	if (n > pos)
		return hyd__sess_set_pending_end(s, n);
	/* Token n-1 must end up pending: roll back to n-1 and record it again. */
	int32_t last = hyd__sess_tokens(s)[n - 1];
	int r = hyd__sess_set_pending_end(s, pos);
	if (r == 0)
		r = hyd__sess_truncate(s, n - 1);
	if (r >= 0)
		r = hyd__sess_push_pending(s, &last, 1);
	return r;
}

int hyd__sched_append(struct hyd_sched *sc, struct hyd_sched_sess *e, const int32_t *tokens, uint32_t n,
		      char *err, size_t errlen)
{
	if (e->job) {
		snprintf(err, errlen, "the session is generating");
		return -EBUSY;
	}
	for (uint32_t i = 0; i < n; i++)
		if (tokens[i] < 0 || (uint32_t)tokens[i] >= sc->n_vocab) {
			snprintf(err, errlen, "token %d (at %u) is outside the vocabulary of %u", tokens[i], i,
				 sc->n_vocab);
			return -EINVAL;
		}
	const uint32_t have = hyd__sess_replay_to(e->s), cap = hyd__sess_max_ctx(e->s);
	if (n > cap - have) {
		snprintf(err, errlen, "context full: %u + %u tokens exceed the session's %u", have, n, cap);
		return -ENOSPC;
	}
	/* new history: a stored random stream no longer continues it */
	hyd__sess_gen_clear(e->s);
	int r = hyd__sess_push_pending(e->s, tokens, n);
	if (r)
		snprintf(err, errlen, "cannot record the tokens: %s", strerror(-r));
	return r;
}

int hyd__sched_generate(struct hyd_sched *sc, struct hyd_sched_sess *e, uint64_t conn, uint64_t req,
			const struct hyd_sched_gen *g, char *err, size_t errlen)
{
	struct hyd__sess *s = e->s;
	if (e->job) {
		snprintf(err, errlen, "the session is already generating");
		return -EBUSY;
	}
	uint32_t pos = hyd__sess_pos(s), end = hyd__sess_replay_to(s);
	if (end == 0) {
		snprintf(err, errlen, "the session is empty: append a prompt first");
		return -EINVAL;
	}
	if (end >= hyd__sess_max_ctx(s)) {
		snprintf(err, errlen, "context full: the session holds %u of %u tokens", end,
			 hyd__sess_max_ctx(s));
		return -ENOSPC;
	}
	int r;
	if (end == pos) {
		/* No pending token (a session truncated by an older daemon, or whose context was
		 * full): recompute the logits of the last token by evaluating it again. */
		if ((r = hyd__sched_truncate(sc, e, end)) < 0) {
			snprintf(err, errlen, "cannot rewind the last token: %s", strerror(-r));
			return r;
		}
		pos = hyd__sess_pos(s);
	}
	struct hyd_sched_job *j = hyd_calloc(1, sizeof(*j));
	if (!j) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	j->e = e;
	j->conn = conn;
	j->req = req;
	j->g = *g;
	/* A client's seed names a stream: if the session holds that stream's state at its current
	 * length (a generation with this seed was interrupted, by a crash or max_tokens), it goes
	 * on from there, so the pieces equal one uninterrupted generation. */
	uint64_t seed = g->sp.seed;
	j->keep_rng = seed != 0;
	if (!j->keep_rng || !hyd__sess_gen_load(s, seed, j->rng.s)) {
		while (!seed && getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
			seed = now_ns();
		hyd_rng_seed(&j->rng, seed);
	}
	hyd_detok_init(sc->tk, &j->dt);
	j->dt.strip_leading_space = false; /* a continuation keeps its leading space */
	j->n_prompt = end - pos;
	j->t_start = now_ns();
	e->job = j;
	/* append: jobs start in arrival order within the round robin */
	struct hyd_sched_job **p = &sc->jobs;
	while (*p)
		p = &(*p)->next;
	*p = j;
	sc->n_jobs++;
	return 0;
}

static void finish(struct hyd_sched *sc, struct hyd_sched_job *j, uint32_t reason, int status, bool notify)
{
	if (notify) {
		uint64_t t = now_ns();
		struct hyd_sched_done d = {
			.reason = reason,
			.status = status,
			.n_prompt = j->n_prompt,
			.n_generated = j->n_generated,
			.prompt_ns = (j->t_first ? j->t_first : t) - j->t_start,
			.gen_ns = j->t_first ? t - j->t_first : 0,
		};
		sc->sink.done(sc->sink.ctx, j->conn, j->req, &d);
	}
	job_unlink(sc, j);
	job_free(j);
}

static int hold_add(struct hyd_sched_job *j, const char *text, size_t n)
{
	/* a token that completes no character yet (the first bytes of one) adds nothing */
	if (n == 0)
		return 0;
	if (j->hold_len + n > j->hold_cap) {
		size_t cap = (j->hold_len + n) * 2 + 64;
		char *h = hyd_realloc(j->hold, cap);
		if (!h)
			return -ENOMEM;
		j->hold = h;
		j->hold_cap = cap;
	}
	memcpy(j->hold + j->hold_len, text, n);
	j->hold_len += n;
	return 0;
}

/* Stream text (after a token, or the rest at the end: final).  Text that could be the start of
 * a stop string is held back.  1: a stop string matched (the text before it was sent); 0; < 0:
 * the client is gone. */
static int emit(struct hyd_sched *sc, struct hyd_sched_job *j, int32_t tok, const char *text, size_t n, bool final)
{
	int r = hold_add(j, text, n);
	if (r)
		return r;
	size_t send = j->hold_len, keep = 0;
	bool stopped = false;
	/* the hold is NULL until the first text arrives: no mem* call may see it empty */
	for (uint32_t i = 0; i < j->g.n_stop && j->hold_len; i++) {
		const char *m = memmem(j->hold, j->hold_len, j->g.stop[i], j->g.stop_len[i]);
		if (m && (size_t)(m - j->hold) < send) {
			send = (size_t)(m - j->hold);
			stopped = true;
		}
	}
	if (!stopped && !final) {
		/* keep the longest tail that is a proper prefix of a stop string */
		for (uint32_t i = 0; i < j->g.n_stop; i++) {
			size_t L = j->g.stop_len[i];
			for (size_t k = L - 1 < j->hold_len ? L - 1 : j->hold_len; k > keep; k--)
				if (!memcmp(j->hold + j->hold_len - k, j->g.stop[i], k)) {
					keep = k;
					break;
				}
		}
		send = j->hold_len - keep;
	}
	if (tok >= 0 || send) {
		r = sc->sink.token(sc->sink.ctx, j->conn, j->req, tok, j->hold, (uint32_t)send);
		if (r < 0)
			return r;
	}
	if (send)
		memmove(j->hold, j->hold + send, j->hold_len - send);
	j->hold_len -= send;
	if (stopped)
		j->hold_len = 0;
	return stopped ? 1 : 0;
}

/* End a job normally: flush the detokenizer and held text, then DONE. */
static void complete(struct hyd_sched *sc, struct hyd_sched_job *j, uint32_t reason, int status)
{
	int n = hyd_detok_flush(sc->tk, &j->dt, sc->piece, sc->piece_cap);
	int r = 0;
	if (reason != HYD_SCHED_STOP && (n > 0 || j->hold_len))
		r = emit(sc, j, -1, sc->piece, n > 0 ? (size_t)n : 0, true);
	finish(sc, j, reason, status, r >= 0);
}

int hyd__sched_cancel(struct hyd_sched *sc, uint64_t conn, uint64_t req)
{
	for (struct hyd_sched_job *j = sc->jobs; j; j = j->next)
		if (j->conn == conn && j->req == req) {
			complete(sc, j, HYD_SCHED_CANCELLED, 0);
			return 0;
		}
	return -ENOENT;
}

void hyd__sched_drop_conn(struct hyd_sched *sc, uint64_t conn)
{
	struct hyd_sched_job *j = sc->jobs;
	while (j) {
		struct hyd_sched_job *next = j->next;
		if (j->conn == conn)
			finish(sc, j, HYD_SCHED_CANCELLED, 0, false);
		j = next;
	}
}

/* After a step: j's session evaluated n tokens and their logits are lg.  Sample, record,
 * commit, stream. */
static void after_step(struct hyd_sched *sc, struct hyd_sched_job *j, uint32_t n, float *lg)
{
	struct hyd__sess *s = j->e->s;
	const uint32_t pos = hyd__sess_pos(s), end = hyd__sess_replay_to(s);
	const int32_t *hist = hyd__sess_tokens(s);
	int r;
	if (pos + n < end) {
		/* a prefill chunk with more to come: nothing to sample yet */
		if ((r = hyd__sess_commit(s, n, hist + pos)) < 0)
			finish(sc, j, HYD_SCHED_ERROR, r, true);
		return;
	}
	int32_t tok = hyd_sampler_pick(sc->smp, &j->g.sp, &j->rng, lg, hist, end);
	if (!j->t_first)
		j->t_first = now_ns();
	/* Record the sampled token before the commit makes the step count: a crash in between
	 * re-evaluates the step with this token (correct, if not the same chunking); a crash after
	 * it finds the token pending.  Either way nothing needs logits that are gone.  The random
	 * state after the draw goes first, tagged with the length the token makes: until the
	 * token is recorded the state for the current length stays valid in the other slot. */
	if (j->keep_rng)
		hyd__sess_gen_save(s, j->g.sp.seed, j->rng.s);
	bool recorded = hyd__sess_push_pending(s, &tok, 1) == 0;
	if ((r = hyd__sess_commit(s, n, hist + pos)) < 0) {
		finish(sc, j, HYD_SCHED_ERROR, r, true);
		return;
	}
	if (!recorded) {
		/* the context is full: the token has no place in the session */
		complete(sc, j, HYD_SCHED_MAX_TOKENS, 0);
		return;
	}
	if (hyd_tokenizer_is_eog(sc->tk, tok)) {
		complete(sc, j, HYD_SCHED_EOS, 0);
		return;
	}
	j->n_generated++;
	int len = hyd_detok_push(sc->tk, &j->dt, tok, sc->piece, sc->piece_cap);
	r = emit(sc, j, tok, sc->piece, len > 0 ? (size_t)len : 0, false);
	if (r < 0) {
		finish(sc, j, HYD_SCHED_CANCELLED, 0, false);
		return;
	}
	if (r > 0)
		complete(sc, j, HYD_SCHED_STOP, 0);
	else if (j->g.max_tokens && j->n_generated >= j->g.max_tokens)
		complete(sc, j, HYD_SCHED_MAX_TOKENS, 0);
	else if (hyd__sess_replay_to(s) >= hyd__sess_max_ctx(s))
		complete(sc, j, HYD_SCHED_MAX_TOKENS, 0);
}

int hyd__sched_step(struct hyd_sched *sc)
{
	if (!sc->n_jobs)
		return 0;
	/* Pick the batch: round robin over the jobs, starting one further each turn; the first
	 * session is always taken, the others while their chunk fits the row budget.  A chunk is
	 * never cut below max_chunk to fit, so a prompt is evaluated in the same chunks as by
	 * `hyd run` (same numbers). */
	const uint32_t nj = sc->n_jobs, start = (uint32_t)(sc->rr++ % nj);
	struct hyd_sched_job *j = sc->jobs;
	for (uint32_t i = 0; i < start; i++)
		j = j->next;
	uint32_t nb = 0, rows = 0, n_prefill = 0;
	for (uint32_t k = 0; k < nj && nb < sc->max_batch; k++, j = j->next ? j->next : sc->jobs) {
		if (sc->sink.paused && sc->sink.paused(sc->sink.ctx, j->conn))
			continue;
		struct hyd__sess *s = j->e->s;
		const uint32_t pos = hyd__sess_pos(s), end = hyd__sess_replay_to(s);
		uint32_t n = end - pos < sc->max_chunk ? end - pos : sc->max_chunk;
		if (n == 0 || (nb && rows + n > sc->row_budget))
			continue;
		sc->bjobs[nb] = j;
		sc->ns[nb] = n;
		nb++;
		rows += n;
		if (pos + n < end || j->t_first == 0)
			n_prefill += n;
	}
	if (!nb)
		return 0;
	/* Pages first: a session that cannot grow fails alone, before the step. */
	uint32_t ok = 0;
	for (uint32_t i = 0; i < nb; i++) {
		struct hyd_sched_job *b = sc->bjobs[i];
		struct hyd__sess *s = b->e->s;
		const uint32_t pos = hyd__sess_pos(s);
		int r = hyd__sess_ensure_capacity(s, pos + sc->ns[i]);
		if (r < 0) {
			finish(sc, b, HYD_SCHED_ERROR, r, true);
			continue;
		}
		sc->bjobs[ok] = b;
		sc->ns[ok] = sc->ns[i];
		sc->views[ok] = hyd__sess_view(s);
		sc->toks[ok] = hyd__sess_tokens(s) + pos;
		ok++;
	}
	if (!ok)
		return sc->n_jobs > 0;
	uint64_t t0 = now_ns();
	int r = hyd_model_step(sc->m, sc->views, sc->toks, sc->ns, ok, sc->logits, false);
	uint64_t dt = now_ns() - t0;
	if (r < 0) {
		for (uint32_t i = 0; i < ok; i++)
			finish(sc, sc->bjobs[i], HYD_SCHED_ERROR, r, true);
		return sc->n_jobs > 0;
	}
	uint32_t total = 0;
	for (uint32_t i = 0; i < ok; i++)
		total += sc->ns[i];
	n_prefill = n_prefill > total ? total : n_prefill;
	sc->st.steps++;
	sc->st.rows += total;
	sc->st.seqs += ok;
	sc->st.prompt_tokens += n_prefill;
	sc->st.gen_tokens += total - n_prefill;
	sc->st.prompt_ns += dt * n_prefill / total;
	sc->st.gen_ns += dt - dt * n_prefill / total;
	for (uint32_t i = 0; i < ok; i++)
		after_step(sc, sc->bjobs[i], sc->ns[i], sc->logits + (size_t)i * sc->n_vocab);
	return sc->n_jobs > 0;
}

void hyd__sched_stats(const struct hyd_sched *sc, struct hyd_sched_stats *ret)
{
	*ret = sc->st;
	ret->n_jobs = sc->n_jobs;
}
