/* Session store: per-session model state in files under a state directory, mapped shared, so a
 * session survives a crash or restart of the daemon (see docs/SESSIONS.md for the file layout
 * and the commit protocol).
 *
 * A store serves one model: sessions are created with its per-layer state layouts and only
 * sessions whose fingerprint and layouts match it attach.  The API knows layouts only as plain
 * arrays (struct hyd_state_layout), not the model itself.  A store and its sessions are used
 * from one thread at a time (the daemon's loop); nothing here locks except the per-file flock()
 * that keeps two processes from attaching the same session.
 *
 * Errors: negative errno.  Those common to most calls: -ENOMEM (private allocation), -EIO or
 * the errno of a failed system call. */
#ifndef HYD_DAEMON_SESSION_H
#define HYD_DAEMON_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/model.h"
#include "hyd/plugin.h"

struct hyd__sess_store;
struct hyd__sess;

#define HYD_SESSION_ID_LEN 32     /* hex digits of a session id (128 random bits) */
#define HYD_SESSION_KIND_LEN 16
#define HYD_SESSION_LABEL_LEN 64
#define HYD_SESSION_MAX_KINDS 8   /* distinct layer kinds one model may have */
#define HYD_SESSION_ANY_UID UINT32_MAX

/* The model the store serves. */
struct hyd__sess_model {
	uint8_t fingerprint[32];
	uint32_t n_layer;
	uint32_t max_ctx;                        /* token history capacity of new sessions */
	const char *const *kinds;                /* [n_layer] "attn", "swa", "mamba2" ... */
	const struct hyd_state_layout *layouts;  /* [n_layer] */
	/* Put the fixed regions of all layers (both copies) into their empty state, e.g. a wrapper
	 * of hyd_model_state_init().  NULL: the regions are zero-filled. */
	void (*state_init)(void *ctx, void *const *fixed /* [n_layer] */);
	void *state_init_ctx;
};

struct hyd__sess_store_opts {
	const char *dir;        /* state directory; missing components are created 0700 */
	uint64_t memory_limit;  /* bytes over all attached sessions, 0: no limit */
};

/* -EINVAL (bad model description, more than HYD_SESSION_MAX_KINDS kinds), -EPERM (the
 * directory is not owned by us or is writable by others), errors of mkdir/open. */
int hyd__sess_store_open(const struct hyd__sess_store_opts *opts, const struct hyd__sess_model *model,
			   struct hyd__sess_store **ret_store, char *err, size_t errlen);
/* Detaches every session still attached. Accepts NULL. */
void hyd__sess_store_close(struct hyd__sess_store *st);
/* $XDG_RUNTIME_DIR/hyd/sessions, or /run/hyd/sessions for root.  -ENOENT if neither applies,
 * -ENAMETOOLONG. */
int hyd__sess_default_dir(char *buf, size_t len);

/* Bytes a session of this model needs to hold n_tokens tokens: header, token history, fixed
 * regions and the pages that n_tokens take.  For admission control. */
uint64_t hyd__sess_bytes_for(const struct hyd__sess_model *model, uint32_t n_tokens);

/* A new, empty session owned by uid.  label may be NULL.  -ENOSPC (memory limit or the file
 * system is full). */
int hyd__sess_create(struct hyd__sess_store *st, uint32_t uid, const char *label,
		       struct hyd__sess **ret_session);
/* Attach an existing session by id, after validating its header (untrusted) against the
 * store's model and uid (HYD_SESSION_ANY_UID: any owner).  On failure err says why.
 * -EINVAL (not a valid id), -ENOENT, -EBADMSG (invalid or foreign file; see err), -EACCES
 * (owned by another uid), -EBUSY (attached elsewhere). */
int hyd__sess_attach(struct hyd__sess_store *st, const char *id, uint32_t uid,
		       struct hyd__sess **ret_session, char *err, size_t errlen);
/* Unmap and close; the file stays.  Accepts NULL. */
void hyd__sess_detach(struct hyd__sess *s);
/* Unlink the session's file and detach. */
int hyd__sess_delete(struct hyd__sess *s);
/* Unlink a session file that is not attached here (valid or not). -EINVAL (not a name this
 * store would list), -ENOENT, -EBUSY (attached). */
int hyd__sess_remove(struct hyd__sess_store *st, const char *name);

const char *hyd__sess_id(const struct hyd__sess *s);
uint32_t hyd__sess_owner(const struct hyd__sess *s);
uint32_t hyd__sess_pos(const struct hyd__sess *s);          /* committed tokens */
uint32_t hyd__sess_state_index(const struct hyd__sess *s);
uint32_t hyd__sess_max_ctx(const struct hyd__sess *s);
int64_t hyd__sess_created(const struct hyd__sess *s);
const char *hyd__sess_label(const struct hyd__sess *s);
/* Token history [max_ctx]: [0, pos) is committed; see hyd__sess_replay_to(). */
const int32_t *hyd__sess_tokens(const struct hyd__sess *s);
/* The runner's view of the session (pointers valid until detach).  pos, state_index and the
 * page counts follow commit, ensure_capacity and truncate. */
struct hyd_seq_view *hyd__sess_view(struct hyd__sess *s);

/* Make paged layers hold pages for n_tokens tokens (call before a step with pos + n).
 * Earlier pages are untouched.  -E2BIG (n_tokens > max_ctx), -ENOSPC (memory limit, or the
 * file system is full). */
int hyd__sess_ensure_capacity(struct hyd__sess *s, uint32_t n_tokens);
/* After a successful step of n tokens: append them to the history and publish pos += n,
 * state_index ^= 1 in one release store.  -EINVAL (n == 0, or pages do not cover the new
 * position), -E2BIG (past max_ctx). */
int hyd__sess_commit(struct hyd__sess *s, uint32_t n, const int32_t *tokens);
/* Roll back to the first n tokens.  Returns 0 when done (only paged layers: their pages past
 * n are dropped).  Returns 1 when the model has constant-size layers (SSM, SWA ring): their
 * state cannot be rolled back, so the session is reset to pos 0 with freshly initialised fixed
 * regions and the caller must replay history tokens [0, n) (hyd__sess_replay_to() == n
 * until then, also across a crash).  -ERANGE (n > pos). */
int hyd__sess_truncate(struct hyd__sess *s, uint32_t n);
/* Back to an empty session: pos 0, no pages, fixed regions initialised, no replay pending. */
int hyd__sess_reset(struct hyd__sess *s);
/* History tokens [0, replay_to) are valid; > pos while a replay after truncate is pending. */
uint32_t hyd__sess_replay_to(const struct hyd__sess *s);

/* Pending tokens: history tokens [pos, replay_to) are recorded but not yet evaluated (the
 * same mechanism as a replay after truncate).  The daemon keeps the last token of a session
 * pending so that a generation, also one after a restart, starts by evaluating it and gets the
 * logits it needs from the committed state (docs/SESSIONS.md).  push appends n tokens after
 * hyd__sess_replay_to(); -E2BIG past max_ctx.  set_pending_end drops pending tokens from
 * end on (pos <= end <= replay_to, else -ERANGE). */
int hyd__sess_push_pending(struct hyd__sess *s, const int32_t *tokens, uint32_t n);
int hyd__sess_set_pending_end(struct hyd__sess *s, uint32_t end);

/* Generation state: the sampler's random stream, kept with the session so that a sampled
 * generation continued after a crash (or in several requests) draws exactly what one
 * uninterrupted generation would (docs/SESSIONS.md).  gen_save stores rng, the state after
 * sampling a token, for seed and the length the session will have once that token is
 * recorded (hyd__sess_replay_to() + 1): call it before hyd__sess_push_pending() of the token,
 * so that it is in place before the commit.  Crash-consistent (double-buffered by length).
 * -E2BIG when the token has no place.  gen_load: true with the stored state when the stored
 * seed is seed and the state was saved at the session's current length.  gen_clear forgets
 * it (the history was changed by other means); truncate, reset and dropping pending tokens
 * clear it too. */
int hyd__sess_gen_save(struct hyd__sess *s, uint64_t seed, const uint64_t rng[4]);
bool hyd__sess_gen_load(const struct hyd__sess *s, uint64_t seed, uint64_t ret_rng[4]);
void hyd__sess_gen_clear(struct hyd__sess *s);

/* A new session (owned by uid) with a copy of src's state, history and pages.  Pages are
 * copied, not shared. */
int hyd__sess_fork(struct hyd__sess_store *st, const struct hyd__sess *src, uint32_t uid,
		     const char *label, struct hyd__sess **ret_session);
/* Write the session to path atomically and durably (temp file in the same directory, fsync,
 * rename, fsync of the directory).  The file is mode 0600. */
int hyd__sess_snapshot(const struct hyd__sess *s, const char *path);
/* A new session from a snapshot file, validated like an attach (its owner must be uid unless
 * uid is HYD_SESSION_ANY_UID).  label NULL keeps the snapshot's.  Errors as attach. */
int hyd__sess_restore(struct hyd__sess_store *st, const char *path, uint32_t uid, const char *label,
			struct hyd__sess **ret_session, char *err, size_t errlen);

/* One entry of the state directory. */
struct hyd__sess_info {
	char name[256];         /* file name; the id for a valid session */
	bool valid;
	bool attached;          /* attached by this store */
	char reason[160];       /* why not valid */
	uint32_t owner_uid;     /* valid only */
	uint32_t pos;
	uint32_t max_ctx;
	int64_t created;
	char label[HYD_SESSION_LABEL_LEN];
	uint64_t file_bytes;    /* bytes the file occupies */
};
/* Calls cb for every entry of the state directory; invalid files are reported, never skipped
 * or removed.  Stops early (returning it) when cb returns non-zero. */
int hyd__sess_list(struct hyd__sess_store *st, int (*cb)(void *ctx, const struct hyd__sess_info *info),
		     void *ctx);

/* Memory accounting: the state of one layer kind. */
struct hyd__sess_kind_usage {
	char kind[HYD_SESSION_KIND_LEN];
	uint32_t n_layers;      /* layers of this kind (per session) */
	uint32_t _pad;
	uint64_t fixed_bytes;   /* fixed regions */
	uint64_t page_bytes;    /* allocated pages */
	uint64_t n_pages;
};
struct hyd__sess_usage {
	uint32_t n_sessions;
	uint32_t n_kinds;
	uint64_t tokens;        /* committed tokens */
	uint64_t header_bytes;  /* header, layer table and token history */
	uint64_t total_bytes;   /* header + fixed + pages of every kind */
	struct hyd__sess_kind_usage kinds[HYD_SESSION_MAX_KINDS];
};
void hyd__sess_usage(const struct hyd__sess *s, struct hyd__sess_usage *ret_usage);
/* Summed over the sessions attached to the store. */
void hyd__sess_store_usage(const struct hyd__sess_store *st, struct hyd__sess_usage *ret_usage);

#endif
