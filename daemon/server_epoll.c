/* epoll backend, for kernels or sandboxes without io_uring's futex wait.  The daemon cannot sleep
 * on a futex and a socket at once here, so the handshake sets HYD_SHM_F_KICK: a client that rings
 * an armed request doorbell also writes one byte to the socket, which is what wakes epoll. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/server_internal.h"

enum { TAG_LISTEN = 1, TAG_EFD = 2 };

static int epoll_init(struct hyd_server *srv)
{
	srv->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (srv->epfd < 0)
		return -errno;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_LISTEN };
	if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->listen_fd, &ev) < 0)
		return -errno;
	ev.data.u64 = TAG_EFD;
	if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->efd, &ev) < 0)
		return -errno;
	return 0;
}

static void epoll_fini(struct hyd_server *srv)
{
	if (srv->epfd >= 0)
		close(srv->epfd);
	srv->epfd = -1;
}

static int epoll_conn_added(struct hyd_server *srv, struct hyd_conn *c)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
	return epoll_ctl(srv->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0 ? -errno : 0;
}

static void epoll_conn_teardown(struct hyd_server *srv, struct hyd_conn *c)
{
	epoll_ctl(srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	hyd__server_conn_free(c);
}

static void read_socket(struct hyd_conn *c)
{
	for (int i = 0; i < 16 && (c->state == CONN_HANDSHAKE || c->state == CONN_READY); i++) {
		ssize_t n = recv(c->fd, c->sockbuf, sizeof(c->sockbuf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		hyd__server_sock_data(c, c->sockbuf, n < 0 ? -errno : n);
		if (n <= 0 || (size_t)n < sizeof(c->sockbuf))
			return;
	}
}

static int process(struct hyd_server *srv, int timeout_ms)
{
	struct epoll_event evs[64];
	int n = epoll_wait(srv->epfd, evs, 64, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == TAG_LISTEN) {
			for (int k = 0; k < 64; k++) {
				int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
				if (fd < 0) {
					if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
						hyd__server_log(srv, HYD_SRV_LOG_WARNING, "accept: %s", strerror(errno));
					break;
				}
				hyd__server_accepted(srv, fd);
			}
		} else if (evs[i].data.u64 == TAG_EFD) {
			uint64_t v;
			ssize_t r = read(srv->efd, &v, sizeof(v));
			(void)r;
		} else {
			read_socket(evs[i].data.ptr);
		}
	}
	return 0;
}

static int epoll_poll(struct hyd_server *srv)
{
	return process(srv, 0);
}

static int epoll_wait_(struct hyd_server *srv, int64_t timeout_ns)
{
	bool work = false;
	for (struct hyd_conn *c = srv->conns; c; c = c->next) {
		if (c->state != CONN_READY)
			continue;
		uint32_t v;
		hyd__bell_arm(&c->shm.req.ctl->data_bell, &v);
		if (c->bl_head)
			hyd__bell_arm(&c->shm.evt.ctl->space_bell, &v);
		if (hyd__server_conn_has_work(c))
			work = true;
	}
	if (work || srv->have_closing || atomic_load(&srv->stop))
		return epoll_poll(srv);
	for (struct hyd_conn *c = srv->conns; c; c = c->next)
		if (c->state == CONN_READY)
			atomic_fetch_add_explicit(&c->shm.req.ctl->cstats.sleeps, 1, memory_order_relaxed);
	int ms = -1;
	if (timeout_ns >= 0)
		ms = (int)((timeout_ns + 999999) / 1000000);
	return process(srv, ms);
}

const struct backend_ops hyd__server_epoll_ops = {
	.name = "epoll",
	.init = epoll_init,
	.fini = epoll_fini,
	.conn_added = epoll_conn_added,
	.conn_teardown = epoll_conn_teardown,
	.poll = epoll_poll,
	.wait = epoll_wait_,
};
