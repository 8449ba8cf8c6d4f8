#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc/shm.h"

#define REQUIRED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static bool ring_size_ok(uint64_t v)
{
	return v >= HYD_RING_MIN_SIZE && v <= HYD_RING_MAX_SIZE && !(v & (v - 1));
}

int hyd__shm_create(uint32_t req_size, uint32_t evt_size, uint32_t flags, uint64_t conn_id, struct hyd_shm *ret)
{
	if (!req_size)
		req_size = HYD_SHM_DEFAULT_RING;
	if (!evt_size)
		evt_size = HYD_SHM_DEFAULT_RING;
	if (!ring_size_ok(req_size) || !ring_size_ok(evt_size))
		return -EINVAL;
	size_t size = (size_t)HYD_SHM_HDR_BYTES + req_size + evt_size;

	int fd = memfd_create("hyd-conn", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	int err;
	if (ftruncate(fd, (off_t)size) < 0 || fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		err = -errno;
		close(fd);
		return err;
	}
	struct hyd_shm_hdr *h = base;
	h->magic = HYD_SHM_MAGIC;
	h->version = HYD_PROTO_VERSION;
	h->size = size;
	h->flags = flags;
	h->conn_id = conn_id;
	h->req_ctl = HYD_SHM_REQ_CTL;
	h->req_data = HYD_SHM_HDR_BYTES;
	h->req_size = req_size;
	h->evt_ctl = HYD_SHM_EVT_CTL;
	h->evt_data = (uint64_t)HYD_SHM_HDR_BYTES + req_size;
	h->evt_size = evt_size;

	struct hyd_ring_ctl *rc = (void *)((uint8_t *)base + HYD_SHM_REQ_CTL);
	struct hyd_ring_ctl *ec = (void *)((uint8_t *)base + HYD_SHM_EVT_CTL);
	struct hyd_shm s = { .base = base, .size = size, .fd = fd, .flags = flags, .conn_id = conn_id };
	if ((err = hyd__ring_init(rc, req_size, req_size / 4)) < 0 ||
	    (err = hyd__ring_init(ec, evt_size, evt_size / 4)) < 0 ||
	    (err = hyd__ring_attach(&s.req, rc, (uint8_t *)base + HYD_SHM_HDR_BYTES, req_size, req_size / 4,
				    HYD_RING_CONSUMER)) < 0 ||
	    (err = hyd__ring_attach(&s.evt, ec, (uint8_t *)base + HYD_SHM_HDR_BYTES + req_size, evt_size,
				    evt_size / 4, HYD_RING_PRODUCER)) < 0) {
		munmap(base, size);
		close(fd);
		return err;
	}
	*ret = s;
	return 0;
}

int hyd__shm_attach(int fd, uint64_t expect_size, struct hyd_shm *ret)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	int seals = fcntl(fd, F_GET_SEALS);
	/* Without the seals the daemon could shrink the file and fault us with SIGBUS. */
	if (seals < 0 || (seals & REQUIRED_SEALS) != REQUIRED_SEALS)
		return -EPROTO;
	if ((uint64_t)st.st_size != expect_size || expect_size < HYD_SHM_HDR_BYTES + 2 * HYD_RING_MIN_SIZE ||
	    expect_size > (uint64_t)HYD_SHM_HDR_BYTES + 2ull * HYD_RING_MAX_SIZE)
		return -EPROTO;
	void *base = mmap(NULL, expect_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	struct hyd_shm_hdr h;
	memcpy(&h, base, sizeof(h));
	int err = -EPROTO;
	if (h.magic != HYD_SHM_MAGIC || h.version != HYD_PROTO_VERSION || h.size != expect_size)
		goto fail;
	if (h.req_ctl != HYD_SHM_REQ_CTL || h.evt_ctl != HYD_SHM_EVT_CTL || !ring_size_ok(h.req_size) ||
	    !ring_size_ok(h.evt_size) || h.req_data < HYD_SHM_HDR_BYTES || h.evt_data < HYD_SHM_HDR_BYTES ||
	    h.req_data + h.req_size > expect_size || h.evt_data + h.evt_size > expect_size ||
	    (h.req_data < h.evt_data + h.evt_size && h.evt_data < h.req_data + h.req_size))
		goto fail;
	struct hyd_shm s = { .base = base, .size = expect_size, .fd = -1, .flags = h.flags, .conn_id = h.conn_id };
	if ((err = hyd__ring_attach(&s.req, (void *)((uint8_t *)base + h.req_ctl), (uint8_t *)base + h.req_data, 0,
				    0, HYD_RING_PRODUCER)) < 0 ||
	    (err = hyd__ring_attach(&s.evt, (void *)((uint8_t *)base + h.evt_ctl), (uint8_t *)base + h.evt_data, 0,
				    0, HYD_RING_CONSUMER)) < 0)
		goto fail;
	if (s.req.size != h.req_size || s.evt.size != h.evt_size) {
		err = -EPROTO;
		goto fail;
	}
	*ret = s;
	return 0;
fail:
	munmap(base, expect_size);
	return err;
}

void hyd__shm_release(struct hyd_shm *s)
{
	if (s->base)
		munmap(s->base, s->size);
	if (s->fd > 0)
		close(s->fd);
	s->base = NULL;
	s->fd = -1;
}
