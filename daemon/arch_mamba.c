/* Planners for the state-space architectures: mamba (Mamba-1), mamba2, and the hybrids jamba
 * (Mamba-1 + attention without positional encoding, dense or MoE FFN) and granitehybrid
 * (Mamba-2 + attention, muP-style multipliers).  In the hybrids a layer whose
 * attention.head_count_kv entry is 0 is a state-space layer, as llama.cpp reads them. */
#include "config.h"

#include <errno.h>

#include "daemon/arch.h"
#include "daemon/gguf.h"
#include "engine/types.h"

/* "<arch>.ssm.*" into hp; n_group only for Mamba-2 (time_step_rank is its head count). */
static int ssm_hparams(const struct hyd_arch_ctx *c, bool mamba2, struct hyd_mixer_hparams *hp)
{
	int r;
	if ((r = hyd__arch_u32(c, "ssm.conv_kernel", &hp->ssm_d_conv)) ||
	    (r = hyd__arch_u32(c, "ssm.inner_size", &hp->ssm_d_inner)) ||
	    (r = hyd__arch_u32(c, "ssm.state_size", &hp->ssm_d_state)) ||
	    (r = hyd__arch_u32(c, "ssm.time_step_rank", &hp->ssm_dt_rank)))
		return r;
	if (mamba2 && (r = hyd__arch_u32_opt(c, "ssm.group_count", 1, &hp->ssm_n_group)))
		return r;
	if (!mamba2)
		hp->ssm_n_group = 0;
	if (hp->ssm_d_conv == 0 || hp->ssm_d_inner == 0 || hp->ssm_d_state == 0 || hp->ssm_dt_rank == 0 ||
	    (mamba2 && (hp->ssm_n_group == 0 || hp->ssm_d_inner % hp->ssm_dt_rank ||
			hp->ssm_dt_rank % hp->ssm_n_group)))
		return hyd__arch_err(c, -EINVAL,
				     "%s: inconsistent %s.ssm.* (conv_kernel %u, inner_size %u, state_size %u, time_step_rank %u, group_count %u)",
				     hyd_gguf_path(c->g), c->arch, hp->ssm_d_conv, hp->ssm_d_inner, hp->ssm_d_state,
				     hp->ssm_dt_rank, hp->ssm_n_group);
	return 0;
}

static int ssm_layer(const struct hyd_arch_ctx *c, uint32_t i, bool mamba2, struct hyd_layer_plan *l)
{
	l->mixer_kind = mamba2 ? "mamba2" : "mamba1";
	int r = ssm_hparams(c, mamba2, &l->hp);
	if (r)
		return r;
	if (!(l->mixer_norm = hyd__arch_tensor_req(c, i, "attn_norm.weight")))
		return -EINVAL;
	return 0;
}

static int check_weight(const struct hyd_arch_ctx *c, const struct hyd_tensor *t, int64_t ne0, int64_t ne1,
			int64_t ne2)
{
	if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != ne2 || t->ne[3] != 1)
		return hyd__arch_err(c, -EINVAL, "%s: tensor '%s' has shape {%lld, %lld, %lld}, expected {%lld, %lld, %lld}",
				     hyd_gguf_path(c->g), t->name, (long long)t->ne[0], (long long)t->ne[1],
				     (long long)t->ne[2], (long long)ne0, (long long)ne1, (long long)ne2);
	if (!hyd_type_computable(t->type))
		return hyd__arch_err(c, -ENOTSUP, "%s: tensor '%s' has type %s, which hyd cannot compute with yet",
				     hyd_gguf_path(c->g), t->name, hyd_type_name(t->type));
	return 0;
}

/* Routed experts (blk.L.ffn_gate_inp + ffn_{gate,up,down}_exps) and, when present, a shared
 * expert (ffn_{gate,up,down}_shexp). */
static int moe_ffn(const struct hyd_arch_ctx *c, uint32_t i, uint32_t n_embd, struct hyd_ffn_plan *f)
{
	int r;
	f->kind = HYD_FFN_MOE;
	if ((r = hyd__arch_u32(c, "expert_count", &f->n_expert)) ||
	    (r = hyd__arch_u32(c, "expert_used_count", &f->n_expert_used)))
		return r;
	if (f->n_expert == 0 || f->n_expert_used == 0 || f->n_expert_used > f->n_expert)
		return hyd__arch_err(c, -EINVAL, "%s: layer %u: %u of %u experts cannot be routed",
				     hyd_gguf_path(c->g), i, f->n_expert_used, f->n_expert);
	if (!(f->gate_inp = hyd__arch_tensor_req(c, i, "ffn_gate_inp.weight")) ||
	    !(f->gate_exps = hyd__arch_tensor_req(c, i, "ffn_gate_exps.weight")) ||
	    !(f->up_exps = hyd__arch_tensor_req(c, i, "ffn_up_exps.weight")) ||
	    !(f->down_exps = hyd__arch_tensor_req(c, i, "ffn_down_exps.weight")))
		return -EINVAL;
	f->n_ff = (uint32_t)f->gate_exps->ne[1];
	if ((r = check_weight(c, f->gate_inp, n_embd, f->n_expert, 1)) ||
	    (r = check_weight(c, f->gate_exps, n_embd, f->n_ff, f->n_expert)) ||
	    (r = check_weight(c, f->up_exps, n_embd, f->n_ff, f->n_expert)) ||
	    (r = check_weight(c, f->down_exps, f->n_ff, n_embd, f->n_expert)))
		return r;
	f->gate_shexp = hyd__arch_tensor(c, i, "ffn_gate_shexp.weight");
	if (f->gate_shexp) {
		const int64_t n_sh = f->gate_shexp->ne[1];
		if (!(f->up_shexp = hyd__arch_tensor_req(c, i, "ffn_up_shexp.weight")) ||
		    !(f->down_shexp = hyd__arch_tensor_req(c, i, "ffn_down_shexp.weight")))
			return -EINVAL;
		if ((r = check_weight(c, f->gate_shexp, n_embd, n_sh, 1)) ||
		    (r = check_weight(c, f->up_shexp, n_embd, n_sh, 1)) ||
		    (r = check_weight(c, f->down_shexp, n_sh, n_embd, 1)))
			return r;
	}
	return 0;
}

/* The FFN of a hybrid block: routed experts where the layer has a router, else dense SwiGLU
 * (Jamba's one-expert layers are stored as plain ffn_* tensors), else none when optional. */
static int hybrid_ffn(const struct hyd_arch_ctx *c, uint32_t i, uint32_t n_embd, bool optional,
		      struct hyd_layer_plan *l)
{
	int r;
	if (hyd__arch_tensor(c, i, "ffn_gate_inp.weight"))
		r = moe_ffn(c, i, n_embd, &l->ffn);
	else if (optional && !hyd__arch_tensor(c, i, "ffn_gate.weight") && !hyd__arch_tensor(c, i, "ffn_norm.weight"))
		return 0;
	else
		r = hyd__arch_dense_ffn(c, i, HYD_FFN_SWIGLU, &l->ffn);
	if (r)
		return r;
	if (!(l->ffn_norm = hyd__arch_tensor_req(c, i, "ffn_norm.weight")))
		return -EINVAL;
	return 0;
}

/* ---- mamba: every block is a Mamba-1 mixer, no FFN. */
int hyd__arch_plan_mamba(const struct hyd_arch_ctx *c, struct hyd_model_plan *p)
{
	for (uint32_t i = 0; i < p->n_layer; i++) {
		int r = ssm_layer(c, i, false, &p->layers[i]);
		if (r)
			return r;
	}
	return 0;
}

/* ---- mamba2: every block is a Mamba-2 mixer, no FFN. */
int hyd__arch_plan_mamba2(const struct hyd_arch_ctx *c, struct hyd_model_plan *p)
{
	for (uint32_t i = 0; i < p->n_layer; i++) {
		int r = ssm_layer(c, i, true, &p->layers[i]);
		if (r)
			return r;
	}
	return 0;
}

/* Is layer i a state-space layer of a hybrid (its KV head count is 0)? */
static int hybrid_is_ssm(const struct hyd_arch_ctx *c, uint32_t i, bool *ret)
{
	uint32_t n_head, n_kv;
	int r;
	if ((r = hyd__arch_u32_layer(c, "attention.head_count", i, 0, &n_head)) ||
	    (r = hyd__arch_u32_layer(c, "attention.head_count_kv", i, n_head, &n_kv)))
		return r;
	*ret = n_kv == 0 || n_head == 0;
	return 0;
}

/* ---- jamba: Mamba-1 (with RMSNorms of dt, B and C, found by the plugin from the tensors) and
 * attention with no positional encoding at all; every block has an FFN. */
int hyd__arch_plan_jamba(const struct hyd_arch_ctx *c, struct hyd_model_plan *p)
{
	for (uint32_t i = 0; i < p->n_layer; i++) {
		struct hyd_layer_plan *l = &p->layers[i];
		bool is_ssm;
		int r;
		if ((r = hybrid_is_ssm(c, i, &is_ssm)))
			return r;
		if (is_ssm) {
			r = ssm_layer(c, i, false, l);
		} else {
			l->mixer_kind = "attn";
			r = hyd__arch_attn_hparams(c, i, &l->hp);
			l->hp.rope_type = HYD_ROPE_NONE;
			l->hp.n_rot = 0;
			if (!r && !(l->mixer_norm = hyd__arch_tensor_req(c, i, "attn_norm.weight")))
				r = -EINVAL;
		}
		if (r || (r = hybrid_ffn(c, i, p->n_embd, false, l)))
			return r;
	}
	return 0;
}

/* ---- granitehybrid: Mamba-2 and attention layers; embeddings, block outputs and logits are
 * scaled (embedding_scale, residual_scale, 1/logit_scale), attention uses attention.scale.  Its
 * attention has RoPE only when rope.scaling.finetuned says so: the converter writes false for
 * the hybrid models (position_embedding_type "nope"), as llama.cpp's use_rope reads it. */
int hyd__arch_plan_granitehybrid(const struct hyd_arch_ctx *c, struct hyd_model_plan *p)
{
	int r;
	bool use_rope;
	if ((r = hyd__arch_f32_opt(c, "embedding_scale", 1.0f, &p->embd_scale)) ||
	    (r = hyd__arch_f32_opt(c, "residual_scale", 1.0f, &p->residual_scale)) ||
	    (r = hyd__arch_f32_opt(c, "logit_scale", 1.0f, &p->logit_scale)) ||
	    (r = hyd__arch_bool_opt(c, "rope.scaling.finetuned", true, &use_rope)))
		return r;
	if (p->embd_scale == 0)
		p->embd_scale = 1.0f; /* 0 means "not set" in these keys, as in llama.cpp */
	if (p->residual_scale == 0)
		p->residual_scale = 1.0f;
	if (p->logit_scale == 0)
		p->logit_scale = 1.0f;
	for (uint32_t i = 0; i < p->n_layer; i++) {
		struct hyd_layer_plan *l = &p->layers[i];
		bool is_ssm;
		if ((r = hybrid_is_ssm(c, i, &is_ssm)))
			return r;
		if (is_ssm) {
			r = ssm_layer(c, i, true, l);
		} else {
			l->mixer_kind = "attn";
			r = hyd__arch_attn_hparams(c, i, &l->hp);
			if (!use_rope) {
				l->hp.rope_type = HYD_ROPE_NONE;
				l->hp.n_rot = 0;
			}
			if (!r && !(l->mixer_norm = hyd__arch_tensor_req(c, i, "attn_norm.weight")))
				r = -EINVAL;
		}
		if (r || (r = hybrid_ffn(c, i, p->n_embd, true, l)))
			return r;
		l->ffn.norm_topk = true; /* Granite MoE: softmax over the chosen experts' logits */
	}
	return 0;
}
