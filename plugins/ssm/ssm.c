/* The ssm plugin: state-space mixers with fixed-size, double-buffered per-session state. */
#include "config.h"

#include <stddef.h>

#include "plugins/ssm/ssm.h"

static const struct hyd_mixer_factory *const factories[] = {
	&hyd__mamba1_factory,
	&hyd__mamba2_factory,
	NULL,
};

__attribute__((visibility("default"))) const struct hyd_mixer_factory *const *hyd_plugin_entry(void);

const struct hyd_mixer_factory *const *hyd_plugin_entry(void)
{
	return factories;
}
