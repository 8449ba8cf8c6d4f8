/* What server.c (connections, dispatch, the loop) shares with its two backends. */
#ifndef HYD_DAEMON_SERVER_INTERNAL_H
#define HYD_DAEMON_SERVER_INTERNAL_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>

#include "daemon/server.h"
#include "ipc/shm.h"

enum conn_state {
	CONN_HANDSHAKE,          /* waiting for the hello */
	CONN_READY,
	CONN_CLOSING,            /* dropped; on_disconnect and teardown happen at the next safe point */
	CONN_DEAD,               /* torn down; freed once the backend holds no operation on it */
};

struct backlog_rec {
	struct backlog_rec *next;
	uint32_t len;
	uint16_t type;
	uint16_t flags;
	uint64_t id;
	uint8_t data[];
};

struct hyd_conn {
	struct hyd_server *srv;
	struct hyd_conn *next, *prev;    /* in srv->conns or srv->dead */
	uint64_t id;
	int fd;
	enum conn_state state;
	bool accepted;                   /* on_connect said yes: on_disconnect is owed */
	bool dirty;                      /* events written since the last doorbell check */
	uid_t uid;
	gid_t gid;
	pid_t pid;
	void *userdata;
	struct hyd_shm shm;
	char reason[128];

	uint8_t *rx;                     /* one record's payload, copied out of the ring */
	uint32_t rx_cap;
	uint8_t *frag;                   /* a request being joined from fragments */
	uint32_t frag_len, frag_cap;
	uint16_t frag_type;
	bool in_frag;
	uint64_t frag_id;

	struct backlog_rec *bl_head, *bl_tail;
	size_t bl_bytes;

	uint8_t hello[sizeof(struct hyd_wire_hello)];
	uint32_t hello_len;
	uint8_t sockbuf[64];

	/* io_uring backend: operations in flight that name this conn */
	int inflight;
	bool recv_pending, req_wait_pending, space_wait_pending;
};

struct post_item {
	struct post_item *next;
	void (*fn)(void *arg);
	void *arg;
};

struct backend_ops {
	const char *name;
	int (*init)(struct hyd_server *srv);
	void (*fini)(struct hyd_server *srv);
	int (*conn_added)(struct hyd_server *srv, struct hyd_conn *c);
	/* stop watching c (state is CONN_DEAD); call hyd__server_conn_free once nothing refers to it */
	void (*conn_teardown)(struct hyd_server *srv, struct hyd_conn *c);
	/* handle whatever is ready without sleeping */
	int (*poll)(struct hyd_server *srv);
	/* arm doorbells, re-check, sleep up to timeout_ns (< 0: no limit), handle what woke us */
	int (*wait)(struct hyd_server *srv, int64_t timeout_ns);
};

struct hyd_server {
	struct hyd_server_opts opts;
	struct hyd_server_handlers h;
	const struct backend_ops *ops;
	char *path;                      /* NULL when adopted from opts.listen_fd */
	int listen_fd;
	int efd;                         /* eventfd: posted work and stop */
	uint64_t start_ns;

	struct hyd_conn *conns;          /* handshaking, ready and closing */
	struct hyd_conn *dead;           /* waiting for the backend to let go */
	uint32_t n_conns;
	uint64_t next_conn_id;
	bool have_closing;

	_Atomic bool stop;
	pthread_mutex_t post_lock;
	struct post_item *post_head, *post_tail;
	uint64_t timer_deadline;

	/* io_uring backend */
	struct io_uring ring;
	bool ring_ready;
	bool accept_pending, efd_pending;
	uint64_t efd_buf;
	uint64_t accept_retry_ns;
	/* epoll backend */
	int epfd;
};

extern const struct backend_ops hyd__server_uring_ops;
extern const struct backend_ops hyd__server_epoll_ops;

/* io_uring is usable with the futex wait op: 0 or negative errno (for the log). */
int hyd__server_uring_available(void);

void hyd__server_log(struct hyd_server *srv, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A new client socket (nonblocking, cloexec): register it.  Closes fd on failure. */
void hyd__server_accepted(struct hyd_server *srv, int fd);
/* Bytes (n > 0), EOF (n == 0) or an error (n < 0) on c's socket. */
void hyd__server_sock_data(struct hyd_conn *c, const uint8_t *buf, ssize_t n);
void hyd__server_conn_close(struct hyd_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hyd__server_conn_free(struct hyd_conn *c);
void hyd__server_run_posted(struct hyd_server *srv);
/* c has requests to read, or backlog that now fits: the loop must not sleep. */
bool hyd__server_conn_has_work(struct hyd_conn *c);

#endif
