/* Helper of syscalls.sh: streams a long greedy generation through libhyd (pull form) on a new
 * session and prints how many tokens arrived and the connection's doorbell counters, which
 * count every FUTEX_WAKE / FUTEX_WAIT either side made on the data path.
 *
 *   ring_stats SOCKET PROMPT N */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hyd/client.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: ring_stats SOCKET PROMPT N\n");
		return 2;
	}
	struct hyd_conn *c;
	int err = hyd_connect(argv[1], &c);
	if (err < 0) {
		fprintf(stderr, "ring_stats: connect: %s\n", hyd_strerror(err));
		return 1;
	}
	struct hyd_session_info si;
	struct hyd_sampling sp;
	hyd_sampling_init(&sp);
	sp.temperature = 0;
	sp.max_tokens = (uint32_t)strtoul(argv[3], NULL, 10);
	struct hyd_stream *s = NULL;
	struct hyd_conn_stats before, after;
	uint64_t n = 0;
	if ((err = hyd_session_create(c, NULL, 0, &si)) < 0 ||
	    (err = hyd_session_append_text(c, si.id, argv[2], strlen(argv[2]), HYD_APPEND_BOS, NULL)) < 0 ||
	    (err = hyd_conn_stats(c, &before)) < 0 || (err = hyd_generate_start(c, si.id, &sp, &s)) < 0)
		goto out;
	struct hyd_token_event ev;
	while ((err = hyd_generate_next(s, &ev)) > 0)
		n++;
	if (err < 0 || (err = hyd_conn_stats(c, &after)) < 0)
		goto out;
	const struct hyd_done_info *d = hyd_stream_done(s);
	printf("tokens %" PRIu64 " generated %u\n", n, d ? d->n_generated : 0);
	printf("req_msgs %" PRIu64 " req_wakes %" PRIu64 " req_daemon_sleeps %" PRIu64 "\n",
	       after.req_msgs - before.req_msgs, after.req_wakes - before.req_wakes,
	       after.req_daemon_sleeps - before.req_daemon_sleeps);
	printf("evt_msgs %" PRIu64 " evt_wakes %" PRIu64 " evt_client_sleeps %" PRIu64 "\n",
	       after.evt_msgs - before.evt_msgs, after.evt_wakes - before.evt_wakes,
	       after.evt_client_sleeps - before.evt_client_sleeps);
out:
	if (err < 0) {
		const char *m = hyd_last_error(c);
		fprintf(stderr, "ring_stats: %s%s%s\n", hyd_strerror(err), *m ? ": " : "", m);
	}
	hyd_stream_free(s);
	hyd_disconnect(c);
	return err < 0 ? 1 : 0;
}
