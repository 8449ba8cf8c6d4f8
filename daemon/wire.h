/* The transport's headers (daemon/server.h, ipc/proto.h) for the daemon's translation units.
 * ipc/proto.h includes the public libhyd header; the daemon's own internals use hyd__ or
 * distinct names (hyd__sess_*, hyd_tokenizer_encode, struct hyd_sampler_params), so both sets
 * of declarations can be seen together. */
#ifndef HYD_DAEMON_WIRE_H
#define HYD_DAEMON_WIRE_H

#include "daemon/server.h"
#include "ipc/proto.h"

#endif
