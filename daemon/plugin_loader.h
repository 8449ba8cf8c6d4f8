/* Finds and loads layer plugins (include/hyd/plugin.h).  A plugin file is refused — with a log
 * line naming the file and the reason — if it is writable by anyone but its owner, owned by a
 * user other than root or the daemon's, lacks the entry symbol, or declares an ABI version or
 * struct size this daemon does not understand.  Version and size are checked before any
 * method of a factory is called. */
#ifndef HYD_DAEMON_PLUGIN_LOADER_H
#define HYD_DAEMON_PLUGIN_LOADER_H

#include <stddef.h>

#include "hyd/plugin.h"

struct hyd_plugin_set;

/* Loads every "*.so" in the colon-separated directory list (NULL: $HYD_PLUGIN_PATH, else the
 * installed plugin directory).  Refused files are logged through sup->log and skipped. Fails
 * with -ENOENT if no usable plugin was found. */
int hyd_plugins_load(const char *dirs, const struct hyd_plugin_support *sup, struct hyd_plugin_set **ret_set,
		     char *err, size_t errlen);
/* Loads one file; -EPROTO (wrong ABI version or size), -ENOEXEC (not a plugin), -EPERM (unsafe
 * permissions), with the reason in err. */
int hyd_plugin_load_file(struct hyd_plugin_set *set, const char *file, char *err, size_t errlen);
int hyd_plugins_new(const struct hyd_plugin_support *sup, struct hyd_plugin_set **ret_set);
const struct hyd_mixer_factory *hyd_plugins_find(const struct hyd_plugin_set *set, const char *kind);
/* Comma-separated list of the kinds loaded, for messages. */
const char *hyd_plugins_kinds(const struct hyd_plugin_set *set);
void hyd_plugins_free(struct hyd_plugin_set *set); /* accepts NULL */

#endif
