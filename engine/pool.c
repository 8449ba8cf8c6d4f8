/* Thread pool for struct hyd_parallel.  One job at a time: the caller publishes (fn, arg,
 * n_tasks) and bumps a generation counter; workers and the caller claim task indices from an
 * atomic counter until none are left.  Idle workers spin for a short while (decode issues a
 * job every few microseconds) and then sleep on the generation futex, so an idle daemon does
 * not burn CPU. */
#include "config.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine/alloc.h"
#include "engine/pool.h"

#define SPIN_NS 200000 /* how long an idle worker polls before sleeping */

struct hyd_pool {
	struct hyd_parallel par;
	uint32_t n_threads;
	pthread_t *threads;
	_Atomic uint32_t generation; /* futex word */
	_Atomic uint32_t sleepers;
	_Atomic uint32_t next_task;
	_Atomic uint32_t done_workers;
	_Atomic int stop;
	hyd_task_fn fn;
	void *arg;
	uint32_t n_tasks;
};

struct worker_arg {
	struct hyd_pool *pool;
	uint32_t index;
};

static void futex_wait(_Atomic uint32_t *addr, uint32_t expected)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
	__builtin_ia32_pause();
#endif
}

static void run_tasks(struct hyd_pool *p, uint32_t thread)
{
	for (;;) {
		uint32_t t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
		if (t >= p->n_tasks)
			break;
		p->fn(p->arg, t, thread);
	}
}

static void *worker_main(void *opaque)
{
	struct worker_arg *wa = opaque;
	struct hyd_pool *p = wa->pool;
	const uint32_t index = wa->index;
	hyd_free(wa);
	/* Generation 0 is "no job yet": a worker that starts late must still take job 1, which
	 * the creator may already have posted, so it must not sample the counter here. */
	uint32_t seen = 0;
	for (;;) {
		uint64_t start = now_ns();
		uint32_t gen;
		unsigned spins = 0;
		while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
			if (atomic_load_explicit(&p->stop, memory_order_relaxed))
				return NULL;
			if (++spins % 64 == 0 && now_ns() - start > SPIN_NS) {
				atomic_fetch_add(&p->sleepers, 1);
				/* re-check after announcing, so a job posted in between is not missed */
				if (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
					futex_wait(&p->generation, seen);
				atomic_fetch_sub(&p->sleepers, 1);
				start = now_ns();
			}
			cpu_relax();
		}
		seen = gen;
		if (atomic_load_explicit(&p->stop, memory_order_relaxed))
			return NULL;
		run_tasks(p, index);
		atomic_fetch_add_explicit(&p->done_workers, 1, memory_order_release);
	}
}

static void pool_run(void *ctx, uint32_t n_tasks, hyd_task_fn fn, void *arg)
{
	struct hyd_pool *p = ctx;
	if (n_tasks == 0)
		return;
	if (p->n_threads == 1 || n_tasks == 1) {
		for (uint32_t t = 0; t < n_tasks; t++)
			fn(arg, t, 0);
		return;
	}
	p->fn = fn;
	p->arg = arg;
	p->n_tasks = n_tasks;
	atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
	atomic_store_explicit(&p->done_workers, 0, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
	if (atomic_load(&p->sleepers))
		futex_wake_all(&p->generation);
	run_tasks(p, 0);
	const uint32_t workers = p->n_threads - 1;
	/* Stragglers are normally microseconds behind; if one was preempted (more runnable
	 * threads than cores), give it our core instead of spinning against it. */
	for (unsigned spins = 0; atomic_load_explicit(&p->done_workers, memory_order_acquire) < workers; spins++) {
		if (spins < 4096)
			cpu_relax();
		else
			sched_yield();
	}
}

uint32_t hyd_default_threads(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		int n = CPU_COUNT(&set);
		if (n > 0)
			return (uint32_t)n;
	}
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (uint32_t)n : 1;
}

int hyd_pool_create(uint32_t n_threads, struct hyd_pool **ret_pool)
{
	if (n_threads == 0 || n_threads > 1024)
		return -EINVAL;
	struct hyd_pool *p = hyd_calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->n_threads = n_threads;
	p->par.n_threads = n_threads;
	p->par.run = pool_run;
	p->par.ctx = p;
	if (n_threads > 1) {
		p->threads = hyd_calloc(n_threads - 1, sizeof(pthread_t));
		if (!p->threads) {
			hyd_free(p);
			return -ENOMEM;
		}
	}
	for (uint32_t i = 1; i < n_threads; i++) {
		struct worker_arg *wa = hyd_malloc(sizeof(*wa));
		int r = ENOMEM;
		if (wa) {
			wa->pool = p;
			wa->index = i;
			r = pthread_create(&p->threads[i - 1], NULL, worker_main, wa);
		}
		if (r) {
			hyd_free(wa);
			p->n_threads = i; /* join the ones that started */
			hyd_pool_destroy(p);
			return -EAGAIN;
		}
	}
	*ret_pool = p;
	return 0;
}

void hyd_pool_destroy(struct hyd_pool *p)
{
	if (!p)
		return;
	atomic_store(&p->stop, 1);
	atomic_fetch_add(&p->generation, 1);
	futex_wake_all(&p->generation);
	for (uint32_t i = 1; i < p->n_threads; i++)
		pthread_join(p->threads[i - 1], NULL);
	hyd_free(p->threads);
	hyd_free(p);
}

const struct hyd_parallel *hyd_pool_parallel(struct hyd_pool *p)
{
	return &p->par;
}
