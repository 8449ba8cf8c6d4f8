/* Session store: creating, attaching and updating session files.  Layout and protocol:
 * daemon/session_format.h and docs/SESSIONS.md. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/session_internal.h"
#include "engine/alloc.h"

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *arg)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, arg);
}

int hyd__sess_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int hyd__sess_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* the file shrank under us */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static bool valid_id(const char *id)
{
	size_t i = 0;
	for (; id[i]; i++) {
		if (i >= HYD_SESSION_ID_LEN || !((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	}
	return i == HYD_SESSION_ID_LEN;
}

static int gen_id(char ret_id[HYD_SESSION_ID_LEN + 1])
{
	uint8_t r[HYD_SESSION_ID_LEN / 2];
	size_t got = 0;
	while (got < sizeof(r)) {
		ssize_t n = getrandom(r + got, sizeof(r) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < sizeof(r); i++) {
		ret_id[2 * i] = hex[r[i] >> 4];
		ret_id[2 * i + 1] = hex[r[i] & 15];
	}
	ret_id[HYD_SESSION_ID_LEN] = 0;
	return 0;
}

/* Lay out a new session file for the store's model. */
static int compute_layout(const struct hyd__sess_store *st, struct hyd_sess_hdr *h, struct hyd_sess_layer *layers,
			  uint64_t *ret_dense)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, HYD_SESS_MAGIC, sizeof(h->magic));
	h->version = HYD_SESS_VERSION;
	h->hdr_bytes = sizeof(*h);
	memcpy(h->fingerprint, st->fingerprint, sizeof(h->fingerprint));
	h->n_layer = st->n_layer;
	h->max_ctx = st->max_ctx;
	h->layers_off = sizeof(*h);
	h->tokens_off = h->layers_off + (uint64_t)st->n_layer * sizeof(*layers);
	uint64_t off = align_up(h->tokens_off + (uint64_t)st->max_ctx * sizeof(int32_t), HYD_SESS_AREA_ALIGN);
	for (uint32_t i = 0; i < st->n_layer; i++) {
		const struct hyd_state_layout *lay = &st->layouts[i];
		struct hyd_sess_layer *L = &layers[i];
		memset(L, 0, sizeof(*L));
		memcpy(L->kind, st->kinds[i], sizeof(L->kind));
		L->flags = lay->flags;
		L->fixed_off = align_up(off, HYD_SESS_FIXED_ALIGN);
		L->fixed_bytes = lay->fixed_bytes;
		off = L->fixed_off + L->fixed_bytes;
		if (off > HYD_SESS_MAX_FILE)
			return -E2BIG;
	}
	const uint64_t dense = align_up(off, HYD_SESS_AREA_ALIGN);
	off = dense;
	for (uint32_t i = 0; i < st->n_layer; i++) {
		const struct hyd_state_layout *lay = &st->layouts[i];
		struct hyd_sess_layer *L = &layers[i];
		if (!lay->page_bytes)
			continue;
		L->page_bytes = lay->page_bytes;
		L->page_tokens = lay->page_tokens;
		L->max_pages = (st->max_ctx + lay->page_tokens - 1) / lay->page_tokens;
		L->pages_off = align_up(off, HYD_SESS_AREA_ALIGN);
		off = L->pages_off + hyd__sess_page_stride(lay->page_bytes) * L->max_pages;
		if (off > HYD_SESS_MAX_FILE)
			return -E2BIG;
	}
	h->size = align_up(off, HYD_SESS_AREA_ALIGN);
	*ret_dense = dense;
	return 0;
}

static uint64_t header_bytes(const struct hyd_sess_hdr *h)
{
	return h->tokens_off + (uint64_t)h->max_ctx * sizeof(int32_t);
}

uint64_t hyd__sess_bytes_for(const struct hyd__sess_model *m, uint32_t n_tokens)
{
	uint64_t b = sizeof(struct hyd_sess_hdr) + (uint64_t)m->n_layer * sizeof(struct hyd_sess_layer) +
		     (uint64_t)m->max_ctx * sizeof(int32_t);
	for (uint32_t i = 0; i < m->n_layer; i++) {
		const struct hyd_state_layout *lay = &m->layouts[i];
		b += lay->fixed_bytes;
		if (lay->page_bytes && lay->page_tokens)
			b += ((uint64_t)n_tokens + lay->page_tokens - 1) / lay->page_tokens * lay->page_bytes;
	}
	return b;
}

static uint64_t session_bytes(const struct hyd__sess *s)
{
	uint64_t b = header_bytes(&s->h);
	for (uint32_t i = 0; i < s->h.n_layer; i++)
		b += s->layers[i].fixed_bytes + (uint64_t)s->layers[i].n_pages * s->layers[i].page_bytes;
	return b;
}

static void account(struct hyd__sess *s)
{
	const uint64_t b = session_bytes(s);
	s->st->bytes_in_use = s->st->bytes_in_use - s->bytes + b;
	s->bytes = b;
}

/* ------------------------------------------------------------------------------------ store */

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != 0)
			continue;
		const char c = buf[i];
		buf[i] = 0;
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		buf[i] = c;
	}
	return 0;
}

int hyd__sess_default_dir(char *buf, size_t len)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	int n;
	if (rt && rt[0] == '/')
		n = snprintf(buf, len, "%s/hyd/sessions", rt);
	else if (geteuid() == 0)
		n = snprintf(buf, len, "/run/hyd/sessions");
	else
		return -ENOENT;
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int check_model(const struct hyd__sess_model *m, char *err, size_t errlen)
{
	if (!m || !m->kinds || !m->layouts || m->n_layer == 0 || m->n_layer > HYD_SESS_MAX_LAYERS) {
		set_err(err, errlen, "%s", "session store: bad layer count");
		return -EINVAL;
	}
	if (m->max_ctx == 0 || m->max_ctx > HYD_SESS_MAX_CTX) {
		set_err(err, errlen, "%s", "session store: max_ctx out of range");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < m->n_layer; i++) {
		const struct hyd_state_layout *lay = &m->layouts[i];
		if (!m->kinds[i] || !m->kinds[i][0] || strlen(m->kinds[i]) >= HYD_SESS_KIND_LEN ||
		    (lay->flags & ~HYD_STATE_DOUBLE_BUFFERED) ||
		    ((lay->flags & HYD_STATE_DOUBLE_BUFFERED) && lay->fixed_bytes % 2) ||
		    (lay->page_bytes && (lay->page_tokens == 0 || lay->page_tokens > m->max_ctx))) {
			set_err(err, errlen, "session store: bad state layout of a '%s' layer",
				m->kinds[i] ? m->kinds[i] : "?");
			return -EINVAL;
		}
	}
	return 0;
}

int hyd__sess_store_open(const struct hyd__sess_store_opts *opts, const struct hyd__sess_model *model,
			   struct hyd__sess_store **ret_store, char *err, size_t errlen)
{
	if (!opts || !opts->dir || !opts->dir[0])
		return -EINVAL;
	int rc = check_model(model, err, errlen);
	if (rc < 0)
		return rc;
	rc = mkdir_p(opts->dir);
	if (rc < 0) {
		set_err(err, errlen, "cannot create state directory %s", opts->dir);
		return rc;
	}
	int dirfd = open(opts->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		rc = -errno;
		set_err(err, errlen, "cannot open state directory %s", opts->dir);
		return rc;
	}
	struct stat sb;
	if (fstat(dirfd, &sb) < 0 || sb.st_uid != geteuid() || (sb.st_mode & 022)) {
		/* Anyone who can write the directory could swap session files under us. */
		set_err(err, errlen, "state directory %s is not ours or is writable by others", opts->dir);
		close(dirfd);
		return -EPERM;
	}

	struct hyd__sess_store *st = hyd_calloc(1, sizeof(*st));
	if (!st) {
		close(dirfd);
		return -ENOMEM;
	}
	st->dirfd = dirfd;
	st->n_layer = model->n_layer;
	st->max_ctx = model->max_ctx;
	memcpy(st->fingerprint, model->fingerprint, sizeof(st->fingerprint));
	st->state_init = model->state_init;
	st->state_init_ctx = model->state_init_ctx;
	st->memory_limit = opts->memory_limit;
	st->kinds = hyd_calloc(model->n_layer, sizeof(*st->kinds));
	st->layouts = hyd_calloc(model->n_layer, sizeof(*st->layouts));
	st->kind_of = hyd_calloc(model->n_layer, sizeof(*st->kind_of));
	if (!st->kinds || !st->layouts || !st->kind_of) {
		hyd__sess_store_close(st);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < model->n_layer; i++) {
		strcpy(st->kinds[i], model->kinds[i]);
		st->layouts[i] = model->layouts[i];
		if (!st->layouts[i].page_bytes)
			st->layouts[i].page_tokens = 0;
		uint32_t k = 0;
		while (k < st->n_kinds && strcmp(st->kind_names[k], st->kinds[i]) != 0)
			k++;
		if (k == st->n_kinds) {
			if (k == HYD_SESSION_MAX_KINDS) {
				set_err(err, errlen, "%s", "session store: too many layer kinds");
				hyd__sess_store_close(st);
				return -EINVAL;
			}
			strcpy(st->kind_names[k], st->kinds[i]);
			st->n_kinds++;
		}
		st->kind_of[i] = k;
	}
	*ret_store = st;
	return 0;
}

void hyd__sess_store_close(struct hyd__sess_store *st)
{
	if (!st)
		return;
	while (st->sessions)
		hyd__sess_detach(st->sessions);
	if (st->dirfd >= 0)
		close(st->dirfd);
	hyd_free(st->kinds);
	hyd_free(st->layouts);
	hyd_free(st->kind_of);
	hyd_free(st);
}

/* ------------------------------------------------------------------------------- attaching */

static void punch(int fd, uint64_t off, uint64_t len)
{
	/* Releasing memory is best effort: a file system without hole punching keeps the bytes,
	 * which costs memory but never correctness. */
	if (len)
		(void)fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

static int reserve(int fd, uint64_t off, uint64_t len)
{
	/* Backing pages now turns a full tmpfs into -ENOSPC here instead of SIGBUS in a kernel. */
	if (len && fallocate(fd, 0, (off_t)off, (off_t)len) < 0 && errno != EOPNOTSUPP)
		return -errno;
	return 0;
}

static void publish_commit(struct hyd__sess *s, uint32_t pos, uint32_t si)
{
	__atomic_store_n(&s->hdr->commit, HYD_SESS_COMMIT(pos, si), __ATOMIC_RELEASE);
	s->pos = pos;
	s->state_index = si;
	s->view.pos = pos;
	s->view.state_index = si;
}

static void set_flags(struct hyd__sess *s, uint32_t flags)
{
	__atomic_store_n(&s->hdr->flags, flags, __ATOMIC_RELEASE);
	s->h.flags = flags;
}

static void set_n_pages(struct hyd__sess *s, uint32_t i, uint32_t n)
{
	__atomic_store_n(&s->map_layers[i].n_pages, n, __ATOMIC_RELEASE);
	s->layers[i].n_pages = n;
	s->ls[i].n_pages = n;
}

/* Empty state: pos 0 published first, then the fixed regions initialised, then the flag that
 * asked for it cleared; a crash anywhere in between repeats this at the next attach. */
static void run_init(struct hyd__sess *s)
{
	publish_commit(s, 0, 0);
	if (s->st->state_init) {
		s->st->state_init(s->st->state_init_ctx, s->fixed_ptrs);
	} else {
		for (uint32_t i = 0; i < s->h.n_layer; i++)
			memset(s->fixed_ptrs[i], 0, s->layers[i].fixed_bytes);
	}
	set_flags(s, s->h.flags & ~HYD_SESS_F_NEEDS_INIT);
}

static void drop_pages(struct hyd__sess *s, uint32_t n_tokens)
{
	for (uint32_t i = 0; i < s->h.n_layer; i++) {
		const struct hyd_sess_layer *L = &s->layers[i];
		if (!L->page_bytes)
			continue;
		const uint32_t keep = (uint32_t)(((uint64_t)n_tokens + L->page_tokens - 1) / L->page_tokens);
		const uint32_t had = L->n_pages;
		if (had <= keep)
			continue;
		set_n_pages(s, i, keep);
		const uint64_t stride = hyd__sess_page_stride(L->page_bytes);
		punch(s->fd, L->pages_off + keep * stride, (uint64_t)(had - keep) * stride);
	}
	account(s);
}

static void session_free(struct hyd__sess *s)
{
	if (s->base)
		munmap(s->base, s->size);
	if (s->fd >= 0)
		close(s->fd);
	hyd_free(s->layers);
	hyd_free(s->ls);
	hyd_free(s->page_ptrs);
	hyd_free(s->fixed_ptrs);
	hyd_free(s);
}

/* Attach an open session file (takes ownership of fd on success). */
static int attach_fd(struct hyd__sess_store *st, int fd, const char *id, uint32_t uid,
		     struct hyd__sess **ret_session, char *err, size_t errlen)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return -errno;
	if (!S_ISREG(sb.st_mode)) {
		set_err(err, errlen, "%s", "not a regular file");
		return -EBADMSG;
	}
	if (sb.st_uid != geteuid()) {
		set_err(err, errlen, "%s", "file is owned by another user");
		return -EACCES;
	}
	if (sb.st_mode & 077) {
		char mode[8];
		snprintf(mode, sizeof(mode), "%03o", (unsigned)(sb.st_mode & 0777));
		set_err(err, errlen, "file mode %s is not 0600", mode);
		return -EBADMSG;
	}
	struct hyd__sess_expect ex;
	hyd__sess_expect_store(st, uid, &ex);
	struct hyd_sess_hdr h;
	struct hyd_sess_layer *layers;
	int rc = hyd__sess_read(fd, (uint64_t)sb.st_size, &ex, &h, &layers, err, errlen);
	if (rc < 0)
		return rc;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		set_err(err, errlen, "%s", "session is attached by another process");
		hyd_free(layers);
		return rc;
	}

	struct hyd__sess *s = hyd_calloc(1, sizeof(*s));
	if (!s) {
		hyd_free(layers);
		return -ENOMEM;
	}
	s->fd = -1;
	s->st = st;
	s->h = h;
	s->layers = layers;
	s->size = h.size;
	snprintf(s->id, sizeof(s->id), "%s", id);
	size_t n_ptrs = 0;
	for (uint32_t i = 0; i < h.n_layer; i++)
		n_ptrs += layers[i].max_pages;
	s->ls = hyd_calloc(h.n_layer, sizeof(*s->ls));
	s->fixed_ptrs = hyd_calloc(h.n_layer, sizeof(*s->fixed_ptrs));
	s->page_ptrs = hyd_calloc(n_ptrs ? n_ptrs : 1, sizeof(*s->page_ptrs));
	if (!s->ls || !s->fixed_ptrs || !s->page_ptrs) {
		session_free(s);
		return -ENOMEM;
	}
	void *base = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		set_err(err, errlen, "mmap: %s", strerror(-rc));
		session_free(s);
		return rc;
	}
	/* Mamba-2 states are streamed whole every token: huge pages spare a TLB miss per 4 KiB
	 * (daemon/local_seq.c).  Shared memory gets them only where the administrator allows it
	 * (/sys/kernel/mm/transparent_hugepage/shmem_enabled: advise or within_size); elsewhere
	 * this changes nothing, so its result is not checked. */
	if (s->size >= ((size_t)2 << 20))
		(void)madvise(base, s->size, MADV_HUGEPAGE);
	s->base = base;
	s->fd = fd;
	s->hdr = (struct hyd_sess_hdr *)s->base;
	s->map_layers = (struct hyd_sess_layer *)(s->base + h.layers_off);
	s->tokens = (int32_t *)(s->base + h.tokens_off);
	s->pos = HYD_SESS_COMMIT_POS(h.commit);
	s->state_index = HYD_SESS_COMMIT_SI(h.commit);
	void **pp = s->page_ptrs;
	for (uint32_t i = 0; i < h.n_layer; i++) {
		const struct hyd_sess_layer *L = &layers[i];
		s->fixed_ptrs[i] = s->base + L->fixed_off;
		s->ls[i].fixed = s->fixed_ptrs[i];
		if (L->page_bytes) {
			const uint64_t stride = hyd__sess_page_stride(L->page_bytes);
			for (uint32_t k = 0; k < L->max_pages; k++)
				pp[k] = s->base + L->pages_off + k * stride;
			s->ls[i].pages = pp;
			s->ls[i].n_pages = L->n_pages;
			pp += L->max_pages;
		}
	}
	s->view.layers = s->ls;
	s->view.pos = s->pos;
	s->view.state_index = s->state_index;

	if (s->h.flags & HYD_SESS_F_NEEDS_INIT)
		run_init(s);
	/* A crash between backing a page and publishing the count leaves backed slots past
	 * n_pages: give them back. */
	for (uint32_t i = 0; i < h.n_layer; i++) {
		const struct hyd_sess_layer *L = &layers[i];
		if (L->page_bytes) {
			const uint64_t stride = hyd__sess_page_stride(L->page_bytes);
			punch(fd, L->pages_off + L->n_pages * stride, (uint64_t)(L->max_pages - L->n_pages) * stride);
		}
	}
	account(s);
	s->next = st->sessions;
	if (st->sessions)
		st->sessions->prev = s;
	st->sessions = s;
	*ret_session = s;
	return 0;
}

int hyd__sess_attach(struct hyd__sess_store *st, const char *id, uint32_t uid,
		       struct hyd__sess **ret_session, char *err, size_t errlen)
{
	if (!id || !valid_id(id)) {
		set_err(err, errlen, "%s", "not a session id (32 hex digits)");
		return -EINVAL;
	}
	int fd = openat(st->dirfd, id, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int rc = -errno;
		set_err(err, errlen, "%s", rc == -ENOENT ? "no such session" : strerror(-rc));
		return rc;
	}
	int rc = attach_fd(st, fd, id, uid, ret_session, err, errlen);
	if (rc < 0)
		close(fd);
	return rc;
}

void hyd__sess_detach(struct hyd__sess *s)
{
	if (!s)
		return;
	struct hyd__sess_store *st = s->st;
	st->bytes_in_use -= s->bytes;
	if (s->prev)
		s->prev->next = s->next;
	else
		st->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	session_free(s);
}

int hyd__sess_delete(struct hyd__sess *s)
{
	if (unlinkat(s->st->dirfd, s->id, 0) < 0)
		return -errno;
	hyd__sess_detach(s);
	return 0;
}

static bool valid_name(const char *name)
{
	return name && name[0] && strchr(name, '/') == NULL && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
	       strlen(name) < sizeof(((struct hyd__sess_info *)0)->name);
}

int hyd__sess_remove(struct hyd__sess_store *st, const char *name)
{
	if (!valid_name(name))
		return -EINVAL;
	for (struct hyd__sess *s = st->sessions; s; s = s->next)
		if (strcmp(s->id, name) == 0)
			return -EBUSY;
	int fd = openat(st->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd >= 0) {
		/* Never pull a session out from under another process that has it attached. */
		int busy = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
		close(fd);
		if (busy)
			return -EBUSY;
	}
	if (unlinkat(st->dirfd, name, 0) < 0)
		return -errno;
	return 0;
}

/* ------------------------------------------------------------------------------- creating */

int hyd__sess_publish(struct hyd__sess_store *st, uint64_t size, uint64_t dense_bytes,
		      int (*fill)(void *ctx, int fd), void *ctx, struct hyd__sess **ret_session)
{
	char id[HYD_SESSION_ID_LEN + 1], tmp[HYD_SESSION_ID_LEN + 8];
	int rc = gen_id(id);
	if (rc < 0)
		return rc;
	/* Built under a dot-name and renamed into place, so the id never names a half-written file. */
	snprintf(tmp, sizeof(tmp), ".%s.tmp", id);
	int fd = openat(st->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	const char *name = tmp;
	if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)size) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = reserve(fd, 0, dense_bytes);
	if (rc < 0)
		goto fail;
	rc = fill(ctx, fd);
	if (rc < 0)
		goto fail;
	if (renameat2(st->dirfd, tmp, st->dirfd, id, RENAME_NOREPLACE) < 0) {
		rc = -errno;
		goto fail;
	}
	name = id;
	char err[160];
	rc = attach_fd(st, fd, id, HYD_SESSION_ANY_UID, ret_session, err, sizeof(err));
	if (rc < 0)
		goto fail;
	return 0;
fail:
	unlinkat(st->dirfd, name, 0);
	close(fd);
	return rc;
}

struct create_ctx {
	const struct hyd_sess_hdr *h;
	const struct hyd_sess_layer *layers;
};

static int create_fill(void *ctx, int fd)
{
	const struct create_ctx *c = ctx;
	int rc = hyd__sess_pwrite_all(fd, c->layers, (size_t)c->h->n_layer * sizeof(*c->layers), c->h->layers_off);
	if (rc < 0)
		return rc;
	return hyd__sess_pwrite_all(fd, c->h, sizeof(*c->h), 0);
}

static void copy_label(char dst[HYD_SESS_LABEL_LEN], const char *label)
{
	memset(dst, 0, HYD_SESS_LABEL_LEN);
	if (label)
		snprintf(dst, HYD_SESS_LABEL_LEN, "%s", label);
}

int hyd__sess_create(struct hyd__sess_store *st, uint32_t uid, const char *label,
		       struct hyd__sess **ret_session)
{
	struct hyd_sess_hdr h;
	struct hyd_sess_layer *layers = hyd_calloc(st->n_layer, sizeof(*layers));
	if (!layers)
		return -ENOMEM;
	uint64_t dense;
	int rc = compute_layout(st, &h, layers, &dense);
	if (rc < 0)
		goto out;
	h.owner_uid = uid;
	h.created = (int64_t)time(NULL);
	/* The fixed regions are initialised by the attach that publishing ends with. */
	h.flags = HYD_SESS_F_NEEDS_INIT;
	copy_label(h.label, label);
	uint64_t need = header_bytes(&h);
	for (uint32_t i = 0; i < st->n_layer; i++)
		need += layers[i].fixed_bytes;
	if (st->memory_limit && st->bytes_in_use + need > st->memory_limit) {
		rc = -ENOSPC;
		goto out;
	}
	struct create_ctx c = { &h, layers };
	rc = hyd__sess_publish(st, h.size, dense, create_fill, &c, ret_session);
out:
	hyd_free(layers);
	return rc;
}

/* ------------------------------------------------------------------------------ stepping */

const char *hyd__sess_id(const struct hyd__sess *s)
{
	return s->id;
}

uint32_t hyd__sess_owner(const struct hyd__sess *s)
{
	return s->h.owner_uid;
}

uint32_t hyd__sess_pos(const struct hyd__sess *s)
{
	return s->pos;
}

uint32_t hyd__sess_state_index(const struct hyd__sess *s)
{
	return s->state_index;
}

uint32_t hyd__sess_max_ctx(const struct hyd__sess *s)
{
	return s->h.max_ctx;
}

int64_t hyd__sess_created(const struct hyd__sess *s)
{
	return s->h.created;
}

const char *hyd__sess_label(const struct hyd__sess *s)
{
	return s->h.label;
}

const int32_t *hyd__sess_tokens(const struct hyd__sess *s)
{
	return s->tokens;
}

struct hyd_seq_view *hyd__sess_view(struct hyd__sess *s)
{
	return &s->view;
}

uint32_t hyd__sess_replay_to(const struct hyd__sess *s)
{
	return s->h.replay_to > s->pos ? s->h.replay_to : s->pos;
}

int hyd__sess_ensure_capacity(struct hyd__sess *s, uint32_t n_tokens)
{
	if (n_tokens > s->h.max_ctx)
		return -E2BIG;
	uint64_t extra = 0;
	for (uint32_t i = 0; i < s->h.n_layer; i++) {
		const struct hyd_sess_layer *L = &s->layers[i];
		if (!L->page_bytes)
			continue;
		const uint32_t need = (uint32_t)(((uint64_t)n_tokens + L->page_tokens - 1) / L->page_tokens);
		if (need > L->n_pages)
			extra += (uint64_t)(need - L->n_pages) * L->page_bytes;
	}
	if (!extra)
		return 0;
	if (s->st->memory_limit && s->st->bytes_in_use + extra > s->st->memory_limit)
		return -ENOSPC;
	int rc = 0;
	for (uint32_t i = 0; i < s->h.n_layer && rc == 0; i++) {
		const struct hyd_sess_layer *L = &s->layers[i];
		if (!L->page_bytes)
			continue;
		const uint32_t need = (uint32_t)(((uint64_t)n_tokens + L->page_tokens - 1) / L->page_tokens);
		if (need <= L->n_pages)
			continue;
		const uint64_t stride = hyd__sess_page_stride(L->page_bytes);
		/* Back the slots first, publish the count after: a crash in between leaks nothing that
		 * the next attach does not punch out again. */
		rc = reserve(s->fd, L->pages_off + L->n_pages * stride, (uint64_t)(need - L->n_pages) * stride);
		if (rc == 0)
			set_n_pages(s, i, need);
	}
	account(s);
	return rc;
}

/* Forget the stored random stream (docs/SESSIONS.md, generation state). */
static void gen_clear_slots(struct hyd__sess *s)
{
	for (int k = 0; k < 2; k++) {
		__atomic_store_n(&s->hdr->gen[k].n_tokens, 0, __ATOMIC_RELAXED);
		s->h.gen[k].n_tokens = 0;
	}
}

int hyd__sess_commit(struct hyd__sess *s, uint32_t n, const int32_t *tokens)
{
	if (n == 0 || !tokens)
		return -EINVAL;
	if (n > s->h.max_ctx - s->pos)
		return -E2BIG;
	const uint32_t end = s->pos + n;
	for (uint32_t i = 0; i < s->h.n_layer; i++) {
		const struct hyd_sess_layer *L = &s->layers[i];
		if (L->page_bytes && (uint64_t)L->n_pages * L->page_tokens < end)
			return -EINVAL;
	}
	if (s->h.replay_to > s->pos) {
		/* A replay appends the history's own tokens; anything else ends the replay, and the
		 * rest of the old history stops being valid before it is overwritten. */
		const uint32_t m = s->h.replay_to - s->pos < n ? s->h.replay_to - s->pos : n;
		if (memcmp(s->tokens + s->pos, tokens, (size_t)m * sizeof(*tokens)) != 0) {
			__atomic_store_n(&s->hdr->replay_to, 0, __ATOMIC_RELEASE);
			s->h.replay_to = 0;
		}
	}
	memmove(s->tokens + s->pos, tokens, (size_t)n * sizeof(*tokens));
	/* Everything of the step (state, pages, history) is written; this store makes it count. */
	publish_commit(s, end, s->state_index ^ 1u);
	return 0;
}

int hyd__sess_push_pending(struct hyd__sess *s, const int32_t *tokens, uint32_t n)
{
	const uint32_t end = hyd__sess_replay_to(s);
	if (n == 0)
		return 0;
	if (!tokens)
		return -EINVAL;
	if (n > s->h.max_ctx - end)
		return -E2BIG;
	/* Past the valid history nothing reads these slots until replay_to covers them. */
	memcpy(s->tokens + end, tokens, (size_t)n * sizeof(*tokens));
	__atomic_store_n(&s->hdr->replay_to, end + n, __ATOMIC_RELEASE);
	s->h.replay_to = end + n;
	return 0;
}

int hyd__sess_set_pending_end(struct hyd__sess *s, uint32_t end)
{
	if (end < s->pos || end > hyd__sess_replay_to(s))
		return -ERANGE;
	if (end < hyd__sess_replay_to(s))
		gen_clear_slots(s);
	const uint32_t v = end > s->pos ? end : 0;
	__atomic_store_n(&s->hdr->replay_to, v, __ATOMIC_RELEASE);
	s->h.replay_to = v;
	return 0;
}

/* ------------------------------------------------------------------- generation state */

void hyd__sess_gen_clear(struct hyd__sess *s)
{
	gen_clear_slots(s);
}

int hyd__sess_gen_save(struct hyd__sess *s, uint64_t seed, const uint64_t rng[4])
{
	const uint32_t n = hyd__sess_replay_to(s) + 1;
	if (n > s->h.max_ctx)
		return -E2BIG;
	if (seed != s->h.gen_seed) {
		/* Another stream: no slot may pair the new seed with the old stream's state. */
		gen_clear_slots(s);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		__atomic_store_n(&s->hdr->gen_seed, seed, __ATOMIC_RELAXED);
		s->h.gen_seed = seed;
	}
	/* The slot of the other parity holds the state for the session's current length and stays
	 * intact; this one is invalidated while its state is torn. */
	struct hyd_sess_gen *g = &s->hdr->gen[n & 1];
	__atomic_store_n(&g->n_tokens, 0, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(g->rng, rng, sizeof(g->rng));
	__atomic_store_n(&g->n_tokens, n, __ATOMIC_RELEASE);
	memcpy(s->h.gen[n & 1].rng, rng, sizeof(g->rng));
	s->h.gen[n & 1].n_tokens = n;
	return 0;
}

bool hyd__sess_gen_load(const struct hyd__sess *s, uint64_t seed, uint64_t ret_rng[4])
{
	const uint32_t n = hyd__sess_replay_to(s);
	const struct hyd_sess_gen *g = &s->h.gen[n & 1];
	if (n == 0 || seed != s->h.gen_seed || g->n_tokens != n)
		return false;
	uint64_t r[4];
	memcpy(r, g->rng, sizeof(r));
	if (!(r[0] | r[1] | r[2] | r[3]))
		return false; /* not a state the generator can be in */
	memcpy(ret_rng, r, sizeof(r));
	return true;
}

static bool has_fixed_state(const struct hyd__sess *s)
{
	for (uint32_t i = 0; i < s->h.n_layer; i++)
		if (s->layers[i].fixed_bytes)
			return true;
	return false;
}

static void reset_for_replay(struct hyd__sess *s, uint32_t n)
{
	gen_clear_slots(s);
	__atomic_store_n(&s->hdr->replay_to, n, __ATOMIC_RELEASE);
	s->h.replay_to = n;
	set_flags(s, s->h.flags | HYD_SESS_F_NEEDS_INIT);
	run_init(s);
	drop_pages(s, n);
}

int hyd__sess_truncate(struct hyd__sess *s, uint32_t n)
{
	if (n > s->pos)
		return -ERANGE;
	if (n == s->pos)
		return 0;
	if (has_fixed_state(s)) {
		reset_for_replay(s, n);
		return n ? 1 : 0;
	}
	gen_clear_slots(s);
	/* Paged layers only: state at positions < n is untouched by later tokens. */
	publish_commit(s, n, s->state_index);
	drop_pages(s, n);
	return 0;
}

int hyd__sess_reset(struct hyd__sess *s)
{
	reset_for_replay(s, 0);
	return 0;
}

/* ------------------------------------------------------------------------------- listing */

static int info_from_fd(struct hyd__sess_store *st, int fd, struct hyd__sess_info *info)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		snprintf(info->reason, sizeof(info->reason), "stat: %s", strerror(errno));
		return 0;
	}
	info->file_bytes = (uint64_t)sb.st_blocks * 512;
	if (!S_ISREG(sb.st_mode)) {
		snprintf(info->reason, sizeof(info->reason), "not a regular file");
		return 0;
	}
	if (sb.st_uid != geteuid() || (sb.st_mode & 077)) {
		snprintf(info->reason, sizeof(info->reason), "file owner %u / mode %03o, expected ours and 0600",
			 (unsigned)sb.st_uid, (unsigned)(sb.st_mode & 0777));
		return 0;
	}
	struct hyd__sess_expect ex;
	hyd__sess_expect_store(st, HYD_SESSION_ANY_UID, &ex);
	struct hyd_sess_hdr h;
	struct hyd_sess_layer *layers;
	int rc = hyd__sess_read(fd, (uint64_t)sb.st_size, &ex, &h, &layers, info->reason, sizeof(info->reason));
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0)
		return 0;
	hyd_free(layers);
	info->valid = true;
	info->owner_uid = h.owner_uid;
	info->pos = (h.flags & HYD_SESS_F_NEEDS_INIT) ? 0 : HYD_SESS_COMMIT_POS(h.commit);
	info->max_ctx = h.max_ctx;
	info->created = h.created;
	memcpy(info->label, h.label, sizeof(info->label));
	return 0;
}

int hyd__sess_list(struct hyd__sess_store *st, int (*cb)(void *ctx, const struct hyd__sess_info *info),
		     void *ctx)
{
	int dfd = openat(st->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -errno;
	}
	struct hyd__sess_info *info = hyd_malloc(sizeof(*info));
	if (!info) {
		closedir(d);
		return -ENOMEM;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		memset(info, 0, sizeof(*info));
		snprintf(info->name, sizeof(info->name), "%s", de->d_name);
		const size_t len = strlen(de->d_name);
		const struct hyd__sess *att = NULL;
		for (const struct hyd__sess *s = st->sessions; s; s = s->next)
			if (strcmp(s->id, de->d_name) == 0)
				att = s;
		if (att) {
			struct stat sb;
			info->valid = info->attached = true;
			info->owner_uid = att->h.owner_uid;
			info->pos = att->pos;
			info->max_ctx = att->h.max_ctx;
			info->created = att->h.created;
			memcpy(info->label, att->h.label, sizeof(info->label));
			if (fstat(att->fd, &sb) == 0)
				info->file_bytes = (uint64_t)sb.st_blocks * 512;
		} else if (de->d_name[0] == '.' && len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
			snprintf(info->reason, sizeof(info->reason), "incomplete: creation, fork or restore was interrupted");
		} else if (!valid_id(de->d_name)) {
			snprintf(info->reason, sizeof(info->reason), "not a session file name");
		} else {
			int fd = openat(st->dirfd, de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
			if (fd < 0) {
				snprintf(info->reason, sizeof(info->reason), "open: %s", strerror(errno));
			} else {
				rc = info_from_fd(st, fd, info);
				close(fd);
				if (rc < 0)
					break;
			}
		}
		rc = cb(ctx, info);
	}
	if (rc == 0 && errno != 0)
		rc = -errno;
	hyd_free(info);
	closedir(d);
	return rc;
}

/* ---------------------------------------------------------------------------- accounting */

void hyd__sess_usage(const struct hyd__sess *s, struct hyd__sess_usage *ret)
{
	const struct hyd__sess_store *st = s->st;
	memset(ret, 0, sizeof(*ret));
	ret->n_sessions = 1;
	ret->n_kinds = st->n_kinds;
	ret->tokens = s->pos;
	ret->header_bytes = header_bytes(&s->h);
	ret->total_bytes = ret->header_bytes;
	for (uint32_t k = 0; k < st->n_kinds; k++)
		memcpy(ret->kinds[k].kind, st->kind_names[k], HYD_SESSION_KIND_LEN);
	for (uint32_t i = 0; i < s->h.n_layer; i++) {
		const struct hyd_sess_layer *L = &s->layers[i];
		struct hyd__sess_kind_usage *u = &ret->kinds[st->kind_of[i]];
		u->n_layers++;
		u->fixed_bytes += L->fixed_bytes;
		u->page_bytes += (uint64_t)L->n_pages * L->page_bytes;
		u->n_pages += L->n_pages;
		ret->total_bytes += L->fixed_bytes + (uint64_t)L->n_pages * L->page_bytes;
	}
}

void hyd__sess_store_usage(const struct hyd__sess_store *st, struct hyd__sess_usage *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->n_kinds = st->n_kinds;
	for (uint32_t k = 0; k < st->n_kinds; k++)
		memcpy(ret->kinds[k].kind, st->kind_names[k], HYD_SESSION_KIND_LEN);
	for (uint32_t i = 0; i < st->n_layer; i++)
		ret->kinds[st->kind_of[i]].n_layers++;
	for (const struct hyd__sess *s = st->sessions; s; s = s->next) {
		struct hyd__sess_usage u;
		hyd__sess_usage(s, &u);
		ret->n_sessions++;
		ret->tokens += u.tokens;
		ret->header_bytes += u.header_bytes;
		ret->total_bytes += u.total_bytes;
		for (uint32_t k = 0; k < st->n_kinds; k++) {
			ret->kinds[k].fixed_bytes += u.kinds[k].fixed_bytes;
			ret->kinds[k].page_bytes += u.kinds[k].page_bytes;
			ret->kinds[k].n_pages += u.kinds[k].n_pages;
		}
	}
}
