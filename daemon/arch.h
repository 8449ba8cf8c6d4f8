/* Architectures: each GGUF general.architecture maps to a model plan — per layer, which mixer
 * (plugin kind) with which hyper-parameters, which norms and which FFN — that the generic
 * block runner (daemon/model.c) executes.  Everything comes from GGUF metadata and tensor
 * shapes; nothing is hard-coded per model size. */
#ifndef HYD_DAEMON_ARCH_H
#define HYD_DAEMON_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hyd/plugin.h"

struct hyd_gguf;

enum hyd_ffn_kind {
	HYD_FFN_NONE = 0,   /* no FFN in this block (mamba, mamba2) */
	HYD_FFN_SWIGLU = 1, /* down(silu(gate(x)) * up(x)) */
	HYD_FFN_GEGLU = 2,  /* down(gelu_tanh(gate(x)) * up(x)) */
	HYD_FFN_MOE = 3,    /* routed experts (softmax top-k), optional shared expert */
};

struct hyd_ffn_plan {
	uint32_t kind; /* enum hyd_ffn_kind */
	uint32_t n_ff;
	const struct hyd_tensor *gate, *up, *down; /* dense: ne {n_embd, n_ff}, ..., {n_ff, n_embd} */
	/* MoE: experts stacked in the third dimension (ne[2] = n_expert) */
	const struct hyd_tensor *gate_inp;          /* router: {n_embd, n_expert} */
	const struct hyd_tensor *gate_exps, *up_exps, *down_exps;
	uint32_t n_expert, n_expert_used;
	bool norm_topk; /* renormalise the chosen experts' weights to sum to 1 (granite), or not (jamba) */
	/* shared expert (granite): dense SwiGLU added to the routed output, NULL if absent */
	const struct hyd_tensor *gate_shexp, *up_shexp, *down_shexp;
};

struct hyd_layer_plan {
	const char *mixer_kind;               /* "attn", "swa", "mamba1", "mamba2" */
	struct hyd_mixer_hparams hp;
	const struct hyd_tensor *mixer_norm;  /* pre-mixer RMSNorm weight (F32), required */
	const struct hyd_tensor *mixer_post_norm; /* RMSNorm on the mixer output (gemma3), or NULL */
	const struct hyd_tensor *ffn_norm;    /* pre-FFN RMSNorm (NULL when ffn.kind == NONE) */
	const struct hyd_tensor *ffn_post_norm; /* RMSNorm on the FFN output (gemma3), or NULL */
	struct hyd_ffn_plan ffn;
};

struct hyd_model_plan {
	char arch[32];
	uint32_t n_layer, n_embd, n_vocab, n_ctx_train;
	float norm_eps;        /* RMSNorm epsilon of the block and output norms */
	float embd_scale;      /* token embeddings are multiplied by this (1 = none) */
	float residual_scale;  /* block outputs are multiplied by this before the residual add */
	float logit_scale;     /* logits are divided by this (granite), 1 = none */
	float final_softcap;   /* tanh soft-cap of the logits, 0 = none */
	const struct hyd_tensor *token_embd;  /* {n_embd, n_vocab} */
	const struct hyd_tensor *output_norm; /* F32 {n_embd} */
	const struct hyd_tensor *output;      /* {n_embd, n_vocab}; == token_embd when tied */
	struct hyd_layer_plan *layers;        /* n_layer entries, hyd_malloc'ed */
};

/* Builds the plan for g's architecture.  -ENOTSUP naming the architecture if hyd does not know
 * it; -EINVAL naming the key or tensor when metadata or shapes are missing or inconsistent. */
int hyd_arch_plan(const struct hyd_gguf *g, struct hyd_model_plan *ret_plan, char *err, size_t errlen);
void hyd_arch_plan_free(struct hyd_model_plan *plan); /* frees layers; accepts zeroed plans */

/* Per-architecture planners (daemon/arch_*.c).  They receive a plan with the generic fields
 * (arch, n_layer, n_embd, n_vocab, norm_eps, token_embd, output_norm, output, layers allocated
 * and zeroed, scales = 1) already filled by hyd_arch_plan, and fill the rest. */
struct hyd_arch_ctx {
	const struct hyd_gguf *g;
	const char *arch; /* key prefix: "llama", "gemma3", ... */
	char *err;
	size_t errlen;
};
/* helpers for planners (daemon/arch.c) */
int hyd__arch_u32(const struct hyd_arch_ctx *c, const char *suffix, uint32_t *ret);  /* "<arch>.<suffix>" */
int hyd__arch_u32_opt(const struct hyd_arch_ctx *c, const char *suffix, uint32_t def, uint32_t *ret);
/* per-layer value of a key that is either a scalar or an array of n_layer entries */
int hyd__arch_u32_layer(const struct hyd_arch_ctx *c, const char *suffix, uint32_t layer, uint32_t def, uint32_t *ret);
int hyd__arch_f32_opt(const struct hyd_arch_ctx *c, const char *suffix, float def, float *ret);
int hyd__arch_bool_opt(const struct hyd_arch_ctx *c, const char *suffix, bool def, bool *ret);
/* "blk.<layer>.<suffix>", NULL if absent; _req sets a message and returns NULL when absent */
const struct hyd_tensor *hyd__arch_tensor(const struct hyd_arch_ctx *c, uint32_t layer, const char *suffix);
const struct hyd_tensor *hyd__arch_tensor_req(const struct hyd_arch_ctx *c, uint32_t layer, const char *suffix);
int hyd__arch_err(const struct hyd_arch_ctx *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* fills a dense FFN (gate/up/down, kind) from blk.L.ffn_{gate,up,down}.weight */
int hyd__arch_dense_ffn(const struct hyd_arch_ctx *c, uint32_t layer, uint32_t kind, struct hyd_ffn_plan *ret);
/* fills hp with the attention fields from "<arch>.attention.*" and "<arch>.rope.*" */
int hyd__arch_attn_hparams(const struct hyd_arch_ctx *c, uint32_t layer, struct hyd_mixer_hparams *hp);

int hyd__arch_plan_llama(const struct hyd_arch_ctx *c, struct hyd_model_plan *p);
int hyd__arch_plan_gemma3(const struct hyd_arch_ctx *c, struct hyd_model_plan *p);
int hyd__arch_plan_mamba(const struct hyd_arch_ctx *c, struct hyd_model_plan *p);
int hyd__arch_plan_mamba2(const struct hyd_arch_ctx *c, struct hyd_model_plan *p);
int hyd__arch_plan_jamba(const struct hyd_arch_ctx *c, struct hyd_model_plan *p);
int hyd__arch_plan_granitehybrid(const struct hyd_arch_ctx *c, struct hyd_model_plan *p);

#endif
