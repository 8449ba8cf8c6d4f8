/* Numerical kernels shared by the daemon's block runner and the layer plugins.
 * Every kernel has a plain scalar reference (engine/kernels_ref.c); faster paths are picked
 * at run time from CPUID and are tested against the reference. */
#ifndef HYD_ENGINE_KERNELS_H
#define HYD_ENGINE_KERNELS_H

#include <stdint.h>

#include "hyd/plugin.h"
#include "engine/tensor.h"

/* Y[r][o] = sum_i W[o][i] * X[r][i] for r < n_rows.
 * W: ne = {n_in, n_out}, any computable type.  X: n_rows rows of n_in floats, row stride ldx.
 * Y: n_rows rows of n_out floats, row stride ldy.  Quantized weights are used in place; the
 * activations are converted once to the type's vec_dot_type.  par may be NULL (one thread).
 * Returns 0, -ENOTSUP (type hyd cannot compute with), -ENOMEM. */
int hyd_matmul(const struct hyd_parallel *par, const struct hyd_tensor *W, const float *X,
	       int64_t ldx, float *Y, int64_t ldy, int64_t n_rows);

/* hyd_matmul for rows of several sequences batched together.  llama.cpp sums F16 products in
 * one order for a step of one row and in another for a step of more (its gemm); alone[r] != 0
 * says row r is alone in its sequence's step, so that a sequence's results do not depend on
 * what it is batched with.  alone NULL: the rows are one sequence's step. */
int hyd_matmul_rows(const struct hyd_parallel *par, const struct hyd_tensor *W, const float *X,
		    int64_t ldx, float *Y, int64_t ldy, int64_t n_rows, const uint8_t *alone);

/* hyd_matmul_rows for up to 4 weight matrices that read the same X (attention's Q, K and V;
 * an FFN's gate and up): X is converted once and all outputs are one job for the thread
 * pool, so small matrices share the cores instead of each paying a fork and join.  Y[k] (row
 * stride ldy[k]) gets W[k] X; every output has the bits hyd_matmul_rows would give it.
 * Matrices of different types or row lengths are run one after another.  -EINVAL for n_w
 * outside 1..4, else as hyd_matmul_rows. */
int hyd_matmul_multi(const struct hyd_parallel *par, uint32_t n_w, const struct hyd_tensor *const *W,
		     const float *X, int64_t ldx, float *const *Y, const int64_t *ldy, int64_t n_rows,
		     const uint8_t *alone);

/* Row r of a 2-D tensor (ne[0] elements) as floats. -ERANGE, -ENOTSUP. */
int hyd_tensor_row(const struct hyd_tensor *W, int64_t r, float *out);

/* All of a 1-D (or any) F32 tensor as a float pointer, or NULL if the type is not F32. */
const float *hyd_tensor_f32(const struct hyd_tensor *t);

/* y = x / rms(x) * w   (w may be NULL: no scale).  y may equal x. */
void hyd_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
/* Rotary embedding in place on n_head heads of head_dim floats at position pos.
 * type HYD_ROPE_NORM rotates (x[2i], x[2i+1]); HYD_ROPE_NEOX rotates (x[i], x[i+n_rot/2]).
 * theta_i = pos * freq_scale * base^(-2i/n_rot), for i < n_rot/2; dims >= n_rot are untouched. */
void hyd_rope(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, float base,
	      float freq_scale, enum hyd_rope_type type);
/* x = softmax(x) over n entries (max-subtracted, in float). */
void hyd_softmax(float *x, int64_t n);
float hyd_dot_f32(const float *a, const float *b, int64_t n);
/* y[i] += a * x[i] */
void hyd_axpy_f32(float *y, float a, const float *x, int64_t n);
/* f16 vectors rounded as ggml's CPU backend rounds them, for attention over an f16 KV cache
 * (scalar definitions): y[i] = f16(y[i] + x[i] * a) with one rounding (FMA), and
 * y[i] = f16(y[i] * a). */
void hyd__mad_f16_ref(uint16_t *y, const uint16_t *x, float a, int64_t n);
void hyd__scale_f16_ref(uint16_t *y, float a, int64_t n);
/* n steps of attention's weighted V sum into the f16 accumulator acc (dv values), as ggml
 * does them key by key: step t is hyd__scale_f16_ref(acc, ms[t], dv) unless ms[t] is 1
 * (which would change nothing), then hyd__mad_f16_ref(acc, v[t], vs[t], dv).  The SIMD path
 * gives the same bits, keeping acc in registers from step to step. */
void hyd_f16acc_steps(uint16_t *acc, const uint16_t *const *v, const float *ms, const float *vs, int64_t n,
		      int64_t dv);
void hyd__f16acc_steps_ref(uint16_t *acc, const uint16_t *const *v, const float *ms, const float *vs, int64_t n,
			   int64_t dv);
/* x * sigmoid(x) as x / (1 + expf(-x)), in place.  The AVX2 path rounds exp once from double
 * (engine/exp_avx2.h): the same float as the scalar definition, hyd__silu_ref, for all but
 * about 1 in 10^4 inputs, which differ by an ulp or two. */
void hyd_silu(float *x, int64_t n);
void hyd__silu_ref(float *x, int64_t n);
void hyd_gelu_tanh(float *x, int64_t n);     /* GELU, tanh approximation, through ggml's f16 table */
float hyd_gelu_tanh_ref(float x);            /* GELU, tanh approximation, in float */
void hyd_gelu_erf(float *x, int64_t n);      /* GELU, exact */
float hyd_softplus(float x);                 /* log(1 + e^x), stable */

#endif
