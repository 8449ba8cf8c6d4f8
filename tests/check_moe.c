/* Mixture-of-experts FFN.  There is no MoE golden, so the tests derive MoE models from the
 * dense tiny goldens in a way that must not change the function: every expert is a copy of
 * the layer's dense FFN, so however the router weighs them the output equals the dense
 * output — provided the weights are combined as the architecture says:
 *  - jamba: softmax over all experts, top-k kept without renormalisation; routing to all of
 *    them (k = n) makes the weights sum to 1;
 *  - granitehybrid: the chosen experts' weights renormalised to 1; k = 1 of 2 gives weight 1.
 * The derived models must reproduce the dense goldens' logits (2e-3 x max|ref|).  A third
 * test routes jamba to 1 of 2 experts, where the un-renormalised weight p < 1 must show. */
#include "config.h"

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/gguf.h"
#include "daemon/gguf_write.h"
#include "daemon/local_seq.h"
#include "daemon/model.h"
#include "engine/alloc.h"
#include "engine/types.h"
#include "tests/testdata.h"

static json_t *manifest;
static char dir[4096];

/* Writes a copy of src with each dense FFN turned into n_expert identical experts. */
static void derive_moe(const char *src, const char *dst, const char *arch, uint32_t n_expert, uint32_t n_used)
{
	struct hyd_gguf *g;
	char err[512];
	ck_assert_msg(hyd_gguf_open(src, &g, err, sizeof(err)) == 0, "%s", err);
	struct hyd_gguf_writer *w;
	ck_assert_int_eq(hyd_gguf_writer_new(&w), 0);
	char kc[128], ku[128];
	snprintf(kc, sizeof(kc), "%s.expert_count", arch);
	snprintf(ku, sizeof(ku), "%s.expert_used_count", arch);
	for (uint64_t i = 0; i < hyd_gguf_n_kv(g); i++) {
		struct hyd_str k;
		ck_assert_int_eq(hyd_gguf_kv_key(g, i, &k), 0);
		if (hyd_str_eq(k, kc) || hyd_str_eq(k, ku))
			continue;
		ck_assert_int_eq(hyd_gguf_writer_copy_kv(w, g, i), 0);
	}
	ck_assert_int_eq(hyd_gguf_writer_add_u32(w, kc, n_expert), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_u32(w, ku, n_used), 0);
	void *keep[256];
	unsigned n_keep = 0;
	for (uint64_t i = 0; i < hyd_gguf_n_tensors(g); i++) {
		const struct hyd_tensor *t = hyd_gguf_tensor(g, i);
		const char *dot = strstr(t->name, ".ffn_");
		const char *which = NULL;
		if (dot && t->name[0] == 'b' && strstr(t->name, ".weight") &&
		    (!strcmp(dot, ".ffn_gate.weight") || !strcmp(dot, ".ffn_up.weight") || !strcmp(dot, ".ffn_down.weight")))
			which = dot + 5; /* "gate.weight" ... */
		if (!which) {
			ck_assert_int_eq(hyd_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes), 0);
			continue;
		}
		char layer_prefix[64], name[128];
		snprintf(layer_prefix, sizeof(layer_prefix), "%.*s", (int)(dot - t->name), t->name);
		char base[16];
		snprintf(base, sizeof(base), "%.*s", (int)(strchr(which, '.') - which), which);
		/* stacked experts {n_in, n_out, n_expert} */
		char *stack = hyd_malloc(t->nbytes * n_expert);
		for (uint32_t e = 0; e < n_expert; e++)
			memcpy(stack + e * t->nbytes, t->data, t->nbytes);
		ck_assert(n_keep < 256);
		keep[n_keep++] = stack;
		const int64_t ne[3] = { t->ne[0], t->ne[1], n_expert };
		snprintf(name, sizeof(name), "%s.ffn_%s_exps.weight", layer_prefix, base);
		ck_assert_int_eq(hyd_gguf_writer_add_tensor_ref(w, name, t->type, 3, ne, stack, t->nbytes * n_expert), 0);
		if (!strcmp(base, "gate")) {
			/* a router with distinct logits per expert, so routing is not a tie */
			const int64_t n_embd = t->ne[0];
			float *router = hyd_malloc((size_t)(n_embd * n_expert) * sizeof(float));
			for (int64_t j = 0; j < n_embd * n_expert; j++)
				router[j] = 0.05f * (float)((j * 7919) % 23 - 11) / 11.0f;
			keep[n_keep++] = router;
			const int64_t rne[2] = { n_embd, n_expert };
			snprintf(name, sizeof(name), "%s.ffn_gate_inp.weight", layer_prefix);
			ck_assert_int_eq(hyd_gguf_writer_add_tensor_ref(w, name, HYD_TYPE_F32, 2, rne, router,
								       (uint64_t)(n_embd * n_expert) * sizeof(float)),
					 0);
		}
	}
	ck_assert_int_eq(hyd_gguf_writer_write_file(w, dst), 0);
	hyd_gguf_writer_free(w);
	for (unsigned i = 0; i < n_keep; i++)
		hyd_free(keep[i]);
	hyd_gguf_close(g);
}

/* Logits of the manifest's long sequence through model path; returns max|got - ref| / max|ref|. */
static float rel_error(const char *arch, const char *path)
{
	json_t *seq = json_object_get(json_object_get(json_object_get(manifest, arch), "sequences"), "long");
	json_t *jt = json_object_get(seq, "tokens");
	const size_t T = json_array_size(jt);
	int32_t toks[256];
	ck_assert(T <= 256);
	for (size_t i = 0; i < T; i++)
		toks[i] = (int32_t)json_integer_value(json_array_get(jt, i));
	struct hyd_model_opts o = { .n_threads = 1, .max_ctx = 512, .max_chunk = 64 };
	struct hyd_model *m;
	char err[1024] = "";
	ck_assert_msg(hyd_model_load(path, &o, &m, err, sizeof(err)) == 0, "%s: %s", path, err);
	const uint32_t V = hyd_model_n_vocab(m);
	float *got = hyd_malloc(T * V * sizeof(float)), *ref = hyd_malloc(T * V * sizeof(float));
	struct hyd_local_seq *s;
	ck_assert_int_eq(hyd_local_seq_new(m, &s), 0);
	ck_assert_int_eq(hyd_local_seq_feed(m, s, toks, (uint32_t)T, got, true), 0);
	char rp[8192];
	snprintf(rp, sizeof(rp), "%s/%s", dir, json_string_value(json_object_get(seq, "logits_file")));
	FILE *f = fopen(rp, "rb");
	ck_assert(f && fread(ref, sizeof(float) * V, T, f) == T);
	fclose(f);
	float maxref = 0, maxdiff = 0;
	for (size_t i = 0; i < T * V; i++) {
		maxref = fmaxf(maxref, fabsf(ref[i]));
		maxdiff = fmaxf(maxdiff, fabsf(got[i] - ref[i]));
	}
	hyd_local_seq_free(s);
	hyd_free(got);
	hyd_free(ref);
	hyd_model_free(m);
	return maxdiff / maxref;
}

static void check_derived(const char *arch, uint32_t n_expert, uint32_t n_used, bool expect_equal)
{
	char src[8192], dst[] = "/tmp/hyd-moe-XXXXXX";
	int fd = mkstemp(dst);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(src, sizeof(src), "%s/%s", dir, json_string_value(json_object_get(json_object_get(manifest, arch), "gguf")));
	derive_moe(src, dst, arch, n_expert, n_used);
	float e = rel_error(arch, dst);
	unlink(dst);
	if (expect_equal)
		ck_assert_msg(e <= 2e-3f, "%s with %u of %u identical experts: error %g x max|ref|", arch, n_used, n_expert, e);
	else
		ck_assert_msg(e > 2e-3f, "%s with %u of %u experts and no renormalisation should differ (error %g)", arch,
			      n_used, n_expert, e);
}

START_TEST(jamba_all_experts_equal_dense)
{
	check_derived("jamba", 2, 2, true);
}
END_TEST

START_TEST(granite_renormalised_top1_equals_dense)
{
	check_derived("granitehybrid", 2, 1, true);
}
END_TEST

START_TEST(jamba_top1_is_not_renormalised)
{
	check_derived("jamba", 2, 1, false);
}
END_TEST

int main(void)
{
	char path[4096];
	hyd_test_data_path(path, sizeof(path), "golden/tiny/manifest.json");
	snprintf(dir, sizeof(dir), "%s/golden/tiny", hyd_test_data_dir());
	json_error_t jerr;
	manifest = json_load_file(path, 0, &jerr);
	if (!manifest)
		return 1;
	Suite *su = suite_create("moe");
	TCase *tc = tcase_create("derived");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, jamba_all_experts_equal_dense);
	tcase_add_test(tc, granite_renormalised_top1_equals_dense);
	tcase_add_test(tc, jamba_top1_is_not_renormalised);
	suite_add_tcase(su, tc);
	SRunner *sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	json_decref(manifest);
	return failed ? 1 : 0;
}
