/* Token sampling: repetition penalty, then top-k, top-p, min-p and temperature, then a draw
 * from the remaining distribution (or the argmax when temperature <= 0).  The random state
 * is a plain struct so a session can keep it in shared memory and resume the same stream. */
#ifndef HYD_DAEMON_SAMPLER_H
#define HYD_DAEMON_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

struct hyd_sampler_params {
	float temperature;    /* <= 0: greedy */
	int32_t top_k;        /* <= 0: off */
	float top_p;          /* >= 1: off */
	float min_p;          /* <= 0: off */
	float repeat_penalty; /* 1: off */
	int32_t repeat_last_n;/* tokens of history the penalty looks at; -1: all */
	uint64_t seed;
};

/* Sane defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no repetition penalty. */
void hyd_sampler_defaults(struct hyd_sampler_params *s);
/* -EINVAL naming the field in err when a value is out of range (NaN, negative top_p ...). */
int hyd_sampler_validate(const struct hyd_sampler_params *s, char *err, size_t errlen);

struct hyd_rng {
	uint64_t s[4];
};
void hyd_rng_seed(struct hyd_rng *r, uint64_t seed);
uint64_t hyd_rng_next(struct hyd_rng *r);

struct hyd_sampler;
int hyd_sampler_new(uint32_t n_vocab, struct hyd_sampler **ret);
void hyd_sampler_free(struct hyd_sampler *s);
/* Picks the next token. logits (n_vocab floats) are modified. history: the session's tokens. */
int32_t hyd_sampler_pick(struct hyd_sampler *s, const struct hyd_sampler_params *p, struct hyd_rng *rng, float *logits,
			 const int32_t *history, size_t n_history);

#endif
