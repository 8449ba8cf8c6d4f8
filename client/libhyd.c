/* libhyd: see include/hyd/client.h.  One connection = one socket (handshake, liveness) and one
 * shared-memory mapping with a request ring (we produce) and an event ring (we consume). */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/alloc.h"
#include "hyd/client.h"
#include "ipc/proto.h"
#include "ipc/shm.h"
#include "ipc/socket.h"

#define DEFAULT_SPIN_NS 10000u
#define LIVENESS_NS 100000000       /* how often a waiting client checks that the daemon lives */
#define HANDSHAKE_TIMEOUT_S 10
/* Requests whose answers nobody waits for (cancel) carry this bit; their events are dropped. */
#define ID_IGNORE (1ull << 63)

struct pending {
	struct pending *next;
	uint64_t id;
	uint32_t len;
	uint16_t type;
	uint8_t data[];
};

struct hyd_conn {
	int fd;
	bool dead;
	struct hyd_shm shm;
	uint64_t next_id;
	uint64_t spin_ns;
	uint8_t *rx;                 /* one event record */
	uint32_t rx_cap;
	uint8_t *join;               /* an event being joined from fragments */
	uint32_t join_len, join_cap;
	uint16_t join_type;
	bool joining;
	uint64_t join_id;
	struct pending *pend_head, *pend_tail; /* events for requests not being waited on */
	char last_error[512];
};

struct hyd_stream {
	struct hyd_conn *c;
	uint64_t id;
	bool finished;
	bool cancelled;
	int err;
	struct hyd_done_info done;
	char *text;
	uint32_t text_cap;
};

/* An event handed to a caller: data is either the connection's buffer (valid until the next
 * read) or owned (free it). */
struct event {
	uint16_t type;
	uint32_t len;
	const uint8_t *data;
	void *owned;
};

const char *hyd_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -ECONNRESET:
		return "the daemon closed the connection";
	case -ECONNREFUSED:
		return "no daemon is listening on the socket";
	case -ENOENT:
		return "no such session, or no daemon socket";
	case -EPROTO:
		return "protocol mismatch with the daemon";
	case -EBUSY:
		return "the session is busy";
	case -ENOSPC:
		return "out of memory or context for the session";
	case -EMSGSIZE:
		return "message too large";
	case -ESTALE:
		return "snapshot was made for another model";
	}
	const char *s = err < 0 ? strerrordesc_np(-err) : NULL;
	return s ? s : "unknown error";
}

const char *hyd_last_error(const struct hyd_conn *c)
{
	return c ? c->last_error : "";
}

void hyd_sampling_init(struct hyd_sampling *p)
{
	memset(p, 0, sizeof(*p));
	p->struct_size = sizeof(*p);
	p->temperature = 0.8f;
	p->top_k = 40;
	p->top_p = 0.95f;
	p->min_p = 0.05f;
	p->repeat_penalty = 1.0f;
	p->repeat_last_n = 64;
}

/* ---------------------------------------------------------------- connect */

static int read_full(int fd, void *buf, size_t len, int *ret_fd)
{
	size_t got = 0;
	while (got < len) {
		int rfd = -1;
		ssize_t n = hyd__socket_recv_fd(fd, (uint8_t *)buf + got, len - got, &rfd);
		if (rfd >= 0) {
			if (ret_fd && *ret_fd < 0)
				*ret_fd = rfd;
			else
				close(rfd);
		}
		if (n < 0)
			return n == -EAGAIN ? -ETIMEDOUT : (int)n;
		if (n == 0)
			return -ECONNRESET;
		got += (size_t)n;
	}
	return 0;
}

int hyd_connect(const char *path, struct hyd_conn **ret_conn)
{
	if (!ret_conn)
		return -EINVAL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int err;
	if (path && *path) {
		if (strlen(path) >= sizeof(sa.sun_path))
			return -ENAMETOOLONG;
		strcpy(sa.sun_path, path);
	} else if ((err = hyd__socket_default_path(sa.sun_path, sizeof(sa.sun_path))) < 0) {
		return err;
	}
	struct hyd_conn *c = hyd_calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->shm.fd = -1;
	c->next_id = 1;
	const char *spin = getenv("HYD_SPIN_NS");
	c->spin_ns = spin && *spin ? strtoull(spin, NULL, 10) : DEFAULT_SPIN_NS;

	int memfd = -1;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		err = -errno;
		goto fail;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		goto fail;
	}
	struct timeval tv = { .tv_sec = HANDSHAKE_TIMEOUT_S };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct hyd_wire_hello hello = { .magic = HYD_HELLO_MAGIC, .version = HYD_PROTO_VERSION };
	if ((err = hyd__socket_send_fd(c->fd, &hello, sizeof(hello), -1)) < 0)
		goto fail;
	struct hyd_wire_welcome w;
	if ((err = read_full(c->fd, &w, sizeof(w), &memfd)) < 0)
		goto fail;
	err = -EPROTO;
	if (w.magic != HYD_WELCOME_MAGIC)
		goto fail;
	if (w.status < 0) {
		err = w.status;
		goto fail;
	}
	if (w.version != HYD_PROTO_VERSION || memfd < 0)
		goto fail;
	if ((err = hyd__shm_attach(memfd, w.shm_size, &c->shm)) < 0)
		goto fail;
	close(memfd);
	memfd = -1;
	tv.tv_sec = 0;
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	c->rx_cap = c->shm.evt.max_record;
	c->rx = hyd_aligned_alloc(16, c->rx_cap);
	if (!c->rx) {
		err = -ENOMEM;
		goto fail;
	}
	*ret_conn = c;
	return 0;
fail:
	if (memfd >= 0)
		close(memfd);
	hyd_disconnect(c);
	return err;
}

void hyd_disconnect(struct hyd_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	hyd__shm_release(&c->shm);
	for (struct pending *p = c->pend_head, *n; p; p = n) {
		n = p->next;
		hyd_free(p);
	}
	hyd_free(c->rx);
	hyd_free(c->join);
	hyd_free(c);
}

int hyd_conn_stats(const struct hyd_conn *c, struct hyd_conn_stats *ret)
{
	if (!c || !ret)
		return -EINVAL;
	struct hyd_ring_stats rq, ev;
	hyd__ring_stats(c->shm.req.ctl, &rq);
	hyd__ring_stats(c->shm.evt.ctl, &ev);
	*ret = (struct hyd_conn_stats){
		.req_msgs = rq.prod_msgs,
		.req_wakes = rq.wakes,
		.req_daemon_sleeps = rq.sleeps,
		.evt_msgs = ev.prod_msgs,
		.evt_wakes = ev.wakes,
		.evt_client_sleeps = ev.sleeps,
	};
	return 0;
}

/* ---------------------------------------------------------------- transport */

static int mark_dead(struct hyd_conn *c, int err)
{
	c->dead = true;
	return err;
}

/* The daemon never writes to the socket after the welcome: readable means gone. */
static int check_alive(struct hyd_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
	if (poll(&p, 1, 0) > 0)
		return mark_dead(c, -ECONNRESET);
	return 0;
}

static void kick(struct hyd_conn *c)
{
	/* epoll backend: the daemon sleeps in epoll_wait, not on the futex.  EAGAIN: the socket
	 * already holds unread kicks, which wake it just as well. */
	if (c->shm.flags & HYD_SHM_F_KICK) {
		char b = 0;
		ssize_t n = send(c->fd, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)n;
	}
}

static int put_record(struct hyd_conn *c, uint16_t type, uint16_t flags, uint64_t id, const void *p, uint32_t len)
{
	for (;;) {
		int err = hyd__ring_write(&c->shm.req, type, flags, id, p, len);
		if (err == 0)
			break;
		if (err != -EAGAIN)
			return mark_dead(c, err == -EBADMSG ? -EPROTO : err);
		if (hyd__ring_notify_data(&c->shm.req))
			kick(c);
		err = hyd__ring_wait_space(&c->shm.req, hyd__ring_record_size(len), c->spin_ns, LIVENESS_NS);
		if (err < 0)
			return err == -EBADMSG ? mark_dead(c, -EPROTO) : err;
		if (err == 0 && (err = check_alive(c)) < 0)
			return err;
	}
	if (hyd__ring_notify_data(&c->shm.req))
		kick(c);
	return 0;
}

/* Send one request; returns its id through *ret_id. */
static int send_req(struct hyd_conn *c, uint16_t type, const struct iovec *iov, int iovcnt, bool ignore_reply,
		    uint64_t *ret_id)
{
	if (c->dead)
		return -ECONNRESET;
	uint64_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > HYD_PROTO_MAX_MSG)
		return -EMSGSIZE;
	uint64_t id = c->next_id++ | (ignore_reply ? ID_IGNORE : 0);
	uint32_t frag = hyd__shm_max_fragment(&c->shm.req);
	int err;
	if (total <= frag) {
		uint8_t small[1024];
		const void *p = iovcnt == 1 ? iov[0].iov_base : small;
		uint8_t *flat = NULL;
		if (iovcnt > 1) {
			if (total > sizeof(small) && !(flat = hyd_malloc(total)))
				return -ENOMEM;
			uint8_t *d = flat ? flat : small;
			for (int i = 0, at = 0; i < iovcnt; at += (int)iov[i].iov_len, i++)
				memcpy(d + at, iov[i].iov_base, iov[i].iov_len);
			p = d;
		}
		err = put_record(c, type, 0, id, p, (uint32_t)total);
		hyd_free(flat);
	} else {
		uint8_t *flat = hyd_malloc(total);
		if (!flat)
			return -ENOMEM;
		size_t at = 0;
		for (int i = 0; i < iovcnt; i++) {
			memcpy(flat + at, iov[i].iov_base, iov[i].iov_len);
			at += iov[i].iov_len;
		}
		err = 0;
		for (at = 0; at < total && !err; at += frag) {
			uint32_t n = total - at > frag ? frag : (uint32_t)(total - at);
			err = put_record(c, type, at + n < total ? HYD_MSGF_CONT : 0, id, flat + at, n);
		}
		hyd_free(flat);
	}
	if (err == 0)
		*ret_id = id;
	return err;
}

/* Read one whole (joined, checked) event from the ring.  1: *ret filled; 0: ring empty. */
static int read_event(struct hyd_conn *c, uint64_t *ret_id, struct event *ret)
{
	for (;;) {
		struct hyd_msg_hdr h;
		int r = hyd__ring_read(&c->shm.evt, &h, c->rx, c->rx_cap);
		if (r == 0)
			return 0;
		if (r < 0)
			return mark_dead(c, -EPROTO);
		if (hyd__ring_notify_space(&c->shm.evt))
			kick(c);
		const uint8_t *data = c->rx;
		uint32_t len = h.len;
		if (c->joining || (h.flags & HYD_MSGF_CONT)) {
			if (!c->joining) {
				c->joining = true;
				c->join_type = h.type;
				c->join_id = h.id;
				c->join_len = 0;
			} else if (h.type != c->join_type || h.id != c->join_id) {
				return mark_dead(c, -EPROTO);
			}
			if ((uint64_t)c->join_len + h.len > HYD_PROTO_MAX_MSG)
				return mark_dead(c, -EPROTO);
			if (c->join_len + h.len > c->join_cap) {
				uint32_t cap = c->join_cap ? c->join_cap : 65536;
				while (cap < c->join_len + h.len)
					cap *= 2;
				uint8_t *n = hyd_realloc(c->join, cap);
				if (!n)
					return mark_dead(c, -ENOMEM);
				c->join = n;
				c->join_cap = cap;
			}
			memcpy(c->join + c->join_len, c->rx, h.len);
			c->join_len += h.len;
			if (h.flags & HYD_MSGF_CONT)
				continue;
			c->joining = false;
			data = c->join;
			len = c->join_len;
		}
		if (hyd__proto_check_event(h.type, h.flags & ~HYD_MSGF_CONT, data, len) < 0)
			return mark_dead(c, -EPROTO);
		*ret_id = h.id;
		*ret = (struct event){ .type = h.type, .len = len, .data = data };
		return 1;
	}
}

static int keep_pending(struct hyd_conn *c, uint64_t id, const struct event *ev)
{
	struct pending *p = hyd_malloc(sizeof(*p) + ev->len);
	if (!p)
		return -ENOMEM;
	p->next = NULL;
	p->id = id;
	p->type = ev->type;
	p->len = ev->len;
	memcpy(p->data, ev->data, ev->len);
	if (c->pend_tail)
		c->pend_tail->next = p;
	else
		c->pend_head = p;
	c->pend_tail = p;
	return 0;
}

/* The next event for request id, blocking. */
static int next_event(struct hyd_conn *c, uint64_t id, struct event *ret)
{
	for (struct pending **pp = &c->pend_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
		struct pending *p = *pp;
		if (p->id != id)
			continue;
		*pp = p->next;
		if (c->pend_tail == p)
			c->pend_tail = prev;
		*ret = (struct event){ .type = p->type, .len = p->len, .data = p->data, .owned = p };
		return 0;
	}
	if (c->dead)
		return -ECONNRESET;
	for (;;) {
		uint64_t eid;
		struct event ev;
		int r = read_event(c, &eid, &ev);
		if (r < 0)
			return r;
		if (r > 0) {
			if (eid == id) {
				*ret = ev;
				return 0;
			}
			if (!(eid & ID_IGNORE) && (r = keep_pending(c, eid, &ev)) < 0)
				return r;
			continue;
		}
		r = hyd__ring_wait_data(&c->shm.evt, c->spin_ns, LIVENESS_NS);
		if (r < 0)
			return r == -EBADMSG ? mark_dead(c, -EPROTO) : r;
		if (r == 0 && (r = check_alive(c)) < 0)
			return r;
	}
}

static void event_done(struct event *ev)
{
	hyd_free(ev->owned);
	ev->owned = NULL;
}

static int take_error(struct hyd_conn *c, const struct event *ev)
{
	struct hyd_wire_error e;
	memcpy(&e, ev->data, sizeof(e));
	uint32_t n = e.msg_len < sizeof(c->last_error) - 1 ? e.msg_len : (uint32_t)sizeof(c->last_error) - 1;
	memcpy(c->last_error, ev->data + sizeof(e), n);
	c->last_error[n] = 0;
	return e.err;
}

/* Send a request and wait for its single terminal event of type want (copied to out). */
static int call(struct hyd_conn *c, uint16_t type, const struct iovec *iov, int iovcnt, uint16_t want, void *out,
		size_t out_len)
{
	if (!c)
		return -EINVAL;
	c->last_error[0] = 0;
	uint64_t id;
	int err = send_req(c, type, iov, iovcnt, false, &id);
	if (err < 0)
		return err;
	struct event ev;
	if ((err = next_event(c, id, &ev)) < 0)
		return err;
	if (ev.type == HYD_EVT_ERROR)
		err = take_error(c, &ev);
	else if (ev.type != want || (out && ev.len < out_len))
		err = mark_dead(c, -EPROTO);
	else if (out)
		memcpy(out, ev.data, out_len);
	event_done(&ev);
	return err;
}

/* ---------------------------------------------------------------- sessions */

static void info_from_wire(struct hyd_session_info *d, const struct hyd_wire_session_info *w)
{
	memset(d, 0, sizeof(*d));
	d->id = w->session;
	d->n_tokens = w->n_tokens;
	d->max_ctx = w->max_ctx;
	d->bytes = w->bytes;
	d->uid = w->uid;
	d->flags = w->flags;
	d->created_ns = w->created_ns;
	memcpy(d->name, w->name, sizeof(d->name));
	d->name[sizeof(d->name) - 1] = 0;
	d->attn_bytes = w->kind_bytes[0];
	d->swa_bytes = w->kind_bytes[1];
	d->ssm_bytes = w->kind_bytes[2];
	d->other_bytes = w->kind_bytes[3];
}

static int info_call(struct hyd_conn *c, uint16_t type, const struct iovec *iov, int iovcnt,
		     struct hyd_session_info *ret_info)
{
	struct hyd_wire_session_info w;
	int err = call(c, type, iov, iovcnt, HYD_EVT_SESSION_INFO, &w, sizeof(w));
	if (err == 0 && ret_info)
		info_from_wire(ret_info, &w);
	return err;
}

static int set_name(char dst[HYD_PROTO_NAME_MAX], const char *name)
{
	memset(dst, 0, HYD_PROTO_NAME_MAX);
	if (!name)
		return 0;
	size_t n = strlen(name);
	if (n >= HYD_PROTO_NAME_MAX)
		return -ENAMETOOLONG;
	memcpy(dst, name, n);
	return 0;
}

int hyd_session_create(struct hyd_conn *c, const char *name, uint32_t max_ctx, struct hyd_session_info *ret_info)
{
	struct hyd_wire_create m = { .max_ctx = max_ctx };
	if (!ret_info)
		return -EINVAL;
	int err = set_name(m.name, name);
	if (err < 0)
		return err;
	struct iovec v = { &m, sizeof(m) };
	return info_call(c, HYD_REQ_CREATE, &v, 1, ret_info);
}

int hyd_session_open(struct hyd_conn *c, uint64_t id, const char *name, struct hyd_session_info *ret_info)
{
	struct hyd_wire_open m = { .session = id };
	if (!ret_info || (!id && (!name || !*name)))
		return -EINVAL;
	int err = set_name(m.name, id ? NULL : name);
	if (err < 0)
		return err;
	struct iovec v = { &m, sizeof(m) };
	return info_call(c, HYD_REQ_OPEN, &v, 1, ret_info);
}

int hyd_session_append_text(struct hyd_conn *c, uint64_t id, const char *text, size_t len, uint32_t flags,
			    struct hyd_session_info *ret_info)
{
	if (!text && len)
		return -EINVAL;
	if (len > HYD_PROTO_MAX_MSG - sizeof(struct hyd_wire_append))
		return -EMSGSIZE;
	if (flags & ~(uint32_t)(HYD_APPEND_BOS | HYD_APPEND_SPECIAL))
		return -EINVAL;
	struct hyd_wire_append m = { .session = id, .flags = flags, .count = (uint32_t)len };
	struct iovec v[2] = { { &m, sizeof(m) }, { (void *)text, len } };
	return info_call(c, HYD_REQ_APPEND_TEXT, v, len ? 2 : 1, ret_info);
}

int hyd_session_append_tokens(struct hyd_conn *c, uint64_t id, const int32_t *tokens, size_t n,
			      struct hyd_session_info *ret_info)
{
	if (!tokens && n)
		return -EINVAL;
	if (n > (HYD_PROTO_MAX_MSG - sizeof(struct hyd_wire_append)) / sizeof(int32_t))
		return -EMSGSIZE;
	struct hyd_wire_append m = { .session = id, .count = (uint32_t)n };
	struct iovec v[2] = { { &m, sizeof(m) }, { (void *)tokens, n * sizeof(int32_t) } };
	return info_call(c, HYD_REQ_APPEND_TOKENS, v, n ? 2 : 1, ret_info);
}

int hyd_session_truncate(struct hyd_conn *c, uint64_t id, uint32_t n_tokens, struct hyd_session_info *ret_info)
{
	struct hyd_wire_truncate m = { .session = id, .n_tokens = n_tokens };
	struct iovec v = { &m, sizeof(m) };
	return info_call(c, HYD_REQ_TRUNCATE, &v, 1, ret_info);
}

int hyd_session_fork(struct hyd_conn *c, uint64_t id, const char *new_name, struct hyd_session_info *ret_info)
{
	struct hyd_wire_open m = { .session = id };
	if (!ret_info)
		return -EINVAL;
	int err = set_name(m.name, new_name);
	if (err < 0)
		return err;
	struct iovec v = { &m, sizeof(m) };
	return info_call(c, HYD_REQ_FORK, &v, 1, ret_info);
}

static int path_req(struct hyd_conn *c, uint16_t type, uint64_t id, const char *path, const char *name,
		    uint16_t want, void *out, size_t out_len)
{
	if (!path || !*path)
		return -EINVAL;
	size_t n = strlen(path);
	if (n >= HYD_PROTO_PATH_MAX)
		return -ENAMETOOLONG;
	struct hyd_wire_path m = { .session = id, .path_len = (uint32_t)n };
	int err = set_name(m.name, name);
	if (err < 0)
		return err;
	struct iovec v[2] = { { &m, sizeof(m) }, { (void *)path, n } };
	return call(c, type, v, 2, want, out, out_len);
}

int hyd_session_snapshot(struct hyd_conn *c, uint64_t id, const char *path)
{
	return path_req(c, HYD_REQ_SNAPSHOT, id, path, NULL, HYD_EVT_OK, NULL, 0);
}

int hyd_session_restore(struct hyd_conn *c, const char *path, const char *name, struct hyd_session_info *ret_info)
{
	struct hyd_wire_session_info w;
	if (!ret_info)
		return -EINVAL;
	int err = path_req(c, HYD_REQ_RESTORE, 0, path, name, HYD_EVT_SESSION_INFO, &w, sizeof(w));
	if (err == 0)
		info_from_wire(ret_info, &w);
	return err;
}

int hyd_session_delete(struct hyd_conn *c, uint64_t id)
{
	struct hyd_wire_session m = { .session = id };
	struct iovec v = { &m, sizeof(m) };
	return call(c, HYD_REQ_DELETE, &v, 1, HYD_EVT_OK, NULL, 0);
}

int hyd_session_list(struct hyd_conn *c, struct hyd_session_info **ret_list, size_t *ret_n)
{
	if (!c || !ret_list || !ret_n)
		return -EINVAL;
	c->last_error[0] = 0;
	uint64_t id;
	int err = send_req(c, HYD_REQ_LIST, NULL, 0, false, &id);
	if (err < 0)
		return err;
	struct hyd_session_info *list = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		struct event ev;
		if ((err = next_event(c, id, &ev)) < 0)
			break;
		if (ev.type == HYD_EVT_LIST_ITEM) {
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 16;
				struct hyd_session_info *nl = hyd_realloc(list, nc * sizeof(*nl));
				if (!nl) {
					/* keep draining so the connection stays usable */
					err = -ENOMEM;
					event_done(&ev);
					continue;
				}
				list = nl;
				cap = nc;
			}
			struct hyd_wire_session_info w;
			memcpy(&w, ev.data, sizeof(w));
			info_from_wire(&list[n++], &w);
			event_done(&ev);
			continue;
		}
		if (ev.type == HYD_EVT_ERROR)
			err = take_error(c, &ev);
		else if (ev.type != HYD_EVT_OK)
			err = mark_dead(c, -EPROTO);
		event_done(&ev);
		break;
	}
	if (err < 0) {
		hyd_free(list);
		return err;
	}
	*ret_list = list;
	*ret_n = n;
	return 0;
}

void hyd_session_list_free(struct hyd_session_info *list)
{
	hyd_free(list);
}

int hyd_status(struct hyd_conn *c, struct hyd_status *ret)
{
	struct hyd_wire_status w;
	if (!ret)
		return -EINVAL;
	int err = call(c, HYD_REQ_STATUS, NULL, 0, HYD_EVT_STATUS_INFO, &w, sizeof(w));
	if (err < 0)
		return err;
	memset(ret, 0, sizeof(*ret));
	ret->n_sessions = w.n_sessions;
	ret->n_clients = w.n_clients;
	ret->uptime_ns = w.uptime_ns;
	ret->mem_total = w.mem_total;
	ret->mem_limit = w.mem_limit;
	ret->prompt_tok_s = w.prompt_tok_s;
	ret->gen_tok_s = w.gen_tok_s;
	memcpy(ret->model, w.model, sizeof(ret->model) - 1);
	memcpy(ret->arch, w.arch, sizeof(ret->arch) - 1);
	memcpy(ret->backend, w.backend, sizeof(ret->backend) - 1);
	ret->n_kinds = w.n_kinds < HYD_WIRE_MAX_KINDS ? w.n_kinds : HYD_WIRE_MAX_KINDS;
	for (uint32_t i = 0; i < ret->n_kinds; i++) {
		memcpy(ret->kinds[i].kind, w.kinds[i].kind, sizeof(ret->kinds[i].kind) - 1);
		ret->kinds[i].bytes = w.kinds[i].bytes;
		ret->kinds[i].tokens = w.kinds[i].tokens;
	}
	return 0;
}

int hyd_tokenize(struct hyd_conn *c, const char *text, size_t len, uint32_t flags, int32_t **ret_tokens,
		 size_t *ret_n)
{
	if (!c || (!text && len) || !ret_tokens || !ret_n)
		return -EINVAL;
	if (len > HYD_PROTO_MAX_MSG - sizeof(struct hyd_wire_append))
		return -EMSGSIZE;
	c->last_error[0] = 0;
	struct hyd_wire_append m = { .flags = flags, .count = (uint32_t)len };
	struct iovec v[2] = { { &m, sizeof(m) }, { (void *)text, len } };
	uint64_t id;
	int err = send_req(c, HYD_REQ_TOKENIZE, v, len ? 2 : 1, false, &id);
	if (err < 0)
		return err;
	struct event ev;
	if ((err = next_event(c, id, &ev)) < 0)
		return err;
	if (ev.type == HYD_EVT_ERROR) {
		err = take_error(c, &ev);
	} else if (ev.type != HYD_EVT_TOKENS) {
		err = mark_dead(c, -EPROTO);
	} else {
		struct hyd_wire_tokens t;
		memcpy(&t, ev.data, sizeof(t));
		int32_t *tok = hyd_malloc((size_t)t.n * sizeof(int32_t));
		if (!tok) {
			err = -ENOMEM;
		} else {
			memcpy(tok, ev.data + sizeof(t), (size_t)t.n * sizeof(int32_t));
			*ret_tokens = tok;
			*ret_n = t.n;
		}
	}
	event_done(&ev);
	return err;
}

void hyd_tokens_free(int32_t *tokens)
{
	hyd_free(tokens);
}

/* ---------------------------------------------------------------- generation */

static int sampling_to_wire(const struct hyd_sampling *p, struct hyd_wire_sampling *w, uint8_t **ret_stops)
{
	struct hyd_sampling d;
	if (!p) {
		hyd_sampling_init(&d);
		p = &d;
	}
	if (p->struct_size < offsetof(struct hyd_sampling, _reserved))
		return -EINVAL;
	if (p->n_stop > HYD_PROTO_MAX_STOP || (p->n_stop && !p->stop))
		return -EINVAL;
	*w = (struct hyd_wire_sampling){
		.temperature = p->temperature, .top_p = p->top_p, .min_p = p->min_p,
		.repeat_penalty = p->repeat_penalty, .top_k = p->top_k, .repeat_last_n = p->repeat_last_n,
		.max_tokens = p->max_tokens, .seed = p->seed, .n_stop = p->n_stop,
	};
	size_t total = 0;
	for (uint32_t i = 0; i < p->n_stop; i++) {
		size_t n = p->stop[i] ? strlen(p->stop[i]) : 0;
		if (!n || n > HYD_PROTO_STOP_MAX_LEN)
			return -EINVAL;
		total += sizeof(uint16_t) + n;
	}
	uint8_t *b = NULL;
	if (total && !(b = hyd_malloc(total)))
		return -ENOMEM;
	size_t at = 0;
	for (uint32_t i = 0; i < p->n_stop; i++) {
		uint16_t n = (uint16_t)strlen(p->stop[i]);
		memcpy(b + at, &n, sizeof(n));
		memcpy(b + at + sizeof(n), p->stop[i], n);
		at += sizeof(n) + n;
	}
	w->stop_bytes = (uint32_t)total;
	*ret_stops = b;
	return 0;
}

int hyd_generate_start(struct hyd_conn *c, uint64_t id, const struct hyd_sampling *params,
		       struct hyd_stream **ret_stream)
{
	if (!c || !ret_stream)
		return -EINVAL;
	c->last_error[0] = 0;
	struct hyd_wire_generate g = { .session = id };
	uint8_t *stops = NULL;
	int err = sampling_to_wire(params, &g.s, &stops);
	if (err < 0)
		return err;
	struct hyd_stream *s = hyd_calloc(1, sizeof(*s));
	if (!s) {
		hyd_free(stops);
		return -ENOMEM;
	}
	struct iovec v[2] = { { &g, sizeof(g) }, { stops, g.s.stop_bytes } };
	err = send_req(c, HYD_REQ_GENERATE, v, g.s.stop_bytes ? 2 : 1, false, &s->id);
	hyd_free(stops);
	if (err < 0) {
		hyd_free(s);
		return err;
	}
	s->c = c;
	*ret_stream = s;
	return 0;
}

int hyd_generate_next(struct hyd_stream *s, struct hyd_token_event *ret_ev)
{
	if (!s || !ret_ev)
		return -EINVAL;
	if (s->finished)
		return s->err;
	struct event ev;
	int err = next_event(s->c, s->id, &ev);
	if (err < 0) {
		s->finished = true;
		s->err = err;
		return err;
	}
	int ret = 0;
	if (ev.type == HYD_EVT_TOKEN) {
		struct hyd_wire_token t;
		memcpy(&t, ev.data, sizeof(t));
		if (t.text_len + 1 > s->text_cap) {
			uint32_t cap = t.text_len + 64;
			char *n = hyd_realloc(s->text, cap);
			if (!n) {
				event_done(&ev);
				return -ENOMEM;
			}
			s->text = n;
			s->text_cap = cap;
		}
		memcpy(s->text, ev.data + sizeof(t), t.text_len);
		s->text[t.text_len] = 0;
		*ret_ev = (struct hyd_token_event){ .token = t.token, .text_len = t.text_len, .text = s->text };
		ret = 1;
	} else if (ev.type == HYD_EVT_DONE) {
		struct hyd_wire_done d;
		memcpy(&d, ev.data, sizeof(d));
		s->done = (struct hyd_done_info){ .reason = d.reason, .status = d.status, .n_prompt = d.n_prompt,
						  .n_generated = d.n_generated, .prompt_ns = d.prompt_ns,
						  .gen_ns = d.gen_ns };
		s->finished = true;
	} else if (ev.type == HYD_EVT_ERROR) {
		ret = take_error(s->c, &ev);
		s->finished = true;
		s->err = ret;
	} else {
		ret = mark_dead(s->c, -EPROTO);
		s->finished = true;
		s->err = ret;
	}
	event_done(&ev);
	return ret;
}

int hyd_stream_cancel(struct hyd_stream *s)
{
	if (!s)
		return -EINVAL;
	if (s->finished)
		return -EALREADY;
	if (s->cancelled)
		return 0;
	struct hyd_wire_cancel m = { .target = s->id };
	struct iovec v = { &m, sizeof(m) };
	uint64_t id;
	int err = send_req(s->c, HYD_REQ_CANCEL, &v, 1, true, &id);
	if (err == 0)
		s->cancelled = true;
	return err;
}

const struct hyd_done_info *hyd_stream_done(const struct hyd_stream *s)
{
	return s && s->finished && !s->err ? &s->done : NULL;
}

void hyd_stream_free(struct hyd_stream *s)
{
	if (!s)
		return;
	if (!s->finished && !s->c->dead && hyd_stream_cancel(s) == 0) {
		struct hyd_token_event ev;
		while (hyd_generate_next(s, &ev) > 0)
			;
	}
	hyd_free(s->text);
	hyd_free(s);
}

int hyd_generate(struct hyd_conn *c, uint64_t id, const struct hyd_sampling *params, hyd_token_cb cb,
		 void *userdata, struct hyd_done_info *ret_done)
{
	struct hyd_stream *s;
	int err = hyd_generate_start(c, id, params, &s);
	if (err < 0)
		return err;
	struct hyd_token_event ev;
	while ((err = hyd_generate_next(s, &ev)) > 0) {
		if (s->cancelled || !cb)
			continue;
		if (cb(userdata, &ev) != 0 && (err = hyd_stream_cancel(s)) < 0)
			break;
	}
	if (err == 0) {
		err = (int)s->done.reason;
		if (ret_done)
			*ret_done = s->done;
	}
	hyd_stream_free(s);
	return err;
}
