/* Loading a GGUF vocabulary and the algorithm-independent half of tokenization: special-token
 * partitioning and BOS/EOS.  The behaviour follows llama.cpp's llama_vocab, since GGUF
 * models are tokenized by it and token ids must match it exactly. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/gguf.h"
#include "daemon/tokenizer.h"
#include "daemon/tokenizer_internal.h"
#include "engine/alloc.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ string map */

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 0x100000001b3ull;
	}
	return h ^ (h >> 29);
}

int hyd__strmap_init(struct hyd__strmap *m, uint32_t max_entries)
{
	uint32_t cap = 16;

	memset(m, 0, sizeof(*m));
	if (max_entries > (1u << 29))
		return -EINVAL;
	while (cap < max_entries * 2u)
		cap <<= 1;
	m->slots = hyd_calloc(cap, sizeof(*m->slots));
	m->keys = hyd_calloc(max_entries ? max_entries : 1, sizeof(*m->keys));
	m->lens = hyd_calloc(max_entries ? max_entries : 1, sizeof(*m->lens));
	m->vals = hyd_calloc(max_entries ? max_entries : 1, sizeof(*m->vals));
	if (!m->slots || !m->keys || !m->lens || !m->vals) {
		hyd__strmap_fini(m);
		return -ENOMEM;
	}
	m->cap = max_entries;
	m->mask = cap - 1;
	return 0;
}

void hyd__strmap_fini(struct hyd__strmap *m)
{
	hyd_free(m->slots);
	hyd_free(m->keys);
	hyd_free(m->lens);
	hyd_free(m->vals);
	memset(m, 0, sizeof(*m));
}

static uint32_t *strmap_slot(const struct hyd__strmap *m, const char *key, size_t len)
{
	uint32_t i = (uint32_t)hash_bytes(key, len) & m->mask;

	for (;; i = (i + 1) & m->mask) {
		uint32_t e = m->slots[i];
		if (!e)
			return &m->slots[i];
		e--;
		if (m->lens[e] == len && !memcmp(m->keys[e], key, len))
			return &m->slots[i];
	}
}

int hyd__strmap_put(struct hyd__strmap *m, const char *key, uint32_t len, int32_t val)
{
	uint32_t *slot = strmap_slot(m, key, len);

	if (*slot) {
		m->vals[*slot - 1] = val;
		return 0;
	}
	if (m->n >= m->cap)
		return -ENOSPC;
	m->keys[m->n] = key;
	m->lens[m->n] = len;
	m->vals[m->n] = val;
	*slot = ++m->n;
	return 0;
}

int32_t hyd__strmap_get(const struct hyd__strmap *m, const char *key, size_t len)
{
	uint32_t e;

	if (!m->slots || len > UINT32_MAX)
		return -1;
	e = *strmap_slot(m, key, len);
	return e ? m->vals[e - 1] : -1;
}

int hyd__tokvec_push(struct hyd__tokvec *tv, int32_t id)
{
	if (tv->n == tv->cap) {
		size_t cap = tv->cap ? tv->cap * 2 : 64;
		int32_t *v = hyd_realloc(tv->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		tv->v = v;
		tv->cap = cap;
	}
	tv->v[tv->n++] = id;
	return 0;
}

/* ------------------------------------------------------------------ loading */

/* Special ids: absent keeps the default; out of range (e.g. 0xFFFFFFFF) means none. */
static int read_id(const struct hyd_gguf *g, const char *key, uint32_t n_vocab, int32_t *id,
		   char *err, size_t errlen)
{
	uint64_t v;
	int r = hyd_gguf_get_u64(g, key, &v);

	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		set_err(err, errlen, "%s: not an unsigned integer", key);
		return -EINVAL;
	}
	*id = v < n_vocab ? (int32_t)v : -1;
	return 0;
}

static int read_bool(const struct hyd_gguf *g, const char *key, bool *b, char *err,
		     size_t errlen)
{
	int r = hyd_gguf_get_bool(g, key, b);

	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		set_err(err, errlen, "%s: not a bool", key);
		return -EINVAL;
	}
	return 0;
}

static int read_vocab(struct hyd_tokenizer *tok, const struct hyd_gguf *g, char *err,
		      size_t errlen)
{
	struct hyd_gguf_arr toks, scores, types;
	bool have_scores, have_types;
	uint64_t total = 0;
	size_t pos = 0;
	int r;

	if (hyd_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) < 0 ||
	    toks.elem_type != HYD_GGUF_STRING || toks.n == 0 || toks.n > (1u << 29)) {
		set_err(err, errlen, "tokenizer.ggml.tokens: missing, empty, too long or not strings");
		return -EINVAL;
	}
	tok->n_vocab = (uint32_t)toks.n;
	r = hyd_gguf_get_arr(g, "tokenizer.ggml.scores", &scores);
	have_scores = r == 0;
	if ((r < 0 && r != -ENOENT) ||
	    (have_scores && (scores.n != toks.n || (scores.elem_type != HYD_GGUF_F32 &&
						    scores.elem_type != HYD_GGUF_F64)))) {
		set_err(err, errlen, "tokenizer.ggml.scores: not %u floats", tok->n_vocab);
		return -EINVAL;
	}
	r = hyd_gguf_get_arr(g, "tokenizer.ggml.token_type", &types);
	have_types = r == 0;
	if ((r < 0 && r != -ENOENT) || (have_types && types.n != toks.n)) {
		set_err(err, errlen, "tokenizer.ggml.token_type: not %u integers", tok->n_vocab);
		return -EINVAL;
	}

	tok->tokens = hyd_calloc(tok->n_vocab, sizeof(*tok->tokens));
	if (!tok->tokens)
		return -ENOMEM;
	for (uint32_t i = 0; i < tok->n_vocab; i++) {
		struct hyd_str s;
		if (hyd_gguf_arr_str(&toks, i, &s) < 0 || s.n > UINT32_MAX / 2) {
			set_err(err, errlen, "tokenizer.ggml.tokens[%u]: bad string", i);
			return -EINVAL;
		}
		total += s.n + 1;
	}
	tok->pool = hyd_malloc(total);
	if (!tok->pool)
		return -ENOMEM;
	r = hyd__strmap_init(&tok->by_text, tok->n_vocab);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < tok->n_vocab; i++) {
		struct hyd__token *t = &tok->tokens[i];
		struct hyd_str s;
		int64_t type = HYD__TT_NORMAL;

		hyd_gguf_arr_str(&toks, i, &s);
		memcpy(tok->pool + pos, s.p, s.n);
		tok->pool[pos + s.n] = '\0';
		t->text = tok->pool + pos;
		t->len = (uint32_t)s.n;
		pos += s.n + 1;
		if (have_scores && hyd_gguf_arr_f32(&scores, i, &t->score) < 0) {
			set_err(err, errlen, "tokenizer.ggml.scores[%u]: not a float", i);
			return -EINVAL;
		}
		if (have_types && (hyd_gguf_arr_i64(&types, i, &type) < 0 || type < 0 ||
				   type > HYD__TT_BYTE)) {
			set_err(err, errlen, "tokenizer.ggml.token_type[%u]: bad type", i);
			return -EINVAL;
		}
		t->type = (uint8_t)type;
		r = hyd__strmap_put(&tok->by_text, t->text, t->len, (int32_t)i);
		if (r < 0)
			return r;
	}
	return 0;
}

static int cmp_special(const void *a, const void *b, void *arg)
{
	const struct hyd_tokenizer *tok = arg;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	uint32_t lx = tok->tokens[x].len, ly = tok->tokens[y].len;

	if (lx != ly)
		return lx > ly ? -1 : 1;
	return x < y ? -1 : x > y;
}

static bool name_has(const char *lower, const char *needle)
{
	return strstr(lower, needle) != NULL;
}

/* llama.cpp strips whitespace around special tokens for Phi-3 by model name, since the GGUF
 * does not record the tokenizer's lstrip/rstrip flags. */
static void set_strip_flags(struct hyd_tokenizer *tok, const struct hyd_gguf *g)
{
	static const char *const keep[] = { "<unk>", "<s>", "<|endoftext|>" };
	struct hyd_str name;
	char lower[128];
	int32_t id;
	size_t n;

	if (hyd_gguf_get_str(g, "general.name", &name) < 0)
		return;
	n = name.n < sizeof(lower) - 1 ? name.n : sizeof(lower) - 1;
	for (size_t i = 0; i < n; i++) {
		char c = name.p[i];
		lower[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : (c ? c : ' ');
	}
	lower[n] = '\0';
	if (!name_has(lower, "phi-3") && !name_has(lower, "phi3"))
		return;
	for (uint32_t i = 0; i < tok->n_specials; i++)
		tok->tokens[tok->specials[i]].rstrip = true;
	id = hyd__strmap_get(&tok->by_text, "</s>", 4);
	if (id >= 0)
		tok->tokens[id].rstrip = true;
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		id = hyd__strmap_get(&tok->by_text, keep[i], strlen(keep[i]));
		if (id >= 0)
			tok->tokens[id].rstrip = false;
	}
}

static bool is_special_type(uint8_t type)
{
	return type == HYD__TT_CONTROL || type == HYD__TT_USER || type == HYD__TT_UNKNOWN;
}

static int build_specials(struct hyd_tokenizer *tok)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < tok->n_vocab; i++)
		n += is_special_type(tok->tokens[i].type) && tok->tokens[i].len > 0;
	tok->specials = hyd_calloc(n ? n : 1, sizeof(*tok->specials));
	if (!tok->specials)
		return -ENOMEM;
	for (uint32_t i = 0; i < tok->n_vocab; i++)
		if (is_special_type(tok->tokens[i].type) && tok->tokens[i].len > 0)
			tok->specials[tok->n_specials++] = (int32_t)i;
	qsort_r(tok->specials, tok->n_specials, sizeof(*tok->specials), cmp_special, tok);
	return 0;
}

/* End-of-generation: the GGUF's eos/eot/eom ids plus the end-of-turn markers llama.cpp
 * recognises by text, which many GGUFs do not list under any key. */
static int build_eog(struct hyd_tokenizer *tok)
{
	static const char *const names[] = {
		"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
		"<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
	};
	int32_t cand[3 + sizeof(names) / sizeof(names[0])];
	size_t n = 0;

	cand[n++] = tok->eos;
	cand[n++] = tok->eot;
	cand[n++] = tok->eom;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int32_t id = hyd__strmap_get(&tok->by_text, names[i], strlen(names[i]));
		if (id >= 0 && (tok->tokens[id].type == HYD__TT_CONTROL ||
				tok->tokens[id].type == HYD__TT_USER))
			cand[n++] = id;
	}
	tok->eog = hyd_calloc(n, sizeof(*tok->eog));
	if (!tok->eog)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		bool dup = cand[i] < 0;
		for (uint32_t j = 0; j < tok->n_eog && !dup; j++)
			dup = tok->eog[j] == cand[i];
		if (!dup)
			tok->eog[tok->n_eog++] = cand[i];
	}
	return 0;
}

static int spm_init(struct hyd_tokenizer *tok)
{
	static const char hex[] = "0123456789ABCDEF";

	for (int b = 0; b < 256; b++) {
		char name[7] = { '<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0 };
		char raw[1] = { (char)b };
		int32_t id = hyd__strmap_get(&tok->by_text, name, 6);
		/* Vocabularies without byte tokens fall back to the byte as a one-byte token. */
		tok->byte_token[b] = id >= 0 ? id : hyd__strmap_get(&tok->by_text, raw, 1);
	}
	for (uint32_t i = 0; i < tok->n_vocab; i++) {
		struct hyd__token *t = &tok->tokens[i];
		if (t->type == HYD__TT_BYTE && t->len == 6 && !memcmp(t->text, "<0x", 3))
			t->byte = (uint8_t)strtoul(t->text + 3, NULL, 16);
	}
	return 0;
}

int hyd_tokenizer_load(const struct hyd_gguf *g, struct hyd_tokenizer **ret_tok, char *err,
		       size_t errlen)
{
	struct hyd_tokenizer *tok;
	struct hyd_str model;
	int r;

	if (hyd_gguf_get_str(g, "tokenizer.ggml.model", &model) < 0) {
		set_err(err, errlen, "tokenizer.ggml.model: missing or not a string");
		return -EINVAL;
	}
	tok = hyd_calloc(1, sizeof(*tok));
	if (!tok)
		return -ENOMEM;
	if (hyd_str_eq(model, "llama")) {
		tok->kind = HYD__TOK_SPM;
		tok->bos = 1;
		tok->eos = 2;
		tok->unk = 0;
		tok->add_bos = true;
		tok->add_space_prefix = true;
	} else if (hyd_str_eq(model, "gpt2")) {
		tok->kind = HYD__TOK_BPE;
		tok->bos = 11;
		tok->eos = 11;
		tok->unk = -1;
	} else {
		set_err(err, errlen, "tokenizer.ggml.model: unsupported tokenizer '%.*s'",
			(int)(model.n > 64 ? 64 : model.n), model.p);
		hyd_free(tok);
		return -ENOTSUP;
	}
	tok->eot = -1;
	tok->eom = -1;

	r = read_vocab(tok, g, err, errlen);
	if (r < 0)
		goto fail;
	if (tok->bos >= (int32_t)tok->n_vocab)
		tok->bos = -1;
	if (tok->eos >= (int32_t)tok->n_vocab)
		tok->eos = -1;
	if (tok->unk >= (int32_t)tok->n_vocab)
		tok->unk = -1;
	if ((r = read_id(g, "tokenizer.ggml.bos_token_id", tok->n_vocab, &tok->bos, err, errlen)) ||
	    (r = read_id(g, "tokenizer.ggml.eos_token_id", tok->n_vocab, &tok->eos, err, errlen)) ||
	    (r = read_id(g, "tokenizer.ggml.unknown_token_id", tok->n_vocab, &tok->unk, err,
			 errlen)) ||
	    (r = read_id(g, "tokenizer.ggml.eot_token_id", tok->n_vocab, &tok->eot, err, errlen)) ||
	    (r = read_id(g, "tokenizer.ggml.eom_token_id", tok->n_vocab, &tok->eom, err, errlen)))
		goto fail;
	if (tok->kind == HYD__TOK_BPE) {
		/* May set pre-tokenizer defaults for add_bos, so it comes before the keys. */
		r = hyd__bpe_init(tok, g, err, errlen);
	} else {
		r = spm_init(tok);
	}
	if (r < 0)
		goto fail;
	if ((r = read_bool(g, "tokenizer.ggml.add_bos_token", &tok->add_bos, err, errlen)) ||
	    (r = read_bool(g, "tokenizer.ggml.add_eos_token", &tok->add_eos, err, errlen)) ||
	    (r = read_bool(g, "tokenizer.ggml.add_space_prefix", &tok->add_space_prefix, err,
			   errlen)))
		goto fail;
	r = build_specials(tok);
	if (r < 0)
		goto fail;
	set_strip_flags(tok, g);
	r = build_eog(tok);
	if (r < 0)
		goto fail;
	/* A piece is never longer than its token's text (U+2581 becomes one space, a GPT-2
	 * byte character one byte); in the worst case every byte of it and a held partial
	 * character come out as U+FFFD (3 bytes each). */
	for (uint32_t i = 0; i < tok->n_vocab; i++)
		if (tok->tokens[i].len > tok->max_piece)
			tok->max_piece = tok->tokens[i].len;
	tok->max_piece = 3 * (tok->max_piece + 1);
	*ret_tok = tok;
	return 0;
fail:
	if (r == -ENOMEM)
		set_err(err, errlen, "tokenizer: out of memory");
	hyd_tokenizer_free(tok);
	return r;
}

void hyd_tokenizer_free(struct hyd_tokenizer *tok)
{
	if (!tok)
		return;
	hyd__strmap_fini(&tok->by_text);
	hyd__strmap_fini(&tok->merges);
	hyd_free(tok->merge_pool);
	hyd_free(tok->tokens);
	hyd_free(tok->pool);
	hyd_free(tok->specials);
	hyd_free(tok->eog);
	hyd_free(tok);
}

uint32_t hyd_tokenizer_n_vocab(const struct hyd_tokenizer *tok)
{
	return tok->n_vocab;
}

int32_t hyd_tokenizer_bos(const struct hyd_tokenizer *tok)
{
	return tok->bos;
}

int32_t hyd_tokenizer_eos(const struct hyd_tokenizer *tok)
{
	return tok->eos;
}

bool hyd_tokenizer_add_bos(const struct hyd_tokenizer *tok)
{
	return tok->add_bos && tok->bos >= 0;
}

bool hyd_tokenizer_is_eog(const struct hyd_tokenizer *tok, int32_t id)
{
	for (uint32_t i = 0; i < tok->n_eog; i++)
		if (tok->eog[i] == id)
			return true;
	return false;
}

int hyd_tokenizer_token_text(const struct hyd_tokenizer *tok, int32_t id, const char **ret_text,
			     size_t *ret_len)
{
	if (id < 0 || (uint32_t)id >= tok->n_vocab)
		return -EINVAL;
	*ret_text = tok->tokens[id].text;
	*ret_len = tok->tokens[id].len;
	return 0;
}

size_t hyd_tokenizer_max_piece(const struct hyd_tokenizer *tok)
{
	return tok->max_piece;
}

/* ------------------------------------------------------------------ tokenize */

struct frag {
	int32_t id; /* >= 0: a special token; -1: raw text [off, off + len) */
	size_t off, len;
};

struct fragvec {
	struct frag *v;
	size_t n, cap;
};

static int frag_push(struct fragvec *fv, int32_t id, size_t off, size_t len)
{
	if (fv->n == fv->cap) {
		size_t cap = fv->cap ? fv->cap * 2 : 16;
		struct frag *v = hyd_realloc(fv->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		fv->v = v;
		fv->cap = cap;
	}
	fv->v[fv->n++] = (struct frag){ id, off, len };
	return 0;
}

static bool c_isspace(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Splits raw fragments at every occurrence of one special token, left to right. */
static int split_at(const struct hyd_tokenizer *tok, int32_t id, const char *text,
		    const struct fragvec *in, struct fragvec *out)
{
	const struct hyd__token *t = &tok->tokens[id];

	out->n = 0;
	for (size_t i = 0; i < in->n; i++) {
		struct frag f = in->v[i];
		size_t base = f.off, blen = f.len;
		const char *m;
		int r;

		if (f.id >= 0) {
			if ((r = frag_push(out, f.id, f.off, f.len)) < 0)
				return r;
			continue;
		}
		while (blen && (m = memmem(text + base, blen, t->text, t->len))) {
			size_t mpos = (size_t)(m - text), left = mpos - base;
			size_t rpos = mpos + t->len, rlen = base + blen - rpos;

			if (t->lstrip)
				while (left && c_isspace(text[base + left - 1]))
					left--;
			if (left && (r = frag_push(out, -1, base, left)) < 0)
				return r;
			if ((r = frag_push(out, id, 0, 0)) < 0)
				return r;
			if (t->rstrip)
				while (rlen && c_isspace(text[rpos])) {
					rpos++;
					rlen--;
				}
			base = rpos;
			blen = rlen;
		}
		if (blen && (r = frag_push(out, -1, base, blen)) < 0)
			return r;
	}
	return 0;
}

/* llama.cpp's tokenizer_st_partition: user-defined tokens are always matched as text (as
 * Hugging Face tokenizers do for added tokens); control and unknown ones only when asked. */
static int partition(const struct hyd_tokenizer *tok, const char *text, size_t len,
		     bool parse_special, struct fragvec *ret)
{
	struct fragvec a = { 0 }, b = { 0 };
	int r = 0;

	if (len && (r = frag_push(&a, -1, 0, len)) < 0)
		goto out;
	for (uint32_t i = 0; i < tok->n_specials && a.n; i++) {
		int32_t id = tok->specials[i];
		const struct hyd__token *t = &tok->tokens[id];
		struct fragvec tmp;
		bool any = false;

		if (!parse_special && t->type != HYD__TT_USER)
			continue;
		for (size_t j = 0; j < a.n && !any; j++)
			any = a.v[j].id < 0 && memmem(text + a.v[j].off, a.v[j].len, t->text, t->len);
		if (!any)
			continue;
		if ((r = split_at(tok, id, text, &a, &b)) < 0)
			goto out;
		tmp = a;
		a = b;
		b = tmp;
	}
	*ret = a;
	a.v = NULL;
out:
	hyd_free(a.v);
	hyd_free(b.v);
	return r;
}

int hyd_tokenizer_encode(const struct hyd_tokenizer *tok, const char *text, size_t len, unsigned flags,
		 int32_t **ret_tokens, size_t *ret_n)
{
	struct hyd__tokvec out = { 0 };
	struct fragvec frags = { 0 };
	bool add_special = flags & HYD_TOK_ADD_SPECIAL;
	bool prev_special = true; /* the dummy space prefix goes before the first text */
	int r;

	if (!text && len)
		return -EINVAL;
	r = partition(tok, text, len, flags & HYD_TOK_PARSE_SPECIAL, &frags);
	if (r < 0)
		goto out;
	if (add_special && tok->add_bos && tok->bos >= 0 && (r = hyd__tokvec_push(&out, tok->bos)) < 0)
		goto out;
	for (size_t i = 0; i < frags.n; i++) {
		const struct frag *f = &frags.v[i];
		if (f->id >= 0) {
			r = hyd__tokvec_push(&out, f->id);
			prev_special = true;
		} else if (tok->kind == HYD__TOK_SPM) {
			r = hyd__spm_tokenize(tok, text + f->off, f->len,
					      tok->add_space_prefix && prev_special, &out);
			prev_special = false;
		} else {
			r = hyd__bpe_tokenize(tok, text + f->off, f->len, &out);
		}
		if (r < 0)
			goto out;
	}
	if (add_special && tok->add_eos && tok->eos >= 0 && (r = hyd__tokvec_push(&out, tok->eos)) < 0)
		goto out;
	/* An empty result is still an allocation, so callers can always hyd_free() it. */
	if (!out.v && !(out.v = hyd_malloc(sizeof(*out.v)))) {
		r = -ENOMEM;
		goto out;
	}
	*ret_tokens = out.v;
	*ret_n = out.n;
	out.v = NULL;
out:
	hyd_free(out.v);
	hyd_free(frags.v);
	return r;
}
