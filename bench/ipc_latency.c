/* ipc_latency: what the shared-memory transport costs, measured from a libhyd client of a
 * running hydd.  Compare with bench/unix_baseline (the same exchanges over a plain Unix socket).
 *
 *   1. request round trip: hyd_status() (the daemon does almost nothing): p50/p99
 *   2. token delivery: one long greedy generation; the time between consecutive tokens as the
 *      client sees them (model step + delivery), and the doorbell syscalls per token
 *   3. short generations: requests of 4 greedy tokens on one session: latency and requests/s
 *
 *   hydd --foreground --socket /tmp/b.sock &
 *   ipc_latency -S /tmp/b.sock [-n STREAM_TOKENS] [-r REQUESTS] [-k TOKENS] [-q ROUNDTRIPS] */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hyd/client.h>

#include "bench/latency_stats.h"

static const char prompt[] = "Once upon a time";

static int die(struct hyd_conn *c, const char *what, int err)
{
	const char *m = hyd_last_error(c);
	fprintf(stderr, "ipc_latency: %s: %s%s%s\n", what, hyd_strerror(err), *m ? ": " : "", m);
	return 1;
}

static uint64_t wakes(const struct hyd_conn_stats *s)
{
	return s->req_wakes + s->req_daemon_sleeps + s->evt_wakes + s->evt_client_sleeps;
}

int main(int argc, char **argv)
{
	const char *sock = NULL;
	uint32_t n_stream = 1000, n_req = 300, k = 4, n_rtt = 2000;
	int opt;
	while ((opt = getopt(argc, argv, "S:n:r:k:q:h")) != -1) {
		switch (opt) {
		case 'S': sock = optarg; break;
		case 'n': n_stream = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'r': n_req = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'k': k = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'q': n_rtt = (uint32_t)strtoul(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: ipc_latency [-S SOCKET] [-n STREAM_TOKENS] [-r REQUESTS] [-k TOKENS] "
					"[-q ROUNDTRIPS]\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	struct hyd_conn *c;
	int err = hyd_connect(sock, &c);
	if (err < 0)
		return die(NULL, "connect", err);
	struct hyd_status st;
	if ((err = hyd_status(c, &st)) < 0)
		return die(c, "status", err);
	const char *spin = getenv("HYD_SPIN_NS");
	printf("hyd IPC: daemon loop %s, model %s (%s), client spin %s ns\n", st.backend, st.model, st.arch,
	       spin ? spin : "default");

	/* 1. round trips */
	struct lat rtt = { 0 };
	uint64_t t0 = lat_now();
	for (uint32_t i = 0; i < n_rtt; i++) {
		uint64_t a = lat_now();
		if ((err = hyd_status(c, &st)) < 0)
			return die(c, "status", err);
		lat_add(&rtt, lat_now() - a);
	}
	double rtt_rate = n_rtt / ((lat_now() - t0) * 1e-9);

	/* 2. one long generation */
	struct hyd_session_info si;
	struct hyd_sampling sp;
	hyd_sampling_init(&sp);
	sp.temperature = 0;
	sp.max_tokens = n_stream;
	if ((err = hyd_session_create(c, NULL, 0, &si)) < 0)
		return die(c, "create", err);
	if ((err = hyd_session_append_text(c, si.id, prompt, strlen(prompt), HYD_APPEND_BOS, &si)) < 0)
		return die(c, "append", err);
	const uint32_t base = si.n_tokens;
	struct hyd_conn_stats s0, s1;
	hyd_conn_stats(c, &s0);
	struct hyd_stream *s;
	if ((err = hyd_generate_start(c, si.id, &sp, &s)) < 0)
		return die(c, "generate", err);
	struct lat gap = { 0 };
	struct hyd_token_event ev;
	uint64_t prev = 0, first = 0, last = 0, n_tok = 0;
	while ((err = hyd_generate_next(s, &ev)) > 0) {
		uint64_t now = lat_now();
		if (prev)
			lat_add(&gap, now - prev);
		else
			first = now;
		prev = last = now;
		n_tok++;
	}
	if (err < 0)
		return die(c, "stream", err);
	const struct hyd_done_info *d = hyd_stream_done(s);
	struct hyd_done_info done = d ? *d : (struct hyd_done_info){ 0 };
	double gen_s = done.gen_ns * 1e-9;
	hyd_stream_free(s);
	hyd_conn_stats(c, &s1);
	uint64_t stream_wakes = wakes(&s1) - wakes(&s0);
	double stream_rate = n_tok > 1 ? (n_tok - 1) / ((last - first) * 1e-9) : 0;

	/* 3. short generations on one session, cut back to the prompt now and then */
	struct lat req = { 0 };
	sp.max_tokens = k;
	if ((err = hyd_session_truncate(c, si.id, base, &si)) < 0)
		return die(c, "truncate", err);
	uint64_t busy = 0;
	for (uint32_t i = 0; i < n_req; i++) {
		if (si.n_tokens + k >= si.max_ctx || (i && i % 64 == 0)) {
			uint64_t a = lat_now();
			if ((err = hyd_session_truncate(c, si.id, base, &si)) < 0)
				return die(c, "truncate", err);
			busy += lat_now() - a; /* counted in the rate, not in the per-request latency */
		}
		struct hyd_done_info dn;
		uint64_t a = lat_now();
		if ((err = hyd_generate(c, si.id, &sp, NULL, NULL, &dn)) < 0)
			return die(c, "generate", err);
		uint64_t dt = lat_now() - a;
		busy += dt;
		lat_add(&req, dt);
		si.n_tokens += dn.n_generated;
	}
	double req_rate = n_req / (busy * 1e-9);
	hyd_session_delete(c, si.id);

	char what[64];
	lat_header();
	lat_row("request round trip (status)", &rtt, rtt_rate);
	snprintf(what, sizeof(what), "token inter-arrival (%u-token stream)", n_stream);
	lat_row(what, &gap, stream_rate);
	snprintf(what, sizeof(what), "short generation (%u tokens)", k);
	lat_row(what, &req, req_rate);
	printf("stream: %" PRIu64 " tokens, daemon generation time %.3f s (%.1f tok/s), %" PRIu64
	       " futex wakes/sleeps in all (%.4f per token)\n",
	       n_tok, gen_s, gen_s > 0 ? done.n_generated / gen_s : 0.0, stream_wakes,
	       n_tok ? (double)stream_wakes / n_tok : 0.0);
	lat_free(&rtt);
	lat_free(&gap);
	lat_free(&req);
	hyd_disconnect(c);
	return 0;
}
