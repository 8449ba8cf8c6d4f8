/* Conformance against the tiny goldens (../shared/golden/tiny): every architecture in the
 * manifest, both sequences, fed as one prefill, token by token, and split at several points
 * (including splits across the sliding window).  Requirement (../shared/README.md):
 * max|hyd - ref| <= 2e-3 * max|ref| and each row's argmax equal to the reference's, or within
 * that tolerance of it (near-ties). */
#include "config.h"

#include <check.h>
#include <jansson.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/local_seq.h"
#include "daemon/model.h"
#include "engine/alloc.h"
#include "tests/testdata.h"

static json_t *manifest;
static char dir[4096];

static float *read_f32(const char *path, size_t n)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f, "cannot open %s", path);
	float *v = hyd_malloc(n * sizeof(float));
	ck_assert(v);
	ck_assert_msg(fread(v, sizeof(float), n, f) == n, "%s is shorter than [%zu] floats", path, n);
	fclose(f);
	return v;
}

/* Returns a message on failure, NULL on success. */
static const char *compare(const float *got, const float *ref, size_t T, size_t V, float rel_tol, char *msg,
			   size_t msglen)
{
	float maxref = 0, maxdiff = 0;
	for (size_t i = 0; i < T * V; i++) {
		if (fabsf(ref[i]) > maxref)
			maxref = fabsf(ref[i]);
		float d = fabsf(got[i] - ref[i]);
		if (!(d <= maxdiff)) /* NaN-safe */
			maxdiff = isnan(d) ? INFINITY : d;
	}
	const float tol = rel_tol * maxref;
	if (!(maxdiff <= tol)) {
		snprintf(msg, msglen, "max|hyd-ref| = %g > %g (= %g x max|ref| %g)", maxdiff, tol, rel_tol, maxref);
		return msg;
	}
	for (size_t t = 0; t < T; t++) {
		size_t a = 0, b = 0;
		for (size_t v = 1; v < V; v++) {
			if (got[t * V + v] > got[t * V + a])
				a = v;
			if (ref[t * V + v] > ref[t * V + b])
				b = v;
		}
		if (a != b && ref[t * V + b] - ref[t * V + a] > tol) {
			snprintf(msg, msglen, "row %zu: argmax %zu, reference %zu (gap %g > %g)", t, a, b,
				 ref[t * V + b] - ref[t * V + a], tol);
			return msg;
		}
	}
	return NULL;
}

/* in_place: the local sequence's default (SSM state rewritten in place, as `hyd run` does);
 * otherwise two copies flipped at each commit, as the daemon's sessions step */
static void run_mode(struct hyd_model *m, const int32_t *toks, size_t T, long split, bool in_place, float *out)
{
	struct hyd_local_seq *s;
	const uint32_t V = hyd_model_n_vocab(m);
	ck_assert_int_eq(hyd_local_seq_new(m, &s), 0);
	hyd_local_seq_set_in_place(s, in_place);
	size_t done = 0;
	if (split != 0) {
		size_t first = split < 0 ? T : (size_t)split;
		ck_assert_int_eq(hyd_local_seq_feed(m, s, toks, (uint32_t)first, out, true), 0);
		done = first;
	}
	for (; done < T; done++)
		ck_assert_int_eq(hyd_local_seq_feed(m, s, toks + done, 1, out + done * V, false), 0);
	hyd_local_seq_free(s);
}

/* A feed with an id outside the vocabulary is refused whole and leaves the sequence as it
 * was (its state is rewritten in place, so a step begun would not be undone): the rest of
 * the sequence gives the bits of an unbroken run. */
static void check_bad_ids(struct hyd_model *m, const int32_t *toks, size_t T, const float *want)
{
	const uint32_t V = hyd_model_n_vocab(m);
	const size_t first = T / 2;
	float *out = hyd_malloc(T * V * sizeof(float));
	struct hyd_local_seq *s;
	ck_assert_int_eq(hyd_local_seq_new(m, &s), 0);
	ck_assert_int_eq(hyd_local_seq_feed(m, s, toks, (uint32_t)first, out, true), 0);
	const int32_t bad[][3] = { { -1 }, { (int32_t)V }, { toks[first], toks[first], (int32_t)V + 7 } };
	const uint32_t n_bad[] = { 1, 1, 3 };
	for (size_t b = 0; b < 3; b++)
		ck_assert_int_eq(hyd_local_seq_feed(m, s, bad[b], n_bad[b], out, false), -EINVAL);
	for (size_t done = first; done < T; done++)
		ck_assert_int_eq(hyd_local_seq_feed(m, s, toks + done, 1, out + done * V, false), 0);
	ck_assert_msg(!memcmp(out, want, T * V * sizeof(float)), "refused ids changed what followed");
	hyd_local_seq_free(s);
	hyd_free(out);
}

START_TEST(golden_arch)
{
	const char *name = NULL;
	json_t *entry = NULL;
	size_t idx = 0;
	json_object_foreach(manifest, name, entry)
	{
		if (idx++ == (size_t)_i)
			break;
	}
	ck_assert_ptr_nonnull(entry);
	char path[8192], err[1024] = "";
	snprintf(path, sizeof(path), "%s/%s", dir, json_string_value(json_object_get(entry, "gguf")));
	struct hyd_model_opts o = { .n_threads = 2, .max_ctx = 1024, .max_chunk = 64 };
	struct hyd_model *m;
	int r = hyd_model_load(path, &o, &m, err, sizeof(err));
	ck_assert_msg(r == 0, "%s: cannot load: %s", name, err);
	const uint32_t V = hyd_model_n_vocab(m);
	const char *sname;
	json_t *seq;
	json_object_foreach(json_object_get(entry, "sequences"), sname, seq)
	{
		json_t *jt = json_object_get(seq, "tokens");
		const size_t T = json_array_size(jt);
		int32_t *toks = hyd_malloc(T * sizeof(int32_t));
		for (size_t i = 0; i < T; i++)
			toks[i] = (int32_t)json_integer_value(json_array_get(jt, i));
		snprintf(path, sizeof(path), "%s/%s", dir, json_string_value(json_object_get(seq, "logits_file")));
		float *ref = read_f32(path, T * V);
		float *got = hyd_malloc(T * V * sizeof(float)), *two = hyd_malloc(T * V * sizeof(float));
		/* -1: one prefill; 0: token by token; K: prefill K then step (7/8/9 straddle a window of 8) */
		const long splits[] = { -1, 0, 1, 7, 8, 9, 13, (long)T / 2, (long)T - 1 };
		for (size_t k = 0; k < sizeof(splits) / sizeof(splits[0]); k++) {
			if (splits[k] > (long)T)
				continue;
			memset(got, 0, T * V * sizeof(float));
			run_mode(m, toks, T, splits[k], true, got);
			char msg[256];
			const char *bad = compare(got, ref, T, V, 2e-3f, msg, sizeof(msg));
			const char *how = splits[k] < 0 ? "prefill" : splits[k] == 0 ? "step" : "split at ";
			const long at = splits[k] > 0 ? splits[k] : 0;
			ck_assert_msg(!bad, "%s/%s, %s%ld: %s", name, sname, how, at, bad);
			/* the daemon's two-copy steps: the same bits */
			run_mode(m, toks, T, splits[k], false, two);
			ck_assert_msg(!memcmp(got, two, T * V * sizeof(float)),
				      "%s/%s, %s%ld: two state copies give other logits than in place", name, sname, how, at);
			if (splits[k] == (long)T / 2)
				check_bad_ids(m, toks, T, got);
		}
		hyd_free(toks);
		hyd_free(ref);
		hyd_free(got);
		hyd_free(two);
	}
	hyd_model_free(m);
}
END_TEST

int main(void)
{
	char path[4096];
	hyd_test_data_path(path, sizeof(path), "golden/tiny/manifest.json");
	snprintf(dir, sizeof(dir), "%s/golden/tiny", hyd_test_data_dir());
	json_error_t jerr;
	manifest = json_load_file(path, 0, &jerr);
	if (!manifest) {
		fprintf(stderr, "%s:%d: %s\n", path, jerr.line, jerr.text);
		return 1;
	}
	Suite *s = suite_create("golden");
	TCase *tc = tcase_create("tiny");
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, golden_arch, 0, (int)json_object_size(manifest));
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	json_decref(manifest);
	return failed ? 1 : 0;
}
