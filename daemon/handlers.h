/* hydd's request handlers: the glue between the transport (daemon/server.h), the session store
 * and the scheduler.  Include daemon/wire.h before this header when the transport is used. */
#ifndef HYD_DAEMON_HANDLERS_H
#define HYD_DAEMON_HANDLERS_H

#include <stdarg.h>
#include <stdint.h>

#include "daemon/hydd_config.h"
#include "daemon/scheduler.h"
#include "daemon/session.h"

struct hyd_server;
struct hyd_conn;
struct hyd_request;

struct hydd {
	const struct hydd_config *cfg;
	struct hyd_model *m;
	struct hyd__sess_model smodel;     /* what the store was opened with */
	struct hyd__sess_store *store;
	struct hyd_sched *sc;
	struct hyd_server *srv;
	char state_dir[4096];
	uint32_t max_sessions;
	uint64_t t_start_ns;                 /* CLOCK_MONOTONIC */
	char model_name[64];
	int verbose;
};

/* The scheduler's sink: events through d->srv. */
void hyd__hydd_sink(struct hydd *d, struct hyd_sched_sink *ret);

/* struct hyd_server_handlers callbacks; userdata is the struct hydd. */
int hyd__hydd_on_request(void *userdata, struct hyd_conn *c, const struct hyd_request *req);
void hyd__hydd_on_disconnect(void *userdata, struct hyd_conn *c);
int hyd__hydd_on_idle(void *userdata);

/* Log to stderr (journald picks the <N> prefix up); DEBUG only with -vv, INFO with -v or above
 * for the lines that matter at startup. */
void hyd__hydd_log(const struct hydd *d, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void hyd__hydd_vlog(const struct hydd *d, int level, const char *fmt, va_list ap);

#endif
