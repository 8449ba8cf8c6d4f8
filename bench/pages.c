/* See pages.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench/pages.h"

#define HUGE ((size_t)2 << 20)

void *hyd__bench_huge_alloc(size_t bytes)
{
	if (bytes == 0 || bytes > SIZE_MAX - HUGE)
		return NULL;
	char *span = mmap(NULL, bytes + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (span == MAP_FAILED)
		return NULL;
	/* keep the 2 MiB-aligned part, give back the ends */
	char *at = (char *)(((uintptr_t)span + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
	if (at > span)
		munmap(span, (size_t)(at - span));
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t kept = (bytes + page - 1) & ~(page - 1);
	if (span + bytes + HUGE > at + kept)
		munmap(at + kept, (size_t)(span + bytes + HUGE - (at + kept)));
	/* advice before the first touch, so the faults themselves take 2 MiB pages */
	(void)madvise(at, kept, MADV_HUGEPAGE);
	memset(at, 0, bytes);
	return at;
}

void hyd__bench_huge_free(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes);
}

/* "Name:   123 kB" -> 123 * 1024 if the line is that field */
static bool field_kb(const char *line, const char *name, uint64_t *ret)
{
	const size_t n = strlen(name);
	if (strncmp(line, name, n) || line[n] != ':')
		return false;
	uint64_t kb;
	if (sscanf(line + n + 1, "%" SCNu64, &kb) != 1)
		return false;
	*ret = kb << 10;
	return true;
}

double hyd__bench_huge_share(const void *p, size_t bytes)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	const uintptr_t lo = (uintptr_t)p, hi = lo + bytes;
	uint64_t rss = 0, huge = 0, v;
	bool in = false, seen = false;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		uintptr_t a, b;
		/* a mapping's header line starts with its range; its fields follow */
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = a < hi && b > lo;
			seen |= in;
			continue;
		}
		if (!in)
			continue;
		if (field_kb(line, "Rss", &v))
			rss += v;
		else if (field_kb(line, "AnonHugePages", &v) || field_kb(line, "FilePmdMapped", &v))
			huge += v;
	}
	fclose(f);
	if (!seen || rss == 0)
		return -1;
	return (double)huge / (double)rss;
}

int hyd__bench_drop_cached(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = 0;
	if (fdatasync(fd) < 0)
		r = -errno;
	else
		r = -posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	return r;
}
