/* hydd's transport core: the socket, connections, request intake and event output, and the
 * loop; the two backends (server_uring.c, server_epoll.c) only differ in how they sleep. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/server_internal.h"
#include "daemon/text_safe.h"
#include "engine/alloc.h"
#include "ipc/socket.h"

#define DRAIN_BUDGET 64          /* requests per client per loop iteration */
#define DEFAULT_SPIN_NS 5000u
#define DEFAULT_MAX_CLIENTS 256u
#define DEFAULT_MAX_BACKLOG (16u << 20)
#define FRAG_KEEP_BYTES (1u << 20)

void hyd_server_opts_init(struct hyd_server_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->listen_fd = -1;
}

void hyd__server_log(struct hyd_server *srv, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (srv->opts.log)
		srv->opts.log(srv->opts.log_userdata, level, buf);
	else
		fprintf(stderr, "hydd: %s\n", buf);
}

/* ---------------------------------------------------------------- socket */

static int make_parent_dir(const char *path, mode_t mode)
{
	char *dir = hyd_strdup(path);
	if (!dir)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	int err = 0;
	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, mode) < 0 && errno != EEXIST)
			err = -errno;
	}
	hyd_free(dir);
	return err;
}

static int bind_socket(struct hyd_server *srv, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	bool root = geteuid() == 0;
	int err = make_parent_dir(path, root ? 0755 : 0700);
	if (err < 0)
		return err;

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		if (err != -EADDRINUSE)
			goto fail;
		/* A socket file is there: refuse if a daemon answers, else it is stale. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0)
			goto fail;
		int c = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
		int cerr = errno;
		close(probe);
		if (c == 0 || cerr != ECONNREFUSED)
			goto fail;
		unlink(path);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			err = -errno;
			goto fail;
		}
	}
	mode_t mode = srv->opts.socket_mode ? srv->opts.socket_mode : (root ? 0666 : 0600);
	if (chmod(path, mode) < 0 || listen(fd, 128) < 0) {
		err = -errno;
		unlink(path);
		goto fail;
	}
	srv->listen_fd = fd;
	return 0;
fail:
	close(fd);
	return err;
}

/* ---------------------------------------------------------------- create / free */

static const struct backend_ops *pick_backend(struct hyd_server *srv, int *ret_err)
{
	enum hyd_io_backend want = srv->opts.backend;
	const char *env = getenv("HYD_IO_BACKEND");
	if (want == HYD_IO_AUTO && env && *env) {
		if (!strcmp(env, "epoll"))
			want = HYD_IO_EPOLL;
		else if (!strcmp(env, "io_uring") || !strcmp(env, "uring"))
			want = HYD_IO_URING;
		else
			hyd__server_log(srv, HYD_SRV_LOG_WARNING, "ignoring HYD_IO_BACKEND=%s (io_uring or epoll)", env);
	}
	if (want == HYD_IO_EPOLL) {
		hyd__server_log(srv, HYD_SRV_LOG_INFO, "event loop: epoll (requested)");
		return &hyd__server_epoll_ops;
	}
	int err = hyd__server_uring_available();
	if (err == 0) {
		hyd__server_log(srv, HYD_SRV_LOG_INFO, "event loop: io_uring with futex waits");
		return &hyd__server_uring_ops;
	}
	if (want == HYD_IO_URING) {
		hyd__server_log(srv, HYD_SRV_LOG_ERR, "io_uring with futex waits unavailable: %s", strerror(-err));
		*ret_err = -EOPNOTSUPP;
		return NULL;
	}
	hyd__server_log(srv, HYD_SRV_LOG_WARNING, "io_uring with futex waits unavailable (%s): event loop: epoll",
			strerror(-err));
	return &hyd__server_epoll_ops;
}

int hyd_server_create(const struct hyd_server_opts *opts, const struct hyd_server_handlers *h,
		      struct hyd_server **ret_srv)
{
	if (!h || !h->on_request)
		return -EINVAL;
	struct hyd_server *srv = hyd_calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	if (opts)
		srv->opts = *opts;
	else
		hyd_server_opts_init(&srv->opts);
	srv->h = *h;
	srv->listen_fd = -1;
	srv->efd = -1;
	srv->epfd = -1;
	srv->next_conn_id = 1;
	srv->start_ns = hyd__now_ns();
	pthread_mutex_init(&srv->post_lock, NULL);
	struct hyd_server_opts *o = &srv->opts;
	if (!o->ring_bytes)
		o->ring_bytes = HYD_SHM_DEFAULT_RING;
	if (!o->max_clients)
		o->max_clients = DEFAULT_MAX_CLIENTS;
	if (!o->spin_ns)
		o->spin_ns = DEFAULT_SPIN_NS;
	else if (o->spin_ns == UINT32_MAX)
		o->spin_ns = 0;
	if (!o->max_backlog)
		o->max_backlog = DEFAULT_MAX_BACKLOG;
	o->socket_path = NULL; /* not owned; srv->path is the copy */

	int err = -EINVAL;
	if (o->ring_bytes < HYD_RING_MIN_SIZE || o->ring_bytes > HYD_RING_MAX_SIZE || (o->ring_bytes & (o->ring_bytes - 1)))
		goto fail;

	srv->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->efd < 0) {
		err = -errno;
		goto fail;
	}
	if (opts && opts->listen_fd >= 0) {
		int acc = 0;
		socklen_t al = sizeof(acc);
		/* A zeroed opts struct would otherwise adopt stdin. */
		if (getsockopt(opts->listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || !acc) {
			err = -ENOTSOCK;
			goto fail;
		}
		srv->listen_fd = opts->listen_fd;
		int fl = fcntl(srv->listen_fd, F_GETFL);
		if (fl < 0 || fcntl(srv->listen_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
			err = -errno;
			srv->listen_fd = -1;
			goto fail;
		}
	} else {
		char buf[sizeof(((struct sockaddr_un *)0)->sun_path)];
		const char *path = opts ? opts->socket_path : NULL;
		if (!path) {
			if ((err = hyd__socket_default_path(buf, sizeof(buf))) < 0)
				goto fail;
			path = buf;
		}
		if ((err = bind_socket(srv, path)) < 0)
			goto fail;
		if (!(srv->path = hyd_strdup(path))) {
			err = -ENOMEM;
			unlink(path);
			goto fail;
		}
	}
	srv->ops = pick_backend(srv, &err);
	if (!srv->ops)
		goto fail;
	if ((err = srv->ops->init(srv)) < 0) {
		srv->ops = NULL;
		goto fail;
	}
	*ret_srv = srv;
	return 0;
fail:
	hyd_server_free(srv);
	return err;
}

static void conn_teardown(struct hyd_conn *c);

static void reap_closing(struct hyd_server *srv)
{
	if (!srv->have_closing)
		return;
	srv->have_closing = false;
	struct hyd_conn *c = srv->conns, *next;
	for (; c; c = next) {
		next = c->next;
		if (c->state == CONN_CLOSING)
			conn_teardown(c);
	}
}

void hyd_server_free(struct hyd_server *srv)
{
	if (!srv)
		return;
	for (struct hyd_conn *c = srv->conns; c; c = c->next)
		if (c->state != CONN_CLOSING)
			hyd__server_conn_close(c, "server shutting down");
	reap_closing(srv);
	if (srv->ops)
		srv->ops->fini(srv);  /* releases every operation, so dead conns can go */
	while (srv->dead)
		hyd__server_conn_free(srv->dead);
	if (srv->listen_fd >= 0 && !(srv->opts.listen_fd >= 0 && srv->listen_fd == srv->opts.listen_fd))
		close(srv->listen_fd);
	if (srv->path) {
		unlink(srv->path);
		hyd_free(srv->path);
	}
	if (srv->efd >= 0)
		close(srv->efd);
	for (struct post_item *p = srv->post_head, *n; p; p = n) {
		n = p->next;
		hyd_free(p);
	}
	pthread_mutex_destroy(&srv->post_lock);
	hyd_free(srv);
}

const char *hyd_server_backend(const struct hyd_server *srv)
{
	return srv->ops ? srv->ops->name : "none";
}

const char *hyd_server_socket_path(const struct hyd_server *srv)
{
	return srv->path;
}

uint32_t hyd_server_n_clients(const struct hyd_server *srv)
{
	uint32_t n = 0;
	for (const struct hyd_conn *c = srv->conns; c; c = c->next)
		n += c->state == CONN_READY;
	return n;
}

/* ---------------------------------------------------------------- post / stop / timer */

static void poke(struct hyd_server *srv)
{
	uint64_t one = 1;
	/* EAGAIN means the counter is already nonzero: the loop will wake anyway. */
	ssize_t n = write(srv->efd, &one, sizeof(one));
	(void)n;
}

int hyd_server_post(struct hyd_server *srv, void (*fn)(void *arg), void *arg)
{
	struct post_item *p = hyd_malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->next = NULL;
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&srv->post_lock);
	if (srv->post_tail)
		srv->post_tail->next = p;
	else
		srv->post_head = p;
	srv->post_tail = p;
	pthread_mutex_unlock(&srv->post_lock);
	poke(srv);
	return 0;
}

void hyd__server_run_posted(struct hyd_server *srv)
{
	pthread_mutex_lock(&srv->post_lock);
	struct post_item *p = srv->post_head;
	srv->post_head = srv->post_tail = NULL;
	pthread_mutex_unlock(&srv->post_lock);
	while (p) {
		struct post_item *n = p->next;
		p->fn(p->arg);
		hyd_free(p);
		p = n;
	}
}

void hyd_server_stop(struct hyd_server *srv)
{
	atomic_store(&srv->stop, true);
	poke(srv);
}

void hyd_server_arm_timer(struct hyd_server *srv, uint64_t ns)
{
	srv->timer_deadline = ns ? hyd__now_ns() + ns : 0;
}

/* ---------------------------------------------------------------- connections */

uint64_t hyd_server_conn_id(const struct hyd_conn *c) { return c->id; }
uid_t hyd_server_conn_uid(const struct hyd_conn *c) { return c->uid; }
gid_t hyd_server_conn_gid(const struct hyd_conn *c) { return c->gid; }
pid_t hyd_server_conn_pid(const struct hyd_conn *c) { return c->pid; }
void *hyd_server_conn_userdata(const struct hyd_conn *c) { return c->userdata; }
void hyd_server_conn_set_userdata(struct hyd_conn *c, void *userdata) { c->userdata = userdata; }
size_t hyd_server_conn_backlog(const struct hyd_conn *c) { return c->bl_bytes; }

struct hyd_conn *hyd_server_conn_by_id(struct hyd_server *srv, uint64_t id)
{
	for (struct hyd_conn *c = srv->conns; c; c = c->next)
		if (c->id == id && c->state == CONN_READY)
			return c;
	return NULL;
}

void hyd_server_conn_stats(const struct hyd_conn *c, struct hyd_ring_stats *ret_req, struct hyd_ring_stats *ret_evt)
{
	struct hyd_ring_stats z = { 0 };
	if (ret_req)
		*ret_req = z;
	if (ret_evt)
		*ret_evt = z;
	if (!c->shm.base)
		return;
	if (ret_req)
		hyd__ring_stats(c->shm.req.ctl, ret_req);
	if (ret_evt)
		hyd__ring_stats(c->shm.evt.ctl, ret_evt);
}

void hyd__server_accepted(struct hyd_server *srv, int fd)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		hyd__server_log(srv, HYD_SRV_LOG_WARNING, "SO_PEERCRED failed: %s", strerror(errno));
		close(fd);
		return;
	}
	struct hyd_conn *c = hyd_calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->srv = srv;
	c->fd = fd;
	c->id = srv->next_conn_id++;
	c->uid = cred.uid;
	c->gid = cred.gid;
	c->pid = cred.pid;
	c->state = CONN_HANDSHAKE;
	c->shm.fd = -1;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->n_conns++;
	if (srv->ops->conn_added(srv, c) < 0)
		hyd__server_conn_close(c, "cannot watch its socket");
}

void hyd__server_conn_close(struct hyd_conn *c, const char *fmt, ...)
{
	if (c->state == CONN_CLOSING || c->state == CONN_DEAD)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
	c->state = CONN_CLOSING;
	c->srv->have_closing = true;
}

void hyd_server_disconnect(struct hyd_conn *c, const char *reason)
{
	hyd__server_conn_close(c, "%s", reason ? reason : "dropped by the daemon");
}

static void backlog_clear(struct hyd_conn *c)
{
	for (struct backlog_rec *r = c->bl_head, *n; r; r = n) {
		n = r->next;
		hyd_free(r);
	}
	c->bl_head = c->bl_tail = NULL;
	c->bl_bytes = 0;
}

/* Out of the live list, handler told, backend asked to let go. */
static void conn_teardown(struct hyd_conn *c)
{
	struct hyd_server *srv = c->srv;
	hyd__server_log(srv, c->accepted ? HYD_SRV_LOG_INFO : HYD_SRV_LOG_DEBUG, "client %llu (uid %u pid %d) gone: %s",
			(unsigned long long)c->id, (unsigned)c->uid, (int)c->pid, c->reason);
	if (c->accepted && srv->h.on_disconnect)
		srv->h.on_disconnect(srv->h.userdata, c);
	c->accepted = false;
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->n_conns--;
	c->prev = NULL;
	c->next = srv->dead;
	if (srv->dead)
		srv->dead->prev = c;
	srv->dead = c;
	c->state = CONN_DEAD;
	backlog_clear(c);
	srv->ops->conn_teardown(srv, c);
}

void hyd__server_conn_free(struct hyd_conn *c)
{
	struct hyd_server *srv = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else if (srv->dead == c)
		srv->dead = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->fd >= 0)
		close(c->fd);
	hyd__shm_release(&c->shm);
	hyd_free(c->rx);
	hyd_free(c->frag);
	hyd_free(c);
}

/* ---------------------------------------------------------------- handshake */

static void send_welcome(struct hyd_conn *c, int status, int fd)
{
	struct hyd_wire_welcome w = {
		.magic = HYD_WELCOME_MAGIC,
		.version = HYD_PROTO_VERSION,
		.status = status,
		.shm_size = status ? 0 : c->shm.size,
		.conn_id = c->id,
	};
	int err = hyd__socket_send_fd(c->fd, &w, sizeof(w), status ? -1 : fd);
	if (err < 0)
		hyd__server_conn_close(c, "handshake send failed: %s", strerror(-err));
}

static void handshake(struct hyd_conn *c)
{
	struct hyd_server *srv = c->srv;
	struct hyd_wire_hello hello;
	memcpy(&hello, c->hello, sizeof(hello));
	if (hello.magic != HYD_HELLO_MAGIC) {
		hyd__server_conn_close(c, "not a hyd client (bad hello)");
		return;
	}
	if (hello.version != HYD_PROTO_VERSION) {
		send_welcome(c, -EPROTO, -1);
		hyd__server_conn_close(c, "protocol version %u, want %u", hello.version, HYD_PROTO_VERSION);
		return;
	}
	if (hyd_server_n_clients(srv) >= srv->opts.max_clients) {
		send_welcome(c, -EAGAIN, -1);
		hyd__server_conn_close(c, "too many clients (%u)", srv->opts.max_clients);
		return;
	}
	uint32_t flags = srv->ops == &hyd__server_epoll_ops ? HYD_SHM_F_KICK : 0;
	int err = hyd__shm_create(srv->opts.ring_bytes, srv->opts.ring_bytes, flags, c->id, &c->shm);
	if (err < 0) {
		send_welcome(c, err, -1);
		hyd__server_conn_close(c, "shared memory: %s", strerror(-err));
		return;
	}
	c->rx_cap = c->shm.req.max_record;
	c->rx = hyd_aligned_alloc(16, c->rx_cap);
	if (!c->rx) {
		send_welcome(c, -ENOMEM, -1);
		hyd__server_conn_close(c, "out of memory");
		return;
	}
	if (srv->h.on_connect && (err = srv->h.on_connect(srv->h.userdata, c)) < 0) {
		send_welcome(c, err, -1);
		hyd__server_conn_close(c, "refused: %s", strerror(-err));
		return;
	}
	c->accepted = true;
	c->state = CONN_READY;
	send_welcome(c, 0, c->shm.fd);
	/* The mapping is all we need; the client has its own descriptor now. */
	close(c->shm.fd);
	c->shm.fd = -1;
	if (c->state == CONN_READY)
		hyd__server_log(srv, HYD_SRV_LOG_DEBUG, "client %llu connected (uid %u pid %d)", (unsigned long long)c->id,
				(unsigned)c->uid, (int)c->pid);
}

void hyd__server_sock_data(struct hyd_conn *c, const uint8_t *buf, ssize_t n)
{
	if (c->state != CONN_HANDSHAKE && c->state != CONN_READY)
		return;
	if (n == 0) {
		hyd__server_conn_close(c, "closed the connection");
		return;
	}
	if (n < 0) {
		hyd__server_conn_close(c, "socket error: %s", strerror((int)-n));
		return;
	}
	if (c->state == CONN_HANDSHAKE) {
		size_t take = sizeof(c->hello) - c->hello_len;
		if ((size_t)n < take)
			take = (size_t)n;
		memcpy(c->hello + c->hello_len, buf, take);
		c->hello_len += (uint32_t)take;
		if (c->hello_len == sizeof(c->hello))
			handshake(c);
	}
	/* Anything else is a kick: the loop polls every ring after each wake-up anyway. */
}

/* ---------------------------------------------------------------- events out */

static int backlog_push(struct hyd_conn *c, uint16_t type, uint16_t flags, uint64_t id, const struct iovec *iov,
			int iovcnt, uint32_t len)
{
	if (c->bl_bytes + len > c->srv->opts.max_backlog) {
		hyd__server_conn_close(c, "reads its events too slowly (%zu bytes queued)", c->bl_bytes);
		return -ECONNRESET;
	}
	struct backlog_rec *r = hyd_malloc(sizeof(*r) + len);
	if (!r)
		return -ENOMEM;
	r->next = NULL;
	r->len = len;
	r->type = type;
	r->flags = flags;
	r->id = id;
	uint32_t at = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(r->data + at, iov[i].iov_base, iov[i].iov_len);
		at += (uint32_t)iov[i].iov_len;
	}
	if (c->bl_tail)
		c->bl_tail->next = r;
	else
		c->bl_head = r;
	c->bl_tail = r;
	c->bl_bytes += len;
	return 0;
}

static int put_record(struct hyd_conn *c, uint16_t type, uint16_t flags, uint64_t id, const struct iovec *iov,
		      int iovcnt, uint32_t len)
{
	if (!c->bl_head) {
		int err = hyd__ring_writev(&c->shm.evt, type, flags, id, iov, iovcnt);
		if (err == 0) {
			c->dirty = true;
			return 0;
		}
		if (err != -EAGAIN) {
			hyd__server_conn_close(c, "event ring: %s", strerror(-err));
			return -ECONNRESET;
		}
	}
	return backlog_push(c, type, flags, id, iov, iovcnt, len);
}

static void flush_backlog(struct hyd_conn *c)
{
	while (c->bl_head && c->state == CONN_READY) {
		struct backlog_rec *r = c->bl_head;
		int err = hyd__ring_write(&c->shm.evt, r->type, r->flags, r->id, r->data, r->len);
		if (err == -EAGAIN)
			return;
		if (err < 0) {
			hyd__server_conn_close(c, "event ring: %s", strerror(-err));
			return;
		}
		c->dirty = true;
		c->bl_head = r->next;
		if (!c->bl_head)
			c->bl_tail = NULL;
		c->bl_bytes -= r->len;
		hyd_free(r);
	}
}

int hyd_server_sendv(struct hyd_conn *c, uint16_t type, uint64_t id, const struct iovec *iov, int iovcnt)
{
	if (c->state != CONN_READY)
		return -ECONNRESET;
	uint64_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > HYD_PROTO_MAX_MSG)
		return -EMSGSIZE;
	uint32_t frag = hyd__shm_max_fragment(&c->shm.evt);
	if (total <= frag)
		return put_record(c, type, 0, id, iov, iovcnt, (uint32_t)total);

	/* Rare (long lists, big token arrays): flatten, then cut into fragments. */
	uint8_t *flat = hyd_malloc(total);
	if (!flat)
		return -ENOMEM;
	size_t at = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(flat + at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
	int err = 0;
	for (at = 0; at < total && !err; at += frag) {
		uint32_t n = total - at > frag ? frag : (uint32_t)(total - at);
		struct iovec v = { .iov_base = flat + at, .iov_len = n };
		err = put_record(c, type, at + n < total ? HYD_MSGF_CONT : 0, id, &v, 1, n);
	}
	hyd_free(flat);
	return err;
}

int hyd_server_send(struct hyd_conn *c, uint16_t type, uint64_t id, const void *payload, uint32_t len)
{
	struct iovec v = { .iov_base = (void *)payload, .iov_len = len };
	return hyd_server_sendv(c, type, id, &v, len ? 1 : 0);
}

int hyd_server_send_token(struct hyd_conn *c, uint64_t id, int32_t token, const char *text, uint32_t len)
{
	struct hyd_wire_token t = { .token = token, .text_len = len };
	struct iovec v[2] = { { &t, sizeof(t) }, { (void *)text, len } };
	return hyd_server_sendv(c, HYD_EVT_TOKEN, id, v, len ? 2 : 1);
}

int hyd_server_send_done(struct hyd_conn *c, uint64_t id, const struct hyd_wire_done *done)
{
	return hyd_server_send(c, HYD_EVT_DONE, id, done, sizeof(*done));
}

int hyd_server_send_error(struct hyd_conn *c, uint64_t id, int err, const char *fmt, ...)
{
	char msg[512];
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	} else {
		snprintf(msg, sizeof(msg), "%s", strerror(err < 0 ? -err : err));
	}
	/* the client prints it: nothing in a quoted name or path may drive its terminal */
	hyd__scrub_controls(msg);
	struct hyd_wire_error e = { .err = err < 0 ? err : -EIO, .msg_len = (uint32_t)strlen(msg) };
	struct iovec v[2] = { { &e, sizeof(e) }, { msg, e.msg_len } };
	return hyd_server_sendv(c, HYD_EVT_ERROR, id, v, 2);
}

int hyd_server_send_ok(struct hyd_conn *c, uint64_t id, uint64_t value)
{
	struct hyd_wire_ok ok = { .status = 0, .value = value };
	return hyd_server_send(c, HYD_EVT_OK, id, &ok, sizeof(ok));
}

/* ---------------------------------------------------------------- requests in */

static void dispatch(struct hyd_conn *c, uint16_t type, uint16_t flags, uint64_t id, const void *p, uint32_t len)
{
	struct hyd_server *srv = c->srv;
	int err = hyd__proto_check_request(type, flags, id, p, len);
	if (err < 0) {
		hyd__server_conn_close(c, "malformed %s request (type %u, id %llu, %u bytes): %s",
				       hyd__proto_type_name(type), type, (unsigned long long)id, len, strerror(-err));
		return;
	}
	struct hyd_request req = { .type = type, .flags = flags, .len = len, .id = id, .payload = p };
	err = srv->h.on_request(srv->h.userdata, c, &req);
	if (err < 0 && c->state == CONN_READY)
		hyd_server_send_error(c, id, err, NULL);
}

static void take_fragment(struct hyd_conn *c, const struct hyd_msg_hdr *h)
{
	if (!c->in_frag) {
		c->in_frag = true;
		c->frag_type = h->type;
		c->frag_id = h->id;
		c->frag_len = 0;
	} else if (h->type != c->frag_type || h->id != c->frag_id) {
		hyd__server_conn_close(c, "malformed: fragment of request %llu interleaved with %llu",
				       (unsigned long long)c->frag_id, (unsigned long long)h->id);
		return;
	}
	if ((uint64_t)c->frag_len + h->len > HYD_PROTO_MAX_MSG) {
		hyd__server_conn_close(c, "malformed: request %llu larger than %u bytes", (unsigned long long)h->id,
				       HYD_PROTO_MAX_MSG);
		return;
	}
	if (c->frag_len + h->len > c->frag_cap) {
		uint32_t cap = c->frag_cap ? c->frag_cap : 65536;
		while (cap < c->frag_len + h->len)
			cap *= 2;
		uint8_t *n = hyd_realloc(c->frag, cap);
		if (!n) {
			hyd__server_conn_close(c, "out of memory joining a request");
			return;
		}
		c->frag = n;
		c->frag_cap = cap;
	}
	/* a fragment may be empty, and the buffer may not exist yet */
	if (h->len)
		memcpy(c->frag + c->frag_len, c->rx, h->len);
	c->frag_len += h->len;
	if (h->flags & HYD_MSGF_CONT)
		return;
	c->in_frag = false;
	dispatch(c, h->type, h->flags & ~HYD_MSGF_CONT, h->id, c->frag, c->frag_len);
	if (c->frag_cap > FRAG_KEEP_BYTES) {
		hyd_free(c->frag);
		c->frag = NULL;
		c->frag_cap = 0;
	}
}

static bool drain_requests(struct hyd_conn *c)
{
	bool any = false;
	for (int n = 0; n < DRAIN_BUDGET && c->state == CONN_READY; n++) {
		struct hyd_msg_hdr h;
		int r = hyd__ring_read(&c->shm.req, &h, c->rx, c->rx_cap);
		if (r == 0)
			break;
		if (r < 0) {
			hyd__server_conn_close(c, "malformed request ring: %s", strerror(-r));
			break;
		}
		any = true;
		if (c->in_frag || (h.flags & HYD_MSGF_CONT))
			take_fragment(c, &h);
		else
			dispatch(c, h.type, h.flags, h.id, c->rx, h.len);
	}
	if (any && c->state == CONN_READY)
		hyd__ring_notify_space(&c->shm.req);
	return any;
}

bool hyd__server_conn_has_work(struct hyd_conn *c)
{
	if (c->state != CONN_READY)
		return c->state == CONN_CLOSING;
	int64_t a = hyd__ring_avail(&c->shm.req);
	if (a != 0)
		return true;  /* data, or a corrupted index the drain will report */
	if (c->bl_head) {
		int64_t s = hyd__ring_space(&c->shm.evt);
		if (s < 0 || s >= hyd__ring_record_size(c->bl_head->len))
			return true;
	}
	return false;
}

static bool any_work(struct hyd_server *srv)
{
	for (struct hyd_conn *c = srv->conns; c; c = c->next)
		if (hyd__server_conn_has_work(c))
			return true;
	return srv->have_closing || atomic_load_explicit(&srv->stop, memory_order_relaxed);
}

static void notify_dirty(struct hyd_server *srv)
{
	for (struct hyd_conn *c = srv->conns; c; c = c->next) {
		if (c->dirty && c->state == CONN_READY)
			hyd__ring_notify_data(&c->shm.evt);
		c->dirty = false;
	}
}

/* ---------------------------------------------------------------- the loop */

int hyd_server_run(struct hyd_server *srv)
{
	int err = 0;
	while (!atomic_load(&srv->stop)) {
		if ((err = srv->ops->poll(srv)) < 0)
			break;
		hyd__server_run_posted(srv);
		reap_closing(srv);

		bool busy = false;
		for (struct hyd_conn *c = srv->conns; c; c = c->next) {
			if (c->state != CONN_READY)
				continue;
			busy |= drain_requests(c);
			flush_backlog(c);
		}
		if (srv->h.on_idle) {
			int r = srv->h.on_idle(srv->h.userdata);
			if (r < 0) {
				err = r;
				break;
			}
			busy |= r > 0;
		}
		notify_dirty(srv);
		if (srv->timer_deadline && hyd__now_ns() >= srv->timer_deadline) {
			srv->timer_deadline = 0;
			if (srv->h.on_timer)
				srv->h.on_timer(srv->h.userdata);
			notify_dirty(srv);
			busy = true;
		}
		reap_closing(srv);
		if (busy)
			continue;

		/* Spin: a client that answers within microseconds is served without a sleep/wake pair
		 * on either side (docs/IPC.md has the numbers). */
		if (srv->opts.spin_ns) {
			uint64_t until = hyd__now_ns() + srv->opts.spin_ns;
			bool found = false;
			do {
				if (any_work(srv)) {
					found = true;
					break;
				}
			} while (hyd__now_ns() < until);
			if (found)
				continue;
		}
		int64_t timeout = -1;
		if (srv->timer_deadline) {
			uint64_t now = hyd__now_ns();
			timeout = srv->timer_deadline > now ? (int64_t)(srv->timer_deadline - now) : 0;
		}
		if ((err = srv->ops->wait(srv, timeout)) < 0)
			break;
	}
	atomic_store(&srv->stop, false);
	return err;
}
