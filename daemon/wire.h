/* The transport's headers (daemon/server.h, ipc/proto.h) for translation units that also use
 * the session store, the sampler or the tokenizer.
 *
 * ipc/proto.h includes the public libhyd header, whose client-side names (struct hyd_sampling,
 * struct hyd_session_info, hyd_session_create(), hyd_tokenize() ...) are also the names of the
 * daemon's own sampler, session store and tokenizer with other meanings.  The daemon never
 * calls libhyd, so its declarations are renamed out of the way while the header is read.
 * Include this before any other hyd header. */
#ifndef HYD_DAEMON_WIRE_H
#define HYD_DAEMON_WIRE_H

#if defined(HYD_PLUGIN_H) || defined(HYD_DAEMON_SESSION_H) || defined(HYD_DAEMON_SAMPLER_H) || defined(HYD_DAEMON_TOKENIZER_H)
#error "include daemon/wire.h before the session, sampler and tokenizer headers"
#endif

#define hyd_sampling hyd__libhyd_sampling
#define hyd_session_info hyd__libhyd_session_info
#define hyd_session_create hyd__libhyd_session_create
#define hyd_session_truncate hyd__libhyd_session_truncate
#define hyd_session_fork hyd__libhyd_session_fork
#define hyd_session_snapshot hyd__libhyd_session_snapshot
#define hyd_session_restore hyd__libhyd_session_restore
#define hyd_session_delete hyd__libhyd_session_delete
#define hyd_session_list hyd__libhyd_session_list
#define hyd_tokenize hyd__libhyd_tokenize
/* server.h's syslog-numbered levels also collide with the plugin ABI's: the daemon uses them as
 * HYD_SRV_LOG_*. */
#define hyd_log_level hyd_srv_log_level
#define HYD_LOG_ERR HYD_SRV_LOG_ERR
#define HYD_LOG_WARNING HYD_SRV_LOG_WARNING
#define HYD_LOG_INFO HYD_SRV_LOG_INFO
#define HYD_LOG_DEBUG HYD_SRV_LOG_DEBUG

#include "daemon/server.h"
#include "ipc/proto.h"

#undef hyd_sampling
#undef hyd_session_info
#undef hyd_session_create
#undef hyd_session_truncate
#undef hyd_session_fork
#undef hyd_session_snapshot
#undef hyd_session_restore
#undef hyd_session_delete
#undef hyd_session_list
#undef hyd_tokenize
#undef hyd_log_level
#undef HYD_LOG_ERR
#undef HYD_LOG_WARNING
#undef HYD_LOG_INFO
#undef HYD_LOG_DEBUG

#endif
