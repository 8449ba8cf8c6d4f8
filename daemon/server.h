/* The hydd transport: listening socket, per-client shared-memory rings, and the event loop
 * (io_uring with futex waits, or epoll as a fallback) that turns them into validated requests
 * for a table of handlers and carries events back.
 *
 * Threading: everything runs on the thread that calls hyd_server_run(); every function here
 * must be called from that thread (i.e. from a handler), except hyd_server_post() and
 * hyd_server_stop(), which any thread (and, for stop, a signal handler) may call.
 *
 * Flow per loop iteration: accept/handshake new clients, drain every client's request ring (a
 * bounded number of requests per client, so none can starve the others) calling on_request,
 * call on_idle (the scheduler: one batched model step), wake clients that were sent events, and
 * only when nothing is pending spin briefly and then sleep (FUTEX_WAIT on every client's request
 * doorbell, the socket, the post queue and the timer). */
#ifndef HYD_DAEMON_SERVER_H
#define HYD_DAEMON_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "ipc/proto.h"

struct hyd_server;
struct hyd_conn;

enum hyd_io_backend {
	HYD_IO_AUTO = 0,         /* io_uring with futex waits; epoll if unavailable or HYD_IO_BACKEND=epoll */
	HYD_IO_URING,            /* io_uring or fail */
	HYD_IO_EPOLL,
};

enum hyd_srv_log_level { HYD_SRV_LOG_ERR = 3, HYD_SRV_LOG_WARNING = 4, HYD_SRV_LOG_INFO = 6, HYD_SRV_LOG_DEBUG = 7 };

struct hyd_server_opts {
	const char *socket_path; /* NULL: $HYD_SOCKET, then the default (ipc/socket.h) */
	int listen_fd;           /* >= 0: an already listening socket (systemd activation), not unlinked */
	enum hyd_io_backend backend;
	uint32_t ring_bytes;     /* per direction, power of two; 0: 256 KiB */
	uint32_t max_clients;    /* 0: 256 */
	uint32_t spin_ns;        /* busy-poll before sleeping; 0: 5000; UINT32_MAX: never spin */
	uint32_t max_backlog;    /* event bytes queued beyond a full ring before the client is dropped; 0: 16 MiB */
	uint32_t socket_mode;    /* 0: 0600 (0666 when running as root: SO_PEERCRED separates users) */
	void (*log)(void *userdata, int level, const char *msg); /* NULL: stderr */
	void *log_userdata;
};
/* Defaults: zero everything, listen_fd = -1. */
void hyd_server_opts_init(struct hyd_server_opts *o);

/* One request, joined from its fragments, checked by hyd__proto_check_request(), in private
 * memory that stays valid only during on_request (copy what you keep).  payload is 8-aligned. */
struct hyd_request {
	uint16_t type;           /* enum hyd_msg_type, HYD_REQ_* */
	uint16_t flags;
	uint32_t len;
	uint64_t id;
	const void *payload;
};

struct hyd_server_handlers {
	void *userdata;
	/* A client finished the handshake; < 0 refuses it (the errno is sent to it).  Optional. */
	int (*on_connect)(void *userdata, struct hyd_conn *c);
	/* A client that on_connect accepted is gone (EOF, malformed data, too slow, or the server is
	 * being freed).  The conn pointer is invalid once this returns; drop every reference to it
	 * (or keep hyd_server_conn_id() and look it up later).  Never called from inside a
	 * hyd_server_* call you made.  Optional. */
	void (*on_disconnect)(void *userdata, struct hyd_conn *c);
	/* A request.  Return 0 once it is answered or will be (by the scheduler, later: keep
	 * req->id); or a negative errno without having sent anything, and the server answers
	 * HYD_EVT_ERROR with it.  Required. */
	int (*on_request)(void *userdata, struct hyd_conn *c, const struct hyd_request *req);
	/* Called once per loop iteration after requests were handled: run one scheduler step.
	 * Return > 0 while more work is pending (the loop then polls instead of sleeping), 0 when
	 * idle, < 0 to stop the server with that error.  Optional. */
	int (*on_idle)(void *userdata);
	/* The deadline set with hyd_server_arm_timer() passed.  Optional. */
	void (*on_timer)(void *userdata);
};

/* Create the server: bind (or adopt) the socket, set up the backend.  The handlers table is
 * copied.  Errors: -EADDRINUSE (a daemon already answers at the path), -ENAMETOOLONG, -EACCES,
 * -EOPNOTSUPP (HYD_IO_URING requested but io_uring or its futex op is unavailable), -ENOMEM,
 * -EINVAL (bad ring size, no on_request). */
int hyd_server_create(const struct hyd_server_opts *opts, const struct hyd_server_handlers *h,
		      struct hyd_server **ret_srv);
/* Run until hyd_server_stop() or on_idle < 0.  0, or the negative errno that stopped it. */
int hyd_server_run(struct hyd_server *srv);
/* Make hyd_server_run() return soon.  Thread- and async-signal-safe. */
void hyd_server_stop(struct hyd_server *srv);
/* Disconnect every client (on_disconnect is called), close and unlink the socket, free. */
void hyd_server_free(struct hyd_server *srv);

const char *hyd_server_backend(const struct hyd_server *srv); /* "io_uring" or "epoll" */
const char *hyd_server_socket_path(const struct hyd_server *srv);
uint32_t hyd_server_n_clients(const struct hyd_server *srv);

/* Run fn(arg) on the loop thread soon.  Thread-safe.  -ENOMEM. */
int hyd_server_post(struct hyd_server *srv, void (*fn)(void *arg), void *arg);
/* Call on_timer once, ns nanoseconds from now (replacing an earlier deadline); 0 cancels. */
void hyd_server_arm_timer(struct hyd_server *srv, uint64_t ns);

/* ---- connections ---- */
uint64_t hyd_server_conn_id(const struct hyd_conn *c);      /* unique for the server's lifetime */
uid_t hyd_server_conn_uid(const struct hyd_conn *c);        /* from SO_PEERCRED */
gid_t hyd_server_conn_gid(const struct hyd_conn *c);
pid_t hyd_server_conn_pid(const struct hyd_conn *c);
void *hyd_server_conn_userdata(const struct hyd_conn *c);
void hyd_server_conn_set_userdata(struct hyd_conn *c, void *userdata);
/* The live connection with this id, or NULL if it is gone. */
struct hyd_conn *hyd_server_conn_by_id(struct hyd_server *srv, uint64_t id);
/* Bytes of events waiting beyond the ring because the client reads slowly: a scheduler may pause
 * that client's generation while this is large. */
size_t hyd_server_conn_backlog(const struct hyd_conn *c);
/* Drop a client (reason is logged); on_disconnect follows on the next loop iteration. */
void hyd_server_disconnect(struct hyd_conn *c, const char *reason);

/* ---- events to a client (all: 0, -ECONNRESET when the client is gone or was dropped for
 * being too slow, -EMSGSIZE over HYD_PROTO_MAX_MSG, -ENOMEM) ---- */
int hyd_server_sendv(struct hyd_conn *c, uint16_t type, uint64_t id, const struct iovec *iov, int iovcnt);
int hyd_server_send(struct hyd_conn *c, uint16_t type, uint64_t id, const void *payload, uint32_t len);
int hyd_server_send_token(struct hyd_conn *c, uint64_t id, int32_t token, const char *text, uint32_t len);
int hyd_server_send_done(struct hyd_conn *c, uint64_t id, const struct hyd_wire_done *done);
/* err: negative errno; fmt: the message (NULL: strerror of err). */
int hyd_server_send_error(struct hyd_conn *c, uint64_t id, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int hyd_server_send_ok(struct hyd_conn *c, uint64_t id, uint64_t value);

/* Ring counters of one connection (for syscall accounting). */
void hyd_server_conn_stats(const struct hyd_conn *c, struct hyd_ring_stats *ret_req, struct hyd_ring_stats *ret_evt);

#endif
