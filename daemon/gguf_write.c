/* GGUF v3 writer: key/values are serialised as they are added; tensor offsets are assigned at
 * write time, when the alignment is final. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/gguf.h"
#include "daemon/gguf_write.h"
#include "engine/alloc.h"

struct wbuf {
	uint8_t *p;
	size_t n, cap;
};

struct wtensor {
	char *name;
	uint32_t type, n_dims;
	int64_t ne[4];
	const void *data;
	uint64_t nbytes;
	bool owned;
};

struct hyd_gguf_writer {
	struct wbuf kv;
	uint64_t n_kv;
	uint32_t alignment;
	bool alignment_set;
	struct wtensor *tensors;
	uint64_t n_tensors, cap_tensors;
};

static int buf_put(struct wbuf *b, const void *p, size_t n)
{
	if (n > SIZE_MAX - b->n)
		return -ENOMEM;
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n) {
			if (cap > SIZE_MAX / 2)
				return -ENOMEM;
			cap *= 2;
		}
		uint8_t *q = hyd_realloc(b->p, cap);
		if (!q)
			return -ENOMEM;
		b->p = q;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
	return 0;
}

static int buf_zeros(struct wbuf *b, size_t n)
{
	static const uint8_t zeros[64];
	while (n) {
		size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
		int r = buf_put(b, zeros, k);
		if (r < 0)
			return r;
		n -= k;
	}
	return 0;
}

static int buf_u32(struct wbuf *b, uint32_t v)
{
	return buf_put(b, &v, 4);
}

static int buf_u64(struct wbuf *b, uint64_t v)
{
	return buf_put(b, &v, 8);
}

static int buf_str(struct wbuf *b, const char *s, uint64_t n)
{
	int r = buf_u64(b, n);
	return r < 0 ? r : buf_put(b, s, n);
}

int hyd_gguf_writer_new(struct hyd_gguf_writer **ret_w)
{
	struct hyd_gguf_writer *w = hyd_calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->alignment = 32;
	*ret_w = w;
	return 0;
}

void hyd_gguf_writer_free(struct hyd_gguf_writer *w)
{
	if (!w)
		return;
	for (uint64_t i = 0; i < w->n_tensors; i++) {
		hyd_free(w->tensors[i].name);
		if (w->tensors[i].owned)
			hyd_free((void *)w->tensors[i].data);
	}
	hyd_free(w->tensors);
	hyd_free(w->kv.p);
	hyd_free(w);
}

int hyd_gguf_writer_set_alignment(struct hyd_gguf_writer *w, uint32_t alignment)
{
	if (!alignment || (alignment & (alignment - 1)))
		return -EINVAL;
	w->alignment = alignment;
	w->alignment_set = true;
	return 0;
}

/* Appends key, type and value bytes as one unit: on failure the buffer is left as it was. */
static int add_kv(struct hyd_gguf_writer *w, const char *key, uint32_t type, const void *head,
		  size_t head_n, const void *val, size_t val_n)
{
	if (!key)
		return -EINVAL;
	size_t mark = w->kv.n;
	int r = buf_str(&w->kv, key, strlen(key));
	if (r >= 0)
		r = buf_u32(&w->kv, type);
	if (r >= 0)
		r = buf_put(&w->kv, head, head_n);
	if (r >= 0)
		r = buf_put(&w->kv, val, val_n);
	if (r < 0) {
		w->kv.n = mark;
		return r;
	}
	w->n_kv++;
	return 0;
}

#define SCALAR_ADDER(fn, ctype, vtype)                                                  \
	int hyd_gguf_writer_add_##fn(struct hyd_gguf_writer *w, const char *key, ctype v) \
	{                                                                                \
		return add_kv(w, key, vtype, NULL, 0, &v, sizeof(v));                    \
	}

SCALAR_ADDER(u8, uint8_t, HYD_GGUF_U8)
SCALAR_ADDER(i8, int8_t, HYD_GGUF_I8)
SCALAR_ADDER(u16, uint16_t, HYD_GGUF_U16)
SCALAR_ADDER(i16, int16_t, HYD_GGUF_I16)
SCALAR_ADDER(u32, uint32_t, HYD_GGUF_U32)
SCALAR_ADDER(i32, int32_t, HYD_GGUF_I32)
SCALAR_ADDER(u64, uint64_t, HYD_GGUF_U64)
SCALAR_ADDER(i64, int64_t, HYD_GGUF_I64)
SCALAR_ADDER(f32, float, HYD_GGUF_F32)
SCALAR_ADDER(f64, double, HYD_GGUF_F64)

int hyd_gguf_writer_add_bool(struct hyd_gguf_writer *w, const char *key, bool v)
{
	uint8_t b = v;
	return add_kv(w, key, HYD_GGUF_BOOL, NULL, 0, &b, 1);
}

int hyd_gguf_writer_add_strn(struct hyd_gguf_writer *w, const char *key, const char *s,
			     uint64_t n)
{
	if (!s && n)
		return -EINVAL;
	if (n > SIZE_MAX)
		return -ENOMEM;
	return add_kv(w, key, HYD_GGUF_STRING, &n, 8, s, (size_t)n);
}

int hyd_gguf_writer_add_str(struct hyd_gguf_writer *w, const char *key, const char *s)
{
	if (!s)
		return -EINVAL;
	return hyd_gguf_writer_add_strn(w, key, s, strlen(s));
}

static size_t elem_size(uint32_t t)
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

int hyd_gguf_writer_add_arr(struct hyd_gguf_writer *w, const char *key, uint32_t elem_type,
			    const void *data, uint64_t n)
{
	size_t esz = elem_size(elem_type);
	if (!esz || (!data && n))
		return -EINVAL;
	if (n > SIZE_MAX / esz)
		return -ENOMEM;
	uint8_t head[12];
	memcpy(head, &elem_type, 4);
	memcpy(head + 4, &n, 8);
	return add_kv(w, key, HYD_GGUF_ARRAY, head, sizeof(head), data, (size_t)(n * esz));
}

int hyd_gguf_writer_add_arr_str(struct hyd_gguf_writer *w, const char *key,
				const char *const *strs, uint64_t n)
{
	if (!key || (!strs && n))
		return -EINVAL;
	for (uint64_t i = 0; i < n; i++)
		if (!strs[i])
			return -EINVAL;
	size_t mark = w->kv.n;
	int r = buf_str(&w->kv, key, strlen(key));
	if (r >= 0)
		r = buf_u32(&w->kv, HYD_GGUF_ARRAY);
	if (r >= 0)
		r = buf_u32(&w->kv, HYD_GGUF_STRING);
	if (r >= 0)
		r = buf_u64(&w->kv, n);
	for (uint64_t i = 0; r >= 0 && i < n; i++)
		r = buf_str(&w->kv, strs[i], strlen(strs[i]));
	if (r < 0) {
		w->kv.n = mark;
		return r;
	}
	w->n_kv++;
	return 0;
}

static int add_tensor(struct hyd_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
		      const int64_t *ne, const void *data, uint64_t nbytes, bool copy)
{
	if (!name || n_dims > 4 || (!ne && n_dims))
		return -EINVAL;
	if (w->n_tensors == w->cap_tensors) {
		uint64_t cap = w->cap_tensors ? 2 * w->cap_tensors : 16;
		struct wtensor *t = hyd_realloc(w->tensors, cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		w->tensors = t;
		w->cap_tensors = cap;
	}
	struct wtensor t = { .type = type, .n_dims = n_dims, .nbytes = nbytes, .data = data };
	for (uint32_t d = 0; d < n_dims; d++)
		t.ne[d] = ne[d];
	t.name = hyd_strdup(name);
	if (!t.name)
		return -ENOMEM;
	if (copy && data && nbytes) {
		void *p = nbytes <= SIZE_MAX ? hyd_malloc((size_t)nbytes) : NULL;
		if (!p) {
			hyd_free(t.name);
			return -ENOMEM;
		}
		memcpy(p, data, (size_t)nbytes);
		t.data = p;
		t.owned = true;
	}
	w->tensors[w->n_tensors++] = t;
	return 0;
}

int hyd_gguf_writer_add_tensor(struct hyd_gguf_writer *w, const char *name, uint32_t type,
			       uint32_t n_dims, const int64_t *ne, const void *data,
			       uint64_t nbytes)
{
	return add_tensor(w, name, type, n_dims, ne, data, nbytes, true);
}

int hyd_gguf_writer_add_tensor_ref(struct hyd_gguf_writer *w, const char *name, uint32_t type,
				   uint32_t n_dims, const int64_t *ne, const void *data,
				   uint64_t nbytes)
{
	return add_tensor(w, name, type, n_dims, ne, data, nbytes, false);
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Everything before the tensor data, padded to the alignment. */
static int build_meta(const struct hyd_gguf_writer *w, struct wbuf *b)
{
	int r = buf_put(b, "GGUF", 4);
	if (r >= 0)
		r = buf_u32(b, 3);
	if (r >= 0)
		r = buf_u64(b, w->n_tensors);
	if (r >= 0)
		r = buf_u64(b, w->n_kv + w->alignment_set);
	if (r >= 0)
		r = buf_put(b, w->kv.p, w->kv.n);
	if (r >= 0 && w->alignment_set) {
		static const char key[] = "general.alignment";
		r = buf_str(b, key, sizeof(key) - 1);
		if (r >= 0)
			r = buf_u32(b, HYD_GGUF_U32);
		if (r >= 0)
			r = buf_u32(b, w->alignment);
	}
	uint64_t off = 0;
	for (uint64_t i = 0; r >= 0 && i < w->n_tensors; i++) {
		const struct wtensor *t = &w->tensors[i];
		r = buf_str(b, t->name, strlen(t->name));
		if (r >= 0)
			r = buf_u32(b, t->n_dims);
		for (uint32_t d = 0; r >= 0 && d < t->n_dims; d++)
			r = buf_u64(b, (uint64_t)t->ne[d]);
		if (r >= 0)
			r = buf_u32(b, t->type);
		if (r >= 0)
			r = buf_u64(b, off);
		if (t->nbytes > UINT64_MAX - off - w->alignment)
			return -EOVERFLOW;
		off = align_up(off + t->nbytes, w->alignment);
	}
	if (r >= 0)
		r = buf_zeros(b, align_up(b->n, w->alignment) - b->n);
	return r;
}

int hyd_gguf_writer_write_mem(const struct hyd_gguf_writer *w, void **ret_buf, size_t *ret_len)
{
	struct wbuf b = { 0 };
	int r = build_meta(w, &b);
	for (uint64_t i = 0; r >= 0 && i < w->n_tensors; i++) {
		const struct wtensor *t = &w->tensors[i];
		if (t->nbytes > SIZE_MAX) {
			r = -ENOMEM;
			break;
		}
		r = t->data ? buf_put(&b, t->data, (size_t)t->nbytes) :
			      buf_zeros(&b, (size_t)t->nbytes);
		if (r >= 0)
			r = buf_zeros(&b, align_up(b.n, w->alignment) - b.n);
	}
	if (r < 0) {
		hyd_free(b.p);
		return r;
	}
	*ret_buf = b.p ? (void *)b.p : hyd_malloc(1);
	if (!*ret_buf)
		return -ENOMEM;
	*ret_len = b.n;
	return 0;
}

static int write_all(int fd, const void *p, uint64_t n)
{
	const uint8_t *q = p;
	while (n) {
		size_t k = n > (1u << 30) ? (1u << 30) : (size_t)n;
		ssize_t m = write(fd, q, k);
		if (m < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		q += m;
		n -= (uint64_t)m;
	}
	return 0;
}

static int write_zeros(int fd, uint64_t n)
{
	static const uint8_t zeros[4096];
	while (n) {
		uint64_t k = n < sizeof(zeros) ? n : sizeof(zeros);
		int r = write_all(fd, zeros, k);
		if (r < 0)
			return r;
		n -= k;
	}
	return 0;
}

int hyd_gguf_writer_write_file(const struct hyd_gguf_writer *w, const char *path)
{
	if (!path)
		return -EINVAL;
	struct wbuf b = { 0 };
	int r = build_meta(w, &b);
	if (r < 0) {
		hyd_free(b.p);
		return r;
	}
	size_t plen = strlen(path);
	char *tmp = hyd_malloc(plen + 8);
	if (!tmp) {
		hyd_free(b.p);
		return -ENOMEM;
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".XXXXXX", 8);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	r = write_all(fd, b.p, b.n);
	uint64_t pos = 0;
	for (uint64_t i = 0; r >= 0 && i < w->n_tensors; i++) {
		const struct wtensor *t = &w->tensors[i];
		r = t->data ? write_all(fd, t->data, t->nbytes) : write_zeros(fd, t->nbytes);
		pos += t->nbytes;
		if (r >= 0)
			r = write_zeros(fd, align_up(pos, w->alignment) - pos);
		pos = align_up(pos, w->alignment);
	}
	/* mkstemp creates 0600; a model file is meant to be read by the daemon's user too. */
	if (r >= 0 && fchmod(fd, 0644) < 0)
		r = -errno;
	if (r >= 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r >= 0)
		r = -errno;
	if (r >= 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
out:
	hyd_free(tmp);
	hyd_free(b.p);
	return r;
}

/* Scalars go through the reader's range-checked getters; arrays are copied as packed data. */
int hyd_gguf_writer_copy_kv(struct hyd_gguf_writer *w, const struct hyd_gguf *g, uint64_t i)
{
	struct hyd_str k;
	uint32_t type;
	int r = hyd_gguf_kv_key(g, i, &k);
	if (r)
		return r;
	char *key = hyd_strndup(k.p, (size_t)k.n);
	if (!key)
		return -ENOMEM;
	if ((r = hyd_gguf_kv_type(g, key, &type)))
		goto out;
	uint64_t u;
	int32_t s32;
	float f;
	bool b;
	struct hyd_str str;
	struct hyd_gguf_arr a;
	switch (type) {
	case HYD_GGUF_U8: case HYD_GGUF_U16: case HYD_GGUF_U32: case HYD_GGUF_U64: case HYD_GGUF_I64:
		if (!(r = hyd_gguf_get_u64(g, key, &u)))
			r = type == HYD_GGUF_U8    ? hyd_gguf_writer_add_u8(w, key, (uint8_t)u)
			    : type == HYD_GGUF_U16 ? hyd_gguf_writer_add_u16(w, key, (uint16_t)u)
			    : type == HYD_GGUF_U32 ? hyd_gguf_writer_add_u32(w, key, (uint32_t)u)
			    : type == HYD_GGUF_U64 ? hyd_gguf_writer_add_u64(w, key, u)
						   : hyd_gguf_writer_add_i64(w, key, (int64_t)u);
		else if (type == HYD_GGUF_I64)
			r = -ENOTSUP;
		break;
	case HYD_GGUF_I8: case HYD_GGUF_I16: case HYD_GGUF_I32:
		if (!(r = hyd_gguf_get_i32(g, key, &s32)))
			r = type == HYD_GGUF_I8	   ? hyd_gguf_writer_add_i8(w, key, (int8_t)s32)
			    : type == HYD_GGUF_I16 ? hyd_gguf_writer_add_i16(w, key, (int16_t)s32)
						   : hyd_gguf_writer_add_i32(w, key, s32);
		break;
	case HYD_GGUF_F32: case HYD_GGUF_F64:
		if (!(r = hyd_gguf_get_f32(g, key, &f)))
			r = type == HYD_GGUF_F32 ? hyd_gguf_writer_add_f32(w, key, f) : hyd_gguf_writer_add_f64(w, key, f);
		break;
	case HYD_GGUF_BOOL:
		if (!(r = hyd_gguf_get_bool(g, key, &b)))
			r = hyd_gguf_writer_add_bool(w, key, b);
		break;
	case HYD_GGUF_STRING:
		if (!(r = hyd_gguf_get_str(g, key, &str)))
			r = hyd_gguf_writer_add_strn(w, key, str.p, str.n);
		break;
	case HYD_GGUF_ARRAY:
		if ((r = hyd_gguf_get_arr(g, key, &a)))
			break;
		if (a.elem_type != HYD_GGUF_STRING) {
			r = hyd_gguf_writer_add_arr(w, key, a.elem_type, a.data, a.n);
			break;
		}
		{
			char **strs = hyd_calloc(a.n ? a.n : 1, sizeof(char *));
			if (!strs) {
				r = -ENOMEM;
				break;
			}
			for (uint64_t j = 0; j < a.n && !r; j++) {
				if (!(r = hyd_gguf_arr_str(&a, j, &str)) && !(strs[j] = hyd_strndup(str.p, (size_t)str.n)))
					r = -ENOMEM;
			}
			if (!r)
				r = hyd_gguf_writer_add_arr_str(w, key, (const char *const *)strs, a.n);
			for (uint64_t j = 0; j < a.n; j++)
				hyd_free(strs[j]);
			hyd_free(strs);
		}
		break;
	default:
		r = -ENOTSUP;
	}
out:
	hyd_free(key);
	return r;
}
