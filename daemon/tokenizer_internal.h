/* Shared between the tokenizer's files: the loaded vocabulary, its lookup tables, and the
 * per-algorithm entry points.  Nothing here is visible outside daemon/tokenizer*.c and the
 * tokenizer's tests. */
#ifndef HYD_DAEMON_TOKENIZER_INTERNAL_H
#define HYD_DAEMON_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/tokenizer.h"

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum {
	HYD__TT_UNDEFINED = 0,
	HYD__TT_NORMAL = 1,
	HYD__TT_UNKNOWN = 2,
	HYD__TT_CONTROL = 3,
	HYD__TT_USER = 4,
	HYD__TT_UNUSED = 5,
	HYD__TT_BYTE = 6,
};

/* Major Unicode general category of a code point (tokenizer_ucd.c, generated). */
enum {
	HYD__UCAT_UNDEFINED = 0,
	HYD__UCAT_LETTER,
	HYD__UCAT_NUMBER,
	HYD__UCAT_PUNCT,
	HYD__UCAT_SYMBOL,
	HYD__UCAT_MARK,
	HYD__UCAT_SEPARATOR,
	HYD__UCAT_CONTROL,
};
extern const uint32_t hyd__ucd_n_runs;
extern const uint32_t hyd__ucd_run_start[];
extern const uint8_t hyd__ucd_run_cat[];
unsigned hyd__ucat(uint32_t cp);
/* The White_Space set llama.cpp's pre-tokenizers use for \s. */
bool hyd__uspace(uint32_t cp);

/* Open-addressing map from byte strings to int32 values; the strings are not copied. */
struct hyd__strmap {
	uint32_t *slots; /* entry index + 1, 0 = empty */
	const char **keys;
	uint32_t *lens;
	int32_t *vals;
	uint32_t n, cap, mask;
};
int hyd__strmap_init(struct hyd__strmap *m, uint32_t max_entries);
void hyd__strmap_fini(struct hyd__strmap *m);
/* Inserts or overwrites (the last duplicate wins, as in llama.cpp's token_to_id). */
int hyd__strmap_put(struct hyd__strmap *m, const char *key, uint32_t len, int32_t val);
int32_t hyd__strmap_get(const struct hyd__strmap *m, const char *key, size_t len); /* -1: none */

struct hyd__tokvec {
	int32_t *v;
	size_t n, cap;
};
int hyd__tokvec_push(struct hyd__tokvec *tv, int32_t id);

enum hyd__tok_kind { HYD__TOK_SPM, HYD__TOK_BPE };

/* Pre-tokenizers (llama.cpp's llama_vocab_pre_type subset). */
enum hyd__pre {
	HYD__PRE_DEFAULT,
	HYD__PRE_GPT2, /* also mpt */
	HYD__PRE_FALCON,
	HYD__PRE_STARCODER,
	HYD__PRE_DEEPSEEK_CODER,
	HYD__PRE_DEEPSEEK_LLM,
	HYD__PRE_LLAMA3,
	HYD__PRE_QWEN2,
};

struct hyd__token {
	const char *text; /* into hyd_tokenizer.pool, NUL-terminated */
	uint32_t len;
	float score;
	uint8_t type;
	uint8_t byte;   /* HYD__TT_BYTE in SPM: the byte it stands for */
	bool lstrip;    /* strip spaces before/after it when partitioning special text */
	bool rstrip;
};

struct hyd_tokenizer {
	enum hyd__tok_kind kind;
	enum hyd__pre pre;
	uint32_t n_vocab;
	struct hyd__token *tokens;
	char *pool;
	struct hyd__strmap by_text;
	uint32_t max_piece; /* longest detokenized piece in bytes */

	int32_t bos, eos, unk, eot, eom;
	bool add_bos, add_eos, add_space_prefix, ignore_merges;

	/* Control, user-defined and unknown tokens, longest text first: the order llama.cpp
	 * partitions text at special-token occurrences. */
	int32_t *specials;
	uint32_t n_specials;
	int32_t *eog;
	uint32_t n_eog;

	int32_t byte_token[256]; /* SPM byte fallback, -1 where the vocab has none */

	/* BPE: merges keyed by "left right", value = rank. */
	struct hyd__strmap merges;
	char *merge_pool;
	uint32_t byte_to_cp[256];
	int16_t cp_to_byte[324]; /* GPT-2's byte-to-unicode map only uses U+0021..U+0143 */
};

/* One raw fragment; prefix_space: prepend the dummy space (the fragment starts the text or
 * follows a special token). */
int hyd__spm_tokenize(const struct hyd_tokenizer *tok, const char *text, size_t len,
		      bool prefix_space, struct hyd__tokvec *out);
int hyd__bpe_init(struct hyd_tokenizer *tok, const struct hyd_gguf *g, char *err, size_t errlen);
int hyd__bpe_tokenize(const struct hyd_tokenizer *tok, const char *text, size_t len,
		      struct hyd__tokvec *out);
/* Decoded text of a BPE token (bytes through GPT-2's byte-to-unicode map); buf holds
 * at least the token's text length. Returns the byte count. */
size_t hyd__bpe_decode(const struct hyd_tokenizer *tok, int32_t id, char *buf);

/* Code points of len bytes of UTF-8 as llama.cpp decodes them: each byte that does not start
 * a complete sequence becomes U+FFFD. *ret_cps has room for len entries. */
int hyd__utf8_decode(const char *s, size_t len, uint32_t **ret_cps, size_t *ret_n);
size_t hyd__utf8_encode(uint32_t cp, char *out); /* out: 4 bytes; returns 1..4 */
/* Length of the UTF-8 sequence a lead byte announces, from its high nibble (1 for
 * continuation bytes), as llama.cpp's unicode_len_utf8. */
static inline size_t hyd__utf8_len(uint8_t c)
{
	static const uint8_t lens[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
	return lens[c >> 4];
}

/* The pre-tokenizer: splits cps[0, n) into words; ret_lens gets word lengths in code
 * points (allocated with hyd_malloc). */
int hyd__pre_split(enum hyd__pre pre, const uint32_t *cps, size_t n, uint32_t **ret_lens,
		   size_t *ret_n);

#endif
