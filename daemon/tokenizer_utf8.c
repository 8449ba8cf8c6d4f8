/* UTF-8 and Unicode-category helpers with llama.cpp's exact edge-case behaviour, so that the
 * same (possibly invalid) input splits into the same words. */
#include "config.h"

#include <errno.h>

#include "daemon/tokenizer_internal.h"
#include "engine/alloc.h"

unsigned hyd__ucat(uint32_t cp)
{
	uint32_t lo = 0, hi = hyd__ucd_n_runs;

	if (cp > 0x10FFFF)
		return HYD__UCAT_UNDEFINED;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (hyd__ucd_run_start[mid] <= cp)
			lo = mid;
		else
			hi = mid;
	}
	return hyd__ucd_run_cat[lo];
}

bool hyd__uspace(uint32_t cp)
{
	switch (cp) {
	case 0x09 ... 0x0D:
	case 0x20:
	case 0x85:
	case 0xA0:
	case 0x1680:
	case 0x2000 ... 0x200A:
	case 0x2028:
	case 0x2029:
	case 0x202F:
	case 0x205F:
	case 0x3000:
		return true;
	default:
		return false;
	}
}

size_t hyd__utf8_encode(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | ((cp >> 18) & 0x07));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

static bool cont(const uint8_t *s, size_t len, size_t i)
{
	return i < len && (s[i] & 0xC0) == 0x80;
}

/* Decodes one code point at s[*pos]; false where llama.cpp's unicode_cpt_from_utf8 throws.
 * Like it, overlong forms and surrogates are accepted: only the byte pattern is checked. */
static bool decode_one(const uint8_t *s, size_t len, size_t *pos, uint32_t *ret_cp)
{
	size_t i = *pos;
	uint8_t c = s[i];

	if (!(c & 0x80)) {
		*ret_cp = c;
		*pos = i + 1;
		return true;
	}
	if (!(c & 0x40))
		return false;
	if (!(c & 0x20)) {
		if (!cont(s, len, i + 1))
			return false;
		*ret_cp = ((uint32_t)(c & 0x1F) << 6) | (s[i + 1] & 0x3F);
		*pos = i + 2;
		return true;
	}
	if (!(c & 0x10)) {
		if (!cont(s, len, i + 1) || !cont(s, len, i + 2))
			return false;
		*ret_cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) |
			  (s[i + 2] & 0x3F);
		*pos = i + 3;
		return true;
	}
	if (!(c & 0x08)) {
		if (!cont(s, len, i + 1) || !cont(s, len, i + 2) || !cont(s, len, i + 3))
			return false;
		*ret_cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) |
			  ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
		*pos = i + 4;
		return true;
	}
	return false;
}

int hyd__utf8_decode(const char *s, size_t len, uint32_t **ret_cps, size_t *ret_n)
{
	const uint8_t *u = (const uint8_t *)s;
	uint32_t *cps = hyd_calloc(len ? len : 1, sizeof(*cps));
	size_t pos = 0, n = 0;

	if (!cps)
		return -ENOMEM;
	while (pos < len) {
		uint32_t cp;
		if (decode_one(u, len, &pos, &cp)) {
			cps[n++] = cp;
		} else {
			cps[n++] = 0xFFFD;
			pos++;
		}
	}
	*ret_cps = cps;
	*ret_n = n;
	return 0;
}
