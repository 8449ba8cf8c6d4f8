/* hyd — layer-plugin ABI.
 *
 * A plugin is a shared object that exports exactly one symbol, hyd_plugin_entry, returning a
 * NULL-terminated array of mixer factories.  A mixer is a layer that holds per-session state
 * (attention, sliding-window attention, SSM ...).  The daemon owns all session state: it asks
 * a bound layer how much it needs (state_layout), places it (shared memory), and passes
 * pointers to forward().  Plugins never allocate session state and never log directly.
 *
 * Versioning: every struct below that crosses the boundary starts with (or carries)
 * struct_size; a factory also starts with abi_version.  Members are only ever appended.  The
 * loader checks abi_version == HYD_PLUGIN_ABI_VERSION and struct_size >= the size it knows
 * before calling anything.
 *
 * Conventions: functions return 0 (or a positive value) on success and a negative errno on
 * failure; ret_* out-parameters are written only on success.
 */
#ifndef HYD_PLUGIN_H
#define HYD_PLUGIN_H

#include <stdarg.h>
#include <stdint.h>

#include "hyd/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2: struct hyd_mixer_seq's last word became flags (HYD_SEQ_STATE_IN_PLACE); a version-1
 * plugin would ignore it and write the copy the host does not read. */
#define HYD_PLUGIN_ABI_VERSION 2u
#define HYD_PLUGIN_ENTRY "hyd_plugin_entry"

enum hyd_log_level {
	HYD_LOG_ERROR = 0,
	HYD_LOG_WARN = 1,
	HYD_LOG_INFO = 2,
	HYD_LOG_DEBUG = 3,
};

/* Work sharing provided by the host: run(ctx, n_tasks, fn, arg) calls fn(arg, task, thread)
 * for every task in [0, n_tasks) on up to n_threads threads and returns when all are done.
 * thread is in [0, n_threads) and identifies the calling worker (for per-thread scratch). */
typedef void (*hyd_task_fn)(void *arg, uint32_t task, uint32_t thread);
struct hyd_parallel {
	uint32_t n_threads;
	uint32_t _pad;
	void (*run)(void *ctx, uint32_t n_tasks, hyd_task_fn fn, void *arg);
	void *ctx;
};

/* What the host gives a plugin at bind time. */
struct hyd_plugin_support {
	uint32_t abi_version;
	uint32_t struct_size;
	void (*log)(void *ctx, enum hyd_log_level level, const char *fmt, va_list ap);
	void *log_ctx;
};

enum hyd_rope_type {
	HYD_ROPE_NONE = 0, /* no positional encoding (e.g. Jamba's attention layers) */
	HYD_ROPE_NORM = 1, /* rotate interleaved pairs (x[2i], x[2i+1]): llama-style GGUFs */
	HYD_ROPE_NEOX = 2, /* rotate halves (x[i], x[i + n_rot/2]): gemma, granite, ... */
};

/* Hyper-parameters of one mixer layer, already resolved from GGUF metadata by the host. */
struct hyd_mixer_hparams {
	uint32_t struct_size;
	uint32_t layer;      /* index of the block in the model */
	uint32_t n_embd;     /* width of the rows forward() reads and writes */
	uint32_t n_ctx_train;
	/* attention (attn, swa) */
	uint32_t n_head;
	uint32_t n_head_kv;
	uint32_t head_dim_k;
	uint32_t head_dim_v;
	uint32_t rope_type;  /* enum hyd_rope_type */
	uint32_t n_rot;      /* rotated dimensions per head (<= head_dim_k) */
	uint32_t window;     /* swa: a query sees itself and the window-1 tokens before it */
	uint32_t flags;      /* reserved, 0 */
	float rope_freq_base;
	float rope_freq_scale; /* position multiplier (1 / linear scaling factor) */
	float attn_scale;      /* q.k multiplier; 0 means 1/sqrt(head_dim_k) */
	float attn_softcap;    /* tanh soft-capping of attention logits; 0 = none */
	float norm_eps;        /* RMSNorm epsilon for norms inside the mixer (q/k norm, ssm norm) */
	/* state-space (mamba1, mamba2) */
	uint32_t ssm_d_conv;
	uint32_t ssm_d_inner;
	uint32_t ssm_d_state;
	uint32_t ssm_dt_rank; /* mamba1: rank of dt projection; mamba2: number of heads */
	uint32_t ssm_n_group; /* mamba2: groups sharing B and C */
	uint32_t _pad;
};

/* A layer as the host describes it to bind(). */
struct hyd_layer_desc {
	uint32_t struct_size;
	uint32_t _pad;
	const struct hyd_mixer_hparams *hp;
	/* This layer's tensor whose name is "blk.<layer>.<suffix>", or NULL if the file has none. */
	const struct hyd_tensor *(*tensor)(const struct hyd_layer_desc *d, const char *suffix);
	void *ctx; /* host's */
};

/* Limits a session's state is sized for. */
struct hyd_state_limits {
	uint32_t struct_size;
	uint32_t max_ctx;     /* most tokens a session may hold */
	uint32_t max_chunk;   /* most rows of one session in one forward() call */
	uint32_t page_tokens; /* tokens per page for paged state */
};

/* Per-session state of one layer: a fixed region (fixed_bytes, placed once) plus, for state
 * that grows with the context, pages of page_bytes each holding page_tokens tokens.  State must
 * be position-independent (no pointers inside): it lives in shared memory and is mapped at
 * different addresses across restarts and processes. */
struct hyd_state_layout {
	uint64_t fixed_bytes;
	uint64_t page_bytes;  /* 0: no pages */
	uint32_t page_tokens; /* == limits.page_tokens when page_bytes != 0 */
	uint32_t flags;       /* HYD_STATE_* */
};
/* The fixed region holds two copies (each fixed_bytes / 2): forward() reads copy
 * seq.state_index and writes copy state_index ^ 1, and the host flips state_index at commit.
 * A crash in the middle of a step therefore never damages the committed copy. */
#define HYD_STATE_DOUBLE_BUFFERED 1u

/* hyd_mixer_seq.flags.  HYD_SEQ_STATE_IN_PLACE: the host keeps no committed copy of this
 * sequence's double-buffered state (a private sequence that dies with its process, such as
 * `hyd run`'s), so forward() reads and writes copy state_index and the host does not flip
 * it.  Nothing then streams the second copy: granite-4.0-h-350m reads and writes 22 MB of
 * Mamba-2 state per token either way, but in place the written lines are the ones just read
 * (one-thread decode 1.05x, docs/PERFORMANCE.md).  A step that fails part-way leaves such a
 * state unusable; the daemon's sessions never set it. */
#define HYD_SEQ_STATE_IN_PLACE 1u
#define HYD_SEQ_FLAGS_KNOWN HYD_SEQ_STATE_IN_PLACE

/* One session's slice of a batch.  Rows [row0, row0 + n_rows) of x/y belong to it, at
 * positions [pos, pos + n_rows); pos is the number of tokens already committed. */
struct hyd_mixer_seq {
	void *state;          /* fixed region */
	void *const *pages;   /* page i holds positions [i*page_tokens, (i+1)*page_tokens) */
	uint32_t n_pages;     /* >= ceil((pos + n_rows) / page_tokens) for paged layers */
	uint32_t pos;
	uint32_t row0;
	uint32_t n_rows;      /* 1 .. limits.max_chunk */
	uint32_t state_index; /* which copy of a double-buffered state is current (0 or 1) */
	uint32_t flags;       /* HYD_SEQ_*; a plugin refuses bits it does not know (-EINVAL) */
};

struct hyd_mixer_batch {
	uint32_t struct_size;
	uint32_t n_seqs;
	uint32_t n_rows;
	uint32_t _pad;
	const struct hyd_mixer_seq *seqs;
	const struct hyd_state_limits *limits; /* the limits the states were sized with */
	const float *x;       /* [n_rows][n_embd], the normalised block input */
	float *y;             /* [n_rows][n_embd], written: the mixer's output (no residual) */
	void *scratch;        /* scratch_size() bytes, 64-byte aligned, contents undefined */
	uint64_t scratch_bytes;
	const struct hyd_parallel *par;
};

struct hyd_mixer_factory {
	uint32_t abi_version; /* HYD_PLUGIN_ABI_VERSION */
	uint32_t struct_size; /* sizeof(struct hyd_mixer_factory) as the plugin was built */
	const char *kind;     /* "attn", "swa", "mamba1", "mamba2", ... */
	const char *description;

	/* Validate the layer's tensors (names, shapes, types) and hyper-parameters, and build a
	 * layer handle.  -EINVAL (with a log line naming the tensor or field) if they do not fit,
	 * -ENOTSUP for a tensor type the plugin cannot compute with. */
	int (*bind)(const struct hyd_layer_desc *desc, const struct hyd_plugin_support *sup,
		    void **ret_layer);
	void (*unbind)(void *layer); /* accepts NULL */

	/* Bytes of per-session state for these limits. */
	int (*state_layout)(const void *layer, const struct hyd_state_limits *lim,
			    struct hyd_state_layout *ret_layout);
	/* Bytes of scratch forward() needs for a batch of up to max_rows rows, n_threads workers. */
	uint64_t (*scratch_size)(const void *layer, const struct hyd_state_limits *lim,
				 uint32_t max_rows, uint32_t n_threads);
	/* Put a fresh session's fixed region (both copies) in its empty state. */
	void (*state_init)(const void *layer, void *state, const struct hyd_state_limits *lim);
	/* Run the mixer over a batch. Writes y; updates state only at positions >= seq.pos (and
	 * the non-current copy of double-buffered state, or with HYD_SEQ_STATE_IN_PLACE the
	 * current one). */
	int (*forward)(const void *layer, const struct hyd_mixer_batch *batch);
};

/* The one exported symbol. Returns a NULL-terminated array. */
typedef const struct hyd_mixer_factory *const *(*hyd_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif
