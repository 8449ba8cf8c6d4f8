/* bench/mkmodel: writes random-weight GGUF models of real shapes so that speed can be measured
 * at realistic sizes without downloading anything.
 *
 *   bench/mkmodel -o DIR --vocab-dir /work/shared/vocab [-m NAME,...] [-t F16,Q8_0,Q4_K_M] [--seed N]
 *
 * Writes DIR/NAME-TYPE.gguf.  The tokenizer.* keys are copied from the vocabulary GGUF each
 * shape expects (ggml-vocab-*.gguf in --vocab-dir, or --vocab FILE for all of them): those
 * files may not be redistributed, so the tokenizer is never part of this program.  Weights
 * are N(0, 1/fan_in), norms 1, and the state-space parameters in the ranges trained models
 * have, so inference runs without overflow; the numbers mean nothing.  Each file is dropped
 * from the page cache once written, so that it is read in as a model on disk is. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench/mkmodel.h"
#include "bench/pages.h"
#include "daemon/gguf.h"
#include "daemon/gguf_write.h"
#include "engine/alloc.h"
#include "engine/types.h"

/* ---- random numbers: splitmix64 streams, one per tensor (seed ^ hash of its name) */
struct rng {
	uint64_t s;
	bool have;
	float spare;
};

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double uniform01(struct rng *r)
{
	return ((double)(splitmix(&r->s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static float normal(struct rng *r)
{
	if (r->have) {
		r->have = false;
		return r->spare;
	}
	const double u = uniform01(r), v = uniform01(r);
	const double m = sqrt(-2.0 * log(u));
	r->spare = (float)(m * sin(2.0 * M_PI * v));
	r->have = true;
	return (float)(m * cos(2.0 * M_PI * v));
}

static struct rng rng_for(const struct mk_ctx *c, const char *name)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	return (struct rng){ .s = c->seed ^ h };
}

/* ---- the type mix */
static bool more_bits(uint32_t i, uint32_t n)
{
	return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static uint32_t mix_type(enum mk_ftype f, enum mk_role role, uint32_t index, uint32_t count)
{
	switch (f) {
	case MK_F16:
		return HYD_TYPE_F16;
	case MK_Q8_0:
		return HYD_TYPE_Q8_0;
	case MK_Q4_K_M:
		if (role == MK_OUTPUT)
			return HYD_TYPE_Q6_K;
		if ((role == MK_ATTN_V || role == MK_FFN_DOWN) && more_bits(index, count))
			return HYD_TYPE_Q6_K;
		return HYD_TYPE_Q4_K;
	}
	return HYD_TYPE_F16;
}

/* Rows that are not a whole number of blocks: llama.cpp falls back to a 32-element type
 * (Q4_K -> Q5_0, Q6_K -> Q8_0).  hyd has no Q5_0, so Q4_K falls back to Q4_0 here. */
static uint32_t fit_type(uint32_t t, int64_t n_in)
{
	for (;;) {
		const struct hyd_type_traits *tr = hyd_type_traits(t);
		if (n_in % tr->blck == 0)
			return t;
		switch (t) {
		case HYD_TYPE_Q4_K:
			t = HYD_TYPE_Q4_0;
			break;
		case HYD_TYPE_Q5_K:
		case HYD_TYPE_Q6_K:
			t = HYD_TYPE_Q8_0;
			break;
		default:
			return HYD_TYPE_F16;
		}
	}
}

static int keep(struct mk_ctx *c, void *p)
{
	if (c->n_bufs == c->cap_bufs) {
		uint32_t cap = c->cap_bufs ? 2 * c->cap_bufs : 64;
		void **b = hyd_realloc(c->bufs, cap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		c->bufs = b;
		c->cap_bufs = cap;
	}
	c->bufs[c->n_bufs++] = p;
	return 0;
}

static void convert(uint32_t type, const float *src, void *dst, int64_t n)
{
	if (type == HYD_TYPE_F16) {
		uint16_t *d = dst;
		for (int64_t i = 0; i < n; i++)
			d[i] = hyd_fp32_to_fp16(src[i]);
	} else if (type == HYD_TYPE_F32) {
		memcpy(dst, src, (size_t)n * sizeof(float));
	} else {
		hyd_type_traits(type)->from_float(src, dst, n);
	}
}

int mk_matrix(struct mk_ctx *c, const char *name, int64_t n_in, int64_t n_out, float std, enum mk_role role,
	      uint32_t index, uint32_t count)
{
	const uint32_t type = fit_type(mix_type(c->ftype, role, index, count), n_in);
	const int64_t row = hyd_row_size(type, n_in);
	if (row < 0)
		return (int)row;
	const uint64_t nbytes = (uint64_t)row * (uint64_t)n_out;
	uint8_t *data = hyd_aligned_alloc(64, nbytes);
	/* generate and convert a slab of rows at a time: a 262K-row embedding as floats would be 0.7 GB */
	const int64_t slab = 64;
	float *tmp = hyd_malloc((size_t)(slab * n_in) * sizeof(float));
	int r = -ENOMEM;
	if (!data || !tmp)
		goto fail;
	struct rng g = rng_for(c, name);
	for (int64_t r0 = 0; r0 < n_out; r0 += slab) {
		const int64_t rows = n_out - r0 < slab ? n_out - r0 : slab;
		for (int64_t i = 0; i < rows * n_in; i++)
			tmp[i] = std * normal(&g);
		convert(type, tmp, data + (uint64_t)r0 * (uint64_t)row, rows * n_in);
	}
	hyd_free(tmp);
	tmp = NULL;
	const int64_t ne[2] = { n_in, n_out };
	if ((r = keep(c, data)))
		goto fail;
	if ((r = hyd_gguf_writer_add_tensor_ref(c->w, name, type, 2, ne, data, nbytes)))
		return r;
	c->n_params += (uint64_t)(n_in * n_out);
	c->n_bytes += nbytes;
	c->type_count[type < 64 ? type : 63]++;
	return 0;
fail:
	hyd_free(tmp);
	hyd_free(data);
	return r;
}

int mk_f32(struct mk_ctx *c, const char *name, int64_t ne0, int64_t ne1, const float *src, float mean, float std)
{
	const uint64_t n = (uint64_t)(ne0 * ne1);
	float *data = hyd_aligned_alloc(64, n * sizeof(float));
	if (!data)
		return -ENOMEM;
	struct rng g = rng_for(c, name);
	for (uint64_t i = 0; i < n; i++)
		data[i] = src ? src[i] : mean + std * normal(&g);
	int r = keep(c, data);
	if (r) {
		hyd_free(data);
		return r;
	}
	const int64_t ne[2] = { ne0, ne1 };
	if ((r = hyd_gguf_writer_add_tensor_ref(c->w, name, HYD_TYPE_F32, ne1 == 1 ? 1 : 2, ne, data,
						 n * sizeof(float))))
		return r;
	c->n_params += n;
	c->n_bytes += n * sizeof(float);
	return 0;
}

int mk_ones(struct mk_ctx *c, const char *name, int64_t n)
{
	return mk_f32(c, name, n, 1, NULL, 1.0f, 0.0f);
}

int mk_general(struct mk_ctx *c, const char *arch, const char *name)
{
	static const uint32_t file_type[] = { [MK_F16] = 1, [MK_Q8_0] = 7, [MK_Q4_K_M] = 15 };
	int r;
	if ((r = hyd_gguf_writer_add_str(c->w, "general.architecture", arch)) ||
	    (r = hyd_gguf_writer_add_str(c->w, "general.type", "model")) ||
	    (r = hyd_gguf_writer_add_str(c->w, "general.name", name)) ||
	    (r = hyd_gguf_writer_add_str(c->w, "general.description",
					 "random weights generated by hyd bench/mkmodel; for speed measurements only")) ||
	    (r = hyd_gguf_writer_add_u32(c->w, "general.file_type", file_type[c->ftype])) ||
	    (r = hyd_gguf_writer_add_u32(c->w, "general.quantization_version", 2)))
		return r;
	return 0;
}

static size_t elem_size(uint32_t t)
{
	switch (t) {
	case HYD_GGUF_U8: case HYD_GGUF_I8: case HYD_GGUF_BOOL: return 1;
	case HYD_GGUF_U16: case HYD_GGUF_I16: return 2;
	case HYD_GGUF_U32: case HYD_GGUF_I32: case HYD_GGUF_F32: return 4;
	case HYD_GGUF_U64: case HYD_GGUF_I64: case HYD_GGUF_F64: return 8;
	}
	return 0;
}

static int copy_str_array(struct mk_ctx *c, const char *key, const struct hyd_gguf_arr *a, uint64_t n)
{
	char **s = hyd_calloc(n ? n : 1, sizeof(*s));
	int r = -ENOMEM;
	if (!s)
		return r;
	for (uint64_t i = 0; i < n; i++) {
		struct hyd_str v;
		if ((r = hyd_gguf_arr_str(a, i, &v)))
			goto out;
		if (!(s[i] = hyd_strndup(v.p, v.n))) {
			r = -ENOMEM;
			goto out;
		}
	}
	r = hyd_gguf_writer_add_arr_str(c->w, key, (const char *const *)s, n);
out:
	for (uint64_t i = 0; i < n; i++)
		hyd_free(s[i]);
	hyd_free(s);
	return r;
}

static int copy_key(struct mk_ctx *c, const char *key, uint32_t max_tokens)
{
	const struct hyd_gguf *g = c->vocab;
	uint32_t type;
	int r = hyd_gguf_kv_type(g, key, &type);
	if (r)
		return r;
	switch (type) {
	case HYD_GGUF_U32: {
		uint32_t v;
		return (r = hyd_gguf_get_u32(g, key, &v)) ? r : hyd_gguf_writer_add_u32(c->w, key, v);
	}
	case HYD_GGUF_I32: {
		int32_t v;
		return (r = hyd_gguf_get_i32(g, key, &v)) ? r : hyd_gguf_writer_add_i32(c->w, key, v);
	}
	case HYD_GGUF_U64: {
		uint64_t v;
		return (r = hyd_gguf_get_u64(g, key, &v)) ? r : hyd_gguf_writer_add_u64(c->w, key, v);
	}
	case HYD_GGUF_F32: {
		float v;
		return (r = hyd_gguf_get_f32(g, key, &v)) ? r : hyd_gguf_writer_add_f32(c->w, key, v);
	}
	case HYD_GGUF_BOOL: {
		bool v;
		return (r = hyd_gguf_get_bool(g, key, &v)) ? r : hyd_gguf_writer_add_bool(c->w, key, v);
	}
	case HYD_GGUF_STRING: {
		struct hyd_str v;
		return (r = hyd_gguf_get_str(g, key, &v)) ? r : hyd_gguf_writer_add_strn(c->w, key, v.p, v.n);
	}
	case HYD_GGUF_ARRAY: {
		struct hyd_gguf_arr a;
		if ((r = hyd_gguf_get_arr(g, key, &a)))
			return r;
		/* per-token arrays follow the embedding's row count; merges stay whole */
		uint64_t n = a.n;
		if (strcmp(key, "tokenizer.ggml.merges") && n > max_tokens)
			n = max_tokens;
		if (a.elem_type == HYD_GGUF_STRING)
			return copy_str_array(c, key, &a, n);
		if (!elem_size(a.elem_type))
			return -ENOTSUP;
		return hyd_gguf_writer_add_arr(c->w, key, a.elem_type, a.data, n);
	}
	}
	fprintf(stderr, "mkmodel: skipping %s (value type %u not copied)\n", key, type);
	return 0;
}

int mk_copy_tokenizer(struct mk_ctx *c, uint32_t max_tokens)
{
	const uint64_t n = hyd_gguf_n_kv(c->vocab);
	for (uint64_t i = 0; i < n; i++) {
		struct hyd_str k;
		char key[256];
		if (hyd_gguf_kv_key(c->vocab, i, &k) || k.n >= sizeof(key))
			continue;
		memcpy(key, k.p, k.n);
		key[k.n] = 0;
		if (strncmp(key, "tokenizer.", 10))
			continue;
		int r = copy_key(c, key, max_tokens);
		if (r) {
			fprintf(stderr, "mkmodel: copying %s: %s\n", key, strerror(-r));
			return r;
		}
	}
	return 0;
}

/* ---- driver */
static const char *ftype_names[] = { [MK_F16] = "F16", [MK_Q8_0] = "Q8_0", [MK_Q4_K_M] = "Q4_K_M" };

static void usage(void)
{
	fprintf(stderr, "usage: mkmodel -o DIR (--vocab-dir DIR | --vocab FILE) [-m NAME,...] [-t TYPE,...] [--seed N]\n"
			"  types: F16, Q8_0, Q4_K_M (default: all)\n  models (default: all):\n");
	for (uint32_t i = 0; i < mk_n_models; i++)
		fprintf(stderr, "    %-20s %s (vocabulary %s)\n", mk_models[i].name, mk_models[i].desc, mk_models[i].vocab);
}

static bool in_list(const char *list, const char *name)
{
	if (!list)
		return true;
	const size_t n = strlen(name);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		const size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && !strncasecmp(p, name, n))
			return true;
		p += len + (e ? 1 : 0);
	}
	return false;
}

static int make_one(const struct mk_model *mm, enum mk_ftype ft, const char *vocab_path, const char *out_dir,
		    uint64_t seed)
{
	char err[512], path[4096];
	struct hyd_gguf *vocab = NULL;
	struct mk_ctx c = { .ftype = ft, .seed = seed };
	int r = hyd_gguf_open(vocab_path, &vocab, err, sizeof(err));
	if (r) {
		fprintf(stderr, "mkmodel: %s\n", err);
		return r;
	}
	c.vocab = vocab;
	char lower[16];
	snprintf(lower, sizeof(lower), "%s", ftype_names[ft]);
	for (char *p = lower; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	snprintf(path, sizeof(path), "%s/%s-%s.gguf", out_dir, mm->name, lower);
	const double t0 = (double)clock() / CLOCKS_PER_SEC;
	if ((r = hyd_gguf_writer_new(&c.w)) || (r = mm->build(&c)) || (r = hyd_gguf_writer_write_file(c.w, path))) {
		fprintf(stderr, "mkmodel: %s: %s\n", path, strerror(-r));
	} else {
		/* leave the file on disk, not in the page cache as it was written (small pages):
		 * bench_model then loads it as hydd loads a model on disk, in large folios mapped
		 * with 2 MiB pages where the filesystem has them (bench/pages.h) */
		const int d = hyd__bench_drop_cached(path);
		if (d)
			fprintf(stderr, "mkmodel: %s: cannot drop it from the page cache (%s); it may load in small pages\n",
				path, strerror(-d));
		printf("%s: %.1fM parameters, %.1f MB of tensor data, matrices:", path, (double)c.n_params / 1e6,
		       (double)c.n_bytes / 1e6);
		for (uint32_t t = 0; t < 64; t++)
			if (c.type_count[t])
				printf(" %u %s", c.type_count[t], hyd_type_name(t));
		printf(" (%.1f s)\n", (double)clock() / CLOCKS_PER_SEC - t0);
	}
	hyd_gguf_writer_free(c.w);
	for (uint32_t i = 0; i < c.n_bufs; i++)
		hyd_free(c.bufs[i]);
	hyd_free(c.bufs);
	hyd_gguf_close(vocab);
	return r;
}

int main(int argc, char **argv)
{
	const char *out_dir = NULL, *vocab_dir = NULL, *vocab_file = NULL, *models = NULL, *types = NULL;
	uint64_t seed = 42;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			usage();
			return 2;
		}
		if (!strcmp(argv[i], "-o"))
			out_dir = v;
		else if (!strcmp(argv[i], "--vocab-dir"))
			vocab_dir = v;
		else if (!strcmp(argv[i], "--vocab"))
			vocab_file = v;
		else if (!strcmp(argv[i], "-m"))
			models = v;
		else if (!strcmp(argv[i], "-t"))
			types = v;
		else if (!strcmp(argv[i], "--seed"))
			seed = strtoull(v, NULL, 0);
		else {
			usage();
			return 2;
		}
		i++;
	}
	if (!out_dir || (!vocab_dir && !vocab_file)) {
		usage();
		return 2;
	}
	if (mkdir(out_dir, 0755) && errno != EEXIST) {
		fprintf(stderr, "mkmodel: %s: %s\n", out_dir, strerror(errno));
		return 1;
	}
	int failed = 0, made = 0;
	for (uint32_t i = 0; i < mk_n_models; i++) {
		if (!in_list(models, mk_models[i].name))
			continue;
		char vpath[4096];
		if (vocab_file)
			snprintf(vpath, sizeof(vpath), "%s", vocab_file);
		else
			snprintf(vpath, sizeof(vpath), "%s/%s", vocab_dir, mk_models[i].vocab);
		for (int ft = MK_F16; ft <= MK_Q4_K_M; ft++) {
			if (!in_list(types, ftype_names[ft]))
				continue;
			made++;
			if (make_one(&mk_models[i], (enum mk_ftype)ft, vpath, out_dir, seed))
				failed++;
		}
	}
	if (!made) {
		fprintf(stderr, "mkmodel: nothing selected\n");
		usage();
		return 2;
	}
	return failed ? 1 : 0;
}
