/* Real models and quantized weights:
 *  - every case in ../shared/models/greedy.json: the prompt tokenizes to prompt_tokens and greedy
 *    decoding reproduces the continuation token for token (stories260K, the Shakespeare hybrids);
 *  - ../shared/golden/quant/tiny-llama256-TYPE.gguf: logits within the README's tolerance of
 *    llama.cpp's (1e-2 x max|ref| for F32/F16/BF16, 5e-2 for quantized types) and argmax
 *    agreement on at least 95 % of rows. */
#include "config.h"

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/local_seq.h"
#include "daemon/model.h"
#include "daemon/sampler.h"
#include "daemon/tokenizer.h"
#include "engine/alloc.h"
#include "engine/types.h"
#include "tests/testdata.h"

static json_t *greedy;
static char data[4096];

static struct hyd_model *load(const char *path, uint32_t max_chunk)
{
	char err[1024] = "";
	struct hyd_model_opts o = { .n_threads = 2, .max_ctx = 2048, .max_chunk = max_chunk };
	struct hyd_model *m = NULL;
	int r = hyd_model_load(path, &o, &m, err, sizeof(err));
	ck_assert_msg(r == 0, "cannot load %s: %s", path, err);
	return m;
}

START_TEST(greedy_case)
{
	json_t *entry = json_array_get(greedy, (size_t)_i);
	json_t *c = json_object_get(entry, "case");
	const char *model = json_string_value(json_object_get(entry, "model"));
	const char *prompt = json_string_value(json_object_get(c, "prompt"));
	json_t *jp = json_object_get(c, "prompt_tokens"), *jt = json_object_get(c, "tokens");
	char path[8192];
	snprintf(path, sizeof(path), "%s/models/%s", data, model);
	struct hyd_model *m = load(path, 64);
	const struct hyd_tokenizer *tk = hyd_model_tokenizer(m);
	int32_t *toks;
	size_t n;
	ck_assert_int_eq(hyd_tokenizer_encode(tk, prompt, strlen(prompt), HYD_TOK_ADD_SPECIAL, &toks, &n), 0);
	ck_assert_msg(n == json_array_size(jp), "%s '%s': %zu prompt tokens, expected %zu", model, prompt, n,
		      json_array_size(jp));
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(toks[i] == json_integer_value(json_array_get(jp, i)), "%s '%s': prompt token %zu is %d, expected %lld",
			      model, prompt, i, toks[i], json_integer_value(json_array_get(jp, i)));
	const uint32_t V = hyd_model_n_vocab(m);
	float *logits = hyd_malloc(V * sizeof(float));
	struct hyd_local_seq *s;
	ck_assert_int_eq(hyd_local_seq_new(m, &s), 0);
	ck_assert_int_eq(hyd_local_seq_feed(m, s, toks, (uint32_t)n, logits, false), 0);
	struct hyd_sampler *smp;
	ck_assert_int_eq(hyd_sampler_new(V, &smp), 0);
	struct hyd_sampler_params sp;
	hyd_sampler_defaults(&sp);
	sp.temperature = 0;
	struct hyd_rng rng;
	hyd_rng_seed(&rng, 1);
	const size_t want = json_array_size(jt);
	size_t got = 0;
	for (; got < want; got++) {
		int32_t id = hyd_sampler_pick(smp, &sp, &rng, logits, NULL, 0);
		ck_assert_msg(id == json_integer_value(json_array_get(jt, got)),
			      "%s '%s': token %zu is %d, expected %lld", model, prompt, got, id,
			      json_integer_value(json_array_get(jt, got)));
		if (hyd_tokenizer_is_eog(tk, id))
			break;
		ck_assert_int_eq(hyd_local_seq_feed(m, s, &id, 1, logits, false), 0);
	}
	hyd_sampler_free(smp);
	hyd_local_seq_free(s);
	hyd_free(logits);
	hyd_free(toks);
	hyd_model_free(m);
}
END_TEST

static const char *quant_types[] = { "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K" };

START_TEST(quant_logits)
{
	const char *type = quant_types[_i];
	char path[8192];
	snprintf(path, sizeof(path), "%s/golden/quant/tokens.txt", data);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f, "cannot open %s", path);
	int32_t toks[4096];
	size_t T = 0;
	while (T < 4096 && fscanf(f, "%d", &toks[T]) == 1)
		T++;
	fclose(f);
	snprintf(path, sizeof(path), "%s/golden/quant/tiny-llama256-%s.gguf", data,
		 strcmp(type, "F32") ? type : "f32");
	struct hyd_model *m = load(path, (uint32_t)T);
	const uint32_t V = hyd_model_n_vocab(m);
	float *got = hyd_malloc(T * V * sizeof(float)), *ref = hyd_malloc(T * V * sizeof(float));
	struct hyd_local_seq *s;
	ck_assert_int_eq(hyd_local_seq_new(m, &s), 0);
	ck_assert_int_eq(hyd_local_seq_feed(m, s, toks, (uint32_t)T, got, true), 0);
	snprintf(path, sizeof(path), "%s/golden/quant/tiny-llama256-%s.logits.f32", data,
		 strcmp(type, "F32") ? type : "f32");
	f = fopen(path, "rb");
	ck_assert_msg(f && fread(ref, sizeof(float) * V, T, f) == T, "cannot read %s", path);
	fclose(f);
	float maxref = 0, maxdiff = 0;
	size_t agree = 0;
	for (size_t t = 0; t < T; t++) {
		size_t a = 0, b = 0;
		for (size_t v = 0; v < V; v++) {
			maxref = fmaxf(maxref, fabsf(ref[t * V + v]));
			float d = fabsf(got[t * V + v] - ref[t * V + v]);
			maxdiff = isnan(d) ? INFINITY : fmaxf(maxdiff, d);
			if (got[t * V + v] > got[t * V + a])
				a = v;
			if (ref[t * V + v] > ref[t * V + b])
				b = v;
		}
		agree += a == b;
	}
	const bool quantized = strcmp(type, "F32") && strcmp(type, "F16") && strcmp(type, "BF16");
	const float tol = (quantized ? 5e-2f : 1e-2f) * maxref;
	ck_assert_msg(maxdiff <= tol, "%s: max|hyd-ref| %g > %g", type, maxdiff, tol);
	ck_assert_msg(agree * 100 >= 95 * T, "%s: argmax agrees on %zu of %zu rows", type, agree, T);
	hyd_local_seq_free(s);
	hyd_free(got);
	hyd_free(ref);
	hyd_model_free(m);
}
END_TEST

int main(void)
{
	char path[4096];
	hyd_test_data_path(path, sizeof(path), "models/greedy.json");
	hyd_test_data_path(path, sizeof(path), "golden/quant/tokens.txt");
	snprintf(data, sizeof(data), "%s", hyd_test_data_dir());
	if (snprintf(path, sizeof(path), "%s/models/greedy.json", data) >= (int)sizeof(path)) {
		fprintf(stderr, "%s: test data path too long\n", data);
		return 1;
	}
	json_error_t jerr;
	greedy = json_load_file(path, 0, &jerr);
	if (!greedy || !json_is_array(greedy)) {
		fprintf(stderr, "%s:%d: %s\n", path, jerr.line, jerr.text);
		return 1;
	}
	Suite *su = suite_create("models");
	TCase *tc = tcase_create("greedy");
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, greedy_case, 0, (int)json_array_size(greedy));
	suite_add_tcase(su, tc);
	tc = tcase_create("quant");
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, quant_logits, 0, (int)(sizeof(quant_types) / sizeof(quant_types[0])));
	suite_add_tcase(su, tc);
	SRunner *sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	json_decref(greedy);
	return failed ? 1 : 0;
}
