/* Scalar references for the quantized types: dequantizers, quantizers and dot products.
 *
 * The dequantizers must reproduce the reference implementation bit for bit, so they keep its
 * operation order (e.g. Q4_K: (d*sc)*q - (dmin*m)) and must never be contracted into FMAs,
 * whatever flags the file is built with. */
#pragma GCC optimize("fp-contract=off")

#include "config.h"

#include <math.h>
#include <string.h>

#include "engine/quant.h"

static inline float f16(uint16_t h)
{
	return hyd_fp16_to_fp32(h);
}

/* ------------------------------------------------------------------ dequantizers */

void hyd__q8_0_to_float(const void *src, float *dst, int64_t n)
{
	const struct hyd_block_q8_0 *x = src;
	for (int64_t i = 0; i < n / HYD_QK; i++) {
		const float d = f16(x[i].d);
		for (int j = 0; j < HYD_QK; j++)
			dst[i * HYD_QK + j] = x[i].qs[j] * d;
	}
}

void hyd__q4_0_to_float(const void *src, float *dst, int64_t n)
{
	const struct hyd_block_q4_0 *x = src;
	for (int64_t i = 0; i < n / HYD_QK; i++) {
		const float d = f16(x[i].d);
		for (int j = 0; j < HYD_QK / 2; j++) {
			const int x0 = (x[i].qs[j] & 0xF) - 8;
			const int x1 = (x[i].qs[j] >> 4) - 8;
			dst[i * HYD_QK + j] = x0 * d;
			dst[i * HYD_QK + j + HYD_QK / 2] = x1 * d;
		}
	}
}

void hyd__q4_k_to_float(const void *src, float *dst, int64_t n)
{
	const struct hyd_block_q4_k *x = src;
	float *y = dst;
	for (int64_t i = 0; i < n / HYD_QK_K; i++) {
		const uint8_t *q = x[i].qs;
		const float d = f16(x[i].d);
		const float min = f16(x[i].dmin);
		for (int j = 0; j < 8; j += 2) {
			uint8_t sc, m;
			hyd__scale_min_k4(j, x[i].scales, &sc, &m);
			const float d1 = d * sc, m1 = min * m;
			hyd__scale_min_k4(j + 1, x[i].scales, &sc, &m);
			const float d2 = d * sc, m2 = min * m;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * (q[l] & 0xF) - m1;
			for (int l = 0; l < 32; l++)
				*y++ = d2 * (q[l] >> 4) - m2;
			q += 32;
		}
	}
}

void hyd__q5_k_to_float(const void *src, float *dst, int64_t n)
{
	const struct hyd_block_q5_k *x = src;
	float *y = dst;
	for (int64_t i = 0; i < n / HYD_QK_K; i++) {
		const uint8_t *ql = x[i].qs, *qh = x[i].qh;
		const float d = f16(x[i].d);
		const float min = f16(x[i].dmin);
		uint8_t u1 = 1, u2 = 2;
		for (int j = 0; j < 8; j += 2) {
			uint8_t sc, m;
			hyd__scale_min_k4(j, x[i].scales, &sc, &m);
			const float d1 = d * sc, m1 = min * m;
			hyd__scale_min_k4(j + 1, x[i].scales, &sc, &m);
			const float d2 = d * sc, m2 = min * m;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
			for (int l = 0; l < 32; l++)
				*y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
			ql += 32;
			u1 <<= 2;
			u2 <<= 2;
		}
	}
}

/* Element 128*g + 32*k + l of a Q6_K block (k = 0..3, l = 0..31), in 0..63. */
static inline int q6_k_get(const struct hyd_block_q6_k *b, int g, int k, int l)
{
	const uint8_t ql = b->ql[64 * g + 32 * (k & 1) + l];
	const uint8_t qh = b->qh[32 * g + l];
	return ((k < 2 ? ql & 0xF : ql >> 4) | (((qh >> (2 * k)) & 3) << 4));
}

void hyd__q6_k_to_float(const void *src, float *dst, int64_t n)
{
	const struct hyd_block_q6_k *x = src;
	for (int64_t i = 0; i < n / HYD_QK_K; i++) {
		const float d = f16(x[i].d);
		float *y = dst + i * HYD_QK_K;
		for (int g = 0; g < 2; g++) {
			const int8_t *sc = x[i].scales + 8 * g;
			for (int l = 0; l < 32; l++) {
				const int is = l / 16;
				for (int k = 0; k < 4; k++) {
					const int8_t q = (int8_t)(q6_k_get(&x[i], g, k, l) - 32);
					y[128 * g + 32 * k + l] = d * sc[is + 2 * k] * q;
				}
			}
		}
	}
}

void hyd__q8_k_to_float(const void *src, float *dst, int64_t n)
{
	const struct hyd_block_q8_k *x = src;
	for (int64_t i = 0; i < n / HYD_QK_K; i++)
		for (int j = 0; j < HYD_QK_K; j++)
			dst[i * HYD_QK_K + j] = x[i].d * x[i].qs[j];
}

/* ------------------------------------------------------------------ activation quantizers
 * Byte for byte what llama.cpp's CPU backend makes on x86, so that both round the same
 * activations the same way (rounding is where two correct implementations drift apart most).
 * Q8_0 is its AVX path: id = 127/amax (not 1/d) and round-half-even.  Q8_K is
 * quantize_row_q8_K_ref: scaled by -127/max, max being the first element of largest
 * magnitude, so d is negative when that element is positive.  Both stay within -127..127,
 * which the Q8_0 kernels' sign trick needs. */

void hyd__q8_0_from_float_ref(const float *src, void *dst, int64_t n)
{
	struct hyd_block_q8_0 *y = dst;
	for (int64_t i = 0; i < n / HYD_QK; i++) {
		const float *x = src + i * HYD_QK;
		float amax = 0;
		for (int j = 0; j < HYD_QK; j++)
			amax = fmaxf(amax, fabsf(x[j]));
		const float id = amax != 0 ? 127.0f / amax : 0.0f;
		y[i].d = hyd_fp32_to_fp16(amax / 127);
		for (int j = 0; j < HYD_QK; j++)
			y[i].qs[j] = (int8_t)lrintf(x[j] * id);
	}
}

void hyd__q8_k_from_float_ref(const float *src, void *dst, int64_t n)
{
	struct hyd_block_q8_k *y = dst;
	for (int64_t i = 0; i < n / HYD_QK_K; i++) {
		const float *x = src + i * HYD_QK_K;
		float amax = 0, max = 0;
		for (int j = 0; j < HYD_QK_K; j++) {
			if (fabsf(x[j]) > amax) {
				amax = fabsf(x[j]);
				max = x[j];
			}
		}
		if (amax == 0) { /* llama.cpp leaves bsums unset here; zero is what they sum to */
			memset(&y[i], 0, sizeof(y[i]));
			continue;
		}
		const float iscale = -127.0f / max;
		for (int j = 0; j < HYD_QK_K; j++) {
			const long v = lrintf(iscale * x[j]);
			y[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
		}
		for (int k = 0; k < HYD_QK_K / 16; k++) {
			int s = 0;
			for (int j = 0; j < 16; j++)
				s += y[i].qs[16 * k + j];
			y[i].bsums[k] = (int16_t)s;
		}
		y[i].d = 1.0f / iscale;
	}
}

/* ------------------------------------------------------------------ weight quantizers
 * For the model generator: not llama.cpp's search, but a per-(sub)block least-squares fit
 * that gives valid blocks with error close to the format's resolution. */

static inline int clampi(long v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : (int)v;
}

/* Q4_0: x ~ d*(q-8), q in 0..15.  Tries a few divisors of the extreme value. */
static void q4_0_block(const float *x, struct hyd_block_q4_0 *y)
{
	static const float div[] = { -8.0f, -7.75f, -7.5f, -7.25f, -7.0f, -6.5f, 7.0f, 7.5f };
	float amax = 0, max = 0;
	for (int j = 0; j < HYD_QK; j++) {
		if (fabsf(x[j]) > amax) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	}
	uint16_t best = 0;
	double best_err = INFINITY;
	for (size_t c = 0; c < sizeof(div) / sizeof(div[0]); c++) {
		const uint16_t h = hyd_fp32_to_fp16(max / div[c]);
		const float d = f16(h);
		const float id = d != 0 ? 1.0f / d : 0.0f;
		double err = 0;
		for (int j = 0; j < HYD_QK; j++) {
			const int q = clampi(lrintf(x[j] * id), -8, 7);
			const double e = x[j] - (double)q * d;
			err += e * e;
		}
		if (err < best_err) {
			best_err = err;
			best = h;
		}
	}
	y->d = best;
	const float d = f16(best);
	const float id = d != 0 ? 1.0f / d : 0.0f;
	for (int j = 0; j < HYD_QK / 2; j++) {
		const int q0 = clampi(lrintf(x[j] * id), -8, 7) + 8;
		const int q1 = clampi(lrintf(x[j + HYD_QK / 2] * id), -8, 7) + 8;
		y->qs[j] = (uint8_t)(q0 | (q1 << 4));
	}
}

void hyd__q4_0_from_float_ref(const float *src, void *dst, int64_t n)
{
	struct hyd_block_q4_0 *y = dst;
	for (int64_t i = 0; i < n / HYD_QK; i++)
		q4_0_block(src + i * HYD_QK, &y[i]);
}

static double fit_err(const float *x, int n, int nmax, float scale, float mn)
{
	double err = 0;
	const float is = scale > 0 ? 1.0f / scale : 0.0f;
	for (int j = 0; j < n; j++) {
		const int q = clampi(lrintf((x[j] + mn) * is), 0, nmax);
		const double e = x[j] - ((double)scale * q - mn);
		err += e * e;
	}
	return err;
}

/* x ~ scale*q - mn with q in 0..nmax, mn >= 0: start from the min/max range, then a few
 * least-squares refits of (scale, mn) to the current assignment. */
static void fit_scale_min(const float *x, int n, int nmax, float *ret_scale, float *ret_mn)
{
	float lo = 0, hi = x[0];
	for (int j = 0; j < n; j++) {
		lo = fminf(lo, x[j]);
		hi = fmaxf(hi, x[j]);
	}
	float scale = hi > lo ? (hi - lo) / nmax : 0, mn = -lo;
	double best = fit_err(x, n, nmax, scale, mn);
	for (int it = 0; it < 4 && scale > 0; it++) {
		double sq = 0, sqq = 0, sx = 0, sqx = 0;
		const float is = 1.0f / scale;
		for (int j = 0; j < n; j++) {
			const int q = clampi(lrintf((x[j] + mn) * is), 0, nmax);
			sq += q;
			sqq += (double)q * q;
			sx += x[j];
			sqx += (double)q * x[j];
		}
		const double det = n * sqq - sq * sq;
		if (det <= 0)
			break;
		double a = (n * sqx - sq * sx) / det;
		double b = (sx - a * sq) / n;
		if (b > 0) { /* the offset must be a non-negative min: refit the scale alone */
			b = 0;
			a = sqx / sqq;
		}
		if (!(a > 0))
			break;
		const double err = fit_err(x, n, nmax, (float)a, (float)-b);
		if (err >= best)
			break;
		best = err;
		scale = (float)a;
		mn = (float)-b;
	}
	*ret_scale = scale;
	*ret_mn = mn;
}

/* Shared by Q4_K/Q5_K: fits 8 sub-blocks of 32, quantizes scales/mins to 6 bits and the
 * values to 0..nmax in L[256]. */
static void k4_block(const float *x, int nmax, uint16_t *ret_d, uint16_t *ret_dmin,
		     uint8_t scales[12], uint8_t L[HYD_QK_K])
{
	float sc[8], mn[8], max_sc = 0, max_mn = 0;
	for (int j = 0; j < 8; j++) {
		fit_scale_min(x + 32 * j, 32, nmax, &sc[j], &mn[j]);
		max_sc = fmaxf(max_sc, sc[j]);
		max_mn = fmaxf(max_mn, mn[j]);
	}
	const uint16_t dh = hyd_fp32_to_fp16(max_sc / 63), mh = hyd_fp32_to_fp16(max_mn / 63);
	const float d = f16(dh), dmin = f16(mh);
	uint8_t ls[8], lm[8];
	for (int j = 0; j < 8; j++) {
		ls[j] = (uint8_t)(d > 0 ? clampi(lrintf(sc[j] / d), 0, 63) : 0);
		lm[j] = (uint8_t)(dmin > 0 ? clampi(lrintf(mn[j] / dmin), 0, 63) : 0);
	}
	for (int j = 0; j < 4; j++) {
		scales[j] = (uint8_t)(ls[j] | ((ls[j + 4] >> 4) << 6));
		scales[j + 4] = (uint8_t)(lm[j] | ((lm[j + 4] >> 4) << 6));
		scales[j + 8] = (uint8_t)((ls[j + 4] & 0xF) | ((lm[j + 4] & 0xF) << 4));
	}
	for (int j = 0; j < 8; j++) {
		const float dl = d * ls[j], ml = dmin * lm[j];
		for (int l = 0; l < 32; l++) {
			const float v = x[32 * j + l];
			L[32 * j + l] = (uint8_t)(dl > 0 ? clampi(lrintf((v + ml) / dl), 0, nmax) : 0);
		}
	}
	*ret_d = dh;
	*ret_dmin = mh;
}

void hyd__q4_k_from_float_ref(const float *src, void *dst, int64_t n)
{
	struct hyd_block_q4_k *y = dst;
	uint8_t L[HYD_QK_K];
	for (int64_t i = 0; i < n / HYD_QK_K; i++) {
		k4_block(src + i * HYD_QK_K, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
		for (int c = 0; c < 4; c++)
			for (int l = 0; l < 32; l++)
				y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
	}
}

void hyd__q5_k_from_float_ref(const float *src, void *dst, int64_t n)
{
	struct hyd_block_q5_k *y = dst;
	uint8_t L[HYD_QK_K];
	for (int64_t i = 0; i < n / HYD_QK_K; i++) {
		k4_block(src + i * HYD_QK_K, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
		memset(y[i].qh, 0, sizeof(y[i].qh));
		for (int c = 0; c < 4; c++) {
			for (int l = 0; l < 32; l++) {
				const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
				y[i].qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
				y[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
			}
		}
	}
}

/* Q6_K sub-block of 16: x ~ s*q, q in -32..31; tries divisors of the extreme value. */
static float q6_k_sub_scale(const float *x)
{
	float amax = 0, max = 0;
	for (int j = 0; j < 16; j++) {
		if (fabsf(x[j]) > amax) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	}
	if (amax == 0)
		return 0;
	float best_s = max / -32;
	double best_err = INFINITY;
	for (int c = 0; c < 8; c++) {
		const float s = max / (-32.0f + 0.25f * c);
		double err = 0;
		for (int j = 0; j < 16; j++) {
			const int q = clampi(lrintf(x[j] / s), -32, 31);
			const double e = x[j] - (double)s * q;
			err += e * e;
		}
		if (err < best_err) {
			best_err = err;
			best_s = s;
		}
	}
	return best_s;
}

void hyd__q6_k_from_float_ref(const float *src, void *dst, int64_t n)
{
	struct hyd_block_q6_k *y = dst;
	for (int64_t i = 0; i < n / HYD_QK_K; i++) {
		const float *x = src + i * HYD_QK_K;
		float s[16], amax = 0;
		for (int k = 0; k < 16; k++) {
			s[k] = q6_k_sub_scale(x + 16 * k);
			amax = fmaxf(amax, fabsf(s[k]));
		}
		const uint16_t dh = hyd_fp32_to_fp16(amax / 127);
		const float d = f16(dh);
		uint8_t L[HYD_QK_K];
		for (int k = 0; k < 16; k++) {
			const int ls = d > 0 ? clampi(lrintf(s[k] / d), -127, 127) : 0;
			y[i].scales[k] = (int8_t)ls;
			const float dl = d * ls;
			for (int j = 0; j < 16; j++) {
				const int q = dl != 0 ? clampi(lrintf(x[16 * k + j] / dl), -32, 31) : 0;
				L[16 * k + j] = (uint8_t)(q + 32);
			}
		}
		y[i].d = dh;
		for (int g = 0; g < 2; g++) {
			for (int l = 0; l < 32; l++) {
				const uint8_t *q = L + 128 * g + l;
				y[i].ql[64 * g + l] = (uint8_t)((q[0] & 0xF) | ((q[64] & 0xF) << 4));
				y[i].ql[64 * g + 32 + l] = (uint8_t)((q[32] & 0xF) | ((q[96] & 0xF) << 4));
				y[i].qh[32 * g + l] = (uint8_t)((q[0] >> 4) | ((q[32] >> 4) << 2) |
								((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
			}
		}
	}
}

/* ------------------------------------------------------------------ dot products
 * In the order of the AVX2 kernels (engine/quant_avx2.c), which every CPU with AVX2 uses
 * (AVX-512 ones included, engine/quant.c), so that a CPU without them computes the same
 * bits.  A plainer order (one integer sum per block, one float accumulator) is as accurate
 * but not the same: the random goldens have near-ties, and with it 5 of the 64 argmaxes of
 * tiny-llama256-Q6_K went the other way (59 of 64 agree, under the 95 % asked).
 *
 * That order: per block, eight int32 lanes as the vector kernel holds them.  The products
 * of each 32-byte vector of quants land in lane e / 4 of it (e: byte 0..31 of the vector,
 * maddubs then madd); each K-quant sub-block's scale is applied per vector; a K-quant's
 * mins and Q6_K's -32 offset enter through lane l's sub-blocks.  Integer sums are exact in
 * any order.  Each lane is then converted and added into its own float accumulator with one
 * rounding (an FMA), and the eight lanes summed as hyd__hsum8_ps does: (l + l+4), then
 * (0 + 2) + (1 + 3).  Q8_0 and Q4_0 keep two sets of accumulators, even and odd blocks,
 * added lane by lane before that.  The activation sums of the K-quants are recomputed from
 * qs rather than taken from bsums, so the references also check the bsums the SIMD kernels
 * use. */

static float hsum8_ref(const float v[8])
{
	const float s0 = v[0] + v[4], s1 = v[1] + v[5], s2 = v[2] + v[6], s3 = v[3] + v[7];
	return (s0 + s2) + (s1 + s3);
}

/* acc[l] += d * lane[l], fused, for the eight lanes */
static void lanes_fma(float acc[8], float d, const int32_t lane[8])
{
	for (int l = 0; l < 8; l++)
		acc[l] = fmaf(d, (float)lane[l], acc[l]);
}

float hyd__q8_0_dot_ref(int64_t n, const void *w, const void *x)
{
	const struct hyd_block_q8_0 *a = w, *b = x;
	float acc[2][8] = { { 0 } };
	for (int64_t i = 0; i < n / HYD_QK; i++) {
		int32_t lane[8] = { 0 };
		for (int e = 0; e < HYD_QK; e++)
			lane[e / 4] += a[i].qs[e] * b[i].qs[e];
		lanes_fma(acc[i & 1], f16(a[i].d) * f16(b[i].d), lane);
	}
	float v[8];
	for (int l = 0; l < 8; l++)
		v[l] = acc[0][l] + acc[1][l];
	return hsum8_ref(v);
}

float hyd__q4_0_dot_ref(int64_t n, const void *w, const void *x)
{
	const struct hyd_block_q4_0 *a = w;
	const struct hyd_block_q8_0 *b = x;
	float acc[2][8] = { { 0 } };
	for (int64_t i = 0; i < n / HYD_QK; i++) {
		/* element e: the low nibble of qs[e] for e < 16, the high one of qs[e - 16] after */
		int32_t lane[8] = { 0 };
		for (int e = 0; e < HYD_QK; e++) {
			const int q = e < HYD_QK / 2 ? a[i].qs[e] & 0xF : a[i].qs[e - HYD_QK / 2] >> 4;
			lane[e / 4] += (q - 8) * b[i].qs[e];
		}
		lanes_fma(acc[i & 1], f16(a[i].d) * f16(b[i].d), lane);
	}
	float v[8];
	for (int l = 0; l < 8; l++)
		v[l] = acc[0][l] + acc[1][l];
	return hsum8_ref(v);
}

/* Q4_K and Q5_K: sub-block j (32 weights, j = 0..7) is one vector of the kernel; lane l also
 * takes -m[l] times the activation sum of sub-block l, in a lane set of its own. */
static void k4_block_ref(float acc[8], const uint8_t *scales, uint16_t d_w, uint16_t dmin_w,
			 const struct hyd_block_q8_k *b, int (*quant)(const void *blk, int j, int e), const void *blk)
{
	int32_t lane[8] = { 0 }, mins[8] = { 0 };
	for (int j = 0; j < 8; j++) {
		uint8_t sc, m;
		hyd__scale_min_k4(j, scales, &sc, &m);
		const int8_t *y = b->qs + 32 * j;
		int sy = 0;
		for (int e = 0; e < 32; e++) {
			lane[e / 4] += sc * quant(blk, j, e) * y[e];
			sy += y[e];
		}
		mins[j] = m * sy;
	}
	lanes_fma(acc, b->d * f16(d_w), lane);
	const float dmin = b->d * f16(dmin_w);
	for (int l = 0; l < 8; l++)
		acc[l] = fmaf(-dmin, (float)mins[l], acc[l]);
}

static int q4_k_quant(const void *blk, int j, int e)
{
	const struct hyd_block_q4_k *a = blk;
	const uint8_t q = a->qs[32 * (j / 2) + e];
	return j & 1 ? q >> 4 : q & 0xF;
}

static int q5_k_quant(const void *blk, int j, int e)
{
	const struct hyd_block_q5_k *a = blk;
	const uint8_t q = a->qs[32 * (j / 2) + e];
	return (j & 1 ? q >> 4 : q & 0xF) | (((a->qh[e] >> j) & 1) << 4);
}

float hyd__q4_k_dot_ref(int64_t n, const void *w, const void *x)
{
	const struct hyd_block_q4_k *a = w;
	const struct hyd_block_q8_k *b = x;
	float acc[8] = { 0 };
	for (int64_t i = 0; i < n / HYD_QK_K; i++)
		k4_block_ref(acc, a[i].scales, a[i].d, a[i].dmin, &b[i], q4_k_quant, &a[i]);
	return hsum8_ref(acc);
}

float hyd__q5_k_dot_ref(int64_t n, const void *w, const void *x)
{
	const struct hyd_block_q5_k *a = w;
	const struct hyd_block_q8_k *b = x;
	float acc[8] = { 0 };
	for (int64_t i = 0; i < n / HYD_QK_K; i++)
		k4_block_ref(acc, a[i].scales, a[i].d, a[i].dmin, &b[i], q5_k_quant, &a[i]);
	return hsum8_ref(acc);
}

/* Q6_K: chunk k of group g (weights 128g + 32k + e) is one vector, its scale that of its
 * first 16 weights for lanes 0-3 and of its last 16 for lanes 4-7; the quants go in
 * unsigned (0..63) and lane l takes -32 times the scaled activation sums of sub-blocks 2l
 * and 2l + 1 (16 weights each). */
float hyd__q6_k_dot_ref(int64_t n, const void *w, const void *x)
{
	const struct hyd_block_q6_k *a = w;
	const struct hyd_block_q8_k *b = x;
	float acc[8] = { 0 };
	for (int64_t i = 0; i < n / HYD_QK_K; i++) {
		int32_t lane[8] = { 0 };
		for (int j = 0; j < 16; j++) {
			int sy = 0;
			for (int e = 0; e < 16; e++)
				sy += b[i].qs[16 * j + e];
			lane[j / 2] -= 32 * a[i].scales[j] * sy;
		}
		for (int g = 0; g < 2; g++)
			for (int k = 0; k < 4; k++)
				for (int e = 0; e < 32; e++)
					lane[e / 4] += a[i].scales[8 * g + 2 * k + e / 16] * q6_k_get(&a[i], g, k, e) *
						       b[i].qs[128 * g + 32 * k + e];
		lanes_fma(acc, f16(a[i].d) * b[i].d, lane);
	}
	return hsum8_ref(acc);
}
