/* The hyd tool's daemon commands: completion through hydd (`echo text | hyd`), `hyd session ...`
 * and `hyd status`.  They talk to the daemon through libhyd only, so this file must not see the
 * engine's headers (daemon/sampler.h and daemon/session.h reuse libhyd's names). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hyd/client.h>

#include "client/cli.h"
#include "client/cmd_daemon.h"
#include "engine/alloc.h"

#define DEFAULT_SESSION "default"
#define MAX_STOP 16

static const char complete_usage[] =
	"Usage: echo TEXT | hyd [OPTIONS]\n"
	"       hyd [OPTIONS] -p TEXT\n"
	"Append TEXT to a session in the daemon (hydd) and stream the completion to stdout.\n"
	"The default session is the one named \"" DEFAULT_SESSION "\" (created on first use); the\n"
	"conversation accumulates there.  When the text comes from stdin, one trailing newline is removed.\n\n"
	"  -s, --session ID|NAME   use this session instead of the default one (it must exist)\n"
	"  -p, --prompt TEXT       text to append (default: read stdin)\n"
	"  -n, --n-predict N       tokens to generate (default 128; 0 = only append the text)\n"
	"      --temp T            temperature; 0 = greedy (default 0.8)\n"
	"      --top-k K           keep the K most likely tokens (default 40; 0 = off)\n"
	"      --top-p P           nucleus sampling (default 0.95; 1 = off)\n"
	"      --min-p P           drop tokens below P x the best one's probability (default 0.05)\n"
	"      --repeat-penalty R  penalise recent tokens (default 1 = off)\n"
	"      --repeat-last-n N   how many recent tokens the penalty sees (default 64)\n"
	"      --seed S            random seed (default: chosen by the daemon)\n"
	"      --stop STR          stop when STR is generated (repeatable, at most 16)\n"
	"  -S, --socket PATH       the daemon's socket (default: $HYD_SOCKET, else\n"
	"                          $XDG_RUNTIME_DIR/hyd/hydd.sock, /run/hyd/hydd.sock for root)\n"
	"  -v, --verbose           print token counts and timings to stderr\n"
	"  -h, --help              show this help\n";

static const char session_usage[] =
	"Usage: hyd session COMMAND [ARGS] [-S PATH]\n"
	"  new [NAME] [--ctx N]    create a session; prints its id\n"
	"  list                    list this user's sessions\n"
	"  show ID|NAME            describe one session (tokens, memory per layer kind)\n"
	"  fork ID|NAME [NAME]     copy a session; prints the copy's id\n"
	"  snapshot ID|NAME FILE   write the session to FILE (written by the daemon)\n"
	"  restore FILE [NAME]     load a snapshot as a new session; prints its id\n"
	"  rm ID|NAME...           delete sessions\n";

static const char status_usage[] =
	"Usage: hyd status [-S PATH]\n"
	"Show the daemon's model, event loop, clients, sessions, memory per layer kind and throughput.\n";

enum {
	OPT_TEMP = 256,
	OPT_TOPK,
	OPT_TOPP,
	OPT_MINP,
	OPT_REPP,
	OPT_REPN,
	OPT_SEED,
	OPT_STOP,
	OPT_CTX,
};

/* ---------------------------------------------------------------- connection and errors */

static const char *socket_shown(const char *opt)
{
	static char buf[PATH_MAX];
	const char *env = getenv("HYD_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");
	if (opt && *opt)
		return opt;
	if (env && *env)
		return env;
	if (geteuid() == 0)
		return "/run/hyd/hydd.sock";
	if (xdg && *xdg)
		snprintf(buf, sizeof(buf), "%s/hyd/hydd.sock", xdg);
	else
		snprintf(buf, sizeof(buf), "/run/user/%u/hyd/hydd.sock", (unsigned)geteuid());
	return buf;
}

static int connect_or_explain(const char *sock, struct hyd_conn **ret)
{
	int err = hyd_connect(sock, ret);
	if (err == 0)
		return HYD_EXIT_OK;
	const char *why = err == -ENOENT ? "no socket there" : err == -ECONNREFUSED ? "nothing listens there" :
			  hyd_strerror(err);
	fprintf(stderr, "hyd: cannot reach the daemon at %s: %s\n", socket_shown(sock), why);
	if (err == -ENOENT || err == -ECONNREFUSED)
		fputs("hyd: start it with 'hydd --foreground' (or 'systemctl --user start hydd.socket'),\n"
		      "     or point --socket / HYD_SOCKET at a running one\n", stderr);
	return HYD_EXIT_NODAEMON;
}

/* Prints what failed and maps it to an exit code: a daemon that went away is "unreachable". */
static int fail(struct hyd_conn *c, int err, const char *what, const char *arg)
{
	const char *msg = hyd_last_error(c);
	/* the daemon's message says more than the errno's text */
	fprintf(stderr, "hyd: %s%s%s%s: %s\n", what, arg ? " '" : "", arg ? arg : "", arg ? "'" : "",
		*msg ? msg : hyd_strerror(err));
	if (err == -ECONNRESET) {
		fputs("hyd: the daemon went away\n", stderr);
		return HYD_EXIT_NODAEMON;
	}
	return HYD_EXIT_FAIL;
}

/* An id is what `hyd session new` prints: 16 hex digits.  Anything else names a session. */
static bool parse_id(const char *s, uint64_t *ret)
{
	if (strlen(s) != 16)
		return false;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 :
			*p >= 'A' && *p <= 'F' ? *p - 'A' + 10 : -1;
		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	if (v == 0)
		return false;
	*ret = v;
	return true;
}

static int resolve(struct hyd_conn *c, const char *ref, struct hyd_session_info *ret)
{
	uint64_t id = 0;
	if (!*ref)
		return -EINVAL;
	if (strlen(ref) >= HYD_NAME_MAX)
		return -ENAMETOOLONG;
	if (parse_id(ref, &id))
		return hyd_session_open(c, id, NULL, ret);
	return hyd_session_open(c, 0, ref, ret);
}

/* ---------------------------------------------------------------- completion */

struct out_state {
	bool broken;
};

static int on_token(void *ud, const struct hyd_token_event *ev)
{
	struct out_state *o = ud;
	if (ev->text_len && (fwrite(ev->text, 1, ev->text_len, stdout) != ev->text_len || fflush(stdout))) {
		o->broken = true;
		return 1;
	}
	return 0;
}

/* The default session: open it, or create it on first use (another client may win that race). */
static int default_session(struct hyd_conn *c, struct hyd_session_info *ret)
{
	int err = hyd_session_open(c, 0, DEFAULT_SESSION, ret);
	if (err != -ENOENT)
		return err;
	err = hyd_session_create(c, DEFAULT_SESSION, 0, ret);
	if (err == -EEXIST)
		err = hyd_session_open(c, 0, DEFAULT_SESSION, ret);
	return err;
}

/* --socket may come before a subcommand (hyd -S PATH status) or after it */
static const char *global_socket;

int hyd_cmd_complete(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "session", required_argument, NULL, 's' },
		{ "prompt", required_argument, NULL, 'p' },
		{ "n-predict", required_argument, NULL, 'n' },
		{ "temp", required_argument, NULL, OPT_TEMP },
		{ "top-k", required_argument, NULL, OPT_TOPK },
		{ "top-p", required_argument, NULL, OPT_TOPP },
		{ "min-p", required_argument, NULL, OPT_MINP },
		{ "repeat-penalty", required_argument, NULL, OPT_REPP },
		{ "repeat-last-n", required_argument, NULL, OPT_REPN },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "stop", required_argument, NULL, OPT_STOP },
		{ "socket", required_argument, NULL, 'S' },
		{ "model", required_argument, NULL, 'm' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct hyd_sampling sp;
	hyd_sampling_init(&sp);
	uint32_t n_predict = 128;
	const char *session = NULL, *prompt = NULL, *stops[MAX_STOP];
	uint32_t n_stop = 0;
	bool verbose = false;
	int ch;
	optind = 0; /* 0, not 1: glibc then forgets the previous parse (hyd -S PATH status) */
	/* '+': stop at the first word, which may be a subcommand after global options */
	while ((ch = getopt_long(argc, argv, "+s:p:n:S:m:vh", longs, NULL)) != -1) {
		switch (ch) {
		case 's': session = optarg; break;
		case 'p': prompt = optarg; break;
		case 'n': n_predict = hyd_cli_u32("--n-predict", optarg); break;
		case OPT_TEMP: sp.temperature = hyd_cli_f32("--temp", optarg); break;
		case OPT_TOPK: sp.top_k = (int32_t)hyd_cli_u32("--top-k", optarg); break;
		case OPT_TOPP: sp.top_p = hyd_cli_f32("--top-p", optarg); break;
		case OPT_MINP: sp.min_p = hyd_cli_f32("--min-p", optarg); break;
		case OPT_REPP: sp.repeat_penalty = hyd_cli_f32("--repeat-penalty", optarg); break;
		case OPT_REPN: sp.repeat_last_n = (int32_t)hyd_cli_u32("--repeat-last-n", optarg); break;
		case OPT_SEED: sp.seed = strtoull(optarg, NULL, 0); break;
		case OPT_STOP:
			if (n_stop == MAX_STOP)
				hyd_cli_usage_error("at most %d --stop strings", MAX_STOP);
			if (!*optarg || strlen(optarg) > 255)
				hyd_cli_usage_error("--stop expects 1 to 255 bytes");
			stops[n_stop++] = optarg;
			break;
		case 'S': global_socket = optarg; break;
		case 'm':
			hyd_cli_usage_error("the daemon serves the model it was started with (hydd --model FILE);\n"
					    "     use 'hyd run -m %s' to run a model in this process", optarg);
		case 'v': verbose = true; break;
		case 'h': fputs(complete_usage, stdout); return HYD_EXIT_OK;
		default: hyd_cli_usage_error("bad option");
		}
	}
	if (optind < argc) {
		if (!strcmp(argv[optind], "session"))
			return hyd_cmd_session(argc - optind, argv + optind);
		if (!strcmp(argv[optind], "status"))
			return hyd_cmd_status(argc - optind, argv + optind);
		hyd_cli_usage_error("unexpected argument '%s' (the text goes in -p or stdin)", argv[optind]);
	}
	if (!prompt && isatty(STDIN_FILENO))
		hyd_cli_usage_error("no text: pipe it into hyd (echo TEXT | hyd) or give -p TEXT");
	sp.max_tokens = n_predict;
	sp.stop = stops;
	sp.n_stop = n_stop;

	char *text = NULL;
	size_t len = 0;
	if (prompt) {
		len = strlen(prompt);
	} else {
		int r = hyd_cli_read_all(STDIN_FILENO, &text, &len);
		if (r) {
			fprintf(stderr, "hyd: cannot read the text from stdin: %s\n", strerror(-r));
			return HYD_EXIT_FAIL;
		}
		if (len && text[len - 1] == '\n')
			text[--len] = 0;
		prompt = text;
	}
	/* a reader that goes away must cancel the generation, not kill us with the session busy */
	signal(SIGPIPE, SIG_IGN);

	struct hyd_conn *c = NULL;
	struct hyd_session_info si;
	struct hyd_done_info done = { 0 };
	struct out_state out = { 0 };
	int rc = connect_or_explain(global_socket, &c), err;
	if (rc)
		goto out;
	err = session ? resolve(c, session, &si) : default_session(c, &si);
	if (err < 0) {
		rc = fail(c, err, session ? "cannot open session" : "cannot open the default session", session);
		goto out;
	}
	if (len && (err = hyd_session_append_text(c, si.id, prompt, len, HYD_APPEND_BOS, NULL)) < 0) {
		rc = fail(c, err, "cannot append the text", NULL);
		goto out;
	}
	if (n_predict) {
		err = hyd_generate(c, si.id, &sp, on_token, &out, &done);
		if (err < 0) {
			rc = fail(c, err, "generation failed", NULL);
			goto out;
		}
		if (out.broken) {
			fprintf(stderr, "hyd: cannot write the output: %s\n", strerror(errno));
			rc = HYD_EXIT_FAIL;
			goto out;
		}
		if (done.reason == HYD_DONE_ERROR) {
			rc = fail(c, done.status, "generation failed", NULL);
			goto out;
		}
	}
	/* as 'hyd run' does: the completion ends with a newline */
	if (fputc('\n', stdout) == EOF || fflush(stdout)) {
		rc = HYD_EXIT_FAIL;
		goto out;
	}
	if (verbose && n_predict) {
		static const char *const reasons[] = { "end of text", "token limit", "stop string", "cancelled",
						       "error" };
		fprintf(stderr, "hyd: session %016" PRIx64 ": prompt %u tokens in %.3f s; generated %u tokens in %.3f s "
			"(%.1f tok/s); %s\n", si.id, done.n_prompt, done.prompt_ns * 1e-9, done.n_generated,
			done.gen_ns * 1e-9, done.n_generated / (done.gen_ns * 1e-9 + 1e-12),
			done.reason < 5 ? reasons[done.reason] : "?");
	}
	rc = HYD_EXIT_OK;
out:
	hyd_disconnect(c);
	hyd_free(text);
	return rc;
}

/* ---------------------------------------------------------------- hyd session */

static void fmt_bytes(char *buf, size_t len, uint64_t b)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", b);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
}

static void fmt_time(char *buf, size_t len, uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;
	if (!ns || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "-");
}

static void show_info(const struct hyd_session_info *s)
{
	char b[32], t[32];
	fmt_time(t, sizeof(t), s->created_ns);
	printf("id:        %016" PRIx64 "\n", s->id);
	printf("name:      %s\n", s->name[0] ? s->name : "-");
	printf("tokens:    %u\n", s->n_tokens);
	printf("max_ctx:   %u\n", s->max_ctx);
	fmt_bytes(b, sizeof(b), s->bytes);
	printf("bytes:     %" PRIu64 " (%s)\n", s->bytes, b);
	printf("attn:      %" PRIu64 "\n", s->attn_bytes);
	printf("swa:       %" PRIu64 "\n", s->swa_bytes);
	printf("ssm:       %" PRIu64 "\n", s->ssm_bytes);
	printf("other:     %" PRIu64 "\n", s->other_bytes);
	printf("uid:       %u\n", s->uid);
	printf("created:   %s\n", t);
}

static int session_list(struct hyd_conn *c)
{
	struct hyd_session_info *l;
	size_t n;
	int err = hyd_session_list(c, &l, &n);
	if (err < 0)
		return fail(c, err, "cannot list sessions", NULL);
	printf("%-16s  %-20s %8s %8s %10s  %s\n", "ID", "NAME", "TOKENS", "MAX_CTX", "MEMORY", "CREATED");
	for (size_t i = 0; i < n; i++) {
		char b[32], t[32];
		fmt_bytes(b, sizeof(b), l[i].bytes);
		fmt_time(t, sizeof(t), l[i].created_ns);
		printf("%016" PRIx64 "  %-20s %8u %8u %10s  %s\n", l[i].id, l[i].name[0] ? l[i].name : "-",
		       l[i].n_tokens, l[i].max_ctx, b, t);
	}
	hyd_session_list_free(l);
	return HYD_EXIT_OK;
}

/* The daemon resolves relative paths against its own directory: send absolute ones. */
static char *absolute(const char *path)
{
	if (path[0] == '/')
		return hyd_strdup(path);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	size_t n = strlen(cwd) + strlen(path) + 2;
	char *r = hyd_malloc(n);
	if (r)
		snprintf(r, n, "%s/%s", cwd, path);
	return r;
}

int hyd_cmd_session(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "socket", required_argument, NULL, 'S' },
		{ "ctx", required_argument, NULL, OPT_CTX },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint32_t ctx = 0;
	int ch;
	/* argv[0] is "session"; options may come anywhere (GNU permutation) */
	optind = 0;
	while ((ch = getopt_long(argc, argv, "S:c:h", longs, NULL)) != -1) {
		switch (ch) {
		case 'S': global_socket = optarg; break;
		case 'c':
		case OPT_CTX: ctx = hyd_cli_u32("--ctx", optarg); break;
		case 'h': fputs(session_usage, stdout); return HYD_EXIT_OK;
		default: hyd_cli_usage_error("bad option for 'hyd session'");
		}
	}
	if (optind >= argc) {
		fputs(session_usage, stderr);
		return HYD_EXIT_USAGE;
	}
	const char *cmd = argv[optind];
	char **args = argv + optind + 1;
	int nargs = argc - optind - 1;
	static const struct {
		const char *name;
		int min, max;
	} shapes[] = {
		{ "new", 0, 1 }, { "list", 0, 0 }, { "ls", 0, 0 }, { "show", 1, 1 }, { "fork", 1, 2 },
		{ "snapshot", 2, 2 }, { "restore", 1, 2 }, { "rm", 1, INT_MAX }, { "delete", 1, INT_MAX },
	};
	size_t k;
	for (k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++)
		if (!strcmp(cmd, shapes[k].name))
			break;
	if (k == sizeof(shapes) / sizeof(shapes[0]))
		hyd_cli_usage_error("unknown session command '%s'", cmd);
	if (nargs < shapes[k].min || nargs > shapes[k].max)
		hyd_cli_usage_error("wrong number of arguments for 'hyd session %s'\n%s", cmd, session_usage);
	if (ctx && strcmp(cmd, "new"))
		hyd_cli_usage_error("--ctx applies to 'hyd session new' only");
	for (int i = 0; i < nargs; i++)
		if (!*args[i])
			hyd_cli_usage_error("empty argument for 'hyd session %s'", cmd);

	struct hyd_conn *c;
	int rc = connect_or_explain(global_socket, &c), err;
	if (rc)
		return rc;
	struct hyd_session_info si;
	if (!strcmp(cmd, "new")) {
		if ((err = hyd_session_create(c, nargs ? args[0] : NULL, ctx, &si)) < 0)
			rc = fail(c, err, "cannot create a session", nargs ? args[0] : NULL);
		else
			printf("%016" PRIx64 "\n", si.id);
	} else if (!strcmp(cmd, "list") || !strcmp(cmd, "ls")) {
		rc = session_list(c);
	} else if (!strcmp(cmd, "show") || !strcmp(cmd, "snapshot")) {
		if ((err = resolve(c, args[0], &si)) < 0) {
			rc = fail(c, err, "no session", args[0]);
		} else if (!strcmp(cmd, "show")) {
			show_info(&si);
		} else {
			char *path = absolute(args[1]);
			err = path ? hyd_session_snapshot(c, si.id, path) : -ENOMEM;
			if (err < 0)
				rc = fail(c, err, "cannot write the snapshot", args[1]);
			hyd_free(path);
		}
	} else if (!strcmp(cmd, "fork")) {
		if ((err = resolve(c, args[0], &si)) < 0)
			rc = fail(c, err, "no session", args[0]);
		else if ((err = hyd_session_fork(c, si.id, nargs > 1 ? args[1] : NULL, &si)) < 0)
			rc = fail(c, err, "cannot fork session", args[0]);
		else
			printf("%016" PRIx64 "\n", si.id);
	} else if (!strcmp(cmd, "restore")) {
		char *path = absolute(args[0]);
		err = path ? hyd_session_restore(c, path, nargs > 1 ? args[1] : NULL, &si) : -ENOMEM;
		if (err < 0)
			rc = fail(c, err, "cannot restore", args[0]);
		else
			printf("%016" PRIx64 "\n", si.id);
		hyd_free(path);
	} else { /* rm, delete */
		for (int i = 0; i < nargs && rc != HYD_EXIT_NODAEMON; i++)
			if ((err = resolve(c, args[i], &si)) < 0 || (err = hyd_session_delete(c, si.id)) < 0)
				rc = fail(c, err, "cannot delete session", args[i]);
	}
	if (fflush(stdout) && rc == HYD_EXIT_OK)
		rc = HYD_EXIT_FAIL;
	hyd_disconnect(c);
	return rc;
}

/* ---------------------------------------------------------------- hyd status */

int hyd_cmd_status(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "socket", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "S:h", longs, NULL)) != -1) {
		switch (ch) {
		case 'S': global_socket = optarg; break;
		case 'h': fputs(status_usage, stdout); return HYD_EXIT_OK;
		default: hyd_cli_usage_error("bad option for 'hyd status'");
		}
	}
	if (optind < argc)
		hyd_cli_usage_error("unexpected argument '%s' for 'hyd status'", argv[optind]);
	struct hyd_conn *c;
	int rc = connect_or_explain(global_socket, &c);
	if (rc)
		return rc;
	struct hyd_status st;
	int err = hyd_status(c, &st);
	if (err < 0) {
		rc = fail(c, err, "cannot get the status", NULL);
		hyd_disconnect(c);
		return rc;
	}
	char b[32], lim[32];
	fmt_bytes(b, sizeof(b), st.mem_total);
	if (st.mem_limit)
		fmt_bytes(lim, sizeof(lim), st.mem_limit);
	else
		snprintf(lim, sizeof(lim), "none");
	printf("model:       %s (%s)\n", st.model, st.arch);
	printf("socket:      %s\n", socket_shown(global_socket));
	printf("event loop:  %s\n", st.backend);
	printf("uptime:      %.0f s\n", st.uptime_ns * 1e-9);
	printf("clients:     %u\n", st.n_clients);
	printf("sessions:    %u\n", st.n_sessions);
	printf("memory:      %" PRIu64 " (%s), limit %s\n", st.mem_total, b, lim);
	printf("throughput:  prompt %.1f tok/s, generation %.1f tok/s\n", st.prompt_tok_s, st.gen_tok_s);
	printf("%-16s %14s %10s\n", "KIND", "BYTES", "TOKENS");
	for (uint32_t i = 0; i < st.n_kinds; i++)
		printf("%-16s %14" PRIu64 " %10" PRIu64 "\n", st.kinds[i].kind, st.kinds[i].bytes, st.kinds[i].tokens);
	hyd_disconnect(c);
	return fflush(stdout) ? HYD_EXIT_FAIL : HYD_EXIT_OK;
}
