/* GGUF reader and writer: malformed files (one case each), truncation at every length, a round
 * trip through the writer, and every GGUF in the shared test data. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/gguf.h"
#include "daemon/gguf_write.h"
#include "engine/alloc.h"
#include "engine/types.h"

/* ------------------------------------------------------------------ helpers */

static struct hyd_gguf_writer *writer(void)
{
	struct hyd_gguf_writer *w = NULL;
	ck_assert_int_eq(hyd_gguf_writer_new(&w), 0);
	return w;
}

/* Serialises and frees w; the result is copied into a block of exactly *len bytes so that
 * AddressSanitizer sees any read past the end. */
static uint8_t *build(struct hyd_gguf_writer *w, size_t *len)
{
	void *buf = NULL;
	ck_assert_int_eq(hyd_gguf_writer_write_mem(w, &buf, len), 0);
	hyd_gguf_writer_free(w);
	uint8_t *exact = hyd_malloc(*len);
	ck_assert_ptr_nonnull(exact);
	memcpy(exact, buf, *len);
	hyd_free(buf);
	return exact;
}

static void put_u32(uint8_t *b, size_t off, uint32_t v)
{
	memcpy(b + off, &v, 4);
}

static void put_u64(uint8_t *b, size_t off, uint64_t v)
{
	memcpy(b + off, &v, 8);
}

/* Offset of a tensor record's data-offset field, found by the record's name. */
static size_t tensor_offset_field(const uint8_t *b, size_t len, const char *name, uint32_t n_dims)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i + 8 + nl <= len; i++) {
		uint64_t n;
		memcpy(&n, b + i, 8);
		if (n == nl && !memcmp(b + i + 8, name, nl))
			return i + 8 + nl + 4 + 8 * n_dims + 4;
	}
	ck_abort_msg("tensor record '%s' not found", name);
	return 0;
}

/* Opening must fail with -EINVAL, leave ret untouched and give one line naming the label, the
 * offset (when off >= 0) and, through needle, the field. */
static void expect_einval(const uint8_t *buf, size_t len, int64_t off, const char *needle)
{
	static struct hyd_gguf *const sentinel = (struct hyd_gguf *)0x1;
	struct hyd_gguf *g = sentinel;
	char err[512] = "";
	int r = hyd_gguf_open_mem(buf, len, "bad.gguf", &g, err, sizeof(err));
	ck_assert_msg(r == -EINVAL, "open returned %d (%s), expected -EINVAL", r, err);
	ck_assert_ptr_eq(g, sentinel);
	ck_assert_msg(!strncmp(err, "bad.gguf: offset ", 17), "message '%s' lacks label", err);
	if (off >= 0) {
		char want[64];
		snprintf(want, sizeof(want), "bad.gguf: offset %" PRId64 ": ", off);
		ck_assert_msg(!strncmp(err, want, strlen(want)), "message '%s' is not at '%s'", err,
			      want);
	}
	ck_assert_msg(strstr(err, needle), "message '%s' lacks '%s'", err, needle);
	ck_assert_msg(!strchr(err, '\n'), "message '%s' is not one line", err);
}

static struct hyd_gguf *expect_open(const uint8_t *buf, size_t len)
{
	struct hyd_gguf *g = NULL;
	char err[512] = "";
	int r = hyd_gguf_open_mem(buf, len, "good.gguf", &g, err, sizeof(err));
	ck_assert_msg(r == 0, "open failed: %d %s", r, err);
	ck_assert_ptr_nonnull(g);
	return g;
}

/* Header (24 bytes), then key "k": length at 24, byte at 32, type at 33, value at 37. */
#define KV_TYPE_AT 33
#define KV_VALUE_AT 37

static uint8_t *file_one_str(size_t *len)
{
	struct hyd_gguf_writer *w = writer();
	ck_assert_int_eq(hyd_gguf_writer_add_str(w, "k", "hello"), 0);
	return build(w, len);
}

/* Array value: element type at 37, count at 41. */
static uint8_t *file_one_arr(size_t *len)
{
	static const uint32_t v[3] = { 1, 2, 3 };
	struct hyd_gguf_writer *w = writer();
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "k", HYD_GGUF_U32, v, 3), 0);
	return build(w, len);
}

/* One tensor and no keys: the record starts at 24 with its name "t", so n_dims is at 33 and
 * dim 0 at 37. */
static uint8_t *file_one_tensor(uint32_t type, uint32_t n_dims, const int64_t *ne, uint64_t nbytes,
				size_t *len)
{
	struct hyd_gguf_writer *w = writer();
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "t", type, n_dims, ne, NULL, nbytes), 0);
	return build(w, len);
}

/* A small valid file with a bit of everything: keys, a string array, three tensors. */
static uint8_t *file_small(size_t *len)
{
	static const char *const toks[] = { "<s>", "a", "", "bc" };
	static const float fv[2] = { 0.5f, -1.0f };
	float w0[8];
	uint8_t q[2 * 34];
	for (int i = 0; i < 8; i++)
		w0[i] = (float)i;
	for (size_t i = 0; i < sizeof(q); i++)
		q[i] = (uint8_t)i;
	struct hyd_gguf_writer *w = writer();
	ck_assert_int_eq(hyd_gguf_writer_add_str(w, "general.architecture", "llama"), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_u32(w, "llama.block_count", 2), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_bool(w, "b", true), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 4), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "scores", HYD_GGUF_F32, fv, 2), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "t.a", HYD_TYPE_F32, 2, (int64_t[]){ 4, 2 },
						    w0, sizeof(w0)), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "t.bb", HYD_TYPE_Q8_0, 1, (int64_t[]){ 64 },
						    q, sizeof(q)), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "t.c", HYD_TYPE_F32, 1, (int64_t[]){ 3 },
						    w0, 12), 0);
	return build(w, len);
}

/* ------------------------------------------------------------------ header */

START_TEST(bad_magic)
{
	size_t len;
	uint8_t *b = file_one_str(&len);
	b[0] = 'X';
	expect_einval(b, len, 0, "bad magic");
	expect_einval(b, 3, 0, "magic truncated");
	expect_einval(NULL, 0, 0, "magic truncated");
	hyd_free(b);
}
END_TEST

START_TEST(bad_version)
{
	size_t len;
	uint8_t *b = file_one_str(&len);
	put_u32(b, 4, 4);
	expect_einval(b, len, 4, "unsupported version 4");
	put_u32(b, 4, 1);
	expect_einval(b, len, 4, "unsupported version 1");
	put_u32(b, 4, 0x03000000);
	expect_einval(b, len, 4, "big-endian");
	/* Version 2 has the same layout and is accepted. */
	put_u32(b, 4, 2);
	struct hyd_gguf *g = expect_open(b, len);
	ck_assert_uint_eq(hyd_gguf_version(g), 2);
	hyd_gguf_close(g);
	hyd_free(b);
}
END_TEST

START_TEST(kv_count_huge)
{
	size_t len;
	uint8_t *b = file_one_str(&len);
	put_u64(b, 16, UINT64_MAX);
	expect_einval(b, len, 16, "kv count 18446744073709551615 cannot fit");
	put_u64(b, 16, 1ull << 40);
	expect_einval(b, len, 16, "kv count");
	/* Plausible count, but the keys are not there. */
	put_u64(b, 16, 3);
	expect_einval(b, len, 63, "key 2: key truncated");
	hyd_free(b);
}
END_TEST

START_TEST(tensor_count_huge)
{
	size_t len;
	uint8_t *b = file_one_str(&len);
	put_u64(b, 8, UINT64_MAX);
	expect_einval(b, len, 8, "tensor count 18446744073709551615 cannot fit");
	put_u64(b, 8, 1ull << 33);
	expect_einval(b, len, 8, "tensor count");
	hyd_free(b);
}
END_TEST

/* ------------------------------------------------------------------ key/values */

START_TEST(string_past_end)
{
	size_t len;
	uint8_t *b = file_one_str(&len);
	put_u64(b, KV_VALUE_AT, 4294967296ull);
	expect_einval(b, len, KV_VALUE_AT,
		      "key 0 'k': string length 4294967296 runs past end of file");
	put_u64(b, KV_VALUE_AT, len - KV_VALUE_AT - 8 + 1);
	expect_einval(b, len, KV_VALUE_AT, "runs past end of file");
	put_u64(b, KV_VALUE_AT, 5);
	put_u64(b, 24, 1ull << 35); /* the key's own length */
	expect_einval(b, len, 24, "key 0: key length 34359738368 runs past end");
	hyd_free(b);
}
END_TEST

START_TEST(string_length_overflow)
{
	size_t len;
	uint8_t *b = file_one_str(&len);
	put_u64(b, KV_VALUE_AT, UINT64_MAX);
	expect_einval(b, len, KV_VALUE_AT, "string length 18446744073709551615 runs past end");
	put_u64(b, KV_VALUE_AT, 5);
	put_u64(b, 24, UINT64_MAX);
	expect_einval(b, len, 24, "key length 18446744073709551615");
	hyd_free(b);
}
END_TEST

START_TEST(array_count_huge)
{
	size_t len;
	uint8_t *b = file_one_arr(&len);
	put_u64(b, 41, 1ull << 62);
	expect_einval(b, len, 41, "array count 4611686018427387904 of u32 cannot fit");
	put_u64(b, 41, 4); /* one element more than there is */
	expect_einval(b, len, 41, "array count 4");
	put_u64(b, 41, UINT64_MAX);
	expect_einval(b, len, 41, "array count");
	hyd_free(b);

	/* String arrays: each element needs at least its 8-byte length. */
	static const char *const s[] = { "x", "y" };
	struct hyd_gguf_writer *w = writer();
	ck_assert_int_eq(hyd_gguf_writer_add_arr_str(w, "k", s, 2), 0);
	b = build(w, &len);
	put_u64(b, 41, UINT64_MAX / 8);
	expect_einval(b, len, 41, "array count");
	/* Cut inside the second element. */
	put_u64(b, 41, 2);
	expect_einval(b, 66, 58, "key 0 'k': element 1: string length 1 runs past end");
	put_u64(b, 49 + 9, UINT64_MAX); /* second element's length */
	expect_einval(b, len, 58, "element 1: string length 18446744073709551615 runs past end");
	hyd_free(b);
}
END_TEST

START_TEST(array_unknown_type)
{
	size_t len;
	uint8_t *b = file_one_arr(&len);
	put_u32(b, 37, 13);
	expect_einval(b, len, 37, "array of unknown element type 13");
	put_u32(b, 37, UINT32_MAX);
	expect_einval(b, len, 37, "unknown element type 4294967295");
	hyd_free(b);
}
END_TEST

START_TEST(array_nested)
{
	size_t len;
	uint8_t *b = file_one_arr(&len);
	put_u32(b, 37, HYD_GGUF_ARRAY);
	expect_einval(b, len, 37, "nested array");
	hyd_free(b);
}
END_TEST

START_TEST(unknown_value_type)
{
	size_t len;
	uint8_t *b = file_one_str(&len);
	put_u32(b, KV_TYPE_AT, 13);
	expect_einval(b, len, KV_TYPE_AT, "key 0 'k': unknown value type 13");
	put_u32(b, KV_TYPE_AT, 0x80000000u);
	expect_einval(b, len, KV_TYPE_AT, "unknown value type 2147483648");
	hyd_free(b);
}
END_TEST

START_TEST(bad_bool)
{
	struct hyd_gguf_writer *w = writer();
	ck_assert_int_eq(hyd_gguf_writer_add_bool(w, "k", true), 0);
	size_t len;
	uint8_t *b = build(w, &len);
	b[KV_VALUE_AT] = 2;
	expect_einval(b, len, KV_VALUE_AT, "bool value 2");
	hyd_free(b);
}
END_TEST

START_TEST(duplicate_key)
{
	struct hyd_gguf_writer *w = writer();
	ck_assert_int_eq(hyd_gguf_writer_add_u32(w, "a", 1), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_str(w, "b", "x"), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_f32(w, "a", 2.0f), 0);
	size_t len;
	uint8_t *b = build(w, &len);
	/* a: 24..36 + 4; b: 41 + 8+1+4 + 8+1 = 63 */
	expect_einval(b, len, 63, "key 2 'a': duplicate key (also key 0)");
	hyd_free(b);
}
END_TEST

/* ------------------------------------------------------------------ tensors */

START_TEST(duplicate_tensor)
{
	struct hyd_gguf_writer *w = writer();
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "w", HYD_TYPE_F32, 1, (int64_t[]){ 4 },
						    NULL, 16), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "v", HYD_TYPE_F32, 1, (int64_t[]){ 4 },
						    NULL, 16), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "w", HYD_TYPE_F32, 1, (int64_t[]){ 4 },
						    NULL, 16), 0);
	size_t len;
	uint8_t *b = build(w, &len);
	/* each record: 8 + 1 + 4 + 8 + 4 + 8 = 33 bytes */
	expect_einval(b, len, 24 + 66, "tensor 2 'w': duplicate tensor name (also tensor 0)");
	hyd_free(b);
}
END_TEST

START_TEST(tensor_name_nul)
{
	struct hyd_gguf_writer *w = writer();
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "ab", HYD_TYPE_F32, 1, (int64_t[]){ 4 },
						    NULL, 16), 0);
	size_t len;
	uint8_t *b = build(w, &len);
	b[33] = 0;
	expect_einval(b, len, 24, "tensor 0: name contains a NUL byte");
	/* A name over 64 KiB is refused even when the bytes are there. */
	put_u64(b, 24, 65537);
	char *big = hyd_calloc(1, len + 70000);
	memcpy(big, b, len);
	expect_einval((uint8_t *)big, len + 70000, 24, "name length 65537 exceeds");
	hyd_free(big);
	hyd_free(b);
}
END_TEST

START_TEST(n_dims_bad)
{
	size_t len;
	uint8_t *b = file_one_tensor(HYD_TYPE_F32, 0, NULL, 4, &len);
	expect_einval(b, len, 33, "tensor 0 't': n_dims 0 (must be 1..4)");
	hyd_free(b);
	b = file_one_tensor(HYD_TYPE_F32, 4, (int64_t[]){ 1, 1, 1, 1 }, 4, &len);
	put_u32(b, 33, 5);
	expect_einval(b, len, 33, "n_dims 5");
	put_u32(b, 33, UINT32_MAX);
	expect_einval(b, len, 33, "n_dims 4294967295");
	hyd_free(b);
}
END_TEST

START_TEST(zero_dim)
{
	size_t len;
	uint8_t *b = file_one_tensor(HYD_TYPE_F32, 2, (int64_t[]){ 4, 0 }, 0, &len);
	expect_einval(b, len, 45, "tensor 0 't': dim 1 is 0");
	hyd_free(b);
	b = file_one_tensor(HYD_TYPE_F32, 1, (int64_t[]){ 0 }, 0, &len);
	expect_einval(b, len, 37, "dim 0 is 0");
	hyd_free(b);
}
END_TEST

START_TEST(element_overflow)
{
	size_t len;
	uint8_t *b = file_one_tensor(HYD_TYPE_F32, 2, (int64_t[]){ 1ll << 32, 1ll << 31 }, 32,
				     &len);
	expect_einval(b, len, 45, "element count overflows int64 at dim 1");
	hyd_free(b);
	/* A single dim beyond INT64_MAX (stored as u64). */
	b = file_one_tensor(HYD_TYPE_F32, 1, (int64_t[]){ -1 }, 32, &len);
	expect_einval(b, len, 37, "element count overflows");
	hyd_free(b);
	/* Elements fit in int64, bytes do not. */
	b = file_one_tensor(HYD_TYPE_F32, 2, (int64_t[]){ 1ll << 32, 1ll << 30 }, 32, &len);
	expect_einval(b, len, 53, "size in bytes overflows");
	hyd_free(b);
}
END_TEST

START_TEST(unknown_tensor_type)
{
	size_t len;
	uint8_t *b = file_one_tensor(99, 1, (int64_t[]){ 32 }, 32, &len);
	expect_einval(b, len, 45, "tensor 0 't': unknown tensor type 99");
	hyd_free(b);
	b = file_one_tensor(4, 1, (int64_t[]){ 32 }, 32, &len); /* Q4_2: removed from GGML */
	expect_einval(b, len, 45, "unknown tensor type 4");
	hyd_free(b);
	b = file_one_tensor(HYD_TYPE_COUNT, 1, (int64_t[]){ 32 }, 32, &len);
	expect_einval(b, len, 45, "unknown tensor type");
	hyd_free(b);
}
END_TEST

START_TEST(row_not_whole_blocks)
{
	size_t len;
	uint8_t *b = file_one_tensor(HYD_TYPE_Q8_0, 2, (int64_t[]){ 33, 2 }, 68, &len);
	expect_einval(b, len, 53, "row of 33 elements is not a whole number of Q8_0 blocks");
	hyd_free(b);
	b = file_one_tensor(HYD_TYPE_Q4_K, 1, (int64_t[]){ 128 }, 144, &len);
	expect_einval(b, len, 45, "Q4_K blocks");
	hyd_free(b);
}
END_TEST

START_TEST(misaligned_offset)
{
	size_t len;
	uint8_t *b = file_small(&len);
	size_t at = tensor_offset_field(b, len, "t.bb", 1);
	uint64_t off;
	memcpy(&off, b + at, 8);
	ck_assert_uint_eq(off % 32, 0);
	put_u64(b, at, off + 1);
	expect_einval(b, len, (int64_t)at, "tensor 1 't.bb': data offset 33 is not a multiple of "
		      "the alignment 32");
	put_u64(b, at, off + 16);
	expect_einval(b, len, (int64_t)at, "not a multiple of the alignment 32");
	hyd_free(b);
}
END_TEST

static uint8_t *file_alignment_key(int kind, uint32_t v, size_t *len)
{
	struct hyd_gguf_writer *w = writer();
	ck_assert_int_eq(hyd_gguf_writer_add_str(w, "general.name", "x"), 0);
	if (kind == 0)
		ck_assert_int_eq(hyd_gguf_writer_add_u32(w, "general.alignment", v), 0);
	else if (kind == 1)
		ck_assert_int_eq(hyd_gguf_writer_add_u64(w, "general.alignment", v), 0);
	else
		ck_assert_int_eq(hyd_gguf_writer_add_i32(w, "general.alignment", (int32_t)v), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "t", HYD_TYPE_F32, 1, (int64_t[]){ 4 },
						    NULL, 16), 0);
	return build(w, len);
}

START_TEST(bad_alignment)
{
	/* general.name takes 24..57; general.alignment's key 57..82, type 82, value 86. */
	size_t len;
	uint8_t *b = file_alignment_key(0, 0, &len);
	expect_einval(b, len, 86, "key 1 'general.alignment': general.alignment 0 is not a "
		      "nonzero power of two");
	hyd_free(b);
	b = file_alignment_key(0, 3, &len);
	expect_einval(b, len, 86, "general.alignment 3 is not");
	hyd_free(b);
	b = file_alignment_key(0, 0x80000001u, &len);
	expect_einval(b, len, 86, "general.alignment 2147483649 is not");
	hyd_free(b);
	b = file_alignment_key(1, 32, &len);
	expect_einval(b, len, 86, "general.alignment has type u64, must be u32");
	hyd_free(b);
	b = file_alignment_key(2, 32, &len);
	expect_einval(b, len, 86, "has type i32");
	hyd_free(b);
	/* A valid value opens. */
	b = file_alignment_key(0, 32, &len);
	hyd_gguf_close(expect_open(b, len));
	hyd_free(b);
}
END_TEST

START_TEST(data_past_end)
{
	size_t len;
	uint8_t *b = file_small(&len);
	size_t at = tensor_offset_field(b, len, "t.c", 1);
	put_u64(b, at, 1 << 20);
	expect_einval(b, len, (int64_t)at, "tensor 2 't.c': data [");
	expect_einval(b, len, (int64_t)at, ") past end of file");
	hyd_free(b);
	/* The data section cut short: the last tensor ends one byte past the end. */
	b = file_one_tensor(HYD_TYPE_F32, 1, (int64_t[]){ 8 }, 32, &len);
	char want[96];
	snprintf(want, sizeof(want), "data [%zu, %zu) past end of file (%zu bytes)", len - 32,
		 len, len - 1);
	expect_einval(b, len - 1, 49, want);
	hyd_free(b);
}
END_TEST

START_TEST(offset_size_overflow)
{
	size_t len;
	uint8_t *b = file_small(&len);
	size_t at = tensor_offset_field(b, len, "t.a", 2);
	put_u64(b, at, UINT64_MAX & ~31ull);
	expect_einval(b, len, (int64_t)at, "tensor 0 't.a': data offset 18446744073709551584 + "
		      "size 32 overflows");
	hyd_free(b);
}
END_TEST

START_TEST(truncated_everywhere)
{
	size_t len;
	uint8_t *full = file_small(&len);
	hyd_gguf_close(expect_open(full, len));
	/* The writer pads the last tensor: the file stays valid down to the end of its data. */
	const size_t data_end = len - 32 + 12;
	for (size_t n = 0; n < len; n++) {
		uint8_t *b = hyd_malloc(n);
		memcpy(b, full, n);
		if (n >= data_end) {
			hyd_gguf_close(expect_open(b, n));
		} else {
			struct hyd_gguf *g = NULL;
			char err[512] = "";
			int r = hyd_gguf_open_mem(b, n, "cut.gguf", &g, err, sizeof(err));
			ck_assert_msg(r == -EINVAL, "length %zu: open returned %d", n, r);
			ck_assert_ptr_null(g);
			ck_assert_msg(!strncmp(err, "cut.gguf: offset ", 17) &&
				      (strstr(err, "truncated") || strstr(err, "past end") ||
				       strstr(err, "cannot fit")),
				      "length %zu: message '%s'", n, err);
		}
		hyd_free(b);
	}
	hyd_free(full);
}
END_TEST

/* Every byte of a valid file set to a few values: opening either fails cleanly or gives a
 * handle whose accessors all work (run under the sanitizers, this is a small fuzzer). */
START_TEST(mutated_everywhere)
{
	static const uint8_t vals[] = { 0x00, 0x01, 0x02, 0x09, 0x7f, 0x80, 0xff };
	size_t len;
	uint8_t *full = file_small(&len);
	uint8_t *b = hyd_malloc(len);
	int opened = 0, failed = 0;
	for (size_t i = 0; i < len; i++) {
		for (size_t k = 0; k < sizeof(vals); k++) {
			memcpy(b, full, len);
			b[i] = vals[k];
			struct hyd_gguf *g = NULL;
			char err[512] = "";
			int r = hyd_gguf_open_mem(b, len, "m.gguf", &g, err, sizeof(err));
			if (r < 0) {
				ck_assert_msg(r == -EINVAL, "byte %zu = %u: %d", i, vals[k], r);
				ck_assert_msg(!strncmp(err, "m.gguf: offset ", 15), "'%s'", err);
				failed++;
				continue;
			}
			opened++;
			for (uint64_t j = 0; j < hyd_gguf_n_kv(g); j++) {
				struct hyd_str key;
				struct hyd_gguf_arr a;
				ck_assert_int_eq(hyd_gguf_kv_key(g, j, &key), 0);
				char name[64];
				snprintf(name, sizeof(name), "%.*s", (int)key.n, key.p);
				if (hyd_gguf_get_arr(g, name, &a) < 0)
					continue;
				for (uint64_t e = 0; e < a.n; e++) {
					struct hyd_str s;
					float f;
					int64_t v;
					if (hyd_gguf_arr_str(&a, e, &s) == 0)
						ck_assert((const uint8_t *)s.p >= b &&
							  (const uint8_t *)s.p + s.n <= b + len);
					hyd_gguf_arr_f32(&a, e, &f);
					hyd_gguf_arr_i64(&a, e, &v);
				}
			}
			for (uint64_t j = 0; j < hyd_gguf_n_tensors(g); j++) {
				const struct hyd_tensor *t = hyd_gguf_tensor(g, j);
				ck_assert_ptr_eq(hyd_gguf_find_tensor(g, t->name), t);
				const uint8_t *d = t->data;
				ck_assert(d >= b && d + t->nbytes <= b + len);
			}
			hyd_gguf_close(g);
		}
	}
	/* Data bytes and padding do not matter, header bytes do. */
	ck_assert_int_gt(opened, 0);
	ck_assert_int_gt(failed, 0);
	hyd_free(b);
	hyd_free(full);
}
END_TEST

/* ------------------------------------------------------------------ round trip */

static const char *const tokens[] = { "<unk>", "<s>", "</s>", "", "hello", "\xe2\x96\x81world" };

static struct hyd_gguf_writer *rich_writer(const float *w0, const uint16_t *w1, const uint8_t *w2)
{
	static const uint8_t a_u8[] = { 0, 255 };
	static const int8_t a_i8[] = { -128, 127 };
	static const uint16_t a_u16[] = { 65535 };
	static const int16_t a_i16[] = { -32768, 7 };
	static const uint32_t a_u32[] = { 1, 2, 4000000000u };
	static const int32_t a_i32[] = { -5, INT32_MAX };
	static const uint64_t a_u64[] = { UINT64_MAX, 7 };
	static const int64_t a_i64[] = { INT64_MIN, 3 };
	static const float a_f32[] = { 1.5f, -0.25f };
	static const double a_f64[] = { 1e300, 0.125 };
	static const uint8_t a_bool[] = { 1, 0, 1 };
	struct hyd_gguf_writer *w = writer();
	ck_assert_int_eq(hyd_gguf_writer_add_u8(w, "u8", 200), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_i8(w, "i8", -5), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_u16(w, "u16", 65535), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_i16(w, "i16", -300), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_u32(w, "u32", UINT32_MAX), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_i32(w, "i32", INT32_MIN), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_u64(w, "u64", 1ull << 40), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_u64(w, "u64small", 12), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_i64(w, "i64", INT64_MIN), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_i64(w, "i64pos", 77), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_f32(w, "f32", 0.1f), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_f64(w, "f64", 1.25), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_bool(w, "bool", true), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_bool(w, "boolf", false), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_str(w, "str", "llama"), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_strn(w, "strnul", "a\0b", 3), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_str(w, "empty", ""), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr_str(w, "tokens", tokens, 6), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr_str(w, "noarr", NULL, 0), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "a_u8", HYD_GGUF_U8, a_u8, 2), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "a_i8", HYD_GGUF_I8, a_i8, 2), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "a_u16", HYD_GGUF_U16, a_u16, 1), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "a_i16", HYD_GGUF_I16, a_i16, 2), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "a_u32", HYD_GGUF_U32, a_u32, 3), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "a_i32", HYD_GGUF_I32, a_i32, 2), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "a_u64", HYD_GGUF_U64, a_u64, 2), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "a_i64", HYD_GGUF_I64, a_i64, 2), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "a_f32", HYD_GGUF_F32, a_f32, 2), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "a_f64", HYD_GGUF_F64, a_f64, 2), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "a_bool", HYD_GGUF_BOOL, a_bool, 3), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "bad", HYD_GGUF_STRING, a_u8, 1), -EINVAL);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "bad", HYD_GGUF_ARRAY, a_u8, 1), -EINVAL);
	ck_assert_int_eq(hyd_gguf_writer_set_alignment(w, 48), -EINVAL);
	ck_assert_int_eq(hyd_gguf_writer_set_alignment(w, 64), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "token_embd.weight", HYD_TYPE_F32, 2,
						    (int64_t[]){ 4, 3 }, w0, 48), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "blk.0.h", HYD_TYPE_F16, 3,
						    (int64_t[]){ 2, 1, 3 }, w1, 12), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_tensor_ref(w, "blk.0.q", HYD_TYPE_Q4_K, 4,
							(int64_t[]){ 256, 1, 1, 2 }, w2, 288), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, "x", HYD_TYPE_F32, 5,
						    (int64_t[]){ 1, 1, 1, 1, 1 }, w0, 4), -EINVAL);
	return w;
}

static void check_rich(struct hyd_gguf *g, const float *w0, const uint16_t *w1, const uint8_t *w2,
		       const uint8_t *base)
{
	uint32_t u32;
	int32_t i32;
	uint64_t u64;
	float f;
	bool b;
	struct hyd_str s;
	struct hyd_gguf_arr a;

	ck_assert_uint_eq(hyd_gguf_version(g), 3);
	ck_assert_uint_eq(hyd_gguf_n_kv(g), 31); /* 30 added + general.alignment */
	ck_assert_int_eq(hyd_gguf_kv_key(g, 0, &s), 0);
	ck_assert(hyd_str_eq(s, "u8"));
	ck_assert_int_eq(hyd_gguf_kv_key(g, 30, &s), 0);
	ck_assert(hyd_str_eq(s, "general.alignment"));
	ck_assert_int_eq(hyd_gguf_kv_key(g, 31, &s), -ERANGE);
	ck_assert_int_eq(hyd_gguf_kv_type(g, "tokens", &u32), 0);
	ck_assert_uint_eq(u32, HYD_GGUF_ARRAY);
	ck_assert_int_eq(hyd_gguf_kv_type(g, "i16", &u32), 0);
	ck_assert_uint_eq(u32, HYD_GGUF_I16);
	ck_assert_int_eq(hyd_gguf_kv_type(g, "nope", &u32), -ENOENT);

	/* Integers: any integer type whose value fits. */
	ck_assert_int_eq(hyd_gguf_get_u32(g, "u8", &u32), 0);
	ck_assert_uint_eq(u32, 200);
	ck_assert_int_eq(hyd_gguf_get_i32(g, "u8", &i32), 0);
	ck_assert_int_eq(i32, 200);
	ck_assert_int_eq(hyd_gguf_get_u64(g, "u16", &u64), 0);
	ck_assert_uint_eq(u64, 65535);
	ck_assert_int_eq(hyd_gguf_get_i32(g, "i8", &i32), 0);
	ck_assert_int_eq(i32, -5);
	ck_assert_int_eq(hyd_gguf_get_i32(g, "i16", &i32), 0);
	ck_assert_int_eq(i32, -300);
	ck_assert_int_eq(hyd_gguf_get_u32(g, "u32", &u32), 0);
	ck_assert_uint_eq(u32, UINT32_MAX);
	ck_assert_int_eq(hyd_gguf_get_i32(g, "i32", &i32), 0);
	ck_assert_int_eq(i32, INT32_MIN);
	ck_assert_int_eq(hyd_gguf_get_u64(g, "u64", &u64), 0);
	ck_assert_uint_eq(u64, 1ull << 40);
	ck_assert_int_eq(hyd_gguf_get_u32(g, "u64small", &u32), 0);
	ck_assert_uint_eq(u32, 12);
	ck_assert_int_eq(hyd_gguf_get_i32(g, "i64pos", &i32), 0);
	ck_assert_int_eq(i32, 77);
	ck_assert_int_eq(hyd_gguf_get_u64(g, "i64pos", &u64), 0);
	ck_assert_uint_eq(u64, 77);

	/* Narrowing that loses the value, negatives into unsigned: -EINVAL, output untouched. */
	u32 = 0xdead;
	i32 = 0xbeef;
	u64 = 0xfeed;
	ck_assert_int_eq(hyd_gguf_get_u32(g, "i8", &u32), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_u64(g, "i16", &u64), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_i32(g, "u32", &i32), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_u32(g, "u64", &u32), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_i32(g, "u64", &i32), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_i32(g, "i64", &i32), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_u64(g, "i64", &u64), -EINVAL);
	ck_assert_uint_eq(u32, 0xdead);
	ck_assert_int_eq(i32, 0xbeef);
	ck_assert_uint_eq(u64, 0xfeed);

	/* Type mismatches. */
	ck_assert_int_eq(hyd_gguf_get_u32(g, "f32", &u32), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_u32(g, "str", &u32), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_u32(g, "bool", &u32), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_i32(g, "tokens", &i32), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_f32(g, "u32", &f), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_bool(g, "u8", &b), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_str(g, "u8", &s), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_str(g, "tokens", &s), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_arr(g, "str", &a), -EINVAL);

	/* Missing keys. */
	ck_assert_int_eq(hyd_gguf_get_u32(g, "missing", &u32), -ENOENT);
	ck_assert_int_eq(hyd_gguf_get_i32(g, "missing", &i32), -ENOENT);
	ck_assert_int_eq(hyd_gguf_get_u64(g, "missing", &u64), -ENOENT);
	ck_assert_int_eq(hyd_gguf_get_f32(g, "missing", &f), -ENOENT);
	ck_assert_int_eq(hyd_gguf_get_bool(g, "missing", &b), -ENOENT);
	ck_assert_int_eq(hyd_gguf_get_str(g, "missing", &s), -ENOENT);
	ck_assert_int_eq(hyd_gguf_get_arr(g, "missing", &a), -ENOENT);
	ck_assert_int_eq(hyd_gguf_get_u32(g, "u", &u32), -ENOENT);
	ck_assert_int_eq(hyd_gguf_get_u32(g, "u88", &u32), -ENOENT);

	/* Floats, bools, strings. */
	ck_assert_int_eq(hyd_gguf_get_f32(g, "f32", &f), 0);
	ck_assert(f == 0.1f);
	ck_assert_int_eq(hyd_gguf_get_f32(g, "f64", &f), 0);
	ck_assert(f == 1.25f);
	ck_assert_int_eq(hyd_gguf_get_bool(g, "bool", &b), 0);
	ck_assert(b);
	ck_assert_int_eq(hyd_gguf_get_bool(g, "boolf", &b), 0);
	ck_assert(!b);
	ck_assert_int_eq(hyd_gguf_get_str(g, "str", &s), 0);
	ck_assert(hyd_str_eq(s, "llama"));
	ck_assert(!hyd_str_eq(s, "llam"));
	ck_assert(!hyd_str_eq(s, "llamas"));
	ck_assert_int_eq(hyd_gguf_get_str(g, "strnul", &s), 0);
	ck_assert_uint_eq(s.n, 3);
	ck_assert(!memcmp(s.p, "a\0b", 3));
	ck_assert_int_eq(hyd_gguf_get_str(g, "empty", &s), 0);
	ck_assert_uint_eq(s.n, 0);
	ck_assert_int_eq(hyd_gguf_get_u32(g, "general.alignment", &u32), 0);
	ck_assert_uint_eq(u32, 64);

	/* String arrays. */
	ck_assert_int_eq(hyd_gguf_get_arr(g, "tokens", &a), 0);
	ck_assert_uint_eq(a.elem_type, HYD_GGUF_STRING);
	ck_assert_uint_eq(a.n, 6);
	for (uint64_t i = 0; i < 6; i++) {
		ck_assert_int_eq(hyd_gguf_arr_str(&a, i, &s), 0);
		ck_assert(hyd_str_eq(s, tokens[i]));
	}
	ck_assert_int_eq(hyd_gguf_arr_str(&a, 6, &s), -ERANGE);
	ck_assert_int_eq(hyd_gguf_arr_f32(&a, 0, &f), -EINVAL);
	int64_t v;
	ck_assert_int_eq(hyd_gguf_arr_i64(&a, 0, &v), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_arr(g, "noarr", &a), 0);
	ck_assert_uint_eq(a.n, 0);
	ck_assert_int_eq(hyd_gguf_arr_str(&a, 0, &s), -ERANGE);

	/* Numeric arrays. */
	static const struct { const char *key; uint32_t type; uint64_t n; int64_t first, last; } ints[] = {
		{ "a_u8", HYD_GGUF_U8, 2, 0, 255 },
		{ "a_i8", HYD_GGUF_I8, 2, -128, 127 },
		{ "a_u16", HYD_GGUF_U16, 1, 65535, 65535 },
		{ "a_i16", HYD_GGUF_I16, 2, -32768, 7 },
		{ "a_u32", HYD_GGUF_U32, 3, 1, 4000000000ll },
		{ "a_i32", HYD_GGUF_I32, 2, -5, INT32_MAX },
		{ "a_i64", HYD_GGUF_I64, 2, INT64_MIN, 3 },
		{ "a_bool", HYD_GGUF_BOOL, 3, 1, 1 },
	};
	for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++) {
		ck_assert_int_eq(hyd_gguf_get_arr(g, ints[k].key, &a), 0);
		ck_assert_uint_eq(a.elem_type, ints[k].type);
		ck_assert_uint_eq(a.n, ints[k].n);
		ck_assert_int_eq(hyd_gguf_arr_i64(&a, 0, &v), 0);
		ck_assert_int_eq(v, ints[k].first);
		ck_assert_int_eq(hyd_gguf_arr_i64(&a, a.n - 1, &v), 0);
		ck_assert_int_eq(v, ints[k].last);
		ck_assert_int_eq(hyd_gguf_arr_i64(&a, a.n, &v), -ERANGE);
		ck_assert_int_eq(hyd_gguf_arr_f32(&a, 0, &f), -EINVAL);
		ck_assert_int_eq(hyd_gguf_arr_str(&a, 0, &s), -EINVAL);
	}
	ck_assert_int_eq(hyd_gguf_get_arr(g, "a_bool", &a), 0);
	ck_assert_int_eq(hyd_gguf_arr_i64(&a, 1, &v), 0);
	ck_assert_int_eq(v, 0);
	ck_assert_int_eq(hyd_gguf_get_arr(g, "a_u64", &a), 0);
	v = 42;
	ck_assert_int_eq(hyd_gguf_arr_i64(&a, 0, &v), -EINVAL); /* UINT64_MAX does not fit */
	ck_assert_int_eq(v, 42);
	ck_assert_int_eq(hyd_gguf_arr_i64(&a, 1, &v), 0);
	ck_assert_int_eq(v, 7);
	ck_assert_int_eq(hyd_gguf_get_arr(g, "a_f32", &a), 0);
	ck_assert_int_eq(hyd_gguf_arr_f32(&a, 1, &f), 0);
	ck_assert(f == -0.25f);
	ck_assert_int_eq(hyd_gguf_arr_f32(&a, 2, &f), -ERANGE);
	ck_assert_int_eq(hyd_gguf_arr_i64(&a, 0, &v), -EINVAL);
	ck_assert_int_eq(hyd_gguf_get_arr(g, "a_f64", &a), 0);
	ck_assert_int_eq(hyd_gguf_arr_f32(&a, 1, &f), 0);
	ck_assert(f == 0.125f);
	ck_assert_int_eq(hyd_gguf_arr_f32(&a, 0, &f), 0);
	ck_assert(isinf(f));

	/* Tensors: shapes, sizes, data in the file at 64-byte aligned offsets. */
	ck_assert_uint_eq(hyd_gguf_n_tensors(g), 3);
	const struct hyd_tensor *t = hyd_gguf_find_tensor(g, "token_embd.weight");
	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_eq(t, hyd_gguf_tensor(g, 0));
	ck_assert_str_eq(t->name, "token_embd.weight");
	ck_assert_uint_eq(t->type, HYD_TYPE_F32);
	ck_assert_uint_eq(t->n_dims, 2);
	ck_assert_int_eq(t->ne[0], 4);
	ck_assert_int_eq(t->ne[1], 3);
	ck_assert_int_eq(t->ne[2], 1);
	ck_assert_int_eq(t->ne[3], 1);
	ck_assert_uint_eq(t->nbytes, 48);
	ck_assert(!memcmp(t->data, w0, 48));
	if (base)
		ck_assert_uint_eq((uint64_t)((const uint8_t *)t->data - base) % 64, 0);
	t = hyd_gguf_find_tensor(g, "blk.0.h");
	ck_assert_ptr_eq(t, hyd_gguf_tensor(g, 1));
	ck_assert_uint_eq(t->type, HYD_TYPE_F16);
	ck_assert_uint_eq(t->n_dims, 3);
	ck_assert_int_eq(hyd_tensor_nelements(t), 6);
	ck_assert_uint_eq(t->nbytes, 12);
	ck_assert(!memcmp(t->data, w1, 12));
	if (base)
		ck_assert_uint_eq((uint64_t)((const uint8_t *)t->data - base) % 64, 0);
	t = hyd_gguf_tensor(g, 2);
	ck_assert_str_eq(t->name, "blk.0.q");
	ck_assert_uint_eq(t->type, HYD_TYPE_Q4_K);
	ck_assert_uint_eq(t->n_dims, 4);
	ck_assert_int_eq(t->ne[3], 2);
	ck_assert_uint_eq(t->nbytes, 288);
	ck_assert(!memcmp(t->data, w2, 288));
	ck_assert_ptr_null(hyd_gguf_tensor(g, 3));
	ck_assert_ptr_null(hyd_gguf_find_tensor(g, "blk.0"));
	ck_assert_ptr_null(hyd_gguf_find_tensor(g, ""));
}

START_TEST(round_trip_mem)
{
	float w0[12];
	uint16_t w1[6];
	uint8_t w2[288];
	for (int i = 0; i < 12; i++)
		w0[i] = (float)i * 0.5f - 2.0f;
	for (int i = 0; i < 6; i++)
		w1[i] = hyd_fp32_to_fp16((float)i);
	for (int i = 0; i < 288; i++)
		w2[i] = (uint8_t)(i * 7);
	size_t len;
	uint8_t *b = build(rich_writer(w0, w1, w2), &len);
	struct hyd_gguf *g = expect_open(b, len);
	ck_assert_str_eq(hyd_gguf_path(g), "good.gguf");
	ck_assert_uint_eq(hyd_gguf_file_size(g), len);
	check_rich(g, w0, w1, w2, b);
	hyd_gguf_close(g);
	hyd_gguf_close(NULL);
	hyd_free(b);
}
END_TEST

START_TEST(round_trip_file)
{
	float w0[12] = { 1, 2, 3 };
	uint16_t w1[6] = { 9 };
	uint8_t w2[288] = { 5, 6 };
	char dir[] = "/tmp/check_gguf.XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/rich.gguf", dir);
	struct hyd_gguf_writer *w = rich_writer(w0, w1, w2);
	ck_assert_int_eq(hyd_gguf_writer_write_file(w, path), 0);
	void *mem;
	size_t len;
	ck_assert_int_eq(hyd_gguf_writer_write_mem(w, &mem, &len), 0);
	hyd_gguf_writer_free(w);

	struct hyd_gguf *g = NULL;
	char err[512] = "";
	int r = hyd_gguf_open(path, &g, err, sizeof(err));
	ck_assert_msg(r == 0, "open: %d %s", r, err);
	ck_assert_str_eq(hyd_gguf_path(g), path);
	ck_assert_uint_eq(hyd_gguf_file_size(g), len);
	check_rich(g, w0, w1, w2, NULL);
	const struct hyd_tensor *t = hyd_gguf_tensor(g, 0);
	/* The mapping is page aligned, so tensor data is at least 64-byte aligned in memory. */
	ck_assert_uint_eq((uintptr_t)t->data % 64, 0);
	hyd_gguf_close(g);
	hyd_free(mem);

	/* Errors that are not about the contents. */
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/missing.gguf", dir);
	ck_assert_int_eq(hyd_gguf_open(missing, &g, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "missing.gguf: cannot open"));
	ck_assert_int_eq(hyd_gguf_open(dir, &g, err, sizeof(err)), -EISDIR);
	ck_assert_int_eq(hyd_gguf_open("/dev/null", &g, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(hyd_gguf_open(missing, &g, NULL, 0), -ENOENT);
	/* An empty file and a bad one, through the mapping path. */
	FILE *f = fopen(missing, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	ck_assert_int_eq(hyd_gguf_open(missing, &g, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "missing.gguf: offset 0: magic truncated"));
	f = fopen(missing, "w");
	ck_assert_int_eq(fwrite("GGUF\x03\0\0\0", 1, 8, f), 8);
	fclose(f);
	ck_assert_int_eq(hyd_gguf_open(missing, &g, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "offset 8: tensor count truncated"));
	unlink(missing);
	unlink(path);
	rmdir(dir);
}
END_TEST

/* Thousands of tensors and a 150K-entry token list: lookups by hash, O(1) string access. */
START_TEST(many)
{
	enum { NT = 3000, NS = 150000 };
	struct hyd_gguf_writer *w = writer();
	char **strs = hyd_calloc(NS, sizeof(*strs));
	for (int i = 0; i < NS; i++) {
		char tmp[32];
		snprintf(tmp, sizeof(tmp), "tok%d", i);
		strs[i] = hyd_strdup(tmp);
	}
	ck_assert_int_eq(hyd_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens",
						     (const char *const *)strs, NS), 0);
	for (int i = 0; i < 60; i++) {
		char key[32];
		snprintf(key, sizeof(key), "key.%d", i);
		ck_assert_int_eq(hyd_gguf_writer_add_u32(w, key, (uint32_t)i), 0);
	}
	for (int i = 0; i < NT; i++) {
		char name[32];
		float v = (float)i;
		snprintf(name, sizeof(name), "blk.%d.weight", i);
		ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, name, HYD_TYPE_F32, 1,
							    (int64_t[]){ 1 }, &v, 4), 0);
	}
	size_t len;
	uint8_t *b = build(w, &len);
	struct hyd_gguf *g = expect_open(b, len);
	for (int i = 0; i < 60; i++) {
		char key[32];
		uint32_t u;
		snprintf(key, sizeof(key), "key.%d", i);
		ck_assert_int_eq(hyd_gguf_get_u32(g, key, &u), 0);
		ck_assert_uint_eq(u, (uint32_t)i);
	}
	for (int i = 0; i < NT; i++) {
		char name[32];
		snprintf(name, sizeof(name), "blk.%d.weight", i);
		const struct hyd_tensor *t = hyd_gguf_find_tensor(g, name);
		ck_assert_ptr_eq(t, hyd_gguf_tensor(g, (uint64_t)i));
		float v;
		memcpy(&v, t->data, 4);
		ck_assert(v == (float)i);
	}
	struct hyd_gguf_arr a;
	ck_assert_int_eq(hyd_gguf_get_arr(g, "tokenizer.ggml.tokens", &a), 0);
	ck_assert_uint_eq(a.n, NS);
	/* Backwards, so a linear scan from the start would be quadratic. */
	for (int i = NS - 1; i >= 0; i--) {
		struct hyd_str s;
		ck_assert_int_eq(hyd_gguf_arr_str(&a, (uint64_t)i, &s), 0);
		ck_assert(hyd_str_eq(s, strs[i]));
	}
	hyd_gguf_close(g);
	hyd_free(b);
	for (int i = 0; i < NS; i++)
		hyd_free(strs[i]);
	hyd_free(strs);
}
END_TEST

/* ------------------------------------------------------------------ shared data */

static const char *test_data(void)
{
	const char *d = getenv("HYD_TEST_DATA");
	return d && *d ? d : NULL;
}

static uint64_t raw_u64(const char *path, long off)
{
	FILE *f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	uint64_t v = 0;
	ck_assert_int_eq(fseek(f, off, SEEK_SET), 0);
	ck_assert_int_eq(fread(&v, 8, 1, f), 1);
	fclose(f);
	return v;
}

/* Cross-checks one real file: counts against the raw header, every tensor's size against its
 * shape and type, and token_embd.weight against the metadata it must agree with. */
static void check_real_file(const char *path, int *ret_n_embd_checked)
{
	struct hyd_gguf *g = NULL;
	char err[512] = "";
	int r = hyd_gguf_open(path, &g, err, sizeof(err));
	ck_assert_msg(r == 0, "%s: %d %s", path, r, err);
	ck_assert_uint_eq(hyd_gguf_n_tensors(g), raw_u64(path, 8));
	ck_assert_uint_eq(hyd_gguf_n_kv(g), raw_u64(path, 16));
	for (uint64_t i = 0; i < hyd_gguf_n_tensors(g); i++) {
		const struct hyd_tensor *t = hyd_gguf_tensor(g, i);
		ck_assert_ptr_eq(hyd_gguf_find_tensor(g, t->name), t);
		int64_t row = hyd_row_size(t->type, t->ne[0]);
		ck_assert_int_gt(row, 0);
		ck_assert_uint_eq(t->nbytes, (uint64_t)row * (uint64_t)(hyd_tensor_nelements(t) /
									 t->ne[0]));
		for (uint32_t d = t->n_dims; d < HYD_MAX_DIMS; d++)
			ck_assert_int_eq(t->ne[d], 1);
	}
	struct hyd_str arch;
	if (hyd_gguf_get_str(g, "general.architecture", &arch) == 0) {
		const struct hyd_tensor *te = hyd_gguf_find_tensor(g, "token_embd.weight");
		char key[128];
		uint32_t n_embd;
		snprintf(key, sizeof(key), "%.*s.embedding_length", (int)arch.n, arch.p);
		struct hyd_gguf_arr toks;
		if (te && hyd_gguf_get_u32(g, key, &n_embd) == 0) {
			ck_assert_uint_eq(te->n_dims, 2);
			ck_assert_int_eq(te->ne[0], n_embd);
			if (hyd_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) == 0)
				ck_assert_int_eq(te->ne[1], (int64_t)toks.n);
			++*ret_n_embd_checked;
		}
	}
	/* Token lists are readable to the end. */
	struct hyd_gguf_arr toks;
	if (hyd_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) == 0 && toks.n) {
		struct hyd_str s;
		ck_assert_int_eq(hyd_gguf_arr_str(&toks, toks.n - 1, &s), 0);
	}
	hyd_gguf_close(g);
}

static int check_dir(const char *sub, int *ret_n_embd_checked)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/%s", test_data(), sub);
	DIR *d = opendir(dir);
	ck_assert_msg(d, "%s: cannot open", dir);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l < 5 || strcmp(e->d_name + l - 5, ".gguf"))
			continue;
		char path[8192];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		check_real_file(path, ret_n_embd_checked);
		n++;
	}
	closedir(d);
	return n;
}

START_TEST(shared_files)
{
	int checked = 0;
	ck_assert_int_ge(check_dir("golden/tiny", &checked), 7);
	ck_assert_int_ge(check_dir("golden/quant", &checked), 8);
	ck_assert_int_ge(check_dir("models", &checked), 3);
	ck_assert_int_ge(checked, 18);
	check_dir("vocab", &checked);

	/* Known facts about one file. */
	char path[4096];
	snprintf(path, sizeof(path), "%s/golden/tiny/tiny-llama-f32.gguf", test_data());
	struct hyd_gguf *g = NULL;
	char err[512];
	ck_assert_int_eq(hyd_gguf_open(path, &g, err, sizeof(err)), 0);
	ck_assert_uint_eq(hyd_gguf_n_tensors(g), 30);
	ck_assert_uint_eq(hyd_gguf_n_kv(g), 25);
	const struct hyd_tensor *t = hyd_gguf_find_tensor(g, "token_embd.weight");
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(t->type, HYD_TYPE_F32);
	ck_assert_int_eq(t->ne[0], 64);
	ck_assert_int_eq(t->ne[1], 512);
	ck_assert_uint_eq(t->nbytes, 64 * 512 * 4);
	struct hyd_str s;
	ck_assert_int_eq(hyd_gguf_get_str(g, "general.architecture", &s), 0);
	ck_assert(hyd_str_eq(s, "llama"));
	hyd_gguf_close(g);
}
END_TEST

START_TEST(shared_data_missing)
{
	ck_abort_msg("CI=true but the shared test data (HYD_TEST_DATA=%s) is missing",
		     test_data() ? test_data() : "(unset)");
}
END_TEST

/* ------------------------------------------------------------------ main */

static bool have_data(void)
{
	if (!test_data())
		return false;
	char p[4096];
	struct stat st;
	snprintf(p, sizeof(p), "%s/golden/tiny/tiny-llama-f32.gguf", test_data());
	return stat(p, &st) == 0;
}

int main(void)
{
	Suite *s = suite_create("gguf");
	TCase *tc = tcase_create("malformed");
	tcase_add_test(tc, bad_magic);
	tcase_add_test(tc, bad_version);
	tcase_add_test(tc, kv_count_huge);
	tcase_add_test(tc, tensor_count_huge);
	tcase_add_test(tc, string_past_end);
	tcase_add_test(tc, string_length_overflow);
	tcase_add_test(tc, array_count_huge);
	tcase_add_test(tc, array_unknown_type);
	tcase_add_test(tc, array_nested);
	tcase_add_test(tc, unknown_value_type);
	tcase_add_test(tc, bad_bool);
	tcase_add_test(tc, duplicate_key);
	tcase_add_test(tc, duplicate_tensor);
	tcase_add_test(tc, tensor_name_nul);
	tcase_add_test(tc, n_dims_bad);
	tcase_add_test(tc, zero_dim);
	tcase_add_test(tc, element_overflow);
	tcase_add_test(tc, unknown_tensor_type);
	tcase_add_test(tc, row_not_whole_blocks);
	tcase_add_test(tc, misaligned_offset);
	tcase_add_test(tc, bad_alignment);
	tcase_add_test(tc, data_past_end);
	tcase_add_test(tc, offset_size_overflow);
	tcase_add_test(tc, truncated_everywhere);
	tcase_add_test(tc, mutated_everywhere);
	suite_add_tcase(s, tc);

	tc = tcase_create("valid");
	tcase_add_test(tc, round_trip_mem);
	tcase_add_test(tc, round_trip_file);
	tcase_add_test(tc, many);
	suite_add_tcase(s, tc);

	tc = tcase_create("shared");
	if (have_data()) {
		tcase_add_test(tc, shared_files);
	} else {
		const char *ci = getenv("CI");
		if (ci && !strcmp(ci, "true"))
			tcase_add_test(tc, shared_data_missing);
		else
			printf("SKIP: shared test data not found (HYD_TEST_DATA=%s)\n",
			       test_data() ? test_data() : "(unset)");
	}
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
