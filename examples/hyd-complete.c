/* hyd-complete: the smallest useful libhyd program.  Reads a prompt (the arguments, or stdin),
 * sends it to a fresh session and streams the completion to stdout.
 *
 *   echo "Once upon a time" | hyd-complete -n 64
 *   hyd-complete -S /run/user/1000/hyd/hydd.sock -t 0 "The capital of France is" */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hyd/client.h>

static int on_token(void *userdata, const struct hyd_token_event *ev)
{
	fwrite(ev->text, 1, ev->text_len, stdout);
	fflush(stdout);
	return 0;
}

static char *read_all(FILE *f, size_t *ret_len)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	while (buf) {
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
		if (len == cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb)
				free(buf);
			buf = nb;
		}
	}
	*ret_len = len;
	return buf;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: hyd-complete [-S socket] [-n max_tokens] [-t temperature] [-s seed] [prompt...]\n");
}

int main(int argc, char **argv)
{
	const char *sock = NULL;
	struct hyd_sampling sp;
	hyd_sampling_init(&sp);
	sp.max_tokens = 128;
	int opt;
	while ((opt = getopt(argc, argv, "S:n:t:s:h")) != -1) {
		switch (opt) {
		case 'S': sock = optarg; break;
		case 'n': sp.max_tokens = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 't': sp.temperature = strtof(optarg, NULL); break;
		case 's': sp.seed = strtoull(optarg, NULL, 10); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}

	char *prompt;
	size_t len = 0;
	if (optind < argc) {
		for (int i = optind; i < argc; i++)
			len += strlen(argv[i]) + 1;
		prompt = malloc(len + 1);
		if (!prompt)
			return 1;
		prompt[0] = 0;
		for (int i = optind; i < argc; i++) {
			strcat(prompt, argv[i]);
			if (i + 1 < argc)
				strcat(prompt, " ");
		}
		len = strlen(prompt);
	} else {
		prompt = read_all(stdin, &len);
		if (!prompt)
			return 1;
		while (len && (prompt[len - 1] == '\n' || prompt[len - 1] == '\r'))
			len--;
	}

	struct hyd_conn *c;
	int err = hyd_connect(sock, &c);
	if (err < 0) {
		fprintf(stderr, "hyd-complete: cannot reach the daemon: %s\n", hyd_strerror(err));
		free(prompt);
		return 1;
	}
	struct hyd_session_info si = { 0 };
	struct hyd_done_info done;
	if ((err = hyd_session_create(c, NULL, 0, &si)) < 0 ||
	    (err = hyd_session_append_text(c, si.id, prompt, len, HYD_APPEND_BOS, NULL)) < 0 ||
	    (err = hyd_generate(c, si.id, &sp, on_token, NULL, &done)) < 0) {
		const char *msg = hyd_last_error(c);
		fprintf(stderr, "hyd-complete: %s%s%s\n", hyd_strerror(err), *msg ? ": " : "", msg);
	} else {
		putchar('\n');
		if (done.reason == HYD_DONE_ERROR) {
			fprintf(stderr, "hyd-complete: generation failed: %s\n", hyd_strerror(done.status));
			err = done.status;
		}
	}
	if (si.id)
		hyd_session_delete(c, si.id);
	hyd_disconnect(c);
	free(prompt);
	return err < 0 ? 1 : 0;
}
