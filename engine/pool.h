/* A fixed pool of worker threads implementing struct hyd_parallel.  Workers spin briefly
 * for the next job (decode issues one job per matmul, microseconds apart) and then sleep on a
 * futex, so an idle pool uses no CPU. */
#ifndef HYD_ENGINE_POOL_H
#define HYD_ENGINE_POOL_H

#include <stdint.h>

#include "hyd/plugin.h"

struct hyd_pool;

/* n_threads includes the calling thread (n_threads == 1: no workers). -EINVAL, -ENOMEM,
 * -EAGAIN (thread creation failed). */
int hyd_pool_create(uint32_t n_threads, struct hyd_pool **ret_pool);
void hyd_pool_destroy(struct hyd_pool *pool); /* accepts NULL */
const struct hyd_parallel *hyd_pool_parallel(struct hyd_pool *pool);
/* Threads to use by default: the CPUs this process may run on. */
uint32_t hyd_default_threads(void);

#endif
