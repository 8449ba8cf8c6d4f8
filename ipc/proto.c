/* Checks of wire records after they are copied into private memory (see proto.h). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "ipc/proto.h"

static int check_name(const char name[HYD_PROTO_NAME_MAX])
{
	return memchr(name, 0, HYD_PROTO_NAME_MAX) ? 0 : -EBADMSG;
}

static int check_generate(const void *p, uint32_t len)
{
	struct hyd_wire_generate g;
	if (len < sizeof(g))
		return -EBADMSG;
	memcpy(&g, p, sizeof(g));
	if (g.s.n_stop > HYD_PROTO_MAX_STOP || g.s.stop_bytes != len - sizeof(g))
		return -EBADMSG;
	/* every stop string present, 1..255 bytes, and nothing after the last */
	const uint8_t *b = (const uint8_t *)p + sizeof(g);
	uint32_t off = 0;
	for (uint32_t i = 0; i < g.s.n_stop; i++) {
		uint16_t sl;
		if (g.s.stop_bytes - off < sizeof(sl))
			return -EBADMSG;
		memcpy(&sl, b + off, sizeof(sl));
		off += sizeof(sl);
		if (!sl || sl > HYD_PROTO_STOP_MAX_LEN || g.s.stop_bytes - off < sl)
			return -EBADMSG;
		off += sl;
	}
	if (off != g.s.stop_bytes)
		return -EBADMSG;
	return 0;
}

int hyd__proto_check_request(uint16_t type, uint16_t flags, uint64_t id, const void *p, uint32_t len)
{
	if (flags & ~HYD_MSGF_MASK)
		return -EPROTO;
	if (!id)
		return -EPROTO;
	if (len > HYD_PROTO_MAX_MSG)
		return -EBADMSG;

	switch (type) {
	case HYD_REQ_CREATE: {
		struct hyd_wire_create m;
		if (len != sizeof(m))
			return -EBADMSG;
		memcpy(&m, p, sizeof(m));
		return check_name(m.name);
	}
	case HYD_REQ_OPEN:
	case HYD_REQ_FORK: {
		struct hyd_wire_open m;
		if (len != sizeof(m))
			return -EBADMSG;
		memcpy(&m, p, sizeof(m));
		return check_name(m.name);
	}
	case HYD_REQ_APPEND_TEXT:
	case HYD_REQ_TOKENIZE:
	case HYD_REQ_APPEND_TOKENS: {
		struct hyd_wire_append m;
		if (len < sizeof(m))
			return -EBADMSG;
		memcpy(&m, p, sizeof(m));
		uint64_t want = type == HYD_REQ_APPEND_TOKENS ? (uint64_t)m.count * sizeof(int32_t) : m.count;
		if (want != len - sizeof(m))
			return -EBADMSG;
		if (m.flags & ~(uint32_t)(HYD_APPEND_BOS | HYD_APPEND_SPECIAL))
			return -EBADMSG;
		return 0;
	}
	case HYD_REQ_GENERATE:
		return check_generate(p, len);
	case HYD_REQ_CANCEL:
		return len == sizeof(struct hyd_wire_cancel) ? 0 : -EBADMSG;
	case HYD_REQ_TRUNCATE:
		return len == sizeof(struct hyd_wire_truncate) ? 0 : -EBADMSG;
	case HYD_REQ_SNAPSHOT:
	case HYD_REQ_RESTORE: {
		struct hyd_wire_path m;
		if (len < sizeof(m))
			return -EBADMSG;
		memcpy(&m, p, sizeof(m));
		if (!m.path_len || m.path_len >= HYD_PROTO_PATH_MAX || m.path_len != len - sizeof(m))
			return -EBADMSG;
		if (memchr((const char *)p + sizeof(m), 0, m.path_len))
			return -EBADMSG;
		return check_name(m.name);
	}
	case HYD_REQ_DELETE:
		return len == sizeof(struct hyd_wire_session) ? 0 : -EBADMSG;
	case HYD_REQ_LIST:
	case HYD_REQ_STATUS:
		return len == 0 ? 0 : -EBADMSG;
	default:
		return -EPROTO;
	}
}

int hyd__proto_check_event(uint16_t type, uint16_t flags, const void *p, uint32_t len)
{
	if (flags & ~HYD_MSGF_MASK)
		return -EPROTO;
	switch (type) {
	case HYD_EVT_TOKEN: {
		struct hyd_wire_token m;
		if (len < sizeof(m))
			return -EBADMSG;
		memcpy(&m, p, sizeof(m));
		return m.text_len == len - sizeof(m) ? 0 : -EBADMSG;
	}
	case HYD_EVT_DONE:
		return len == sizeof(struct hyd_wire_done) ? 0 : -EBADMSG;
	case HYD_EVT_ERROR: {
		struct hyd_wire_error m;
		if (len < sizeof(m))
			return -EBADMSG;
		memcpy(&m, p, sizeof(m));
		return m.msg_len == len - sizeof(m) && m.err < 0 ? 0 : -EBADMSG;
	}
	case HYD_EVT_SESSION_INFO:
	case HYD_EVT_LIST_ITEM: {
		struct hyd_wire_session_info m;
		if (len != sizeof(m))
			return -EBADMSG;
		memcpy(&m, p, sizeof(m));
		return check_name(m.name);
	}
	case HYD_EVT_STATUS_INFO:
		return len == sizeof(struct hyd_wire_status) ? 0 : -EBADMSG;
	case HYD_EVT_OK:
		return len == sizeof(struct hyd_wire_ok) ? 0 : -EBADMSG;
	case HYD_EVT_TOKENS: {
		struct hyd_wire_tokens m;
		if (len < sizeof(m))
			return -EBADMSG;
		memcpy(&m, p, sizeof(m));
		return (uint64_t)m.n * sizeof(int32_t) == len - sizeof(m) ? 0 : -EBADMSG;
	}
	default:
		return -EPROTO;
	}
}

int hyd__proto_next_stop(const struct hyd_wire_generate *g, uint32_t len, uint32_t *off, const char **ret_s,
			 uint32_t *ret_len)
{
	const uint8_t *b = (const uint8_t *)(g + 1);
	uint32_t total = len - (uint32_t)sizeof(*g);
	uint16_t sl;
	if (*off + sizeof(sl) > total)
		return 0;
	memcpy(&sl, b + *off, sizeof(sl));
	if (*off + sizeof(sl) + sl > total)
		return 0;
	*ret_s = (const char *)b + *off + sizeof(sl);
	*ret_len = sl;
	*off += (uint32_t)sizeof(sl) + sl;
	return 1;
}

const char *hyd__proto_type_name(uint16_t type)
{
	static const char *const req[] = {
		[HYD_REQ_CREATE] = "create", [HYD_REQ_OPEN] = "open", [HYD_REQ_APPEND_TEXT] = "append-text",
		[HYD_REQ_APPEND_TOKENS] = "append-tokens", [HYD_REQ_GENERATE] = "generate",
		[HYD_REQ_CANCEL] = "cancel", [HYD_REQ_TRUNCATE] = "truncate", [HYD_REQ_FORK] = "fork",
		[HYD_REQ_SNAPSHOT] = "snapshot", [HYD_REQ_RESTORE] = "restore", [HYD_REQ_DELETE] = "delete",
		[HYD_REQ_LIST] = "list", [HYD_REQ_STATUS] = "status", [HYD_REQ_TOKENIZE] = "tokenize",
	};
	static const char *const evt[] = {
		"token", "done", "error", "session-info", "list-item", "status-info", "ok", "tokens",
	};
	if (type < HYD_REQ_LAST_ && req[type])
		return req[type];
	if (type >= HYD_EVT_TOKEN && type < HYD_EVT_LAST_)
		return evt[type - HYD_EVT_TOKEN];
	return "unknown";
}
