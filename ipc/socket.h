/* Unix socket helpers shared by the daemon and libhyd: where the socket lives, and passing
 * one file descriptor with SCM_RIGHTS. */
#ifndef HYD_IPC_SOCKET_H
#define HYD_IPC_SOCKET_H

#include <stddef.h>
#include <sys/types.h>

#define HYD_SOCKET_ENV "HYD_SOCKET"
#define HYD_SYSTEM_SOCKET "/run/hyd/hydd.sock"

/* The default path: $HYD_SOCKET if set and non-empty; /run/hyd/hydd.sock for root;
 * $XDG_RUNTIME_DIR/hyd/hydd.sock otherwise (or /run/user/<uid>/hyd/hydd.sock without it).
 * -ENAMETOOLONG if it does not fit in len (or in sun_path). */
int hyd__socket_default_path(char *buf, size_t len);

/* Send len bytes and, if fd >= 0, the descriptor, in one message (nonblocking).  0, -EAGAIN
 * (socket buffer full), -EPIPE, ... */
int hyd__socket_send_fd(int sock, const void *buf, size_t len, int fd);
/* Receive up to len bytes and at most one descriptor (-1 if none; extra ones are closed; it is
 * O_CLOEXEC).  Returns bytes read (0 at EOF) or a negative errno. */
ssize_t hyd__socket_recv_fd(int sock, void *buf, size_t len, int *ret_fd);

#endif
