/* See local_seq.h. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "daemon/local_seq.h"
#include "engine/alloc.h"

/* A local sequence dies with its process, so it has no crash to survive: by default its steps
 * rewrite the current copy of double-buffered (SSM) state in place (HYD_SEQ_STATE_IN_PLACE),
 * which spares streaming the second copy (granite-4.0-h-350m Q4_K_M one-thread decode 1.05x,
 * docs/PERFORMANCE.md); hyd_local_seq_set_in_place(s, false) gives the daemon's two-copy steps.
 *
 * Every layer's constant-size state (SSM states, both copies, and convolution tails) lies in
 * one region, each layer's part 64-byte aligned.  A region of at least 2 MiB is 2 MiB-aligned
 * and asked for transparent huge pages: a Mamba-2 model streams all of it every token
 * (granite-4.0-h-350m: 2 x 22 MB), and in 4 KiB pages that is a TLB miss every 4 KiB
 * (one-thread decode of granite-h-350m Q4_K_M, alternating runs: +1.8 %,
 * docs/PERFORMANCE.md). */
#define FIXED_ALIGN 64
#define HUGE_BYTES ((size_t)2 << 20)

struct local_layer {
	void *fixed; /* inside hyd_local_seq.fixed_region */
	void **pages;
	uint32_t n_pages;
	uint32_t cap_pages;
};

struct hyd_local_seq {
	const struct hyd_model *m;
	uint32_t n_layer;
	bool broken; /* a step failed part-way with the state rewritten in place */
	void *fixed_region;
	struct local_layer *ll;
	struct hyd_layer_state *ls;
	struct hyd_seq_view view;
};

void hyd_local_seq_free(struct hyd_local_seq *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; s->ll && i < s->n_layer; i++) {
		for (uint32_t p = 0; p < s->ll[i].n_pages; p++)
			hyd_free(s->ll[i].pages[p]);
		hyd_free(s->ll[i].pages);
	}
	hyd_free(s->fixed_region);
	hyd_free(s->ll);
	hyd_free(s->ls);
	hyd_free(s);
}

static size_t fixed_span(size_t bytes)
{
	return (bytes + FIXED_ALIGN - 1) & ~(size_t)(FIXED_ALIGN - 1);
}

/* The region for all layers' fixed state, carved up; -ENOMEM */
static int alloc_fixed(struct hyd_local_seq *s)
{
	size_t total = 0;
	for (uint32_t i = 0; i < s->n_layer; i++)
		total += fixed_span(hyd_model_layer_layout(s->m, i)->fixed_bytes);
	if (!total)
		return 0;
	if (total >= HUGE_BYTES) {
		total = (total + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
		s->fixed_region = hyd_aligned_alloc(HUGE_BYTES, total);
		/* before the first touch; where THP is off or refused the pages stay small */
		if (s->fixed_region)
			(void)madvise(s->fixed_region, total, MADV_HUGEPAGE);
	} else {
		s->fixed_region = hyd_aligned_alloc(FIXED_ALIGN, total);
	}
	if (!s->fixed_region)
		return -ENOMEM;
	char *at = s->fixed_region;
	for (uint32_t i = 0; i < s->n_layer; i++) {
		const uint64_t bytes = hyd_model_layer_layout(s->m, i)->fixed_bytes;
		if (bytes) {
			s->ll[i].fixed = at;
			at += fixed_span(bytes);
		}
	}
	return 0;
}

int hyd_local_seq_new(const struct hyd_model *m, struct hyd_local_seq **ret_seq)
{
	struct hyd_local_seq *s = hyd_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->m = m;
	s->n_layer = hyd_model_n_layer(m);
	s->ll = hyd_calloc(s->n_layer, sizeof(*s->ll));
	s->ls = hyd_calloc(s->n_layer, sizeof(*s->ls));
	void **fixed = hyd_calloc(s->n_layer, sizeof(void *));
	if (!s->ll || !s->ls || !fixed || alloc_fixed(s))
		goto nomem;
	for (uint32_t i = 0; i < s->n_layer; i++) {
		fixed[i] = s->ll[i].fixed;
		s->ls[i].fixed = s->ll[i].fixed;
	}
	hyd_model_state_init(m, fixed);
	hyd_free(fixed);
	s->view.layers = s->ls;
	s->view.flags = HYD_SEQ_STATE_IN_PLACE;
	*ret_seq = s;
	return 0;
nomem:
	hyd_free(fixed);
	hyd_local_seq_free(s);
	return -ENOMEM;
}

struct hyd_seq_view *hyd_local_seq_view(struct hyd_local_seq *s)
{
	return &s->view;
}

void hyd_local_seq_set_in_place(struct hyd_local_seq *s, bool in_place)
{
	/* either way the current copy is state_index's: switching between steps is safe */
	s->view.flags = in_place ? HYD_SEQ_STATE_IN_PLACE : 0;
}

int hyd_local_seq_reserve(struct hyd_local_seq *s, uint32_t n_tokens)
{
	if (n_tokens > hyd_model_limits(s->m)->max_ctx)
		return -E2BIG;
	for (uint32_t i = 0; i < s->n_layer; i++) {
		const struct hyd_state_layout *lay = hyd_model_layer_layout(s->m, i);
		struct local_layer *l = &s->ll[i];
		if (!lay->page_bytes)
			continue;
		const uint32_t need = (n_tokens + lay->page_tokens - 1) / lay->page_tokens;
		if (need > l->cap_pages) {
			uint32_t cap = l->cap_pages ? l->cap_pages * 2 : 8;
			if (cap < need)
				cap = need;
			void **np = hyd_realloc(l->pages, cap * sizeof(void *));
			if (!np)
				return -ENOMEM;
			l->pages = np;
			l->cap_pages = cap;
		}
		while (l->n_pages < need) {
			void *pg = hyd_aligned_alloc(64, lay->page_bytes);
			if (!pg)
				return -ENOMEM;
			l->pages[l->n_pages++] = pg;
		}
		s->ls[i].pages = l->pages;
		s->ls[i].n_pages = l->n_pages;
	}
	return 0;
}

int hyd_local_seq_feed(struct hyd_model *m, struct hyd_local_seq *s, const int32_t *tokens, uint32_t n,
		       float *logits, bool all)
{
	const uint32_t chunk = hyd_model_limits(m)->max_chunk, n_vocab = hyd_model_n_vocab(m);
	if (s->broken)
		return -EIO;
	/* up front, so that a bad id feeds none of the tokens and, in place, breaks nothing */
	for (uint32_t i = 0; i < n; i++)
		if (tokens[i] < 0 || (uint32_t)tokens[i] >= n_vocab)
			return -EINVAL;
	for (uint32_t done = 0; done < n;) {
		uint32_t k = n - done < chunk ? n - done : chunk;
		int r = hyd_local_seq_reserve(s, s->view.pos + k);
		if (r)
			return r;
		struct hyd_seq_view *v = &s->view;
		const int32_t *tk = tokens + done;
		float *out = NULL;
		if (logits)
			out = all ? logits + (uint64_t)done * n_vocab : logits;
		if (!out && logits == NULL) {
			/* the runner always writes logits; give it somewhere to put them */
			static _Thread_local float *sink;
			static _Thread_local uint32_t sink_n;
			if (sink_n < n_vocab) {
				hyd_free(sink);
				sink = hyd_malloc((size_t)n_vocab * sizeof(float));
				if (!sink)
					return -ENOMEM;
				sink_n = n_vocab;
			}
			out = sink;
		}
		if ((r = hyd_model_step(m, &v, &tk, &k, 1, out, all && logits))) {
			/* two copies: the committed one is whole and the step can be retried; in place,
			 * layers before the failing one may have moved on */
			if (v->flags & HYD_SEQ_STATE_IN_PLACE)
				s->broken = true;
			return r;
		}
		v->pos += k;
		if (!(v->flags & HYD_SEQ_STATE_IN_PLACE))
			v->state_index ^= 1;
		done += k;
	}
	return 0;
}
