/* unix_baseline: the exchanges of bench/ipc_latency over a plain Unix stream socket, between
 * this process and a forked server that answers with fixed messages of hyd's wire sizes (16-byte
 * header + payload; one write() per message, blocking read()s on the client).  The server can
 * spin a given time per "token" to stand in for the model step (-c NS), so the token stream and
 * short-generation rows can be compared with the daemon's at the same pace.  Every message
 * carries the server's send time (CLOCK_MONOTONIC is shared), so the true one-way delivery
 * latency is measured too.
 *
 *   unix_baseline [-n STREAM_TOKENS] [-r REQUESTS] [-k TOKENS] [-q ROUNDTRIPS] [-c NS_PER_TOKEN] */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/latency_stats.h"

enum { REQ_STATUS = 1, REQ_GENERATE = 2, REQ_QUIT = 3, EVT_TOKEN = 1, EVT_DONE = 2, EVT_STATUS = 3 };

struct hdr {
	uint32_t len;
	uint16_t type, flags;
	uint64_t id;
};

struct req {
	struct hdr h;
	uint32_t n_tokens, _pad;
	uint64_t spin_ns;
};

/* TOKEN {token, text_len} + 8 bytes of text, as a short token's record in hyd */
struct token {
	struct hdr h;
	int32_t token;
	uint32_t text_len;
	uint64_t sent_ns;
	char text[8];
};

/* DONE and the status answer: fixed payloads */
struct reply {
	struct hdr h;
	uint64_t sent_ns;
	uint8_t payload[32];
};

static int full_io(int fd, void *buf, size_t len, bool wr)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = wr ? write(fd, (char *)buf + done, len - done) : read(fd, (char *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static void spin(uint64_t ns)
{
	uint64_t end = lat_now() + ns;
	while (lat_now() < end)
		;
}

static void server(int fd)
{
	struct req r;
	while (full_io(fd, &r, sizeof(r), false) == 0 && r.h.type != REQ_QUIT) {
		if (r.h.type == REQ_GENERATE) {
			for (uint32_t i = 0; i < r.n_tokens; i++) {
				spin(r.spin_ns);
				struct token t = { .h = { sizeof(t) - sizeof(t.h), EVT_TOKEN, 0, r.h.id },
						   .token = (int32_t)i, .text_len = 8, .text = " token__" };
				t.sent_ns = lat_now();
				if (full_io(fd, &t, sizeof(t), true))
					_exit(1);
			}
		}
		struct reply d = { .h = { sizeof(d) - sizeof(d.h), r.h.type == REQ_STATUS ? EVT_STATUS : EVT_DONE, 0,
					  r.h.id } };
		d.sent_ns = lat_now();
		if (full_io(fd, &d, sizeof(d), true))
			_exit(1);
	}
	_exit(0);
}

/* Reads one message into buf (sized for the largest); the type says which. */
static int next_msg(int fd, void *buf)
{
	struct hdr *h = buf;
	if (full_io(fd, h, sizeof(*h), false))
		return -1;
	if (h->len > sizeof(struct reply) - sizeof(*h) || full_io(fd, h + 1, h->len, false))
		return -1;
	return h->type;
}

int main(int argc, char **argv)
{
	uint32_t n_stream = 1000, n_req = 300, k = 4, n_rtt = 2000;
	uint64_t spin_ns = 0;
	int opt;
	while ((opt = getopt(argc, argv, "n:r:k:q:c:h")) != -1) {
		switch (opt) {
		case 'n': n_stream = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'r': n_req = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'k': k = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'q': n_rtt = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'c': spin_ns = strtoull(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: unix_baseline [-n STREAM_TOKENS] [-r REQUESTS] [-k TOKENS] "
					"[-q ROUNDTRIPS] [-c NS_PER_TOKEN]\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		close(sv[0]);
		server(sv[1]);
	}
	close(sv[1]);
	int fd = sv[0];
	union {
		struct token t;
		struct reply r;
	} m;
	uint64_t id = 1;
	printf("Unix socket baseline: forked server, one write() per message, blocking reads, "
	       "%" PRIu64 " ns of spinning per token\n", spin_ns);

	struct lat rtt = { 0 }, gap = { 0 }, oneway = { 0 }, req = { 0 };
	uint64_t t0 = lat_now();
	for (uint32_t i = 0; i < n_rtt; i++) {
		struct req r = { .h = { sizeof(r) - sizeof(r.h), REQ_STATUS, 0, id++ } };
		uint64_t a = lat_now();
		if (full_io(fd, &r, sizeof(r), true) || next_msg(fd, &m) != EVT_STATUS)
			goto broken;
		lat_add(&rtt, lat_now() - a);
	}
	double rtt_rate = n_rtt / ((lat_now() - t0) * 1e-9);

	struct req g = { .h = { sizeof(g) - sizeof(g.h), REQ_GENERATE, 0, id++ }, .n_tokens = n_stream, .spin_ns = spin_ns };
	if (full_io(fd, &g, sizeof(g), true))
		goto broken;
	uint64_t prev = 0, first = 0, last = 0;
	int type;
	while ((type = next_msg(fd, &m)) == EVT_TOKEN) {
		uint64_t now = lat_now();
		lat_add(&oneway, now - m.t.sent_ns);
		if (prev)
			lat_add(&gap, now - prev);
		else
			first = now;
		prev = last = now;
	}
	if (type != EVT_DONE)
		goto broken;
	double stream_rate = n_stream > 1 ? (n_stream - 1) / ((last - first) * 1e-9) : 0;

	t0 = lat_now();
	for (uint32_t i = 0; i < n_req; i++) {
		struct req r = { .h = { sizeof(r) - sizeof(r.h), REQ_GENERATE, 0, id++ }, .n_tokens = k,
				 .spin_ns = spin_ns };
		uint64_t a = lat_now();
		if (full_io(fd, &r, sizeof(r), true))
			goto broken;
		while ((type = next_msg(fd, &m)) == EVT_TOKEN)
			;
		if (type != EVT_DONE)
			goto broken;
		lat_add(&req, lat_now() - a);
	}
	double req_rate = n_req / ((lat_now() - t0) * 1e-9);

	struct req q = { .h = { sizeof(q) - sizeof(q.h), REQ_QUIT, 0, id++ } };
	full_io(fd, &q, sizeof(q), true);
	close(fd);
	waitpid(pid, NULL, 0);

	char what[64];
	lat_header();
	lat_row("request round trip (status)", &rtt, rtt_rate);
	snprintf(what, sizeof(what), "token inter-arrival (%u-token stream)", n_stream);
	lat_row(what, &gap, stream_rate);
	lat_row("token one-way delivery (stamped)", &oneway, 0);
	snprintf(what, sizeof(what), "short generation (%u tokens)", k);
	lat_row(what, &req, req_rate);
	lat_free(&rtt);
	lat_free(&gap);
	lat_free(&oneway);
	lat_free(&req);
	return 0;
broken:
	fprintf(stderr, "unix_baseline: the server went away\n");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return 1;
}
