/* io_uring helpers liburing 2.3 lacks: IORING_OP_FUTEX_WAIT (kernel 6.7+). */
#ifndef HYD_IPC_URING_H
#define HYD_IPC_URING_H

#include <liburing.h>
#include <stdatomic.h>
#include <stdint.h>

#define HYD_IORING_OP_FUTEX_WAIT 51
#define HYD_FUTEX2_SIZE_U32 0x02u      /* shared (not FUTEX2_PRIVATE): the word is in a memfd two processes map */
#define HYD_FUTEX_BITSET_MATCH_ANY 0xffffffffu

/* Wait until *word != val or a FUTEX_WAKE on it; completes with 0 (woken) or -EAGAIN (value
 * already different). */
void hyd__uring_prep_futex_wait(struct io_uring_sqe *sqe, _Atomic uint32_t *word, uint32_t val);

/* Whether this kernel's io_uring (on ring) supports the futex wait opcode and lets us use it:
 * 0, -EOPNOTSUPP, or the error of the probe. */
int hyd__uring_probe_futex(struct io_uring *ring);

#endif
