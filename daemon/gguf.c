/* GGUF v3 (and v2, same layout) reader: one validating pass over the mapped bytes, after which
 * every accessor works on indexes built by that pass and never re-parses.
 *
 * Every count read from the file is checked against the bytes that remain before anything is
 * allocated from it, so a hostile header cannot make us allocate more than a small multiple of
 * the file's own size. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/gguf.h"
#include "engine/alloc.h"
#include "engine/types.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NAME 65536 /* keys and tensor names */
#define GGUF_HEADER_SIZE 24
/* Smallest encodings: a key/value is key length + type + a one-byte value; a tensor record is
 * name length + n_dims + one dim + type + offset. */
#define GGUF_MIN_KV 13
#define GGUF_MIN_TENSOR 32

struct gguf_kv {
	struct hyd_str key;
	uint32_t type;
	uint64_t val_off;   /* file offset of the value, for messages */
	const uint8_t *val; /* scalars: the packed little-endian value */
	struct hyd_str str;
	struct hyd_gguf_arr arr;
};

struct gguf_tensor {
	struct hyd_tensor t;
	struct hyd_str name; /* in the file, until the names are copied */
	uint64_t off;        /* relative to the data section */
	uint64_t off_pos;    /* file offset of the offset field, for messages */
};

struct hyd_gguf {
	char *label;
	const uint8_t *base;
	uint64_t size;
	bool mapped;
	uint32_t version;
	uint64_t alignment;
	uint64_t data_start;

	uint64_t n_kv;
	struct gguf_kv *kv;
	uint64_t *kv_slots; /* open addressing; index + 1, 0 = empty */
	uint64_t kv_mask;

	uint64_t n_tensors;
	struct gguf_tensor *tensors;
	uint64_t *t_slots;
	uint64_t t_mask;
	char *names;
};

struct parser {
	struct hyd_gguf *g;
	const uint8_t *p;
	uint64_t size;
	uint64_t pos;
	char *err;
	size_t errlen;
	/* What is being read, so every message can say which record failed. */
	const char *what; /* "key", "tensor" or NULL */
	uint64_t idx;
	struct hyd_str name; /* of that record, once known (p == NULL: not yet) */
	uint64_t elem;       /* array element being read, UINT64_MAX: none */
};

/* Names come from the file: print at most 64 bytes and only printable ASCII. */
static void format_name(char *buf, size_t len, struct hyd_str s)
{
	size_t n = s.n > 64 ? 64 : (size_t)s.n;
	size_t j = 0;
	for (size_t i = 0; i < n && j + 1 < len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		buf[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (s.n > n && j + 4 < len) {
		memcpy(buf + j, "...", 3);
		j += 3;
	}
	buf[j] = 0;
}

__attribute__((format(printf, 3, 4)))
static int fail(struct parser *ps, uint64_t off, const char *fmt, ...)
{
	if (!ps->err || !ps->errlen)
		return -EINVAL;
	char ctx[160] = "";
	if (ps->what) {
		char name[72] = "";
		if (ps->name.p)
			format_name(name, sizeof(name), ps->name);
		int n = snprintf(ctx, sizeof(ctx), "%s %" PRIu64 "%s%s%s: ", ps->what, ps->idx,
				 ps->name.p ? " '" : "", name, ps->name.p ? "'" : "");
		if (ps->elem != UINT64_MAX && n > 0 && (size_t)n < sizeof(ctx))
			snprintf(ctx + n, sizeof(ctx) - n, "element %" PRIu64 ": ", ps->elem);
	}
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->err, ps->errlen, "%s: offset %" PRIu64 ": %s%s", ps->g->label, off, ctx, msg);
	return -EINVAL;
}

static uint64_t left(const struct parser *ps)
{
	return ps->size - ps->pos;
}

static int need(struct parser *ps, uint64_t n, const char *field)
{
	if (n <= left(ps))
		return 0;
	return fail(ps, ps->pos, "%s truncated: needs %" PRIu64 " bytes, %" PRIu64
		    " left (file is %" PRIu64 " bytes)", field, n, left(ps), ps->size);
}

static int rd_u32(struct parser *ps, const char *field, uint32_t *ret)
{
	int r = need(ps, 4, field);
	if (r < 0)
		return r;
	memcpy(ret, ps->p + ps->pos, 4);
	ps->pos += 4;
	return 0;
}

static int rd_u64(struct parser *ps, const char *field, uint64_t *ret)
{
	int r = need(ps, 8, field);
	if (r < 0)
		return r;
	memcpy(ret, ps->p + ps->pos, 8);
	ps->pos += 8;
	return 0;
}

static int rd_str(struct parser *ps, const char *field, uint64_t max, struct hyd_str *ret)
{
	uint64_t at = ps->pos, n;
	int r = rd_u64(ps, field, &n);
	if (r < 0)
		return r;
	if (n > left(ps))
		return fail(ps, at, "%s length %" PRIu64 " runs past end of file (%" PRIu64 " bytes)",
			    field, n, ps->size);
	if (n > max)
		return fail(ps, at, "%s length %" PRIu64 " exceeds the limit of %" PRIu64, field, n,
			    max);
	ret->p = (const char *)ps->p + ps->pos;
	ret->n = n;
	ps->pos += n;
	return 0;
}

static uint32_t scalar_size(uint32_t t)
{
	switch (t) {
	case HYD_GGUF_U8: case HYD_GGUF_I8: case HYD_GGUF_BOOL:
		return 1;
	case HYD_GGUF_U16: case HYD_GGUF_I16:
		return 2;
	case HYD_GGUF_U32: case HYD_GGUF_I32: case HYD_GGUF_F32:
		return 4;
	case HYD_GGUF_U64: case HYD_GGUF_I64: case HYD_GGUF_F64:
		return 8;
	default:
		return 0;
	}
}

static const char *vtype_name(uint32_t t)
{
	static const char *const names[] = {
		"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64",
		"i64", "f64",
	};
	return t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

static int check_bools(struct parser *ps, const uint8_t *v, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (v[i] > 1) {
			if (n > 1)
				ps->elem = i;
			return fail(ps, (uint64_t)(v + i - ps->p), "bool value %u is not 0 or 1",
				    v[i]);
		}
	return 0;
}

static int parse_array(struct parser *ps, struct gguf_kv *kv)
{
	uint64_t at = ps->pos, n;
	uint32_t et;
	int r = rd_u32(ps, "array element type", &et);
	if (r < 0)
		return r;
	if (et == HYD_GGUF_ARRAY)
		return fail(ps, at, "nested array (arrays of arrays are not supported)");
	uint32_t esz = et == HYD_GGUF_STRING ? 8 : scalar_size(et);
	if (!esz)
		return fail(ps, at, "array of unknown element type %" PRIu32, et);
	at = ps->pos;
	r = rd_u64(ps, "array count", &n);
	if (r < 0)
		return r;
	if (n > left(ps) / esz)
		return fail(ps, at, "array count %" PRIu64 " of %s cannot fit in the %" PRIu64
			    " bytes left (file is %" PRIu64 " bytes)", n, vtype_name(et), left(ps),
			    ps->size);
	kv->arr.elem_type = et;
	kv->arr.n = n;
	kv->arr.data = ps->p + ps->pos;
	if (et != HYD_GGUF_STRING) {
		if (et == HYD_GGUF_BOOL) {
			r = check_bools(ps, ps->p + ps->pos, n);
			if (r < 0)
				return r;
		}
		ps->pos += n * esz;
		return 0;
	}
	/* Token lists hold 10^5 strings: record where each starts so element access is O(1). */
	uint64_t *offs = hyd_calloc(n ? n : 1, sizeof(*offs));
	if (!offs)
		return -ENOMEM;
	kv->arr.priv = offs;
	uint64_t start = ps->pos;
	for (uint64_t i = 0; i < n; i++) {
		struct hyd_str s;
		offs[i] = ps->pos - start;
		ps->elem = i;
		r = rd_str(ps, "string", UINT64_MAX, &s);
		if (r < 0)
			return r;
	}
	ps->elem = UINT64_MAX;
	return 0;
}

static int parse_value(struct parser *ps, struct gguf_kv *kv)
{
	kv->val_off = ps->pos;
	if (kv->type == HYD_GGUF_STRING)
		return rd_str(ps, "string", UINT64_MAX, &kv->str);
	if (kv->type == HYD_GGUF_ARRAY)
		return parse_array(ps, kv);
	uint32_t sz = scalar_size(kv->type);
	if (!sz)
		return fail(ps, ps->pos - 4, "unknown value type %" PRIu32, kv->type);
	int r = need(ps, sz, vtype_name(kv->type));
	if (r < 0)
		return r;
	kv->val = ps->p + ps->pos;
	if (kv->type == HYD_GGUF_BOOL) {
		r = check_bools(ps, kv->val, 1);
		if (r < 0)
			return r;
	}
	ps->pos += sz;
	return 0;
}

static uint64_t hash_bytes(const void *p, uint64_t n)
{
	const unsigned char *s = p;
	uint64_t h = 0xcbf29ce484222325ull;
	for (uint64_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static int alloc_slots(uint64_t n, uint64_t **ret_slots, uint64_t *ret_mask)
{
	uint64_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	uint64_t *slots = hyd_calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	*ret_slots = slots;
	*ret_mask = cap - 1;
	return 0;
}

/* Returns the slot holding name, or the empty slot where it would go.  The table indexes an
 * array of records of the given stride with a struct hyd_str at byte offset str_off. */
static uint64_t find_slot(const uint64_t *slots, uint64_t mask, const void *recs, size_t stride,
			  size_t str_off, struct hyd_str name)
{
	uint64_t h = hash_bytes(name.p, name.n) & mask;
	while (slots[h]) {
		const struct hyd_str *k = (const void *)((const char *)recs +
							 (slots[h] - 1) * stride + str_off);
		if (k->n == name.n && !memcmp(k->p, name.p, name.n))
			break;
		h = (h + 1) & mask;
	}
	return h;
}

static uint64_t kv_slot(const struct hyd_gguf *g, struct hyd_str key)
{
	return find_slot(g->kv_slots, g->kv_mask, g->kv, sizeof(*g->kv),
			 offsetof(struct gguf_kv, key), key);
}

static uint64_t tensor_slot(const struct hyd_gguf *g, struct hyd_str name)
{
	return find_slot(g->t_slots, g->t_mask, g->tensors, sizeof(*g->tensors),
			 offsetof(struct gguf_tensor, name), name);
}

static int parse_header(struct parser *ps)
{
	struct hyd_gguf *g = ps->g;
	if (ps->size < 4)
		return fail(ps, 0, "magic truncated: file is %" PRIu64 " bytes", ps->size);
	if (memcmp(ps->p, "GGUF", 4)) {
		uint32_t m;
		memcpy(&m, ps->p, 4);
		return fail(ps, 0, "bad magic 0x%08" PRIx32 " (not a GGUF file)", m);
	}
	ps->pos = 4;
	int r = rd_u32(ps, "version", &g->version);
	if (r < 0)
		return r;
	if (g->version != 3 && g->version != 2) {
		if (g->version == 0x03000000 || g->version == 0x02000000)
			return fail(ps, 4, "unsupported version: big-endian GGUF");
		return fail(ps, 4, "unsupported version %" PRIu32 " (only 2 and 3 are read)",
			    g->version);
	}
	r = rd_u64(ps, "tensor count", &g->n_tensors);
	if (r < 0)
		return r;
	r = rd_u64(ps, "kv count", &g->n_kv);
	if (r < 0)
		return r;
	if (g->n_tensors > left(ps) / GGUF_MIN_TENSOR)
		return fail(ps, 8, "tensor count %" PRIu64 " cannot fit in the %" PRIu64
			    " bytes left (file is %" PRIu64 " bytes)", g->n_tensors, left(ps),
			    ps->size);
	if (g->n_kv > left(ps) / GGUF_MIN_KV)
		return fail(ps, 16, "kv count %" PRIu64 " cannot fit in the %" PRIu64
			    " bytes left (file is %" PRIu64 " bytes)", g->n_kv, left(ps),
			    ps->size);
	if (g->n_kv * GGUF_MIN_KV + g->n_tensors * GGUF_MIN_TENSOR > left(ps))
		return fail(ps, 8, "tensor count %" PRIu64 " and kv count %" PRIu64
			    " cannot fit together in the %" PRIu64 " bytes left (file is %" PRIu64
			    " bytes)", g->n_tensors, g->n_kv, left(ps), ps->size);
	return 0;
}

static int parse_kvs(struct parser *ps)
{
	struct hyd_gguf *g = ps->g;
	g->kv = hyd_calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kv));
	if (!g->kv)
		return -ENOMEM;
	int r = alloc_slots(g->n_kv, &g->kv_slots, &g->kv_mask);
	if (r < 0)
		return r;
	for (uint64_t i = 0; i < g->n_kv; i++) {
		struct gguf_kv *kv = &g->kv[i];
		ps->what = "key";
		ps->idx = i;
		ps->name.p = NULL;
		uint64_t at = ps->pos;
		r = rd_str(ps, "key", GGUF_MAX_NAME - 1, &kv->key);
		if (r < 0)
			return r;
		ps->name = kv->key;
		uint64_t s = kv_slot(g, kv->key);
		if (g->kv_slots[s])
			return fail(ps, at, "duplicate key (also key %" PRIu64 ")",
				    g->kv_slots[s] - 1);
		g->kv_slots[s] = i + 1;
		r = rd_u32(ps, "value type", &kv->type);
		if (r < 0)
			return r;
		r = parse_value(ps, kv);
		if (r < 0)
			return r;
	}
	ps->what = NULL;
	return 0;
}

static const struct gguf_kv *find_kv(const struct hyd_gguf *g, const char *key)
{
	struct hyd_str k = { key, strlen(key) };
	uint64_t s = kv_slot(g, k);
	return g->kv_slots[s] ? &g->kv[g->kv_slots[s] - 1] : NULL;
}

static int parse_alignment(struct parser *ps)
{
	struct hyd_gguf *g = ps->g;
	const struct gguf_kv *kv = find_kv(g, "general.alignment");
	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (!kv)
		return 0;
	ps->what = "key";
	ps->idx = (uint64_t)(kv - g->kv);
	ps->name = kv->key;
	if (kv->type != HYD_GGUF_U32)
		return fail(ps, kv->val_off, "general.alignment has type %s, must be u32",
			    vtype_name(kv->type));
	uint32_t a;
	memcpy(&a, kv->val, 4);
	if (!a || (a & (a - 1)))
		return fail(ps, kv->val_off, "general.alignment %" PRIu32
			    " is not a nonzero power of two", a);
	g->alignment = a;
	ps->what = NULL;
	return 0;
}

static int parse_tensor(struct parser *ps, struct gguf_tensor *gt)
{
	struct hyd_gguf *g = ps->g;
	uint64_t at = ps->pos;
	int r = rd_str(ps, "name", GGUF_MAX_NAME, &gt->name);
	if (r < 0)
		return r;
	if (memchr(gt->name.p, 0, gt->name.n))
		return fail(ps, at, "name contains a NUL byte");
	ps->name = gt->name;
	uint64_t s = tensor_slot(g, gt->name);
	if (g->t_slots[s])
		return fail(ps, at, "duplicate tensor name (also tensor %" PRIu64 ")",
			    g->t_slots[s] - 1);
	g->t_slots[s] = (uint64_t)(gt - g->tensors) + 1;

	struct hyd_tensor *t = &gt->t;
	at = ps->pos;
	r = rd_u32(ps, "n_dims", &t->n_dims);
	if (r < 0)
		return r;
	if (t->n_dims < 1 || t->n_dims > HYD_MAX_DIMS)
		return fail(ps, at, "n_dims %" PRIu32 " (must be 1..%d)", t->n_dims, HYD_MAX_DIMS);
	int64_t nel = 1;
	for (uint32_t d = 0; d < HYD_MAX_DIMS; d++) {
		uint64_t ne = 1;
		at = ps->pos;
		if (d < t->n_dims) {
			r = rd_u64(ps, "dim", &ne);
			if (r < 0)
				return r;
		}
		if (ne == 0)
			return fail(ps, at, "dim %" PRIu32 " is 0", d);
		if (ne > INT64_MAX || (int64_t)ne > INT64_MAX / nel)
			return fail(ps, at, "element count overflows int64 at dim %" PRIu32
				    " (%" PRIu64 ")", d, ne);
		t->ne[d] = (int64_t)ne;
		nel *= (int64_t)ne;
	}
	at = ps->pos;
	r = rd_u32(ps, "type", &t->type);
	if (r < 0)
		return r;
	if (!hyd_type_traits(t->type))
		return fail(ps, at, "unknown tensor type %" PRIu32, t->type);
	int64_t row = hyd_row_size(t->type, t->ne[0]);
	if (row == -EINVAL)
		return fail(ps, at, "row of %" PRId64 " elements is not a whole number of %s blocks"
			    " (%" PRIu32 " elements)", t->ne[0], hyd_type_name(t->type),
			    hyd_type_traits(t->type)->blck);
	int64_t rows = nel / t->ne[0];
	if (row < 0 || row > INT64_MAX / rows)
		return fail(ps, at, "size in bytes overflows int64");
	t->nbytes = (uint64_t)(row * rows);
	gt->off_pos = ps->pos;
	return rd_u64(ps, "data offset", &gt->off);
}

static int parse_tensors(struct parser *ps)
{
	struct hyd_gguf *g = ps->g;
	g->tensors = hyd_calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*g->tensors));
	if (!g->tensors)
		return -ENOMEM;
	int r = alloc_slots(g->n_tensors, &g->t_slots, &g->t_mask);
	if (r < 0)
		return r;
	ps->what = "tensor";
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		ps->idx = i;
		ps->name.p = NULL;
		r = parse_tensor(ps, &g->tensors[i]);
		if (r < 0)
			return r;
	}

	/* ps->pos <= size, and alignment <= 2^31: no overflow. */
	g->data_start = (ps->pos + g->alignment - 1) & ~(g->alignment - 1);
	uint64_t names = 0;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		struct gguf_tensor *gt = &g->tensors[i];
		ps->idx = i;
		ps->name = gt->name;
		if (gt->off % g->alignment)
			return fail(ps, gt->off_pos, "data offset %" PRIu64
				    " is not a multiple of the alignment %" PRIu64, gt->off,
				    g->alignment);
		if (gt->off > UINT64_MAX - g->data_start ||
		    gt->t.nbytes > UINT64_MAX - g->data_start - gt->off)
			return fail(ps, gt->off_pos, "data offset %" PRIu64 " + size %" PRIu64
				    " overflows", gt->off, gt->t.nbytes);
		uint64_t b = g->data_start + gt->off, e = b + gt->t.nbytes;
		if (e > ps->size)
			return fail(ps, gt->off_pos, "data [%" PRIu64 ", %" PRIu64
				    ") past end of file (%" PRIu64 " bytes)", b, e, ps->size);
		gt->t.data = ps->p + b;
		names += gt->name.n + 1; /* names lie inside the file: no overflow */
	}
	ps->what = NULL;

	g->names = hyd_malloc(names);
	if (!g->names)
		return -ENOMEM;
	char *q = g->names;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		struct gguf_tensor *gt = &g->tensors[i];
		memcpy(q, gt->name.p, gt->name.n);
		q[gt->name.n] = 0;
		gt->t.name = q;
		q += gt->name.n + 1;
	}
	return 0;
}

void hyd_gguf_close(struct hyd_gguf *g)
{
	if (!g)
		return;
	if (g->kv)
		for (uint64_t i = 0; i < g->n_kv; i++)
			hyd_free((void *)g->kv[i].arr.priv);
	hyd_free(g->kv);
	hyd_free(g->kv_slots);
	hyd_free(g->tensors);
	hyd_free(g->t_slots);
	hyd_free(g->names);
	if (g->mapped)
		munmap((void *)g->base, g->size);
	hyd_free(g->label);
	hyd_free(g);
}

static int parse(const void *data, size_t size, const char *label, struct hyd_gguf **ret_gguf,
		 char *err, size_t errlen)
{
	struct hyd_gguf *g = hyd_calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->label = hyd_strdup(label ? label : "(memory)");
	if (!g->label) {
		hyd_free(g);
		return -ENOMEM;
	}
	g->base = data ? data : (const void *)"";
	g->size = data ? size : 0;
	struct parser ps = {
		.g = g, .p = g->base, .size = g->size, .err = err, .errlen = errlen,
		.elem = UINT64_MAX,
	};
	int r = parse_header(&ps);
	if (r >= 0)
		r = parse_kvs(&ps);
	if (r >= 0)
		r = parse_alignment(&ps);
	if (r >= 0)
		r = parse_tensors(&ps);
	if (r < 0) {
		if (r == -ENOMEM && err && errlen)
			snprintf(err, errlen, "%s: out of memory", g->label);
		hyd_gguf_close(g);
		return r;
	}
	*ret_gguf = g;
	return 0;
}

int hyd_gguf_open_mem(const void *data, size_t size, const char *label, struct hyd_gguf **ret_gguf,
		      char *err, size_t errlen)
{
	return parse(data, size, label, ret_gguf, err, errlen);
}

/* The file mapped at a 2 MiB-aligned address with MADV_HUGEPAGE: where the page cache holds
 * the file in 2 MiB folios (ext4 and xfs do for files read in through such a mapping), the
 * kernel maps them with one TLB entry each.  Decode streams every weight once per token and
 * with 4 KiB pages takes a TLB miss every 4 KiB (measured: decode 1-4 % faster with the
 * large mappings).  Where the page cache has the file in small pages, this changes nothing. */
static void *map_weights(int fd, size_t size)
{
	const size_t huge = (size_t)2 << 20;
	if (size < huge)
		return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	char *span = mmap(NULL, size + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (span == MAP_FAILED)
		return MAP_FAILED;
	char *at = (char *)(((uintptr_t)span + huge - 1) & ~(uintptr_t)(huge - 1));
	void *map = mmap(at, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
	if (map == MAP_FAILED) {
		int e = errno;
		munmap(span, size + huge);
		errno = e;
		return MAP_FAILED;
	}
	if (at > span)
		munmap(span, (size_t)(at - span));
	/* the file mapping ends on a page boundary; the rest of the span goes back */
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t mapped = (size + page - 1) & ~(page - 1);
	const size_t tail = (size_t)(span + size + huge - (at + mapped));
	if (tail)
		munmap(at + mapped, tail);
	(void)madvise(map, size, MADV_HUGEPAGE);
	return map;
}

int hyd_gguf_open(const char *path, struct hyd_gguf **ret_gguf, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int r = -errno;
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-r));
		return r;
	}
	struct stat st;
	int r = 0;
	if (fstat(fd, &st) < 0)
		r = -errno;
	else if (S_ISDIR(st.st_mode))
		r = -EISDIR;
	else if (!S_ISREG(st.st_mode))
		r = -EINVAL;
	if (r < 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot open: %s", path,
				 r == -EINVAL ? "not a regular file" : strerror(-r));
		close(fd);
		return r;
	}
	void *map = NULL;
	size_t size = (size_t)st.st_size;
	if (size) {
		map = map_weights(fd, size);
		if (map == MAP_FAILED) {
			r = -errno;
			if (err && errlen)
				snprintf(err, errlen, "%s: cannot map: %s", path, strerror(-r));
			close(fd);
			return r;
		}
	}
	close(fd);
	struct hyd_gguf *g;
	r = parse(map, size, path, &g, err, errlen);
	if (r < 0) {
		if (map)
			munmap(map, size);
		return r;
	}
	g->mapped = map != NULL;
	*ret_gguf = g;
	return 0;
}

uint32_t hyd_gguf_version(const struct hyd_gguf *g)
{
	return g->version;
}

const char *hyd_gguf_path(const struct hyd_gguf *g)
{
	return g->label;
}

uint64_t hyd_gguf_file_size(const struct hyd_gguf *g)
{
	return g->size;
}

uint64_t hyd_gguf_n_kv(const struct hyd_gguf *g)
{
	return g->n_kv;
}

int hyd_gguf_kv_key(const struct hyd_gguf *g, uint64_t i, struct hyd_str *ret_key)
{
	if (i >= g->n_kv)
		return -ERANGE;
	*ret_key = g->kv[i].key;
	return 0;
}

int hyd_gguf_kv_type(const struct hyd_gguf *g, const char *key, uint32_t *ret_type)
{
	const struct gguf_kv *kv = find_kv(g, key);
	if (!kv)
		return -ENOENT;
	*ret_type = kv->type;
	return 0;
}

/* Any integer (and, where allowed, bool) as a sign flag and a 64-bit payload. */
static int load_int(uint32_t type, const uint8_t *p, bool allow_bool, bool *ret_neg, int64_t *ret_s,
		    uint64_t *ret_u)
{
	int64_t s = 0;
	uint64_t u = 0;
	bool is_signed = false;
	switch (type) {
	case HYD_GGUF_BOOL:
		if (!allow_bool)
			return -EINVAL;
		u = p[0];
		break;
	case HYD_GGUF_U8: u = p[0]; break;
	case HYD_GGUF_I8: { int8_t v; memcpy(&v, p, 1); s = v; is_signed = true; break; }
	case HYD_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); u = v; break; }
	case HYD_GGUF_I16: { int16_t v; memcpy(&v, p, 2); s = v; is_signed = true; break; }
	case HYD_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); u = v; break; }
	case HYD_GGUF_I32: { int32_t v; memcpy(&v, p, 4); s = v; is_signed = true; break; }
	case HYD_GGUF_U64: memcpy(&u, p, 8); break;
	case HYD_GGUF_I64: memcpy(&s, p, 8); is_signed = true; break;
	default:
		return -EINVAL;
	}
	if (is_signed) {
		*ret_neg = s < 0;
		*ret_s = s;
		*ret_u = s < 0 ? 0 : (uint64_t)s;
	} else {
		*ret_neg = false;
		*ret_s = u > INT64_MAX ? INT64_MAX : (int64_t)u;
		*ret_u = u;
	}
	return 0;
}

static int get_int(const struct hyd_gguf *g, const char *key, bool *neg, int64_t *s, uint64_t *u)
{
	const struct gguf_kv *kv = find_kv(g, key);
	if (!kv)
		return -ENOENT;
	return load_int(kv->type, kv->val, false, neg, s, u);
}

int hyd_gguf_get_u32(const struct hyd_gguf *g, const char *key, uint32_t *ret)
{
	bool neg;
	int64_t s;
	uint64_t u;
	int r = get_int(g, key, &neg, &s, &u);
	if (r < 0)
		return r;
	if (neg || u > UINT32_MAX)
		return -EINVAL;
	*ret = (uint32_t)u;
	return 0;
}

int hyd_gguf_get_i32(const struct hyd_gguf *g, const char *key, int32_t *ret)
{
	bool neg;
	int64_t s;
	uint64_t u;
	int r = get_int(g, key, &neg, &s, &u);
	if (r < 0)
		return r;
	if (neg ? s < INT32_MIN : u > INT32_MAX)
		return -EINVAL;
	*ret = (int32_t)s;
	return 0;
}

int hyd_gguf_get_u64(const struct hyd_gguf *g, const char *key, uint64_t *ret)
{
	bool neg;
	int64_t s;
	uint64_t u;
	int r = get_int(g, key, &neg, &s, &u);
	if (r < 0)
		return r;
	if (neg)
		return -EINVAL;
	*ret = u;
	return 0;
}

static int load_float(uint32_t type, const uint8_t *p, float *ret)
{
	if (type == HYD_GGUF_F32) {
		memcpy(ret, p, 4);
		return 0;
	}
	if (type == HYD_GGUF_F64) {
		double d;
		memcpy(&d, p, 8);
		*ret = (float)d;
		return 0;
	}
	return -EINVAL;
}

int hyd_gguf_get_f32(const struct hyd_gguf *g, const char *key, float *ret)
{
	const struct gguf_kv *kv = find_kv(g, key);
	if (!kv)
		return -ENOENT;
	return load_float(kv->type, kv->val, ret);
}

int hyd_gguf_get_bool(const struct hyd_gguf *g, const char *key, bool *ret)
{
	const struct gguf_kv *kv = find_kv(g, key);
	if (!kv)
		return -ENOENT;
	if (kv->type != HYD_GGUF_BOOL)
		return -EINVAL;
	*ret = kv->val[0] != 0;
	return 0;
}

int hyd_gguf_get_str(const struct hyd_gguf *g, const char *key, struct hyd_str *ret)
{
	const struct gguf_kv *kv = find_kv(g, key);
	if (!kv)
		return -ENOENT;
	if (kv->type != HYD_GGUF_STRING)
		return -EINVAL;
	*ret = kv->str;
	return 0;
}

int hyd_gguf_get_arr(const struct hyd_gguf *g, const char *key, struct hyd_gguf_arr *ret)
{
	const struct gguf_kv *kv = find_kv(g, key);
	if (!kv)
		return -ENOENT;
	if (kv->type != HYD_GGUF_ARRAY)
		return -EINVAL;
	*ret = kv->arr;
	return 0;
}

int hyd_gguf_arr_str(const struct hyd_gguf_arr *a, uint64_t i, struct hyd_str *ret)
{
	if (a->elem_type != HYD_GGUF_STRING || !a->priv)
		return -EINVAL;
	if (i >= a->n)
		return -ERANGE;
	const uint8_t *p = (const uint8_t *)a->data + ((const uint64_t *)a->priv)[i];
	uint64_t n;
	memcpy(&n, p, 8);
	ret->p = (const char *)p + 8;
	ret->n = n;
	return 0;
}

int hyd_gguf_arr_f32(const struct hyd_gguf_arr *a, uint64_t i, float *ret)
{
	uint32_t sz = scalar_size(a->elem_type);
	if (a->elem_type != HYD_GGUF_F32 && a->elem_type != HYD_GGUF_F64)
		return -EINVAL;
	if (i >= a->n)
		return -ERANGE;
	return load_float(a->elem_type, (const uint8_t *)a->data + i * sz, ret);
}

int hyd_gguf_arr_i64(const struct hyd_gguf_arr *a, uint64_t i, int64_t *ret)
{
	uint32_t sz = scalar_size(a->elem_type);
	bool neg;
	int64_t s;
	uint64_t u;
	if (!sz || a->elem_type == HYD_GGUF_F32 || a->elem_type == HYD_GGUF_F64)
		return -EINVAL;
	if (i >= a->n)
		return -ERANGE;
	int r = load_int(a->elem_type, (const uint8_t *)a->data + i * sz, true, &neg, &s, &u);
	if (r < 0)
		return r;
	if (!neg && u > INT64_MAX)
		return -EINVAL;
	*ret = s;
	return 0;
}

uint64_t hyd_gguf_n_tensors(const struct hyd_gguf *g)
{
	return g->n_tensors;
}

const struct hyd_tensor *hyd_gguf_tensor(const struct hyd_gguf *g, uint64_t i)
{
	return i < g->n_tensors ? &g->tensors[i].t : NULL;
}

const struct hyd_tensor *hyd_gguf_find_tensor(const struct hyd_gguf *g, const char *name)
{
	struct hyd_str k = { name, strlen(name) };
	uint64_t s = tensor_slot(g, k);
	return g->t_slots[s] ? &g->tensors[g->t_slots[s] - 1].t : NULL;
}

bool hyd_str_eq(struct hyd_str str, const char *s)
{
	size_t n = strlen(s);
	return str.n == n && !memcmp(str.p, s, n);
}
