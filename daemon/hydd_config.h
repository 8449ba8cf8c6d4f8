/* hydd's settings: defaults, the config file (`key = value` lines) and the command line, which
 * overrides the file.  Named hydd_config.h, not config.h, so that `#include "config.h"` keeps
 * meaning autoconf's header in every file of daemon/. */
#ifndef HYD_DAEMON_HYDD_CONFIG_H
#define HYD_DAEMON_HYDD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct hydd_config {
	char *model;           /* NULL: the bundled default model */
	char *socket;          /* NULL: $HYD_SOCKET, then the default path */
	char *state_dir;       /* NULL: $XDG_RUNTIME_DIR/hyd/sessions or /run/hyd/sessions */
	char *plugin_dir;      /* NULL: $HYD_PLUGIN_PATH, then the install dir */
	char *config_file;     /* the file that was read, NULL if none */
	uint32_t threads;      /* 0: the CPUs available */
	uint32_t max_sessions; /* attached sessions; 0: 1024 */
	uint32_t max_context;  /* tokens per session; 0: the model's, at most 32768 */
	uint32_t max_chunk;    /* prefill tokens per session per step; 0: 256 */
	uint64_t memory_limit; /* bytes of session state; 0: none */
	bool foreground;
	int verbose;
};

/* What hyd__cfg_parse_args() decided. */
enum { HYD_CFG_RUN = 0, HYD_CFG_EXIT = 1 };

void hyd__cfg_init(struct hydd_config *c);
void hyd__cfg_free(struct hydd_config *c);

/* "123", "64K", "1.5G" ... (powers of 1024; optional trailing "B" / "iB").  -EINVAL, -ERANGE. */
int hyd__cfg_parse_size(const char *s, uint64_t *ret);
/* Set one setting by its long option name ("max-context"; '_' is accepted for '-').  -EINVAL
 * (unknown key or bad value, err says which), -ENOMEM. */
int hyd__cfg_set(struct hydd_config *c, const char *key, const char *value, char *err, size_t errlen);
/* Read `key = value` lines ('#' starts a comment line; blank lines ignored).  -ENOENT when the
 * file does not exist; -EINVAL with "FILE:LINE: reason" in err. */
int hyd__cfg_load_file(struct hydd_config *c, const char *path, char *err, size_t errlen);
/* The default config file: /etc/hyd/hydd.conf for root, else $XDG_CONFIG_HOME/hyd/hydd.conf
 * (~/.config/hyd/hydd.conf).  -ENOENT if no home is known, -ENAMETOOLONG. */
int hyd__cfg_default_file(char *buf, size_t len);
/* Parse the command line: --config FILE (or the default file when it exists) first, then the
 * flags.  HYD_CFG_EXIT after printing --help or --version to out; -EINVAL with err set on a
 * usage error. */
int hyd__cfg_parse_args(struct hydd_config *c, int argc, char **argv, FILE *out, char *err, size_t errlen);

extern const char hyd__cfg_usage[];

#endif
