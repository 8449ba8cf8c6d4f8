/* See ssm.h. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/kernels.h"
#include "engine/types.h"
#include "plugins/ssm/ssm.h"

void hyd__ssm_log(const struct hyd_plugin_support *sup, enum hyd_log_level level, const char *fmt, ...)
{
	if (!sup || !sup->log)
		return;
	va_list ap;
	va_start(ap, fmt);
	sup->log(sup->log_ctx, level, fmt, ap);
	va_end(ap);
}

int hyd__ssm_matrix(const struct hyd_layer_desc *d, const struct hyd_plugin_support *sup, const char *suffix,
		    int64_t n_in, int64_t n_out, const struct hyd_tensor **ret)
{
	const struct hyd_tensor *t = d->tensor(d, suffix);
	if (!t) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "layer %u: missing tensor blk.%u.%s", d->hp->layer, d->hp->layer,
			     suffix);
		return -EINVAL;
	}
	if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != 1 || t->ne[3] != 1) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: shape {%lld, %lld, %lld, %lld} but the hyper-parameters need {%lld, %lld}",
			     t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
			     (long long)t->ne[3], (long long)n_in, (long long)n_out);
		return -EINVAL;
	}
	if (!hyd_type_computable(t->type) || hyd_row_size(t->type, n_in) < 0) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: tensor type %s is not supported for rows of %lld", t->name,
			     hyd_type_name(t->type), (long long)n_in);
		return -ENOTSUP;
	}
	if (t->nbytes < (uint64_t)hyd_row_size(t->type, n_in) * (uint64_t)n_out) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: %llu bytes of data, too few for its shape", t->name,
			     (unsigned long long)t->nbytes);
		return -EINVAL;
	}
	*ret = t;
	return 0;
}

int hyd__ssm_f32(const struct hyd_layer_desc *d, const struct hyd_plugin_support *sup, const char *suffix,
		 int64_t ne0, int64_t ne1, bool required, const float **ret)
{
	const struct hyd_tensor *t = d->tensor(d, suffix);
	if (!t) {
		if (!required) {
			*ret = NULL;
			return 0;
		}
		hyd__ssm_log(sup, HYD_LOG_ERROR, "layer %u: missing tensor blk.%u.%s", d->hp->layer, d->hp->layer,
			     suffix);
		return -EINVAL;
	}
	/* a per-head vector may be stored as {1, n} (llama.cpp's converter) or as {n} */
	bool shape_ok = t->ne[2] == 1 && t->ne[3] == 1 &&
			((t->ne[0] == ne0 && t->ne[1] == ne1) || (ne0 == 1 && t->ne[0] == ne1 && t->ne[1] == 1));
	if (!shape_ok) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: shape {%lld, %lld, %lld, %lld} but the hyper-parameters need {%lld, %lld}",
			     t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
			     (long long)t->ne[3], (long long)ne0, (long long)ne1);
		return -EINVAL;
	}
	if (t->type != HYD_TYPE_F32) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: type %s, but small SSM tensors must be F32", t->name,
			     hyd_type_name(t->type));
		return -ENOTSUP;
	}
	if (t->nbytes < (uint64_t)(ne0 * ne1) * sizeof(float) || ((uintptr_t)t->data & 3)) {
		hyd__ssm_log(sup, HYD_LOG_ERROR, "%s: data too short or misaligned", t->name);
		return -EINVAL;
	}
	*ret = t->data;
	return 0;
}

/* Below this much work (about one multiply-add per unit) a layer's SSM step runs on the
 * caller's thread.  2^15 puts a Mamba-1 decode step's conv (d_inner 1536 x (d_conv + 20))
 * on both threads: the idle worker is spinning, so the hand-off costs ~1-2 us. */
#define SSM_PARALLEL_MIN_WORK (1u << 15)

void hyd__ssm_run(const struct hyd_parallel *par, uint32_t n, hyd_task_fn fn, void *arg, uint64_t work)
{
	if (par && par->run && par->n_threads > 1 && n > 1 && work >= SSM_PARALLEL_MIN_WORK) {
		par->run(par->ctx, n, fn, arg);
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		fn(arg, i, 0);
}

struct unit_runs {
	hyd_task_fn unit_fn;
	void *arg;
	uint32_t n_units, n_runs; /* per session */
};

static void unit_run_task(void *arg, uint32_t task, uint32_t thread)
{
	const struct unit_runs *r = arg;
	const uint32_t s = task / r->n_runs, g = task % r->n_runs;
	for (uint32_t u = g * r->n_units / r->n_runs; u < (g + 1) * r->n_units / r->n_runs; u++)
		r->unit_fn(r->arg, s * r->n_units + u, thread);
}

void hyd__ssm_run_units(const struct hyd_mixer_batch *b, uint32_t n_units, hyd_task_fn unit_fn, void *arg,
			uint64_t work)
{
	const uint32_t t = b->par && b->par->run ? b->par->n_threads : 1;
	bool decode = t > 1 && t < n_units;
	for (uint32_t i = 0; decode && i < b->n_seqs; i++)
		decode = b->seqs[i].n_rows <= 1;
	if (!decode) {
		hyd__ssm_run(b->par, b->n_seqs * n_units, unit_fn, arg, work);
		return;
	}
	struct unit_runs r = { .unit_fn = unit_fn, .arg = arg, .n_units = n_units, .n_runs = t };
	hyd__ssm_run(b->par, b->n_seqs * t, unit_run_task, &r, work);
}

void hyd__ssm_conv(const float *in, int64_t ld_in, float *out, int64_t ld_out, uint32_t n_rows,
		   const float *w, const float *bias, uint32_t d_conv, const float *tail_src, float *tail_dst,
		   uint32_t c0, uint32_t c1)
{
	const uint32_t k1 = d_conv - 1;
	if (n_rows == 1) {
		/* one token (decode): the window is the tail plus the input, and the new tail is the
		 * old one moved down by one with the input appended */
		hyd__ssm_kern()->conv_step(in + c0, out + c0, w + (uint64_t)c0 * d_conv, bias ? bias + c0 : NULL,
					   tail_src + (uint64_t)c0 * k1, tail_dst + (uint64_t)c0 * k1, d_conv, c1 - c0);
	} else {
		for (uint32_t c = c0; c < c1; c++) {
			/* win[0..k1) are the k1 previous inputs (oldest first), win[k1] the current one */
			float win[HYD_SSM_MAX_CONV];
			const float *wc = w + (uint64_t)c * d_conv;
			const float b = bias ? bias[c] : 0.0f;
			memcpy(win, tail_src + (uint64_t)c * k1, k1 * sizeof(float));
			for (uint32_t r = 0; r < n_rows; r++) {
				win[k1] = in[(int64_t)r * ld_in + c];
				float acc = b;
				for (uint32_t k = 0; k < d_conv; k++)
					acc += wc[k] * win[k];
				out[(int64_t)r * ld_out + c] = acc;
				for (uint32_t k = 0; k < k1; k++)
					win[k] = win[k + 1];
			}
			memcpy(tail_dst + (uint64_t)c * k1, win, k1 * sizeof(float));
		}
	}
	const struct hyd__ssm_kern *K = hyd__ssm_kern();
	for (uint32_t r = 0; r < n_rows; r++)
		K->silu(out + (int64_t)r * ld_out + c0, out + (int64_t)r * ld_out + c0, c1 - c0);
}

int hyd__ssm_check_batch(const struct hyd_mixer_batch *b)
{
	if (!b || !b->seqs || !b->x || !b->y || (b->n_seqs && !b->limits))
		return -EINVAL;
	for (uint32_t i = 0; i < b->n_seqs; i++) {
		const struct hyd_mixer_seq *s = &b->seqs[i];
		if (!s->state || s->state_index > 1 || (s->flags & ~HYD_SEQ_FLAGS_KNOWN) || s->row0 > b->n_rows ||
		    s->n_rows > b->n_rows - s->row0 || s->n_rows > b->limits->max_chunk)
			return -EINVAL;
	}
	return 0;
}

int hyd__ssm_matmul(const struct hyd_mixer_batch *b, const struct hyd_tensor *W, const float *X, int64_t ldx,
		    float *Y, int64_t ldy)
{
	const uint32_t n = b->n_rows;
	uint8_t small[64];
	uint8_t *alone = n <= sizeof(small) ? small : hyd_malloc(n);
	if (!alone)
		return -ENOMEM;
	memset(alone, 0, n);
	for (uint32_t s = 0; s < b->n_seqs; s++)
		for (uint32_t i = 0; i < b->seqs[s].n_rows; i++)
			alone[b->seqs[s].row0 + i] = b->seqs[s].n_rows == 1;
	int r = hyd_matmul_rows(b->par, W, X, ldx, Y, ldy, n, alone);
	if (alone != small)
		hyd_free(alone);
	return r;
}
