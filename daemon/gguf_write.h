/* GGUF v3 writer, for tests and for generating benchmark models.
 *
 * Key/values are written in the order they are added, then the tensor records, then the tensor
 * data, each tensor starting at a multiple of the alignment (32 unless set).  The writer lays
 * out what it is given and checks only what it needs to do that: it happily writes duplicate
 * keys, unknown tensor types, zero dims or sizes that do not match the shape, which is what the
 * reader's tests need.  Open the result with hyd_gguf_open() to validate it.
 *
 * Every function returns 0 or a negative errno: -EINVAL for bad arguments (NULL key or name,
 * n_dims > 4, a non-numeric element type for a numeric array), -ENOMEM, or (writing a file)
 * the errno of the failed system call. */
#ifndef HYD_DAEMON_GGUF_WRITE_H
#define HYD_DAEMON_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hyd_gguf_writer;

int hyd_gguf_writer_new(struct hyd_gguf_writer **ret_w);
void hyd_gguf_writer_free(struct hyd_gguf_writer *w); /* accepts NULL */

/* Data alignment (a nonzero power of two, else -EINVAL).  Once set it is also written as the
 * key general.alignment (u32), after the keys added by the caller. */
int hyd_gguf_writer_set_alignment(struct hyd_gguf_writer *w, uint32_t alignment);

int hyd_gguf_writer_add_u8(struct hyd_gguf_writer *w, const char *key, uint8_t v);
int hyd_gguf_writer_add_i8(struct hyd_gguf_writer *w, const char *key, int8_t v);
int hyd_gguf_writer_add_u16(struct hyd_gguf_writer *w, const char *key, uint16_t v);
int hyd_gguf_writer_add_i16(struct hyd_gguf_writer *w, const char *key, int16_t v);
int hyd_gguf_writer_add_u32(struct hyd_gguf_writer *w, const char *key, uint32_t v);
int hyd_gguf_writer_add_i32(struct hyd_gguf_writer *w, const char *key, int32_t v);
int hyd_gguf_writer_add_u64(struct hyd_gguf_writer *w, const char *key, uint64_t v);
int hyd_gguf_writer_add_i64(struct hyd_gguf_writer *w, const char *key, int64_t v);
int hyd_gguf_writer_add_f32(struct hyd_gguf_writer *w, const char *key, float v);
int hyd_gguf_writer_add_f64(struct hyd_gguf_writer *w, const char *key, double v);
int hyd_gguf_writer_add_bool(struct hyd_gguf_writer *w, const char *key, bool v);
int hyd_gguf_writer_add_str(struct hyd_gguf_writer *w, const char *key, const char *s);
/* A string of n bytes (may contain NULs). */
int hyd_gguf_writer_add_strn(struct hyd_gguf_writer *w, const char *key, const char *s,
			     uint64_t n);
/* An array of n numbers of elem_type (enum hyd_gguf_vtype, any type but STRING and ARRAY),
 * packed little-endian at data (bool: one byte each). */
int hyd_gguf_writer_add_arr(struct hyd_gguf_writer *w, const char *key, uint32_t elem_type,
			    const void *data, uint64_t n);
/* An array of n NUL-terminated strings. */
int hyd_gguf_writer_add_arr_str(struct hyd_gguf_writer *w, const char *key,
				const char *const *strs, uint64_t n);

/* A tensor of n_dims (0..4) dims ne[0..n_dims) and type (GGML numbering) whose data is the
 * nbytes at data (NULL: zeros).  _add_tensor copies the data; _add_tensor_ref keeps the
 * pointer, which must stay valid until the last write (for large generated models). */
int hyd_gguf_writer_add_tensor(struct hyd_gguf_writer *w, const char *name, uint32_t type,
			       uint32_t n_dims, const int64_t *ne, const void *data,
			       uint64_t nbytes);
int hyd_gguf_writer_add_tensor_ref(struct hyd_gguf_writer *w, const char *name, uint32_t type,
				   uint32_t n_dims, const int64_t *ne, const void *data,
				   uint64_t nbytes);

struct hyd_gguf;
/* Copies key/value i of a file being read (daemon/gguf.h) into w, with its type.  Used to
 * derive files from existing ones (tests, the benchmark model generator).  -ENOTSUP for an
 * I64 value below zero (no exact getter), -ENOMEM. */
int hyd_gguf_writer_copy_kv(struct hyd_gguf_writer *w, const struct hyd_gguf *g, uint64_t i);

/* The whole file in a new buffer (free with hyd_free()). */
int hyd_gguf_writer_write_mem(const struct hyd_gguf_writer *w, void **ret_buf, size_t *ret_len);
/* Writes path atomically: a temporary file in the same directory, then rename(). */
int hyd_gguf_writer_write_file(const struct hyd_gguf_writer *w, const char *path);

#endif
