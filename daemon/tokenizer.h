/* Tokenizers from GGUF metadata: SentencePiece-style (tokenizer.ggml.model = "llama") and
 * byte-level BPE ("gpt2", with the pre-tokenizer tokenizer.ggml.pre selects).
 * Token ids are int32_t; the vocabulary is read-only after load. */
#ifndef HYD_DAEMON_TOKENIZER_H
#define HYD_DAEMON_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hyd_gguf;
struct hyd_tokenizer;

enum {
	HYD_TOK_ADD_SPECIAL = 1u << 0,   /* add BOS/EOS where the GGUF says to */
	HYD_TOK_PARSE_SPECIAL = 1u << 1, /* recognise special/control token text in the input */
};
/* As in llama.cpp, user-defined tokens (token_type 4, e.g. GPT-NeoX's runs of spaces) are
 * matched in the text with or without HYD_TOK_PARSE_SPECIAL; control and unknown ones only
 * with it.  The tokenizer is read-only after load and may be used from several threads. */

/* Builds the tokenizer the GGUF describes. -EINVAL with a message naming the key on bad or
 * missing metadata; -ENOTSUP naming the value for an unknown model or pre-tokenizer. */
int hyd_tokenizer_load(const struct hyd_gguf *g, struct hyd_tokenizer **ret_tok, char *err,
		       size_t errlen);
void hyd_tokenizer_free(struct hyd_tokenizer *tok); /* accepts NULL */

/* Tokenize len bytes of text (need not be NUL-terminated nor valid UTF-8).  *ret_tokens is
 * allocated with hyd_malloc and freed by the caller with hyd_free. */
int hyd_tokenizer_encode(const struct hyd_tokenizer *tok, const char *text, size_t len, unsigned flags,
		 int32_t **ret_tokens, size_t *ret_n);

uint32_t hyd_tokenizer_n_vocab(const struct hyd_tokenizer *tok);
int32_t hyd_tokenizer_bos(const struct hyd_tokenizer *tok); /* -1 if none */
int32_t hyd_tokenizer_eos(const struct hyd_tokenizer *tok); /* -1 if none */
/* True for tokens that end generation (EOS, EOT, and the GGUF's eog tokens). */
bool hyd_tokenizer_is_eog(const struct hyd_tokenizer *tok, int32_t id);
bool hyd_tokenizer_add_bos(const struct hyd_tokenizer *tok);
/* The vocabulary's text of id (not NUL-terminated in general; valid while tok lives).
 * -EINVAL for an id out of range. */
int hyd_tokenizer_token_text(const struct hyd_tokenizer *tok, int32_t id, const char **ret_text,
			     size_t *ret_len);
/* Bytes one hyd_detok_push() can write at most: a cap this large is always enough. */
size_t hyd_tokenizer_max_piece(const struct hyd_tokenizer *tok);

/* Streaming detokenizer: feed tokens one at a time, get back only complete UTF-8.  Bytes of a
 * character split across byte-fallback tokens are held until the character is complete;
 * invalid sequences come out as U+FFFD. Control tokens (BOS/EOS) produce no text. */
struct hyd_detok {
	uint8_t pending[8];
	uint32_t n_pending;
	uint32_t n_tokens; /* tokens pushed so far (the first piece may drop a leading space) */
	bool strip_leading_space; /* set by hyd_detok_init from the tokenizer */
};
void hyd_detok_init(const struct hyd_tokenizer *tok, struct hyd_detok *st);
/* Appends the text of id to out (capacity cap; hyd_tokenizer_max_piece() is always enough).
 * Returns bytes written, or -ERANGE if out is too small (st unchanged), -EINVAL for an id
 * out of range. A caller continuing after a prompt clears st->strip_leading_space. */
int hyd_detok_push(const struct hyd_tokenizer *tok, struct hyd_detok *st, int32_t id, char *out,
		   size_t cap);
/* Flushes held bytes (as U+FFFD) at the end of a stream. Returns bytes written. */
int hyd_detok_flush(const struct hyd_tokenizer *tok, struct hyd_detok *st, char *out, size_t cap);

#endif
