/* Validation of session headers.  A session file is untrusted input: it may be left over from
 * another model, another daemon version, a crash, or have been edited.  Everything the daemon
 * later uses as an offset or count is checked here, once, on a private copy. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/session_internal.h"
#include "daemon/text_safe.h"
#include "engine/alloc.h"

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
		/* the message may quote strings of the file */
		hyd__scrub_controls(err);
	}
	return rc;
}

#define BAD(...) fail(err, errlen, -EBADMSG, __VA_ARGS__)

static bool nul_terminated(const char *s, size_t n)
{
	return memchr(s, 0, n) != NULL;
}

void hyd__sess_expect_store(const struct hyd__sess_store *st, uint32_t uid, struct hyd__sess_expect *ret)
{
	*ret = (struct hyd__sess_expect){
		.fingerprint = st->fingerprint,
		.uid = uid,
		.n_layer = st->n_layer,
		.kinds = (const char (*)[HYD_SESS_KIND_LEN])st->kinds,
		.layouts = st->layouts,
	};
}

int hyd__sess_validate_hdr(const struct hyd_sess_hdr *h, uint64_t file_size, const struct hyd__sess_expect *ex,
			   char *err, size_t errlen)
{
	if (memcmp(h->magic, HYD_SESS_MAGIC, sizeof(h->magic)) != 0)
		return BAD("bad magic (not a session file, or its creation was interrupted)");
	if (h->version != HYD_SESS_VERSION)
		return BAD("unsupported version %u (this daemon reads %u)", h->version, HYD_SESS_VERSION);
	if (h->hdr_bytes != sizeof(*h))
		return BAD("header size %u, expected %zu", h->hdr_bytes, sizeof(*h));
	if (h->size != file_size)
		return BAD("size mismatch: header says %llu bytes, file has %llu",
			   (unsigned long long)h->size, (unsigned long long)file_size);
	if (h->size > HYD_SESS_MAX_FILE)
		return BAD("size %llu exceeds the limit", (unsigned long long)h->size);
	if (h->flags & ~HYD_SESS_F_KNOWN)
		return BAD("unknown flags 0x%x", h->flags);
	if (h->n_layer == 0 || h->n_layer > HYD_SESS_MAX_LAYERS)
		return BAD("layer count %u out of range", h->n_layer);
	if (h->max_ctx == 0 || h->max_ctx > HYD_SESS_MAX_CTX)
		return BAD("token capacity %u out of range", h->max_ctx);
	if (!nul_terminated(h->label, sizeof(h->label)))
		return BAD("label is not terminated");
	if (!hyd__text_ok(h->label))
		return BAD("label is not UTF-8 text without control characters");
	if (h->layers_off != sizeof(*h))
		return BAD("layer table at offset %llu, expected %zu", (unsigned long long)h->layers_off, sizeof(*h));
	const uint64_t layers_end = h->layers_off + (uint64_t)h->n_layer * sizeof(struct hyd_sess_layer);
	if (h->tokens_off < layers_end || h->tokens_off % sizeof(int32_t) || h->tokens_off > h->size)
		return BAD("token history offset %llu overlaps the layer table or lies past the end",
			   (unsigned long long)h->tokens_off);
	const uint64_t tokens_end = h->tokens_off + (uint64_t)h->max_ctx * sizeof(int32_t);
	if (tokens_end > h->size)
		return BAD("token history [%llu, %llu) past end of file (%llu)", (unsigned long long)h->tokens_off,
			   (unsigned long long)tokens_end, (unsigned long long)h->size);
	const uint64_t c = h->commit;
	if (c >> 33)
		return BAD("malformed commit word 0x%llx", (unsigned long long)c);
	if (HYD_SESS_COMMIT_POS(c) > h->max_ctx)
		return BAD("token count %u exceeds capacity %u", HYD_SESS_COMMIT_POS(c), h->max_ctx);
	if (h->replay_to > h->max_ctx)
		return BAD("replay count %u exceeds capacity %u", h->replay_to, h->max_ctx);
	for (int k = 0; k < 2; k++)
		if (h->gen[k].n_tokens > h->max_ctx || (h->gen[k].n_tokens && (h->gen[k].n_tokens & 1) != (uint32_t)k))
			return BAD("generation state %d at token %u is out of place", k, h->gen[k].n_tokens);
	if (ex && ex->fingerprint && memcmp(ex->fingerprint, h->fingerprint, sizeof(h->fingerprint)) != 0)
		return BAD("model fingerprint differs: the session belongs to another model");
	if (ex && ex->n_layer && h->n_layer != ex->n_layer)
		return BAD("session has %u layers, the model %u", h->n_layer, ex->n_layer);
	if (ex && ex->uid != HYD_SESSION_ANY_UID && h->owner_uid != ex->uid)
		return fail(err, errlen, -EACCES, "session belongs to uid %u", h->owner_uid);
	return 0;
}

struct region {
	uint64_t start, end;
	int what; /* -1: header, 2i: fixed of layer i, 2i+1: pages of layer i */
};

static int cmp_region(const void *a, const void *b)
{
	const struct region *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->what < y->what ? -1 : x->what > y->what;
}

static void region_name(const struct region *r, char *buf, size_t len)
{
	if (r->what < 0)
		snprintf(buf, len, "header");
	else
		snprintf(buf, len, "layer %d %s", r->what / 2, r->what % 2 ? "pages" : "fixed region");
}

int hyd__sess_validate_layers(const struct hyd_sess_hdr *h, const struct hyd_sess_layer *layers,
			      const struct hyd__sess_expect *ex, char *err, size_t errlen)
{
	const uint32_t pos = HYD_SESS_COMMIT_POS(h->commit);
	const uint64_t size = h->size;
	struct region *rg = hyd_calloc((size_t)h->n_layer * 2 + 1, sizeof(*rg));
	if (!rg)
		return -ENOMEM;
	size_t n_rg = 0;
	rg[n_rg++] = (struct region){ 0, h->tokens_off + (uint64_t)h->max_ctx * sizeof(int32_t), -1 };
	int rc = 0;

	for (uint32_t i = 0; i < h->n_layer; i++) {
		const struct hyd_sess_layer *L = &layers[i];
		if (!nul_terminated(L->kind, sizeof(L->kind)) || !L->kind[0]) {
			rc = BAD("layer %u: kind name is empty or not terminated", i);
			goto out;
		}
		if (L->flags & ~HYD_STATE_DOUBLE_BUFFERED) {
			rc = BAD("layer %u: unknown state flags 0x%x", i, L->flags);
			goto out;
		}
		if ((L->flags & HYD_STATE_DOUBLE_BUFFERED) && L->fixed_bytes % 2) {
			rc = BAD("layer %u: double-buffered state of odd size", i);
			goto out;
		}
		if (L->fixed_off % HYD_SESS_FIXED_ALIGN || L->fixed_off > size || L->fixed_bytes > size - L->fixed_off) {
			rc = BAD("layer %u: fixed region [%llu, +%llu) misaligned or past end of file (%llu)", i,
				 (unsigned long long)L->fixed_off, (unsigned long long)L->fixed_bytes,
				 (unsigned long long)size);
			goto out;
		}
		if (L->fixed_bytes)
			rg[n_rg++] = (struct region){ L->fixed_off, L->fixed_off + L->fixed_bytes, (int)(2 * i) };
		if (L->page_bytes == 0) {
			if (L->page_tokens || L->max_pages || L->n_pages || L->pages_off) {
				rc = BAD("layer %u: page fields set on a layer without pages", i);
				goto out;
			}
		} else {
			if (L->page_tokens == 0 || L->page_tokens > h->max_ctx) {
				rc = BAD("layer %u: page size %u tokens out of range", i, L->page_tokens);
				goto out;
			}
			const uint32_t want_pages = (uint32_t)(((uint64_t)h->max_ctx + L->page_tokens - 1) / L->page_tokens);
			if (L->max_pages != want_pages) {
				rc = BAD("layer %u: %u page slots, %u expected for %u tokens", i, L->max_pages, want_pages,
					 h->max_ctx);
				goto out;
			}
			if (L->n_pages > L->max_pages) {
				rc = BAD("layer %u: page count %u exceeds %u slots", i, L->n_pages, L->max_pages);
				goto out;
			}
			uint64_t area;
			if (L->page_bytes > size ||
			    __builtin_mul_overflow(hyd__sess_page_stride(L->page_bytes), (uint64_t)L->max_pages, &area) ||
			    L->pages_off % HYD_SESS_AREA_ALIGN || L->pages_off > size || area > size - L->pages_off) {
				rc = BAD("layer %u: page area at offset %llu misaligned or past end of file (%llu)", i,
					 (unsigned long long)L->pages_off, (unsigned long long)size);
				goto out;
			}
			if ((uint64_t)L->n_pages * L->page_tokens < pos) {
				rc = BAD("layer %u: %u pages cannot hold the %u committed tokens", i, L->n_pages, pos);
				goto out;
			}
			rg[n_rg++] = (struct region){ L->pages_off, L->pages_off + area, (int)(2 * i + 1) };
		}
		if (ex && ex->kinds && strncmp(ex->kinds[i], L->kind, HYD_SESS_KIND_LEN) != 0) {
			rc = BAD("layer %u is '%s', the model's is '%s'", i, L->kind, ex->kinds[i]);
			goto out;
		}
		if (ex && ex->layouts) {
			const struct hyd_state_layout *w = &ex->layouts[i];
			if (w->fixed_bytes != L->fixed_bytes || w->page_bytes != L->page_bytes ||
			    (w->page_bytes && w->page_tokens != L->page_tokens) || w->flags != L->flags) {
				rc = BAD("layer %u: state layout differs from the model's (other limits?)", i);
				goto out;
			}
		}
	}

	qsort(rg, n_rg, sizeof(*rg), cmp_region);
	for (size_t k = 1; k < n_rg; k++) {
		if (rg[k].start < rg[k - 1].end) {
			char a[48], b[48];
			region_name(&rg[k - 1], a, sizeof(a));
			region_name(&rg[k], b, sizeof(b));
			rc = BAD("overlapping regions: %s and %s", a, b);
			goto out;
		}
	}
out:
	hyd_free(rg);
	return rc;
}

int hyd__sess_read(int fd, uint64_t file_size, const struct hyd__sess_expect *ex, struct hyd_sess_hdr *ret_hdr,
		   struct hyd_sess_layer **ret_layers, char *err, size_t errlen)
{
	struct hyd_sess_hdr h;
	if (file_size < sizeof(h))
		return BAD("file too short for a session header (%llu bytes)", (unsigned long long)file_size);
	int rc = hyd__sess_pread_all(fd, &h, sizeof(h), 0);
	if (rc < 0)
		return fail(err, errlen, rc, "read: %s", strerror(-rc));
	/* The commit word may be concurrently written by its owner; take one coherent value. */
	h.commit = __atomic_load_n(&h.commit, __ATOMIC_ACQUIRE);
	rc = hyd__sess_validate_hdr(&h, file_size, ex, err, errlen);
	if (rc < 0)
		return rc;
	struct hyd_sess_layer *layers = hyd_calloc(h.n_layer, sizeof(*layers));
	if (!layers)
		return -ENOMEM;
	rc = hyd__sess_pread_all(fd, layers, (size_t)h.n_layer * sizeof(*layers), h.layers_off);
	if (rc < 0) {
		hyd_free(layers);
		return fail(err, errlen, rc, "read: %s", strerror(-rc));
	}
	rc = hyd__sess_validate_layers(&h, layers, ex, err, errlen);
	if (rc < 0) {
		hyd_free(layers);
		return rc;
	}
	*ret_hdr = h;
	*ret_layers = layers;
	return 0;
}
