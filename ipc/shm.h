/* The per-connection shared memory: a sealed memfd holding a header page (struct hyd_shm_hdr and
 * both ring control blocks) and the request and event ring data areas (see docs/IPC.md). */
#ifndef HYD_IPC_SHM_H
#define HYD_IPC_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "ipc/proto.h"
#include "ipc/ring.h"

#define HYD_SHM_DEFAULT_RING (256u << 10)

struct hyd_shm {
	void *base;
	size_t size;
	int fd;                  /* daemon: the memfd until sent; client: -1 */
	uint32_t flags;          /* HYD_SHM_F_* */
	uint64_t conn_id;
	struct hyd_ring req;     /* daemon: consumer; client: producer */
	struct hyd_ring evt;     /* daemon: producer; client: consumer */
};

/* Daemon side: create, size, seal (shrink, grow, seal) and map a memfd with two rings of the given
 * power-of-two sizes (0: HYD_SHM_DEFAULT_RING).  Records are limited to a quarter of a ring.
 * -EINVAL, -EMFILE, -ENOMEM ... */
int hyd__shm_create(uint32_t req_size, uint32_t evt_size, uint32_t flags, uint64_t conn_id, struct hyd_shm *ret);
/* Client side: map fd (expect_size bytes, as announced in the welcome) and validate its header.
 * -EPROTO (bad magic, version, sizes, offsets or missing seals), -ENOMEM ... fd is not closed. */
int hyd__shm_attach(int fd, uint64_t expect_size, struct hyd_shm *ret);
/* Unmap and close what is still open.  Accepts a zeroed struct. */
void hyd__shm_release(struct hyd_shm *s);

/* Largest payload of one record (fragment) a side may write to r. */
static inline uint32_t hyd__shm_max_fragment(const struct hyd_ring *r)
{
	return (r->max_record - (uint32_t)sizeof(struct hyd_msg_hdr)) & ~(HYD_RING_ALIGN - 1);
}

#endif
