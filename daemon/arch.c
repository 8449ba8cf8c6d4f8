/* Architecture dispatch and the helpers planners share (see arch.h). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon/arch.h"
#include "daemon/gguf.h"
#include "engine/alloc.h"
#include "engine/types.h"

int hyd__arch_err(const struct hyd_arch_ctx *c, int code, const char *fmt, ...)
{
	if (c->err && c->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

static void key(const struct hyd_arch_ctx *c, const char *suffix, char *buf, size_t n)
{
	snprintf(buf, n, "%s.%s", c->arch, suffix);
}

int hyd__arch_u32(const struct hyd_arch_ctx *c, const char *suffix, uint32_t *ret)
{
	char k[256];
	key(c, suffix, k, sizeof(k));
	int r = hyd_gguf_get_u32(c->g, k, ret);
	if (r == -ENOENT)
		return hyd__arch_err(c, -EINVAL, "%s: required key '%s' is missing", hyd_gguf_path(c->g), k);
	if (r)
		return hyd__arch_err(c, -EINVAL, "%s: key '%s' is not an unsigned 32-bit integer",
				     hyd_gguf_path(c->g), k);
	return 0;
}

int hyd__arch_u32_opt(const struct hyd_arch_ctx *c, const char *suffix, uint32_t def, uint32_t *ret)
{
	char k[256];
	key(c, suffix, k, sizeof(k));
	int r = hyd_gguf_get_u32(c->g, k, ret);
	if (r == -ENOENT) {
		*ret = def;
		return 0;
	}
	if (r)
		return hyd__arch_err(c, -EINVAL, "%s: key '%s' is not an unsigned 32-bit integer",
				     hyd_gguf_path(c->g), k);
	return 0;
}

int hyd__arch_u32_layer(const struct hyd_arch_ctx *c, const char *suffix, uint32_t layer, uint32_t def,
			uint32_t *ret)
{
	char k[256];
	key(c, suffix, k, sizeof(k));
	uint32_t type;
	if (hyd_gguf_kv_type(c->g, k, &type) == -ENOENT) {
		*ret = def;
		return 0;
	}
	if (type != HYD_GGUF_ARRAY)
		return hyd__arch_u32_opt(c, suffix, def, ret);
	struct hyd_gguf_arr a;
	int64_t v;
	if (hyd_gguf_get_arr(c->g, k, &a) || hyd_gguf_arr_i64(&a, layer, &v) || v < 0 || v > UINT32_MAX)
		return hyd__arch_err(c, -EINVAL, "%s: key '%s' has no valid entry for layer %u",
				     hyd_gguf_path(c->g), k, layer);
	*ret = (uint32_t)v;
	return 0;
}

int hyd__arch_f32_opt(const struct hyd_arch_ctx *c, const char *suffix, float def, float *ret)
{
	char k[256];
	key(c, suffix, k, sizeof(k));
	int r = hyd_gguf_get_f32(c->g, k, ret);
	if (r == -ENOENT) {
		*ret = def;
		return 0;
	}
	if (r || !isfinite(*ret))
		return hyd__arch_err(c, -EINVAL, "%s: key '%s' is not a finite float", hyd_gguf_path(c->g), k);
	return 0;
}

int hyd__arch_bool_opt(const struct hyd_arch_ctx *c, const char *suffix, bool def, bool *ret)
{
	char k[256];
	key(c, suffix, k, sizeof(k));
	int r = hyd_gguf_get_bool(c->g, k, ret);
	if (r == -ENOENT) {
		*ret = def;
		return 0;
	}
	if (r)
		return hyd__arch_err(c, -EINVAL, "%s: key '%s' is not a bool", hyd_gguf_path(c->g), k);
	return 0;
}

const struct hyd_tensor *hyd__arch_tensor(const struct hyd_arch_ctx *c, uint32_t layer, const char *suffix)
{
	char name[256];
	snprintf(name, sizeof(name), "blk.%u.%s", layer, suffix);
	return hyd_gguf_find_tensor(c->g, name);
}

const struct hyd_tensor *hyd__arch_tensor_req(const struct hyd_arch_ctx *c, uint32_t layer, const char *suffix)
{
	const struct hyd_tensor *t = hyd__arch_tensor(c, layer, suffix);
	if (!t)
		hyd__arch_err(c, -EINVAL, "%s: tensor 'blk.%u.%s' is missing", hyd_gguf_path(c->g), layer, suffix);
	return t;
}

static int check_norm(const struct hyd_arch_ctx *c, const struct hyd_tensor *t, uint32_t n)
{
	if (t->type != HYD_TYPE_F32 || hyd_tensor_nelements(t) != n)
		return hyd__arch_err(c, -EINVAL, "%s: norm '%s' must be %u F32 values (is %lld %s)",
				     hyd_gguf_path(c->g), t->name, n, (long long)hyd_tensor_nelements(t),
				     hyd_type_name(t->type));
	return 0;
}

static int check_matrix(const struct hyd_arch_ctx *c, const struct hyd_tensor *t, int64_t n_in, int64_t n_out)
{
	if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != 1 || t->ne[3] != 1)
		return hyd__arch_err(c, -EINVAL, "%s: tensor '%s' has shape {%lld, %lld}, expected {%lld, %lld}",
				     hyd_gguf_path(c->g), t->name, (long long)t->ne[0], (long long)t->ne[1],
				     (long long)n_in, (long long)n_out);
	if (!hyd_type_computable(t->type))
		return hyd__arch_err(c, -ENOTSUP, "%s: tensor '%s' has type %s, which hyd cannot compute with yet",
				     hyd_gguf_path(c->g), t->name, hyd_type_name(t->type));
	return 0;
}

int hyd__arch_dense_ffn(const struct hyd_arch_ctx *c, uint32_t layer, uint32_t kind, struct hyd_ffn_plan *f)
{
	uint32_t n_embd;
	int r = hyd__arch_u32(c, "embedding_length", &n_embd);
	if (r)
		return r;
	f->kind = kind;
	if (!(f->gate = hyd__arch_tensor_req(c, layer, "ffn_gate.weight")) ||
	    !(f->up = hyd__arch_tensor_req(c, layer, "ffn_up.weight")) ||
	    !(f->down = hyd__arch_tensor_req(c, layer, "ffn_down.weight")))
		return -EINVAL;
	f->n_ff = (uint32_t)f->gate->ne[1];
	if ((r = check_matrix(c, f->gate, n_embd, f->n_ff)) || (r = check_matrix(c, f->up, n_embd, f->n_ff)) ||
	    (r = check_matrix(c, f->down, f->n_ff, n_embd)))
		return r;
	return 0;
}

int hyd__arch_attn_hparams(const struct hyd_arch_ctx *c, uint32_t layer, struct hyd_mixer_hparams *hp)
{
	int r;
	uint32_t n_head;
	if ((r = hyd__arch_u32_layer(c, "attention.head_count", layer, 0, &n_head)))
		return r;
	if (n_head == 0)
		return hyd__arch_err(c, -EINVAL, "%s: %s.attention.head_count is missing or 0 for layer %u",
				     hyd_gguf_path(c->g), c->arch, layer);
	hp->n_head = n_head;
	if ((r = hyd__arch_u32_layer(c, "attention.head_count_kv", layer, n_head, &hp->n_head_kv)))
		return r;
	if (hp->n_head_kv == 0 || n_head % hp->n_head_kv)
		return hyd__arch_err(c, -EINVAL, "%s: layer %u: %u heads cannot be grouped over %u KV heads",
				     hyd_gguf_path(c->g), layer, n_head, hp->n_head_kv);
	if ((r = hyd__arch_u32_opt(c, "attention.key_length", hp->n_embd / n_head, &hp->head_dim_k)) ||
	    (r = hyd__arch_u32_opt(c, "attention.value_length", hp->n_embd / n_head, &hp->head_dim_v)) ||
	    (r = hyd__arch_u32_opt(c, "rope.dimension_count", hp->head_dim_k, &hp->n_rot)) ||
	    (r = hyd__arch_f32_opt(c, "rope.freq_base", 10000.0f, &hp->rope_freq_base)) ||
	    (r = hyd__arch_f32_opt(c, "attention.scale", 0.0f, &hp->attn_scale)))
		return r;
	float factor;
	if ((r = hyd__arch_f32_opt(c, "rope.scaling.factor", 1.0f, &factor)))
		return r;
	char type_key[256];
	struct hyd_str stype;
	snprintf(type_key, sizeof(type_key), "%s.rope.scaling.type", c->arch);
	hp->rope_freq_scale = 1.0f;
	if (hyd_gguf_get_str(c->g, type_key, &stype) == 0 && hyd_str_eq(stype, "linear") && factor > 0)
		hp->rope_freq_scale = 1.0f / factor;
	hp->rope_type = HYD_ROPE_NORM;
	return 0;
}

struct arch_entry {
	const char *name;
	int (*plan)(const struct hyd_arch_ctx *c, struct hyd_model_plan *p);
};

static const struct arch_entry arches[] = {
	{ "llama", hyd__arch_plan_llama },
	{ "gemma3", hyd__arch_plan_gemma3 },
	{ "mamba", hyd__arch_plan_mamba },
	{ "mamba2", hyd__arch_plan_mamba2 },
	{ "jamba", hyd__arch_plan_jamba },
	{ "granitehybrid", hyd__arch_plan_granitehybrid },
};

void hyd_arch_plan_free(struct hyd_model_plan *p)
{
	if (!p)
		return;
	hyd_free(p->layers);
	p->layers = NULL;
}

int hyd_arch_plan(const struct hyd_gguf *g, struct hyd_model_plan *ret, char *err, size_t errlen)
{
	struct hyd_str a;
	struct hyd_model_plan p = { 0 };
	struct hyd_arch_ctx c = { .g = g, .err = err, .errlen = errlen };
	if (hyd_gguf_get_str(g, "general.architecture", &a))
		return hyd__arch_err(&c, -EINVAL, "%s: key 'general.architecture' is missing or not a string",
				     hyd_gguf_path(g));
	const struct arch_entry *e = NULL;
	for (size_t i = 0; i < sizeof(arches) / sizeof(arches[0]); i++)
		if (hyd_str_eq(a, arches[i].name))
			e = &arches[i];
	if (!e) {
		char known[256] = "";
		for (size_t i = 0; i < sizeof(arches) / sizeof(arches[0]); i++)
			snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", i ? ", " : "",
				 arches[i].name);
		return hyd__arch_err(&c, -ENOTSUP, "%s: architecture '%.*s' is not supported (hyd knows: %s)",
				     hyd_gguf_path(g), (int)(a.n > 64 ? 64 : a.n), a.p, known);
	}
	snprintf(p.arch, sizeof(p.arch), "%s", e->name);
	c.arch = p.arch;
	int r;
	if ((r = hyd__arch_u32(&c, "block_count", &p.n_layer)) || (r = hyd__arch_u32(&c, "embedding_length", &p.n_embd)))
		return r;
	if (p.n_layer == 0 || p.n_layer > 4096 || p.n_embd == 0 || p.n_embd > 1u << 20)
		return hyd__arch_err(&c, -EINVAL, "%s: implausible block_count %u / embedding_length %u",
				     hyd_gguf_path(g), p.n_layer, p.n_embd);
	if ((r = hyd__arch_u32_opt(&c, "context_length", 2048, &p.n_ctx_train)) ||
	    (r = hyd__arch_f32_opt(&c, "attention.layer_norm_rms_epsilon", 1e-5f, &p.norm_eps)))
		return r;
	p.token_embd = hyd_gguf_find_tensor(g, "token_embd.weight");
	if (!p.token_embd)
		return hyd__arch_err(&c, -EINVAL, "%s: tensor 'token_embd.weight' is missing", hyd_gguf_path(g));
	if (p.token_embd->ne[0] != p.n_embd || p.token_embd->ne[2] != 1 || p.token_embd->ne[3] != 1)
		return hyd__arch_err(&c, -EINVAL, "%s: token_embd.weight is {%lld, %lld}, width should be %u",
				     hyd_gguf_path(g), (long long)p.token_embd->ne[0], (long long)p.token_embd->ne[1],
				     p.n_embd);
	p.n_vocab = (uint32_t)p.token_embd->ne[1];
	p.output_norm = hyd_gguf_find_tensor(g, "output_norm.weight");
	if (!p.output_norm)
		return hyd__arch_err(&c, -EINVAL, "%s: tensor 'output_norm.weight' is missing", hyd_gguf_path(g));
	if ((r = check_norm(&c, p.output_norm, p.n_embd)))
		return r;
	p.output = hyd_gguf_find_tensor(g, "output.weight");
	if (!p.output)
		p.output = p.token_embd; /* tied embeddings */
	if ((r = check_matrix(&c, p.output, p.n_embd, p.n_vocab)))
		return r;
	if (!hyd_type_traits(p.token_embd->type) || !hyd_type_traits(p.token_embd->type)->to_float)
		return hyd__arch_err(&c, -ENOTSUP, "%s: token_embd.weight type %s is not supported",
				     hyd_gguf_path(g), hyd_type_name(p.token_embd->type));
	p.embd_scale = p.residual_scale = p.logit_scale = 1.0f;
	p.layers = hyd_calloc(p.n_layer, sizeof(*p.layers));
	if (!p.layers)
		return -ENOMEM;
	for (uint32_t i = 0; i < p.n_layer; i++) {
		struct hyd_mixer_hparams *hp = &p.layers[i].hp;
		hp->struct_size = sizeof(*hp);
		hp->layer = i;
		hp->n_embd = p.n_embd;
		hp->n_ctx_train = p.n_ctx_train;
		hp->norm_eps = p.norm_eps;
		hp->rope_freq_scale = 1.0f;
	}
	if ((r = e->plan(&c, &p)))
		goto fail;
	/* what every planner must have produced */
	for (uint32_t i = 0; i < p.n_layer; i++) {
		const struct hyd_layer_plan *l = &p.layers[i];
		if (!l->mixer_kind || !l->mixer_norm) {
			r = hyd__arch_err(&c, -EINVAL, "%s: layer %u: no mixer or mixer norm", hyd_gguf_path(g), i);
			goto fail;
		}
		if ((r = check_norm(&c, l->mixer_norm, p.n_embd)) ||
		    (l->mixer_post_norm && (r = check_norm(&c, l->mixer_post_norm, p.n_embd))) ||
		    (l->ffn_post_norm && (r = check_norm(&c, l->ffn_post_norm, p.n_embd))))
			goto fail;
		if (l->ffn.kind != HYD_FFN_NONE && (!l->ffn_norm || (r = check_norm(&c, l->ffn_norm, p.n_embd)))) {
			if (!r)
				r = hyd__arch_err(&c, -EINVAL, "%s: layer %u: FFN without a norm", hyd_gguf_path(g), i);
			goto fail;
		}
	}
	*ret = p;
	return 0;
fail:
	hyd_arch_plan_free(&p);
	return r;
}

/* ---- llama: attention + SwiGLU, RoPE on interleaved pairs (the converter permutes Q/K). */
int hyd__arch_plan_llama(const struct hyd_arch_ctx *c, struct hyd_model_plan *p)
{
	for (uint32_t i = 0; i < p->n_layer; i++) {
		struct hyd_layer_plan *l = &p->layers[i];
		int r;
		l->mixer_kind = "attn";
		if ((r = hyd__arch_attn_hparams(c, i, &l->hp)))
			return r;
		if (!(l->mixer_norm = hyd__arch_tensor_req(c, i, "attn_norm.weight")) ||
		    !(l->ffn_norm = hyd__arch_tensor_req(c, i, "ffn_norm.weight")))
			return -EINVAL;
		if ((r = hyd__arch_dense_ffn(c, i, HYD_FFN_SWIGLU, &l->ffn)))
			return r;
	}
	return 0;
}

/* ---- gemma3: interleaved sliding-window and global attention layers (the GGUF carries the
 * window; the pattern is 5 local : 1 global, i.e. layer i is global when (i + 1) % 6 == 0),
 * q/k RMSNorm, post-mixer and post-FFN norms, embeddings scaled by sqrt(n_embd), GELU-tanh
 * gated FFN, and separate RoPE bases for local and global layers.  The converter already
 * folded Gemma's (1 + w) norm convention into the stored weights. */
int hyd__arch_plan_gemma3(const struct hyd_arch_ctx *c, struct hyd_model_plan *p)
{
	uint32_t window, pattern;
	float base_global, base_local;
	int r;
	if ((r = hyd__arch_u32_opt(c, "attention.sliding_window", 0, &window)) ||
	    (r = hyd__arch_u32_opt(c, "attention.sliding_window_pattern", 6, &pattern)) ||
	    (r = hyd__arch_f32_opt(c, "rope.freq_base", 1000000.0f, &base_global)) ||
	    (r = hyd__arch_f32_opt(c, "rope.freq_base_swa", 10000.0f, &base_local)))
		return r;
	if (pattern == 0)
		return hyd__arch_err(c, -EINVAL, "%s: gemma3.attention.sliding_window_pattern is 0",
				     hyd_gguf_path(c->g));
	float final_softcap;
	if ((r = hyd__arch_f32_opt(c, "final_logit_softcapping", 0.0f, &final_softcap)))
		return r;
	p->final_softcap = final_softcap;
	p->embd_scale = sqrtf((float)p->n_embd);
	for (uint32_t i = 0; i < p->n_layer; i++) {
		struct hyd_layer_plan *l = &p->layers[i];
		if ((r = hyd__arch_attn_hparams(c, i, &l->hp)))
			return r;
		const bool global = window == 0 || (i + 1) % pattern == 0;
		l->mixer_kind = global ? "attn" : "swa";
		l->hp.window = global ? 0 : window;
		l->hp.rope_type = HYD_ROPE_NEOX;
		if (!global) {
			l->hp.rope_freq_base = base_local;
			l->hp.rope_freq_scale = 1.0f; /* linear scaling applies to global layers only */
		} else {
			l->hp.rope_freq_base = base_global;
		}
		if (l->hp.attn_scale == 0) {
			/* query_pre_attn_scalar defaults to head_dim */
			uint32_t qpas = l->hp.head_dim_k;
			l->hp.attn_scale = 1.0f / sqrtf((float)qpas);
		}
		if (!(l->mixer_norm = hyd__arch_tensor_req(c, i, "attn_norm.weight")) ||
		    !(l->mixer_post_norm = hyd__arch_tensor_req(c, i, "post_attention_norm.weight")) ||
		    !(l->ffn_norm = hyd__arch_tensor_req(c, i, "ffn_norm.weight")) ||
		    !(l->ffn_post_norm = hyd__arch_tensor_req(c, i, "post_ffw_norm.weight")))
			return -EINVAL;
		if ((r = hyd__arch_dense_ffn(c, i, HYD_FFN_GEGLU, &l->ffn)))
			return r;
	}
	return 0;
}
