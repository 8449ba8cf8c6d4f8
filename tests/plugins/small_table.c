/* A plugin whose factory table is smaller than the ABI's (an old or corrupt build). */
#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include "hyd/plugin.h"

struct truncated {
	uint32_t abi_version;
	uint32_t struct_size;
	const char *kind;
};

static const struct truncated tiny = { HYD_PLUGIN_ABI_VERSION, sizeof(struct truncated), "tiny" };
static const struct hyd_mixer_factory *const list[] = { (const struct hyd_mixer_factory *)&tiny, NULL };

__attribute__((visibility("default"))) const struct hyd_mixer_factory *const *hyd_plugin_entry(void);
const struct hyd_mixer_factory *const *hyd_plugin_entry(void)
{
	return list;
}
