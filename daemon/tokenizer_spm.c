/* SentencePiece-style tokenization as llama.cpp's llm_tokenizer_spm does it: start from
 * UTF-8 characters, repeatedly merge the adjacent pair whose concatenation is the
 * highest-scoring vocabulary token (ties: leftmost), then emit each piece, spelling pieces
 * outside the vocabulary as byte tokens. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "daemon/tokenizer_internal.h"
#include "engine/alloc.h"

struct sym {
	int32_t prev, next;
	size_t off, n; /* n == 0: merged into its left neighbour */
};

struct bigram {
	float score;
	int32_t left, right;
	size_t size; /* bytes of both symbols when queued; differs once either has grown */
};

struct heap {
	struct bigram *v;
	size_t n;
};

static bool before(const struct bigram *a, const struct bigram *b)
{
	return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(struct heap *h, struct bigram b)
{
	size_t i = h->n++;

	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!before(&b, &h->v[p]))
			break;
		h->v[i] = h->v[p];
		i = p;
	}
	h->v[i] = b;
}

static struct bigram heap_pop(struct heap *h)
{
	struct bigram top = h->v[0], last = h->v[--h->n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c]))
			c++;
		if (!before(&h->v[c], &last))
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

struct session {
	const struct hyd_tokenizer *tok;
	const char *s;
	struct sym *syms;
	struct heap heap;
};

static void try_add(struct session *ss, int32_t left, int32_t right)
{
	const struct sym *l, *r;
	int32_t id;

	if (left < 0 || right < 0)
		return;
	l = &ss->syms[left];
	r = &ss->syms[right];
	id = hyd__strmap_get(&ss->tok->by_text, ss->s + l->off, l->n + r->n);
	if (id < 0)
		return;
	heap_push(&ss->heap, (struct bigram){ ss->tok->tokens[id].score, left, right, l->n + r->n });
}

static int emit(struct session *ss, const struct sym *sym, struct hyd__tokvec *out)
{
	const struct hyd_tokenizer *tok = ss->tok;
	int32_t id = hyd__strmap_get(&tok->by_text, ss->s + sym->off, sym->n);
	int r;

	if (id >= 0)
		return hyd__tokvec_push(out, id);
	/* Only single characters can miss the vocabulary (merges always form tokens). */
	for (size_t i = 0; i < sym->n; i++) {
		id = tok->byte_token[(uint8_t)ss->s[sym->off + i]];
		if (id < 0)
			id = tok->unk;
		if (id >= 0 && (r = hyd__tokvec_push(out, id)) < 0)
			return r;
	}
	return 0;
}

int hyd__spm_tokenize(const struct hyd_tokenizer *tok, const char *text, size_t len,
		      bool prefix_space, struct hyd__tokvec *out)
{
	static const char space[3] = { '\xe2', '\x96', '\x81' }; /* U+2581 */
	struct session ss = { .tok = tok };
	size_t n = prefix_space ? 3 : 0, pos = 0, nsym = 0;
	char *s;
	int r = 0;

	for (size_t i = 0; i < len; i++)
		n += text[i] == ' ' ? 3 : 1;
	if (n == 0)
		return 0;
	if (n > INT32_MAX / 4)
		return -E2BIG;
	s = hyd_malloc(n);
	ss.syms = hyd_calloc(n, sizeof(*ss.syms));
	ss.heap.v = hyd_calloc(3 * n, sizeof(*ss.heap.v));
	if (!s || !ss.syms || !ss.heap.v) {
		r = -ENOMEM;
		goto out;
	}
	if (prefix_space) {
		memcpy(s, space, 3);
		pos = 3;
	}
	for (size_t i = 0; i < len; i++) {
		if (text[i] == ' ') {
			memcpy(s + pos, space, 3);
			pos += 3;
		} else {
			s[pos++] = text[i];
		}
	}
	ss.s = s;

	for (pos = 0; pos < n; nsym++) {
		size_t cl = hyd__utf8_len((uint8_t)s[pos]);
		if (cl > n - pos)
			cl = n - pos;
		ss.syms[nsym] = (struct sym){ (int32_t)nsym - 1, -1, pos, cl };
		pos += cl;
		if (pos < n)
			ss.syms[nsym].next = (int32_t)nsym + 1;
	}
	for (size_t i = 1; i < nsym; i++)
		try_add(&ss, (int32_t)i - 1, (int32_t)i);
	while (ss.heap.n) {
		struct bigram b = heap_pop(&ss.heap);
		struct sym *l = &ss.syms[b.left], *rt = &ss.syms[b.right];

		if (l->n == 0 || rt->n == 0 || l->n + rt->n != b.size)
			continue;
		l->n += rt->n;
		rt->n = 0;
		l->next = rt->next;
		if (rt->next >= 0)
			ss.syms[rt->next].prev = b.left;
		try_add(&ss, l->prev, b.left);
		try_add(&ss, b.left, l->next);
	}
	for (int32_t i = 0; i != -1; i = ss.syms[i].next)
		if ((r = emit(&ss, &ss.syms[i], out)) < 0)
			goto out;
out:
	hyd_free(s);
	hyd_free(ss.syms);
	hyd_free(ss.heap.v);
	return r;
}
