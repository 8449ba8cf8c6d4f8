/* hydd: the hyd inference daemon.  Loads the model, opens the session store and re-attaches its
 * sessions, then serves clients until SIGTERM/SIGINT (see hydd(8)). */
#include "config.h"

#include "daemon/wire.h" /* first: see why there */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "daemon/default_model.h"
#include "daemon/handlers.h"
#include "engine/alloc.h"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static struct hyd_server *volatile g_srv;

static void on_signal(int sig)
{
	struct hyd_server *srv = g_srv;
	if (srv)
		hyd_server_stop(srv); /* async-signal-safe: the loop finishes its step and returns */
}

static void server_log(void *userdata, int level, const char *msg)
{
	hyd__hydd_log(userdata, level, "%s", msg);
}

static void state_init(void *ctx, void *const *fixed)
{
	hyd_model_state_init(ctx, fixed);
}

/* Attach every valid session in the state directory; report (never delete) the others. */
struct scan {
	struct hydd *d;
	char (*names)[256];
	size_t n, cap;
};

static int scan_cb(void *ctx, const struct hyd__sess_info *info)
{
	struct scan *sc = ctx;
	if (!info->valid) {
		hyd__hydd_log(sc->d, HYD_SRV_LOG_WARNING, "session file %s is not usable: %s (left in place)", info->name,
			      info->reason);
		return 0;
	}
	if (info->attached)
		return 0;
	if (sc->n == sc->cap) {
		size_t cap = sc->cap ? sc->cap * 2 : 16;
		char(*nn)[256] = hyd_realloc(sc->names, cap * sizeof(*nn));
		if (!nn)
			return -ENOMEM;
		sc->names = nn;
		sc->cap = cap;
	}
	snprintf(sc->names[sc->n++], 256, "%s", info->name);
	return 0;
}

static int reattach(struct hydd *d)
{
	struct scan sc = { .d = d };
	int r = hyd__sess_list(d->store, scan_cb, &sc);
	uint32_t ok = 0, bad = 0;
	for (size_t i = 0; r >= 0 && i < sc.n; i++) {
		struct hyd__sess *s;
		char err[256] = "";
		int a = hyd__sess_attach(d->store, sc.names[i], HYD_SESSION_ANY_UID, &s, err, sizeof(err));
		if (a < 0) {
			hyd__hydd_log(d, HYD_SRV_LOG_WARNING, "session %s cannot be attached: %s (left in place)",
				      sc.names[i], err[0] ? err : strerror(-a));
			bad++;
			continue;
		}
		if (hyd__sched_n_sessions(d->sc) >= d->max_sessions) {
			hyd__hydd_log(d, HYD_SRV_LOG_WARNING, "session %s not attached: --max-sessions %u reached",
				      sc.names[i], d->max_sessions);
			hyd__sess_detach(s);
			bad++;
			continue;
		}
		if ((a = hyd__sched_add(d->sc, s, NULL)) < 0) {
			hyd__hydd_log(d, HYD_SRV_LOG_WARNING, "session %s not attached: %s", sc.names[i],
				      a == -EEXIST ? "its short id collides with another session's" : strerror(-a));
			hyd__sess_detach(s);
			bad++;
			continue;
		}
		if (hyd__sess_replay_to(s) > hyd__sess_pos(s))
			hyd__hydd_log(d, HYD_SRV_LOG_DEBUG, "session %s: %u tokens, %u pending evaluation", sc.names[i],
				      hyd__sess_replay_to(s), hyd__sess_replay_to(s) - hyd__sess_pos(s));
		ok++;
	}
	hyd_free(sc.names);
	if (r < 0)
		return r;
	hyd__hydd_log(d, HYD_SRV_LOG_INFO, "%u session(s) re-attached from %s%s", ok, d->state_dir,
		      bad ? ", some could not be (see above)" : "");
	return 0;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct hydd_config cfg;
	struct hydd d = { 0 };
	char err[1024] = "";
	int rc = EXIT_RUNTIME, r;
	const char **kinds = NULL;
	struct hyd_state_layout *layouts = NULL;

	hyd__cfg_init(&cfg);
	r = hyd__cfg_parse_args(&cfg, argc, argv, stdout, err, sizeof(err));
	if (r == HYD_CFG_EXIT) {
		hyd__cfg_free(&cfg);
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "hydd: %s\nTry 'hydd --help'.\n", err[0] ? err : strerror(-r));
		hyd__cfg_free(&cfg);
		return EXIT_USAGE;
	}
	d.cfg = &cfg;
	d.verbose = cfg.verbose;
	d.max_sessions = cfg.max_sessions ? cfg.max_sessions : 1024;
	d.t_start_ns = mono_ns();
	signal(SIGPIPE, SIG_IGN);

	const char *model = cfg.model ? cfg.model : hyd_default_model();
	if (!model) {
		hyd__hydd_log(&d, HYD_SRV_LOG_ERR, "no model given (--model) and the bundled default model is not installed");
		rc = EXIT_USAGE;
		goto out;
	}
	if (cfg.config_file)
		hyd__hydd_log(&d, HYD_SRV_LOG_INFO, "settings from %s", cfg.config_file);
	struct hyd_model_opts mo = {
		.n_threads = cfg.threads,
		.max_ctx = cfg.max_context,
		.max_chunk = cfg.max_chunk,
		.plugin_path = cfg.plugin_dir,
		.verbose = cfg.verbose > 0,
	};
	if ((r = hyd_model_load(model, &mo, &d.m, err, sizeof(err))) < 0) {
		hyd__hydd_log(&d, HYD_SRV_LOG_ERR, "cannot load model %s: %s", model, err[0] ? err : strerror(-r));
		goto out;
	}
	const char *base = strrchr(model, '/');
	snprintf(d.model_name, sizeof(d.model_name), "%s", base ? base + 1 : model);

	/* the session store, for this model */
	if (cfg.state_dir) {
		snprintf(d.state_dir, sizeof(d.state_dir), "%s", cfg.state_dir);
	} else if ((r = hyd__sess_default_dir(d.state_dir, sizeof(d.state_dir))) < 0) {
		hyd__hydd_log(&d, HYD_SRV_LOG_ERR, "no state directory: set --state-dir or XDG_RUNTIME_DIR");
		rc = EXIT_USAGE;
		goto out;
	}
	const uint32_t n_layer = hyd_model_n_layer(d.m);
	kinds = hyd_calloc(n_layer, sizeof(*kinds));
	layouts = hyd_calloc(n_layer, sizeof(*layouts));
	if (!kinds || !layouts) {
		hyd__hydd_log(&d, HYD_SRV_LOG_ERR, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < n_layer; i++) {
		kinds[i] = hyd_model_layer_kind(d.m, i);
		layouts[i] = *hyd_model_layer_layout(d.m, i);
	}
	hyd_model_fingerprint(d.m, d.smodel.fingerprint);
	d.smodel.n_layer = n_layer;
	d.smodel.max_ctx = hyd_model_limits(d.m)->max_ctx;
	d.smodel.kinds = kinds;
	d.smodel.layouts = layouts;
	d.smodel.state_init = state_init;
	d.smodel.state_init_ctx = d.m;
	struct hyd__sess_store_opts so = { .dir = d.state_dir, .memory_limit = cfg.memory_limit };
	if ((r = hyd__sess_store_open(&so, &d.smodel, &d.store, err, sizeof(err))) < 0) {
		hyd__hydd_log(&d, HYD_SRV_LOG_ERR, "cannot open the state directory %s: %s", d.state_dir,
			      err[0] ? err : strerror(-r));
		goto out;
	}
	struct hyd_sched_sink sink;
	hyd__hydd_sink(&d, &sink);
	if ((r = hyd__sched_new(d.m, NULL, &sink, &d.sc)) < 0) {
		hyd__hydd_log(&d, HYD_SRV_LOG_ERR, "cannot create the scheduler: %s", strerror(-r));
		goto out;
	}
	if ((r = reattach(&d)) < 0) {
		hyd__hydd_log(&d, HYD_SRV_LOG_ERR, "cannot read the state directory %s: %s", d.state_dir, strerror(-r));
		goto out;
	}

	/* the socket: handed over by systemd, or our own */
	struct hyd_server_opts sopts;
	hyd_server_opts_init(&sopts);
	sopts.socket_path = cfg.socket;
	sopts.log = server_log;
	sopts.log_userdata = &d;
	int nfd = sd_listen_fds(1);
	if (nfd > 1) {
		hyd__hydd_log(&d, HYD_SRV_LOG_ERR, "systemd passed %d sockets, expected one", nfd);
		rc = EXIT_USAGE;
		goto out;
	}
	if (nfd == 1)
		sopts.listen_fd = SD_LISTEN_FDS_START;
	struct hyd_server_handlers h = {
		.userdata = &d,
		.on_request = hyd__hydd_on_request,
		.on_disconnect = hyd__hydd_on_disconnect,
		.on_idle = hyd__hydd_on_idle,
	};
	if ((r = hyd_server_create(&sopts, &h, &d.srv)) < 0) {
		if (r == -EADDRINUSE)
			hyd__hydd_log(&d, HYD_SRV_LOG_ERR, "another daemon answers on %s",
				      cfg.socket ? cfg.socket : "the default socket");
		else
			hyd__hydd_log(&d, HYD_SRV_LOG_ERR, "cannot listen: %s", strerror(-r));
		goto out;
	}
	g_srv = d.srv;
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	hyd__hydd_log(&d, HYD_SRV_LOG_INFO, "serving %s (%s, %u layers, context %u) on %s with %s", d.model_name,
		      hyd_model_arch(d.m), n_layer, d.smodel.max_ctx,
		      nfd == 1 ? "the socket systemd passed" : hyd_server_socket_path(d.srv), hyd_server_backend(d.srv));
	sd_notifyf(0, "READY=1\nSTATUS=serving %s, %u sessions", d.model_name, hyd__sched_n_sessions(d.sc));
	r = hyd_server_run(d.srv);
	sd_notify(0, "STOPPING=1");
	g_srv = NULL;
	if (r < 0) {
		hyd__hydd_log(&d, HYD_SRV_LOG_ERR, "the event loop failed: %s", strerror(-r));
		goto out;
	}
	hyd__hydd_log(&d, HYD_SRV_LOG_INFO, "stopping: %u session(s) stay in %s", hyd__sched_n_sessions(d.sc),
		      d.state_dir);
	rc = 0;
out:
	/* Clients first (they reference jobs), then jobs and sessions, then the store. */
	hyd_server_free(d.srv);
	hyd__sched_free(d.sc);
	hyd__sess_store_close(d.store);
	hyd_model_free(d.m);
	hyd_free(kinds);
	hyd_free(layouts);
	hyd__cfg_free(&cfg);
	return rc;
}
