/* Single-producer single-consumer message rings in shared memory, and the futex doorbells that
 * let an idle side sleep.
 *
 * A ring is a control block (struct hyd_ring_ctl, one cache line per writer so the two sides
 * never share a line they both write) plus a power-of-two data area.  head and tail are
 * free-running 64-bit byte counters: head is written only by the producer, tail only by the
 * consumer, each published with a release store and read by the other side with an acquire load.
 * Records are {struct hyd_msg_hdr, payload} padded to 8 bytes; a record may wrap around the end
 * of the data area (both sides copy in two pieces), so no padding records are needed.
 *
 * Both processes can scribble on the whole mapping, so each side keeps its own index privately
 * and never re-reads it from shared memory, and everything read from the peer (its index, record
 * headers, payloads) is bounds-checked after being copied out.  A violation is -EBADMSG, which
 * the daemon treats as "disconnect this client".
 *
 * Doorbells (hyd__bell_*): a u32 futex word whose bit 0 means "a waiter is (about to be) asleep
 * on me" and whose upper bits count wake-ups.  The waiter arms the bell (sets bit 0), issues a
 * full fence and re-checks its condition before it sleeps; the waker publishes its index, issues
 * a full fence and only when it sees bit 0 clears it (bumping the count, which also makes a
 * racing FUTEX_WAIT return EAGAIN) and calls FUTEX_WAKE.  The two fences make it impossible for
 * both sides to miss each other, and a busy pair of processes never enters the kernel. */
#ifndef HYD_IPC_RING_H
#define HYD_IPC_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define HYD_RING_MAGIC 0x474e5248u   /* "HRNG" */
#define HYD_RING_VERSION 1u
#define HYD_RING_MIN_SIZE 4096u
#define HYD_RING_MAX_SIZE (1u << 30)
#define HYD_RING_ALIGN 8u

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the hyd wire format is little-endian"
#endif

/* Record header: len is the payload length (without the header and without padding). */
struct hyd_msg_hdr {
	uint32_t len;
	uint16_t type;
	uint16_t flags;
	uint64_t id;     /* request id; events carry the id of the request they answer */
};
_Static_assert(sizeof(struct hyd_msg_hdr) == 16, "hyd_msg_hdr is 16 bytes on the wire");
_Static_assert(offsetof(struct hyd_msg_hdr, id) == 8, "hyd_msg_hdr layout");

/* Counters live in shared memory so either side (and tests) can read both; each line is
 * written by one side only and nothing reads them for a decision. */
struct hyd_ring_prod_stats {
	_Atomic uint64_t msgs;
	_Atomic uint64_t bytes;
	_Atomic uint64_t wakes;        /* FUTEX_WAKE (or socket kick) issued to a sleeping consumer */
	_Atomic uint64_t full_sleeps;  /* producer slept waiting for space */
};
struct hyd_ring_cons_stats {
	_Atomic uint64_t msgs;
	_Atomic uint64_t bytes;
	_Atomic uint64_t sleeps;       /* consumer armed its bell and slept (FUTEX_WAIT or equivalent) */
	_Atomic uint64_t space_wakes;  /* consumer woke a producer that waited for space */
};

struct hyd_ring_ctl {
	/* line 0: written once by the daemon at setup */
	uint32_t magic;
	uint32_t version;
	uint32_t size;           /* data bytes, power of two */
	uint32_t max_record;     /* largest record (header + payload + padding) the peer may write */
	uint8_t _pad0[48];
	/* line 1: producer-owned */
	_Atomic uint64_t head;
	_Atomic uint32_t space_bell; /* the producer sleeps here when the ring is full */
	uint32_t _pad1;
	struct hyd_ring_prod_stats pstats;
	uint8_t _pad2[16];
	/* line 2: consumer-owned */
	_Atomic uint64_t tail;
	_Atomic uint32_t data_bell;  /* the consumer sleeps here when the ring is empty */
	uint32_t _pad3;
	struct hyd_ring_cons_stats cstats;
	uint8_t _pad4[16];
};
_Static_assert(sizeof(struct hyd_ring_ctl) == 192, "hyd_ring_ctl is three cache lines");
_Static_assert(offsetof(struct hyd_ring_ctl, head) == 64, "producer line");
_Static_assert(offsetof(struct hyd_ring_ctl, tail) == 128, "consumer line");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4, "atomic sizes");

enum hyd_ring_role { HYD_RING_PRODUCER, HYD_RING_CONSUMER };

/* One side's private view of a ring. */
struct hyd_ring {
	struct hyd_ring_ctl *ctl;
	uint8_t *data;
	uint32_t size;
	uint32_t mask;
	uint32_t max_record;
	uint32_t role;
	uint64_t pos;        /* our own index (head or tail); the authoritative copy */
	uint64_t peer;       /* last value of the peer's index we saw */
};

struct hyd_ring_stats {
	uint64_t prod_msgs, prod_bytes, wakes, full_sleeps;
	uint64_t cons_msgs, cons_bytes, sleeps, space_wakes;
};

static inline uint32_t hyd__ring_record_size(uint32_t payload)
{
	return (uint32_t)((sizeof(struct hyd_msg_hdr) + (uint64_t)payload + HYD_RING_ALIGN - 1) &
			  ~(uint64_t)(HYD_RING_ALIGN - 1));
}

/* Initialise a control block for a data area of size bytes (power of two within
 * [HYD_RING_MIN_SIZE, HYD_RING_MAX_SIZE]) and records of at most max_record bytes
 * (0: size / 2).  -EINVAL. */
int hyd__ring_init(struct hyd_ring_ctl *ctl, uint32_t size, uint32_t max_record);
/* Attach one side.  expect_size != 0 makes the daemon ignore what the (client-writable) control
 * block claims and use the size it created; a client passes 0 and gets the block validated.
 * The starting index is read once here.  -EPROTO (bad magic/version/size). */
int hyd__ring_attach(struct hyd_ring *r, struct hyd_ring_ctl *ctl, void *data, uint32_t expect_size,
		     uint32_t expect_max_record, enum hyd_ring_role role);

/* Producer.  Append one record; never blocks.  -EAGAIN: not enough free space right now;
 * -EMSGSIZE: the record can never fit (larger than max_record); -EBADMSG: the consumer's tail
 * is impossible (peer corrupted the ring). */
int hyd__ring_write(struct hyd_ring *r, uint16_t type, uint16_t flags, uint64_t id, const void *payload,
		    uint32_t len);
int hyd__ring_writev(struct hyd_ring *r, uint16_t type, uint16_t flags, uint64_t id, const struct iovec *iov,
		     int iovcnt);
/* Free bytes as of now (refreshes the consumer's tail).  -EBADMSG as above. */
int64_t hyd__ring_space(struct hyd_ring *r);

/* Consumer.  Copy the next record's header into *ret_hdr and its payload into buf (capacity
 * cap) and consume it.  1: a record; 0: the ring is empty; -EBADMSG: the producer wrote an
 * impossible head or record length (len past the ring, past max_record or past head);
 * -ENOBUFS: the payload is larger than cap (the record is left in the ring). */
int hyd__ring_read(struct hyd_ring *r, struct hyd_msg_hdr *ret_hdr, void *buf, size_t cap);
/* Bytes available to read (refreshes head); -EBADMSG if head is impossible. */
int64_t hyd__ring_avail(struct hyd_ring *r);

/* Doorbells.  arm: set the sleeping flag and fence; *ret_val is what FUTEX_WAIT must expect.
 * The caller then re-checks its condition and calls hyd__bell_disarm if it no longer sleeps.
 * ring: after publishing, return true when a waiter had armed the bell (and clear the flag),
 * i.e. when FUTEX_WAKE (or the fallback kick) is needed. */
void hyd__bell_arm(_Atomic uint32_t *bell, uint32_t *ret_val);
void hyd__bell_disarm(_Atomic uint32_t *bell, uint32_t val);
bool hyd__bell_ring(_Atomic uint32_t *bell);

/* Shared (not private: the word lives in memory mapped by two processes) futex calls.
 * wait: 0 woken or value changed, -ETIMEDOUT, -EINTR.  timeout_ns < 0 waits forever. */
int hyd__futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t timeout_ns);
int hyd__futex_wake(_Atomic uint32_t *word, int n);

/* Producer: ring the consumer's data bell, FUTEX_WAKE it if it sleeps.  Returns true if it
 * was asleep (so a fallback transport can kick it too). */
bool hyd__ring_notify_data(struct hyd_ring *r);
/* Consumer: after reading, wake a producer waiting for space.  Returns true if it was asleep. */
bool hyd__ring_notify_space(struct hyd_ring *r);

/* Blocking helpers for a process that owns one side (the client, tests).  Spin up to spin_ns
 * re-checking, then arm the bell and FUTEX_WAIT for at most timeout_ns (< 0: forever).
 * 1: condition true; 0: timed out; -EBADMSG: corrupted ring; -EINTR. */
int hyd__ring_wait_data(struct hyd_ring *r, uint64_t spin_ns, int64_t timeout_ns);
int hyd__ring_wait_space(struct hyd_ring *r, uint32_t bytes, uint64_t spin_ns, int64_t timeout_ns);

void hyd__ring_stats(const struct hyd_ring_ctl *ctl, struct hyd_ring_stats *ret);

uint64_t hyd__now_ns(void);

#endif
