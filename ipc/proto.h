/* The hyd wire protocol, version 1: the socket handshake, the shared-memory layout handed over
 * with SCM_RIGHTS, and the records carried by the two rings (ipc/ring.h).
 *
 * Every struct is fixed-width, little-endian, naturally aligned and explicitly padded; padding
 * must be zero (the daemon does not check it, so it can carry future fields).  A payload is the
 * fixed struct followed, for some types, by variable bytes whose length the struct states; the
 * daemon copies each record out of the ring and checks it with hyd__proto_check_request() before
 * anything else looks at it.  Unknown types, flags, or lengths that disagree are malformed and
 * the client is disconnected.
 *
 * Requests carry a client-chosen id (nonzero, unique among the client's in-flight requests); every
 * event carries the id of the request it answers.  Each request ends with exactly one terminal
 * event: OK, ERROR, DONE (generate), SESSION_INFO, STATUS_INFO or TOKENS; TOKEN and LIST_ITEM
 * events come before the terminal one.  A record larger than the ring allows is split into
 * fragments of the same type and id, all but the last flagged HYD_MSGF_CONT; the receiver joins
 * them before checking (up to HYD_PROTO_MAX_MSG bytes). */
#ifndef HYD_IPC_PROTO_H
#define HYD_IPC_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "hyd/client.h"
#include "ipc/ring.h"

#define HYD_PROTO_VERSION 1u
#define HYD_PROTO_MAX_MSG (16u << 20)   /* a whole (joined) message */
#define HYD_PROTO_NAME_MAX 64u          /* session names, including the NUL */
#define HYD_PROTO_PATH_MAX 4096u
#define HYD_PROTO_MAX_STOP 16u
#define HYD_PROTO_STOP_MAX_LEN 255u

#define HYD_MSGF_CONT 0x0001u           /* fragment: the payload continues in the next record */
#define HYD_MSGF_MASK 0x0001u

enum hyd_msg_type {
	/* client -> daemon */
	HYD_REQ_CREATE = 1,      /* hyd_wire_create -> SESSION_INFO */
	HYD_REQ_OPEN,            /* hyd_wire_open -> SESSION_INFO */
	HYD_REQ_APPEND_TEXT,     /* hyd_wire_append + bytes -> SESSION_INFO */
	HYD_REQ_APPEND_TOKENS,   /* hyd_wire_append + int32[count] -> SESSION_INFO */
	HYD_REQ_GENERATE,        /* hyd_wire_generate + stop strings -> TOKEN* DONE */
	HYD_REQ_CANCEL,          /* hyd_wire_cancel -> OK (the target ends with DONE cancelled) */
	HYD_REQ_TRUNCATE,        /* hyd_wire_truncate -> SESSION_INFO */
	HYD_REQ_FORK,            /* hyd_wire_open (source id, new name) -> SESSION_INFO of the copy */
	HYD_REQ_SNAPSHOT,        /* hyd_wire_path (session) + path -> OK */
	HYD_REQ_RESTORE,         /* hyd_wire_path (name) + path -> SESSION_INFO */
	HYD_REQ_DELETE,          /* hyd_wire_session -> OK */
	HYD_REQ_LIST,            /* empty -> LIST_ITEM* OK */
	HYD_REQ_STATUS,          /* empty -> STATUS_INFO */
	HYD_REQ_TOKENIZE,        /* hyd_wire_append (session ignored) + bytes -> TOKENS */
	HYD_REQ_LAST_,

	/* daemon -> client */
	HYD_EVT_TOKEN = 0x100,   /* hyd_wire_token + text bytes */
	HYD_EVT_DONE,            /* hyd_wire_done */
	HYD_EVT_ERROR,           /* hyd_wire_error + message bytes */
	HYD_EVT_SESSION_INFO,    /* hyd_wire_session_info */
	HYD_EVT_LIST_ITEM,       /* hyd_wire_session_info */
	HYD_EVT_STATUS_INFO,     /* hyd_wire_status */
	HYD_EVT_OK,              /* hyd_wire_ok */
	HYD_EVT_TOKENS,          /* hyd_wire_tokens + int32[n] */
	HYD_EVT_LAST_,
};

/* ---- socket handshake ---- */
#define HYD_HELLO_MAGIC 0x43445948u   /* "HYDC" */
#define HYD_WELCOME_MAGIC 0x44445948u /* "HYDD" */

struct hyd_wire_hello {
	uint32_t magic;
	uint16_t version;
	uint16_t flags;
	uint64_t _reserved;
};
_Static_assert(sizeof(struct hyd_wire_hello) == 16, "hello size");

/* Followed by the memfd in SCM_RIGHTS when status == 0. */
struct hyd_wire_welcome {
	uint32_t magic;
	uint16_t version;
	uint16_t flags;
	int32_t status;          /* 0 or negative errno (version mismatch, too many clients ...) */
	uint32_t _pad;
	uint64_t shm_size;
	uint64_t conn_id;
};
_Static_assert(sizeof(struct hyd_wire_welcome) == 32, "welcome size");

/* ---- the shared memory, offset 0 ---- */
#define HYD_SHM_MAGIC 0x53445948u     /* "HYDS" */
#define HYD_SHM_HDR_BYTES 4096u       /* header page: this struct and both ring control blocks */
#define HYD_SHM_REQ_CTL 256u
#define HYD_SHM_EVT_CTL 512u
/* The daemon cannot sleep on a futex (epoll backend): after ringing a bell that was armed the
 * client also writes one byte to the socket. */
#define HYD_SHM_F_KICK 0x1u

struct hyd_shm_hdr {
	uint32_t magic;
	uint32_t version;
	uint64_t size;           /* bytes of the whole mapping */
	uint32_t flags;
	uint32_t _pad0;
	uint64_t conn_id;
	uint64_t req_ctl;        /* offsets from the start of the mapping */
	uint64_t req_data;
	uint32_t req_size;
	uint32_t _pad1;
	uint64_t evt_ctl;
	uint64_t evt_data;
	uint32_t evt_size;
	uint32_t _pad2;
	uint8_t _reserved[48];
};
_Static_assert(sizeof(struct hyd_shm_hdr) == 128, "shm header size");
_Static_assert(offsetof(struct hyd_shm_hdr, req_ctl) == 32 && offsetof(struct hyd_shm_hdr, evt_ctl) == 56,
	       "shm header layout");
_Static_assert(HYD_SHM_REQ_CTL >= sizeof(struct hyd_shm_hdr) &&
		       HYD_SHM_EVT_CTL >= HYD_SHM_REQ_CTL + sizeof(struct hyd_ring_ctl) &&
		       HYD_SHM_EVT_CTL + sizeof(struct hyd_ring_ctl) <= HYD_SHM_HDR_BYTES,
	       "control blocks fit in the header page");

/* ---- request payloads ---- */
struct hyd_wire_create {
	uint32_t flags;
	uint32_t max_ctx;        /* 0: the daemon's default */
	char name[HYD_PROTO_NAME_MAX]; /* NUL-terminated; empty: unnamed */
};
_Static_assert(sizeof(struct hyd_wire_create) == 72, "create size");

struct hyd_wire_open {
	uint64_t session;        /* nonzero: by id; 0: by name */
	char name[HYD_PROTO_NAME_MAX];
};
_Static_assert(sizeof(struct hyd_wire_open) == 72, "open size");

struct hyd_wire_session {
	uint64_t session;
};

struct hyd_wire_append {
	uint64_t session;
	uint32_t flags;          /* HYD_APPEND_* (client.h) */
	uint32_t count;          /* text: bytes; tokens: int32 entries */
};
_Static_assert(sizeof(struct hyd_wire_append) == 16, "append size");

struct hyd_wire_sampling {
	float temperature;
	float top_p;
	float min_p;
	float repeat_penalty;
	int32_t top_k;
	int32_t repeat_last_n;
	uint32_t max_tokens;
	uint32_t flags;
	uint64_t seed;
	uint32_t n_stop;         /* stop strings that follow: each u16 length + bytes, unpadded */
	uint32_t stop_bytes;     /* their total size */
};
_Static_assert(sizeof(struct hyd_wire_sampling) == 48, "sampling size");

struct hyd_wire_generate {
	uint64_t session;
	struct hyd_wire_sampling s;
};
_Static_assert(sizeof(struct hyd_wire_generate) == 56, "generate size");

struct hyd_wire_cancel {
	uint64_t target;         /* id of the request to cancel */
};

struct hyd_wire_truncate {
	uint64_t session;
	uint32_t n_tokens;       /* keep this many */
	uint32_t _pad;
};
_Static_assert(sizeof(struct hyd_wire_truncate) == 16, "truncate size");

struct hyd_wire_path {
	uint64_t session;        /* SNAPSHOT: the session; RESTORE: ignored */
	uint32_t path_len;       /* bytes of path that follow, no NUL */
	uint32_t _pad;
	char name[HYD_PROTO_NAME_MAX]; /* RESTORE: name of the restored session */
};
_Static_assert(sizeof(struct hyd_wire_path) == 80, "path size");

/* ---- event payloads ---- */
struct hyd_wire_token {
	int32_t token;
	uint32_t text_len;       /* bytes of text that follow (may split a UTF-8 sequence) */
};
_Static_assert(sizeof(struct hyd_wire_token) == 8, "token size");

struct hyd_wire_done {
	uint32_t reason;         /* HYD_DONE_* */
	int32_t status;          /* 0 or negative errno when reason is HYD_DONE_ERROR */
	uint32_t n_prompt;       /* tokens evaluated before the first sampled one */
	uint32_t n_generated;
	uint64_t prompt_ns;
	uint64_t gen_ns;
};
_Static_assert(sizeof(struct hyd_wire_done) == 32, "done size");

struct hyd_wire_error {
	int32_t err;             /* negative errno */
	uint32_t msg_len;        /* bytes of message that follow, no NUL */
};
_Static_assert(sizeof(struct hyd_wire_error) == 8, "error size");

#define HYD_WIRE_N_KIND_BYTES 4  /* attention, sliding window, recurrent, other */
struct hyd_wire_session_info {
	uint64_t session;
	uint32_t n_tokens;
	uint32_t max_ctx;
	uint64_t bytes;
	uint32_t uid;
	uint32_t flags;
	uint64_t created_ns;     /* CLOCK_REALTIME */
	char name[HYD_PROTO_NAME_MAX];
	uint64_t kind_bytes[HYD_WIRE_N_KIND_BYTES];
};
_Static_assert(sizeof(struct hyd_wire_session_info) == 136, "session info size");

struct hyd_wire_kind_mem {
	char kind[16];
	uint64_t bytes;
	uint64_t tokens;
};
_Static_assert(sizeof(struct hyd_wire_kind_mem) == 32, "kind mem size");

#define HYD_WIRE_MAX_KINDS 8
struct hyd_wire_status {
	uint32_t n_sessions;
	uint32_t n_clients;
	uint32_t n_kinds;
	uint32_t _pad;
	uint64_t uptime_ns;
	uint64_t mem_total;
	uint64_t mem_limit;
	double prompt_tok_s;
	double gen_tok_s;
	char model[64];
	char arch[32];
	char backend[16];
	struct hyd_wire_kind_mem kinds[HYD_WIRE_MAX_KINDS];
};
_Static_assert(sizeof(struct hyd_wire_status) == 424, "status size");

struct hyd_wire_ok {
	int32_t status;
	uint32_t _pad;
	uint64_t value;          /* LIST: number of items; otherwise 0 */
};
_Static_assert(sizeof(struct hyd_wire_ok) == 16, "ok size");

struct hyd_wire_tokens {
	uint32_t n;
	uint32_t _pad;
};

/* Check a joined request (type, flags without CONT, payload of len bytes, in private memory).
 * 0, -EBADMSG (lengths or strings inconsistent), -EPROTO (unknown type or flags, zero id). */
int hyd__proto_check_request(uint16_t type, uint16_t flags, uint64_t id, const void *payload, uint32_t len);
/* The same for events, used by the client. */
int hyd__proto_check_event(uint16_t type, uint16_t flags, const void *payload, uint32_t len);

/* Iterate over a checked request's stop strings (off starts at 0): 1 with the string and its length, or 0 at
 * the end. */
int hyd__proto_next_stop(const struct hyd_wire_generate *g, uint32_t len, uint32_t *off, const char **ret_s,
			 uint32_t *ret_len);

const char *hyd__proto_type_name(uint16_t type);

#endif
