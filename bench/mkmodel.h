/* bench/mkmodel: random-weight GGUF files of real model shapes (see docs/PERFORMANCE.md).
 * mkmodel.c holds the machinery (tensor generation, the type mix, the tokenizer copy),
 * mkmodel_arch.c one builder per model shape. */
#ifndef HYD_BENCH_MKMODEL_H
#define HYD_BENCH_MKMODEL_H

#include <stdint.h>

struct hyd_gguf;
struct hyd_gguf_writer;

/* The weight mixes of llama.cpp's file types that we generate. */
enum mk_ftype {
	MK_F16 = 0,
	MK_Q8_0 = 1,
	MK_Q4_K_M = 2,
};

/* How a matrix is typed under Q4_K_M (llama.cpp's mix): the output head (or the tied token
 * embedding) is Q6_K; attn_v and ffn_down are Q6_K on the "more bits" layers; the rest Q4_K. */
enum mk_role {
	MK_MATRIX = 0,
	MK_OUTPUT,   /* output.weight, or token_embd.weight when tied */
	MK_EMBD,     /* untied token_embd.weight */
	MK_ATTN_V,   /* index/count: among the layers that have attention */
	MK_FFN_DOWN, /* index/count: among the layers that have an FFN */
};

struct mk_ctx {
	struct hyd_gguf_writer *w;
	const struct hyd_gguf *vocab; /* tokenizer source */
	enum mk_ftype ftype;
	uint64_t seed;
	void **bufs; /* tensor data kept until the file is written */
	uint32_t n_bufs, cap_bufs;
	uint64_t n_params, n_bytes;
	uint32_t type_count[64]; /* matrices per GGML type, for the summary */
};

/* A weight matrix of n_out rows of n_in, N(0, std^2), stored in the type the mix and role
 * pick (with llama.cpp's fallback where n_in is not a whole number of blocks). */
int mk_matrix(struct mk_ctx *c, const char *name, int64_t n_in, int64_t n_out, float std, enum mk_role role,
	      uint32_t index, uint32_t count);
/* An F32 tensor: data given (copied), or when data is NULL N(mean, std^2) values. */
int mk_f32(struct mk_ctx *c, const char *name, int64_t ne0, int64_t ne1, const float *data, float mean,
	   float std);
/* An F32 vector of ones (RMSNorm weights). */
int mk_ones(struct mk_ctx *c, const char *name, int64_t n);
/* Copies the source vocabulary's tokenizer.* keys, truncating token arrays to max_tokens. */
int mk_copy_tokenizer(struct mk_ctx *c, uint32_t max_tokens);
/* general.* keys common to every file. */
int mk_general(struct mk_ctx *c, const char *arch, const char *name);

/* Builders: fill c->w with a model of that shape.  n_vocab is the embedding row count. */
struct mk_model {
	const char *name;      /* command-line name, also the file stem */
	const char *vocab;     /* the vocabulary file it expects (basename), for help */
	int (*build)(struct mk_ctx *c);
	const char *desc;
};
extern const struct mk_model mk_models[];
extern const uint32_t mk_n_models;

#endif
