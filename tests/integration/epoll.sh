#!/bin/sh
# (h) The epoll fallback: greedy.sh with io_uring disabled in the daemon (HYD_IO_BACKEND=epoll).
HYD_IO_BACKEND=epoll
export HYD_IO_BACKEND
exec sh "$(dirname "$0")/greedy.sh"
