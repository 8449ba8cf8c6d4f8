/* SPSC message rings and futex doorbells: see ring.h for the protocol. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ipc/ring.h"

#define BELL_SLEEPING 1u

uint64_t hyd__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

static bool pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int hyd__ring_init(struct hyd_ring_ctl *ctl, uint32_t size, uint32_t max_record)
{
	if (!pow2(size) || size < HYD_RING_MIN_SIZE || size > HYD_RING_MAX_SIZE)
		return -EINVAL;
	if (!max_record)
		max_record = size / 2;
	if (max_record > size || max_record < hyd__ring_record_size(0) || max_record % HYD_RING_ALIGN)
		return -EINVAL;
	memset(ctl, 0, sizeof(*ctl));
	ctl->magic = HYD_RING_MAGIC;
	ctl->version = HYD_RING_VERSION;
	ctl->size = size;
	ctl->max_record = max_record;
	atomic_store_explicit(&ctl->head, 0, memory_order_relaxed);
	atomic_store_explicit(&ctl->tail, 0, memory_order_relaxed);
	atomic_store_explicit(&ctl->space_bell, 0, memory_order_relaxed);
	atomic_store_explicit(&ctl->data_bell, 0, memory_order_release);
	return 0;
}

int hyd__ring_attach(struct hyd_ring *r, struct hyd_ring_ctl *ctl, void *data, uint32_t expect_size,
		     uint32_t expect_max_record, enum hyd_ring_role role)
{
	uint32_t size = expect_size, max_record = expect_max_record;

	if (!expect_size) {
		/* Copy once: the peer may change the block under us. */
		uint32_t magic = ctl->magic, version = ctl->version;
		size = ctl->size;
		max_record = ctl->max_record;
		if (magic != HYD_RING_MAGIC || version != HYD_RING_VERSION)
			return -EPROTO;
		if (!pow2(size) || size < HYD_RING_MIN_SIZE || size > HYD_RING_MAX_SIZE)
			return -EPROTO;
		if (max_record > size || max_record < hyd__ring_record_size(0) || max_record % HYD_RING_ALIGN)
			return -EPROTO;
	}
	memset(r, 0, sizeof(*r));
	r->ctl = ctl;
	r->data = data;
	r->size = size;
	r->mask = size - 1;
	r->max_record = max_record;
	r->role = role;
	if (role == HYD_RING_PRODUCER) {
		r->pos = atomic_load_explicit(&ctl->head, memory_order_acquire);
		r->peer = atomic_load_explicit(&ctl->tail, memory_order_acquire);
	} else {
		r->pos = atomic_load_explicit(&ctl->tail, memory_order_acquire);
		r->peer = atomic_load_explicit(&ctl->head, memory_order_acquire);
	}
	if ((role == HYD_RING_PRODUCER ? r->pos - r->peer : r->peer - r->pos) > size)
		return -EPROTO;
	return 0;
}

/* Refresh the consumer's tail; it must lie in [head - size, head]. */
static int refresh_tail(struct hyd_ring *r)
{
	uint64_t tail = atomic_load_explicit(&r->ctl->tail, memory_order_acquire);
	if (r->pos - tail > r->size)
		return -EBADMSG;
	r->peer = tail;
	return 0;
}

int64_t hyd__ring_space(struct hyd_ring *r)
{
	int err = refresh_tail(r);
	if (err < 0)
		return err;
	return (int64_t)r->size - (int64_t)(r->pos - r->peer);
}

static void copy_in(struct hyd_ring *r, uint64_t at, const void *src, size_t n)
{
	uint32_t off = (uint32_t)at & r->mask;
	size_t first = r->size - off;
	if (first >= n) {
		memcpy(r->data + off, src, n);
	} else {
		memcpy(r->data + off, src, first);
		memcpy(r->data, (const uint8_t *)src + first, n - first);
	}
}

static void copy_out(const struct hyd_ring *r, uint64_t at, void *dst, size_t n)
{
	uint32_t off = (uint32_t)at & r->mask;
	size_t first = r->size - off;
	if (first >= n) {
		memcpy(dst, r->data + off, n);
	} else {
		memcpy(dst, r->data + off, first);
		memcpy((uint8_t *)dst + first, r->data, n - first);
	}
}

int hyd__ring_writev(struct hyd_ring *r, uint16_t type, uint16_t flags, uint64_t id, const struct iovec *iov,
		     int iovcnt)
{
	uint64_t len = 0;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > UINT32_MAX || hyd__ring_record_size((uint32_t)len) > r->max_record)
		return -EMSGSIZE;
	uint32_t rec = hyd__ring_record_size((uint32_t)len);

	if ((int64_t)r->size - (int64_t)(r->pos - r->peer) < rec) {
		int err = refresh_tail(r);
		if (err < 0)
			return err;
		if (r->size - (r->pos - r->peer) < rec)
			return -EAGAIN;
	}
	struct hyd_msg_hdr h = { .len = (uint32_t)len, .type = type, .flags = flags, .id = id };
	uint64_t at = r->pos;
	copy_in(r, at, &h, sizeof(h));
	at += sizeof(h);
	for (int i = 0; i < iovcnt; i++) {
		copy_in(r, at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
	r->pos += rec;
	atomic_store_explicit(&r->ctl->head, r->pos, memory_order_release);
	atomic_fetch_add_explicit(&r->ctl->pstats.msgs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->ctl->pstats.bytes, rec, memory_order_relaxed);
	return 0;
}

int hyd__ring_write(struct hyd_ring *r, uint16_t type, uint16_t flags, uint64_t id, const void *payload,
		    uint32_t len)
{
	struct iovec iov = { .iov_base = (void *)payload, .iov_len = len };
	return hyd__ring_writev(r, type, flags, id, &iov, len ? 1 : 0);
}

/* Refresh the producer's head; it must lie in [tail, tail + size]. */
static int refresh_head(struct hyd_ring *r)
{
	uint64_t head = atomic_load_explicit(&r->ctl->head, memory_order_acquire);
	if (head - r->pos > r->size)
		return -EBADMSG;
	r->peer = head;
	return 0;
}

int64_t hyd__ring_avail(struct hyd_ring *r)
{
	int err = refresh_head(r);
	if (err < 0)
		return err;
	return (int64_t)(r->peer - r->pos);
}

int hyd__ring_read(struct hyd_ring *r, struct hyd_msg_hdr *ret_hdr, void *buf, size_t cap)
{
	uint64_t avail = r->peer - r->pos;
	if (avail < sizeof(struct hyd_msg_hdr)) {
		int err = refresh_head(r);
		if (err < 0)
			return err;
		avail = r->peer - r->pos;
		if (avail == 0)
			return 0;
		/* head only ever advances by whole records */
		if (avail < sizeof(struct hyd_msg_hdr) || avail % HYD_RING_ALIGN)
			return -EBADMSG;
	}
	struct hyd_msg_hdr h;
	copy_out(r, r->pos, &h, sizeof(h));
	if (h.len > r->max_record)
		return -EBADMSG;
	uint32_t rec = hyd__ring_record_size(h.len);
	if (rec > r->max_record || rec > avail)
		return -EBADMSG;
	if (h.len > cap)
		return -ENOBUFS;
	copy_out(r, r->pos + sizeof(h), buf, h.len);
	r->pos += rec;
	/* The copy above must complete before the producer may reuse the bytes. */
	atomic_store_explicit(&r->ctl->tail, r->pos, memory_order_release);
	atomic_fetch_add_explicit(&r->ctl->cstats.msgs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->ctl->cstats.bytes, rec, memory_order_relaxed);
	*ret_hdr = h;
	return 1;
}

void hyd__bell_arm(_Atomic uint32_t *bell, uint32_t *ret_val)
{
	uint32_t v = atomic_load_explicit(bell, memory_order_relaxed);
	while (!(v & BELL_SLEEPING)) {
		if (atomic_compare_exchange_weak_explicit(bell, &v, v | BELL_SLEEPING, memory_order_seq_cst,
							  memory_order_relaxed)) {
			v |= BELL_SLEEPING;
			break;
		}
	}
	/* Pairs with the fence in hyd__bell_ring: either the waker sees our flag or we see its data. */
	atomic_thread_fence(memory_order_seq_cst);
	*ret_val = v;
}

void hyd__bell_disarm(_Atomic uint32_t *bell, uint32_t val)
{
	/* Failure means the waker already cleared the flag: nothing to undo. */
	atomic_compare_exchange_strong_explicit(bell, &val, val & ~BELL_SLEEPING, memory_order_relaxed,
						memory_order_relaxed);
}

bool hyd__bell_ring(_Atomic uint32_t *bell)
{
	atomic_thread_fence(memory_order_seq_cst);
	uint32_t v = atomic_load_explicit(bell, memory_order_relaxed);
	while (v & BELL_SLEEPING) {
		if (atomic_compare_exchange_weak_explicit(bell, &v, (v + 2) & ~BELL_SLEEPING,
							  memory_order_seq_cst, memory_order_relaxed))
			return true;
	}
	return false;
}

int hyd__futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t timeout_ns)
{
	struct timespec ts, *tp = NULL;
	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tp = &ts;
	}
	if (syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, val, tp, NULL, 0) == 0)
		return 0;
	if (errno == EAGAIN)
		return 0;
	return -errno;
}

int hyd__futex_wake(_Atomic uint32_t *word, int n)
{
	long woke = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
	return woke < 0 ? -errno : (int)woke;
}

bool hyd__ring_notify_data(struct hyd_ring *r)
{
	if (!hyd__bell_ring(&r->ctl->data_bell))
		return false;
	hyd__futex_wake(&r->ctl->data_bell, INT_MAX);
	atomic_fetch_add_explicit(&r->ctl->pstats.wakes, 1, memory_order_relaxed);
	return true;
}

bool hyd__ring_notify_space(struct hyd_ring *r)
{
	if (!hyd__bell_ring(&r->ctl->space_bell))
		return false;
	hyd__futex_wake(&r->ctl->space_bell, INT_MAX);
	atomic_fetch_add_explicit(&r->ctl->cstats.space_wakes, 1, memory_order_relaxed);
	return true;
}

static int have_data(struct hyd_ring *r)
{
	int64_t a = hyd__ring_avail(r);
	return a < 0 ? (int)a : a > 0;
}

static int have_space(struct hyd_ring *r, uint32_t bytes)
{
	int64_t s = hyd__ring_space(r);
	return s < 0 ? (int)s : s >= (int64_t)bytes;
}

static int wait_cond(struct hyd_ring *r, int (*cond)(struct hyd_ring *, uint32_t), uint32_t arg,
		     _Atomic uint32_t *bell, _Atomic uint64_t *sleeps, uint64_t spin_ns, int64_t timeout_ns)
{
	int c = cond(r, arg);
	if (c)
		return c;
	uint64_t start = hyd__now_ns();
	if (spin_ns) {
		unsigned n = 0;
		for (;;) {
			for (int i = 0; i < 16; i++)
				cpu_relax();
			c = cond(r, arg);
			if (c)
				return c;
			if ((++n & 7) == 0 && hyd__now_ns() - start >= spin_ns)
				break;
		}
	}
	for (;;) {
		uint32_t val;
		hyd__bell_arm(bell, &val);
		c = cond(r, arg);
		if (c) {
			hyd__bell_disarm(bell, val);
			return c;
		}
		int64_t left = -1;
		if (timeout_ns >= 0) {
			uint64_t el = hyd__now_ns() - start;
			if (el >= (uint64_t)timeout_ns) {
				hyd__bell_disarm(bell, val);
				return 0;
			}
			left = timeout_ns - (int64_t)el;
		}
		atomic_fetch_add_explicit(sleeps, 1, memory_order_relaxed);
		int err = hyd__futex_wait(bell, val, left);
		if (err == -EINTR) {
			hyd__bell_disarm(bell, val);
			return err;
		}
		c = cond(r, arg);
		if (c)
			return c;
	}
}

static int cond_data(struct hyd_ring *r, uint32_t unused)
{
	return have_data(r);
}

int hyd__ring_wait_data(struct hyd_ring *r, uint64_t spin_ns, int64_t timeout_ns)
{
	return wait_cond(r, cond_data, 0, &r->ctl->data_bell, &r->ctl->cstats.sleeps, spin_ns, timeout_ns);
}

int hyd__ring_wait_space(struct hyd_ring *r, uint32_t bytes, uint64_t spin_ns, int64_t timeout_ns)
{
	if (bytes > r->size)
		return -EMSGSIZE;
	return wait_cond(r, have_space, bytes, &r->ctl->space_bell, &r->ctl->pstats.full_sleeps, spin_ns,
			 timeout_ns);
}

void hyd__ring_stats(const struct hyd_ring_ctl *ctl, struct hyd_ring_stats *ret)
{
	struct hyd_ring_ctl *c = (struct hyd_ring_ctl *)ctl;
	ret->prod_msgs = atomic_load_explicit(&c->pstats.msgs, memory_order_relaxed);
	ret->prod_bytes = atomic_load_explicit(&c->pstats.bytes, memory_order_relaxed);
	ret->wakes = atomic_load_explicit(&c->pstats.wakes, memory_order_relaxed);
	ret->full_sleeps = atomic_load_explicit(&c->pstats.full_sleeps, memory_order_relaxed);
	ret->cons_msgs = atomic_load_explicit(&c->cstats.msgs, memory_order_relaxed);
	ret->cons_bytes = atomic_load_explicit(&c->cstats.bytes, memory_order_relaxed);
	ret->sleeps = atomic_load_explicit(&c->cstats.sleeps, memory_order_relaxed);
	ret->space_wakes = atomic_load_explicit(&c->cstats.space_wakes, memory_order_relaxed);
}
