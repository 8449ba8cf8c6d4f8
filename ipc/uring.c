#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "ipc/uring.h"

void hyd__uring_prep_futex_wait(struct io_uring_sqe *sqe, _Atomic uint32_t *word, uint32_t val)
{
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = HYD_IORING_OP_FUTEX_WAIT;
	sqe->fd = (int32_t)HYD_FUTEX2_SIZE_U32;      /* futex2 flags */
	sqe->addr = (uint64_t)(uintptr_t)word;
	sqe->off = val;                               /* addr2: the expected value */
	sqe->addr3 = HYD_FUTEX_BITSET_MATCH_ANY;      /* mask */
	/* sqe->rw_flags (futex_flags) must stay 0 */
}

int hyd__uring_probe_futex(struct io_uring *ring)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	if (!p)
		return -EOPNOTSUPP;
	bool ok = p->last_op >= HYD_IORING_OP_FUTEX_WAIT &&
		  (p->ops[HYD_IORING_OP_FUTEX_WAIT].flags & IO_URING_OP_SUPPORTED);
	io_uring_free_probe(p);
	if (!ok)
		return -EOPNOTSUPP;

	/* The probe can claim support while a seccomp filter or LSM still refuses: try one wait
	 * whose value cannot match, which must complete at once with -EAGAIN. */
	_Atomic uint32_t word = 1;
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe)
		return -EBUSY;
	hyd__uring_prep_futex_wait(sqe, &word, 0);
	sqe->user_data = 0;
	int err = io_uring_submit(ring);
	if (err < 0)
		return err;
	struct io_uring_cqe *cqe;
	err = io_uring_wait_cqe(ring, &cqe);
	if (err < 0)
		return err;
	int res = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return res == -EAGAIN ? 0 : (res < 0 ? res : -EOPNOTSUPP);
}
