/* hydd's request handlers. */
#include "config.h"

#include "daemon/wire.h" /* first: see why there */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/handlers.h"
#include "daemon/text_safe.h"
#include "daemon/tokenizer.h"
#include "engine/alloc.h"

_Static_assert((int)HYD_SCHED_EOS == (int)HYD_DONE_EOS && (int)HYD_SCHED_MAX_TOKENS == (int)HYD_DONE_MAX_TOKENS &&
		       (int)HYD_SCHED_STOP == (int)HYD_DONE_STOP && (int)HYD_SCHED_CANCELLED == (int)HYD_DONE_CANCELLED &&
		       (int)HYD_SCHED_ERROR == (int)HYD_DONE_ERROR,
	       "scheduler reasons are the wire's");
_Static_assert(HYD_SCHED_MAX_STOP >= HYD_PROTO_MAX_STOP && HYD_SCHED_STOP_LEN >= HYD_PROTO_STOP_MAX_LEN,
	       "stop strings fit");

/* A client further behind than this waits before its sessions get more steps. */
#define PAUSE_BACKLOG (256u << 10)

void hyd__hydd_vlog(const struct hydd *d, int level, const char *fmt, va_list ap)
{
	if (level >= HYD_SRV_LOG_DEBUG && (!d || d->verbose < 2))
		return;
	char buf[1024];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* one entry per line, whatever names and paths the message quotes */
	hyd__scrub_controls(buf);
	fprintf(stderr, "<%d>hydd: %s\n", level, buf);
}

void hyd__hydd_log(const struct hydd *d, int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	hyd__hydd_vlog(d, level, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ sink */

static int sink_token(void *ctx, uint64_t conn, uint64_t req, int32_t token, const char *text, uint32_t len)
{
	struct hydd *d = ctx;
	struct hyd_conn *c = hyd_server_conn_by_id(d->srv, conn);
	if (!c)
		return -ECONNRESET;
	return hyd_server_send_token(c, req, token, text, len);
}

static void sink_done(void *ctx, uint64_t conn, uint64_t req, const struct hyd_sched_done *sd)
{
	struct hydd *d = ctx;
	struct hyd_conn *c = hyd_server_conn_by_id(d->srv, conn);
	if (sd->reason == HYD_SCHED_ERROR)
		hyd__hydd_log(d, HYD_SRV_LOG_WARNING, "generation %llu of client %llu failed: %s",
			      (unsigned long long)req, (unsigned long long)conn, strerror(-sd->status));
	if (!c)
		return;
	struct hyd_wire_done w = {
		.reason = sd->reason,
		.status = sd->status,
		.n_prompt = sd->n_prompt,
		.n_generated = sd->n_generated,
		.prompt_ns = sd->prompt_ns,
		.gen_ns = sd->gen_ns,
	};
	hyd_server_send_done(c, req, &w);
}

static bool sink_paused(void *ctx, uint64_t conn)
{
	struct hydd *d = ctx;
	struct hyd_conn *c = hyd_server_conn_by_id(d->srv, conn);
	return c && hyd_server_conn_backlog(c) > PAUSE_BACKLOG;
}

void hyd__hydd_sink(struct hydd *d, struct hyd_sched_sink *ret)
{
	*ret = (struct hyd_sched_sink){ .ctx = d, .token = sink_token, .done = sink_done, .paused = sink_paused };
}

/* ------------------------------------------------------------------ helpers */

static int kind_slot(const char *kind)
{
	if (!strcmp(kind, "attn"))
		return 0;
	if (!strcmp(kind, "swa"))
		return 1;
	if (!strncmp(kind, "mamba", 5) || !strcmp(kind, "ssm") || !strcmp(kind, "rwkv") || !strcmp(kind, "gdn"))
		return 2;
	return 3;
}

static void fill_info(const struct hyd_sched_sess *e, struct hyd_wire_session_info *w)
{
	struct hyd__sess_usage u;
	hyd__sess_usage(e->s, &u);
	memset(w, 0, sizeof(*w));
	w->session = e->wid;
	w->n_tokens = hyd__sched_n_tokens(e);
	w->max_ctx = hyd__sess_max_ctx(e->s);
	w->bytes = u.total_bytes;
	w->uid = hyd__sess_owner(e->s);
	w->flags = e->job ? 1u : 0u; /* 1: generating */
	w->created_ns = (uint64_t)hyd__sess_created(e->s) * 1000000000u;
	snprintf(w->name, sizeof(w->name), "%s", hyd__sess_label(e->s));
	for (uint32_t k = 0; k < u.n_kinds; k++)
		w->kind_bytes[kind_slot(u.kinds[k].kind)] += u.kinds[k].fixed_bytes + u.kinds[k].page_bytes;
}

static int send_info(struct hyd_conn *c, uint64_t id, const struct hyd_sched_sess *e)
{
	struct hyd_wire_session_info w;
	fill_info(e, &w);
	return hyd_server_send(c, HYD_EVT_SESSION_INFO, id, &w, sizeof(w));
}

#define FAIL(err_, ...)                                                   \
	do {                                                              \
		hyd_server_send_error(c, req->id, (err_), __VA_ARGS__);   \
		return 0;                                                 \
	} while (0)

static struct hyd_sched_sess *lookup(struct hydd *d, struct hyd_conn *c, uint64_t wid)
{
	return hyd__sched_find(d->sc, wid, hyd_server_conn_uid(c));
}

/* The caller's session with wire id `id`, or NULL after answering the request with the
 * error; with need_idle, a session that is generating is refused too. */
static struct hyd_sched_sess *session_or_fail(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req,
					       uint64_t id, bool need_idle)
{
	struct hyd_sched_sess *e = lookup(d, c, id);
	if (!e)
		hyd_server_send_error(c, req->id, -ENOENT, "no session %016llx", (unsigned long long)id);
	else if (need_idle && e->job)
		hyd_server_send_error(c, req->id, -EBUSY, "the session is generating");
	else
		return e;
	return NULL;
}

/* Memory admission: can session e (NULL: a new one) grow to n tokens within --memory-limit? */
static int admit(struct hydd *d, const struct hyd_sched_sess *e, uint32_t n, char *err, size_t errlen)
{
	const uint64_t limit = d->cfg->memory_limit;
	if (!limit)
		return 0;
	struct hyd__sess_usage all, mine = { 0 };
	hyd__sess_store_usage(d->store, &all);
	if (e)
		hyd__sess_usage(e->s, &mine);
	const uint64_t need = hyd__sess_bytes_for(&d->smodel, n);
	const uint64_t extra = need > mine.total_bytes ? need - mine.total_bytes : 0;
	if (all.total_bytes + extra > limit) {
		snprintf(err, errlen,
			 "memory limit: %u tokens need %llu more bytes; %llu of --memory-limit %llu are in use",
			 n, (unsigned long long)extra, (unsigned long long)all.total_bytes,
			 (unsigned long long)limit);
		return -ENOSPC;
	}
	return 0;
}

static int name_taken(struct hydd *d, uint32_t uid, const char *name)
{
	return name[0] && hyd__sched_find_name(d->sc, name, uid) != NULL;
}

/* Register a new session; on a wire id collision (2^-64) the file is deleted. */
static int register_new(struct hydd *d, struct hyd__sess *s, struct hyd_sched_sess **ret)
{
	int r = hyd__sched_add(d->sc, s, ret);
	if (r < 0)
		hyd__sess_delete(s);
	return r;
}

/* ------------------------------------------------------------------ requests */

static int do_create(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hyd_wire_create m;
	memcpy(&m, req->payload, sizeof(m));
	const uint32_t uid = hyd_server_conn_uid(c);
	char err[256];
	if (!hyd__text_ok(m.name))
		FAIL(-EINVAL, "a session name must be UTF-8 text without control characters");
	if (m.max_ctx > d->smodel.max_ctx)
		FAIL(-E2BIG, "max_ctx %u exceeds the daemon's --max-context of %u tokens", m.max_ctx,
		     d->smodel.max_ctx);
	if (name_taken(d, uid, m.name))
		FAIL(-EEXIST, "a session named '%s' exists", m.name);
	if (hyd__sched_n_sessions(d->sc) >= d->max_sessions)
		FAIL(-ENOSPC, "too many sessions (--max-sessions %u)", d->max_sessions);
	int r = admit(d, NULL, 0, err, sizeof(err));
	if (r < 0)
		FAIL(r, "%s", err);
	struct hyd__sess *s;
	struct hyd_sched_sess *e;
	if ((r = hyd__sess_create(d->store, uid, m.name[0] ? m.name : NULL, &s)) < 0)
		FAIL(r, "cannot create a session: %s", strerror(-r));
	if ((r = register_new(d, s, &e)) < 0)
		FAIL(r, "cannot register the session: %s", strerror(-r));
	hyd__hydd_log(d, HYD_SRV_LOG_DEBUG, "uid %u created session %s '%s'", uid, hyd__sess_id(s), m.name);
	send_info(c, req->id, e);
	return 0;
}

static int do_open(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hyd_wire_open m;
	memcpy(&m, req->payload, sizeof(m));
	const uint32_t uid = hyd_server_conn_uid(c);
	struct hyd_sched_sess *e = m.session ? hyd__sched_find(d->sc, m.session, uid) :
					       hyd__sched_find_name(d->sc, m.name, uid);
	if (!e) {
		if (m.session)
			FAIL(-ENOENT, "no session %016llx for uid %u", (unsigned long long)m.session, uid);
		FAIL(-ENOENT, "no session named '%s' for uid %u", m.name, uid);
	}
	send_info(c, req->id, e);
	return 0;
}

static int do_append(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req, bool text)
{
	struct hyd_wire_append m;
	memcpy(&m, req->payload, sizeof(m));
	const char *data = (const char *)req->payload + sizeof(m);
	struct hyd_sched_sess *e = session_or_fail(d, c, req, m.session, true);
	if (!e)
		return 0;
	const struct hyd_tokenizer *tk = hyd_model_tokenizer(d->m);
	const bool bos = (m.flags & HYD_APPEND_BOS) && hyd__sched_n_tokens(e) == 0 && hyd_tokenizer_add_bos(tk) &&
			 hyd_tokenizer_bos(tk) >= 0;
	int32_t *toks = NULL;
	size_t n = 0;
	int r;
	char err[256];
	if (text) {
		size_t nt;
		int32_t *t;
		if ((r = hyd_tokenizer_encode(tk, data, m.count, (m.flags & HYD_APPEND_SPECIAL) ? HYD_TOK_PARSE_SPECIAL : 0,
				      &t, &nt)) < 0)
			FAIL(r, "cannot tokenize the text: %s", strerror(-r));
		toks = hyd_malloc((nt + 1) * sizeof(*toks));
		if (!toks) {
			hyd_free(t);
			FAIL(-ENOMEM, "out of memory");
		}
		if (bos)
			toks[n++] = hyd_tokenizer_bos(tk);
		memcpy(toks + n, t, nt * sizeof(*t));
		n += nt;
		hyd_free(t);
	} else {
		toks = hyd_malloc(((size_t)m.count + 1) * sizeof(*toks));
		if (!toks)
			FAIL(-ENOMEM, "out of memory");
		if (bos)
			toks[n++] = hyd_tokenizer_bos(tk);
		memcpy(toks + n, data, (size_t)m.count * sizeof(*toks));
		n += m.count;
	}
	const uint64_t total = (uint64_t)hyd__sched_n_tokens(e) + n;
	if (total > hyd__sess_max_ctx(e->s)) {
		hyd_free(toks);
		FAIL(-ENOSPC, "context full: %u + %zu tokens exceed the session's %u", hyd__sched_n_tokens(e), n,
		     hyd__sess_max_ctx(e->s));
	}
	if ((r = admit(d, e, (uint32_t)total, err, sizeof(err))) == 0)
		r = hyd__sched_append(d->sc, e, toks, (uint32_t)n, err, sizeof(err));
	hyd_free(toks);
	if (r < 0)
		FAIL(r, "%s", err);
	send_info(c, req->id, e);
	return 0;
}

static int do_generate(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hyd_wire_generate m;
	memcpy(&m, req->payload, sizeof(m));
	struct hyd_sched_sess *e = session_or_fail(d, c, req, m.session, false);
	if (!e)
		return 0;
	struct hyd_sched_gen *g = hyd_calloc(1, sizeof(*g));
	if (!g)
		FAIL(-ENOMEM, "out of memory");
	g->sp = (struct hyd_sampler_params){
		.temperature = m.s.temperature,
		.top_k = m.s.top_k,
		.top_p = m.s.top_p,
		.min_p = m.s.min_p,
		.repeat_penalty = m.s.repeat_penalty,
		.repeat_last_n = m.s.repeat_last_n,
		.seed = m.s.seed,
	};
	g->max_tokens = m.s.max_tokens;
	char err[256];
	int r = hyd_sampler_validate(&g->sp, err, sizeof(err));
	uint32_t off = 0, len;
	const char *s;
	while (r == 0 && hyd__proto_next_stop((const struct hyd_wire_generate *)req->payload, req->len, &off, &s,
					      &len) == 1) {
		if (g->n_stop >= HYD_SCHED_MAX_STOP || len == 0 || len > HYD_SCHED_STOP_LEN) {
			snprintf(err, sizeof(err), "bad stop string %u", g->n_stop);
			r = -EINVAL;
			break;
		}
		memcpy(g->stop[g->n_stop], s, len);
		g->stop_len[g->n_stop++] = (uint16_t)len;
	}
	if (r == 0 && g->max_tokens) {
		uint64_t want = (uint64_t)hyd__sched_n_tokens(e) + g->max_tokens;
		uint32_t cap = hyd__sess_max_ctx(e->s);
		r = admit(d, e, want < cap ? (uint32_t)want : cap, err, sizeof(err));
	}
	if (r == 0)
		r = hyd__sched_generate(d->sc, e, hyd_server_conn_id(c), req->id, g, err, sizeof(err));
	hyd_free(g);
	if (r < 0)
		FAIL(r, "%s", err);
	return 0;
}

static int do_truncate(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hyd_wire_truncate m;
	memcpy(&m, req->payload, sizeof(m));
	struct hyd_sched_sess *e = session_or_fail(d, c, req, m.session, true);
	if (!e)
		return 0;
	if (m.n_tokens > hyd__sched_n_tokens(e))
		FAIL(-EINVAL, "cannot keep %u tokens: the session has %u", m.n_tokens, hyd__sched_n_tokens(e));
	int r = hyd__sched_truncate(d->sc, e, m.n_tokens);
	if (r < 0)
		FAIL(r, "truncate failed: %s", strerror(-r));
	send_info(c, req->id, e);
	return 0;
}

static int do_fork(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hyd_wire_open m;
	memcpy(&m, req->payload, sizeof(m));
	const uint32_t uid = hyd_server_conn_uid(c);
	struct hyd_sched_sess *e = session_or_fail(d, c, req, m.session, false), *ne;
	if (!e)
		return 0;
	if (!hyd__text_ok(m.name))
		FAIL(-EINVAL, "a session name must be UTF-8 text without control characters");
	if (name_taken(d, uid, m.name))
		FAIL(-EEXIST, "a session named '%s' exists", m.name);
	if (hyd__sched_n_sessions(d->sc) >= d->max_sessions)
		FAIL(-ENOSPC, "too many sessions (--max-sessions %u)", d->max_sessions);
	struct hyd__sess_usage u;
	hyd__sess_usage(e->s, &u);
	if (d->cfg->memory_limit) {
		struct hyd__sess_usage all;
		hyd__sess_store_usage(d->store, &all);
		if (all.total_bytes + u.total_bytes > d->cfg->memory_limit)
			FAIL(-ENOSPC, "memory limit: a copy needs %llu bytes; %llu of --memory-limit %llu are in use",
			     (unsigned long long)u.total_bytes, (unsigned long long)all.total_bytes,
			     (unsigned long long)d->cfg->memory_limit);
	}
	struct hyd__sess *s;
	/* names are unique per uid: a fork without a name is unnamed, not a second "trunk" */
	int r = hyd__sess_fork(d->store, e->s, uid, m.name, &s);
	if (r < 0)
		FAIL(r, "cannot fork the session: %s", strerror(-r));
	if ((r = register_new(d, s, &ne)) < 0)
		FAIL(r, "cannot register the session: %s", strerror(-r));
	send_info(c, req->id, ne);
	return 0;
}

/* Where a snapshot path of this client may go.  A client of the daemon's own uid may use any
 * absolute path (it could write there itself).  Any other uid (a system daemon serving users)
 * names a plain file, kept in <state-dir>/snapshots/<uid>/: the daemon never writes or reads
 * elsewhere on another user's behalf. */
static int snapshot_path(struct hydd *d, struct hyd_conn *c, const char *p, uint32_t len, char *out, size_t cap,
			 char *err, size_t errlen)
{
	const uid_t uid = hyd_server_conn_uid(c);
	if (uid == geteuid()) {
		if (p[0] != '/') {
			snprintf(err, errlen, "snapshot path must be absolute (the daemon's working directory is not yours)");
			return -EINVAL;
		}
		if (len >= cap) {
			snprintf(err, errlen, "path too long");
			return -ENAMETOOLONG;
		}
		memcpy(out, p, len);
		out[len] = 0;
		return 0;
	}
	if (memchr(p, '/', len) || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) {
		snprintf(err, errlen, "snapshots of uid %u are plain names, kept in %.256s/snapshots/%u/", (unsigned)uid,
			 d->state_dir, (unsigned)uid);
		return -EACCES;
	}
	int n = snprintf(out, cap, "%s/snapshots", d->state_dir);
	if (n < 0 || (size_t)n >= cap) {
		snprintf(err, errlen, "path too long");
		return -ENAMETOOLONG;
	}
	if (mkdir(out, 0700) < 0 && errno != EEXIST) {
		int e = errno;
		snprintf(err, errlen, "cannot create %.256s: %s", out, strerror(e));
		return -e;
	}
	n = snprintf(out, cap, "%s/snapshots/%u", d->state_dir, (unsigned)uid);
	if (n < 0 || (size_t)n >= cap) {
		snprintf(err, errlen, "path too long");
		return -ENAMETOOLONG;
	}
	if (mkdir(out, 0700) < 0 && errno != EEXIST) {
		int e = errno;
		snprintf(err, errlen, "cannot create %.256s: %s", out, strerror(e));
		return -e;
	}
	n = snprintf(out, cap, "%s/snapshots/%u/%.*s", d->state_dir, (unsigned)uid, (int)len, p);
	if (n < 0 || (size_t)n >= cap) {
		snprintf(err, errlen, "path too long");
		return -ENAMETOOLONG;
	}
	return 0;
}

static int do_snapshot(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hyd_wire_path m;
	memcpy(&m, req->payload, sizeof(m));
	struct hyd_sched_sess *e = session_or_fail(d, c, req, m.session, false);
	if (!e)
		return 0;
	char path[PATH_MAX], err[512];
	int r = snapshot_path(d, c, (const char *)req->payload + sizeof(m), m.path_len, path, sizeof(path), err,
			      sizeof(err));
	if (r < 0)
		FAIL(r, "%s", err);
	if ((r = hyd__sess_snapshot(e->s, path)) < 0)
		FAIL(r, "cannot write the snapshot %s: %s", path, strerror(-r));
	hyd__hydd_log(d, HYD_SRV_LOG_DEBUG, "snapshot of %s written to %s", hyd__sess_id(e->s), path);
	hyd_server_send_ok(c, req->id, 0);
	return 0;
}

static int do_restore(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hyd_wire_path m;
	memcpy(&m, req->payload, sizeof(m));
	const uint32_t uid = hyd_server_conn_uid(c);
	char path[PATH_MAX], err[512];
	int r = snapshot_path(d, c, (const char *)req->payload + sizeof(m), m.path_len, path, sizeof(path), err,
			      sizeof(err));
	if (r < 0)
		FAIL(r, "%s", err);
	if (!hyd__text_ok(m.name))
		FAIL(-EINVAL, "a session name must be UTF-8 text without control characters");
	if (name_taken(d, uid, m.name))
		FAIL(-EEXIST, "a session named '%s' exists", m.name);
	if (hyd__sched_n_sessions(d->sc) >= d->max_sessions)
		FAIL(-ENOSPC, "too many sessions (--max-sessions %u)", d->max_sessions);
	struct hyd__sess *s;
	struct hyd_sched_sess *e;
	if ((r = hyd__sess_restore(d->store, path, uid, m.name[0] ? m.name : NULL, &s, err, sizeof(err))) < 0) {
		if (r == -EBADMSG && (strstr(err, "fingerprint") || strstr(err, "layout")))
			r = -ESTALE;
		FAIL(r, "cannot restore %s: %s", path, err[0] ? err : strerror(-r));
	}
	if (!m.name[0] && name_taken(d, uid, hyd__sess_label(s))) {
		/* the label lives in the session: copy it before the session goes */
		char label[sizeof(m.name)];
		snprintf(label, sizeof(label), "%s", hyd__sess_label(s));
		hyd__sess_delete(s);
		FAIL(-EEXIST, "the snapshot's session name '%s' is in use: restore it under another name", label);
	}
	if ((r = register_new(d, s, &e)) < 0)
		FAIL(r, "cannot register the session: %s", strerror(-r));
	send_info(c, req->id, e);
	return 0;
}

static int do_delete(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hyd_wire_session m;
	memcpy(&m, req->payload, sizeof(m));
	struct hyd_sched_sess *e = session_or_fail(d, c, req, m.session, true);
	if (!e)
		return 0;
	struct hyd__sess *s = hyd__sched_remove(d->sc, e);
	int r = hyd__sess_delete(s);
	if (r < 0)
		FAIL(r, "cannot delete the session file: %s", strerror(-r));
	hyd_server_send_ok(c, req->id, 0);
	return 0;
}

static int do_list(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	const uint32_t uid = hyd_server_conn_uid(c);
	uint64_t n = 0;
	for (struct hyd_sched_sess *e = hyd__sched_sessions(d->sc); e; e = e->next) {
		if (hyd__sess_owner(e->s) != uid)
			continue;
		struct hyd_wire_session_info w;
		fill_info(e, &w);
		if (hyd_server_send(c, HYD_EVT_LIST_ITEM, req->id, &w, sizeof(w)) < 0)
			return 0;
		n++;
	}
	hyd_server_send_ok(c, req->id, n);
	return 0;
}

static int do_status(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hyd_wire_status w;
	memset(&w, 0, sizeof(w));
	struct hyd__sess_usage u;
	hyd__sess_store_usage(d->store, &u);
	struct hyd_sched_stats ss;
	hyd__sched_stats(d->sc, &ss);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	w.n_sessions = hyd__sched_n_sessions(d->sc);
	w.n_clients = hyd_server_n_clients(d->srv);
	w.uptime_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec - d->t_start_ns;
	w.mem_total = u.total_bytes;
	w.mem_limit = d->cfg->memory_limit;
	w.prompt_tok_s = ss.prompt_ns ? ss.prompt_tokens * 1e9 / (double)ss.prompt_ns : 0;
	w.gen_tok_s = ss.gen_ns ? ss.gen_tokens * 1e9 / (double)ss.gen_ns : 0;
	snprintf(w.model, sizeof(w.model), "%s", d->model_name);
	snprintf(w.arch, sizeof(w.arch), "%s", hyd_model_arch(d->m));
	snprintf(w.backend, sizeof(w.backend), "%s", hyd_server_backend(d->srv));
	/* the header bytes (token history) go first, as their own kind */
	if (u.header_bytes) {
		snprintf(w.kinds[0].kind, sizeof(w.kinds[0].kind), "header");
		w.kinds[0].bytes = u.header_bytes;
		w.kinds[0].tokens = u.tokens;
		w.n_kinds = 1;
	}
	for (uint32_t k = 0; k < u.n_kinds && w.n_kinds < HYD_WIRE_MAX_KINDS; k++, w.n_kinds++) {
		struct hyd_wire_kind_mem *km = &w.kinds[w.n_kinds];
		snprintf(km->kind, sizeof(km->kind), "%s", u.kinds[k].kind);
		km->bytes = u.kinds[k].fixed_bytes + u.kinds[k].page_bytes;
		km->tokens = u.tokens;
	}
	hyd_server_send(c, HYD_EVT_STATUS_INFO, req->id, &w, sizeof(w));
	return 0;
}

static int do_tokenize(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hyd_wire_append m;
	memcpy(&m, req->payload, sizeof(m));
	const struct hyd_tokenizer *tk = hyd_model_tokenizer(d->m);
	unsigned flags = (m.flags & HYD_APPEND_SPECIAL) ? HYD_TOK_PARSE_SPECIAL : 0;
	int32_t *t;
	size_t n;
	int r = hyd_tokenizer_encode(tk, (const char *)req->payload + sizeof(m), m.count, flags, &t, &n);
	if (r < 0)
		FAIL(r, "cannot tokenize the text: %s", strerror(-r));
	const bool bos = (m.flags & HYD_APPEND_BOS) && hyd_tokenizer_add_bos(tk) && hyd_tokenizer_bos(tk) >= 0;
	int32_t b = hyd_tokenizer_bos(tk);
	struct hyd_wire_tokens w = { .n = (uint32_t)(n + bos) };
	struct iovec v[3] = { { &w, sizeof(w) }, { &b, bos ? sizeof(b) : 0 }, { t, n * sizeof(*t) } };
	hyd_server_sendv(c, HYD_EVT_TOKENS, req->id, v, 3);
	hyd_free(t);
	return 0;
}

static int do_cancel(struct hydd *d, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hyd_wire_cancel m;
	memcpy(&m, req->payload, sizeof(m));
	/* A generation that already ended is not an error: the race is the client's normal case. */
	int r = hyd__sched_cancel(d->sc, hyd_server_conn_id(c), m.target);
	hyd_server_send_ok(c, req->id, r == 0 ? 1 : 0);
	return 0;
}

int hyd__hydd_on_request(void *userdata, struct hyd_conn *c, const struct hyd_request *req)
{
	struct hydd *d = userdata;
	hyd__hydd_log(d, HYD_SRV_LOG_DEBUG, "client %llu (uid %u): %s #%llu", (unsigned long long)hyd_server_conn_id(c),
		      (unsigned)hyd_server_conn_uid(c), hyd__proto_type_name(req->type), (unsigned long long)req->id);
	switch (req->type) {
	case HYD_REQ_CREATE: return do_create(d, c, req);
	case HYD_REQ_OPEN: return do_open(d, c, req);
	case HYD_REQ_APPEND_TEXT: return do_append(d, c, req, true);
	case HYD_REQ_APPEND_TOKENS: return do_append(d, c, req, false);
	case HYD_REQ_GENERATE: return do_generate(d, c, req);
	case HYD_REQ_CANCEL: return do_cancel(d, c, req);
	case HYD_REQ_TRUNCATE: return do_truncate(d, c, req);
	case HYD_REQ_FORK: return do_fork(d, c, req);
	case HYD_REQ_SNAPSHOT: return do_snapshot(d, c, req);
	case HYD_REQ_RESTORE: return do_restore(d, c, req);
	case HYD_REQ_DELETE: return do_delete(d, c, req);
	case HYD_REQ_LIST: return do_list(d, c, req);
	case HYD_REQ_STATUS: return do_status(d, c, req);
	case HYD_REQ_TOKENIZE: return do_tokenize(d, c, req);
	}
	return -EPROTO;
}

void hyd__hydd_on_disconnect(void *userdata, struct hyd_conn *c)
{
	struct hydd *d = userdata;
	hyd__sched_drop_conn(d->sc, hyd_server_conn_id(c));
}

int hyd__hydd_on_idle(void *userdata)
{
	struct hydd *d = userdata;
	return hyd__sched_step(d->sc);
}
