/* The "swa" plugin: sliding-window causal attention, KV in a ring of window - 1 + chunk slots (see plugins/common/attn_core.c). */
#include "config.h"

#include <stddef.h>

#include "plugins/common/attn_core.h"

static int swa_bind(const struct hyd_layer_desc *desc, const struct hyd_plugin_support *sup, void **ret_layer)
{
	return hyd__attn_bind(desc, sup, HYD_KV_RING, ret_layer);
}

static const struct hyd_mixer_factory swa_factory = {
	.abi_version = HYD_PLUGIN_ABI_VERSION,
	.struct_size = sizeof(struct hyd_mixer_factory),
	.kind = "swa",
	.description = "sliding-window causal attention (GQA), KV in a fixed ring",
	.bind = swa_bind,
	.unbind = hyd__attn_unbind,
	.state_layout = hyd__attn_state_layout,
	.scratch_size = hyd__attn_scratch_size,
	.state_init = hyd__attn_state_init,
	.forward = hyd__attn_forward,
};

static const struct hyd_mixer_factory *const factories[] = { &swa_factory, NULL };

__attribute__((visibility("default"))) const struct hyd_mixer_factory *const *hyd_plugin_entry(void);

const struct hyd_mixer_factory *const *hyd_plugin_entry(void)
{
	return factories;
}
