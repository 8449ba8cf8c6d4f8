/* A session whose state lives in this process's heap: what `hyd run`, `hyd eval` and the
 * tests use when no daemon is involved.  Pages for attention layers are added as the context
 * grows, like the daemon's shared-memory sessions. */
#ifndef HYD_DAEMON_LOCAL_SEQ_H
#define HYD_DAEMON_LOCAL_SEQ_H

#include <stdint.h>

#include "daemon/model.h"

struct hyd_local_seq;

int hyd_local_seq_new(const struct hyd_model *m, struct hyd_local_seq **ret_seq);
/* Whether steps rewrite double-buffered state in place (the default: nothing outlives the
 * process, so no committed copy is kept) or write the other copy and flip, as the daemon's
 * sessions do (benchmarks measure both).  Either may follow the other between steps. */
void hyd_local_seq_set_in_place(struct hyd_local_seq *s, bool in_place);
void hyd_local_seq_free(struct hyd_local_seq *s); /* accepts NULL */
struct hyd_seq_view *hyd_local_seq_view(struct hyd_local_seq *s);
/* Make sure paged layers can hold n_tokens positions. -E2BIG past max_ctx, -ENOMEM. */
int hyd_local_seq_reserve(struct hyd_local_seq *s, uint32_t n_tokens);
/* Feed tokens (any count: split into max_chunk steps, each committed on success).  logits, if
 * not NULL, receives the last token's logits (n_vocab floats), or every token's with all.
 * -EINVAL if any id is outside the vocabulary (nothing is fed).  After a step that failed in
 * place, every later call returns -EIO: some layers' states may have taken the step and
 * others not. */
int hyd_local_seq_feed(struct hyd_model *m, struct hyd_local_seq *s, const int32_t *tokens, uint32_t n,
		       float *logits, bool all);

#endif
