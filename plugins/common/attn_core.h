/* Causal multi-head attention with grouped KV heads, shared by the "attn" plugin (KV in pages
 * that grow with the context) and the "swa" plugin (KV in a ring of window + chunk slots).
 * Only where a position's K/V row lives differs between the two; see kv_row(). */
#ifndef HYD_PLUGINS_ATTN_CORE_H
#define HYD_PLUGINS_ATTN_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "hyd/plugin.h"

enum hyd_kv_mode {
	HYD_KV_PAGED = 0,
	HYD_KV_RING = 1,
};

struct hyd_attn_layer {
	struct hyd_mixer_hparams hp;
	enum hyd_kv_mode mode;
	const struct hyd_tensor *wq, *wk, *wv, *wo;   /* {n_embd, n_head*hd_k}, ... {n_head*hd_v, n_embd} */
	const float *q_norm, *k_norm;                 /* per-head RMSNorm weights {hd_k}, or NULL */
	const float *bq, *bk, *bv, *bo;               /* optional biases */
	uint32_t q_dim, k_dim, v_dim;                 /* n_head*hd_k, n_kv*hd_k, n_kv*hd_v */
	float scale;
	const struct hyd_plugin_support *sup;
};

int hyd__attn_bind(const struct hyd_layer_desc *desc, const struct hyd_plugin_support *sup,
		   enum hyd_kv_mode mode, void **ret_layer);
void hyd__attn_unbind(void *layer);
int hyd__attn_state_layout(const void *layer, const struct hyd_state_limits *lim,
			   struct hyd_state_layout *ret);
uint64_t hyd__attn_scratch_size(const void *layer, const struct hyd_state_limits *lim, uint32_t max_rows,
				uint32_t n_threads);
void hyd__attn_state_init(const void *layer, void *state, const struct hyd_state_limits *lim);
int hyd__attn_forward(const void *layer, const struct hyd_mixer_batch *b);
void hyd__plugin_log(const struct hyd_plugin_support *sup, enum hyd_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
