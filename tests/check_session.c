/* Session store: create/attach round trips, every header corruption rejected with its reason,
 * crash consistency (a child SIGKILLed in the middle of a step), fork/snapshot/restore/delete,
 * page growth, truncation and replay, accounting and file modes.  Layouts are made up: the
 * store only knows them as arrays. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/session.h"
#include "daemon/session_format.h"
#include "daemon/text_safe.h"

/* ------------------------------------------------------------------ fixture */

#define MAX_CTX 100
#define PT 16
#define SWA_SLOTS 100
#define SWA_ROW 50
#define N_LAYER 4

/* 0: attn (pages of 16 rows of 63 bytes), 1: mamba2 (double-buffered), 2: swa ring, 3: attn. */
static const char *const kinds[N_LAYER] = { "attn", "mamba2", "swa", "attn" };
static const struct hyd_state_layout layouts[N_LAYER] = {
	{ .page_bytes = PT * 63, .page_tokens = PT },
	{ .fixed_bytes = 2 * 3000, .flags = HYD_STATE_DOUBLE_BUFFERED },
	{ .fixed_bytes = SWA_SLOTS * SWA_ROW },
	{ .page_bytes = PT * 512, .page_tokens = PT },
};
static const char *const attn_kinds[2] = { "attn", "attn" };
static const struct hyd_state_layout attn_layouts[2] = {
	{ .page_bytes = PT * 63, .page_tokens = PT },
	{ .page_bytes = PT * 512, .page_tokens = PT },
};

static char dir[256];
static uint32_t uid;
static int init_calls;

static void rm_tree(void);
static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}
static void rm_tree(void)
{
	if (dir[0])
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	const char *t = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/hyd-check-session-XXXXXX", t && t[0] ? t : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	uid = (uint32_t)getuid();
	init_calls = 0;
}

static void teardown(void)
{
	rm_tree();
}

/* The "plugin" init: a recognisable fill, so tests see that it ran. */
static void state_init(void *ctx, void *const *fixed)
{
	const struct hyd_state_layout *lay = ctx;
	for (uint32_t i = 0; i < N_LAYER; i++)
		memset(fixed[i], 0x5a, lay[i].fixed_bytes);
	init_calls++;
}

static void model_desc(struct hyd__sess_model *m, uint8_t fp_seed)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < 32; i++)
		m->fingerprint[i] = (uint8_t)(fp_seed + i);
	m->n_layer = N_LAYER;
	m->max_ctx = MAX_CTX;
	m->kinds = kinds;
	m->layouts = layouts;
	m->state_init = state_init;
	m->state_init_ctx = (void *)layouts;
}

static struct hyd__sess_store *open_store_with(const struct hyd__sess_model *m, uint64_t limit)
{
	struct hyd__sess_store_opts o = { .dir = dir, .memory_limit = limit };
	struct hyd__sess_store *st = NULL;
	char err[160] = "";
	int rc = hyd__sess_store_open(&o, m, &st, err, sizeof(err));
	ck_assert_msg(rc == 0, "store_open: %d %s", rc, err);
	return st;
}

static struct hyd__sess_store *open_store(void)
{
	struct hyd__sess_model m;
	model_desc(&m, 1);
	return open_store_with(&m, 0);
}

static struct hyd__sess *create(struct hyd__sess_store *st)
{
	struct hyd__sess *s = NULL;
	ck_assert_int_eq(hyd__sess_create(st, uid, "test", &s), 0);
	return s;
}

static struct hyd__sess *attach(struct hyd__sess_store *st, const char *id)
{
	struct hyd__sess *s = NULL;
	char err[160] = "";
	int rc = hyd__sess_attach(st, id, uid, &s, err, sizeof(err));
	ck_assert_msg(rc == 0, "attach: %d %s", rc, err);
	return s;
}

static void path_of(const char *id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", dir, id);
}

/* Expected contents: what a fake runner writes for position p, and the double-buffered
 * state after pos committed tokens. */
static uint8_t row_byte(uint32_t layer, uint32_t p)
{
	return (uint8_t)(p * 3 + layer * 41 + 1);
}
static uint8_t ssm_byte(uint32_t pos)
{
	return (uint8_t)(pos * 7 + 3);
}
static int32_t token_at(uint32_t p)
{
	return (int32_t)(1000 + p * 13);
}

/* Everything a forward step of n tokens writes, without committing. */
static void write_step(struct hyd__sess *s, uint32_t n)
{
	struct hyd_seq_view *v = hyd__sess_view(s);
	const uint32_t pos = v->pos, si = v->state_index;
	ck_assert_int_eq(hyd__sess_ensure_capacity(s, pos + n), 0);
	for (uint32_t i = 0; i < N_LAYER; i++) {
		const struct hyd_layer_state *ls = &v->layers[i];
		if (layouts[i].flags & HYD_STATE_DOUBLE_BUFFERED) {
			const uint64_t half = layouts[i].fixed_bytes / 2;
			memset((uint8_t *)ls->fixed + (si ^ 1) * half, ssm_byte(pos + n), half);
		} else if (layouts[i].fixed_bytes) {
			for (uint32_t p = pos; p < pos + n; p++)
				memset((uint8_t *)ls->fixed + (p % SWA_SLOTS) * SWA_ROW, row_byte(i, p), SWA_ROW);
		} else {
			const uint64_t row = layouts[i].page_bytes / PT;
			ck_assert_uint_ge((uint64_t)ls->n_pages * PT, pos + n);
			for (uint32_t p = pos; p < pos + n; p++)
				memset((uint8_t *)ls->pages[p / PT] + (p % PT) * row, row_byte(i, p), row);
		}
	}
}

static void step(struct hyd__sess *s, uint32_t n)
{
	const uint32_t pos = hyd__sess_pos(s);
	int32_t toks[MAX_CTX];
	for (uint32_t k = 0; k < n; k++)
		toks[k] = token_at(pos + k);
	write_step(s, n);
	ck_assert_int_eq(hyd__sess_commit(s, n, toks), 0);
	ck_assert_uint_eq(hyd__sess_pos(s), pos + n);
}

static void check_state(struct hyd__sess *s, uint32_t pos, uint32_t si)
{
	struct hyd_seq_view *v = hyd__sess_view(s);
	ck_assert_uint_eq(hyd__sess_pos(s), pos);
	ck_assert_uint_eq(v->pos, pos);
	ck_assert_uint_eq(hyd__sess_state_index(s), si);
	ck_assert_uint_eq(v->state_index, si);
	const int32_t *t = hyd__sess_tokens(s);
	for (uint32_t p = 0; p < pos; p++)
		ck_assert_int_eq(t[p], token_at(p));
	for (uint32_t i = 0; i < N_LAYER; i++) {
		const struct hyd_layer_state *ls = &v->layers[i];
		if (layouts[i].flags & HYD_STATE_DOUBLE_BUFFERED) {
			const uint64_t half = layouts[i].fixed_bytes / 2;
			const uint8_t *c = (const uint8_t *)ls->fixed + si * half;
			const uint8_t want = pos ? ssm_byte(pos) : 0x5a;
			for (uint64_t b = 0; b < half; b++)
				ck_assert_msg(c[b] == want, "ssm layer %u byte %llu: %u != %u", i, (unsigned long long)b,
					      c[b], want);
		} else if (layouts[i].fixed_bytes) {
			for (uint32_t p = pos > SWA_SLOTS ? pos - SWA_SLOTS : 0; p < pos; p++)
				for (uint32_t b = 0; b < SWA_ROW; b++)
					ck_assert_uint_eq(((const uint8_t *)ls->fixed)[(p % SWA_SLOTS) * SWA_ROW + b],
							  row_byte(i, p));
		} else {
			const uint64_t row = layouts[i].page_bytes / PT;
			ck_assert_uint_ge((uint64_t)ls->n_pages * PT, pos);
			for (uint32_t p = 0; p < pos; p++) {
				const uint8_t *r = (const uint8_t *)ls->pages[p / PT] + (p % PT) * row;
				for (uint64_t b = 0; b < row; b++)
					ck_assert_msg(r[b] == row_byte(i, p), "layer %u pos %u byte %llu", i, p,
						      (unsigned long long)b);
			}
		}
	}
}

/* Byte equality of all state two sessions hold. */
static void check_same(struct hyd__sess *a, struct hyd__sess *b)
{
	struct hyd_seq_view *va = hyd__sess_view(a), *vb = hyd__sess_view(b);
	ck_assert_uint_eq(va->pos, vb->pos);
	ck_assert_uint_eq(va->state_index, vb->state_index);
	ck_assert_uint_eq(hyd__sess_replay_to(a), hyd__sess_replay_to(b));
	ck_assert_int_eq(memcmp(hyd__sess_tokens(a), hyd__sess_tokens(b),
				hyd__sess_replay_to(a) * sizeof(int32_t)), 0);
	for (uint32_t i = 0; i < N_LAYER; i++) {
		ck_assert_int_eq(memcmp(va->layers[i].fixed, vb->layers[i].fixed, layouts[i].fixed_bytes), 0);
		ck_assert_uint_eq(va->layers[i].n_pages, vb->layers[i].n_pages);
		for (uint32_t k = 0; k < va->layers[i].n_pages; k++)
			ck_assert_int_eq(memcmp(va->layers[i].pages[k], vb->layers[i].pages[k], layouts[i].page_bytes), 0);
	}
}

static void check_mode_0600(const char *path)
{
	struct stat sb;
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0600);
}

/* ------------------------------------------------------------------ create / attach */

START_TEST(test_create_attach)
{
	umask(0); /* the files must be 0600 whatever the umask */
	struct hyd__sess_store *st = open_store();
	struct hyd__sess *s = create(st);
	char id[HYD_SESSION_ID_LEN + 1], path[512];
	snprintf(id, sizeof(id), "%s", hyd__sess_id(s));
	ck_assert_uint_eq(strlen(id), 32);
	ck_assert_uint_eq(strspn(id, "0123456789abcdef"), 32);
	path_of(id, path, sizeof(path));
	check_mode_0600(path);
	ck_assert_int_eq(init_calls, 1);
	ck_assert_uint_eq(hyd__sess_owner(s), uid);
	ck_assert_str_eq(hyd__sess_label(s), "test");
	ck_assert_uint_eq(hyd__sess_max_ctx(s), MAX_CTX);
	check_state(s, 0, 0);

	/* A second attach of the same file is refused while the first holds it. */
	struct hyd__sess *dup = NULL;
	char err[160];
	ck_assert_int_eq(hyd__sess_attach(st, id, uid, &dup, err, sizeof(err)), -EBUSY);

	step(s, 5);
	step(s, 20);
	step(s, 1);
	check_state(s, 26, 1);
	hyd__sess_detach(s);

	s = attach(st, id);
	ck_assert_int_eq(init_calls, 1); /* a committed session is not re-initialised */
	check_state(s, 26, 1);
	step(s, 30);
	check_state(s, 56, 0);

	/* Two sessions get distinct ids. */
	struct hyd__sess *s2 = create(st);
	ck_assert_str_ne(hyd__sess_id(s2), id);
	check_state(s2, 0, 0);
	hyd__sess_store_close(st);

	/* Directory is private. */
	struct stat sb;
	ck_assert_int_eq(stat(dir, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 022, 0);
}
END_TEST

START_TEST(test_bad_ids)
{
	struct hyd__sess_store *st = open_store();
	struct hyd__sess *s = NULL;
	char err[160];
	ck_assert_int_eq(hyd__sess_attach(st, "../../etc/passwd", uid, &s, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(hyd__sess_attach(st, "0123456789ABCDEF0123456789abcdef", uid, &s, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(hyd__sess_attach(st, "0123456789abcdef0123456789abcde", uid, &s, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(hyd__sess_attach(st, "0123456789abcdef0123456789abcdef", uid, &s, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_null(s);
	hyd__sess_store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ corruption */

/* A committed session file, closed; returns its id. */
static void make_session(char id[HYD_SESSION_ID_LEN + 1], uint32_t n_tokens)
{
	struct hyd__sess_store *st = open_store();
	struct hyd__sess *s = create(st);
	if (n_tokens)
		step(s, n_tokens);
	snprintf(id, HYD_SESSION_ID_LEN + 1, "%s", hyd__sess_id(s));
	hyd__sess_store_close(st);
}

static void poke(const char *id, uint64_t off, const void *bytes, size_t len)
{
	char path[512];
	path_of(id, path, sizeof(path));
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, bytes, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void read_hdr(const char *id, struct hyd_sess_hdr *h, struct hyd_sess_layer *layers)
{
	char path[512];
	path_of(id, path, sizeof(path));
	int fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, h, sizeof(*h), 0), (ssize_t)sizeof(*h));
	ck_assert_int_eq(pread(fd, layers, N_LAYER * sizeof(*layers), (off_t)h->layers_off),
			 (ssize_t)(N_LAYER * sizeof(*layers)));
	close(fd);
}

static void expect_reject(struct hyd__sess_store *st, const char *id, uint32_t as_uid, int want_rc,
			  const char *want_reason)
{
	struct hyd__sess *s = NULL;
	char err[160] = "";
	int rc = hyd__sess_attach(st, id, as_uid, &s, err, sizeof(err));
	ck_assert_msg(rc == want_rc, "attach gave %d (%s), expected %d", rc, err, want_rc);
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(err, want_reason) != NULL, "reason '%s' lacks '%s'", err, want_reason);
}

/* Each case: a fresh valid session, one field damaged, attach refused with its reason; the
 * file is still there afterwards and list reports the same reason. */
enum corruption {
	C_MAGIC, C_VERSION, C_SIZE_FIELD, C_FILE_SHORT, C_FIXED_PAST_END, C_PAGES_PAST_END, C_OVERLAP,
	C_OVERLAP_HEADER, C_POS_OVER_CAP, C_PAGES_SHORT, C_NPAGES_OVER, C_NLAYER, C_LABEL, C_FLAGS, C_MODE,
	C_KIND, C_LABEL_CONTROL, C_LABEL_UTF8, C_KIND_CONTROL, C_N
};

static const char *corrupt(const char *id, enum corruption c)
{
	struct hyd_sess_hdr h;
	struct hyd_sess_layer L[N_LAYER];
	read_hdr(id, &h, L);
	const uint64_t lo = h.layers_off;
	char path[512];
	path_of(id, path, sizeof(path));
	uint64_t v64;
	uint32_t v32;
	switch (c) {
	case C_MAGIC:
		poke(id, 0, "NOTASESS", 8);
		return "bad magic";
	case C_VERSION:
		v32 = 99;
		poke(id, offsetof(struct hyd_sess_hdr, version), &v32, 4);
		return "unsupported version";
	case C_SIZE_FIELD:
		v64 = h.size + 4096;
		poke(id, offsetof(struct hyd_sess_hdr, size), &v64, 8);
		return "size mismatch";
	case C_FILE_SHORT:
		ck_assert_int_eq(truncate(path, (off_t)(h.size - 4096)), 0);
		return "size mismatch";
	case C_FIXED_PAST_END:
		v64 = h.size - 64;
		poke(id, lo + 1 * sizeof(L[0]) + offsetof(struct hyd_sess_layer, fixed_off), &v64, 8);
		return "past end";
	case C_PAGES_PAST_END:
		v64 = h.size;
		poke(id, lo + 3 * sizeof(L[0]) + offsetof(struct hyd_sess_layer, pages_off), &v64, 8);
		return "past end";
	case C_OVERLAP:
		v64 = L[1].fixed_off;
		poke(id, lo + 2 * sizeof(L[0]) + offsetof(struct hyd_sess_layer, fixed_off), &v64, 8);
		return "overlapping regions: layer 1 fixed region and layer 2 fixed region";
	case C_OVERLAP_HEADER:
		v64 = 256;
		poke(id, lo + 1 * sizeof(L[0]) + offsetof(struct hyd_sess_layer, fixed_off), &v64, 8);
		return "overlapping regions: header and layer 1";
	case C_POS_OVER_CAP:
		v64 = HYD_SESS_COMMIT(MAX_CTX + 1, 0);
		poke(id, offsetof(struct hyd_sess_hdr, commit), &v64, 8);
		return "exceeds capacity";
	case C_PAGES_SHORT:
		v32 = 1;
		poke(id, lo + 0 * sizeof(L[0]) + offsetof(struct hyd_sess_layer, n_pages), &v32, 4);
		return "cannot hold the";
	case C_NPAGES_OVER:
		v32 = L[0].max_pages + 1;
		poke(id, lo + 0 * sizeof(L[0]) + offsetof(struct hyd_sess_layer, n_pages), &v32, 4);
		return "exceeds";
	case C_NLAYER:
		v32 = 100000;
		poke(id, offsetof(struct hyd_sess_hdr, n_layer), &v32, 4);
		return "layer count";
	case C_LABEL: {
		char full[HYD_SESS_LABEL_LEN];
		memset(full, 'x', sizeof(full));
		poke(id, offsetof(struct hyd_sess_hdr, label), full, sizeof(full));
		return "label";
	}
	case C_FLAGS:
		v32 = 0x80;
		poke(id, offsetof(struct hyd_sess_hdr, flags), &v32, 4);
		return "unknown flags";
	case C_MODE:
		ck_assert_int_eq(chmod(path, 0644), 0);
		return "mode 644";
	case C_KIND:
		poke(id, lo + 2 * sizeof(L[0]), "mamba1", 7);
		return "layer 2 is 'mamba1'";
	case C_LABEL_CONTROL:
		/* a name that would start a forged log entry where it is printed */
		poke(id, offsetof(struct hyd_sess_hdr, label), "x\n<2>y", 7);
		return "label is not UTF-8 text";
	case C_LABEL_UTF8:
		/* a stray byte that an 8-bit terminal takes for a control (0x9b: CSI) */
		poke(id, offsetof(struct hyd_sess_hdr, label), "x\x9b" "2J", 5);
		return "label is not UTF-8 text";
	case C_KIND_CONTROL:
		/* quoted in the reason with its control character made harmless */
		poke(id, lo + 2 * sizeof(L[0]), "ma\033[2J", 7);
		return "layer 2 is 'ma?[2J'";
	case C_N:
		break;
	}
	return NULL;
}

static int find_cb(void *ctx, const struct hyd__sess_info *info)
{
	struct hyd__sess_info *want = ctx;
	if (strcmp(info->name, want->name) == 0)
		*want = *info;
	return 0;
}

START_TEST(test_corruption)
{
	char id[HYD_SESSION_ID_LEN + 1], path[512];
	make_session(id, 40);
	const char *reason = corrupt(id, (enum corruption)_i);
	struct hyd__sess_store *st = open_store();
	expect_reject(st, id, uid, -EBADMSG, reason);
	struct hyd__sess_info info = { 0 };
	snprintf(info.name, sizeof(info.name), "%s", id);
	info.valid = true;
	ck_assert_int_eq(hyd__sess_list(st, find_cb, &info), 0);
	ck_assert(!info.valid);
	ck_assert_msg(strstr(info.reason, reason), "list reason '%s'", info.reason);
	path_of(id, path, sizeof(path));
	ck_assert_int_eq(access(path, F_OK), 0); /* reported, never removed */
	hyd__sess_store_close(st);
}
END_TEST

/* What may be a session name (and is printed unchanged): well-formed UTF-8 without C0, DEL or
 * C1 controls; the scrubbing of messages turns every other byte into '?'. */
START_TEST(test_name_text_rules)
{
	static const char *const ok[] = { "abc", "trunk 2", "caf\xc3\xa9", "\xe4\xb8\xad\xe6\x96\x87",
					  "\xf0\x9f\x98\x80", "\xc2\xa0nbsp", "\xf4\x8f\xbf\xbf", "" };
	static const char *const bad[] = {
		"a\nb",            /* C0 */
		"a\x7f",           /* DEL */
		"\xc2\x85",        /* C1 (NEL) */
		"\xc2\x9b" "2J",   /* C1 (CSI) */
		"\x9b" "2J",        /* a lone continuation byte */
		"\xff",            /* never in UTF-8 */
		"\xc0\xaf",        /* overlong '/' */
		"\xe0\x80\xaf",    /* overlong */
		"\xf0\x80\x80\xaf", /* overlong */
		"\xed\xa0\x80",    /* surrogate */
		"\xf4\x90\x80\x80", /* above U+10FFFF */
		"\xe4\xb8",        /* cut short */
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		ck_assert_msg(hyd__text_ok(ok[i]), "refused ok[%zu]", i);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!hyd__text_ok(bad[i]), "accepted bad[%zu]", i);
	char msg[] = "a\nb\xff" "c\xc2\x85" "d\xe4\xb8\xad\xe4\xb8";
	hyd__scrub_controls(msg);
	ck_assert_str_eq(msg, "a?b?c??d\xe4\xb8\xad??");
	ck_assert(hyd__text_ok(msg));
}
END_TEST

START_TEST(test_foreign)
{
	char id[HYD_SESSION_ID_LEN + 1];
	make_session(id, 10);
	/* Another model. */
	struct hyd__sess_model m;
	model_desc(&m, 7);
	struct hyd__sess_store *st = open_store_with(&m, 0);
	expect_reject(st, id, uid, -EBADMSG, "fingerprint");
	hyd__sess_store_close(st);
	/* Same model with other limits (e.g. a different --max-chunk changes the SWA ring). */
	struct hyd_state_layout other[N_LAYER];
	memcpy(other, layouts, sizeof(other));
	other[2].fixed_bytes += 64;
	model_desc(&m, 1);
	m.layouts = other;
	st = open_store_with(&m, 0);
	expect_reject(st, id, uid, -EBADMSG, "layout differs");
	hyd__sess_store_close(st);
	/* Another user. */
	st = open_store();
	expect_reject(st, id, uid + 1, -EACCES, "uid");
	struct hyd__sess *s = attach(st, id); /* and still fine for its owner */
	check_state(s, 10, 1);
	hyd__sess_store_close(st);
}
END_TEST

static int collect_cb(void *ctx, const struct hyd__sess_info *info)
{
	struct hyd__sess_info *arr = ctx;
	for (int i = 0; i < 8; i++) {
		if (!arr[i].name[0]) {
			arr[i] = *info;
			return 0;
		}
	}
	return -ENOSPC;
}

START_TEST(test_list)
{
	char a[HYD_SESSION_ID_LEN + 1], b[HYD_SESSION_ID_LEN + 1], path[512];
	make_session(a, 3);
	make_session(b, 0);
	corrupt(b, C_MAGIC);
	snprintf(path, sizeof(path), "%s/notes.txt", dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("hello", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/.0123456789abcdef0123456789abcdef.tmp", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);

	struct hyd__sess_store *st = open_store();
	struct hyd__sess *c = create(st);
	struct hyd__sess_info arr[8];
	memset(arr, 0, sizeof(arr));
	ck_assert_int_eq(hyd__sess_list(st, collect_cb, arr), 0);
	int seen = 0;
	for (int i = 0; i < 8 && arr[i].name[0]; i++) {
		seen++;
		if (strcmp(arr[i].name, a) == 0) {
			ck_assert(arr[i].valid && !arr[i].attached);
			ck_assert_uint_eq(arr[i].pos, 3);
			ck_assert_uint_eq(arr[i].owner_uid, uid);
			ck_assert_str_eq(arr[i].label, "test");
			ck_assert_uint_gt(arr[i].file_bytes, 0);
		} else if (strcmp(arr[i].name, b) == 0) {
			ck_assert(!arr[i].valid);
			ck_assert(strstr(arr[i].reason, "magic"));
		} else if (strcmp(arr[i].name, hyd__sess_id(c)) == 0) {
			ck_assert(arr[i].valid && arr[i].attached);
		} else if (strcmp(arr[i].name, "notes.txt") == 0) {
			ck_assert(!arr[i].valid);
			ck_assert(strstr(arr[i].reason, "not a session"));
		} else {
			ck_assert(!arr[i].valid);
			ck_assert(strstr(arr[i].reason, "interrupted"));
		}
	}
	ck_assert_int_eq(seen, 5);
	/* Explicit removal of an invalid file; an attached one is refused. */
	ck_assert_int_eq(hyd__sess_remove(st, "notes.txt"), 0);
	ck_assert_int_eq(hyd__sess_remove(st, hyd__sess_id(c)), -EBUSY);
	ck_assert_int_eq(hyd__sess_remove(st, "../x"), -EINVAL);
	hyd__sess_store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ crash consistency */

/* The child commits steps, then dies by SIGKILL in the middle of the next one: after its state,
 * pages and history were written (stage 0), or after the pages of the next step were backed and
 * published but before anything else (stage 1). */
static void crash_case(int stage)
{
	char id[HYD_SESSION_ID_LEN + 1];
	make_session(id, 7); /* pos 7, state_index 1 */
	init_calls = 0;
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		struct hyd__sess_store *st = open_store();
		struct hyd__sess *s = attach(st, id);
		step(s, 9);  /* 16 */
		step(s, 11); /* 27 */
		if (stage == 0) {
			write_step(s, 30);
			/* History past the committed count is written too, as commit() would. */
			int32_t *t = (int32_t *)hyd__sess_tokens(s);
			for (uint32_t p = 27; p < 57; p++)
				t[p] = -1;
		} else {
			ck_assert_int_eq(hyd__sess_ensure_capacity(s, 90), 0);
		}
		char c = 'k';
		if (write(pfd[1], &c, 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	close(pfd[1]);
	char c;
	ck_assert_int_eq(read(pfd[0], &c, 1), 1);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	struct hyd__sess_store *st = open_store();
	struct hyd__sess *s = attach(st, id);
	ck_assert_int_eq(init_calls, 0);
	check_state(s, 27, 1);
	/* The session goes on from there as if the lost step never started. */
	step(s, 40);
	check_state(s, 67, 0);
	hyd__sess_detach(s);
	s = attach(st, id);
	check_state(s, 67, 0);
	hyd__sess_store_close(st);
}

START_TEST(test_crash_mid_step)
{
	crash_case(0);
}
END_TEST

START_TEST(test_crash_after_grow)
{
	crash_case(1);
}
END_TEST

/* A crash inside truncate's reset (flag set, fixed regions not yet initialised) is finished by
 * the next attach: pos 0, fresh fixed regions, the replay count kept. */
START_TEST(test_crash_mid_reset)
{
	char id[HYD_SESSION_ID_LEN + 1];
	make_session(id, 30);
	init_calls = 0;
	struct hyd_sess_hdr h;
	struct hyd_sess_layer L[N_LAYER];
	read_hdr(id, &h, L);
	uint32_t v = 20;
	poke(id, offsetof(struct hyd_sess_hdr, replay_to), &v, 4);
	v = HYD_SESS_F_NEEDS_INIT;
	poke(id, offsetof(struct hyd_sess_hdr, flags), &v, 4);
	struct hyd__sess_store *st = open_store();
	struct hyd__sess *s = attach(st, id);
	ck_assert_int_eq(init_calls, 1);
	check_state(s, 0, 0);
	ck_assert_uint_eq(hyd__sess_replay_to(s), 20);
	for (uint32_t p = 0; p < 20; p++)
		ck_assert_int_eq(hyd__sess_tokens(s)[p], token_at(p));
	hyd__sess_store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ copies */

START_TEST(test_fork)
{
	struct hyd__sess_store *st = open_store();
	struct hyd__sess *a = create(st);
	step(a, 33);
	step(a, 4);
	struct hyd__sess *b = NULL;
	ck_assert_int_eq(hyd__sess_fork(st, a, uid, "branch", &b), 0);
	ck_assert_str_ne(hyd__sess_id(a), hyd__sess_id(b));
	ck_assert_str_eq(hyd__sess_label(b), "branch");
	char path[512];
	path_of(hyd__sess_id(b), path, sizeof(path));
	check_mode_0600(path);
	check_same(a, b);
	check_state(b, 37, 0);
	/* Independent afterwards. */
	step(b, 10);
	check_state(a, 37, 0);
	check_state(b, 47, 1);
	/* And durable: re-attach the fork. */
	char id[HYD_SESSION_ID_LEN + 1];
	snprintf(id, sizeof(id), "%s", hyd__sess_id(b));
	hyd__sess_detach(b);
	b = attach(st, id);
	check_state(b, 47, 1);
	hyd__sess_store_close(st);
}
END_TEST

START_TEST(test_snapshot_restore)
{
	struct hyd__sess_store *st = open_store();
	struct hyd__sess *a = create(st);
	step(a, 50);
	step(a, 3);
	char snap[512];
	snprintf(snap, sizeof(snap), "%s/snap.hyds", dir);
	umask(0);
	ck_assert_int_eq(hyd__sess_snapshot(a, snap), 0);
	check_mode_0600(snap);
	/* The snapshot is sparse like its source: no pages past the allocated ones. */
	struct stat sb;
	ck_assert_int_eq(stat(snap, &sb), 0);

	struct hyd__sess *b = NULL;
	char err[160] = "";
	ck_assert_int_eq(hyd__sess_restore(st, snap, uid + 1, NULL, &b, err, sizeof(err)), -EACCES);
	int rc = hyd__sess_restore(st, snap, uid, "restored", &b, err, sizeof(err));
	ck_assert_msg(rc == 0, "restore: %d %s", rc, err);
	check_same(a, b);
	check_state(b, 53, 0);
	ck_assert_str_eq(hyd__sess_label(b), "restored");

	/* Overwriting a snapshot replaces it atomically; the old one was intact until then. */
	step(a, 7);
	ck_assert_int_eq(hyd__sess_snapshot(a, snap), 0);
	struct hyd__sess *c = NULL;
	ck_assert_int_eq(hyd__sess_restore(st, snap, uid, NULL, &c, err, sizeof(err)), 0);
	check_same(a, c);
	ck_assert_str_eq(hyd__sess_label(c), "test");

	/* A damaged snapshot is refused with the reason. */
	ck_assert_int_eq(truncate(snap, 1000), 0);
	struct hyd__sess *d = NULL;
	ck_assert_int_eq(hyd__sess_restore(st, snap, uid, NULL, &d, err, sizeof(err)), -EBADMSG);
	ck_assert(strstr(err, "size mismatch"));
	ck_assert_int_eq(hyd__sess_restore(st, "/nonexistent/x", uid, NULL, &d, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_null(d);

	/* No temporary files are left behind anywhere. */
	struct hyd__sess_info arr[8];
	memset(arr, 0, sizeof(arr));
	ck_assert_int_eq(hyd__sess_list(st, collect_cb, arr), 0);
	for (int i = 0; i < 8 && arr[i].name[0]; i++)
		ck_assert_msg(arr[i].valid || strcmp(arr[i].name, "snap.hyds") == 0, "stray %s", arr[i].name);
	hyd__sess_store_close(st);
}
END_TEST

START_TEST(test_delete)
{
	struct hyd__sess_store *st = open_store();
	struct hyd__sess *a = create(st);
	step(a, 5);
	char id[HYD_SESSION_ID_LEN + 1], path[512];
	snprintf(id, sizeof(id), "%s", hyd__sess_id(a));
	path_of(id, path, sizeof(path));
	ck_assert_int_eq(hyd__sess_delete(a), 0);
	ck_assert_int_eq(access(path, F_OK), -1);
	struct hyd__sess *s = NULL;
	char err[160];
	ck_assert_int_eq(hyd__sess_attach(st, id, uid, &s, err, sizeof(err)), -ENOENT);
	struct hyd__sess_usage u;
	hyd__sess_store_usage(st, &u);
	ck_assert_uint_eq(u.n_sessions, 0);
	ck_assert_uint_eq(u.total_bytes, 0);
	hyd__sess_store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ pages, truncation */

START_TEST(test_page_growth)
{
	struct hyd__sess_store *st = open_store();
	struct hyd__sess *s = create(st);
	struct hyd_seq_view *v = hyd__sess_view(s);
	step(s, 10);
	ck_assert_uint_eq(v->layers[0].n_pages, 1);
	void *p0 = v->layers[0].pages[0];
	void *q0 = v->layers[3].pages[0];
	for (uint32_t n = 11; n <= MAX_CTX; n += 13) {
		ck_assert_int_eq(hyd__sess_ensure_capacity(s, n), 0);
		ck_assert_uint_eq(v->layers[0].n_pages, (n + PT - 1) / PT);
		ck_assert_uint_eq(v->layers[3].n_pages, (n + PT - 1) / PT);
		ck_assert_ptr_eq(v->layers[0].pages[0], p0); /* addresses never move */
		ck_assert_ptr_eq(v->layers[3].pages[0], q0);
		check_state(s, 10, 1);
	}
	ck_assert_int_eq(hyd__sess_ensure_capacity(s, MAX_CTX), 0);
	ck_assert_int_eq(hyd__sess_ensure_capacity(s, MAX_CTX + 1), -E2BIG);
	/* Pages are distinct, aligned and do not overlap. */
	for (uint32_t k = 1; k < v->layers[3].n_pages; k++)
		ck_assert_uint_ge((uintptr_t)v->layers[3].pages[k] - (uintptr_t)v->layers[3].pages[k - 1],
				  layouts[3].page_bytes);
	for (uint32_t k = 0; k < v->layers[0].n_pages; k++)
		ck_assert_uint_eq((uintptr_t)v->layers[0].pages[k] % 64, 0);
	/* Fill to the end and read it all back after a re-attach. */
	step(s, 90);
	int32_t t = 1;
	ck_assert_int_eq(hyd__sess_commit(s, 1, &t), -E2BIG);
	char id[HYD_SESSION_ID_LEN + 1];
	snprintf(id, sizeof(id), "%s", hyd__sess_id(s));
	hyd__sess_detach(s);
	s = attach(st, id);
	check_state(s, 100, 0);
	hyd__sess_store_close(st);
}
END_TEST

START_TEST(test_commit_needs_pages)
{
	struct hyd__sess_store *st = open_store();
	struct hyd__sess *s = create(st);
	int32_t toks[20] = { 0 };
	ck_assert_int_eq(hyd__sess_commit(s, 20, toks), -EINVAL);
	ck_assert_int_eq(hyd__sess_commit(s, 0, toks), -EINVAL);
	check_state(s, 0, 0);
	hyd__sess_store_close(st);
}
END_TEST

START_TEST(test_truncate_paged)
{
	struct hyd__sess_model m;
	model_desc(&m, 1);
	m.n_layer = 2;
	m.kinds = attn_kinds;
	m.layouts = attn_layouts;
	m.state_init = NULL;
	struct hyd__sess_store *st = open_store_with(&m, 0);
	struct hyd__sess *s = create(st);
	struct hyd_seq_view *v = hyd__sess_view(s);
	int32_t toks[60];
	for (int i = 0; i < 60; i++)
		toks[i] = token_at((uint32_t)i);
	ck_assert_int_eq(hyd__sess_ensure_capacity(s, 60), 0);
	for (uint32_t p = 0; p < 60; p++)
		memset((uint8_t *)v->layers[1].pages[p / PT] + (p % PT) * 512, row_byte(1, p), 512);
	ck_assert_int_eq(hyd__sess_commit(s, 60, toks), 0);
	ck_assert_uint_eq(v->layers[1].n_pages, 4);
	ck_assert_int_eq(hyd__sess_truncate(s, 61), -ERANGE);
	ck_assert_int_eq(hyd__sess_truncate(s, 20), 0); /* no replay: attention only */
	ck_assert_uint_eq(hyd__sess_pos(s), 20);
	ck_assert_uint_eq(v->layers[1].n_pages, 2);
	ck_assert_uint_eq(hyd__sess_replay_to(s), 20);
	for (uint32_t p = 0; p < 20; p++)
		ck_assert_uint_eq(((uint8_t *)v->layers[1].pages[p / PT])[(p % PT) * 512 + 511], row_byte(1, p));
	struct hyd__sess_usage u;
	hyd__sess_usage(s, &u);
	ck_assert_uint_eq(u.kinds[0].n_pages, 4);
	ck_assert_uint_eq(u.kinds[0].page_bytes, 2 * attn_layouts[0].page_bytes + 2 * attn_layouts[1].page_bytes);
	hyd__sess_store_close(st);
}
END_TEST

START_TEST(test_truncate_replay)
{
	struct hyd__sess_store *st = open_store();
	struct hyd__sess *s = create(st);
	step(s, 30);
	step(s, 20);
	ck_assert_int_eq(init_calls, 1);
	ck_assert_int_eq(hyd__sess_truncate(s, 50), 0); /* no-op */
	ck_assert_int_eq(hyd__sess_truncate(s, 24), 1); /* SSM/SWA: replay needed */
	ck_assert_int_eq(init_calls, 2);
	check_state(s, 0, 0); /* fresh fixed regions (init fill), pos 0 */
	ck_assert_uint_eq(hyd__sess_replay_to(s), 24);
	ck_assert_uint_eq(hyd__sess_view(s)->layers[0].n_pages, 2);
	for (uint32_t p = 0; p < 24; p++)
		ck_assert_int_eq(hyd__sess_tokens(s)[p], token_at(p));
	/* The pending replay survives a re-attach. */
	char id[HYD_SESSION_ID_LEN + 1];
	snprintf(id, sizeof(id), "%s", hyd__sess_id(s));
	hyd__sess_detach(s);
	s = attach(st, id);
	ck_assert_uint_eq(hyd__sess_replay_to(s), 24);
	/* Replaying from the history itself keeps it pending until done. */
	write_step(s, 10);
	ck_assert_int_eq(hyd__sess_commit(s, 10, hyd__sess_tokens(s)), 0);
	ck_assert_uint_eq(hyd__sess_replay_to(s), 24);
	step(s, 14);
	check_state(s, 24, 0);
	ck_assert_uint_eq(hyd__sess_replay_to(s), 24);
	/* A different token ends a pending replay. */
	ck_assert_int_eq(hyd__sess_truncate(s, 10), 1);
	int32_t other = 7;
	write_step(s, 1);
	ck_assert_int_eq(hyd__sess_commit(s, 1, &other), 0);
	ck_assert_uint_eq(hyd__sess_replay_to(s), 1);
	/* Reset: empty, nothing to replay. */
	ck_assert_int_eq(hyd__sess_reset(s), 0);
	check_state(s, 0, 0);
	ck_assert_uint_eq(hyd__sess_replay_to(s), 0);
	ck_assert_uint_eq(hyd__sess_view(s)->layers[0].n_pages, 0);
	hyd__sess_store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ accounting */

START_TEST(test_accounting)
{
	struct hyd__sess_model m;
	model_desc(&m, 1);
	struct hyd__sess_store *st = open_store();
	struct hyd__sess *a = create(st);
	struct hyd__sess *b = create(st);
	step(a, 40);
	ck_assert_int_eq(hyd__sess_ensure_capacity(b, 1), 0);

	const uint64_t hdr = sizeof(struct hyd_sess_hdr) + N_LAYER * sizeof(struct hyd_sess_layer) + MAX_CTX * 4;
	struct hyd__sess_usage u;
	hyd__sess_usage(a, &u);
	ck_assert_uint_eq(u.n_sessions, 1);
	ck_assert_uint_eq(u.tokens, 40);
	ck_assert_uint_eq(u.header_bytes, hdr);
	ck_assert_uint_eq(u.n_kinds, 3);
	ck_assert_str_eq(u.kinds[0].kind, "attn");
	ck_assert_str_eq(u.kinds[1].kind, "mamba2");
	ck_assert_str_eq(u.kinds[2].kind, "swa");
	ck_assert_uint_eq(u.kinds[0].n_layers, 2);
	ck_assert_uint_eq(u.kinds[0].n_pages, 6);
	ck_assert_uint_eq(u.kinds[0].page_bytes, 3 * (layouts[0].page_bytes + layouts[3].page_bytes));
	ck_assert_uint_eq(u.kinds[0].fixed_bytes, 0);
	ck_assert_uint_eq(u.kinds[1].fixed_bytes, layouts[1].fixed_bytes);
	ck_assert_uint_eq(u.kinds[1].page_bytes, 0);
	ck_assert_uint_eq(u.kinds[2].fixed_bytes, layouts[2].fixed_bytes);
	const uint64_t a_bytes = hdr + layouts[1].fixed_bytes + layouts[2].fixed_bytes +
				 3 * (layouts[0].page_bytes + layouts[3].page_bytes);
	ck_assert_uint_eq(u.total_bytes, a_bytes);
	ck_assert_uint_eq(hyd__sess_bytes_for(&m, 40), a_bytes);
	ck_assert_uint_eq(hyd__sess_bytes_for(&m, 48), a_bytes);
	ck_assert_uint_eq(hyd__sess_bytes_for(&m, 49), a_bytes + layouts[0].page_bytes + layouts[3].page_bytes);

	struct hyd__sess_usage t;
	hyd__sess_store_usage(st, &t);
	ck_assert_uint_eq(t.n_sessions, 2);
	ck_assert_uint_eq(t.tokens, 40);
	ck_assert_uint_eq(t.total_bytes, a_bytes + hyd__sess_bytes_for(&m, 1));
	ck_assert_uint_eq(t.kinds[0].n_pages, 8);
	ck_assert_uint_eq(t.kinds[1].fixed_bytes, 2 * layouts[1].fixed_bytes);
	hyd__sess_detach(b);
	hyd__sess_store_usage(st, &t);
	ck_assert_uint_eq(t.total_bytes, a_bytes);
	hyd__sess_store_close(st);
}
END_TEST

START_TEST(test_memory_limit)
{
	struct hyd__sess_model m;
	model_desc(&m, 1);
	const uint64_t limit = hyd__sess_bytes_for(&m, 32);
	struct hyd__sess_store *st = open_store_with(&m, limit);
	struct hyd__sess *a = create(st);
	ck_assert_int_eq(hyd__sess_ensure_capacity(a, 32), 0);
	ck_assert_int_eq(hyd__sess_ensure_capacity(a, 33), -ENOSPC);
	ck_assert_uint_eq(hyd__sess_view(a)->layers[0].n_pages, 2);
	struct hyd__sess *b = NULL;
	ck_assert_int_eq(hyd__sess_create(st, uid, NULL, &b), -ENOSPC);
	ck_assert_int_eq(hyd__sess_fork(st, a, uid, NULL, &b), -ENOSPC);
	/* Dropping pages makes room again. */
	step(a, 5);
	ck_assert_int_eq(hyd__sess_truncate(a, 0), 0);
	ck_assert_int_eq(hyd__sess_ensure_capacity(a, 32), 0);
	hyd__sess_store_close(st);
}
END_TEST

START_TEST(test_bad_model)
{
	struct hyd__sess_model m;
	model_desc(&m, 1);
	struct hyd_state_layout bad[N_LAYER];
	memcpy(bad, layouts, sizeof(bad));
	bad[0].page_tokens = 0;
	m.layouts = bad;
	struct hyd__sess_store_opts o = { .dir = dir };
	struct hyd__sess_store *st = NULL;
	char err[160];
	ck_assert_int_eq(hyd__sess_store_open(&o, &m, &st, err, sizeof(err)), -EINVAL);
	/* A state directory others can write is refused. */
	model_desc(&m, 1);
	ck_assert_int_eq(chmod(dir, 0777), 0);
	ck_assert_int_eq(hyd__sess_store_open(&o, &m, &st, err, sizeof(err)), -EPERM);
	ck_assert_ptr_null(st);
}
END_TEST

static Suite *session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_create_attach);
	tcase_add_test(tc, test_bad_ids);
	tcase_add_test(tc, test_name_text_rules);
	tcase_add_loop_test(tc, test_corruption, 0, C_N);
	tcase_add_test(tc, test_foreign);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_crash_mid_step);
	tcase_add_test(tc, test_crash_after_grow);
	tcase_add_test(tc, test_crash_mid_reset);
	tcase_add_test(tc, test_fork);
	tcase_add_test(tc, test_snapshot_restore);
	tcase_add_test(tc, test_delete);
	tcase_add_test(tc, test_page_growth);
	tcase_add_test(tc, test_commit_needs_pages);
	tcase_add_test(tc, test_truncate_paged);
	tcase_add_test(tc, test_truncate_replay);
	tcase_add_test(tc, test_accounting);
	tcase_add_test(tc, test_memory_limit);
	tcase_add_test(tc, test_bad_model);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(session_suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
