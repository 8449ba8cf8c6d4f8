/* A loaded model: the GGUF mapping, its tokenizer, the plan (daemon/arch.h) with every mixer
 * layer bound to its plugin, and the runner that evaluates tokens for one or more sessions.
 *
 * Session state is NOT owned here: callers describe each session's per-layer state with a
 * struct hyd_seq_view (pointers into shared memory for the daemon, heap for `hyd run`), and
 * commit after each successful forward step (pos += n; state_index ^= 1), which is what makes
 * a step atomic with respect to crashes (see include/hyd/plugin.h, HYD_STATE_DOUBLE_BUFFERED). */
#ifndef HYD_DAEMON_MODEL_H
#define HYD_DAEMON_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hyd/plugin.h"

struct hyd_model;
struct hyd_tokenizer;
struct hyd_gguf;

struct hyd_model_opts {
	uint32_t n_threads;    /* 0: hyd_default_threads() */
	uint32_t max_ctx;      /* tokens per session; 0: the model's training context, capped at 32768 */
	uint32_t max_chunk;    /* rows of one session per forward step; 0: 256 */
	uint32_t page_tokens;  /* tokens per KV page; 0: 64 */
	const char *plugin_path; /* colon-separated dirs; NULL: $HYD_PLUGIN_PATH, then the install dir */
	bool verbose;          /* print the plan (layer kinds, state bytes) to stderr at load */
};

int hyd_model_load(const char *path, const struct hyd_model_opts *opts, struct hyd_model **ret_model,
		   char *err, size_t errlen);
void hyd_model_free(struct hyd_model *m); /* accepts NULL */

const struct hyd_tokenizer *hyd_model_tokenizer(const struct hyd_model *m);
const struct hyd_gguf *hyd_model_gguf(const struct hyd_model *m);
const char *hyd_model_arch(const struct hyd_model *m);
uint32_t hyd_model_n_vocab(const struct hyd_model *m);
uint32_t hyd_model_n_layer(const struct hyd_model *m);
const struct hyd_state_limits *hyd_model_limits(const struct hyd_model *m);
/* 32-byte identity of the model file (hash of its metadata and tensor table): sessions record
 * it so state is never reused with another model. */
void hyd_model_fingerprint(const struct hyd_model *m, uint8_t ret_fp[32]);

/* Layer i's mixer kind ("attn", "swa", "mamba1", "mamba2") and per-session state layout. */
const char *hyd_model_layer_kind(const struct hyd_model *m, uint32_t i);
const struct hyd_state_layout *hyd_model_layer_layout(const struct hyd_model *m, uint32_t i);
/* The same computed for other limits without loading weights: used by the memory tables. */
int hyd_model_layer_layout_for(const struct hyd_model *m, uint32_t i, const struct hyd_state_limits *lim,
			       struct hyd_state_layout *ret);
/* Initialise a session's fixed regions (all layers, both copies). */
void hyd_model_state_init(const struct hyd_model *m, void *const *fixed /* [n_layer] */);

/* One session's state as the runner sees it. */
struct hyd_layer_state {
	void *fixed;          /* layout.fixed_bytes */
	void *const *pages;   /* page table (layout.page_bytes each), NULL if the layer has no pages */
	uint32_t n_pages;
	uint32_t _pad;
};
struct hyd_seq_view {
	struct hyd_layer_state *layers; /* [n_layer] */
	uint32_t pos;          /* committed tokens */
	uint32_t state_index;  /* current copy of double-buffered state */
	uint32_t flags;        /* HYD_SEQ_* for the plugins: HYD_SEQ_STATE_IN_PLACE, or 0 */
};

/* Evaluate one step: for each of n_seqs sessions, n_tokens[s] (1..max_chunk) tokens starting at
 * its committed position.  Writes logits [n_vocab] for the last token of each session into
 * logits + s*n_vocab, or, with all_logits, for every token (rows in order of sessions, then
 * tokens).  Does NOT commit: on success the caller sets pos += n and flips state_index (not
 * with HYD_SEQ_STATE_IN_PLACE, whose steps rewrite the current copy).
 * Paged layers need n_pages covering pos + n.  -E2BIG (chunk or context too long), -EINVAL
 * (token out of range), -ENOMEM. */
int hyd_model_step(struct hyd_model *m, struct hyd_seq_view *const *seqs, const int32_t *const *tokens,
		   const uint32_t *n_tokens, uint32_t n_seqs, float *logits, bool all_logits);

#endif
