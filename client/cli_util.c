/* Helpers shared by the hyd tool's subcommands. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/cli.h"
#include "daemon/default_model.h"
#include "engine/alloc.h"

_Noreturn void hyd_cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("hyd: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\nTry 'hyd --help' for more information.\n", stderr);
	va_end(ap);
	exit(HYD_EXIT_USAGE);
}

uint32_t hyd_cli_u32(const char *opt, const char *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (!*v || *end || errno || x > UINT32_MAX || *v == '-')
		hyd_cli_usage_error("%s expects a whole number, got '%s'", opt, v);
	return (uint32_t)x;
}

float hyd_cli_f32(const char *opt, const char *v)
{
	char *end;
	errno = 0;
	float x = strtof(v, &end);
	if (!*v || *end || errno || !isfinite(x))
		hyd_cli_usage_error("%s expects a number, got '%s'", opt, v);
	return x;
}

int hyd_cli_read_all(int fd, char **ret_buf, size_t *ret_len)
{
	size_t cap = 4096, len = 0;
	char *buf = hyd_malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (len + 1 >= cap) {
			char *nb = cap > SIZE_MAX / 2 ? NULL : hyd_realloc(buf, cap * 2);
			if (!nb) {
				hyd_free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = -errno;
			hyd_free(buf);
			return e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = 0;
	*ret_buf = buf;
	*ret_len = len;
	return 0;
}

const char *hyd_cli_default_model(void)
{
	return hyd_default_model();
}
