/* hydd's settings: defaults, config file, command line. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/hydd_config.h"
#include "engine/alloc.h"

const char hyd__cfg_usage[] =
	"Usage: hydd [OPTIONS]\n"
	"The hyd inference daemon: loads one GGUF model and serves sessions to local clients\n"
	"(libhyd, the hyd tool) over a Unix socket and shared-memory rings.  It always runs in\n"
	"the foreground (as systemd and tests expect); detach it with your service manager.\n"
	"\n"
	"  -m, --model FILE         GGUF model (default: the bundled Shakespeare model)\n"
	"  -s, --socket PATH        listening socket (default: $HYD_SOCKET, else\n"
	"                           $XDG_RUNTIME_DIR/hyd/hydd.sock, /run/hyd/hydd.sock for root)\n"
	"  -d, --state-dir DIR      session files (default: $XDG_RUNTIME_DIR/hyd/sessions,\n"
	"                           /run/hyd/sessions for root; tmpfs: sessions survive daemon\n"
	"                           restarts, not reboots; use a disk directory to keep them)\n"
	"  -t, --threads N          worker threads (default: the CPUs available)\n"
	"      --max-sessions N     sessions attached at once (default 1024)\n"
	"  -c, --max-context N      tokens per session (default: the model's, at most 32768)\n"
	"      --max-chunk N        prompt tokens per session in one step (default 256)\n"
	"      --memory-limit SIZE  bytes of session state over all sessions, K/M/G suffixes\n"
	"                           (default: no limit)\n"
	"      --plugin-dir DIRS    layer plugins, colon-separated (default: $HYD_PLUGIN_PATH,\n"
	"                           then the installed plugins)\n"
	"      --config FILE        read settings from FILE (default: /etc/hyd/hydd.conf for\n"
	"                           root, else $XDG_CONFIG_HOME/hyd/hydd.conf, if it exists);\n"
	"                           lines are `key = value` with the long option names as keys\n"
	"  -F, --foreground         accepted for compatibility: hydd never detaches\n"
	"  -v, --verbose            print the model plan and per-request logs (twice: debug)\n"
	"  -h, --help               show this help\n"
	"  -V, --version            show the version\n"
	"\n"
	"Signals: SIGTERM and SIGINT stop the daemon cleanly (the current step finishes and is\n"
	"committed; sessions stay on disk).  Exit status: 0 after a clean stop, 1 on a runtime\n"
	"failure, 2 on a usage or configuration error.\n";

void hyd__cfg_init(struct hydd_config *c)
{
	*c = (struct hydd_config){ 0 };
}

void hyd__cfg_free(struct hydd_config *c)
{
	if (!c)
		return;
	hyd_free(c->model);
	hyd_free(c->socket);
	hyd_free(c->state_dir);
	hyd_free(c->plugin_dir);
	hyd_free(c->config_file);
	hyd__cfg_init(c);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int hyd__cfg_parse_size(const char *s, uint64_t *ret)
{
	if (!s || !*s)
		return -EINVAL;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || !(v >= 0))
		return -EINVAL;
	while (*end == ' ')
		end++;
	double mul = 1;
	switch (*end) {
	case 'k': case 'K': mul = 1024.0; end++; break;
	case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
	case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
	case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
	}
	if (mul > 1 && *end == 'i')
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -EINVAL;
	v *= mul;
	if (v >= 18446744073709551615.0)
		return -ERANGE;
	*ret = (uint64_t)v;
	return 0;
}

static int parse_u32(const char *s, uint32_t *ret)
{
	if (!s || !*s || *s == '-')
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end || errno)
		return -EINVAL;
	if (v > UINT32_MAX)
		return -ERANGE;
	*ret = (uint32_t)v;
	return 0;
}

static int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "1", "yes", "true", "on" }, *const no[] = { "0", "no", "false", "off" };
	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(s, yes[i])) {
			*ret = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int set_str(char **dst, const char *v)
{
	char *s = hyd_strdup(v);
	if (!s)
		return -ENOMEM;
	hyd_free(*dst);
	*dst = s;
	return 0;
}

int hyd__cfg_set(struct hydd_config *c, const char *key, const char *value, char *err, size_t errlen)
{
	char k[32];
	size_t n = strlen(key);
	if (n >= sizeof(k)) {
		set_err(err, errlen, "unknown setting '%s'", key);
		return -EINVAL;
	}
	for (size_t i = 0; i <= n; i++)
		k[i] = key[i] == '_' ? '-' : key[i];
	int r = -EINVAL;
	bool b;
	if (!strcmp(k, "model"))
		r = set_str(&c->model, value);
	else if (!strcmp(k, "socket"))
		r = set_str(&c->socket, value);
	else if (!strcmp(k, "state-dir"))
		r = set_str(&c->state_dir, value);
	else if (!strcmp(k, "plugin-dir"))
		r = set_str(&c->plugin_dir, value);
	else if (!strcmp(k, "threads"))
		r = parse_u32(value, &c->threads);
	else if (!strcmp(k, "max-sessions"))
		r = parse_u32(value, &c->max_sessions);
	else if (!strcmp(k, "max-context"))
		r = parse_u32(value, &c->max_context);
	else if (!strcmp(k, "max-chunk"))
		r = parse_u32(value, &c->max_chunk);
	else if (!strcmp(k, "memory-limit"))
		r = hyd__cfg_parse_size(value, &c->memory_limit);
	else if (!strcmp(k, "foreground")) {
		if ((r = parse_bool(value, &b)) == 0)
			c->foreground = b;
	} else if (!strcmp(k, "verbose")) {
		uint32_t v;
		if (parse_bool(value, &b) == 0) {
			c->verbose = b;
			r = 0;
		} else if ((r = parse_u32(value, &v)) == 0) {
			c->verbose = v > 2 ? 2 : (int)v;
		}
	} else {
		set_err(err, errlen, "unknown setting '%s'", key);
		return -EINVAL;
	}
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		set_err(err, errlen, "bad value '%s' for %s", value, k);
		return -EINVAL;
	}
	/* an empty path means "the default", as if the key were absent */
	char **p = !strcmp(k, "model") ? &c->model : !strcmp(k, "socket") ? &c->socket :
		   !strcmp(k, "state-dir") ? &c->state_dir : !strcmp(k, "plugin-dir") ? &c->plugin_dir : NULL;
	if (p && !value[0]) {
		hyd_free(*p);
		*p = NULL;
	}
	return 0;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = 0;
	return s;
}

int hyd__cfg_load_file(struct hydd_config *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		int e = errno;
		set_err(err, errlen, "cannot open %s: %s", path, strerror(e));
		return -e;
	}
	char line[4096], msg[256];
	unsigned lineno = 0;
	int r = 0;
	while (r == 0 && fgets(line, sizeof(line), f)) {
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			set_err(err, errlen, "%s:%u: line too long", path, lineno);
			r = -EINVAL;
			break;
		}
		char *s = trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			set_err(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
			r = -EINVAL;
			break;
		}
		*eq = 0;
		char *key = trim(s), *value = trim(eq + 1);
		size_t vl = strlen(value);
		if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
			value[vl - 1] = 0;
			value++;
		}
		if ((r = hyd__cfg_set(c, key, value, msg, sizeof(msg))) == -EINVAL)
			set_err(err, errlen, "%s:%u: %s", path, lineno, msg);
	}
	if (r == 0 && ferror(f)) {
		set_err(err, errlen, "cannot read %s", path);
		r = -EIO;
	}
	fclose(f);
	if (r == 0 && (r = set_str(&c->config_file, path)) < 0)
		return r;
	return r;
}

int hyd__cfg_default_file(char *buf, size_t len)
{
	int n;
	if (geteuid() == 0) {
		n = snprintf(buf, len, "/etc/hyd/hydd.conf");
	} else {
		const char *x = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
		if (x && x[0] == '/')
			n = snprintf(buf, len, "%s/hyd/hydd.conf", x);
		else if (home && home[0] == '/')
			n = snprintf(buf, len, "%s/.config/hyd/hydd.conf", home);
		else
			return -ENOENT;
	}
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

enum { OPT_MAX_SESSIONS = 256, OPT_MAX_CHUNK, OPT_MEMORY_LIMIT, OPT_PLUGIN_DIR, OPT_CONFIG };

static const struct option longopts[] = {
	{ "model", required_argument, NULL, 'm' },
	{ "socket", required_argument, NULL, 's' },
	{ "state-dir", required_argument, NULL, 'd' },
	{ "threads", required_argument, NULL, 't' },
	{ "max-sessions", required_argument, NULL, OPT_MAX_SESSIONS },
	{ "max-context", required_argument, NULL, 'c' },
	{ "max-chunk", required_argument, NULL, OPT_MAX_CHUNK },
	{ "memory-limit", required_argument, NULL, OPT_MEMORY_LIMIT },
	{ "plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "foreground", no_argument, NULL, 'F' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ 0 },
};

static const char *key_of(int ch)
{
	for (const struct option *o = longopts; o->name; o++)
		if (o->val == ch)
			return o->name;
	return NULL;
}

int hyd__cfg_parse_args(struct hydd_config *c, int argc, char **argv, FILE *out, char *err, size_t errlen)
{
	/* The file comes first so that flags override it: find --config before anything else. */
	const char *file = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--config")) {
			if (i + 1 >= argc) {
				set_err(err, errlen, "option '--config' requires an argument");
				return -EINVAL;
			}
			file = argv[++i];
		} else if (!strncmp(argv[i], "--config=", 9)) {
			file = argv[i] + 9;
		}
	}
	int r;
	if (file) {
		if ((r = hyd__cfg_load_file(c, file, err, errlen)) < 0)
			return r == -ENOMEM ? r : -EINVAL;
	} else {
		char def[PATH_MAX];
		if (hyd__cfg_default_file(def, sizeof(def)) == 0 && access(def, F_OK) == 0 &&
		    (r = hyd__cfg_load_file(c, def, err, errlen)) < 0)
			return r == -ENOMEM ? r : -EINVAL;
	}
	int ch;
	char msg[256];
	optind = 0; /* full re-initialisation (GNU), so callers may parse more than once */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":m:s:d:t:c:FvhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'F': c->foreground = true; break;
		case 'v': c->verbose = c->verbose < 2 ? c->verbose + 1 : 2; break;
		case 'h': fputs(hyd__cfg_usage, out); return HYD_CFG_EXIT;
		case 'V': fprintf(out, "hydd %s\n", PACKAGE_VERSION); return HYD_CFG_EXIT;
		case OPT_CONFIG: break; /* read above */
		case ':':
			set_err(err, errlen, "option '%s' requires an argument", argv[optind - 1]);
			return -EINVAL;
		case '?':
			set_err(err, errlen, "unknown option '%s'", argv[optind - 1]);
			return -EINVAL;
		default: {
			const char *key = key_of(ch);
			if (!key) {
				set_err(err, errlen, "unknown option '%s'", argv[optind - 1]);
				return -EINVAL;
			}
			if ((r = hyd__cfg_set(c, key, optarg, msg, sizeof(msg))) < 0) {
				set_err(err, errlen, "--%s: %s", key, msg);
				return r == -ENOMEM ? r : -EINVAL;
			}
		}
		}
	}
	if (optind < argc) {
		set_err(err, errlen, "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	return HYD_CFG_RUN;
}
