/* Streaming detokenizer: token pieces as llama.cpp's token_to_piece renders them, passed
 * through a UTF-8 validator that holds incomplete characters (split over byte-fallback or
 * byte-level BPE tokens) until they complete, so every chunk handed out is valid UTF-8. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "daemon/tokenizer_internal.h"
#include "engine/alloc.h"

void hyd_detok_init(const struct hyd_tokenizer *tok, struct hyd_detok *st)
{
	memset(st, 0, sizeof(*st));
	/* The tokenizer put a space before the text; the first piece gives it back. */
	st->strip_leading_space = tok->kind == HYD__TOK_SPM && tok->add_space_prefix;
}

/* The raw bytes of a token; buf holds the token's text length. */
static size_t piece(const struct hyd_tokenizer *tok, int32_t id, char *buf)
{
	const struct hyd__token *t = &tok->tokens[id];
	size_t n = 0;

	switch (t->type) {
	case HYD__TT_USER:
		memcpy(buf, t->text, t->len);
		return t->len;
	case HYD__TT_BYTE:
		if (tok->kind != HYD__TOK_SPM)
			return 0;
		buf[0] = (char)t->byte;
		return 1;
	case HYD__TT_NORMAL:
		if (tok->kind == HYD__TOK_BPE)
			return hyd__bpe_decode(tok, id, buf);
		for (size_t i = 0; i < t->len; i++) {
			if (i + 2 < t->len && !memcmp(t->text + i, "\xe2\x96\x81", 3)) {
				buf[n++] = ' ';
				i += 2;
			} else {
				buf[n++] = t->text[i];
			}
		}
		return n;
	default: /* control, unknown, unused: no text */
		return 0;
	}
}

struct writer {
	char *out;
	size_t cap, n;
	bool full;
};

static void put(struct writer *w, const char *s, size_t n)
{
	if (w->full || n > w->cap - w->n) {
		w->full = true;
		return;
	}
	memcpy(w->out + w->n, s, n);
	w->n += n;
}

static const char replacement[3] = { '\xef', '\xbf', '\xbd' }; /* U+FFFD */

static uint32_t seq_len(uint8_t lead)
{
	if (lead >= 0xC2 && lead <= 0xDF)
		return 2;
	if (lead >= 0xE0 && lead <= 0xEF)
		return 3;
	if (lead >= 0xF0 && lead <= 0xF4)
		return 4;
	return 0;
}

/* Whether b may follow the held bytes; the second byte's range excludes overlong forms,
 * surrogates and code points above U+10FFFF. */
static bool accepts(const struct hyd_detok *st, uint8_t b)
{
	uint8_t lo = 0x80, hi = 0xBF;

	if (st->n_pending == 1) {
		switch ((uint8_t)st->pending[0]) {
		case 0xE0: lo = 0xA0; break;
		case 0xED: hi = 0x9F; break;
		case 0xF0: lo = 0x90; break;
		case 0xF4: hi = 0x8F; break;
		default: break;
		}
	}
	return b >= lo && b <= hi;
}

static void feed(struct hyd_detok *st, struct writer *w, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t b = (uint8_t)s[i];

		if (st->n_pending) {
			if (accepts(st, b)) {
				st->pending[st->n_pending++] = b;
				if (st->n_pending == seq_len(st->pending[0])) {
					put(w, (const char *)st->pending, st->n_pending);
					st->n_pending = 0;
				}
				continue;
			}
			put(w, replacement, 3);
			st->n_pending = 0;
		}
		if (b < 0x80)
			put(w, (const char *)&b, 1);
		else if (seq_len(b))
			st->pending[st->n_pending++] = b;
		else
			put(w, replacement, 3);
	}
}

int hyd_detok_push(const struct hyd_tokenizer *tok, struct hyd_detok *st, int32_t id, char *out,
		   size_t cap)
{
	struct writer w = { out, cap, 0, false };
	struct hyd_detok next = *st;
	char small[256], *buf = small;
	size_t n;

	if (id < 0 || (uint32_t)id >= tok->n_vocab)
		return -EINVAL;
	if (tok->tokens[id].len > sizeof(small) && !(buf = hyd_malloc(tok->tokens[id].len)))
		return -ENOMEM;
	n = piece(tok, id, buf);
	next.n_tokens++;
	if (n && next.strip_leading_space) {
		next.strip_leading_space = false;
		feed(&next, &w, buf + (buf[0] == ' '), n - (buf[0] == ' '));
	} else {
		feed(&next, &w, buf, n);
	}
	if (buf != small)
		hyd_free(buf);
	if (w.full)
		return -ERANGE;
	*st = next;
	return (int)w.n;
}

int hyd_detok_flush(const struct hyd_tokenizer *tok, struct hyd_detok *st, char *out, size_t cap)
{
	if (!st->n_pending)
		return 0;
	if (cap < 3)
		return -ERANGE;
	memcpy(out, replacement, 3);
	st->n_pending = 0;
	return 3;
}
