/* Where the bundled default model is, for hydd and `hyd run` alike. */
#ifndef HYD_DAEMON_DEFAULT_MODEL_H
#define HYD_DAEMON_DEFAULT_MODEL_H

/* $HYD_DEFAULT_MODEL, else the installed copy, else the source tree's (running from a build
 * directory); NULL when none is readable.  The string is static or from the environment. */
const char *hyd_default_model(void);

#endif
