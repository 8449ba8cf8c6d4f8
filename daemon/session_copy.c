/* Copies of a session image: fork (into the state directory), snapshot (to any file, durably)
 * and restore (from such a file, after full validation).  All three write the same format;
 * only allocated pages are copied, so copies stay as sparse as the original. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/session_internal.h"
#include "engine/alloc.h"

#define COPY_CHUNK (1u << 20)

static int copy_range(int src_fd, int dst_fd, uint64_t off, uint64_t len, uint8_t *buf)
{
	while (len) {
		const size_t n = len < COPY_CHUNK ? (size_t)len : COPY_CHUNK;
		int rc = hyd__sess_pread_all(src_fd, buf, n, off);
		if (rc == 0)
			rc = hyd__sess_pwrite_all(dst_fd, buf, n, off);
		if (rc < 0)
			return rc;
		off += n;
		len -= n;
	}
	return 0;
}

int hyd__sess_copy_image(int src_fd, const struct hyd_sess_hdr *h, const struct hyd_sess_layer *layers, int dst_fd)
{
	if (ftruncate(dst_fd, (off_t)h->size) < 0)
		return -errno;
	uint8_t *buf = hyd_malloc(COPY_CHUNK);
	if (!buf)
		return -ENOMEM;
	const uint32_t pos = HYD_SESS_COMMIT_POS(h->commit);
	const uint32_t valid = h->replay_to > pos ? h->replay_to : pos;
	int rc = copy_range(src_fd, dst_fd, h->tokens_off, (uint64_t)valid * sizeof(int32_t), buf);
	for (uint32_t i = 0; i < h->n_layer && rc == 0; i++) {
		const struct hyd_sess_layer *L = &layers[i];
		rc = copy_range(src_fd, dst_fd, L->fixed_off, L->fixed_bytes, buf);
		if (rc == 0 && L->page_bytes)
			rc = copy_range(src_fd, dst_fd, L->pages_off,
					(uint64_t)L->n_pages * hyd__sess_page_stride(L->page_bytes), buf);
	}
	hyd_free(buf);
	if (rc == 0)
		rc = hyd__sess_pwrite_all(dst_fd, layers, (size_t)h->n_layer * sizeof(*layers), h->layers_off);
	/* Header last: a copy cut short has no magic and is never mistaken for a session. */
	if (rc == 0)
		rc = hyd__sess_pwrite_all(dst_fd, h, sizeof(*h), 0);
	return rc;
}

/* End of what is written through the mapping without pages: header, history, fixed regions. */
static uint64_t dense_end(const struct hyd_sess_hdr *h, const struct hyd_sess_layer *layers)
{
	uint64_t end = h->tokens_off + (uint64_t)h->max_ctx * sizeof(int32_t);
	for (uint32_t i = 0; i < h->n_layer; i++)
		if (layers[i].fixed_off + layers[i].fixed_bytes > end)
			end = layers[i].fixed_off + layers[i].fixed_bytes;
	return end;
}

static uint64_t image_bytes(const struct hyd_sess_hdr *h, const struct hyd_sess_layer *layers)
{
	uint64_t b = h->tokens_off + (uint64_t)h->max_ctx * sizeof(int32_t);
	for (uint32_t i = 0; i < h->n_layer; i++)
		b += layers[i].fixed_bytes + (uint64_t)layers[i].n_pages * layers[i].page_bytes;
	return b;
}

/* The session's current header, from the private state that is authoritative while attached. */
static void current_hdr(const struct hyd__sess *s, struct hyd_sess_hdr *ret)
{
	*ret = s->h;
	ret->commit = HYD_SESS_COMMIT(s->pos, s->state_index);
}

struct copy_ctx {
	int src_fd;
	const struct hyd_sess_hdr *h;
	const struct hyd_sess_layer *layers;
};

static int copy_fill(void *ctx, int fd)
{
	const struct copy_ctx *c = ctx;
	return hyd__sess_copy_image(c->src_fd, c->h, c->layers, fd);
}

static void set_label(struct hyd_sess_hdr *h, const char *label)
{
	if (label) {
		memset(h->label, 0, sizeof(h->label));
		snprintf(h->label, sizeof(h->label), "%s", label);
	}
}

int hyd__sess_fork(struct hyd__sess_store *st, const struct hyd__sess *src, uint32_t uid,
		     const char *label, struct hyd__sess **ret_session)
{
	struct hyd_sess_hdr h;
	current_hdr(src, &h);
	h.owner_uid = uid;
	h.created = (int64_t)time(NULL);
	set_label(&h, label);
	if (st->memory_limit && st->bytes_in_use + image_bytes(&h, src->layers) > st->memory_limit)
		return -ENOSPC;
	struct copy_ctx c = { src->fd, &h, src->layers };
	return hyd__sess_publish(st, h.size, dense_end(&h, src->layers), copy_fill, &c, ret_session);
}

static int fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) < sizeof(dir))
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	else
		return -ENAMETOOLONG;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	int rc = fsync(dfd) < 0 ? -errno : 0;
	close(dfd);
	return rc;
}

int hyd__sess_snapshot(const struct hyd__sess *s, const char *path)
{
	char tmp[PATH_MAX];
	if (!path || !path[0])
		return -EINVAL;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	/* Same directory as the target, so the rename is atomic; mkostemp creates it 0600. */
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct hyd_sess_hdr h;
	current_hdr(s, &h);
	int rc = hyd__sess_copy_image(s->fd, &h, s->layers, fd);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	return fsync_parent(path);
}

int hyd__sess_restore(struct hyd__sess_store *st, const char *path, uint32_t uid, const char *label,
			struct hyd__sess **ret_session, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		int rc = -errno;
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	struct stat sb;
	int rc;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		if (err && errlen)
			snprintf(err, errlen, "%s: not a regular file", path);
		rc = -EBADMSG;
		goto out;
	}
	struct hyd__sess_expect ex;
	hyd__sess_expect_store(st, uid, &ex);
	struct hyd_sess_hdr h;
	struct hyd_sess_layer *layers;
	rc = hyd__sess_read(fd, (uint64_t)sb.st_size, &ex, &h, &layers, err, errlen);
	if (rc < 0)
		goto out;
	h.created = (int64_t)time(NULL);
	set_label(&h, label);
	if (st->memory_limit && st->bytes_in_use + image_bytes(&h, layers) > st->memory_limit) {
		rc = -ENOSPC;
	} else {
		/* Copied from the validated private header, then validated again at attach: whatever
		 * the source file does meanwhile, the new session's structure is sound. */
		struct copy_ctx c = { fd, &h, layers };
		rc = hyd__sess_publish(st, h.size, dense_end(&h, layers), copy_fill, &c, ret_session);
	}
	hyd_free(layers);
out:
	close(fd);
	return rc;
}
