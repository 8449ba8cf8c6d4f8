/* GGUF v3 reader.  The file is mmapped read-only and validated completely before anything is
 * returned: header, every key/value (types, string and array lengths, duplicates), every tensor
 * record (name, dims, element-count overflow, type, offset alignment, data inside the file).
 * After hyd_gguf_open() succeeds every accessor below is safe on any input.
 *
 * Strings in GGUF are length-prefixed and not NUL-terminated: they are returned as hyd_str. */
#ifndef HYD_DAEMON_GGUF_H
#define HYD_DAEMON_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/tensor.h"

enum hyd_gguf_vtype {
	HYD_GGUF_U8 = 0,
	HYD_GGUF_I8 = 1,
	HYD_GGUF_U16 = 2,
	HYD_GGUF_I16 = 3,
	HYD_GGUF_U32 = 4,
	HYD_GGUF_I32 = 5,
	HYD_GGUF_F32 = 6,
	HYD_GGUF_BOOL = 7,
	HYD_GGUF_STRING = 8,
	HYD_GGUF_ARRAY = 9,
	HYD_GGUF_U64 = 10,
	HYD_GGUF_I64 = 11,
	HYD_GGUF_F64 = 12,
};

struct hyd_str {
	const char *p; /* not NUL-terminated; may contain NULs */
	uint64_t n;
};

/* An array value. Numeric arrays: data points at n packed little-endian elements (unaligned
 * access must use memcpy or the helpers below). String arrays: use hyd_gguf_arr_str(). */
struct hyd_gguf_arr {
	uint32_t elem_type; /* enum hyd_gguf_vtype, never ARRAY (nested arrays are rejected) */
	uint64_t n;
	const void *data;
	const void *priv; /* reader's index for string arrays */
};

struct hyd_gguf;

/* Opens and validates path.  On failure returns negative errno and, if err is non-NULL,
 * writes a one-line message naming the file, the offset and the field ("tiny.gguf: tensor 3
 * 'blk.0.attn_q.weight': data [1024, 9000) past end of file (8192 bytes)").
 * -ENOENT/-EACCES/...: cannot open; -EINVAL: malformed; -ENOMEM. */
int hyd_gguf_open(const char *path, struct hyd_gguf **ret_gguf, char *err, size_t errlen);
/* Same, on a caller-owned buffer that must outlive the handle (tests, fuzzing). */
int hyd_gguf_open_mem(const void *data, size_t size, const char *label, struct hyd_gguf **ret_gguf,
		      char *err, size_t errlen);
void hyd_gguf_close(struct hyd_gguf *g); /* accepts NULL */

uint32_t hyd_gguf_version(const struct hyd_gguf *g);
const char *hyd_gguf_path(const struct hyd_gguf *g);
uint64_t hyd_gguf_file_size(const struct hyd_gguf *g);

/* Key/value access. Every getter returns 0, -ENOENT if the key is absent, or -EINVAL if the
 * value has a type that cannot be represented (e.g. negative into unsigned, string into int).
 * Integer getters accept any integer type whose value fits; float getters accept F32/F64. */
uint64_t hyd_gguf_n_kv(const struct hyd_gguf *g);
int hyd_gguf_kv_key(const struct hyd_gguf *g, uint64_t i, struct hyd_str *ret_key);
int hyd_gguf_kv_type(const struct hyd_gguf *g, const char *key, uint32_t *ret_type);
int hyd_gguf_get_u32(const struct hyd_gguf *g, const char *key, uint32_t *ret);
int hyd_gguf_get_i32(const struct hyd_gguf *g, const char *key, int32_t *ret);
int hyd_gguf_get_u64(const struct hyd_gguf *g, const char *key, uint64_t *ret);
int hyd_gguf_get_f32(const struct hyd_gguf *g, const char *key, float *ret);
int hyd_gguf_get_bool(const struct hyd_gguf *g, const char *key, bool *ret);
int hyd_gguf_get_str(const struct hyd_gguf *g, const char *key, struct hyd_str *ret);
int hyd_gguf_get_arr(const struct hyd_gguf *g, const char *key, struct hyd_gguf_arr *ret);

/* Elements of arrays (i < arr->n; -ERANGE otherwise, -EINVAL on a type mismatch). */
int hyd_gguf_arr_str(const struct hyd_gguf_arr *a, uint64_t i, struct hyd_str *ret);
int hyd_gguf_arr_f32(const struct hyd_gguf_arr *a, uint64_t i, float *ret);   /* F32/F64 */
int hyd_gguf_arr_i64(const struct hyd_gguf_arr *a, uint64_t i, int64_t *ret); /* any integer/bool */

/* Tensors. Names are NUL-terminated copies; data points into the mapping. */
uint64_t hyd_gguf_n_tensors(const struct hyd_gguf *g);
const struct hyd_tensor *hyd_gguf_tensor(const struct hyd_gguf *g, uint64_t i);
const struct hyd_tensor *hyd_gguf_find_tensor(const struct hyd_gguf *g, const char *name);

/* True if the NUL-terminated string s equals str. */
bool hyd_str_eq(struct hyd_str str, const char *s);

#endif
