/* The model shapes bench/mkmodel writes.  Hyper-parameters are those of the public models
 * named (see docs/PERFORMANCE.md, "Generated models", for sources and deviations); only the
 * weights are random. */
#include "config.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>

#include "bench/mkmodel.h"
#include "daemon/gguf.h"
#include "daemon/gguf_write.h"
#include "engine/alloc.h"

#define W(call)                    \
	do {                       \
		int r_ = (call);   \
		if (r_)            \
			return r_; \
	} while (0)

static float inv_sqrt(int64_t n)
{
	return 1.0f / sqrtf((float)n);
}

/* blk.L.<suffix> */
static const char *bn(char *buf, uint32_t layer, const char *suffix)
{
	snprintf(buf, 128, "blk.%u.%s", layer, suffix);
	return buf;
}

/* q/k/v/output projections of one attention layer (attn_index among attention layers) */
static int attn_weights(struct mk_ctx *c, uint32_t l, int64_t n_embd, int64_t n_head, int64_t n_kv, int64_t hd,
			uint32_t attn_index, uint32_t n_attn)
{
	char b[128];
	W(mk_matrix(c, bn(b, l, "attn_q.weight"), n_embd, n_head * hd, inv_sqrt(n_embd), MK_MATRIX, 0, 0));
	W(mk_matrix(c, bn(b, l, "attn_k.weight"), n_embd, n_kv * hd, inv_sqrt(n_embd), MK_MATRIX, 0, 0));
	W(mk_matrix(c, bn(b, l, "attn_v.weight"), n_embd, n_kv * hd, inv_sqrt(n_embd), MK_ATTN_V, attn_index, n_attn));
	W(mk_matrix(c, bn(b, l, "attn_output.weight"), n_head * hd, n_embd, inv_sqrt(n_head * hd), MK_MATRIX, 0, 0));
	return 0;
}

static int ffn_weights(struct mk_ctx *c, uint32_t l, int64_t n_embd, int64_t n_ff, uint32_t n_layer)
{
	char b[128];
	W(mk_ones(c, bn(b, l, "ffn_norm.weight"), n_embd));
	W(mk_matrix(c, bn(b, l, "ffn_gate.weight"), n_embd, n_ff, inv_sqrt(n_embd), MK_MATRIX, 0, 0));
	W(mk_matrix(c, bn(b, l, "ffn_up.weight"), n_embd, n_ff, inv_sqrt(n_embd), MK_MATRIX, 0, 0));
	W(mk_matrix(c, bn(b, l, "ffn_down.weight"), n_ff, n_embd, inv_sqrt(n_ff), MK_FFN_DOWN, l, n_layer));
	return 0;
}

/* dt bias = softplus^-1(dt) for dt log-uniform in [1e-3, 1e-1], as Mamba initialises it */
static void dt_bias(float *b, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		const double dt = exp(log(1e-3) + (log(1e-1) - log(1e-3)) * ((double)i + 0.5) / (double)n);
		b[i] = (float)(dt + log(-expm1(-dt)));
	}
}

/* ---- llama-shaped ~125M: width 768, 12 layers, 12 heads / 4 KV heads, FFN 2048, 32K vocab,
 * untied output (the shape of ANCHORS.md's llama.cpp numbers) */
static int build_llama125m(struct mk_ctx *c)
{
	const uint32_t n_layer = 12, n_embd = 768, n_head = 12, n_kv = 4, n_ff = 2048, n_vocab = 32000;
	struct hyd_gguf_writer *w = c->w;
	W(mk_general(c, "llama", "llama-125m-shaped random"));
	W(hyd_gguf_writer_add_u32(w, "llama.block_count", n_layer));
	W(hyd_gguf_writer_add_u32(w, "llama.context_length", 2048));
	W(hyd_gguf_writer_add_u32(w, "llama.embedding_length", n_embd));
	W(hyd_gguf_writer_add_u32(w, "llama.feed_forward_length", n_ff));
	W(hyd_gguf_writer_add_u32(w, "llama.attention.head_count", n_head));
	W(hyd_gguf_writer_add_u32(w, "llama.attention.head_count_kv", n_kv));
	W(hyd_gguf_writer_add_u32(w, "llama.rope.dimension_count", n_embd / n_head));
	W(hyd_gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f));
	W(hyd_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
	W(hyd_gguf_writer_add_u32(w, "llama.vocab_size", n_vocab));
	W(mk_copy_tokenizer(c, n_vocab));
	W(mk_matrix(c, "token_embd.weight", n_embd, n_vocab, inv_sqrt(n_embd), MK_EMBD, 0, 0));
	W(mk_ones(c, "output_norm.weight", n_embd));
	W(mk_matrix(c, "output.weight", n_embd, n_vocab, inv_sqrt(n_embd), MK_OUTPUT, 0, 0));
	for (uint32_t l = 0; l < n_layer; l++) {
		char b[128];
		W(mk_ones(c, bn(b, l, "attn_norm.weight"), n_embd));
		W(attn_weights(c, l, n_embd, n_head, n_kv, n_embd / n_head, l, n_layer));
		W(ffn_weights(c, l, n_embd, n_ff, n_layer));
	}
	return 0;
}

/* ---- gemma3-270m-shaped: width 640, 18 layers (5 sliding : 1 global, window 512), 4 heads,
 * 1 KV head, head dim 256, q/k norms, GeGLU FFN 2048, the full 262,144-row tied embedding */
static int build_gemma3_270m(struct mk_ctx *c)
{
	const uint32_t n_layer = 18, n_embd = 640, n_head = 4, n_kv = 1, hd = 256, n_ff = 2048, n_vocab = 262144;
	struct hyd_gguf_writer *w = c->w;
	W(mk_general(c, "gemma3", "gemma3-270m-shaped random"));
	W(hyd_gguf_writer_add_u32(w, "gemma3.context_length", 32768));
	W(hyd_gguf_writer_add_u32(w, "gemma3.embedding_length", n_embd));
	W(hyd_gguf_writer_add_u32(w, "gemma3.block_count", n_layer));
	W(hyd_gguf_writer_add_u32(w, "gemma3.feed_forward_length", n_ff));
	W(hyd_gguf_writer_add_u32(w, "gemma3.attention.head_count", n_head));
	W(hyd_gguf_writer_add_u32(w, "gemma3.attention.head_count_kv", n_kv));
	W(hyd_gguf_writer_add_u32(w, "gemma3.attention.key_length", hd));
	W(hyd_gguf_writer_add_u32(w, "gemma3.attention.value_length", hd));
	W(hyd_gguf_writer_add_f32(w, "gemma3.attention.layer_norm_rms_epsilon", 1e-6f));
	W(hyd_gguf_writer_add_f32(w, "gemma3.rope.freq_base", 1000000.0f));
	W(hyd_gguf_writer_add_f32(w, "gemma3.rope.freq_base_swa", 10000.0f));
	W(hyd_gguf_writer_add_u32(w, "gemma3.attention.sliding_window", 512));
	W(hyd_gguf_writer_add_u32(w, "gemma3.attention.sliding_window_pattern", 6));
	W(mk_copy_tokenizer(c, n_vocab));
	W(mk_matrix(c, "token_embd.weight", n_embd, n_vocab, inv_sqrt(n_embd), MK_OUTPUT, 0, 0));
	W(mk_ones(c, "output_norm.weight", n_embd));
	for (uint32_t l = 0; l < n_layer; l++) {
		char b[128];
		W(mk_ones(c, bn(b, l, "attn_norm.weight"), n_embd));
		W(attn_weights(c, l, n_embd, n_head, n_kv, hd, l, n_layer));
		W(mk_ones(c, bn(b, l, "attn_q_norm.weight"), hd));
		W(mk_ones(c, bn(b, l, "attn_k_norm.weight"), hd));
		W(mk_ones(c, bn(b, l, "post_attention_norm.weight"), n_embd));
		W(ffn_weights(c, l, n_embd, n_ff, n_layer));
		W(mk_ones(c, bn(b, l, "post_ffw_norm.weight"), n_embd));
	}
	return 0;
}

/* ---- mamba-130m-shaped: width 768, 24 Mamba-1 layers, d_inner 1536, d_state 16, d_conv 4,
 * dt_rank 48, GPT-NeoX vocabulary padded to 50,280 rows, tied embedding */
static int build_mamba130m(struct mk_ctx *c)
{
	const uint32_t n_layer = 24, n_embd = 768, di = 1536, ds = 16, dc = 4, dtr = 48, n_vocab = 50280;
	struct hyd_gguf_writer *w = c->w;
	W(mk_general(c, "mamba", "mamba-130m-shaped random"));
	W(hyd_gguf_writer_add_u32(w, "mamba.context_length", 1048576));
	W(hyd_gguf_writer_add_u32(w, "mamba.embedding_length", n_embd));
	W(hyd_gguf_writer_add_u32(w, "mamba.feed_forward_length", 0));
	W(hyd_gguf_writer_add_u32(w, "mamba.attention.head_count", 0));
	W(hyd_gguf_writer_add_u32(w, "mamba.block_count", n_layer));
	W(hyd_gguf_writer_add_u32(w, "mamba.ssm.conv_kernel", dc));
	W(hyd_gguf_writer_add_u32(w, "mamba.ssm.inner_size", di));
	W(hyd_gguf_writer_add_u32(w, "mamba.ssm.state_size", ds));
	W(hyd_gguf_writer_add_u32(w, "mamba.ssm.time_step_rank", dtr));
	W(hyd_gguf_writer_add_f32(w, "mamba.attention.layer_norm_rms_epsilon", 1e-5f));
	W(mk_copy_tokenizer(c, n_vocab));
	W(mk_matrix(c, "token_embd.weight", n_embd, n_vocab, inv_sqrt(n_embd), MK_OUTPUT, 0, 0));
	W(mk_ones(c, "output_norm.weight", n_embd));
	float *a = hyd_malloc((size_t)ds * di * sizeof(float)), *dtb = hyd_malloc(di * sizeof(float));
	int r = -1;
	if (!a || !dtb)
		goto out;
	/* A = -exp(A_log) with A_log = log(1..d_state), Mamba's S4D-real initialisation */
	for (uint32_t i = 0; i < di; i++)
		for (uint32_t s = 0; s < ds; s++)
			a[(size_t)i * ds + s] = -(float)(s + 1);
	dt_bias(dtb, di);
	for (uint32_t l = 0; l < n_layer; l++) {
		char b[128];
		if ((r = mk_ones(c, bn(b, l, "attn_norm.weight"), n_embd)) ||
		    (r = mk_matrix(c, bn(b, l, "ssm_in.weight"), n_embd, 2 * di, inv_sqrt(n_embd), MK_MATRIX, 0, 0)) ||
		    (r = mk_f32(c, bn(b, l, "ssm_conv1d.weight"), dc, di, NULL, 0.0f, 0.5f)) ||
		    (r = mk_f32(c, bn(b, l, "ssm_conv1d.bias"), di, 1, NULL, 0.0f, 0.0f)) ||
		    (r = mk_matrix(c, bn(b, l, "ssm_x.weight"), di, dtr + 2 * ds, inv_sqrt(di), MK_MATRIX, 0, 0)) ||
		    (r = mk_matrix(c, bn(b, l, "ssm_dt.weight"), dtr, di, inv_sqrt(dtr), MK_MATRIX, 0, 0)) ||
		    (r = mk_f32(c, bn(b, l, "ssm_dt.bias"), di, 1, dtb, 0, 0)) ||
		    (r = mk_f32(c, bn(b, l, "ssm_a"), ds, di, a, 0, 0)) ||
		    (r = mk_f32(c, bn(b, l, "ssm_d"), di, 1, NULL, 1.0f, 0.0f)) ||
		    (r = mk_matrix(c, bn(b, l, "ssm_out.weight"), di, n_embd, inv_sqrt(di), MK_MATRIX, 0, 0)))
			goto out;
	}
	r = 0;
out:
	hyd_free(a);
	hyd_free(dtb);
	return r;
}

/* ---- granite-4.0-h-350m-shaped: width 768, 32 layers of which 4 are attention (12 heads,
 * 4 KV heads, no positional encoding) and 28 Mamba-2 (48 heads of 32, d_state 128, 1 group,
 * d_conv 4), a dense SwiGLU FFN of 2048 in every layer, 100,352-row tied embedding */
static bool granite_attn_layer(uint32_t l)
{
	return l % 8 == 7;
}

static int build_granite_h350m(struct mk_ctx *c)
{
	const uint32_t n_layer = 32, n_embd = 768, n_head = 12, n_kv = 4, n_ff = 2048, n_vocab = 100352;
	const uint32_t di = 1536, ds = 128, ng = 1, nh = 48, dc = 4;
	const uint32_t conv_dim = di + 2 * ng * ds, d_in_proj = di + conv_dim + nh;
	struct hyd_gguf_writer *w = c->w;
	uint32_t kv[32], n_attn = 0;
	for (uint32_t l = 0; l < n_layer; l++) {
		kv[l] = granite_attn_layer(l) ? n_kv : 0;
		n_attn += kv[l] != 0;
	}
	W(mk_general(c, "granitehybrid", "granite-4.0-h-350m-shaped random"));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.block_count", n_layer));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.context_length", 32768));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.embedding_length", n_embd));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.feed_forward_length", n_ff));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.attention.head_count", n_head));
	W(hyd_gguf_writer_add_arr(w, "granitehybrid.attention.head_count_kv", HYD_GGUF_U32, kv, n_layer));
	W(hyd_gguf_writer_add_f32(w, "granitehybrid.rope.freq_base", 10000.0f));
	W(hyd_gguf_writer_add_f32(w, "granitehybrid.attention.layer_norm_rms_epsilon", 1e-5f));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.expert_count", 0));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.expert_used_count", 0));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.vocab_size", n_vocab));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.rope.dimension_count", n_embd / n_head));
	W(hyd_gguf_writer_add_f32(w, "granitehybrid.attention.scale", 0.015625f));
	W(hyd_gguf_writer_add_f32(w, "granitehybrid.embedding_scale", 12.0f));
	W(hyd_gguf_writer_add_f32(w, "granitehybrid.residual_scale", 0.246f));
	W(hyd_gguf_writer_add_f32(w, "granitehybrid.logit_scale", 3.0f));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.expert_shared_feed_forward_length", n_ff));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.ssm.conv_kernel", dc));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.ssm.state_size", ds));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.ssm.group_count", ng));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.ssm.inner_size", di));
	W(hyd_gguf_writer_add_u32(w, "granitehybrid.ssm.time_step_rank", nh));
	W(hyd_gguf_writer_add_bool(w, "granitehybrid.rope.scaling.finetuned", false));
	W(mk_copy_tokenizer(c, n_vocab));
	W(mk_matrix(c, "token_embd.weight", n_embd, n_vocab, inv_sqrt(n_embd), MK_OUTPUT, 0, 0));
	W(mk_ones(c, "output_norm.weight", n_embd));
	float a[48], dtb[48];
	for (uint32_t h = 0; h < nh; h++)
		a[h] = -(1.0f + 15.0f * (float)h / (float)(nh - 1)); /* A in [-16, -1], Mamba-2's range */
	dt_bias(dtb, nh);
	for (uint32_t l = 0, ai = 0; l < n_layer; l++) {
		char b[128];
		W(mk_ones(c, bn(b, l, "attn_norm.weight"), n_embd));
		if (kv[l]) {
			W(attn_weights(c, l, n_embd, n_head, n_kv, n_embd / n_head, ai++, n_attn));
		} else {
			W(mk_matrix(c, bn(b, l, "ssm_in.weight"), n_embd, d_in_proj, inv_sqrt(n_embd), MK_MATRIX, 0, 0));
			W(mk_f32(c, bn(b, l, "ssm_conv1d.weight"), dc, conv_dim, NULL, 0.0f, 0.5f));
			W(mk_f32(c, bn(b, l, "ssm_conv1d.bias"), conv_dim, 1, NULL, 0.0f, 0.0f));
			W(mk_f32(c, bn(b, l, "ssm_dt.bias"), nh, 1, dtb, 0, 0));
			W(mk_f32(c, bn(b, l, "ssm_a"), 1, nh, a, 0, 0));
			W(mk_f32(c, bn(b, l, "ssm_d"), 1, nh, NULL, 1.0f, 0.0f));
			W(mk_ones(c, bn(b, l, "ssm_norm.weight"), di));
			W(mk_matrix(c, bn(b, l, "ssm_out.weight"), di, n_embd, inv_sqrt(di), MK_MATRIX, 0, 0));
		}
		W(ffn_weights(c, l, n_embd, n_ff, n_layer));
	}
	return 0;
}

const struct mk_model mk_models[] = {
	{ "llama-125m", "ggml-vocab-llama-spm.gguf", build_llama125m,
	  "llama, width 768, 12 layers, GQA 12/4, FFN 2048, 32000 vocab, untied output" },
	{ "gemma3-270m", "ggml-vocab-llama-spm.gguf", build_gemma3_270m,
	  "gemma3, width 640, 18 layers (5 SWA:1 global, window 512), 4/1 heads of 256, FFN 2048, 262144-row tied embedding" },
	{ "mamba-130m", "ggml-vocab-gpt-neox.gguf", build_mamba130m,
	  "mamba, width 768, 24 layers, d_inner 1536, d_state 16, dt_rank 48, 50280-row tied embedding" },
	{ "granite-h-350m", "ggml-vocab-gpt-2.gguf", build_granite_h350m,
	  "granitehybrid, width 768, 28 Mamba-2 + 4 attention layers, FFN 2048, 100352-row tied embedding" },
};
const uint32_t mk_n_models = sizeof(mk_models) / sizeof(mk_models[0]);
