/* The one allocator wrapper.  Everything private to a process allocates through these so the
 * allocator (jemalloc unless configured --disable-jemalloc) is chosen in one place. */
#ifndef HYD_ENGINE_ALLOC_H
#define HYD_ENGINE_ALLOC_H

#include <stddef.h>

void *hyd_malloc(size_t n);
void *hyd_calloc(size_t count, size_t size); /* checks count*size for overflow */
void *hyd_realloc(void *p, size_t n);
/* n bytes aligned to align (a power of two >= sizeof(void *)); free with hyd_free(). */
void *hyd_aligned_alloc(size_t align, size_t n);
char *hyd_strdup(const char *s);
char *hyd_strndup(const char *s, size_t n);
void hyd_free(void *p); /* accepts NULL */

#endif
