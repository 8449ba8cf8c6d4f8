/* The server loop (daemon/server.c) with a fake session handler, driven through libhyd:
 * round trips, fragmentation both ways, streaming in both API forms, cancel, clients that die
 * mid-stream or send garbage, slow readers; every test runs on io_uring and on epoll (_i). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/server.h"
#include "hyd/client.h"
#include "ipc/shm.h"
#include "ipc/socket.h"

/* ---------------------------------------------------------------- the fake handler */

#define MAX_SESS 64
#define MAX_GEN 16

struct fake_session {
	uint64_t id;
	uid_t uid;
	uint32_t n_tokens;
	char name[HYD_PROTO_NAME_MAX];
};

struct fake_gen {
	bool active;
	uint64_t conn_id, req_id, session;
	uint32_t max, done;
	bool cancel;
};

struct fake {
	struct hyd_server *srv;
	struct fake_session sess[MAX_SESS];
	uint64_t next_sess;
	struct fake_gen gen[MAX_GEN];
	_Atomic int connects, disconnects, timers, posts;
	_Atomic bool no_pause;   /* keep producing for clients that do not read (set while it runs) */
};

static struct fake_session *find_sess(struct fake *f, uid_t uid, uint64_t id, const char *name)
{
	for (int i = 0; i < MAX_SESS; i++) {
		struct fake_session *s = &f->sess[i];
		if (!s->id || s->uid != uid)
			continue;
		if (id ? s->id == id : (name && *name && !strcmp(s->name, name)))
			return s;
	}
	return NULL;
}

static int send_info(struct hyd_conn *c, uint16_t type, uint64_t id, const struct fake_session *s)
{
	struct hyd_wire_session_info w = { .session = s->id, .n_tokens = s->n_tokens, .max_ctx = 4096,
					   .uid = s->uid, .bytes = 1000 + s->n_tokens };
	memcpy(w.name, s->name, sizeof(w.name));
	return hyd_server_send(c, type, id, &w, sizeof(w));
}

static int on_connect(void *ud, struct hyd_conn *c)
{
	struct fake *f = ud;
	f->connects++;
	return 0;
}

static void on_disconnect(void *ud, struct hyd_conn *c)
{
	struct fake *f = ud;
	for (int i = 0; i < MAX_GEN; i++)
		if (f->gen[i].active && f->gen[i].conn_id == hyd_server_conn_id(c))
			f->gen[i].active = false;
	f->disconnects++;
}

static int on_request(void *ud, struct hyd_conn *c, const struct hyd_request *req)
{
	struct fake *f = ud;
	uid_t uid = hyd_server_conn_uid(c);
	const uint8_t *p = req->payload;
	switch (req->type) {
	case HYD_REQ_CREATE: {
		const struct hyd_wire_create *m = req->payload;
		if (*m->name && find_sess(f, uid, 0, m->name))
			return -EEXIST;
		for (int i = 0; i < MAX_SESS; i++) {
			if (f->sess[i].id)
				continue;
			f->sess[i] = (struct fake_session){ .id = ++f->next_sess, .uid = uid };
			memcpy(f->sess[i].name, m->name, sizeof(m->name));
			return send_info(c, HYD_EVT_SESSION_INFO, req->id, &f->sess[i]);
		}
		return -ENOSPC;
	}
	case HYD_REQ_OPEN: {
		const struct hyd_wire_open *m = req->payload;
		struct fake_session *s = find_sess(f, uid, m->session, m->name);
		if (!s) {
			hyd_server_send_error(c, req->id, -ENOENT, "no session '%s'", m->name);
			return 0;
		}
		return send_info(c, HYD_EVT_SESSION_INFO, req->id, s);
	}
	case HYD_REQ_APPEND_TEXT:
	case HYD_REQ_APPEND_TOKENS: {
		const struct hyd_wire_append *m = req->payload;
		struct fake_session *s = find_sess(f, uid, m->session, NULL);
		if (!s)
			return -ENOENT;
		/* the fake "tokenizer": one token per byte; check the text arrived intact */
		if (req->type == HYD_REQ_APPEND_TEXT)
			for (uint32_t i = 0; i < m->count; i++)
				if (p[sizeof(*m) + i] != (uint8_t)('a' + i % 26))
					return -EILSEQ;
		s->n_tokens += m->count;
		return send_info(c, HYD_EVT_SESSION_INFO, req->id, s);
	}
	case HYD_REQ_TOKENIZE: {
		const struct hyd_wire_append *m = req->payload;
		size_t n = m->count;
		int32_t *t = malloc(n * sizeof(int32_t) + 1);
		for (size_t i = 0; i < n; i++)
			t[i] = p[sizeof(*m) + i];
		struct hyd_wire_tokens w = { .n = (uint32_t)n };
		struct iovec v[2] = { { &w, sizeof(w) }, { t, n * sizeof(int32_t) } };
		int err = hyd_server_sendv(c, HYD_EVT_TOKENS, req->id, v, 2);
		free(t);
		return err;
	}
	case HYD_REQ_GENERATE: {
		const struct hyd_wire_generate *m = req->payload;
		if (!find_sess(f, uid, m->session, NULL))
			return -ENOENT;
		for (int i = 0; i < MAX_GEN; i++) {
			if (f->gen[i].active)
				continue;
			f->gen[i] = (struct fake_gen){ .active = true, .conn_id = hyd_server_conn_id(c),
						       .req_id = req->id, .session = m->session,
						       .max = m->s.max_tokens };
			return 0;
		}
		return -EBUSY;
	}
	case HYD_REQ_CANCEL: {
		const struct hyd_wire_cancel *m = req->payload;
		for (int i = 0; i < MAX_GEN; i++)
			if (f->gen[i].active && f->gen[i].conn_id == hyd_server_conn_id(c) &&
			    f->gen[i].req_id == m->target)
				f->gen[i].cancel = true;
		return hyd_server_send_ok(c, req->id, 0);
	}
	case HYD_REQ_DELETE: {
		const struct hyd_wire_session *m = req->payload;
		struct fake_session *s = find_sess(f, uid, m->session, NULL);
		if (!s)
			return -ENOENT;
		s->id = 0;
		return hyd_server_send_ok(c, req->id, 0);
	}
	case HYD_REQ_LIST: {
		uint64_t n = 0;
		for (int i = 0; i < MAX_SESS; i++)
			if (f->sess[i].id && f->sess[i].uid == uid && ++n)
				send_info(c, HYD_EVT_LIST_ITEM, req->id, &f->sess[i]);
		return hyd_server_send_ok(c, req->id, n);
	}
	case HYD_REQ_STATUS: {
		struct hyd_wire_status w = { .n_clients = hyd_server_n_clients(f->srv), .n_kinds = 1 };
		snprintf(w.backend, sizeof(w.backend), "%s", hyd_server_backend(f->srv));
		snprintf(w.kinds[0].kind, sizeof(w.kinds[0].kind), "attn");
		w.kinds[0].bytes = 12345;
		return hyd_server_send(c, HYD_EVT_STATUS_INFO, req->id, &w, sizeof(w));
	}
	default:
		return -EOPNOTSUPP;
	}
}

/* The fake scheduler: one token per active generation per loop iteration. */
static int on_idle(void *ud)
{
	struct fake *f = ud;
	int busy = 0;
	for (int i = 0; i < MAX_GEN; i++) {
		struct fake_gen *g = &f->gen[i];
		if (!g->active)
			continue;
		struct hyd_conn *c = hyd_server_conn_by_id(f->srv, g->conn_id);
		if (!c) {
			g->active = false;
			continue;
		}
		/* a real scheduler pauses a session whose client does not read */
		if (!f->no_pause && hyd_server_conn_backlog(c) > (256u << 10))
			continue;
		if (g->cancel || g->done == g->max) {
			struct hyd_wire_done d = { .reason = g->cancel ? HYD_DONE_CANCELLED : HYD_DONE_MAX_TOKENS,
						   .n_generated = g->done };
			hyd_server_send_done(c, g->req_id, &d);
			g->active = false;
			continue;
		}
		char text[32];
		int n = snprintf(text, sizeof(text), "t%u ", g->done);
		hyd_server_send_token(c, g->req_id, (int32_t)g->done, text, (uint32_t)n);
		g->done++;
		busy = 1;
	}
	return busy;
}

static void on_timer(void *ud)
{
	struct fake *f = ud;
	f->timers++;
}

/* ---------------------------------------------------------------- harness */

struct harness {
	char dir[64];
	char path[128];
	struct fake fake;
	struct hyd_server *srv;
	pthread_t thr;
	int run_ret;
};

static void quiet_log(void *ud, int level, const char *msg)
{
	if (level <= HYD_SRV_LOG_INFO && getenv("HYD_TEST_VERBOSE"))
		fprintf(stderr, "server: %s\n", msg);
}

static void *server_thread(void *arg)
{
	struct harness *h = arg;
	h->run_ret = hyd_server_run(h->srv);
	return NULL;
}

static void harness_start(struct harness *h, int backend, uint32_t ring_bytes, uint32_t max_backlog)
{
	memset(h, 0, sizeof(*h));
	strcpy(h->dir, "/tmp/hyd-ipc-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(h->dir));
	snprintf(h->path, sizeof(h->path), "%s/hyd/hydd.sock", h->dir);
	struct hyd_server_opts o;
	hyd_server_opts_init(&o);
	o.socket_path = h->path;
	o.backend = backend ? HYD_IO_EPOLL : HYD_IO_URING;
	o.ring_bytes = ring_bytes;
	o.max_backlog = max_backlog;
	o.log = quiet_log;
	struct hyd_server_handlers hd = { .userdata = &h->fake, .on_connect = on_connect,
					  .on_disconnect = on_disconnect, .on_request = on_request,
					  .on_idle = on_idle, .on_timer = on_timer };
	int err = hyd_server_create(&o, &hd, &h->srv);
	if (err == -EOPNOTSUPP && !backend) {
		fprintf(stderr, "SKIP: io_uring futex wait unavailable\n");
		exit(77);
	}
	ck_assert_int_eq(err, 0);
	ck_assert_str_eq(hyd_server_backend(h->srv), backend ? "epoll" : "io_uring");
	h->fake.srv = h->srv;
	ck_assert_int_eq(pthread_create(&h->thr, NULL, server_thread, h), 0);
}

static void harness_stop(struct harness *h)
{
	hyd_server_stop(h->srv);
	ck_assert_int_eq(pthread_join(h->thr, NULL), 0);
	ck_assert_int_eq(h->run_ret, 0);
	hyd_server_free(h->srv);
	/* the socket is unlinked */
	ck_assert_int_ne(access(h->path, F_OK), 0);
	char sub[160];
	snprintf(sub, sizeof(sub), "%s/hyd", h->dir);
	rmdir(sub);
	rmdir(h->dir);
}

static struct hyd_conn *conn(struct harness *h)
{
	struct hyd_conn *c;
	ck_assert_int_eq(hyd_connect(h->path, &c), 0);
	return c;
}

static char *pattern(size_t n)
{
	char *t = malloc(n);
	for (size_t i = 0; i < n; i++)
		t[i] = (char)('a' + i % 26);
	return t;
}

/* ---------------------------------------------------------------- tests */

START_TEST(test_round_trips)
{
	struct harness h;
	harness_start(&h, _i, 0, 0);
	struct hyd_conn *c = conn(&h);
	struct hyd_session_info si, si2;

	ck_assert_int_eq(hyd_session_create(c, "chat", 0, &si), 0);
	ck_assert_uint_eq(si.id, 1);
	ck_assert_str_eq(si.name, "chat");
	ck_assert_uint_eq(si.uid, getuid());
	ck_assert_int_eq(hyd_session_create(c, "chat", 0, &si2), -EEXIST);
	ck_assert_str_eq(hyd_last_error(c), strerror(EEXIST));
	ck_assert_int_eq(hyd_session_open(c, 0, "chat", &si2), 0);
	ck_assert_uint_eq(si2.id, si.id);
	ck_assert_int_eq(hyd_session_open(c, 0, "nope", &si2), -ENOENT);
	ck_assert_str_eq(hyd_last_error(c), "no session 'nope'");

	char *text = pattern(100);
	ck_assert_int_eq(hyd_session_append_text(c, si.id, text, 100, HYD_APPEND_BOS, &si2), 0);
	ck_assert_uint_eq(si2.n_tokens, 100);
	int32_t toks[3] = { 1, 2, 3 };
	ck_assert_int_eq(hyd_session_append_tokens(c, si.id, toks, 3, &si2), 0);
	ck_assert_uint_eq(si2.n_tokens, 103);
	ck_assert_int_eq(hyd_session_truncate(c, si.id, 5, NULL), -EOPNOTSUPP);

	ck_assert_int_eq(hyd_session_create(c, "other", 0, &si2), 0);
	struct hyd_session_info *list;
	size_t n;
	ck_assert_int_eq(hyd_session_list(c, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(list[0].name, "chat");
	ck_assert_str_eq(list[1].name, "other");
	hyd_session_list_free(list);
	ck_assert_int_eq(hyd_session_delete(c, si2.id), 0);
	ck_assert_int_eq(hyd_session_delete(c, si2.id), -ENOENT);

	struct hyd_status st;
	ck_assert_int_eq(hyd_status(c, &st), 0);
	ck_assert_str_eq(st.backend, _i ? "epoll" : "io_uring");
	ck_assert_uint_eq(st.n_clients, 1);
	ck_assert_uint_eq(st.n_kinds, 1);
	ck_assert_str_eq(st.kinds[0].kind, "attn");

	/* many quick round trips */
	uint64_t t0 = hyd__now_ns();
	for (int i = 0; i < 2000; i++)
		ck_assert_int_eq(hyd_session_open(c, si.id, NULL, &si2), 0);
	double rtt = (double)(hyd__now_ns() - t0) / 2000 / 1000;
	struct hyd_conn_stats cs;
	ck_assert_int_eq(hyd_conn_stats(c, &cs), 0);
	fprintf(stderr, "%s: request round trip %.1f us (mean of 2000); daemon slept %llu times, client %llu\n",
		_i ? "epoll" : "io_uring", rtt, (unsigned long long)cs.req_daemon_sleeps,
		(unsigned long long)cs.evt_client_sleeps);
	ck_assert_int_eq(hyd_conn_stats(c, &cs), 0);
	ck_assert_uint_ge(cs.req_msgs, 2000);
	ck_assert_uint_ge(cs.evt_msgs, 2000);
	/* the daemon went to sleep on the doorbell at least once and was woken through it */
	ck_assert_uint_ge(cs.req_daemon_sleeps, 1);
	ck_assert_uint_ge(cs.req_wakes, 1);

	/* idle means asleep: the server thread burns (almost) no CPU */
	struct rusage r0, r1;
	usleep(20000);
	getrusage(RUSAGE_SELF, &r0);
	usleep(300000);
	getrusage(RUSAGE_SELF, &r1);
	long us = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1000000L + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) +
		  (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1000000L + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
	ck_assert_int_lt(us, 30000);
	/* ... in one long sleep, not a polling loop */
	struct hyd_conn_stats cs2;
	ck_assert_int_eq(hyd_conn_stats(c, &cs2), 0);
	ck_assert_uint_le(cs2.req_daemon_sleeps - cs.req_daemon_sleeps, 1);

	free(text);
	hyd_disconnect(c);
	harness_stop(&h);
	ck_assert_int_eq(h.fake.connects, 1);
	ck_assert_int_eq(h.fake.disconnects, 1);
}
END_TEST

/* Messages larger than a ring record travel as fragments, both ways, and through a ring smaller
 * than the message. */
START_TEST(test_fragmentation)
{
	struct harness h;
	harness_start(&h, _i, 16384, 0);
	struct hyd_conn *c = conn(&h);
	struct hyd_session_info si;
	ck_assert_int_eq(hyd_session_create(c, NULL, 0, &si), 0);
	size_t big = 3u << 20;
	char *text = pattern(big);
	ck_assert_int_eq(hyd_session_append_text(c, si.id, text, big, 0, &si), 0);
	ck_assert_uint_eq(si.n_tokens, big);

	int32_t *tok;
	size_t n;
	size_t tn = 300000;
	ck_assert_int_eq(hyd_tokenize(c, text, tn, 0, &tok, &n), 0);
	ck_assert_uint_eq(n, tn);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(tok[i], 'a' + (int)(i % 26));
	hyd_tokens_free(tok);
	ck_assert_int_eq(hyd_session_append_text(c, si.id, text, HYD_PROTO_MAX_MSG, 0, &si), -EMSGSIZE);
	free(text);
	hyd_disconnect(c);
	harness_stop(&h);
}
END_TEST

struct cb_state {
	uint32_t n;
	uint32_t cancel_at;
	bool bad;
};

static int count_cb(void *ud, const struct hyd_token_event *ev)
{
	struct cb_state *s = ud;
	char want[32];
	snprintf(want, sizeof(want), "t%u ", s->n);
	if (ev->token != (int32_t)s->n || ev->text_len != strlen(want) || memcmp(ev->text, want, ev->text_len))
		s->bad = true;
	s->n++;
	return s->cancel_at && s->n == s->cancel_at;
}

START_TEST(test_generate)
{
	struct harness h;
	harness_start(&h, _i, 0, 0);
	struct hyd_conn *c = conn(&h);
	struct hyd_session_info si;
	ck_assert_int_eq(hyd_session_create(c, "g", 0, &si), 0);
	struct hyd_sampling sp;
	hyd_sampling_init(&sp);
	const char *stops[] = { "\n\n" };
	sp.stop = stops;
	sp.n_stop = 1;
	sp.max_tokens = 5000;

	/* callback form, to the end */
	struct cb_state cb = { 0 };
	struct hyd_done_info d;
	ck_assert_int_eq(hyd_generate(c, si.id, &sp, count_cb, &cb, &d), HYD_DONE_MAX_TOKENS);
	ck_assert(!cb.bad);
	ck_assert_uint_eq(cb.n, 5000);
	ck_assert_uint_eq(d.n_generated, 5000);

	/* callback form, cancelled from the callback */
	cb = (struct cb_state){ .cancel_at = 10 };
	sp.max_tokens = 1000000;
	ck_assert_int_eq(hyd_generate(c, si.id, &sp, count_cb, &cb, &d), HYD_DONE_CANCELLED);
	ck_assert(!cb.bad);
	ck_assert_uint_eq(cb.n, 10);

	/* pull form, two streams interleaved on one connection */
	struct hyd_stream *s1, *s2;
	sp.max_tokens = 300;
	ck_assert_int_eq(hyd_generate_start(c, si.id, &sp, &s1), 0);
	sp.max_tokens = 200;
	ck_assert_int_eq(hyd_generate_start(c, si.id, &sp, &s2), 0);
	ck_assert_ptr_null(hyd_stream_done(s1));
	struct hyd_token_event ev;
	uint32_t n1 = 0, n2 = 0;
	int r1 = 1, r2 = 1;
	while (r1 > 0 || r2 > 0) {
		if (r1 > 0 && (r1 = hyd_generate_next(s1, &ev)) > 0)
			ck_assert_int_eq(ev.token, (int32_t)n1++);
		if (r2 > 0 && (r2 = hyd_generate_next(s2, &ev)) > 0)
			ck_assert_int_eq(ev.token, (int32_t)n2++);
		/* a synchronous call while streams run */
		if (n1 == 50) {
			struct hyd_session_info x;
			ck_assert_int_eq(hyd_session_open(c, si.id, NULL, &x), 0);
		}
	}
	ck_assert_int_eq(r1, 0);
	ck_assert_int_eq(r2, 0);
	ck_assert_uint_eq(n1, 300);
	ck_assert_uint_eq(n2, 200);
	ck_assert_uint_eq(hyd_stream_done(s1)->reason, HYD_DONE_MAX_TOKENS);
	ck_assert_int_eq(hyd_stream_cancel(s1), -EALREADY);
	hyd_stream_free(s1);
	hyd_stream_free(s2);

	/* pull form, cancelled, then freed while the daemon still streams */
	sp.max_tokens = 1000000;
	ck_assert_int_eq(hyd_generate_start(c, si.id, &sp, &s1), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(hyd_generate_next(s1, &ev), 1);
	ck_assert_int_eq(hyd_stream_cancel(s1), 0);
	while (hyd_generate_next(s1, &ev) > 0)
		;
	ck_assert_uint_eq(hyd_stream_done(s1)->reason, HYD_DONE_CANCELLED);
	hyd_stream_free(s1);
	ck_assert_int_eq(hyd_generate_start(c, si.id, &sp, &s1), 0);
	ck_assert_int_eq(hyd_generate_next(s1, &ev), 1);
	hyd_stream_free(s1);

	/* errors reach the stream */
	ck_assert_int_eq(hyd_generate(c, 999, &sp, count_cb, &cb, &d), -ENOENT);
	const char *badstop[] = { "" };
	sp.stop = badstop;
	ck_assert_int_eq(hyd_generate(c, si.id, &sp, count_cb, &cb, &d), -EINVAL);
	/* still usable */
	ck_assert_int_eq(hyd_session_open(c, si.id, NULL, &si), 0);
	hyd_disconnect(c);
	harness_stop(&h);
}
END_TEST

/* A client SIGKILLed while tokens stream to it must not disturb another client streaming at the
 * same time; the daemon notices and drops it. */
START_TEST(test_client_killed)
{
	struct harness h;
	harness_start(&h, _i, 0, 0);
	struct hyd_conn *c = conn(&h);
	struct hyd_session_info si;
	ck_assert_int_eq(hyd_session_create(c, "a", 0, &si), 0);
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);

	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct hyd_conn *k;
		struct hyd_stream *s;
		struct hyd_token_event ev;
		struct hyd_sampling sp;
		hyd_sampling_init(&sp);
		sp.max_tokens = 100000000;
		if (hyd_connect(h.path, &k) || hyd_generate_start(k, si.id, &sp, &s))
			_exit(2);
		for (int i = 0; i < 100; i++)
			if (hyd_generate_next(s, &ev) != 1)
				_exit(3);
		char b = 1;
		if (write(pfd[1], &b, 1) != 1)
			_exit(4);
		for (;;)
			pause(); /* killed here, the daemon still producing */
	}
	char b;
	ck_assert_int_eq(read(pfd[0], &b, 1), 1);

	struct hyd_sampling sp;
	hyd_sampling_init(&sp);
	sp.max_tokens = 2000;
	struct hyd_stream *s;
	ck_assert_int_eq(hyd_generate_start(c, si.id, &sp, &s), 0);
	struct hyd_token_event ev;
	uint32_t n = 0;
	int r;
	while ((r = hyd_generate_next(s, &ev)) > 0) {
		ck_assert_int_eq(ev.token, (int32_t)n);
		if (++n == 500)
			kill(pid, SIGKILL);
	}
	ck_assert_int_eq(r, 0);
	ck_assert_uint_eq(n, 2000);
	hyd_stream_free(s);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status));
	/* the dead client is dropped (its socket EOF), the live one keeps working */
	for (int i = 0; i < 2000 && h.fake.disconnects < 1; i++)
		usleep(1000);
	ck_assert_int_eq(h.fake.disconnects, 1);
	ck_assert_int_eq(hyd_session_open(c, si.id, NULL, &si), 0);
	struct hyd_status st;
	ck_assert_int_eq(hyd_status(c, &st), 0);
	ck_assert_uint_eq(st.n_clients, 1);
	hyd_disconnect(c);
	harness_stop(&h);
}
END_TEST

/* A raw client that completes the handshake by hand, then sends what _j selects. */
static int raw_connect(const char *path, struct hyd_shm *ret)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct hyd_wire_hello hello = { .magic = HYD_HELLO_MAGIC, .version = HYD_PROTO_VERSION };
	ck_assert_int_eq(hyd__socket_send_fd(fd, &hello, sizeof(hello), -1), 0);
	struct hyd_wire_welcome w;
	int memfd = -1;
	ck_assert_int_eq(hyd__socket_recv_fd(fd, &w, sizeof(w), &memfd), sizeof(w));
	ck_assert_int_eq(w.status, 0);
	ck_assert_int_ge(memfd, 0);
	ck_assert_int_eq(hyd__shm_attach(memfd, w.shm_size, ret), 0);
	close(memfd);
	return fd;
}

static bool wait_eof(int fd)
{
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char b[16];
	/* unread bytes at close turn the FIN into a reset */
	ssize_t n;
	while ((n = recv(fd, b, sizeof(b), 0)) > 0)
		;
	return n == 0 || errno == ECONNRESET;
}

static void raw_send(int fd, struct hyd_shm *s)
{
	if (hyd__ring_notify_data(&s->req) && (s->flags & HYD_SHM_F_KICK)) {
		char b = 0;
		ck_assert_int_eq(send(fd, &b, 1, MSG_NOSIGNAL), 1);
	}
}

START_TEST(test_malformed_clients)
{
	struct harness h;
	harness_start(&h, _i, 0, 0);
	struct hyd_conn *good = conn(&h);
	struct hyd_session_info si;
	ck_assert_int_eq(hyd_session_create(good, "keep", 0, &si), 0);

	for (int kind = 0; kind < 6; kind++) {
		struct hyd_shm s;
		int fd = raw_connect(h.path, &s);
		uint8_t junk[256] = { 0 };
		switch (kind) {
		case 0: /* unknown type */
			ck_assert_int_eq(hyd__ring_write(&s.req, 999, 0, 1, junk, 8), 0);
			break;
		case 1: /* known type, wrong length */
			ck_assert_int_eq(hyd__ring_write(&s.req, HYD_REQ_CREATE, 0, 1, junk, 10), 0);
			break;
		case 2: { /* a record header claiming more than the ring, published as written: a
			   * valid record corrupted after its publication could be served first */
			const struct hyd_msg_hdr bad = { .len = 1u << 30, .type = HYD_REQ_LIST, .id = 1 };
			memcpy(s.req.data, &bad, sizeof(bad));
			atomic_store(&s.req.ctl->head, (uint64_t)hyd__ring_record_size(0));
			break;
		}
		case 3: /* a head index far past the tail */
			atomic_store(&s.req.ctl->head, 1ull << 40);
			break;
		case 4: /* fragments of two requests interleaved */
			ck_assert_int_eq(hyd__ring_write(&s.req, HYD_REQ_APPEND_TEXT, HYD_MSGF_CONT, 1, junk, 16), 0);
			ck_assert_int_eq(hyd__ring_write(&s.req, HYD_REQ_APPEND_TEXT, 0, 2, junk, 16), 0);
			break;
		case 5: /* request id 0 */
			ck_assert_int_eq(hyd__ring_write(&s.req, HYD_REQ_LIST, 0, 0, NULL, 0), 0);
			break;
		}
		raw_send(fd, &s);
		ck_assert_msg(wait_eof(fd), "malformed client %d not disconnected", kind);
		close(fd);
		hyd__shm_release(&s);
		/* the well-behaved client is unaffected */
		struct hyd_session_info x;
		ck_assert_int_eq(hyd_session_open(good, 0, "keep", &x), 0);
		ck_assert_uint_eq(x.id, si.id);
	}
	/* not a hyd client at all */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, h.path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(write(fd, "GET / HTTP/1.0\r\n\r\n", 18), 18);
	ck_assert(wait_eof(fd));
	close(fd);
	ck_assert_int_eq(hyd_session_open(good, 0, "keep", &si), 0);
	hyd_disconnect(good);
	harness_stop(&h);
	ck_assert_int_eq(h.fake.disconnects, 7);
}
END_TEST

/* Fragments may be empty, the first one too (the daemon joined them with a memcpy from a
 * buffer not yet allocated): a LIST sent as an empty fragment and an empty last fragment is
 * answered like any other. */
START_TEST(test_empty_fragments)
{
	struct harness h;
	harness_start(&h, _i, 0, 0);
	struct hyd_shm s;
	int fd = raw_connect(h.path, &s);
	ck_assert_int_eq(hyd__ring_write(&s.req, HYD_REQ_LIST, HYD_MSGF_CONT, 1, NULL, 0), 0);
	ck_assert_int_eq(hyd__ring_write(&s.req, HYD_REQ_LIST, 0, 1, NULL, 0), 0);
	raw_send(fd, &s);
	uint8_t buf[4096];
	struct hyd_msg_hdr hdr;
	int r = 0;
	for (int i = 0; i < 10000 && r == 0; i++) {
		r = hyd__ring_read(&s.evt, &hdr, buf, sizeof(buf));
		if (r == 0)
			usleep(1000);
	}
	ck_assert_int_eq(r, 1);
	ck_assert_uint_eq(hdr.type, HYD_EVT_OK); /* no sessions: no items, then OK */
	ck_assert_uint_eq(hdr.id, 1);
	close(fd);
	hyd__shm_release(&s);
	harness_stop(&h);
}
END_TEST

/* A client that stops reading: its events queue up, then it is dropped; others carry on. */
START_TEST(test_slow_reader)
{
	struct harness h;
	harness_start(&h, _i, 4096, 1u << 20);
	struct hyd_conn *c = conn(&h), *slow = conn(&h);
	struct hyd_session_info si;
	ck_assert_int_eq(hyd_session_create(c, "s", 0, &si), 0);
	struct hyd_sampling sp;
	hyd_sampling_init(&sp);
	sp.max_tokens = 100000000;
	struct hyd_stream *s;
	ck_assert_int_eq(hyd_generate_start(slow, si.id, &sp, &s), 0);
	/* meanwhile the other client is served */
	for (int i = 0; i < 200; i++) {
		struct hyd_session_info x;
		ck_assert_int_eq(hyd_session_open(c, si.id, NULL, &x), 0);
	}
	sp.max_tokens = 100;
	struct cb_state cb = { 0 };
	ck_assert_int_eq(hyd_generate(c, si.id, &sp, count_cb, &cb, NULL), HYD_DONE_MAX_TOKENS);
	ck_assert_uint_eq(cb.n, 100);
	/* the slow one reads again: it gets its tokens in order, with no gap */
	struct hyd_token_event ev;
	for (int i = 0; i < 1000; i++) {
		ck_assert_int_eq(hyd_generate_next(s, &ev), 1);
		ck_assert_int_eq(ev.token, i);
	}
	hyd_stream_free(s);
	hyd_disconnect(slow);
	hyd_disconnect(c);
	harness_stop(&h);
}
END_TEST

/* Without the scheduler's pause, a reader that never reads is dropped once its backlog is full. */
START_TEST(test_slow_reader_dropped)
{
	struct harness h;
	harness_start(&h, _i, 4096, 64u << 10);
	h.fake.no_pause = true;
	struct hyd_conn *c = conn(&h), *slow = conn(&h);
	struct hyd_session_info si;
	ck_assert_int_eq(hyd_session_create(c, "s", 0, &si), 0);
	struct hyd_sampling sp;
	hyd_sampling_init(&sp);
	sp.max_tokens = 100000000;
	struct hyd_stream *s;
	ck_assert_int_eq(hyd_generate_start(slow, si.id, &sp, &s), 0);
	for (int i = 0; i < 10000 && h.fake.disconnects < 1; i++)
		usleep(1000);
	ck_assert_int_eq(h.fake.disconnects, 1);
	/* what reached the ring is still readable, in order, then the end is reported */
	struct hyd_token_event ev;
	int r, n = 0;
	while ((r = hyd_generate_next(s, &ev)) > 0)
		ck_assert_int_eq(ev.token, n++);
	ck_assert_int_eq(r, -ECONNRESET);
	ck_assert_int_gt(n, 10);
	hyd_stream_free(s);
	hyd_disconnect(slow);
	struct hyd_session_info x;
	ck_assert_int_eq(hyd_session_open(c, si.id, NULL, &x), 0);
	hyd_disconnect(c);
	harness_stop(&h);
}
END_TEST

static void posted(void *arg)
{
	struct fake *f = arg;
	f->posts++;
	hyd_server_arm_timer(f->srv, 5000000);
}

START_TEST(test_post_timer_stop)
{
	struct harness h;
	harness_start(&h, _i, 0, 0);
	ck_assert_int_eq(hyd_server_post(h.srv, posted, &h.fake), 0);
	for (int i = 0; i < 5000 && h.fake.timers < 1; i++)
		usleep(1000);
	ck_assert_int_eq(h.fake.posts, 1);
	ck_assert_int_eq(h.fake.timers, 1);
	/* a second server on the same path is refused while the first answers */
	struct hyd_server *other;
	struct hyd_server_opts o;
	hyd_server_opts_init(&o);
	o.socket_path = h.path;
	o.log = quiet_log;
	struct hyd_server_handlers hd = { .on_request = on_request };
	ck_assert_int_eq(hyd_server_create(&o, &hd, &other), -EADDRINUSE);
	/* a client still connected when the daemon goes away learns it instead of hanging */
	struct hyd_conn *c = conn(&h);
	struct hyd_session_info si;
	ck_assert_int_eq(hyd_session_create(c, "x", 0, &si), 0);
	struct hyd_stream *st;
	struct hyd_sampling sp;
	hyd_sampling_init(&sp);
	sp.max_tokens = 100000000;
	ck_assert_int_eq(hyd_generate_start(c, si.id, &sp, &st), 0);
	harness_stop(&h);
	struct hyd_token_event ev;
	int r;
	while ((r = hyd_generate_next(st, &ev)) > 0)
		;
	ck_assert_int_eq(r, -ECONNRESET);
	hyd_stream_free(st);
	ck_assert_int_eq(hyd_session_open(c, si.id, NULL, &si), -ECONNRESET);
	hyd_disconnect(c);
	ck_assert_int_eq(h.fake.disconnects, 1);
	/* nobody listens now */
	ck_assert_int_lt(hyd_connect(h.path, &c), 0);
}
END_TEST

START_TEST(test_default_path)
{
	char buf[108];
	setenv("HYD_SOCKET", "/tmp/x/y.sock", 1);
	ck_assert_int_eq(hyd__socket_default_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/tmp/x/y.sock");
	unsetenv("HYD_SOCKET");
	ck_assert_int_eq(hyd__socket_default_path(buf, sizeof(buf)), 0);
	if (geteuid() == 0) {
		ck_assert_str_eq(buf, "/run/hyd/hydd.sock");
	} else {
		setenv("XDG_RUNTIME_DIR", "/run/user/1234", 1);
		ck_assert_int_eq(hyd__socket_default_path(buf, sizeof(buf)), 0);
		ck_assert_str_eq(buf, "/run/user/1234/hyd/hydd.sock");
	}
	char big[300];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	setenv("HYD_SOCKET", big, 1);
	ck_assert_int_eq(hyd__socket_default_path(buf, sizeof(buf)), -ENAMETOOLONG);
	struct hyd_conn *c;
	ck_assert_int_eq(hyd_connect(NULL, &c), -ENAMETOOLONG);
	ck_assert_str_ne(hyd_strerror(-ENAMETOOLONG), "unknown error");
}
END_TEST

static Suite *server_suite(void)
{
	Suite *s = suite_create("ipc_server");
	TCase *tc = tcase_create("server");
	tcase_set_timeout(tc, 120);
	/* _i: 0 io_uring, 1 epoll */
	tcase_add_loop_test(tc, test_round_trips, 0, 2);
	tcase_add_loop_test(tc, test_fragmentation, 0, 2);
	tcase_add_loop_test(tc, test_generate, 0, 2);
	tcase_add_loop_test(tc, test_client_killed, 0, 2);
	tcase_add_loop_test(tc, test_malformed_clients, 0, 2);
	tcase_add_loop_test(tc, test_empty_fragments, 0, 2);
	tcase_add_loop_test(tc, test_slow_reader, 0, 2);
	tcase_add_loop_test(tc, test_slow_reader_dropped, 0, 2);
	tcase_add_loop_test(tc, test_post_timer_stop, 0, 2);
	tcase_add_test(tc, test_default_path);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	SRunner *sr = srunner_create(server_suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
