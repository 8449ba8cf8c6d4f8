/* Shared between daemon/session*.c only. */
#ifndef HYD_DAEMON_SESSION_INTERNAL_H
#define HYD_DAEMON_SESSION_INTERNAL_H

#include <stdint.h>

#include "daemon/session.h"
#include "daemon/session_format.h"

struct hyd__sess_store {
	int dirfd;
	uint32_t n_layer;
	uint32_t max_ctx;
	uint8_t fingerprint[32];
	char (*kinds)[HYD_SESS_KIND_LEN];        /* [n_layer] */
	struct hyd_state_layout *layouts;        /* [n_layer] */
	uint32_t *kind_of;                       /* [n_layer] index into kind_names */
	uint32_t n_kinds;
	char kind_names[HYD_SESSION_MAX_KINDS][HYD_SESS_KIND_LEN];
	void (*state_init)(void *ctx, void *const *fixed);
	void *state_init_ctx;
	uint64_t memory_limit;
	uint64_t bytes_in_use;
	struct hyd__sess *sessions;            /* attached, doubly linked */
};

struct hyd__sess {
	struct hyd__sess_store *st;
	struct hyd__sess *prev, *next;
	char id[HYD_SESSION_ID_LEN + 1];
	int fd;
	uint8_t *base;                 /* the shared mapping of the whole file */
	uint64_t size;
	struct hyd_sess_hdr *hdr;      /* in the mapping: written, never trusted */
	struct hyd_sess_layer *map_layers;
	int32_t *tokens;               /* in the mapping */
	/* Private copies of what was validated at attach; authoritative while attached. */
	struct hyd_sess_hdr h;
	struct hyd_sess_layer *layers; /* [n_layer] */
	uint32_t pos, state_index;
	uint64_t bytes;                /* counted in st->bytes_in_use */
	struct hyd_layer_state *ls;    /* [n_layer] */
	void **page_ptrs;              /* every paged layer's slot addresses, back to back */
	void **fixed_ptrs;             /* [n_layer] */
	struct hyd_seq_view view;
};

/* What a header is checked against.  NULL / HYD_SESSION_ANY_UID skip a check. */
struct hyd__sess_expect {
	const uint8_t *fingerprint;
	uint32_t uid;
	uint32_t n_layer;
	const char (*kinds)[HYD_SESS_KIND_LEN];
	const struct hyd_state_layout *layouts;
};

/* Validate an untrusted header copied to private memory, against the size of its file.
 * -EBADMSG (malformed or foreign; err says why) or -EACCES (another owner). */
int hyd__sess_validate_hdr(const struct hyd_sess_hdr *h, uint64_t file_size, const struct hyd__sess_expect *ex,
			   char *err, size_t errlen);
/* Then the layer table (h->n_layer entries, private copy). */
int hyd__sess_validate_layers(const struct hyd_sess_hdr *h, const struct hyd_sess_layer *layers,
			      const struct hyd__sess_expect *ex, char *err, size_t errlen);

/* Read and validate the header and layer table of an open file.  On success *ret_layers is a
 * hyd_malloc'd copy of the table. */
int hyd__sess_read(int fd, uint64_t file_size, const struct hyd__sess_expect *ex, struct hyd_sess_hdr *ret_hdr,
		   struct hyd_sess_layer **ret_layers, char *err, size_t errlen);
void hyd__sess_expect_store(const struct hyd__sess_store *st, uint32_t uid, struct hyd__sess_expect *ret);

/* Create the file for a new session under a temporary name in the state directory, fill it with
 * fill(), publish it under a fresh id and attach it. */
int hyd__sess_publish(struct hyd__sess_store *st, uint64_t size, uint64_t dense_bytes,
		      int (*fill)(void *ctx, int fd), void *ctx, struct hyd__sess **ret_session);

/* Write a whole session image to fd (sized and filled; header written last).  src_fd holds the
 * validated image described by h and layers. */
int hyd__sess_copy_image(int src_fd, const struct hyd_sess_hdr *h, const struct hyd_sess_layer *layers, int dst_fd);

int hyd__sess_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
int hyd__sess_pread_all(int fd, void *buf, size_t len, uint64_t off);

#endif
