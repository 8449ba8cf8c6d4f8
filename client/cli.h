/* Shared bits of the hyd tool's subcommands. */
#ifndef HYD_CLIENT_CLI_H
#define HYD_CLIENT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes a shell user can act on. */
enum {
	HYD_EXIT_OK = 0,
	HYD_EXIT_FAIL = 1,   /* the operation failed (message on stderr) */
	HYD_EXIT_USAGE = 2,  /* bad command line */
	HYD_EXIT_NODAEMON = 3, /* cannot reach hydd */
};

int hyd_cmd_run(int argc, char **argv);
int hyd_cmd_eval(int argc, char **argv);
int hyd_cmd_tokenize(int argc, char **argv);

/* Reads all of stdin (or a file) into a NUL-terminated heap buffer. */
int hyd_cli_read_all(int fd, char **ret_buf, size_t *ret_len);
/* Path of the bundled default model, or NULL if it is not installed/built. */
const char *hyd_cli_default_model(void);
/* Parses an unsigned/float option value or exits with a usage error naming the option. */
uint32_t hyd_cli_u32(const char *opt, const char *v);
float hyd_cli_f32(const char *opt, const char *v);
_Noreturn void hyd_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
