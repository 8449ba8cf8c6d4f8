/* See sampler.h. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/sampler.h"
#include "engine/alloc.h"

struct cand {
	int32_t id;
	float v;
};

struct hyd_sampler {
	uint32_t n_vocab;
	struct cand *c;
};

void hyd_sampler_defaults(struct hyd_sampler_params *s)
{
	*s = (struct hyd_sampler_params){
		.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
		.repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0,
	};
}

int hyd_sampler_validate(const struct hyd_sampler_params *s, char *err, size_t errlen)
{
	const char *bad = NULL;
	if (!isfinite(s->temperature) || s->temperature > 100)
		bad = "temperature must be a number from 0 to 100";
	else if (!isfinite(s->top_p) || s->top_p <= 0)
		bad = "top_p must be greater than 0 (1 turns it off)";
	else if (!isfinite(s->min_p) || s->min_p < 0 || s->min_p > 1)
		bad = "min_p must be from 0 to 1";
	else if (!isfinite(s->repeat_penalty) || s->repeat_penalty <= 0)
		bad = "repeat_penalty must be greater than 0 (1 turns it off)";
	else if (s->repeat_last_n < -1)
		bad = "repeat_last_n must be -1 (all), 0 (off) or a token count";
	if (bad) {
		if (err)
			snprintf(err, errlen, "%s", bad);
		return -EINVAL;
	}
	return 0;
}

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void hyd_rng_seed(struct hyd_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
uint64_t hyd_rng_next(struct hyd_rng *r)
{
	uint64_t *s = r->s;
	const uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

int hyd_sampler_new(uint32_t n_vocab, struct hyd_sampler **ret)
{
	struct hyd_sampler *s = hyd_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->n_vocab = n_vocab;
	s->c = hyd_calloc(n_vocab ? n_vocab : 1, sizeof(*s->c));
	if (!s->c) {
		hyd_free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

void hyd_sampler_free(struct hyd_sampler *s)
{
	if (!s)
		return;
	hyd_free(s->c);
	hyd_free(s);
}

static int by_value_desc(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->v != y->v)
		return x->v < y->v ? 1 : -1;
	return x->id - y->id; /* deterministic order for equal logits */
}

static void apply_penalty(const struct hyd_sampler_params *p, float *logits, uint32_t n_vocab, const int32_t *hist,
			  size_t n_hist)
{
	if (p->repeat_penalty == 1.0f || p->repeat_last_n == 0 || !hist)
		return;
	size_t from = 0;
	if (p->repeat_last_n > 0 && n_hist > (size_t)p->repeat_last_n)
		from = n_hist - (size_t)p->repeat_last_n;
	/* each distinct token is penalised once, however often it occurred */
	for (size_t i = from; i < n_hist; i++) {
		int32_t t = hist[i];
		if (t < 0 || (uint32_t)t >= n_vocab)
			continue;
		bool seen = false;
		for (size_t k = from; k < i && !seen; k++)
			seen = hist[k] == t;
		if (seen)
			continue;
		logits[t] = logits[t] > 0 ? logits[t] / p->repeat_penalty : logits[t] * p->repeat_penalty;
	}
}

int32_t hyd_sampler_pick(struct hyd_sampler *s, const struct hyd_sampler_params *p, struct hyd_rng *rng, float *logits,
			 const int32_t *history, size_t n_history)
{
	const uint32_t n = s->n_vocab;
	apply_penalty(p, logits, n, history, n_history);
	if (p->temperature <= 0) {
		int32_t best = 0;
		for (uint32_t i = 1; i < n; i++)
			if (logits[i] > logits[best])
				best = (int32_t)i;
		return best;
	}
	uint32_t k = n;
	for (uint32_t i = 0; i < n; i++)
		s->c[i] = (struct cand){ (int32_t)i, logits[i] };
	if (p->top_k > 0 && (uint32_t)p->top_k < n) {
		/* partial selection would be faster; vocabularies are small next to a forward pass */
		qsort(s->c, n, sizeof(*s->c), by_value_desc);
		k = (uint32_t)p->top_k;
	} else {
		qsort(s->c, n, sizeof(*s->c), by_value_desc);
	}
	/* softmax over the survivors, at temperature */
	const float mx = s->c[0].v;
	double sum = 0;
	for (uint32_t i = 0; i < k; i++) {
		s->c[i].v = expf((s->c[i].v - mx) / p->temperature);
		sum += s->c[i].v;
	}
	for (uint32_t i = 0; i < k; i++)
		s->c[i].v = (float)(s->c[i].v / sum);
	if (p->top_p < 1.0f) {
		double cum = 0;
		uint32_t keep = k;
		for (uint32_t i = 0; i < k; i++) {
			cum += s->c[i].v;
			if (cum >= p->top_p) {
				keep = i + 1;
				break;
			}
		}
		k = keep;
	}
	if (p->min_p > 0) {
		const float floor_p = s->c[0].v * p->min_p;
		uint32_t keep = 1;
		while (keep < k && s->c[keep].v >= floor_p)
			keep++;
		k = keep;
	}
	double total = 0;
	for (uint32_t i = 0; i < k; i++)
		total += s->c[i].v;
	const double u = (double)(hyd_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0) * total;
	double acc = 0;
	for (uint32_t i = 0; i < k; i++) {
		acc += s->c[i].v;
		if (u < acc)
			return s->c[i].id;
	}
	return s->c[k - 1].id;
}
