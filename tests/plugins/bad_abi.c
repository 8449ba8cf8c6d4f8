/* A plugin built for a future ABI: the loader must refuse it without calling any method. */
#include "config.h"

#include <stddef.h>
#include <stdlib.h>

#include "hyd/plugin.h"

static int must_not_be_called(const struct hyd_layer_desc *desc, const struct hyd_plugin_support *sup,
			      void **ret_layer)
{
	abort();
}

static const struct hyd_mixer_factory future = {
	.abi_version = HYD_PLUGIN_ABI_VERSION + 1,
	.struct_size = sizeof(struct hyd_mixer_factory),
	.kind = "future",
	.bind = must_not_be_called,
};

static const struct hyd_mixer_factory *const list[] = { &future, NULL };

__attribute__((visibility("default"))) const struct hyd_mixer_factory *const *hyd_plugin_entry(void);
const struct hyd_mixer_factory *const *hyd_plugin_entry(void)
{
	return list;
}
