/* hydd's scheduler: the sessions the daemon has attached, the generations running on them, and
 * continuous batching: every turn takes the sessions with work (a prefill chunk of pending
 * tokens, or one decode step), runs them through ONE hyd_model_step(), commits each session and
 * streams what was sampled.
 *
 * A session's tokens are [0, pos) evaluated and committed, then [pos, replay_to) pending
 * (recorded in the session file, not yet evaluated: hyd__sess_push_pending()).  Appending
 * text only records pending tokens; a generation evaluates them (chunks of at most max_chunk,
 * from pos, as `hyd run` does), samples a token, records it as pending BEFORE committing the
 * step, and streams it.  So a non-empty session always ends with a pending token, and a
 * generation, also after a SIGKILL and restart, can always start by evaluating it: nothing but
 * the committed state is needed to continue (docs/SESSIONS.md, "Generation across crashes").
 *
 * The scheduler does not know the transport: it reports through a sink, by connection and
 * request id.  Single-threaded, like the store. */
#ifndef HYD_DAEMON_SCHEDULER_H
#define HYD_DAEMON_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/model.h"
#include "daemon/sampler.h"
#include "daemon/session.h"

struct hyd_sched;
struct hyd_sched_job;

/* The values of enum hyd_done_reason (include/hyd/client.h). */
enum { HYD_SCHED_EOS = 0, HYD_SCHED_MAX_TOKENS, HYD_SCHED_STOP, HYD_SCHED_CANCELLED, HYD_SCHED_ERROR };

struct hyd_sched_done {
	uint32_t reason;
	int32_t status;       /* negative errno with HYD_SCHED_ERROR */
	uint32_t n_prompt;    /* tokens evaluated before the first sampled one */
	uint32_t n_generated; /* tokens streamed (an end-of-generation token is not counted) */
	uint64_t prompt_ns, gen_ns;
};

struct hyd_sched_sink {
	void *ctx;
	/* A sampled token and the text it completes (may be empty; token -1: text held back until
	 * the end, without a token of its own).  < 0: the client is gone, the job ends silently. */
	int (*token)(void *ctx, uint64_t conn, uint64_t req, int32_t token, const char *text, uint32_t len);
	/* The terminal event of a generation. */
	void (*done)(void *ctx, uint64_t conn, uint64_t req, const struct hyd_sched_done *d);
	/* True while the client is too far behind reading: its jobs wait.  Optional. */
	bool (*paused)(void *ctx, uint64_t conn);
};

/* One attached session. */
struct hyd_sched_sess {
	struct hyd__sess *s;
	uint64_t wid;               /* the id on the wire: the first 64 of the id's 128 random bits */
	struct hyd_sched_job *job;  /* the generation running on it, or NULL */
	struct hyd_sched_sess *next;
};

struct hyd_sched_opts {
	uint32_t max_batch;   /* sessions in one step; 0: 16 */
	uint32_t row_budget;  /* token rows in one step (the first session is always taken); 0: 2 x max_chunk */
};

/* A generate request, already validated by the caller (hyd_sampler_validate). */
#define HYD_SCHED_MAX_STOP 16
#define HYD_SCHED_STOP_LEN 255
struct hyd_sched_gen {
	/* seed 0: random; otherwise a stream of that seed stored in the session at its current
	 * length is resumed (hyd__sess_gen_load(), docs/SESSIONS.md) */
	struct hyd_sampler_params sp;
	uint32_t max_tokens;    /* 0: until end of generation or the context is full */
	uint32_t n_stop;
	uint16_t stop_len[HYD_SCHED_MAX_STOP];
	char stop[HYD_SCHED_MAX_STOP][HYD_SCHED_STOP_LEN];
};

struct hyd_sched_stats {
	uint64_t steps;
	uint64_t rows;            /* token rows evaluated */
	uint64_t seqs;            /* sessions summed over steps (seqs / steps: the mean batch) */
	uint64_t prompt_tokens, gen_tokens;
	uint64_t prompt_ns, gen_ns; /* step time, split between the two by rows */
	uint32_t n_jobs;
};

int hyd__sched_new(struct hyd_model *m, const struct hyd_sched_opts *opts, const struct hyd_sched_sink *sink,
		   struct hyd_sched **ret);
/* Ends every job silently and detaches every session. Accepts NULL. */
void hyd__sched_free(struct hyd_sched *sc);

/* Register an attached session (the scheduler detaches it at free).  -EEXIST if its wire id is
 * taken (then the caller still owns s), -EINVAL for an id that is not hex, -ENOMEM. */
int hyd__sched_add(struct hyd_sched *sc, struct hyd__sess *s, struct hyd_sched_sess **ret);
/* Forget a session (not generating) and hand it back to the caller to detach or delete. */
struct hyd__sess *hyd__sched_remove(struct hyd_sched *sc, struct hyd_sched_sess *e);
/* By wire id / by label, owned by uid (HYD_SESSION_ANY_UID: any).  NULL if none. */
struct hyd_sched_sess *hyd__sched_find(struct hyd_sched *sc, uint64_t wid, uint32_t uid);
struct hyd_sched_sess *hyd__sched_find_name(struct hyd_sched *sc, const char *name, uint32_t uid);
struct hyd_sched_sess *hyd__sched_sessions(struct hyd_sched *sc); /* the list, via ->next */
uint32_t hyd__sched_n_sessions(const struct hyd_sched *sc);
/* The wire id of a store id (first 16 hex digits).  0 if not hex. */
uint64_t hyd__sched_wid(const char *id);

/* All tokens of the session, evaluated or pending (what a client sees as its length). */
uint32_t hyd__sched_n_tokens(const struct hyd_sched_sess *e);
/* Keep the first n tokens (n <= hyd__sched_n_tokens()), so that the last one is pending.
 * -EBUSY while generating, -EINVAL past the end. */
int hyd__sched_truncate(struct hyd_sched *sc, struct hyd_sched_sess *e, uint32_t n);
/* Record tokens (checked against the vocabulary) as pending.  -EBUSY, -EINVAL, -ENOSPC
 * (context full). */
int hyd__sched_append(struct hyd_sched *sc, struct hyd_sched_sess *e, const int32_t *tokens, uint32_t n,
		      char *err, size_t errlen);

/* Start a generation for client conn, request req.  -EBUSY (already generating), -EINVAL
 * (empty session), -ENOSPC (context full), -ENOMEM; err says why. */
int hyd__sched_generate(struct hyd_sched *sc, struct hyd_sched_sess *e, uint64_t conn, uint64_t req,
			const struct hyd_sched_gen *g, char *err, size_t errlen);
/* End the job of (conn, req) with HYD_SCHED_CANCELLED.  -ENOENT if there is none. */
int hyd__sched_cancel(struct hyd_sched *sc, uint64_t conn, uint64_t req);
/* The client is gone: its jobs end without events. */
void hyd__sched_drop_conn(struct hyd_sched *sc, uint64_t conn);

/* One batched step.  1: more work is pending, 0: idle (or every job waits for a slow client). */
int hyd__sched_step(struct hyd_sched *sc);

void hyd__sched_stats(const struct hyd_sched *sc, struct hyd_sched_stats *ret);

#endif
