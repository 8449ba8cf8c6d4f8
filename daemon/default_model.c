/* Where the bundled default model is. */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "daemon/default_model.h"

const char *hyd_default_model(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("HYD_DEFAULT_MODEL");
	if (env && *env)
		return env;
	const char *candidates[] = { HYD_DATA_DIR "/models/" HYD_DEFAULT_MODEL_FILE,
				     HYD_SRCDIR_MODELS "/" HYD_DEFAULT_MODEL_FILE };
	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
		if (access(candidates[i], R_OK) == 0) {
			snprintf(path, sizeof(path), "%s", candidates[i]);
			return path;
		}
	}
	return NULL;
}
