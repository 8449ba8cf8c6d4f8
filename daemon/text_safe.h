/* Text from outside (session names, snapshot paths, strings in session files) reaches log lines
 * and error messages that end up on terminals.  Control characters there could forge log
 * entries (hydd logs one line per entry to stderr, which journald reads: a newline starts a new
 * entry with a priority of the sender's choosing) or drive the reader's terminal (C0 and C1
 * controls; a stray byte of broken UTF-8 can be read as a C1 control by 8-bit terminals).
 * Stricter than the tokenizer's decoder (daemon/tokenizer_utf8.c), which accepts overlong forms
 * and surrogates on purpose, as llama.cpp does. */
#ifndef HYD_DAEMON_TEXT_SAFE_H
#define HYD_DAEMON_TEXT_SAFE_H

#include <stdbool.h>

/* Length of the UTF-8 character at s (1 to 4) if it is well formed (shortest form, not a
 * surrogate, at most U+10FFFF) and not a control character (U+0000-001F, U+007F-009F); else
 * 0.  Reads no further than the first byte that breaks it, so a NUL ends it safely. */
static inline int hyd__text_char_len(const char *p)
{
	const unsigned char *s = (const unsigned char *)p;
	if (s[0] < 0x80)
		return s[0] >= 0x20 && s[0] != 0x7f ? 1 : 0;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		return (s[1] & 0xc0) == 0x80 && !(s[0] == 0xc2 && s[1] < 0xa0) ? 2 : 0;
	if (s[0] >= 0xe0 && s[0] <= 0xef) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

/* True if s (NUL-terminated) is well-formed UTF-8 without control characters. */
static inline bool hyd__text_ok(const char *s)
{
	while (*s) {
		const int n = hyd__text_char_len(s);
		if (!n)
			return false;
		s += n;
	}
	return true;
}

/* Make s printable in place: every byte that is a control character or does not belong to a
 * well-formed UTF-8 character becomes '?'. */
static inline void hyd__scrub_controls(char *s)
{
	while (*s) {
		const int n = hyd__text_char_len(s);
		if (!n)
			*s++ = '?';
		else
			s += n;
	}
}

#endif
