/* Tokenizer unit tests on small vocabularies built in memory: SentencePiece merges and byte
 * fallback, byte-level BPE, special-token parsing, BOS/EOS, invalid and empty input, the
 * streaming detokenizer, and the load errors. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/gguf.h"
#include "daemon/gguf_write.h"
#include "daemon/tokenizer.h"
#include "daemon/tokenizer_internal.h"
#include "engine/alloc.h"

#define SPM_BYTE(b) (3 + (b)) /* <0x00> is token 3 */
enum {
	SPM_SPACE = 259, /* ▁ */
	SPM_A,		 /* a */
	SPM_B,		 /* b */
	SPM_SA,		 /* ▁a */
	SPM_AB,		 /* ab */
	SPM_SAB,	 /* ▁ab */
	SPM_BA,		 /* ba */
	SPM_TAG,	 /* <tag>, user-defined */
	SPM_CTL,	 /* <|ctl|>, control */
	SPM_N,
};

struct vocab {
	void *buf;
	struct hyd_gguf *g;
	struct hyd_tokenizer *tok;
};

/* Options for the SentencePiece vocabulary. */
struct spm_opts {
	const char *model;
	bool add_eos;
	bool no_prefix;
	bool skip_tokens;
};

static int build(struct hyd_gguf_writer *w, struct vocab *v, char *err, size_t errlen)
{
	size_t len;
	int r;

	memset(v, 0, sizeof(*v));
	ck_assert_int_eq(hyd_gguf_writer_write_mem(w, &v->buf, &len), 0);
	hyd_gguf_writer_free(w);
	ck_assert_int_eq(hyd_gguf_open_mem(v->buf, len, "test", &v->g, NULL, 0), 0);
	r = hyd_tokenizer_load(v->g, &v->tok, err, errlen);
	return r;
}

static void vocab_free(struct vocab *v)
{
	hyd_tokenizer_free(v->tok);
	hyd_gguf_close(v->g);
	hyd_free(v->buf);
}

static int spm_vocab(const struct spm_opts *o, struct vocab *v, char *err, size_t errlen)
{
	static char bytes[256][8];
	const char *toks[SPM_N];
	float scores[SPM_N];
	int32_t types[SPM_N];
	struct hyd_gguf_writer *w;

	toks[0] = "<unk>";
	toks[1] = "<s>";
	toks[2] = "</s>";
	types[0] = 2;
	types[1] = types[2] = 3;
	for (int b = 0; b < 256; b++) {
		snprintf(bytes[b], sizeof(bytes[b]), "<0x%02X>", b);
		toks[SPM_BYTE(b)] = bytes[b];
		types[SPM_BYTE(b)] = 6;
	}
	toks[SPM_SPACE] = "\xe2\x96\x81";
	toks[SPM_A] = "a";
	toks[SPM_B] = "b";
	toks[SPM_SA] = "\xe2\x96\x81"
		       "a";
	toks[SPM_AB] = "ab";
	toks[SPM_SAB] = "\xe2\x96\x81"
			"ab";
	toks[SPM_BA] = "ba";
	toks[SPM_TAG] = "<tag>";
	toks[SPM_CTL] = "<|ctl|>";
	for (int i = SPM_SPACE; i < SPM_N; i++)
		types[i] = 1;
	types[SPM_TAG] = 4;
	types[SPM_CTL] = 3;
	for (int i = 0; i < SPM_N; i++)
		scores[i] = 0;
	scores[SPM_SA] = -1;  /* ▁a beats ab ... */
	scores[SPM_AB] = -2;
	scores[SPM_SAB] = -3;
	scores[SPM_BA] = -2;  /* ... and ab ties ba: the leftmost pair wins */

	ck_assert_int_eq(hyd_gguf_writer_new(&w), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_str(w, "general.architecture", "llama"), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_str(w, "tokenizer.ggml.model",
						 o->model ? o->model : "llama"),
			 0);
	if (!o->skip_tokens)
		ck_assert_int_eq(hyd_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, SPM_N),
				 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "tokenizer.ggml.scores", HYD_GGUF_F32, scores,
						 SPM_N),
			 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", HYD_GGUF_I32,
						 types, SPM_N),
			 0);
	ck_assert_int_eq(hyd_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2), 0);
	if (o->add_eos)
		ck_assert_int_eq(hyd_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", true), 0);
	if (o->no_prefix)
		ck_assert_int_eq(hyd_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", false),
				 0);
	return build(w, v, err, errlen);
}

static struct hyd_tokenizer *spm(struct vocab *v)
{
	struct spm_opts o = { 0 };
	char err[128] = "";

	ck_assert_msg(spm_vocab(&o, v, err, sizeof(err)) == 0, "%s", err);
	return v->tok;
}

static void expect(const struct hyd_tokenizer *tok, const char *text, size_t len, unsigned flags,
		   const int32_t *want, size_t n_want)
{
	int32_t *ids = NULL;
	size_t n = 99;

	ck_assert_int_eq(hyd_tokenizer_encode(tok, text, len, flags, &ids, &n), 0);
	ck_assert_ptr_nonnull(ids);
	ck_assert_uint_eq(n, n_want);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(ids[i] == want[i], "'%.*s' token %zu: %d, want %d", (int)len, text, i,
			      ids[i], want[i]);
	hyd_free(ids);
}
#define EXPECT(tok, text, flags, ...)                                                             \
	do {                                                                                      \
		const int32_t want_[] = { __VA_ARGS__ };                                          \
		expect(tok, text, sizeof(text) - 1, flags, want_, sizeof(want_) / sizeof(int32_t)); \
	} while (0)

/* Detokenizes ids one at a time into out; returns the length. */
static size_t detok(const struct hyd_tokenizer *tok, const int32_t *ids, size_t n, bool flush,
		    char *out)
{
	struct hyd_detok st;
	size_t len = 0;
	size_t cap = hyd_tokenizer_max_piece(tok);

	hyd_detok_init(tok, &st);
	for (size_t i = 0; i < n; i++) {
		int w = hyd_detok_push(tok, &st, ids[i], out + len, cap);
		ck_assert_int_ge(w, 0);
		len += (size_t)w;
	}
	if (flush) {
		int w = hyd_detok_flush(tok, &st, out + len, cap);
		ck_assert_int_ge(w, 0);
		len += (size_t)w;
	}
	out[len] = '\0';
	return len;
}

START_TEST(test_spm_merges)
{
	struct vocab v;
	struct hyd_tokenizer *tok = spm(&v);

	ck_assert_uint_eq(hyd_tokenizer_n_vocab(tok), SPM_N);
	/* ▁ a b: ▁a (-1) first, then ▁a+b = ▁ab */
	EXPECT(tok, "ab", 0, SPM_SAB);
	/* ▁ a b a: ▁a first; then "▁ab" (-3) vs "ba" (-2): ba wins */
	EXPECT(tok, "aba", 0, SPM_SA, SPM_BA);
	/* b a b: ba (-2, left 0) ties ab (-2, left 1): the leftmost merges */
	EXPECT(tok, "bab", HYD_TOK_ADD_SPECIAL, 1, SPM_SPACE, SPM_BA, SPM_B);
	/* spaces become ▁ */
	EXPECT(tok, "a a", 0, SPM_SA, SPM_SA);
	vocab_free(&v);
}
END_TEST

START_TEST(test_spm_byte_fallback)
{
	struct vocab v;
	struct hyd_tokenizer *tok = spm(&v);
	char out[256];
	const int32_t ids[] = { SPM_SA, SPM_BYTE(0xC3), SPM_BYTE(0xA9), SPM_B };

	/* é is not in the vocabulary: its two UTF-8 bytes become byte tokens */
	EXPECT(tok, "a\xc3\xa9"
		    "b",
	       0, SPM_SA, SPM_BYTE(0xC3), SPM_BYTE(0xA9), SPM_B);
	ck_assert_uint_eq(detok(tok, ids, 4, true, out), 4);
	ck_assert_str_eq(out, "a\xc3\xa9"
			      "b");
	vocab_free(&v);
}
END_TEST

START_TEST(test_detok_stream_split_char)
{
	struct vocab v;
	struct hyd_tokenizer *tok = spm(&v);
	struct hyd_detok st;
	char out[256];
	size_t cap = hyd_tokenizer_max_piece(tok);

	hyd_detok_init(tok, &st);
	ck_assert(st.strip_leading_space);
	/* the dummy prefix's space is dropped from the first piece only */
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_SA, out, cap), 1);
	ck_assert_int_eq(out[0], 'a');
	/* U+20AC (E2 82 AC) over three byte tokens: nothing until it is complete */
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0xE2), out, cap), 0);
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0x82), out, cap), 0);
	ck_assert_uint_eq(st.n_pending, 2);
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0xAC), out, cap), 3);
	ck_assert(!memcmp(out, "\xe2\x82\xac", 3));
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_SA, out, cap), 2);
	ck_assert(!memcmp(out, " a", 2));
	/* control tokens give no text */
	ck_assert_int_eq(hyd_detok_push(tok, &st, 2, out, cap), 0);
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_CTL, out, cap), 0);
	/* user-defined tokens give their text */
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_TAG, out, cap), 5);
	ck_assert(!memcmp(out, "<tag>", 5));
	/* an incomplete character at the end of the stream becomes U+FFFD */
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0xF0), out, cap), 0);
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0x9F), out, cap), 0);
	ck_assert_int_eq(hyd_detok_flush(tok, &st, out, cap), 3);
	ck_assert(!memcmp(out, "\xef\xbf\xbd", 3));
	ck_assert_int_eq(hyd_detok_flush(tok, &st, out, cap), 0);
	ck_assert_uint_eq(st.n_tokens, 10);
	vocab_free(&v);
}
END_TEST

START_TEST(test_detok_errors)
{
	struct vocab v;
	struct hyd_tokenizer *tok = spm(&v);
	struct hyd_detok st, saved;
	char out[8];

	hyd_detok_init(tok, &st);
	ck_assert_int_eq(hyd_detok_push(tok, &st, -1, out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_N, out, sizeof(out)), -EINVAL);
	/* too small: -ERANGE and the state is untouched */
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0xE2), out, 0), 0);
	saved = st;
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0x41), out, 2), -ERANGE);
	ck_assert(!memcmp(&st, &saved, sizeof(st)));
	/* an interrupted sequence is replaced, then the byte that broke it is kept */
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0x41), out, 4), 4);
	ck_assert(!memcmp(out, "\xef\xbf\xbd"
			       "A",
			  4));
	/* a lone continuation byte and an invalid lead byte */
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0x80), out, sizeof(out)), 3);
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0xC0), out, sizeof(out)), 3);
	/* overlong E0 80 and a surrogate ED A0 are refused at their second byte */
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0xE0), out, sizeof(out)), 0);
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0x80), out, sizeof(out)), 6);
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0xED), out, sizeof(out)), 0);
	ck_assert_int_eq(hyd_detok_push(tok, &st, SPM_BYTE(0xA0), out, sizeof(out)), 6);
	vocab_free(&v);
}
END_TEST

START_TEST(test_spm_invalid_utf8)
{
	struct vocab v;
	struct hyd_tokenizer *tok = spm(&v);
	char out[256];
	const int32_t ids[] = { SPM_SA, SPM_BYTE(0xFF), SPM_BYTE(0xC3) };

	/* bytes that are not UTF-8 still tokenize, losslessly, as byte tokens */
	EXPECT(tok, "a\xff", 0, SPM_SA, SPM_BYTE(0xFF));
	EXPECT(tok, "a\xc3", 0, SPM_SA, SPM_BYTE(0xC3));
	/* a truncated lead byte swallows what follows it into one (unknown) character */
	EXPECT(tok, "\xe2"
		    "ab",
	       0, SPM_SPACE, SPM_BYTE(0xE2), SPM_BYTE('a'), SPM_BYTE('b'));
	/* and the detokenizer turns them into U+FFFD, never invalid output */
	ck_assert_uint_eq(detok(tok, ids, 3, true, out), 7);
	ck_assert_str_eq(out, "a\xef\xbf\xbd\xef\xbf\xbd");
	vocab_free(&v);
}
END_TEST

START_TEST(test_empty_input)
{
	struct vocab v;
	struct hyd_tokenizer *tok = spm(&v);
	int32_t *ids = NULL;
	size_t n = 99;

	ck_assert_int_eq(hyd_tokenizer_encode(tok, "", 0, 0, &ids, &n), 0);
	ck_assert_ptr_nonnull(ids);
	ck_assert_uint_eq(n, 0);
	hyd_free(ids);
	ck_assert_int_eq(hyd_tokenizer_encode(tok, NULL, 0, 0, &ids, &n), 0);
	ck_assert_uint_eq(n, 0);
	hyd_free(ids);
	EXPECT(tok, "", HYD_TOK_ADD_SPECIAL, 1);
	/* a lone space keeps its dummy prefix: "▁▁" */
	EXPECT(tok, " ", 0, SPM_SPACE, SPM_SPACE);
	vocab_free(&v);
}
END_TEST

START_TEST(test_special_parsing)
{
	struct vocab v;
	struct hyd_tokenizer *tok = spm(&v);

	/* off: control text is plain text (here spelled in bytes) */
	EXPECT(tok, "a<|ctl|>", 0, SPM_SA, SPM_BYTE('<'), SPM_BYTE('|'), SPM_BYTE('c'),
	       SPM_BYTE('t'), SPM_BYTE('l'), SPM_BYTE('|'), SPM_BYTE('>'));
	/* on: it is the token, and the text after it gets the dummy prefix again */
	EXPECT(tok, "a<|ctl|>b", HYD_TOK_PARSE_SPECIAL, SPM_SA, SPM_CTL, SPM_SPACE, SPM_B);
	EXPECT(tok, "<s>a", HYD_TOK_PARSE_SPECIAL | HYD_TOK_ADD_SPECIAL, 1, 1, SPM_SA);
	/* user-defined tokens are matched either way, as llama.cpp does */
	EXPECT(tok, "a<tag>", 0, SPM_SA, SPM_TAG);
	EXPECT(tok, "<tag><tag>", HYD_TOK_PARSE_SPECIAL, SPM_TAG, SPM_TAG);
	vocab_free(&v);
}
END_TEST

START_TEST(test_spm_keys)
{
	struct vocab v;
	struct spm_opts o = { .add_eos = true };
	char err[128] = "";

	ck_assert_msg(spm_vocab(&o, &v, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(hyd_tokenizer_bos(v.tok), 1);
	ck_assert_int_eq(hyd_tokenizer_eos(v.tok), 2);
	ck_assert(hyd_tokenizer_add_bos(v.tok));
	ck_assert(hyd_tokenizer_is_eog(v.tok, 2));
	ck_assert(!hyd_tokenizer_is_eog(v.tok, 1));
	EXPECT(v.tok, "a", HYD_TOK_ADD_SPECIAL, 1, SPM_SA, 2);
	EXPECT(v.tok, "a", 0, SPM_SA);
	vocab_free(&v);

	o = (struct spm_opts){ .no_prefix = true };
	ck_assert_msg(spm_vocab(&o, &v, err, sizeof(err)) == 0, "%s", err);
	EXPECT(v.tok, "ab", 0, SPM_AB);
	EXPECT(v.tok, " ab", 0, SPM_SAB);
	{
		struct hyd_detok st;
		hyd_detok_init(v.tok, &st);
		ck_assert(!st.strip_leading_space);
	}
	vocab_free(&v);
}
END_TEST

START_TEST(test_load_errors)
{
	struct vocab v;
	struct spm_opts o = { .model = "t5" };
	char err[128] = "";

	ck_assert_int_eq(spm_vocab(&o, &v, err, sizeof(err)), -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(err, "t5"));
	ck_assert_ptr_null(v.tok);
	vocab_free(&v);
	o = (struct spm_opts){ .skip_tokens = true };
	ck_assert_int_eq(spm_vocab(&o, &v, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "tokenizer.ggml.tokens"));
	vocab_free(&v);
	hyd_tokenizer_free(NULL);
}
END_TEST

/* ------------------------------------------------------------------ byte-level BPE */

enum {
	BPE_GB = 256, /* Ġb (" b") */
	BPE_AB,	      /* ab */
	BPE_34,	      /* 34 */
	BPE_GEXCL,    /* Ġ! (" !") */
	BPE_EOT,      /* <|endoftext|> */
	BPE_N,
};

/* GPT-2's byte characters: printable Latin-1 stands for itself, the rest from U+0100 on. */
static void bpe_byte_char(int b, char *out)
{
	static int map[256];
	static bool done;

	if (!done) {
		int extra = 0;
		for (int i = 0; i < 256; i++) {
			bool p = (i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) ||
				 (i >= 0xAE && i <= 0xFF);
			map[i] = p ? i : 256 + extra++;
		}
		done = true;
	}
	if (map[b] < 0x80) {
		out[0] = (char)map[b];
		out[1] = 0;
	} else {
		out[0] = (char)(0xC0 | (map[b] >> 6));
		out[1] = (char)(0x80 | (map[b] & 0x3F));
		out[2] = 0;
	}
}

static int bpe_vocab(const char *pre, struct vocab *v, char *err, size_t errlen)
{
	static char chars[256][4];
	const char *toks[BPE_N];
	int32_t types[BPE_N];
	const char *merges[] = { "a b", "\xc4\xa0 b", "3 4", "\xc4\xa0 !" };
	struct hyd_gguf_writer *w;

	for (int b = 0; b < 256; b++) {
		bpe_byte_char(b, chars[b]);
		toks[b] = chars[b];
		types[b] = 1;
	}
	toks[BPE_GB] = "\xc4\xa0"
		       "b";
	toks[BPE_AB] = "ab";
	toks[BPE_34] = "34";
	toks[BPE_GEXCL] = "\xc4\xa0!";
	toks[BPE_EOT] = "<|endoftext|>";
	types[BPE_GB] = types[BPE_AB] = types[BPE_34] = types[BPE_GEXCL] = 1;
	types[BPE_EOT] = 3;
	ck_assert_int_eq(hyd_gguf_writer_new(&w), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2"), 0);
	if (pre)
		ck_assert_int_eq(hyd_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, BPE_N), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", HYD_GGUF_I32,
						 types, BPE_N),
			 0);
	ck_assert_int_eq(hyd_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, 4), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", BPE_EOT), 0);
	ck_assert_int_eq(hyd_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", BPE_EOT), 0);
	return build(w, v, err, errlen);
}

START_TEST(test_bpe_basic)
{
	struct vocab v;
	char err[128] = "", out[256];
	struct hyd_tokenizer *tok;
	const int32_t euro[] = { 0xE2, 0x82, 0xAC };

	ck_assert_msg(bpe_vocab("gpt-2", &v, err, sizeof(err)) == 0, "%s", err);
	tok = v.tok;
	/* words "ab", " b", " ab": merges apply inside words only */
	EXPECT(tok, "ab b ab", 0, BPE_AB, BPE_GB, ' ', BPE_AB);
	/* no BOS for gpt-2 unless the GGUF says so; no space prefix */
	EXPECT(tok, "b", HYD_TOK_ADD_SPECIAL, 'b');
	ck_assert(!hyd_tokenizer_add_bos(tok));
	/* special text only with PARSE_SPECIAL */
	EXPECT(tok, "<|endoftext|>", HYD_TOK_PARSE_SPECIAL, BPE_EOT);
	EXPECT(tok, "a<|endoftext|>", 0, 'a', '<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't',
	       '|', '>');
	/* invalid UTF-8 becomes U+FFFD (EF BF BD) before the byte mapping, as in llama.cpp */
	EXPECT(tok, "\xff", 0, 0xEF, 0xBF, 0xBD);
	/* a character split over byte-level tokens streams out whole */
	EXPECT(tok, "\xe2\x82\xac", 0, 0xE2, 0x82, 0xAC);
	{
		struct hyd_detok st;
		size_t cap = hyd_tokenizer_max_piece(tok);

		hyd_detok_init(tok, &st);
		ck_assert_int_eq(hyd_detok_push(tok, &st, euro[0], out, cap), 0);
		ck_assert_int_eq(hyd_detok_push(tok, &st, euro[1], out, cap), 0);
		ck_assert_int_eq(hyd_detok_push(tok, &st, euro[2], out, cap), 3);
		ck_assert(!memcmp(out, "\xe2\x82\xac", 3));
	}
	{
		const int32_t ids[] = { BPE_AB, BPE_GB, BPE_EOT, ' ' };
		ck_assert_uint_eq(detok(tok, ids, 4, true, out), 5);
		ck_assert_str_eq(out, "ab b ");
	}
	expect(tok, "", 0, HYD_TOK_ADD_SPECIAL, NULL, 0);
	/* the GPT-2 expression keeps digits and " !" whole */
	EXPECT(tok, "1234 !", 0, '1', '2', BPE_34, BPE_GEXCL);
	vocab_free(&v);
}
END_TEST

START_TEST(test_bpe_pre)
{
	struct vocab v;
	char err[128] = "";

	ck_assert_int_eq(bpe_vocab("no-such-pre", &v, err, sizeof(err)), -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(err, "no-such-pre"));
	vocab_free(&v);
	/* no tokenizer.ggml.pre: llama.cpp's default, which splits digits into threes */
	ck_assert_msg(bpe_vocab(NULL, &v, err, sizeof(err)) == 0, "%s", err);
	EXPECT(v.tok, "1234", 0, '1', '2', '3', '4');
	/* ... and cuts punctuation runs out first */
	EXPECT(v.tok, "a !", 0, 'a', ' ', '!');
	vocab_free(&v);
	/* starcoder: every digit alone */
	ck_assert_msg(bpe_vocab("starcoder", &v, err, sizeof(err)) == 0, "%s", err);
	EXPECT(v.tok, "34 !", 0, '3', '4', BPE_GEXCL);
	vocab_free(&v);
	/* falcon: threes of digits, and punctuation runs */
	ck_assert_msg(bpe_vocab("falcon", &v, err, sizeof(err)) == 0, "%s", err);
	EXPECT(v.tok, "12345 !", 0, '1', '2', '3', '4', '5', ' ', '!');
	vocab_free(&v);
}
END_TEST

/* Words of text (UTF-8) under pre-tokenizer pre, joined with '|'. */
static void split_str(enum hyd__pre pre, const char *text, char *out, size_t cap)
{
	uint32_t *cps, *lens;
	size_t n, n_words, at = 0, o = 0;

	ck_assert_int_eq(hyd__utf8_decode(text, strlen(text), &cps, &n), 0);
	ck_assert_int_eq(hyd__pre_split(pre, cps, n, &lens, &n_words), 0);
	for (size_t w = 0; w < n_words; w++) {
		ck_assert_uint_gt(lens[w], 0);
		if (w)
			out[o++] = '|';
		for (size_t i = at; i < at + lens[w]; i++) {
			ck_assert_uint_lt(o + 5, cap);
			o += hyd__utf8_encode(cps[i], out + o);
		}
		at += lens[w];
	}
	ck_assert_uint_eq(at, n);
	out[o] = '\0';
	hyd_free(cps);
	hyd_free(lens);
}

#define SPLIT(pre, text, want)                                                                    \
	do {                                                                                      \
		char got_[512];                                                                   \
		split_str(pre, text, got_, sizeof(got_));                                         \
		ck_assert_str_eq(got_, want);                                                     \
	} while (0)

START_TEST(test_pre_split)
{
	SPLIT(HYD__PRE_GPT2, "Hello world's  test\n", "Hello| world|'s| | test|\n");
	SPLIT(HYD__PRE_GPT2, "a1 22 !?  \u00e9t\u00e9", "a|1| 22| !?| | \u00e9t\u00e9");
	SPLIT(HYD__PRE_LLAMA3, "Hello WORLD'S 1234567 ok!!\n\n  x",
	      "Hello| WORLD|'S| |123|456|7| ok|!!\n\n| | x");
	SPLIT(HYD__PRE_LLAMA3, "a \n\n b", "a| \n\n| b");
	SPLIT(HYD__PRE_QWEN2, "x123", "x|1|2|3");
	SPLIT(HYD__PRE_DEFAULT, "12345 a.b", "123|45| a|.|b");
	SPLIT(HYD__PRE_FALCON, "x=`1`", "x|=`|1|`");
	SPLIT(HYD__PRE_STARCODER, "v12", "v|1|2");
	SPLIT(HYD__PRE_DEEPSEEK_CODER, "int x=12;\n\u4f60\u597d", "int| x|=|1|2|;|\n|\u4f60\u597d");
	SPLIT(HYD__PRE_DEEPSEEK_LLM, "Ab, 12  ", "Ab|,| |12|  ");
	/* invalid UTF-8 arrives as U+FFFD, one per bad byte */
	SPLIT(HYD__PRE_GPT2, "a\xff\xfe", "a|\ufffd\ufffd");
}
END_TEST

static Suite *tokenizer_suite(void)
{
	Suite *s = suite_create("tokenizer");
	TCase *tc = tcase_create("spm");

	tcase_add_test(tc, test_spm_merges);
	tcase_add_test(tc, test_spm_byte_fallback);
	tcase_add_test(tc, test_detok_stream_split_char);
	tcase_add_test(tc, test_detok_errors);
	tcase_add_test(tc, test_spm_invalid_utf8);
	tcase_add_test(tc, test_empty_input);
	tcase_add_test(tc, test_special_parsing);
	tcase_add_test(tc, test_spm_keys);
	tcase_add_test(tc, test_load_errors);
	suite_add_tcase(s, tc);
	tc = tcase_create("bpe");
	tcase_add_test(tc, test_bpe_basic);
	tcase_add_test(tc, test_bpe_pre);
	tcase_add_test(tc, test_pre_split);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tokenizer_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
