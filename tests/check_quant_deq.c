/* Dequantization against the reference implementation, bit for bit: every entry of
 * golden/quant/deq-manifest.json names a GGUF, a tensor and the reference's float32 output.
 * Missing data is a SKIP, or a failure under CI=true. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/gguf.h"
#include "engine/alloc.h"
#include "engine/types.h"
#include "tests/testdata.h"

struct deq_entry {
	char *golden; /* the deq-*.f32 file name (the manifest key) */
	char *file;
	char *tensor;
	char *type;
	int64_t shape[HYD_MAX_DIMS];
	int n_dims;
};

static struct deq_entry *entries;
static size_t n_entries;
static char dir[4096];

static char *dup_str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? hyd_strdup(s) : NULL;
}

/* Loads the manifest before the suite is built; exits like a missing file when it is. */
static void load_manifest(void)
{
	char path[4096];
	hyd_test_data_path(path, sizeof(path), "golden/quant/deq-manifest.json");
	snprintf(dir, sizeof(dir), "%s/golden/quant", hyd_test_data_dir());
	json_error_t err;
	json_t *root = json_load_file(path, 0, &err);
	if (!root || !json_is_object(root)) {
		fprintf(stderr, "%s: not a JSON object (%s, line %d)\n", path, err.text, err.line);
		exit(1);
	}
	n_entries = json_object_size(root);
	entries = hyd_calloc(n_entries ? n_entries : 1, sizeof(*entries));
	if (!entries)
		exit(1);
	const char *key;
	json_t *v;
	size_t i = 0;
	json_object_foreach(root, key, v) {
		struct deq_entry *e = &entries[i++];
		e->golden = hyd_strdup(key);
		e->file = dup_str(v, "file");
		e->tensor = dup_str(v, "tensor");
		e->type = dup_str(v, "type");
		json_t *shape = json_object_get(v, "shape");
		e->n_dims = json_is_array(shape) ? (int)json_array_size(shape) : -1;
		for (int d = 0; d < HYD_MAX_DIMS; d++)
			e->shape[d] = 1;
		for (int d = 0; d < e->n_dims && d < HYD_MAX_DIMS; d++)
			e->shape[d] = json_integer_value(json_array_get(shape, (size_t)d));
	}
	json_decref(root);
}

static void *read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	void *buf = NULL;
	long len = -1;
	if (fseek(f, 0, SEEK_END) == 0)
		len = ftell(f);
	if (len >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = hyd_malloc(len ? (size_t)len : 1);
		if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
			hyd_free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	if (buf)
		*ret_len = (size_t)len;
	return buf;
}

START_TEST(test_deq_entry)
{
	const struct deq_entry *e = &entries[_i];
	ck_assert_msg(e->file && e->tensor && e->type && e->n_dims >= 1 &&
			      e->n_dims <= HYD_MAX_DIMS,
		      "%s: incomplete manifest entry", e->golden);
	char path[8192], err[512] = "";
	snprintf(path, sizeof(path), "%s/%s", dir, e->file);
	struct hyd_gguf *g = NULL;
	int rc = hyd_gguf_open(path, &g, err, sizeof(err));
	ck_assert_msg(rc == 0, "%s: %s", path, err);
	const struct hyd_tensor *t = hyd_gguf_find_tensor(g, e->tensor);
	ck_assert_msg(t != NULL, "%s: no tensor %s", path, e->tensor);
	ck_assert_msg(!strcmp(hyd_type_name(t->type), e->type), "%s: %s is %s, manifest says %s",
		      path, e->tensor, hyd_type_name(t->type), e->type);
	for (int d = 0; d < HYD_MAX_DIMS; d++)
		ck_assert_msg(t->ne[d] == e->shape[d], "%s: ne[%d] = %ld, manifest says %ld",
			      e->tensor, d, (long)t->ne[d], (long)e->shape[d]);

	const struct hyd_type_traits *tr = hyd_type_traits(t->type);
	ck_assert_msg(tr && tr->to_float, "%s: no dequantizer for %s", e->golden, e->type);
	const int64_t n = hyd_tensor_nelements(t);
	ck_assert_int_eq(hyd_row_size(t->type, n), (int64_t)t->nbytes);

	snprintf(path, sizeof(path), "%s/%s", dir, e->golden);
	size_t len = 0;
	float *want = read_file(path, &len);
	ck_assert_msg(want != NULL, "%s: %s", path, strerror(errno));
	ck_assert_msg(len == (size_t)n * sizeof(float), "%s: %zu bytes for %ld elements", path,
		      len, (long)n);

	float *got = hyd_malloc((size_t)n * sizeof(float));
	ck_assert_ptr_nonnull(got);
	/* row by row, as the engine does it */
	const int64_t row = t->ne[0];
	const int64_t rs = hyd_row_size(t->type, row);
	for (int64_t r = 0; r < n / row; r++)
		tr->to_float((const uint8_t *)t->data + r * rs, got + r * row, row);
	if (memcmp(got, want, len) != 0) {
		int64_t i = 0, bad = 0;
		while (i < n && !memcmp(&got[i], &want[i], sizeof(float)))
			i++;
		for (int64_t k = 0; k < n; k++)
			bad += memcmp(&got[k], &want[k], sizeof(float)) != 0;
		ck_abort_msg("%s (%s): %ld of %ld values differ, first at %ld: %.9g vs %.9g",
			     e->golden, e->type, (long)bad, (long)n, (long)i, got[i], want[i]);
	}
	hyd_free(got);
	hyd_free(want);
	hyd_gguf_close(g);
}
END_TEST

int main(void)
{
	load_manifest();
	if (n_entries == 0) {
		fprintf(stderr, "deq-manifest.json has no entries\n");
		return EXIT_FAILURE;
	}
	Suite *s = suite_create("quant_deq");
	TCase *tc = tcase_create("golden");
	tcase_add_loop_test(tc, test_deq_entry, 0, (int)n_entries);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	for (size_t i = 0; i < n_entries; i++) {
		hyd_free(entries[i].golden);
		hyd_free(entries[i].file);
		hyd_free(entries[i].tensor);
		hyd_free(entries[i].type);
	}
	hyd_free(entries);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
