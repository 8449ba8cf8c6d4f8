/* Byte-level BPE (tokenizer.ggml.model = "gpt2") as llama.cpp's llm_tokenizer_bpe does it:
 * pre-tokenize into words, spell each word's UTF-8 bytes with GPT-2's byte-to-unicode
 * characters, then repeatedly apply the lowest-ranked merge (ties: leftmost). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/gguf.h"
#include "daemon/tokenizer_internal.h"
#include "engine/alloc.h"

static const struct {
	const char *name;
	enum hyd__pre pre;
} pre_names[] = {
	{ "default", HYD__PRE_DEFAULT },
	{ "gpt-2", HYD__PRE_GPT2 },
	{ "phi-2", HYD__PRE_GPT2 },
	{ "mpt", HYD__PRE_GPT2 },
	{ "olmo", HYD__PRE_GPT2 },
	{ "jais", HYD__PRE_GPT2 },
	{ "falcon", HYD__PRE_FALCON },
	{ "starcoder", HYD__PRE_STARCODER },
	{ "refact", HYD__PRE_STARCODER },
	{ "command-r", HYD__PRE_STARCODER },
	{ "smollm", HYD__PRE_STARCODER },
	{ "codeshell", HYD__PRE_STARCODER },
	{ "deepseek-coder", HYD__PRE_DEEPSEEK_CODER },
	{ "deepseek-llm", HYD__PRE_DEEPSEEK_LLM },
	{ "llama3", HYD__PRE_LLAMA3 },
	{ "llama-v3", HYD__PRE_LLAMA3 },
	{ "llama-bpe", HYD__PRE_LLAMA3 },
	{ "falcon3", HYD__PRE_LLAMA3 },
	{ "falcon-h1", HYD__PRE_LLAMA3 },
	{ "pixtral", HYD__PRE_LLAMA3 },
	{ "lfm2", HYD__PRE_LLAMA3 },
	{ "qwen2", HYD__PRE_QWEN2 },
	{ "deepseek-r1-qwen", HYD__PRE_QWEN2 },
};

static void byte_map_init(struct hyd_tokenizer *tok)
{
	uint32_t extra = 0;

	for (size_t i = 0; i < sizeof(tok->cp_to_byte) / sizeof(tok->cp_to_byte[0]); i++)
		tok->cp_to_byte[i] = -1;
	/* Printable Latin-1 bytes stand for themselves; the rest are moved past U+00FF so
	 * every byte is a visible character. */
	for (uint32_t b = 0; b < 256; b++) {
		bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
				 (b >= 0xAE && b <= 0xFF);
		uint32_t cp = printable ? b : 256 + extra++;
		tok->byte_to_cp[b] = cp;
		tok->cp_to_byte[cp] = (int16_t)b;
	}
}

static void set_err(char *err, size_t errlen, const char *msg, const char *arg, size_t arglen)
{
	if (err && errlen)
		snprintf(err, errlen, "%s '%.*s'", msg, (int)(arglen > 64 ? 64 : arglen), arg);
}

int hyd__bpe_init(struct hyd_tokenizer *tok, const struct hyd_gguf *g, char *err, size_t errlen)
{
	struct hyd_gguf_arr merges;
	struct hyd_str pre;
	uint64_t total = 0;
	size_t pos = 0;
	int r;

	tok->pre = HYD__PRE_DEFAULT;
	r = hyd_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
	if (r < 0 && r != -ENOENT) {
		set_err(err, errlen, "tokenizer.ggml.pre: not a string", "", 0);
		return -EINVAL;
	}
	if (r == 0) {
		size_t i;
		for (i = 0; i < sizeof(pre_names) / sizeof(pre_names[0]); i++)
			if (hyd_str_eq(pre, pre_names[i].name))
				break;
		if (i == sizeof(pre_names) / sizeof(pre_names[0])) {
			set_err(err, errlen, "tokenizer.ggml.pre: unsupported pre-tokenizer", pre.p,
				pre.n);
			return -ENOTSUP;
		}
		tok->pre = pre_names[i].pre;
	}
	if (tok->pre == HYD__PRE_LLAMA3) {
		/* llama.cpp's defaults for these; the GGUF's keys still override them */
		tok->ignore_merges = true;
		tok->add_bos = true;
	}

	if (hyd_gguf_get_arr(g, "tokenizer.ggml.merges", &merges) < 0 ||
	    merges.elem_type != HYD_GGUF_STRING || merges.n > INT32_MAX / 2) {
		set_err(err, errlen, "tokenizer.ggml.merges: missing or not strings", "", 0);
		return -EINVAL;
	}
	for (uint64_t i = 0; i < merges.n; i++) {
		struct hyd_str s;
		if (hyd_gguf_arr_str(&merges, i, &s) < 0 || s.n > UINT32_MAX / 2) {
			set_err(err, errlen, "tokenizer.ggml.merges: bad string", "", 0);
			return -EINVAL;
		}
		total += s.n;
	}
	tok->merge_pool = hyd_malloc(total ? total : 1);
	if (!tok->merge_pool)
		return -ENOMEM;
	r = hyd__strmap_init(&tok->merges, (uint32_t)merges.n);
	if (r < 0)
		return r;
	for (uint64_t i = 0; i < merges.n; i++) {
		struct hyd_str s;
		const char *sp;

		hyd_gguf_arr_str(&merges, i, &s);
		/* "left right", split at the first space after the first byte */
		sp = s.n > 1 ? memchr(s.p + 1, ' ', s.n - 1) : NULL;
		if (!sp)
			continue;
		memcpy(tok->merge_pool + pos, s.p, s.n);
		/* The first occurrence of a pair keeps its rank. */
		if (hyd__strmap_get(&tok->merges, tok->merge_pool + pos, s.n) < 0 &&
		    (r = hyd__strmap_put(&tok->merges, tok->merge_pool + pos, (uint32_t)s.n,
					 (int32_t)i)) < 0)
			return r;
		pos += s.n;
	}
	byte_map_init(tok);
	return 0;
}

struct sym {
	int32_t prev, next;
	size_t off, n;
};

struct bigram {
	int32_t rank, left, right;
	size_t size;
};

static bool before(const struct bigram *a, const struct bigram *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

struct session {
	const struct hyd_tokenizer *tok;
	const char *s;
	struct sym *syms;
	struct bigram *heap;
	size_t n_heap;
	char *key; /* "left right" scratch */
};

static void heap_push(struct session *ss, struct bigram b)
{
	size_t i = ss->n_heap++;

	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!before(&b, &ss->heap[p]))
			break;
		ss->heap[i] = ss->heap[p];
		i = p;
	}
	ss->heap[i] = b;
}

static struct bigram heap_pop(struct session *ss)
{
	struct bigram top = ss->heap[0], last = ss->heap[--ss->n_heap];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= ss->n_heap)
			break;
		if (c + 1 < ss->n_heap && before(&ss->heap[c + 1], &ss->heap[c]))
			c++;
		if (!before(&ss->heap[c], &last))
			break;
		ss->heap[i] = ss->heap[c];
		i = c;
	}
	if (ss->n_heap)
		ss->heap[i] = last;
	return top;
}

static void try_add(struct session *ss, int32_t left, int32_t right)
{
	const struct sym *l, *r;
	int32_t rank;

	if (left < 0 || right < 0)
		return;
	l = &ss->syms[left];
	r = &ss->syms[right];
	memcpy(ss->key, ss->s + l->off, l->n);
	ss->key[l->n] = ' ';
	memcpy(ss->key + l->n + 1, ss->s + r->off, r->n);
	rank = hyd__strmap_get(&ss->tok->merges, ss->key, l->n + 1 + r->n);
	if (rank < 0)
		return;
	heap_push(ss, (struct bigram){ rank, left, right, l->n + r->n });
}

/* One pre-tokenized word, already in byte-to-unicode spelling: s[0, n). */
static int bpe_word(struct session *ss, const char *s, size_t n, struct hyd__tokvec *out)
{
	const struct hyd_tokenizer *tok = ss->tok;
	size_t nsym = 0;
	int32_t id;
	int r;

	if (tok->ignore_merges && (id = hyd__strmap_get(&tok->by_text, s, n)) >= 0)
		return hyd__tokvec_push(out, id);
	ss->s = s;
	ss->n_heap = 0;
	for (size_t pos = 0; pos < n; nsym++) {
		size_t cl = hyd__utf8_len((uint8_t)s[pos]);
		if (cl > n - pos)
			cl = n - pos;
		ss->syms[nsym] = (struct sym){ (int32_t)nsym - 1, -1, pos, cl };
		pos += cl;
		if (pos < n)
			ss->syms[nsym].next = (int32_t)nsym + 1;
	}
	for (size_t i = 1; i < nsym; i++)
		try_add(ss, (int32_t)i - 1, (int32_t)i);
	while (ss->n_heap) {
		struct bigram b = heap_pop(ss);
		struct sym *l = &ss->syms[b.left], *rt = &ss->syms[b.right];

		if (l->n == 0 || rt->n == 0 || l->n + rt->n != b.size)
			continue;
		l->n += rt->n;
		rt->n = 0;
		l->next = rt->next;
		if (rt->next >= 0)
			ss->syms[rt->next].prev = b.left;
		try_add(ss, l->prev, b.left);
		try_add(ss, b.left, l->next);
	}
	for (size_t i = 0; i < nsym; i++) {
		const struct sym *sym = &ss->syms[i];
		if (!sym->n)
			continue;
		id = hyd__strmap_get(&tok->by_text, s + sym->off, sym->n);
		if (id >= 0) {
			if ((r = hyd__tokvec_push(out, id)) < 0)
				return r;
			continue;
		}
		/* llama.cpp's fallback: single bytes of the spelling that are tokens */
		for (size_t j = 0; j < sym->n; j++) {
			id = hyd__strmap_get(&tok->by_text, s + sym->off + j, 1);
			if (id >= 0 && (r = hyd__tokvec_push(out, id)) < 0)
				return r;
		}
	}
	return 0;
}

int hyd__bpe_tokenize(const struct hyd_tokenizer *tok, const char *text, size_t len,
		      struct hyd__tokvec *out)
{
	struct session ss = { .tok = tok };
	uint32_t *cps = NULL, *words = NULL;
	size_t n_cps, n_words, longest = 0, at = 0;
	char *buf = NULL;
	int r;

	if (len > INT32_MAX / 16)
		return -E2BIG;
	if ((r = hyd__utf8_decode(text, len, &cps, &n_cps)) < 0)
		return r;
	if ((r = hyd__pre_split(tok->pre, cps, n_cps, &words, &n_words)) < 0)
		goto out;
	for (size_t w = 0; w < n_words; w++)
		if (words[w] > longest)
			longest = words[w];
	/* A code point is at most 4 UTF-8 bytes, each spelled with at most 2 bytes. */
	buf = hyd_malloc(8 * longest + 1);
	ss.key = hyd_malloc(8 * longest + 2);
	ss.syms = hyd_calloc(8 * longest + 1, sizeof(*ss.syms));
	ss.heap = hyd_calloc(3 * (8 * longest + 1), sizeof(*ss.heap));
	if (!buf || !ss.key || !ss.syms || !ss.heap) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t w = 0; w < n_words; w++) {
		size_t n = 0;
		for (size_t i = at; i < at + words[w]; i++) {
			char u[4];
			size_t k = hyd__utf8_encode(cps[i], u);
			for (size_t j = 0; j < k; j++)
				n += hyd__utf8_encode(tok->byte_to_cp[(uint8_t)u[j]], buf + n);
		}
		at += words[w];
		if ((r = bpe_word(&ss, buf, n, out)) < 0)
			goto out;
	}
out:
	hyd_free(cps);
	hyd_free(words);
	hyd_free(buf);
	hyd_free(ss.key);
	hyd_free(ss.syms);
	hyd_free(ss.heap);
	return r;
}

size_t hyd__bpe_decode(const struct hyd_tokenizer *tok, int32_t id, char *buf)
{
	const struct hyd__token *t = &tok->tokens[id];
	const uint8_t *s = (const uint8_t *)t->text;
	size_t n = 0, i = 0;

	while (i < t->len) {
		size_t cl = hyd__utf8_len(s[i]);
		uint32_t cp;

		if (cl > t->len - i)
			cl = t->len - i;
		cp = cl == 1 ? s[i] : s[i] & (0xFF >> (cl + 1));
		for (size_t j = 1; j < cl; j++)
			cp = (cp << 6) | (s[i + j] & 0x3F);
		if (cp < sizeof(tok->cp_to_byte) / sizeof(tok->cp_to_byte[0]) &&
		    tok->cp_to_byte[cp] >= 0) {
			buf[n++] = (char)tok->cp_to_byte[cp];
		} else {
			/* not a byte character: keep the text as it is */
			memcpy(buf + n, s + i, cl);
			n += cl;
		}
		i += cl;
	}
	return n;
}
