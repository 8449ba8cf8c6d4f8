/* jemalloc is linked in when configured (the default), where it replaces the C library's
 * malloc family for the whole process; sanitizer builds use --disable-jemalloc so ASan can
 * interpose instead.  Either way the code calls the standard names here, once. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/alloc.h"

void *hyd_malloc(size_t n)
{
	return malloc(n ? n : 1);
}

void *hyd_calloc(size_t count, size_t size)
{
	if (size && count > SIZE_MAX / size)
		return NULL;
	return calloc(count ? count : 1, size ? size : 1);
}

void *hyd_realloc(void *p, size_t n)
{
	return realloc(p, n ? n : 1);
}

void *hyd_aligned_alloc(size_t align, size_t n)
{
	void *p = NULL;
	if (posix_memalign(&p, align, n ? n : 1))
		return NULL;
	return p;
}

char *hyd_strdup(const char *s)
{
	return hyd_strndup(s, strlen(s));
}

char *hyd_strndup(const char *s, size_t n)
{
	char *d = hyd_malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

void hyd_free(void *p)
{
	free(p);
}
