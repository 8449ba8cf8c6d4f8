/* libhyd: the C client library of the hyd inference daemon.
 *
 * Connect with hyd_connect(), then create or open sessions (a session is the daemon-side state of
 * one conversation: its tokens and every layer's cache, kept in shared memory and surviving both
 * the client and daemon restarts), append text or tokens to them, and generate.  Requests and
 * streamed tokens travel through shared-memory rings; the Unix socket only carries the handshake
 * and tells each side when the other is gone.
 *
 * Conventions: every function that can fail returns 0 (or a documented non-negative value) on
 * success and a negative errno on failure; hyd_strerror() turns it into text, and after a failure
 * the daemon reported (as opposed to a local one) hyd_last_error() holds the daemon's message.
 * Output parameters are written only on success.  Destructors accept NULL.  A connection is not
 * thread-safe: use one per thread, or lock around it.  Session ids are only visible to clients of
 * the same uid.
 *
 * Errors every request can return, in addition to those listed per function:
 *   -ECONNRESET  the daemon went away (the connection is dead; hyd_disconnect() it)
 *   -EPROTO      the daemon sent something this library does not understand
 *   -EINVAL      a NULL or out-of-range argument
 *   -ENOMEM      out of memory (locally, or in the daemon)
 *   -EINTR       a signal interrupted a wait (the request may still complete; reconnect to be sure)
 */
#ifndef HYD_CLIENT_H
#define HYD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct hyd_conn;
struct hyd_stream;

/* Why a generation ended (struct hyd_done_info.reason, hyd_generate()'s return value). */
enum hyd_done_reason {
	HYD_DONE_EOS = 0,        /* the model produced its end-of-sequence token */
	HYD_DONE_MAX_TOKENS = 1, /* max_tokens reached, or the session's context is full */
	HYD_DONE_STOP = 2,       /* a stop string matched (it is not part of the streamed text) */
	HYD_DONE_CANCELLED = 3,  /* cancelled by the client */
	HYD_DONE_ERROR = 4,      /* failed; hyd_done_info.status holds the negative errno */
};

/* Flags for hyd_session_append_text() and hyd_tokenize(). */
#define HYD_APPEND_BOS 0x1u      /* prepend the model's BOS token when the session is empty */
#define HYD_APPEND_SPECIAL 0x2u  /* parse special-token text such as "<|im_end|>" into tokens */

#define HYD_NAME_MAX 64          /* session name bytes including the NUL */

struct hyd_sampling {
	uint32_t struct_size;    /* set by hyd_sampling_init(); lets later versions append fields */
	float temperature;       /* 0: greedy */
	int32_t top_k;           /* 0: off */
	float top_p;             /* 1: off */
	float min_p;             /* 0: off */
	float repeat_penalty;    /* 1: off */
	int32_t repeat_last_n;   /* tokens the penalty looks back over; -1: the whole context */
	uint32_t max_tokens;     /* 0: until EOS or the context is full */
	uint64_t seed;           /* 0: random */
	const char *const *stop; /* n_stop NUL-terminated stop strings (1..255 bytes, at most 16) */
	uint32_t n_stop;
	uint32_t _reserved;
};

/* Fill *p with the defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * repeat_penalty 1.0, repeat_last_n 64, max_tokens 0, seed 0, no stop strings. */
void hyd_sampling_init(struct hyd_sampling *p);

struct hyd_session_info {
	uint64_t id;
	uint32_t n_tokens;       /* committed tokens */
	uint32_t max_ctx;
	uint64_t bytes;          /* shared memory the session holds */
	uint32_t uid;
	uint32_t flags;
	uint64_t created_ns;     /* CLOCK_REALTIME */
	char name[HYD_NAME_MAX];
	uint64_t attn_bytes;     /* of bytes: full attention KV */
	uint64_t swa_bytes;      /* sliding-window KV */
	uint64_t ssm_bytes;      /* recurrent (SSM) state */
	uint64_t other_bytes;
};

struct hyd_kind_mem {
	char kind[16];
	uint64_t bytes;
	uint64_t tokens;
};

struct hyd_status {
	uint32_t n_sessions;
	uint32_t n_clients;
	uint64_t uptime_ns;
	uint64_t mem_total;
	uint64_t mem_limit;      /* 0: none */
	double prompt_tok_s;
	double gen_tok_s;
	char model[64];
	char arch[32];
	char backend[16];        /* the daemon's event loop: "io_uring" or "epoll" */
	uint32_t n_kinds;
	struct hyd_kind_mem kinds[8];
};

struct hyd_token_event {
	int32_t token;
	uint32_t text_len;       /* text is not NUL-terminated and may end inside a UTF-8 sequence */
	const char *text;        /* valid until the next call on the same stream / callback return */
};

struct hyd_done_info {
	uint32_t reason;         /* enum hyd_done_reason */
	int32_t status;          /* negative errno with HYD_DONE_ERROR, else 0 */
	uint32_t n_prompt;
	uint32_t n_generated;
	uint64_t prompt_ns;
	uint64_t gen_ns;
};

/* Shared-memory transport counters of this connection, for measuring syscalls. */
struct hyd_conn_stats {
	uint64_t req_msgs;       /* records the client sent */
	uint64_t req_wakes;      /* times the client had to wake the daemon (FUTEX_WAKE) */
	uint64_t req_daemon_sleeps; /* times the daemon armed its doorbell and slept */
	uint64_t evt_msgs;       /* records the daemon sent */
	uint64_t evt_wakes;      /* times the daemon had to wake the client */
	uint64_t evt_client_sleeps; /* times the client slept in FUTEX_WAIT */
};

/* Connect to the daemon listening at path; NULL means $HYD_SOCKET, else the default
 * ($XDG_RUNTIME_DIR/hyd/hydd.sock, or /run/hyd/hydd.sock for root).
 * Errors: -ENOENT / -ECONNREFUSED (no daemon there), -EACCES, -ENAMETOOLONG (path too long for
 * a Unix socket), -EPROTO (the daemon speaks another protocol version), -EAGAIN (the daemon
 * refused: too many clients), -ENOMEM. */
int hyd_connect(const char *path, struct hyd_conn **ret_conn);
/* Close the connection.  Sessions stay in the daemon.  Accepts NULL. */
void hyd_disconnect(struct hyd_conn *c);

/* Text for a negative errno returned by this library (never NULL, static storage). */
const char *hyd_strerror(int err);
/* The daemon's message for the last failed request on c, or "" if the last failure was local. */
const char *hyd_last_error(const struct hyd_conn *c);

/* Create a session (name may be NULL or "" for none, else up to 63 bytes; max_ctx 0 for the
 * daemon's default) and describe it in *ret_info.  Errors: -EEXIST (name in use), -ENOSPC (no
 * memory left for another session), -E2BIG (max_ctx larger than the model allows), -ENAMETOOLONG. */
int hyd_session_create(struct hyd_conn *c, const char *name, uint32_t max_ctx, struct hyd_session_info *ret_info);
/* Look a session up by id (nonzero) or else by name.  Errors: -ENOENT (no such session for this uid). */
int hyd_session_open(struct hyd_conn *c, uint64_t id, const char *name, struct hyd_session_info *ret_info);
/* Tokenize text in the daemon and append it (evaluating the tokens).  flags: HYD_APPEND_*.
 * ret_info may be NULL.  Errors: -ENOENT, -ENOSPC (context full), -EBUSY (the session is
 * generating), -EMSGSIZE (text over 16 MiB). */
int hyd_session_append_text(struct hyd_conn *c, uint64_t id, const char *text, size_t len, uint32_t flags,
			    struct hyd_session_info *ret_info);
/* Append token ids.  Errors: as append_text, and -EINVAL for a token outside the vocabulary. */
int hyd_session_append_tokens(struct hyd_conn *c, uint64_t id, const int32_t *tokens, size_t n,
			      struct hyd_session_info *ret_info);
/* Keep only the first n_tokens tokens.  Errors: -ENOENT, -EINVAL (n_tokens past the end), -EBUSY. */
int hyd_session_truncate(struct hyd_conn *c, uint64_t id, uint32_t n_tokens, struct hyd_session_info *ret_info);
/* Copy a session (cheaply: pages are shared copy-on-write).  *ret_info describes the new one.
 * Errors: -ENOENT, -EEXIST (name in use), -ENOSPC. */
int hyd_session_fork(struct hyd_conn *c, uint64_t id, const char *new_name, struct hyd_session_info *ret_info);
/* Write the session to a file at path (as the daemon's user; relative paths are the daemon's).
 * Errors: -ENOENT, -EACCES, -ENOSPC, -EIO. */
int hyd_session_snapshot(struct hyd_conn *c, uint64_t id, const char *path);
/* Load a snapshot as a new session.  Errors: -ENOENT, -EACCES, -EEXIST, -EBADMSG (not a snapshot),
 * -ESTALE (written for another model). */
int hyd_session_restore(struct hyd_conn *c, const char *path, const char *name, struct hyd_session_info *ret_info);
/* Delete a session.  Errors: -ENOENT, -EBUSY (generating). */
int hyd_session_delete(struct hyd_conn *c, uint64_t id);
/* This uid's sessions in *ret_list (free with hyd_session_list_free) and their number. */
int hyd_session_list(struct hyd_conn *c, struct hyd_session_info **ret_list, size_t *ret_n);
void hyd_session_list_free(struct hyd_session_info *list);
/* Daemon status: model, memory per layer kind, throughput. */
int hyd_status(struct hyd_conn *c, struct hyd_status *ret_status);
/* Tokenize without touching a session; *ret_tokens is freed with hyd_tokens_free. */
int hyd_tokenize(struct hyd_conn *c, const char *text, size_t len, uint32_t flags, int32_t **ret_tokens,
		 size_t *ret_n);
void hyd_tokens_free(int32_t *tokens);

/* Callback form of generation: cb is called for every token; returning nonzero cancels.  Returns
 * the enum hyd_done_reason (>= 0) and fills *ret_done (may be NULL), or a negative errno:
 * -ENOENT, -EBUSY (already generating), -ENOSPC (context full), -EINVAL (bad sampling
 * parameters or stop strings).  A failure inside the model is HYD_DONE_ERROR with the errno in
 * ret_done->status. */
typedef int (*hyd_token_cb)(void *userdata, const struct hyd_token_event *ev);
int hyd_generate(struct hyd_conn *c, uint64_t id, const struct hyd_sampling *params, hyd_token_cb cb,
		 void *userdata, struct hyd_done_info *ret_done);

/* Pull form: start a generation, then call hyd_generate_next() until it returns 0.  Several
 * streams (on different sessions) may be open on one connection.  Errors of start: as
 * hyd_generate, reported either here or by the first hyd_generate_next(). */
int hyd_generate_start(struct hyd_conn *c, uint64_t id, const struct hyd_sampling *params,
		       struct hyd_stream **ret_stream);
/* 1: *ret_ev holds the next token (its text valid until the next call); 0: finished, see
 * hyd_stream_done(); negative errno: the request failed (-ENOENT, -EBUSY, ...) or the connection
 * died.  Blocks until an event arrives. */
int hyd_generate_next(struct hyd_stream *s, struct hyd_token_event *ret_ev);
/* Ask the daemon to stop; keep calling hyd_generate_next() to drain until 0 (reason CANCELLED,
 * or another reason if it finished first).  Errors: -EALREADY (already finished). */
int hyd_stream_cancel(struct hyd_stream *s);
/* How the stream ended, or NULL while it is running. */
const struct hyd_done_info *hyd_stream_done(const struct hyd_stream *s);
/* Free a stream; one still running is cancelled and drained first.  Accepts NULL. */
void hyd_stream_free(struct hyd_stream *s);

/* Transport counters of this connection.  Errors: -EINVAL. */
int hyd_conn_stats(const struct hyd_conn *c, struct hyd_conn_stats *ret_stats);

#ifdef __cplusplus
}
#endif

#endif
