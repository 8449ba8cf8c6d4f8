/* The scan's per-element kernels (see struct hyd__ssm_kern in ssm.h): a plain C table and, where
 * the CPU has AVX2 and FMA (checked at run time), a vectorised one.
 *
 * The state updates keep the arithmetic they always had.  SiLU and softplus compute exp (and
 * log1p) in double precision and round once to float: that is expf's (and log1pf's) result
 * rounded correctly, which glibc's float functions also return in all but rare cases, so the
 * vectorised activations agree with the scalar ones to the bit nearly always and otherwise by
 * one ulp (tests/check_ssm.c counts both). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/exp_avx2.h"
#include "engine/hsum_avx2.h"
#include "engine/kernels.h"
#include "plugins/ssm/ssm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#endif

/* ---------------------------------------------------------------- plain C */

static float update_dot1(float *h_out, const float *h_in, const float *a, float dt, float bx, const float *bv,
			 const float *c, uint32_t n)
{
	float y = 0.0f;
	for (uint32_t i = 0; i < n; i++) {
		h_out[i] = expf(dt * a[i]) * h_in[i] + bx * bv[i];
		y += h_out[i] * c[i];
	}
	return y;
}

static void update_dot_scalar(float *h_out, const float *h_in, const float *a, const float *dt, const float *x,
			      const float *bv, const float *c, uint32_t n_ch, uint32_t ds, float *y, bool stream)
{
	(void)stream;
	for (uint32_t ch = 0; ch < n_ch; ch++) {
		const uint64_t o = (uint64_t)ch * ds;
		y[ch] = update_dot1(h_out + o, h_in + o, a + o, dt[ch], dt[ch] * x[ch], bv, c, ds);
	}
}

static float decay_dot1(float *s_out, const float *s_in, float da, float bx, const float *bv, const float *c,
			uint32_t n)
{
	float y = 0.0f;
	for (uint32_t i = 0; i < n; i++) {
		s_out[i] = s_in[i] * da + bx * bv[i];
		y += s_out[i] * c[i];
	}
	return y;
}

static float decay_dot_scalar(float *s_out, const float *s_in, float da, float bx, const float *bv, const float *c,
			      uint32_t n, bool stream)
{
	(void)stream;
	return decay_dot1(s_out, s_in, da, bx, bv, c, n);
}

static void no_fence(void)
{
}

static void conv_step_scalar(const float *in, float *out, const float *w, const float *bias, const float *tail_src,
			     float *tail_dst, uint32_t d_conv, uint32_t n)
{
	const uint32_t k1 = d_conv - 1;
	for (uint32_t c = 0; c < n; c++) {
		const float *wc = w + (uint64_t)c * d_conv, *t = tail_src + (uint64_t)c * k1;
		float acc = bias ? bias[c] : 0.0f;
		for (uint32_t k = 0; k < k1; k++)
			acc += wc[k] * t[k];
		acc += wc[k1] * in[c];
		out[c] = acc;
	}
	if (k1 && n) {
		/* a move: in place (HYD_SEQ_STATE_IN_PLACE) the two tails are one */
		memmove(tail_dst, tail_src + 1, ((uint64_t)n * k1 - 1) * sizeof(float));
		for (uint32_t c = 0; c < n; c++)
			tail_dst[(uint64_t)c * k1 + k1 - 1] = in[c];
	}
}

static void silu_scalar(float *y, const float *x, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		y[i] = hyd__ssm_silu(x[i]);
}

static void silu_mul_scalar(float *y, const float *z, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		y[i] *= hyd__ssm_silu(z[i]);
}

static void softplus_scalar(float *y, const float *x, const float *bias, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		y[i] = hyd_softplus(x[i] + bias[i]);
}

static const struct hyd__ssm_kern kern_scalar = {
	.name = "scalar",
	.update_dot = update_dot_scalar,
	.decay_dot = decay_dot_scalar,
	.conv_step = conv_step_scalar,
	.silu = silu_scalar,
	.silu_mul = silu_mul_scalar,
	.softplus = softplus_scalar,
	.stream_fence = no_fence,
};

/* ---------------------------------------------------------------- AVX2 + FMA */

#if defined(__x86_64__)

/* 8 state values to memory: with a non-temporal store when the caller streams (the pointer is
 * then 32-byte aligned), so the line is not read in first */
#define STATE_STORE(NT, P, V) ((NT) ? _mm256_stream_ps((P), (V)) : _mm256_storeu_ps((P), (V)))

/* stream only where every vector store of the call is aligned (rows of a multiple of 8) */
static inline bool can_stream(bool stream, const float *p, uint32_t n)
{
	return stream && ((uintptr_t)p & 31) == 0 && n % 8 == 0;
}

AVX2 static inline __attribute__((always_inline)) float decay_dot_body(float *s_out, const float *s_in, float da,
								     float bx, const float *bv, const float *c,
								     uint32_t n, const bool nt)
{
	const __m256 vda = _mm256_set1_ps(da), vbx = _mm256_set1_ps(bx);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
	uint32_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256 s0 = _mm256_mul_ps(_mm256_loadu_ps(s_in + i), vda);
		__m256 s1 = _mm256_mul_ps(_mm256_loadu_ps(s_in + i + 8), vda);
		s0 = _mm256_fmadd_ps(vbx, _mm256_loadu_ps(bv + i), s0);
		s1 = _mm256_fmadd_ps(vbx, _mm256_loadu_ps(bv + i + 8), s1);
		STATE_STORE(nt, s_out + i, s0);
		STATE_STORE(nt, s_out + i + 8, s1);
		acc0 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(c + i), acc0);
		acc1 = _mm256_fmadd_ps(s1, _mm256_loadu_ps(c + i + 8), acc1);
	}
	for (; i + 8 <= n; i += 8) {
		__m256 s0 = _mm256_fmadd_ps(vbx, _mm256_loadu_ps(bv + i), _mm256_mul_ps(_mm256_loadu_ps(s_in + i), vda));
		STATE_STORE(nt, s_out + i, s0);
		acc0 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(c + i), acc0);
	}
	float y = hyd__hsum8_ps(_mm256_add_ps(acc0, acc1));
	if (i < n)
		y += decay_dot1(s_out + i, s_in + i, da, bx, bv + i, c + i, n - i);
	return y;
}

AVX2 static float decay_dot_avx2(float *s_out, const float *s_in, float da, float bx, const float *bv,
				 const float *c, uint32_t n, bool stream)
{
	if (can_stream(stream, s_out, n))
		return decay_dot_body(s_out, s_in, da, bx, bv, c, n, true);
	return decay_dot_body(s_out, s_in, da, bx, bv, c, n, false);
}

static void sfence(void)
{
	_mm_sfence();
}

/* The update's exp(dt a) as 2^t with t = (dt log2(e)) a: the log2(e) goes into the
 * channel's dt once, which spares the per-element multiply and the two-step reduction by ln 2
 * of an exp (bench/ssm_bench on Zen 4: 0.41 -> 0.33 ns per state element with AVX-512, 0.53
 * -> 0.37 with AVX2).  Two roundings (dt log2(e), then times a) instead of one perturb t by
 * ~2^-23 |t|, which is also the size of the rounding already in the scalar kernel's dt a.
 *
 * 2^t for the float lanes of a V (PFX the intrinsics' prefix, ROUND to nearest integer, CASTP
 * and CASTI between the float and integer views): t = k + r with k an integer and |r| <= 1/2
 * (r exact), 2^r by a degree-6 polynomial (relative error 5e-9: Chebyshev interpolation of
 * (2^r - 1) / r on [-1/2, 1/2], in Estrin's form for a shorter dependency chain), and 2^k
 * added to its exponent field.  t is clamped from below at -125, where that addition still
 * gives a normal float; above, t <= 0 because dt >= 0 (a softplus) and a <= 0 (m1_bind checks
 * every A of the model), so no clamp is spent there.  exp2_8 (AVX2) and exp2_16 (AVX-512)
 * are this one body, so the same bits lane for lane. */
#define LOG2E 1.44269504088896341f

#define EXP2_PS(NAME, ATTR, V, PFX, ROUND, CASTP, CASTI)                                                 \
	ATTR static inline V NAME(V t)                                                                   \
	{                                                                                                \
		t = PFX##_max_ps(t, PFX##_set1_ps(-125.0f));                                             \
		const V k = ROUND(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);                     \
		const V r = PFX##_sub_ps(t, k), r2 = PFX##_mul_ps(r, r);                                 \
		const V q0 = PFX##_fmadd_ps(PFX##_set1_ps(6.9314719e-1f), r, PFX##_set1_ps(1.0f));       \
		const V q1 = PFX##_fmadd_ps(PFX##_set1_ps(5.5503571e-2f), r, PFX##_set1_ps(2.4022651e-1f)); \
		const V q2 = PFX##_fmadd_ps(PFX##_set1_ps(1.3390864e-3f), r, PFX##_set1_ps(9.6180826e-3f)); \
		const V hi = PFX##_fmadd_ps(PFX##_set1_ps(1.5453163e-4f), r2, q2);                       \
		const V p = PFX##_fmadd_ps(hi, PFX##_mul_ps(r2, r2), PFX##_fmadd_ps(q1, r2, q0));        \
		return CASTI(PFX##_add_epi32(CASTP(p), PFX##_slli_epi32(PFX##_cvtps_epi32(k), 23)));     \
	}

EXP2_PS(exp2_8, AVX2, __m256, _mm256, _mm256_round_ps, _mm256_castps_si256, _mm256_castsi256_ps)

/* One 8-state slice of one channel: h_out = exp(dt a) h_in + bx bv; acc += h_out c (vdt holds
 * dt log2(e), see EXP2_PS). */
AVX2 static inline __m256 update8(float *h_out, const float *h_in, const float *a, __m256 vdt, __m256 vbx,
				  __m256 bv, __m256 c, __m256 acc, const bool nt)
{
	const __m256 da = exp2_8(_mm256_mul_ps(vdt, _mm256_loadu_ps(a)));
	__m256 hv = _mm256_mul_ps(da, _mm256_loadu_ps(h_in));
	hv = _mm256_fmadd_ps(vbx, bv, hv);
	STATE_STORE(nt, h_out, hv);
	return _mm256_fmadd_ps(hv, c, acc);
}

AVX2 static float update_dot1_avx2(float *h_out, const float *h_in, const float *a, float dt, float bx,
				   const float *bv, const float *c, uint32_t n)
{
	const __m256 vdt = _mm256_set1_ps(dt * LOG2E), vbx = _mm256_set1_ps(bx);
	__m256 acc = _mm256_setzero_ps();
	uint32_t i = 0;
	for (; i + 8 <= n; i += 8)
		acc = update8(h_out + i, h_in + i, a + i, vdt, vbx, _mm256_loadu_ps(bv + i), _mm256_loadu_ps(c + i), acc,
			      false);
	float y = hyd__hsum8_ps(acc);
	if (i < n)
		y += update_dot1(h_out + i, h_in + i, a + i, dt, bx, bv + i, c + i, n - i);
	return y;
}

/* The channels in fours (returns how many were done; nt: h_out with non-temporal stores), in
 * slices of STEP states of type V by UPDATE (update8 or update16), for ds a multiple of STEP.
 * Four channels side by side: each one's exp chains are long and the channels are
 * independent, so interleaving them fills the pipes (each channel's arithmetic and order are
 * update_dot1_avx2's, so the same bits). */
#define UPDATE4_BODY(NAME, ATTR, V, PFX, STEP, UPDATE)                                                   \
	ATTR static inline __attribute__((always_inline)) uint32_t NAME(                                 \
		float *h_out, const float *h_in, const float *a, const float *dt, const float *x,        \
		const float *bv, const float *c, uint32_t n_ch, uint32_t ds, float *y, const bool nt)    \
	{                                                                                                \
		uint32_t ch = 0;                                                                         \
		if (ds % (STEP) == 0)                                                                    \
			for (; ch + 4 <= n_ch; ch += 4) {                                                \
				const uint64_t o = (uint64_t)ch * ds;                                    \
				const V t0 = PFX##_set1_ps(dt[ch] * LOG2E);                             \
				const V t1 = PFX##_set1_ps(dt[ch + 1] * LOG2E);                         \
				const V t2 = PFX##_set1_ps(dt[ch + 2] * LOG2E);                         \
				const V t3 = PFX##_set1_ps(dt[ch + 3] * LOG2E);                         \
				const V x0 = PFX##_set1_ps(dt[ch] * x[ch]);                              \
				const V x1 = PFX##_set1_ps(dt[ch + 1] * x[ch + 1]);                      \
				const V x2 = PFX##_set1_ps(dt[ch + 2] * x[ch + 2]);                      \
				const V x3 = PFX##_set1_ps(dt[ch + 3] * x[ch + 3]);                      \
				__m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;              \
				for (uint32_t i = 0; i < ds; i += (STEP)) {                              \
					const V b = PFX##_loadu_ps(bv + i), cc = PFX##_loadu_ps(c + i);  \
					const uint64_t s0 = o + i, s1 = s0 + ds, s2 = s1 + ds, s3 = s2 + ds; \
					c0 = UPDATE(h_out + s0, h_in + s0, a + s0, t0, x0, b, cc, c0, nt); \
					c1 = UPDATE(h_out + s1, h_in + s1, a + s1, t1, x1, b, cc, c1, nt); \
					c2 = UPDATE(h_out + s2, h_in + s2, a + s2, t2, x2, b, cc, c2, nt); \
					c3 = UPDATE(h_out + s3, h_in + s3, a + s3, t3, x3, b, cc, c3, nt); \
				}                                                                        \
				_mm_storeu_ps(y + ch, hyd__hsum8x4_ps(c0, c1, c2, c3));                  \
			}                                                                                \
		return ch;                                                                               \
	}

UPDATE4_BODY(update4_body, AVX2, __m256, _mm256, 8, update8)

AVX2 static void update_dot_avx2(float *h_out, const float *h_in, const float *a, const float *dt, const float *x,
				 const float *bv, const float *c, uint32_t n_ch, uint32_t ds, float *y, bool stream)
{
	/* the channels left over from the fours (and every channel when ds % 8 != 0) are stored
	 * as usual */
	uint32_t ch = can_stream(stream, h_out, ds) ? update4_body(h_out, h_in, a, dt, x, bv, c, n_ch, ds, y, true)
						     : update4_body(h_out, h_in, a, dt, x, bv, c, n_ch, ds, y, false);
	for (; ch < n_ch; ch++) {
		const uint64_t o = (uint64_t)ch * ds;
		y[ch] = update_dot1_avx2(h_out + o, h_in + o, a + o, dt[ch], dt[ch] * x[ch], bv, c, ds);
	}
}

/* ---------------------------------------------------------------- AVX-512 */

/* The scan's update on 16 lanes: exp2_8's and update8's arithmetic lane for lane (exp2_16 and
 * update4_body16 are the same macros' bodies), so the same bits as the AVX2 kernel.  On
 * Zen 4, which splits a 512-bit operation in two, the gain is not in the arithmetic pipes
 * but in the instruction window: the four channels' exp chains fit in half the
 * instructions, so more of them are in flight. */
#define AVX512 __attribute__((target("avx2,fma,avx512f,avx512dq,avx512vl")))

EXP2_PS(exp2_16, AVX512, __m512, _mm512, _mm512_roundscale_ps, _mm512_castps_si512, _mm512_castsi512_ps)

/* 16 states of one channel (update8 on two halves at once); acc gets the two halves' dot
 * products in update_dot1_avx2's order: the low 8 lanes first, then the high ones */
AVX512 static inline __m256 update16(float *h_out, const float *h_in, const float *a, __m512 vdt, __m512 vbx,
				     __m512 bv, __m512 c, __m256 acc, const bool nt)
{
	const __m512 da = exp2_16(_mm512_mul_ps(vdt, _mm512_loadu_ps(a)));
	__m512 hv = _mm512_mul_ps(da, _mm512_loadu_ps(h_in));
	hv = _mm512_fmadd_ps(vbx, bv, hv);
	if (nt)
		_mm512_stream_ps(h_out, hv);
	else
		_mm512_storeu_ps(h_out, hv);
	acc = _mm256_fmadd_ps(_mm512_castps512_ps256(hv), _mm512_castps512_ps256(c), acc);
	return _mm256_fmadd_ps(_mm512_extractf32x8_ps(hv, 1), _mm512_extractf32x8_ps(c, 1), acc);
}

UPDATE4_BODY(update4_body16, AVX512, __m512, _mm512, 16, update16)

AVX512 static void update_dot_avx512(float *h_out, const float *h_in, const float *a, const float *dt,
				     const float *x, const float *bv, const float *c, uint32_t n_ch, uint32_t ds,
				     float *y, bool stream)
{
	/* states of a multiple of 16, streamed only from 64-byte boundaries; the rest as AVX2 */
	if (ds % 16 || (stream && ((uintptr_t)h_out & 63))) {
		update_dot_avx2(h_out, h_in, a, dt, x, bv, c, n_ch, ds, y, stream);
		return;
	}
	uint32_t ch = stream ? update4_body16(h_out, h_in, a, dt, x, bv, c, n_ch, ds, y, true)
			     : update4_body16(h_out, h_in, a, dt, x, bv, c, n_ch, ds, y, false);
	for (; ch < n_ch; ch++) {
		const uint64_t o = (uint64_t)ch * ds;
		y[ch] = update_dot1_avx2(h_out + o, h_in + o, a + o, dt[ch], dt[ch] * x[ch], bv, c, ds);
	}
}

/* log(1 + e) in double for the lanes of a V, 0 <= e < 2^60: u = 1 + e rounded, log(u) from
 * u = 2^k m with m in [sqrt(1/2), sqrt(2)) and log(m) = 2 atanh(f / (2 + f)), f = m - 1, by
 * its series to s^19; the rounding of 1 + e is put back as (e - (u - 1)) / u.  One body for
 * both widths (the lane selection by a vector mask on AVX2, a mask register on AVX-512:
 * CMPGT, BLEND, INC), so each lane gets the same bits. */
#define LOG1P_PD(NAME, ATTR, V, VI, PFX, CASTPI, CASTIP, AND, OR, SET1_64, MASK, CMPGT, BLEND, INC)      \
	ATTR static inline V NAME(V e)                                                                   \
	{                                                                                                \
		const V one = PFX##_set1_pd(1.0);                                                        \
		const V u = PFX##_add_pd(one, e);                                                        \
		const V corr = PFX##_div_pd(PFX##_sub_pd(e, PFX##_sub_pd(u, one)), u);                   \
		const VI bits = CASTPI(u);                                                               \
		VI ex = PFX##_srli_epi64(bits, 52); /* u >= 1: no sign bit */                            \
		V m = CASTIP(OR(AND(bits, SET1_64(0x000fffffffffffffll)), SET1_64(0x3ff0000000000000ll))); \
		const MASK big = CMPGT(m, PFX##_set1_pd(1.4142135623730951));                            \
		m = BLEND(big, m, PFX##_mul_pd(m, PFX##_set1_pd(0.5)));                                  \
		ex = INC(ex, big); /* the halved lanes: + 1 */                                           \
		/* small non-negative integer to double through the 2^52 trick */                        \
		const V two52 = PFX##_set1_pd(4503599627370496.0);                                       \
		const V kd = PFX##_sub_pd(PFX##_sub_pd(CASTIP(OR(ex, CASTPI(two52))), two52),            \
					  PFX##_set1_pd(1023.0));                                        \
		const V f = PFX##_sub_pd(m, one);                                                        \
		const V s = PFX##_div_pd(f, PFX##_add_pd(PFX##_set1_pd(2.0), f));                        \
		const V s2 = PFX##_mul_pd(s, s);                                                         \
		/* p = sum s2^j / (2j + 1) for 1 <= j <= 9, divided by s2, in Estrin's form */           \
		const V s4 = PFX##_mul_pd(s2, s2), s8 = PFX##_mul_pd(s4, s4);                            \
		const V a0 = PFX##_fmadd_pd(s2, PFX##_set1_pd(1.0 / 5.0), PFX##_set1_pd(1.0 / 3.0));     \
		const V a1 = PFX##_fmadd_pd(s2, PFX##_set1_pd(1.0 / 9.0), PFX##_set1_pd(1.0 / 7.0));     \
		const V a2 = PFX##_fmadd_pd(s2, PFX##_set1_pd(1.0 / 13.0), PFX##_set1_pd(1.0 / 11.0));   \
		const V a3 = PFX##_fmadd_pd(s2, PFX##_set1_pd(1.0 / 17.0), PFX##_set1_pd(1.0 / 15.0));   \
		const V b0 = PFX##_fmadd_pd(a1, s4, a0), b1 = PFX##_fmadd_pd(a3, s4, a2);                \
		const V p = PFX##_fmadd_pd(PFX##_fmadd_pd(PFX##_set1_pd(1.0 / 19.0), s8, b1), s8, b0);   \
		/* log(m) = 2s + 2s s2 p */                                                              \
		const V two_s = PFX##_add_pd(s, s);                                                      \
		V lm = PFX##_fmadd_pd(PFX##_mul_pd(two_s, s2), p, corr);                                 \
		lm = PFX##_add_pd(lm, two_s);                                                            \
		lm = PFX##_fmadd_pd(kd, PFX##_set1_pd(0x1.ef35793c76730p-45), lm);                       \
		return PFX##_fmadd_pd(kd, PFX##_set1_pd(0x1.62e42fefa3800p-1), lm);                      \
	}

#define CMPGT_AVX2(A, B) _mm256_cmp_pd(A, B, _CMP_GT_OQ)
#define BLEND_AVX2(M, A, B) _mm256_blendv_pd(A, B, M)
#define INC_AVX2(X, M) _mm256_sub_epi64(X, _mm256_castpd_si256(M)) /* all-ones lanes */
LOG1P_PD(log1p4d, AVX2, __m256d, __m256i, _mm256, _mm256_castpd_si256, _mm256_castsi256_pd, _mm256_and_si256,
	 _mm256_or_si256, _mm256_set1_epi64x, __m256d, CMPGT_AVX2, BLEND_AVX2, INC_AVX2)

#define CMPGT_AVX512(A, B) _mm512_cmp_pd_mask(A, B, _CMP_GT_OQ)
#define INC_AVX512(X, M) _mm512_mask_add_epi64(X, M, X, _mm512_set1_epi64(1))
LOG1P_PD(log1p8d, AVX512, __m512d, __m512i, _mm512, _mm512_castpd_si512, _mm512_castsi512_pd, _mm512_and_si512,
	 _mm512_or_si512, _mm512_set1_epi64, __mmask8, CMPGT_AVX512, _mm512_mask_blend_pd, INC_AVX512)

/* AVX2 without FMA: GCC would otherwise fuse the products and sums below into FMAs (its
 * default -ffp-contract=fast applies to the intrinsics' vector operators), and the scalar
 * sums round each product first. */
#define AVX2_NO_FMA __attribute__((target("avx2")))

/* d_conv = 4, 8 channels at a time: the tails ([channel][3]) and weights ([channel][4]) are
 * split into one vector per tap by permutes and blends, the sums are the scalar ones lane by
 * lane, and the new tails are interleaved back.  The rest goes to the scalar step. */
AVX2_NO_FMA static void conv_step_avx2(const float *in, float *out, const float *w, const float *bias,
				       const float *tail_src, float *tail_dst, uint32_t d_conv, uint32_t n)
{
	uint32_t c = 0;
	if (d_conv == 4) {
#define IDX(a, b, c, d, e, f, g, h) _mm256_setr_epi32(a, b, c, d, e, f, g, h)
		/* tap k of channel j is element 3j + k of the 24 tail floats (v0, v1, v2) */
		const __m256i t0a = IDX(0, 3, 6, 0, 0, 0, 0, 0), t0b = IDX(0, 0, 0, 1, 4, 7, 0, 0), t0c = IDX(0, 0, 0, 0, 0, 0, 2, 5);
		const __m256i t1a = IDX(1, 4, 7, 0, 0, 0, 0, 0), t1b = IDX(0, 0, 0, 2, 5, 0, 0, 0), t1c = IDX(0, 0, 0, 0, 0, 0, 3, 6);
		const __m256i t2a = IDX(2, 5, 0, 0, 0, 0, 0, 0), t2b = IDX(0, 0, 0, 3, 6, 0, 0, 0), t2c = IDX(0, 0, 0, 0, 0, 1, 4, 7);
		/* new tail element 3j + k: tap 1 (k = 0), tap 2 (k = 1), the input (k = 2) */
		const __m256i o0a = IDX(0, 0, 0, 1, 0, 0, 2, 0), o0b = IDX(0, 0, 0, 0, 1, 0, 0, 2), o0c = IDX(0, 0, 0, 0, 0, 1, 0, 0);
		const __m256i o1a = IDX(0, 3, 0, 0, 4, 0, 0, 5), o1b = IDX(0, 0, 3, 0, 0, 4, 0, 0), o1c = IDX(2, 0, 0, 3, 0, 0, 4, 0);
		const __m256i o2a = IDX(0, 0, 6, 0, 0, 7, 0, 0), o2b = IDX(5, 0, 0, 6, 0, 0, 7, 0), o2c = IDX(0, 5, 0, 0, 6, 0, 0, 7);
		/* channel order after the in-lane 4 x 4 transposes: 0 2 4 6 1 3 5 7 */
		const __m256i unzip = IDX(0, 4, 1, 5, 2, 6, 3, 7);
#undef IDX
		for (; c + 8 <= n; c += 8) {
			const float *t = tail_src + 3 * (uint64_t)c;
			const __m256 v0 = _mm256_loadu_ps(t), v1 = _mm256_loadu_ps(t + 8), v2 = _mm256_loadu_ps(t + 16);
			/* the blends take positions 3-5 from v1, then 5 or 6 onwards from v2 */
			const __m256 tap0 = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(v0, t0a),
									 _mm256_permutevar8x32_ps(v1, t0b), 0x38),
							    _mm256_permutevar8x32_ps(v2, t0c), 0xc0);
			const __m256 tap1 = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(v0, t1a),
									 _mm256_permutevar8x32_ps(v1, t1b), 0x18),
							    _mm256_permutevar8x32_ps(v2, t1c), 0xe0);
			const __m256 tap2 = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(v0, t2a),
									 _mm256_permutevar8x32_ps(v1, t2b), 0x1c),
							    _mm256_permutevar8x32_ps(v2, t2c), 0xe0);
			const float *wc = w + 4 * (uint64_t)c;
			const __m256 u0 = _mm256_loadu_ps(wc), u1 = _mm256_loadu_ps(wc + 8);
			const __m256 u2 = _mm256_loadu_ps(wc + 16), u3 = _mm256_loadu_ps(wc + 24);
			const __m256 l01 = _mm256_unpacklo_ps(u0, u1), h01 = _mm256_unpackhi_ps(u0, u1);
			const __m256 l23 = _mm256_unpacklo_ps(u2, u3), h23 = _mm256_unpackhi_ps(u2, u3);
			const __m256 w0 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(l01, l23, 0x44), unzip);
			const __m256 w1 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(l01, l23, 0xee), unzip);
			const __m256 w2 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(h01, h23, 0x44), unzip);
			const __m256 w3 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(h01, h23, 0xee), unzip);
			const __m256 x = _mm256_loadu_ps(in + c);
			__m256 acc = bias ? _mm256_loadu_ps(bias + c) : _mm256_setzero_ps();
			acc = _mm256_add_ps(acc, _mm256_mul_ps(w0, tap0));
			acc = _mm256_add_ps(acc, _mm256_mul_ps(w1, tap1));
			acc = _mm256_add_ps(acc, _mm256_mul_ps(w2, tap2));
			acc = _mm256_add_ps(acc, _mm256_mul_ps(w3, x));
			_mm256_storeu_ps(out + c, acc);
			float *d = tail_dst + 3 * (uint64_t)c;
			_mm256_storeu_ps(d, _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(tap1, o0a),
									   _mm256_permutevar8x32_ps(tap2, o0b), 0x92),
							     _mm256_permutevar8x32_ps(x, o0c), 0x24));
			_mm256_storeu_ps(d + 8, _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(tap1, o1a),
									       _mm256_permutevar8x32_ps(tap2, o1b), 0x24),
								 _mm256_permutevar8x32_ps(x, o1c), 0x49));
			_mm256_storeu_ps(d + 16, _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(tap1, o2a),
										_mm256_permutevar8x32_ps(tap2, o2b), 0x49),
								  _mm256_permutevar8x32_ps(x, o2c), 0x92));
		}
	}
	if (c < n)
		conv_step_scalar(in + c, out + c, w + (uint64_t)c * d_conv, bias ? bias + c : NULL,
				 tail_src + (uint64_t)c * (d_conv - 1), tail_dst + (uint64_t)c * (d_conv - 1), d_conv, n - c);
}

AVX2 static void silu_avx2(float *y, const float *x, uint32_t n)
{
	uint32_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, hyd__silu8(_mm256_loadu_ps(x + i)));
	if (i < n)
		silu_scalar(y + i, x + i, n - i);
}

AVX2 static void silu_mul_avx2(float *y, const float *z, uint32_t n)
{
	uint32_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), hyd__silu8(_mm256_loadu_ps(z + i))));
	if (i < n)
		silu_mul_scalar(y + i, z + i, n - i);
}

/* hyd_softplus: x > 20 ? x : log1pf(expf(x)), with expf rounded to float first as there */
AVX2 static inline __m128 softplus4(__m128 v)
{
	const __m128 ef = _mm256_cvtpd_ps(hyd__exp4d(_mm256_cvtps_pd(v)));
	const __m128 sp = _mm256_cvtpd_ps(log1p4d(_mm256_cvtps_pd(ef)));
	return _mm_blendv_ps(sp, v, _mm_cmpgt_ps(v, _mm_set1_ps(20.0f)));
}

AVX2 static void softplus_avx2(float *y, const float *x, const float *bias, uint32_t n)
{
	uint32_t i = 0;
	for (; i + 4 <= n; i += 4)
		_mm_storeu_ps(y + i, softplus4(_mm_add_ps(_mm_loadu_ps(x + i), _mm_loadu_ps(bias + i))));
	if (i < n)
		softplus_scalar(y + i, x + i, bias + i, n - i);
}

/* The activations on 512-bit registers (16 floats, 8 doubles), the AVX2 ones' arithmetic lane
 * for lane (hyd__silu16, hyd__exp8d and log1p8d share their bodies with the AVX2 ones), so
 * the same bits; the rest of a row goes to the AVX2 kernels.  Like the update, they gain
 * on Zen 4 by the instruction window: a softplus lane is a chain of two divisions and two
 * polynomials, and half the instructions hold twice the lanes in flight. */
AVX512 static void silu_avx512(float *y, const float *x, uint32_t n)
{
	uint32_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, hyd__silu16(_mm512_loadu_ps(x + i)));
	if (i < n)
		silu_avx2(y + i, x + i, n - i);
}

AVX512 static void silu_mul_avx512(float *y, const float *z, uint32_t n)
{
	uint32_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), hyd__silu16(_mm512_loadu_ps(z + i))));
	if (i < n)
		silu_mul_avx2(y + i, z + i, n - i);
}

/* softplus4 on 8 lanes */
AVX512 static inline __m256 softplus8(__m256 v)
{
	const __m256 ef = _mm512_cvtpd_ps(hyd__exp8d(_mm512_cvtps_pd(v)));
	const __m256 sp = _mm512_cvtpd_ps(log1p8d(_mm512_cvtps_pd(ef)));
	return _mm256_blendv_ps(sp, v, _mm256_cmp_ps(v, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
}

AVX512 static void softplus_avx512(float *y, const float *x, const float *bias, uint32_t n)
{
	uint32_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, softplus8(_mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(bias + i))));
	if (i < n)
		softplus_avx2(y + i, x + i, bias + i, n - i);
}

static const struct hyd__ssm_kern kern_avx2 = {
	.name = "avx2",
	.update_dot = update_dot_avx2,
	.decay_dot = decay_dot_avx2,
	.conv_step = conv_step_avx2,
	.silu = silu_avx2,
	.silu_mul = silu_mul_avx2,
	.softplus = softplus_avx2,
	.stream_fence = sfence,
};

/* AVX2's table with the 16-lane update and activations (the same bits) */
static const struct hyd__ssm_kern kern_avx512 = {
	.name = "avx512",
	.update_dot = update_dot_avx512,
	.decay_dot = decay_dot_avx2,
	.conv_step = conv_step_avx2,
	.silu = silu_avx512,
	.silu_mul = silu_mul_avx512,
	.softplus = softplus_avx512,
	.stream_fence = sfence,
};
#endif

const struct hyd__ssm_kern *hyd__ssm_kern_at(bool simd)
{
	if (!simd)
		return &kern_scalar;
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
		const char *cap = getenv("HYD_SIMD");
		if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
		    __builtin_cpu_supports("avx512vl") && !(cap && !strcmp(cap, "avx2")))
			return &kern_avx512;
		return &kern_avx2;
	}
#endif
	return NULL;
}

const struct hyd__ssm_kern *hyd__ssm_kern_avx2(void)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return &kern_avx2;
#endif
	return NULL;
}

static const struct hyd__ssm_kern *kern_pick(void)
{
	/* HYD_SIMD=scalar caps every kernel at the reference path (tests, benchmarks) */
	const char *cap = getenv("HYD_SIMD");
	const struct hyd__ssm_kern *k = cap && !strcmp(cap, "scalar") ? NULL : hyd__ssm_kern_at(true);
	return k ? k : &kern_scalar;
}

const struct hyd__ssm_kern *hyd__ssm_kern(void)
{
	static const struct hyd__ssm_kern *chosen;
	const struct hyd__ssm_kern *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
	if (__builtin_expect(!k, 0)) {
		k = kern_pick();
		__atomic_store_n(&chosen, k, __ATOMIC_RELEASE);
	}
	return k;
}
