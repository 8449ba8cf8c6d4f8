/* Text from outside (session names, snapshot paths, strings in session files) reaches log lines
 * and error messages that end up on terminals.  Control characters there could forge log
 * entries (hydd logs one line per entry to stderr, which journald reads: a newline starts a new
 * entry with a priority of the sender's choosing) or drive the reader's terminal. */
#ifndef HYD_DAEMON_TEXT_SAFE_H
#define HYD_DAEMON_TEXT_SAFE_H

#include <stdbool.h>

/* True if s (NUL-terminated) has no control character (bytes below 0x20, and 0x7f). */
static inline bool hyd__no_controls(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* Replace every control character of s by '?', in place. */
static inline void hyd__scrub_controls(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

#endif
