/* Pre-tokenizers for byte-level BPE: the regex splits llama.cpp applies for each
 * tokenizer.ggml.pre, written out as matchers.  llama.cpp runs each expression of a list
 * over the pieces the previous one produced (matches and the gaps between them both become
 * pieces), and evaluates \p{..} and \s with its own Unicode tables; the matchers here do the
 * same with the same tables, so words split exactly where llama.cpp splits them. */
#include "config.h"

#include <errno.h>

#include "daemon/tokenizer_internal.h"
#include "engine/alloc.h"

struct offs {
	uint32_t *v;
	size_t n, cap;
};

static int offs_push(struct offs *o, size_t len)
{
	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 64;
		uint32_t *v = hyd_realloc(o->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		o->v = v;
		o->cap = cap;
	}
	o->v[o->n++] = (uint32_t)len;
	return 0;
}

static bool is_letter(uint32_t c)
{
	return hyd__ucat(c) == HYD__UCAT_LETTER;
}

static bool is_number(uint32_t c)
{
	return hyd__ucat(c) == HYD__UCAT_NUMBER;
}

static bool is_punct(uint32_t c)
{
	return hyd__ucat(c) == HYD__UCAT_PUNCT;
}

static bool is_ascii_digit(uint32_t c)
{
	return c >= '0' && c <= '9';
}

static bool is_cjk(uint32_t c)
{
	/* [一-龥ࠀ-一가-퟿] */
	return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x0800 && c <= 0x4E00) ||
	       (c >= 0xAC00 && c <= 0xD7FF);
}

/* The cased-letter class of DeepSeek-LLM's second expression, as code point ranges. */
static const uint32_t ds_letters[][2] = {
	{ 0x0041, 0x005A },
	{ 0x0061, 0x007A },
	{ 0x00B5, 0x00B5 },
	{ 0x00C0, 0x00D6 },
	{ 0x00D8, 0x00F6 },
	{ 0x00F8, 0x01BA },
	{ 0x01BC, 0x01BF },
	{ 0x01C4, 0x0293 },
	{ 0x0295, 0x02AF },
	{ 0x0370, 0x0373 },
	{ 0x0376, 0x0376 },
	{ 0x0377, 0x0377 },
	{ 0x037B, 0x037D },
	{ 0x037F, 0x037F },
	{ 0x0386, 0x0386 },
	{ 0x0388, 0x038A },
	{ 0x038C, 0x038C },
	{ 0x038E, 0x03A1 },
	{ 0x03A3, 0x03F5 },
	{ 0x03F7, 0x0481 },
	{ 0x048A, 0x052F },
	{ 0x0531, 0x0556 },
	{ 0x10A0, 0x10C5 },
	{ 0x13A0, 0x13F5 },
	{ 0x13F8, 0x13FD },
	{ 0x1C90, 0x1CBA },
	{ 0x1CBD, 0x1CBF },
	{ 0x1D00, 0x1D2B },
	{ 0x1D6B, 0x1D77 },
	{ 0x1D79, 0x1D9A },
	{ 0x1E00, 0x1F15 },
	{ 0x1F18, 0x1F1D },
	{ 0x1F20, 0x1F45 },
	{ 0x1F48, 0x1F4D },
	{ 0x1F50, 0x1F57 },
	{ 0x1F59, 0x1F59 },
	{ 0x1F5B, 0x1F5B },
	{ 0x1F5D, 0x1F5D },
	{ 0x1F5F, 0x1F7D },
	{ 0x1F80, 0x1FB4 },
	{ 0x1FB6, 0x1FBC },
	{ 0x1FBE, 0x1FBE },
	{ 0x1FC2, 0x1FC4 },
	{ 0x1FC6, 0x1FCC },
	{ 0x1FD0, 0x1FD3 },
	{ 0x1FD6, 0x1FDB },
	{ 0x1FE0, 0x1FEC },
	{ 0x1FF2, 0x1FF4 },
	{ 0x1FF6, 0x1FFC },
	{ 0x2102, 0x2102 },
	{ 0x2107, 0x2107 },
	{ 0x210A, 0x2113 },
	{ 0x2115, 0x2115 },
	{ 0x2119, 0x211D },
	{ 0x2124, 0x2124 },
	{ 0x2126, 0x2126 },
	{ 0x2128, 0x2128 },
	{ 0x212A, 0x212D },
	{ 0x212F, 0x2134 },
	{ 0x2139, 0x2139 },
	{ 0x213C, 0x213F },
	{ 0x2145, 0x2149 },
	{ 0x214E, 0x214E },
	{ 0x2183, 0x2183 },
	{ 0x2184, 0x2184 },
	{ 0x2C00, 0x2C7B },
	{ 0x2C7E, 0x2CE4 },
	{ 0x2CEB, 0x2CEE },
	{ 0x2CF2, 0x2CF2 },
	{ 0x2CF3, 0x2CF3 },
	{ 0xA640, 0xA66D },
	{ 0xA680, 0xA69B },
	{ 0xA722, 0xA76F },
	{ 0xA771, 0xA787 },
	{ 0xA78B, 0xA78E },
	{ 0xAB70, 0xABBF },
	{ 0xFB00, 0xFB06 },
	{ 0xFB13, 0xFB17 },
	{ 0xFF21, 0xFF3A },
	{ 0xFF41, 0xFF5A },
	{ 0x10400, 0x1044F },
	{ 0x104B0, 0x104D3 },
	{ 0x104D8, 0x104FB },
	{ 0x10C80, 0x10CB2 },
	{ 0x10CC0, 0x10CF2 },
	{ 0x118A0, 0x118DF },
	{ 0x1E900, 0x1E943 },
};

static bool is_ds_letter(uint32_t c)
{
	size_t lo = 0, hi = sizeof(ds_letters) / sizeof(ds_letters[0]);

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c < ds_letters[mid][0])
			hi = mid;
		else if (c > ds_letters[mid][1])
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static bool is_ds_punct(uint32_t c)
{
	/* [!-/:-~！-／：-～‘-‟　-。] */
	return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x7E) || (c >= 0xFF01 && c <= 0xFF0F) ||
	       (c >= 0xFF1A && c <= 0xFF5E) || (c >= 0x2018 && c <= 0x201F) ||
	       (c >= 0x3000 && c <= 0x3002);
}

/* Length of the match of one expression starting exactly at i (0: none); the expressions
 * used here never match the empty string, so regex search reduces to trying each start. */
typedef size_t (*match_fn)(const uint32_t *c, size_t i, size_t end, size_t *next);

static size_t run(const uint32_t *c, size_t i, size_t end, bool (*cls)(uint32_t))
{
	size_t j = i;

	while (j < end && cls(c[j]))
		j++;
	return j - i;
}

/* \s?CLASS+ */
static size_t opt_space_run(const uint32_t *c, size_t i, size_t end, bool (*cls)(uint32_t))
{
	if (hyd__uspace(c[i]) && i + 1 < end && cls(c[i + 1]))
		return 1 + run(c, i + 1, end, cls);
	return run(c, i, end, cls);
}

static bool falcon_punct(uint32_t c)
{
	return is_punct(c) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' ||
	       c == '^' || c == '~' || c == '|' || c == '`';
}

static bool default_punct(uint32_t c)
{
	return falcon_punct(c) && c != '`';
}

static size_t m_falcon_punct(const uint32_t *c, size_t i, size_t end, size_t *next) /* [\p{P}\$\+<=>\^~\|`]+ */
{
	return run(c, i, end, falcon_punct);
}

static size_t m_default_punct(const uint32_t *c, size_t i, size_t end, size_t *next) /* [\p{P}\$\+<=>\^~\|]+ */
{
	return run(c, i, end, default_punct);
}

static size_t m_numbers(const uint32_t *c, size_t i, size_t end, size_t *next) /* \p{N}+ */
{
	return run(c, i, end, is_number);
}

static size_t m_number(const uint32_t *c, size_t i, size_t end, size_t *next) /* \p{N} */
{
	return is_number(c[i]);
}

static size_t m_digits3(const uint32_t *c, size_t i, size_t end, size_t *next) /* [0-9][0-9][0-9] */
{
	return i + 3 <= end && is_ascii_digit(c[i]) && is_ascii_digit(c[i + 1]) &&
			       is_ascii_digit(c[i + 2]) ?
		       3 :
		       0;
}

static size_t m_newline(const uint32_t *c, size_t i, size_t end, size_t *next) /* [\r\n] */
{
	return c[i] == '\r' || c[i] == '\n';
}

static size_t m_space_letters(const uint32_t *c, size_t i, size_t end, size_t *next) /* \s?\p{L}+ */
{
	return opt_space_run(c, i, end, is_letter);
}

static size_t m_space_punct(const uint32_t *c, size_t i, size_t end, size_t *next) /* \s?\p{P}+ */
{
	return opt_space_run(c, i, end, is_punct);
}

static size_t m_cjk(const uint32_t *c, size_t i, size_t end, size_t *next) /* [一-龥ࠀ-一가-퟿]+ */
{
	return run(c, i, end, is_cjk);
}

static size_t m_ds_letters(const uint32_t *c, size_t i, size_t end, size_t *next)
{
	return opt_space_run(c, i, end, is_ds_letter);
}

static size_t m_ds_punct(const uint32_t *c, size_t i, size_t end, size_t *next)
{
	return opt_space_run(c, i, end, is_ds_punct);
}

/* \s+$ (the end of the piece). A run of spaces that does not reach the end cannot match
 * from inside either, so the search resumes after it. */
static size_t m_trailing_space(const uint32_t *c, size_t i, size_t end, size_t *next)
{
	size_t n = run(c, i, end, hyd__uspace);

	if (n && i + n == end)
		return n;
	*next = i + (n ? n : 1);
	return 0;
}

static int split_match(match_fn m, const uint32_t *c, const struct offs *in, struct offs *out)
{
	size_t start = 0;
	int r;

	for (size_t k = 0; k < in->n; k++) {
		size_t end = start + in->v[k], gap = start, i = start;

		while (i < end) {
			size_t next = i + 1, len = m(c, i, end, &next);
			if (!len) {
				i = next;
				continue;
			}
			if (i > gap && (r = offs_push(out, i - gap)) < 0)
				return r;
			if ((r = offs_push(out, len)) < 0)
				return r;
			i += len;
			gap = i;
		}
		if (gap < end && (r = offs_push(out, end - gap)) < 0)
			return r;
		start = end;
	}
	return 0;
}

/* GPT-2's 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S), which
 * llama.cpp implements by hand (unicode_regex_split_custom_gpt2); each piece is matched on
 * its own, so (?!\S) sees the piece's end as the end of the text. */
enum { F_NONE = 0, F_LETTER = 1, F_NUMBER = 2, F_SPACE = 4, F_OTHER = 8 };

static unsigned flags_at(const uint32_t *c, size_t pos, size_t lo, size_t hi)
{
	unsigned cat;

	if (pos < lo || pos >= hi)
		return F_NONE;
	if (hyd__uspace(c[pos]))
		return F_SPACE;
	cat = hyd__ucat(c[pos]);
	return cat == HYD__UCAT_LETTER ? F_LETTER : cat == HYD__UCAT_NUMBER ? F_NUMBER : F_OTHER;
}

static int split_gpt2(const uint32_t *c, const struct offs *in, struct offs *out)
{
	size_t start = 0;
	int r;

	for (size_t k = 0; k < in->n; k++) {
		size_t lo = start, hi = start + in->v[k], pos = lo;

		start = hi;
		while (pos < hi) {
			uint32_t cp = c[pos];
			size_t from = pos;
			unsigned f = flags_at(c, pos, lo, hi), f2;

			if (cp == '\'' && pos + 1 < hi) {
				uint32_t n1 = c[pos + 1], n2 = pos + 2 < hi ? c[pos + 2] : 0;
				if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
					pos += 2;
					goto emit;
				}
				if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') ||
				    (n1 == 'l' && n2 == 'l')) {
					pos += 3;
					goto emit;
				}
			}
			f2 = cp == ' ' ? flags_at(c, pos + 1, lo, hi) : f;
			if (f2 == F_LETTER || f2 == F_NUMBER || f2 == F_OTHER) {
				pos += cp == ' ';
				while (flags_at(c, pos, lo, hi) == f2)
					pos++;
				goto emit;
			}
			{
				size_t nws = 0;
				while (flags_at(c, pos + nws, lo, hi) == F_SPACE)
					nws++;
				/* \s+(?!\S): leave the last space to prefix the next word */
				if (nws > 1 && pos + nws < hi)
					pos += nws - 1;
				else if (nws > 0)
					pos += nws;
				else
					pos++;
			}
emit:
			if ((r = offs_push(out, pos - from)) < 0)
				return r;
		}
	}
	return 0;
}

/* Llama 3's (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 * ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ as llama.cpp's hand-written
 * unicode_regex_split_custom_llama3; Qwen2's expression is the same with \p{N} alone, so
 * max_digits is 3 or 1. */
static int split_llama3(const uint32_t *c, const struct offs *in, struct offs *out,
			size_t max_digits)
{
	size_t start = 0;
	int r;

	for (size_t k = 0; k < in->n; k++) {
		size_t lo = start, hi = start + in->v[k], pos = lo;

		start = hi;
		while (pos < hi) {
			uint32_t cp = c[pos];
			size_t from = pos;
			unsigned f = flags_at(c, pos, lo, hi), f2;

			if (cp == '\'' && pos + 1 < hi) {
				uint32_t n1 = c[pos + 1] | (c[pos + 1] < 0x80 ? 0x20 : 0);
				uint32_t n2 = pos + 2 < hi ? c[pos + 2] | (c[pos + 2] < 0x80 ? 0x20 : 0) : 0;
				if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
					pos += 2;
					goto emit;
				}
				if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') ||
				    (n1 == 'l' && n2 == 'l')) {
					pos += 3;
					goto emit;
				}
			}
			/* [^\r\n\p{L}\p{N}]?\p{L}+ */
			if (cp != '\r' && cp != '\n' && f != F_NUMBER &&
			    (f == F_LETTER || flags_at(c, pos + 1, lo, hi) == F_LETTER)) {
				pos++;
				while (flags_at(c, pos, lo, hi) == F_LETTER)
					pos++;
				goto emit;
			}
			/* \p{N}{1,max_digits} */
			if (f == F_NUMBER) {
				pos++;
				while (pos - from < max_digits && flags_at(c, pos, lo, hi) == F_NUMBER)
					pos++;
				goto emit;
			}
			/* ?[^\s\p{L}\p{N}]+[\r\n]* */
			f2 = cp == ' ' ? flags_at(c, pos + 1, lo, hi) : f;
			if (f2 == F_OTHER || (cp == ' ' && f2 == F_NONE)) {
				pos += cp == ' ';
				while (flags_at(c, pos, lo, hi) == F_OTHER)
					pos++;
				while (pos < hi && (c[pos] == '\r' || c[pos] == '\n'))
					pos++;
				goto emit;
			}
			{
				size_t nws = 0, last_nl = 0;
				while (flags_at(c, pos + nws, lo, hi) == F_SPACE) {
					if (c[pos + nws] == '\r' || c[pos + nws] == '\n')
						last_nl = pos + nws + 1;
					nws++;
				}
				if (last_nl) /* \s*[\r\n]+ */
					pos = last_nl;
				else if (nws > 1 && pos + nws < hi) /* \s+(?!\S) */
					pos += nws - 1;
				else if (nws > 0) /* \s+ */
					pos += nws;
				else
					pos++;
			}
emit:
			if ((r = offs_push(out, pos - from)) < 0)
				return r;
		}
	}
	return 0;
}

/* One step of a pre-tokenizer: a matcher, or one of the hand-written splitters. */
enum { SPLIT_MATCH, SPLIT_GPT2, SPLIT_LLAMA3, SPLIT_QWEN2 };
struct step {
	match_fn m;
	int split;
};

int hyd__pre_split(enum hyd__pre pre, const uint32_t *cps, size_t n, uint32_t **ret_lens,
		   size_t *ret_n)
{
	static const struct step gpt2[] = { { NULL, SPLIT_GPT2 } };
	static const struct step dflt[] = {
		{ m_default_punct, SPLIT_MATCH }, { NULL, SPLIT_GPT2 }, { m_numbers, SPLIT_MATCH },
		{ m_digits3, SPLIT_MATCH },
	};
	static const struct step falcon[] = {
		{ m_falcon_punct, SPLIT_MATCH }, { NULL, SPLIT_GPT2 }, { m_digits3, SPLIT_MATCH },
	};
	static const struct step starcoder[] = { { m_number, SPLIT_MATCH }, { NULL, SPLIT_GPT2 } };
	static const struct step deepseek_coder[] = {
		{ m_newline, SPLIT_MATCH }, { m_space_letters, SPLIT_MATCH }, { m_space_punct, SPLIT_MATCH },
		{ m_cjk, SPLIT_MATCH }, { m_number, SPLIT_MATCH },
	};
	static const struct step deepseek_llm[] = {
		{ m_newline, SPLIT_MATCH }, { m_ds_letters, SPLIT_MATCH }, { m_ds_punct, SPLIT_MATCH },
		{ m_trailing_space, SPLIT_MATCH }, { m_cjk, SPLIT_MATCH }, { m_numbers, SPLIT_MATCH },
	};
	static const struct step llama3[] = { { NULL, SPLIT_LLAMA3 } };
	static const struct step qwen2[] = { { NULL, SPLIT_QWEN2 } };
	const struct step *steps;
	size_t n_steps;
	struct offs a = { 0 }, b = { 0 };
	int r;

	switch (pre) {
	case HYD__PRE_GPT2:
		steps = gpt2;
		n_steps = 1;
		break;
	case HYD__PRE_FALCON:
		steps = falcon;
		n_steps = sizeof(falcon) / sizeof(falcon[0]);
		break;
	case HYD__PRE_STARCODER:
		steps = starcoder;
		n_steps = sizeof(starcoder) / sizeof(starcoder[0]);
		break;
	case HYD__PRE_DEEPSEEK_CODER:
		steps = deepseek_coder;
		n_steps = sizeof(deepseek_coder) / sizeof(deepseek_coder[0]);
		break;
	case HYD__PRE_DEEPSEEK_LLM:
		steps = deepseek_llm;
		n_steps = sizeof(deepseek_llm) / sizeof(deepseek_llm[0]);
		break;
	case HYD__PRE_LLAMA3:
		steps = llama3;
		n_steps = 1;
		break;
	case HYD__PRE_QWEN2:
		steps = qwen2;
		n_steps = 1;
		break;
	case HYD__PRE_DEFAULT:
		steps = dflt;
		n_steps = sizeof(dflt) / sizeof(dflt[0]);
		break;
	default:
		return -ENOTSUP;
	}
	if (n > UINT32_MAX)
		return -E2BIG;
	if (n && (r = offs_push(&a, n)) < 0)
		goto out;
	for (size_t s = 0; s < n_steps; s++) {
		struct offs t;

		b.n = 0;
		switch (steps[s].split) {
		case SPLIT_GPT2:
			r = split_gpt2(cps, &a, &b);
			break;
		case SPLIT_LLAMA3:
			r = split_llama3(cps, &a, &b, 3);
			break;
		case SPLIT_QWEN2:
			r = split_llama3(cps, &a, &b, 1);
			break;
		default:
			r = split_match(steps[s].m, cps, &a, &b);
			break;
		}
		if (r < 0)
			goto out;
		t = a;
		a = b;
		b = t;
	}
	if (!a.v && !(a.v = hyd_malloc(sizeof(*a.v)))) {
		r = -ENOMEM;
		goto out;
	}
	*ret_lens = a.v;
	*ret_n = a.n;
	a.v = NULL;
	r = 0;
out:
	hyd_free(a.v);
	hyd_free(b.v);
	return r;
}
