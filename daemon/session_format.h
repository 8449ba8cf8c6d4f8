/* On-file layout of a session (and of a session snapshot: the same format).  See
 * docs/SESSIONS.md.  Everything here is shared with other processes and with future daemon
 * runs, so it is fixed-width, explicitly padded, little-endian (the host's; x86-64/aarch64) and
 * position-independent: offsets from the start of the file, never pointers.
 *
 *   0                      struct hyd_sess_hdr (256 bytes)
 *   256                    struct hyd_sess_layer [n_layer] (64 bytes each)
 *   tokens_off             int32_t history [max_ctx]
 *   (aligned 4096)         per-layer fixed regions, each aligned to 64 bytes
 *   (aligned 4096)         per-layer page areas: max_pages slots of page_stride bytes, each
 *                          area aligned to 4096; only slots [0, n_pages) are backed
 *   size                   end of file
 *
 * The file is created at its final size (sparse), so the mapping never moves; page slots are
 * backed with fallocate() when allocated and released with FALLOC_FL_PUNCH_HOLE. */
#ifndef HYD_DAEMON_SESSION_FORMAT_H
#define HYD_DAEMON_SESSION_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define HYD_SESS_MAGIC "HYDSESS\0"
#define HYD_SESS_VERSION 2u /* 2: generation state (gen_seed, gen[]) in the header */
#define HYD_SESS_KIND_LEN 16
#define HYD_SESS_LABEL_LEN 64

/* Limits the validator enforces on untrusted headers. */
#define HYD_SESS_MAX_LAYERS 4096u
#define HYD_SESS_MAX_CTX (1u << 24)
#define HYD_SESS_MAX_FILE (UINT64_C(1) << 46)

/* hdr.flags */
#define HYD_SESS_F_NEEDS_INIT 1u  /* fixed regions must be (re)initialised before use */
#define HYD_SESS_F_KNOWN HYD_SESS_F_NEEDS_INIT

#define HYD_SESS_FIXED_ALIGN 64u
#define HYD_SESS_AREA_ALIGN 4096u

/* hdr.commit packs the committed token count (low 32 bits) and the current copy of
 * double-buffered state (bit 32) so that one release store publishes both. */
#define HYD_SESS_COMMIT(pos, si) ((uint64_t)(pos) | ((uint64_t)((si) & 1u) << 32))
#define HYD_SESS_COMMIT_POS(c) ((uint32_t)(c))
#define HYD_SESS_COMMIT_SI(c) ((uint32_t)((c) >> 32))

/* The sampler's random state after a sampled token was recorded, so that a generation
 * continued after a crash draws from the same stream (docs/SESSIONS.md).  Double-buffered: the
 * slot n_tokens & 1 is written, so the slot of the session's current length is never torn.
 * n_tokens is stored last (release); 0: empty. */
struct hyd_sess_gen {
	uint32_t n_tokens;         /* the session's length (replay_to) once the token was recorded */
	uint32_t rng[8];           /* struct hyd_rng, 4 x u64 as host-order 32-bit halves */
};

struct hyd_sess_hdr {
	uint8_t magic[8];          /* HYD_SESS_MAGIC */
	uint32_t version;          /* HYD_SESS_VERSION */
	uint32_t hdr_bytes;        /* sizeof(struct hyd_sess_hdr) */
	uint64_t size;             /* file size in bytes */
	uint8_t fingerprint[32];   /* the model's identity (hyd_model_fingerprint) */
	uint32_t owner_uid;
	uint32_t n_layer;
	uint64_t commit;           /* HYD_SESS_COMMIT(pos, state_index), written last */
	uint32_t max_ctx;          /* token history capacity */
	uint32_t flags;            /* HYD_SESS_F_* */
	uint64_t layers_off;       /* struct hyd_sess_layer [n_layer] */
	uint64_t tokens_off;       /* int32_t [max_ctx] */
	int64_t created;           /* unix time, seconds */
	uint32_t replay_to;        /* history tokens [0, replay_to) are valid for a replay */
	uint32_t _pad0;
	char label[HYD_SESS_LABEL_LEN]; /* NUL-terminated */
	uint64_t gen_seed;         /* the seed whose random stream gen[] continues */
	struct hyd_sess_gen gen[2];
};

struct hyd_sess_layer {
	char kind[HYD_SESS_KIND_LEN]; /* NUL-terminated mixer kind: "attn", "swa", "mamba2" ... */
	uint64_t fixed_off;
	uint64_t fixed_bytes;
	uint64_t page_bytes;       /* 0: the layer has no pages */
	uint64_t pages_off;        /* page slot k is at pages_off + k * page_stride */
	uint32_t page_tokens;
	uint32_t flags;            /* struct hyd_state_layout.flags */
	uint32_t max_pages;        /* ceil(max_ctx / page_tokens) */
	uint32_t n_pages;          /* slots [0, n_pages) are allocated */
};

_Static_assert(sizeof(struct hyd_sess_hdr) == 256, "session header is 256 bytes");
_Static_assert(offsetof(struct hyd_sess_hdr, size) == 16, "hdr.size offset");
_Static_assert(offsetof(struct hyd_sess_hdr, fingerprint) == 24, "hdr.fingerprint offset");
_Static_assert(offsetof(struct hyd_sess_hdr, commit) == 64, "hdr.commit offset");
_Static_assert(offsetof(struct hyd_sess_hdr, commit) % 8 == 0, "hdr.commit must be 8-aligned for atomics");
_Static_assert(offsetof(struct hyd_sess_hdr, layers_off) == 80, "hdr.layers_off offset");
_Static_assert(offsetof(struct hyd_sess_hdr, created) == 96, "hdr.created offset");
_Static_assert(offsetof(struct hyd_sess_hdr, label) == 112, "hdr.label offset");
_Static_assert(offsetof(struct hyd_sess_hdr, gen_seed) == 176, "hdr.gen_seed offset");
_Static_assert(offsetof(struct hyd_sess_hdr, gen) == 184, "hdr.gen offset");
_Static_assert(sizeof(struct hyd_sess_gen) == 36, "generation slot is 36 bytes");
_Static_assert(sizeof(struct hyd_sess_layer) == 64, "session layer entry is 64 bytes");
_Static_assert(offsetof(struct hyd_sess_layer, fixed_off) == 16, "layer.fixed_off offset");
_Static_assert(offsetof(struct hyd_sess_layer, page_tokens) == 48, "layer.page_tokens offset");
_Static_assert(offsetof(struct hyd_sess_layer, n_pages) == 60, "layer.n_pages offset");

/* Distance between page slots: page_bytes rounded up to 64 so every page is cache-line (and
 * SIMD) aligned. */
static inline uint64_t hyd__sess_page_stride(uint64_t page_bytes)
{
	return (page_bytes + 63) & ~UINT64_C(63);
}

#endif
