/* Internals shared by the "mamba1" and "mamba2" mixers of the ssm plugin.
 *
 * Both keep, per session, a fixed-size f32 state in two copies (HYD_STATE_DOUBLE_BUFFERED):
 * forward() reads copy seq.state_index and writes copy state_index ^ 1, so the committed copy
 * is never touched by a step that may still be abandoned; a sequence with
 * HYD_SEQ_STATE_IN_PLACE (no committed copy to keep) has copy state_index rewritten instead. */
#ifndef HYD_PLUGINS_SSM_H
#define HYD_PLUGINS_SSM_H

#include <stdbool.h>
#include <stdint.h>

#include "hyd/plugin.h"

/* Longest convolution kernel we accept; real models use 4. */
#define HYD_SSM_MAX_CONV 16u

extern const struct hyd_mixer_factory hyd__mamba1_factory;
extern const struct hyd_mixer_factory hyd__mamba2_factory;

void hyd__ssm_log(const struct hyd_plugin_support *sup, enum hyd_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* blk.L.<suffix>: a weight matrix of exactly {n_in, n_out} in a type hyd computes with.
 * -EINVAL (missing or wrong shape), -ENOTSUP (type), each with a log line naming the tensor. */
int hyd__ssm_matrix(const struct hyd_layer_desc *d, const struct hyd_plugin_support *sup, const char *suffix,
		    int64_t n_in, int64_t n_out, const struct hyd_tensor **ret);
/* blk.L.<suffix>: F32 values of shape {ne0, ne1} (ne1 = 1 for a vector; a 1-D tensor of ne0*ne1
 * values is accepted where ne0 == 1).  Absent: -EINVAL when required, else *ret = NULL. */
int hyd__ssm_f32(const struct hyd_layer_desc *d, const struct hyd_plugin_support *sup, const char *suffix,
		 int64_t ne0, int64_t ne1, bool required, const float **ret);

/* Runs fn over n tasks, on the host's workers when there are several. */
/* Runs fn over n tasks, on the host's threads when the job is worth waking them for: work is
 * the job's rough cost in multiply-adds; below a few tens of microseconds of it, handing tasks
 * to another core costs more than it saves (and under CPU contention, much more). */
void hyd__ssm_run(const struct hyd_parallel *par, uint32_t n, hyd_task_fn fn, void *arg, uint64_t work);

/* Runs unit_fn(arg, s * n_units + u, thread) for every session s of the batch and unit u <
 * n_units (a channel block, a head) through hyd__ssm_run.  When every session steps one
 * token (decode) and the host has 1 < T < n_units threads, as T pool tasks per session, each
 * a run of consecutive units: the calling thread, which claims first, then keeps the same
 * units from one step of a layer to the next and reads what it wrote itself, and each thread
 * claims once (docs/PERFORMANCE.md, "Fifth session").  Otherwise one pool task per unit,
 * claimed as the threads come, which balances prefill's larger and unequal tasks. */
void hyd__ssm_run_units(const struct hyd_mixer_batch *b, uint32_t n_units, hyd_task_fn unit_fn, void *arg,
			uint64_t work);
/* Causal depthwise convolution with SiLU for channels [c0, c1) of one session's n_rows rows.
 * in: row r's channel c at in[r*ld_in + c] (pre-convolution values); out likewise with ld_out.
 * w: [channels][d_conv] (GGUF {d_conv, channels}); bias may be NULL.  The d_conv-1 inputs that
 * precede the first row come from tail_src ([channels][d_conv-1], oldest first); the last
 * d_conv-1 inputs seen are written to tail_dst (which must not alias tail_src). */
void hyd__ssm_conv(const float *in, int64_t ld_in, float *out, int64_t ld_out, uint32_t n_rows,
		   const float *w, const float *bias, uint32_t d_conv, const float *tail_src, float *tail_dst,
		   uint32_t c0, uint32_t c1);

/* Validates the sequences of a batch against the batch's rows and limits. -EINVAL. */
int hyd__ssm_check_batch(const struct hyd_mixer_batch *b);
/* Y = X W^T over the batch's rows, each session's rows summed in the order its own step size
 * calls for (hyd_matmul_rows), so results never depend on what a session is batched with. */
int hyd__ssm_matmul(const struct hyd_mixer_batch *b, const struct hyd_tensor *W, const float *X, int64_t ldx,
		    float *Y, int64_t ldy);

/* The scan's per-element kernels.  hyd__ssm_kern() is the table the CPU allows (checked at run
 * time; HYD_SIMD=scalar caps it at the plain C one, HYD_SIMD=avx2 at the AVX2 one),
 * hyd__ssm_kern_at(simd) a given one (NULL when the CPU lacks it) for tests that hold each
 * vectorised kernel to its plain C twin, and hyd__ssm_kern_avx2() the AVX2 table, which the
 * AVX-512 one must match bit for bit. */
struct hyd__ssm_kern {
	const char *name;
	/* Mamba-1, n_ch channels of ds state values each (h_out, h_in and a advance by ds per
	 * channel): h_out = exp(dt[ch] a) * h_in + dt[ch] x[ch] bv, y[ch] = sum h_out * c.
	 * dt >= 0 and a <= 0 (a softplus and Mamba's A = -exp(A_log)): the vectorised kernels
	 * compute exp only for arguments <= 0.
	 * h_out == h_in is allowed: reading one copy of the state and writing the other in the
	 * same pass spares a copy of the whole state per token.  stream: see stream_fence. */
	void (*update_dot)(float *h_out, const float *h_in, const float *a, const float *dt, const float *x,
			   const float *bv, const float *c, uint32_t n_ch, uint32_t ds, float *y, bool stream);
	/* Mamba-2: s_out[n] = da * s_in[n] + bx * bv[n] for n < ds, returns sum s_out[n] c[n];
	 * s_out == s_in is allowed.  stream: see stream_fence. */
	float (*decay_dot)(float *s_out, const float *s_in, float da, float bx, const float *bv, const float *c,
			   uint32_t ds, bool stream);
	/* stream = true says the state written will not be read again before the rest of the
	 * model's weights have gone through the caches: the kernel may then write it with
	 * non-temporal stores, which spare the read of each line before it is written.  Such
	 * stores are weakly ordered: a task that passed stream = true calls stream_fence() before
	 * it returns, so the state is in place before the step is seen to be done. */
	void (*stream_fence)(void);
	/* One token of the causal depthwise convolution for n channels (every pointer at the
	 * first one; w: [channel][d_conv], tail_src/tail_dst: [channel][d_conv - 1], not
	 * aliased): out[c] = bias[c] + w[c][0] tail_src[c][0] + ... + w[c][d_conv - 1] in[c],
	 * added in that order with each product rounded first (the sums of the multi-token
	 * path, bit for bit); tail_dst[c] = tail_src[c][1..] followed by in[c].  bias may be
	 * NULL (0). */
	void (*conv_step)(const float *in, float *out, const float *w, const float *bias, const float *tail_src,
			  float *tail_dst, uint32_t d_conv, uint32_t n);
	void (*silu)(float *y, const float *x, uint32_t n);                      /* y may be x */
	void (*silu_mul)(float *y, const float *z, uint32_t n);                  /* y *= silu(z) */
	void (*softplus)(float *y, const float *x, const float *bias, uint32_t n); /* softplus(x + bias) */
};

const struct hyd__ssm_kern *hyd__ssm_kern(void);
const struct hyd__ssm_kern *hyd__ssm_kern_at(bool simd);
const struct hyd__ssm_kern *hyd__ssm_kern_avx2(void);

/* Whether a layer's state copy of this many bytes is written past the caches on a step's last
 * token: one at least the size of a core's L2 is long gone from the caches when the next
 * token reads it (tens of such layers, and the weights between), so reading its lines in
 * before writing them is wasted traffic.  Smaller states partly survive in L3 between tokens,
 * and streaming them measured slower (docs/PERFORMANCE.md). */
#define HYD_SSM_STREAM_MIN_BYTES (512u << 10)

/* The copy a step writes: the other one, or in place the current one.  The kernels read each
 * state element before they write it, so in place they see what two copies would give them
 * (multi-token steps already read what the step wrote). */
static inline uint32_t hyd__ssm_write_copy(const struct hyd_mixer_seq *s)
{
	return s->flags & HYD_SEQ_STATE_IN_PLACE ? s->state_index : s->state_index ^ 1;
}

/* Whether a step of this sequence streams its copy of copy_floats (HYD_SSM_STREAM_MIN_BYTES):
 * never in place, where the lines written were read moments before and are in the caches. */
static inline bool hyd__ssm_streams(const struct hyd_mixer_seq *s, uint64_t copy_floats)
{
	return !(s->flags & HYD_SEQ_STATE_IN_PLACE) && copy_floats * sizeof(float) >= HYD_SSM_STREAM_MIN_BYTES;
}

static inline float hyd__ssm_silu(float x)
{
	return x / (1.0f + __builtin_expf(-x));
}

#endif
