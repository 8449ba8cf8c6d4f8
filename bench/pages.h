/* Page sizes for the benchmarks: buffers in 2 MiB pages, how much of a range the kernel maps
 * with 2 MiB pages, and dropping a file from the page cache.
 *
 * A read pass over 4 KiB pages takes a TLB miss every 4 KiB: on the Zen 4 of the seventh
 * session one core then read 25.7-28.4 GB/s instead of 30.5-31.1 GB/s.  hydd maps model
 * weights for 2 MiB pages (daemon/gguf.c), so the bound a decode run is held to must come
 * from a read pass over 2 MiB pages too, and the table says how much of the weights really
 * were mapped that way (docs/PERFORMANCE.md). */
#ifndef HYD_BENCH_PAGES_H
#define HYD_BENCH_PAGES_H

#include <stddef.h>

/* bytes of anonymous memory, 2 MiB aligned, advised for transparent huge pages (which the
 * kernel gives when THP is "always" or "madvise"), every page touched (zero-filled); NULL
 * when out of memory.  Free with hyd__bench_huge_free(p, bytes). */
void *hyd__bench_huge_alloc(size_t bytes);
void hyd__bench_huge_free(void *p, size_t bytes);

/* The share (0..1) of the resident memory of the mappings that overlap [p, p + bytes) which
 * the kernel maps with 2 MiB pages (/proc/self/smaps: AnonHugePages + FilePmdMapped over
 * Rss); -1 when that cannot be read. */
double hyd__bench_huge_share(const void *p, size_t bytes);

/* Writes the file's dirty pages back and drops its pages from the page cache, as if it had
 * been on disk all along: the next reader maps it the way hydd meets a model on disk (on
 * filesystems with large folios, in 2 MiB pages).  0 or a negative errno. */
int hyd__bench_drop_cached(const char *path);

#endif
