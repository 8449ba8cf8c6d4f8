/* Matrix multiplication Y = X W^T for any computable weight type, weights used in place.
 *
 * The activations are converted once to the weight type's vec_dot_type (quantized per block
 * for quantized weights, the fast path of the integer dot products).  Work is split over
 * blocks of output rows; inside a task, a small block of output rows is swept over tiles of
 * activation rows so that both stay in cache during prefill.  Decode (one row) streams each
 * weight row exactly once, which is what makes it memory-bound rather than compute-bound. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/kernels.h"
#include "engine/types.h"
#include "engine/types_internal.h"

#define ROW_TILE 8    /* activation rows per tile */
#define OUT_TILE 16   /* output rows swept together */
/* Decode reads a task as four streams when each is at least this long: shorter ones start
 * cold four times per task and are better read as groups of consecutive rows (4 KiB
 * measured 0.906 of 16 KiB's two-thread decode). */
#define STREAM_MIN_BYTES 16384

/* One weight matrix of a job. */
struct mm_part {
	const char *w;        /* weight rows */
	int64_t n_out;
	float *y;
	int64_t ldy;
};

#define MM_MAX_PARTS 4
#define MM_MAX_TASKS 256

/* Output rows [begin, end) of one part. */
struct mm_range {
	uint32_t part;
	uint32_t begin, end;
};

struct mm_job {
	const struct hyd_type_traits *tr;
	hyd_vec_dot_fn dot;   /* rows that share their sequence's step with others */
	hyd_vec_dot_fn dot1;  /* rows alone in their sequence's step */
	const uint8_t *alone; /* per row, or NULL: none alone */
	hyd_gemm2x2_fn dot2x2; /* 2 outputs x 2 rows at once in dot's order, or NULL */
	hyd_vec_dot4_fn dot4;  /* 4 outputs x 1 row, same bits as dot and dot1, or NULL */
	hyd_vec_dot4x2_fn dot4x2; /* 4 outputs x 2 rows, same bits as dot4, or NULL */
	hyd_vec_dot_rows_fn dot_rows; /* a task's outputs x 1 row, same bits as dot, or NULL */
	hyd_vec_dot4_run_fn dot4_run; /* runs of dot4's groups (decode's streams), or NULL */
	int64_t w_stride;     /* bytes per weight row */
	const char *x;        /* converted activation rows */
	int64_t x_stride;     /* bytes per converted row */
	int64_t n_in, n_rows;
	uint32_t n_parts;
	struct mm_part part[MM_MAX_PARTS];
	uint32_t n_tasks;
	struct mm_range task[MM_MAX_TASKS];
};

/* Decode (one activation row) with a quantized four-row kernel: each call takes one row from
 * each quarter of the task's rows, so the kernel, which reads its four rows block by block
 * side by side, reads four long sequential streams, which the prefetchers keep up with,
 * instead of four short rows side by side (llama-125m's are 0.4-1 KiB), which they do not
 * (engine/quant_avx2.c, four_prefetch): llama-125m decode on one thread, Q8_0 and Q4_K_M,
 * paired medians 1.14 and 1.13.  The F16 kernel reads its rows one after the other, so
 * consecutive rows are already one stream for it (streams measured 0.92).  Same kernel,
 * so the same bits per output row. */
static void mm_task_streams(const struct mm_job *job, const struct mm_part *part, int64_t o_begin,
			    int64_t o_end)
{
	const int64_t quarter = (o_end - o_begin) / 4;
	const int64_t stride = quarter * job->w_stride;
	if (job->dot4_run)
		job->dot4_run(job->n_in, part->w + o_begin * job->w_stride, job->w_stride, quarter, quarter, job->x,
			      part->y + o_begin);
	else
		for (int64_t o = o_begin; o < o_begin + quarter; o++) {
			float out[4];
			job->dot4(job->n_in, part->w + o * job->w_stride, stride, job->x, out);
			for (int k = 0; k < 4; k++)
				part->y[o + k * quarter] = out[k];
		}
	for (int64_t o = o_begin + 4 * quarter; o < o_end; o++) {
		const hyd_vec_dot_fn dot = job->alone && job->alone[0] ? job->dot1 : job->dot;
		part->y[o] = dot(job->n_in, part->w + o * job->w_stride, job->x);
	}
}

static void mm_task(void *arg, uint32_t task, uint32_t thread)
{
	const struct mm_job *job = arg;
	(void)thread;
	const struct mm_part *part = &job->part[job->task[task].part];
	const int64_t o_begin = job->task[task].begin, o_end = job->task[task].end;
	if (job->n_rows == 1 && job->dot4 && job->tr->quantized &&
	    (o_end - o_begin) / 4 * job->w_stride >= STREAM_MIN_BYTES) {
		mm_task_streams(job, part, o_begin, o_end);
		return;
	}
	if (job->n_rows == 1 && job->dot_rows) {
		job->dot_rows(job->n_in, part->w + o_begin * job->w_stride, job->w_stride, job->x, o_end - o_begin,
			      part->y + o_begin);
		return;
	}
	for (int64_t r0 = 0; r0 < job->n_rows; r0 += ROW_TILE) {
		const int64_t r1 = r0 + ROW_TILE < job->n_rows ? r0 + ROW_TILE : job->n_rows;
		for (int64_t o0 = o_begin; o0 < o_end; o0 += OUT_TILE) {
			const int64_t o1 = o0 + OUT_TILE < o_end ? o0 + OUT_TILE : o_end;
			int64_t o = o0;
			if (job->dot2x2)
				for (; o + 2 <= o1; o += 2) {
					const char *w0 = part->w + o * job->w_stride, *w1 = w0 + job->w_stride;
					int64_t r = r0;
					/* pairs of rows that share their step use the blocked kernel */
					while (r < r1) {
						const bool pair = r + 1 < r1 && !(job->alone && (job->alone[r] || job->alone[r + 1]));
						if (!pair) {
							const hyd_vec_dot_fn dot = job->alone && job->alone[r] ? job->dot1 : job->dot;
							part->y[r * part->ldy + o] = dot(job->n_in, w0, job->x + r * job->x_stride);
							part->y[r * part->ldy + o + 1] = dot(job->n_in, w1, job->x + r * job->x_stride);
							r++;
							continue;
						}
						float out[4];
						job->dot2x2(job->n_in, w0, w1, job->x + r * job->x_stride, job->x + (r + 1) * job->x_stride, out);
						part->y[r * part->ldy + o] = out[0];
						part->y[(r + 1) * part->ldy + o] = out[1];
						part->y[r * part->ldy + o + 1] = out[2];
						part->y[(r + 1) * part->ldy + o + 1] = out[3];
						r += 2;
					}
				}
			if (job->dot4)
				for (; o + 4 <= o1; o += 4) {
					const char *wr = part->w + o * job->w_stride;
					int64_t r = r0;
					if (job->dot4x2)
						for (; r + 2 <= r1; r += 2) {
							float out[8];
							job->dot4x2(job->n_in, wr, job->w_stride, job->x + r * job->x_stride,
								    job->x + (r + 1) * job->x_stride, out);
							memcpy(&part->y[r * part->ldy + o], out, 4 * sizeof(float));
							memcpy(&part->y[(r + 1) * part->ldy + o], out + 4, 4 * sizeof(float));
						}
					for (; r < r1; r++) {
						float out[4];
						job->dot4(job->n_in, wr, job->w_stride, job->x + r * job->x_stride, out);
						memcpy(&part->y[r * part->ldy + o], out, sizeof(out));
					}
				}
			for (; o < o1; o++) {
				const char *wr = part->w + o * job->w_stride;
				for (int64_t r = r0; r < r1; r++) {
					const hyd_vec_dot_fn dot = job->alone && job->alone[r] ? job->dot1 : job->dot;
					part->y[r * part->ldy + o] = dot(job->n_in, wr, job->x + r * job->x_stride);
				}
			}
		}
	}
}

/* Tasks in the order threads claim them, guided: each takes a share of the output rows the
 * job has left, so the first tasks are large (few claims, long prefetch streams) and the
 * last ones small, and the threads finish within a small task of each other instead of a
 * large one.  The share is 1/threads in decode (one activation row, where each task is read
 * as four long streams: on two threads the first task is half the matrix) and 1/(2 *
 * threads) otherwise.  Alternating the two on every other decoded token (one process, two
 * threads): 1/threads faster by 2-13 % (llama-125m Q8_0 and Q4_K_M 9-13 %, mamba-130m 2-7 %,
 * granite-h-350m Q4_K_M 3-9 %, gemma3-270m and llama-125m F16 ~2 %); smaller shares, 1/(4 *
 * threads), 5-10 % slower.  Prefill, whose tasks are compute-bound tiles, measured 1/(2 *
 * threads) better (pp256 on two threads: 1/threads 3.7-8.8 % slower for three of four
 * models).  Boundaries are multiples of four (whole four-row groups, and the same pairs
 * for the 2x2 kernel) and never cross from one matrix to the next. */
static void split_tasks(struct mm_job *j, uint32_t n_threads, int64_t n_out_all)
{
	int64_t min_outs = 16;
	/* enough room for the tail of small tasks: ~2 * threads * ln(rows / (2 * threads * min)) */
	while (n_threads > 1 && n_out_all / min_outs > (int64_t)MM_MAX_TASKS * 2)
		min_outs *= 2;
	const int64_t share = j->n_rows == 1 ? n_threads : 2 * (int64_t)n_threads;
	int64_t left = n_out_all;
	j->n_tasks = 0;
	for (uint32_t k = 0; k < j->n_parts; k++) {
		const int64_t n_out = j->part[k].n_out;
		for (int64_t o = 0; o < n_out;) {
			int64_t size = n_out - o;
			if (n_threads > 1 && j->n_tasks + MM_MAX_PARTS < MM_MAX_TASKS) {
				size = (left + share - 1) / share;
				size = (size + 3) & ~(int64_t)3;
				if (size < min_outs)
					size = min_outs;
				if (size > n_out - o)
					size = n_out - o;
			}
			j->task[j->n_tasks++] = (struct mm_range){ .part = k, .begin = (uint32_t)o, .end = (uint32_t)(o + size) };
			o += size;
			left -= size;
		}
	}
}

/* Per-thread buffer for converted activations; grows, never shrinks. */
static _Thread_local void *conv_buf;
static _Thread_local size_t conv_cap;

static void *conv_space(size_t n)
{
	if (n > conv_cap) {
		void *p = hyd_aligned_alloc(64, n);
		if (!p)
			return NULL;
		hyd_free(conv_buf);
		conv_buf = p;
		conv_cap = n;
	}
	return conv_buf;
}

int hyd_matmul(const struct hyd_parallel *par, const struct hyd_tensor *W, const float *X,
	       int64_t ldx, float *Y, int64_t ldy, int64_t n_rows)
{
	return hyd_matmul_rows(par, W, X, ldx, Y, ldy, n_rows, NULL);
}

static bool outs_multiple_of_4(uint32_t n_w, const struct hyd_tensor *const *W)
{
	for (uint32_t k = 0; k < n_w; k++)
		if (W[k]->ne[1] * W[k]->ne[2] * W[k]->ne[3] % 4 != 0)
			return false;
	return true;
}

/* Same type, same row length and the same summation order: one job can serve them all. */
static bool parts_compatible(uint32_t n_w, const struct hyd_tensor *const *W, int64_t n_rows, const uint8_t *alone)
{
	if (n_w == 1)
		return true;
	for (uint32_t k = 1; k < n_w; k++)
		if (W[k]->type != W[0]->type || W[k]->ne[0] != W[0]->ne[0])
			return false;
	/* the F16 summation order depends on each matrix's shape (see below) */
	return !(W[0]->type == HYD_TYPE_F16 && (n_rows >= 2 || alone)) || outs_multiple_of_4(n_w, W);
}

int hyd_matmul_multi(const struct hyd_parallel *par, uint32_t n_w, const struct hyd_tensor *const *W,
		     const float *X, int64_t ldx, float *const *Y, const int64_t *ldy, int64_t n_rows,
		     const uint8_t *alone)
{
	if (n_w == 0 || n_w > MM_MAX_PARTS)
		return -EINVAL;
	if (!parts_compatible(n_w, W, n_rows, alone)) {
		for (uint32_t k = 0; k < n_w; k++) {
			const int r = hyd_matmul_multi(par, 1, &W[k], X, ldx, &Y[k], &ldy[k], n_rows, alone);
			if (r)
				return r;
		}
		return 0;
	}
	const struct hyd_type_traits *tr = hyd_type_traits(W[0]->type);
	if (!tr || !tr->vec_dot || !tr->to_float)
		return -ENOTSUP;
	const int64_t n_in = W[0]->ne[0];
	if (n_rows <= 0)
		return 0;
	struct mm_job j = {
		.tr = tr,
		.dot = tr->vec_dot,
		.dot1 = tr->vec_dot,
		.alone = alone,
		.w_stride = hyd_row_size(W[0]->type, n_in),
		.n_in = n_in,
		.n_rows = n_rows,
		.n_parts = n_w,
	};
	if (j.w_stride < 0)
		return (int)j.w_stride;
	int64_t n_out_all = 0;
	for (uint32_t k = 0; k < n_w; k++) {
		j.part[k] = (struct mm_part){ .w = W[k]->data, .n_out = W[k]->ne[1] * W[k]->ne[2] * W[k]->ne[3],
					      .y = Y[k], .ldy = ldy[k] };
		n_out_all += j.part[k].n_out;
	}
	/* the four-row kernel gives vec_dot's bits, so it serves shared and alone rows alike */
	j.dot4 = tr->vec_dot4;
	j.dot4x2 = tr->vec_dot4x2;
	j.dot_rows = n_rows == 1 ? tr->vec_dot_rows : NULL;
	j.dot4_run = n_rows == 1 ? tr->vec_dot4_run : NULL;
	/* rows alone in their step all use vec_dot: when every row is, no row needs the other order */
	bool all_alone = alone != NULL;
	for (int64_t r = 0; all_alone && r < n_rows; r++)
		all_alone = alone[r] != 0;
	if (all_alone)
		j.alone = NULL;
	/* ggml hands F16 matmuls of two rows or more to tinyBLAS, which sums in another order */
	if (W[0]->type == HYD_TYPE_F16 && (n_rows >= 2 || alone) && !all_alone && n_in % 16 == 0 &&
	    outs_multiple_of_4(n_w, W)) {
		j.dot = hyd__f16_gemm_dot();
		j.dot2x2 = hyd__f16_gemm_2x2();
		j.dot4 = NULL;
		j.dot4x2 = NULL;
		j.dot_rows = NULL;
		j.dot4_run = NULL;
	}
	if (tr->vec_dot_type == HYD_TYPE_F32) {
		j.x = (const char *)X;
		j.x_stride = ldx * (int64_t)sizeof(float);
	} else {
		const struct hyd_type_traits *at = hyd_type_traits(tr->vec_dot_type);
		int64_t xs = hyd_row_size(tr->vec_dot_type, n_in);
		if (!at || !at->from_float || xs < 0)
			return -ENOTSUP;
		char *buf = conv_space((size_t)(xs * n_rows));
		if (!buf)
			return -ENOMEM;
		for (int64_t r = 0; r < n_rows; r++)
			at->from_float(X + r * ldx, buf + r * xs, n_in);
		j.x = buf;
		j.x_stride = xs;
	}
	/* Below this much work, handing half to another core costs more than it saves.  In
	 * decode the workers are still spinning from the last job, so the cost is the hand-off
	 * (~1-2 us), not a wake-up: 2^16 puts mamba-130m's dt and x projections (48 x 1536
	 * F16, 1536 x 80) on both threads, +6.6 % two-thread decode (paired median; 2^18
	 * before). */
	const uint64_t work = (uint64_t)n_in * (uint64_t)n_out_all * (uint64_t)n_rows;
	const uint32_t n_threads = par && work >= (1u << 16) ? par->n_threads : 1;
	split_tasks(&j, n_threads, n_out_all);
	if (n_threads > 1 && j.n_tasks > 1)
		par->run(par->ctx, j.n_tasks, mm_task, &j);
	else
		for (uint32_t t = 0; t < j.n_tasks; t++)
			mm_task(&j, t, 0);
	return 0;
}

int hyd_matmul_rows(const struct hyd_parallel *par, const struct hyd_tensor *W, const float *X,
		    int64_t ldx, float *Y, int64_t ldy, int64_t n_rows, const uint8_t *alone)
{
	return hyd_matmul_multi(par, 1, &W, X, ldx, &Y, &ldy, n_rows, alone);
}
