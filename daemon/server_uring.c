/* io_uring backend: accept, socket reads (EOF = client gone) and IORING_OP_FUTEX_WAIT on every
 * client's request doorbell, so a sleeping daemon wakes directly from a client's FUTEX_WAKE. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/server_internal.h"
#include "ipc/uring.h"

enum { TAG_ACCEPT = 1, TAG_EFD, TAG_RECV, TAG_REQ_WAIT, TAG_SPACE_WAIT, TAG_MASK = 7 };
_Static_assert(_Alignof(struct hyd_conn) >= 8, "tags live in the low pointer bits");

#define ACCEPT_RETRY_NS 100000000ull

int hyd__server_uring_available(void)
{
	struct io_uring ring;
	int err = io_uring_queue_init(4, &ring, 0);
	if (err < 0)
		return err;
	err = hyd__uring_probe_futex(&ring);
	io_uring_queue_exit(&ring);
	return err;
}

static struct io_uring_sqe *get_sqe(struct hyd_server *srv)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&srv->ring);
	if (!sqe) {
		io_uring_submit(&srv->ring);
		sqe = io_uring_get_sqe(&srv->ring);
	}
	return sqe;
}

static void arm_recv(struct hyd_server *srv, struct hyd_conn *c)
{
	struct io_uring_sqe *sqe = get_sqe(srv);
	if (!sqe) {
		hyd__server_conn_close(c, "io_uring submission queue full");
		return;
	}
	io_uring_prep_recv(sqe, c->fd, c->sockbuf, sizeof(c->sockbuf), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_RECV);
	c->recv_pending = true;
	c->inflight++;
}

static void arm_base(struct hyd_server *srv)
{
	struct io_uring_sqe *sqe;
	if (!srv->accept_pending && hyd__now_ns() >= srv->accept_retry_ns && (sqe = get_sqe(srv))) {
		io_uring_prep_accept(sqe, srv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		io_uring_sqe_set_data64(sqe, TAG_ACCEPT);
		srv->accept_pending = true;
	}
	if (!srv->efd_pending && (sqe = get_sqe(srv))) {
		io_uring_prep_read(sqe, srv->efd, &srv->efd_buf, sizeof(srv->efd_buf), 0);
		io_uring_sqe_set_data64(sqe, TAG_EFD);
		srv->efd_pending = true;
	}
}

static int uring_init(struct hyd_server *srv)
{
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE, .cq_entries = 4096 };
	int err = io_uring_queue_init_params(256, &srv->ring, &p);
	if (err < 0)
		return err;
	srv->ring_ready = true;
	return 0;
}

static void uring_fini(struct hyd_server *srv)
{
	if (!srv->ring_ready)
		return;
	/* Tears down every operation in flight, so no conn is referenced any more. */
	io_uring_queue_exit(&srv->ring);
	srv->ring_ready = false;
	for (struct hyd_conn *c = srv->dead; c; c = c->next)
		c->inflight = 0;
}

static int uring_conn_added(struct hyd_server *srv, struct hyd_conn *c)
{
	arm_recv(srv, c);
	return c->recv_pending ? 0 : -EBUSY;
}

static void bump_and_wake(_Atomic uint32_t *bell)
{
	atomic_fetch_add(bell, 2);
	hyd__futex_wake(bell, 1 << 30);
}

static void uring_conn_teardown(struct hyd_server *srv, struct hyd_conn *c)
{
	if (!c->inflight) {
		hyd__server_conn_free(c);
		return;
	}
	/* Make every operation on c complete: EOF for the recv, a changed word and a wake for the
	 * futex waits (submitted first, so a queued wait sees the new value). */
	io_uring_submit(&srv->ring);
	shutdown(c->fd, SHUT_RDWR);
	if (c->req_wait_pending)
		bump_and_wake(&c->shm.req.ctl->data_bell);
	if (c->space_wait_pending)
		bump_and_wake(&c->shm.evt.ctl->space_bell);
}

static void handle_cqe(struct hyd_server *srv, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	unsigned tag = ud & TAG_MASK;
	struct hyd_conn *c = (struct hyd_conn *)(uintptr_t)(ud & ~(uint64_t)TAG_MASK);
	int res = cqe->res;

	switch (tag) {
	case TAG_ACCEPT:
		srv->accept_pending = false;
		if (res >= 0) {
			hyd__server_accepted(srv, res);
		} else if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
			hyd__server_log(srv, HYD_SRV_LOG_WARNING, "accept: %s", strerror(-res));
			srv->accept_retry_ns = hyd__now_ns() + ACCEPT_RETRY_NS;
		}
		return;
	case TAG_EFD:
		srv->efd_pending = false;
		return;
	case TAG_RECV:
	case TAG_REQ_WAIT:
	case TAG_SPACE_WAIT:
		break;
	default:
		return;
	}
	c->inflight--;
	if (tag == TAG_RECV)
		c->recv_pending = false;
	else if (tag == TAG_REQ_WAIT)
		c->req_wait_pending = false;
	else
		c->space_wait_pending = false;
	if (c->state == CONN_DEAD) {
		if (!c->inflight)
			hyd__server_conn_free(c);
		return;
	}
	if (tag == TAG_RECV) {
		hyd__server_sock_data(c, c->sockbuf, res);
		if (c->state == CONN_HANDSHAKE || c->state == CONN_READY)
			arm_recv(srv, c);
	} else if (res < 0 && res != -EAGAIN && res != -EINTR && res != -ECANCELED) {
		hyd__server_conn_close(c, "futex wait failed: %s", strerror(-res));
	}
}

static void reap_cqes(struct hyd_server *srv)
{
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&srv->ring, &cqe) == 0) {
		struct io_uring_cqe copy = *cqe;
		io_uring_cqe_seen(&srv->ring, cqe);
		handle_cqe(srv, &copy);
	}
}

static int uring_poll(struct hyd_server *srv)
{
	arm_base(srv);
	int err = io_uring_submit(&srv->ring);
	if (err < 0 && err != -EINTR && err != -EBUSY)
		return err;
	reap_cqes(srv);
	return 0;
}

static int uring_wait(struct hyd_server *srv, int64_t timeout_ns)
{
	bool work = false;
	arm_base(srv);
	for (struct hyd_conn *c = srv->conns; c; c = c->next) {
		if (c->state != CONN_READY)
			continue;
		uint32_t v;
		if (!c->req_wait_pending) {
			struct hyd_ring *r = &c->shm.req;
			hyd__bell_arm(&r->ctl->data_bell, &v);
			if (hyd__ring_avail(r) != 0) {
				hyd__bell_disarm(&r->ctl->data_bell, v);
				work = true;
			} else {
				struct io_uring_sqe *sqe = get_sqe(srv);
				if (!sqe) {
					hyd__bell_disarm(&r->ctl->data_bell, v);
					work = true;
					continue;
				}
				hyd__uring_prep_futex_wait(sqe, &r->ctl->data_bell, v);
				io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_REQ_WAIT);
				c->req_wait_pending = true;
				c->inflight++;
				atomic_fetch_add_explicit(&r->ctl->cstats.sleeps, 1, memory_order_relaxed);
			}
		}
		if (c->bl_head && !c->space_wait_pending) {
			struct hyd_ring *r = &c->shm.evt;
			hyd__bell_arm(&r->ctl->space_bell, &v);
			int64_t s = hyd__ring_space(r);
			if (s < 0 || s >= hyd__ring_record_size(c->bl_head->len)) {
				hyd__bell_disarm(&r->ctl->space_bell, v);
				work = true;
			} else {
				struct io_uring_sqe *sqe = get_sqe(srv);
				if (!sqe) {
					hyd__bell_disarm(&r->ctl->space_bell, v);
					work = true;
					continue;
				}
				hyd__uring_prep_futex_wait(sqe, &r->ctl->space_bell, v);
				io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_SPACE_WAIT);
				c->space_wait_pending = true;
				c->inflight++;
				atomic_fetch_add_explicit(&r->ctl->pstats.full_sleeps, 1, memory_order_relaxed);
			}
		}
	}
	if (work || srv->have_closing || atomic_load(&srv->stop) || timeout_ns == 0)
		return uring_poll(srv);

	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts, *tp = NULL;
	if (timeout_ns > 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tp = &ts;
	} else if (srv->accept_retry_ns) {
		ts.tv_sec = 0;
		ts.tv_nsec = ACCEPT_RETRY_NS;
		tp = &ts;
	}
	int err = io_uring_submit_and_wait_timeout(&srv->ring, &cqe, 1, tp, NULL);
	if (err < 0 && err != -ETIME && err != -EINTR && err != -EBUSY)
		return err;
	reap_cqes(srv);
	return 0;
}

const struct backend_ops hyd__server_uring_ops = {
	.name = "io_uring",
	.init = uring_init,
	.fini = uring_fini,
	.conn_added = uring_conn_added,
	.conn_teardown = uring_conn_teardown,
	.poll = uring_poll,
	.wait = uring_wait,
};
