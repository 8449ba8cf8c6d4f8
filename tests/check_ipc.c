/* Rings, doorbells and the wire checks (ipc/ring.c, ipc/proto.c). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc/proto.h"
#include "ipc/ring.h"
#include "ipc/shm.h"

/* A ring in anonymous shared memory, so forked processes see the same bytes. */
struct test_ring {
	struct hyd_ring_ctl ctl;
	uint8_t data[];
};

static struct test_ring *ring_new(uint32_t size, uint32_t max_record)
{
	struct test_ring *t = mmap(NULL, sizeof(*t) + size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(t, MAP_FAILED);
	ck_assert_int_eq(hyd__ring_init(&t->ctl, size, max_record), 0);
	return t;
}

static void attach(struct test_ring *t, struct hyd_ring *p, struct hyd_ring *c)
{
	if (p)
		ck_assert_int_eq(hyd__ring_attach(p, &t->ctl, t->data, 0, 0, HYD_RING_PRODUCER), 0);
	if (c)
		ck_assert_int_eq(hyd__ring_attach(c, &t->ctl, t->data, 0, 0, HYD_RING_CONSUMER), 0);
}

static void fill(uint8_t *b, uint32_t n, uint32_t seed)
{
	for (uint32_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed * 131 + i * 7);
}

static bool check_fill(const uint8_t *b, uint32_t n, uint32_t seed)
{
	for (uint32_t i = 0; i < n; i++)
		if (b[i] != (uint8_t)(seed * 131 + i * 7))
			return false;
	return true;
}

START_TEST(test_init_rejects)
{
	struct hyd_ring_ctl ctl;
	ck_assert_int_eq(hyd__ring_init(&ctl, 3000, 0), -EINVAL);
	ck_assert_int_eq(hyd__ring_init(&ctl, 2048, 0), -EINVAL);
	ck_assert_int_eq(hyd__ring_init(&ctl, 4096, 8192), -EINVAL);
	ck_assert_int_eq(hyd__ring_init(&ctl, 4096, 100), -EINVAL); /* not a multiple of 8 */
	ck_assert_int_eq(hyd__ring_init(&ctl, 4096, 0), 0);
	ck_assert_uint_eq(ctl.max_record, 2048);

	struct hyd_ring r;
	ctl.magic ^= 1;
	ck_assert_int_eq(hyd__ring_attach(&r, &ctl, NULL, 0, 0, HYD_RING_CONSUMER), -EPROTO);
	ctl.magic ^= 1;
	ctl.size = 5000;
	ck_assert_int_eq(hyd__ring_attach(&r, &ctl, NULL, 0, 0, HYD_RING_CONSUMER), -EPROTO);
	/* the daemon's own sizes win over what the shared block claims */
	ck_assert_int_eq(hyd__ring_attach(&r, &ctl, NULL, 4096, 2048, HYD_RING_CONSUMER), 0);
	ck_assert_uint_eq(r.size, 4096);
}
END_TEST

START_TEST(test_empty_full)
{
	struct test_ring *t = ring_new(4096, 4096);
	struct hyd_ring p, c;
	attach(t, &p, &c);
	uint8_t buf[4096], out[4096];
	struct hyd_msg_hdr h;

	ck_assert_int_eq(hyd__ring_read(&c, &h, out, sizeof(out)), 0);
	ck_assert_int_eq(hyd__ring_avail(&c), 0);
	ck_assert_int_eq(hyd__ring_space(&p), 4096);

	/* zero-length payloads are records too */
	ck_assert_int_eq(hyd__ring_write(&p, 7, 0, 42, NULL, 0), 0);
	ck_assert_int_eq(hyd__ring_read(&c, &h, out, sizeof(out)), 1);
	ck_assert_uint_eq(h.len, 0);
	ck_assert_uint_eq(h.type, 7);
	ck_assert_uint_eq(h.id, 42);

	/* one record that fills the ring exactly */
	uint32_t len = 4096 - sizeof(struct hyd_msg_hdr);
	fill(buf, len, 1);
	ck_assert_int_eq(hyd__ring_write(&p, 1, 0, 1, buf, len), 0);
	ck_assert_int_eq(hyd__ring_space(&p), 0);
	ck_assert_int_eq(hyd__ring_write(&p, 1, 0, 2, NULL, 0), -EAGAIN);
	ck_assert_int_eq(hyd__ring_write(&p, 1, 0, 2, buf, len + 1), -EMSGSIZE);
	/* too small a buffer leaves the record in place */
	ck_assert_int_eq(hyd__ring_read(&c, &h, out, 10), -ENOBUFS);
	ck_assert_int_eq(hyd__ring_read(&c, &h, out, sizeof(out)), 1);
	ck_assert_uint_eq(h.len, len);
	ck_assert(check_fill(out, len, 1));
	ck_assert_int_eq(hyd__ring_read(&c, &h, out, sizeof(out)), 0);

	/* fill with small records until EAGAIN, then drain them all in order */
	int n = 0;
	while (hyd__ring_write(&p, 2, 0, (uint64_t)n, buf, 40) == 0)
		n++;
	ck_assert_int_eq(n, 4096 / hyd__ring_record_size(40));
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(hyd__ring_read(&c, &h, out, sizeof(out)), 1);
		ck_assert_uint_eq(h.id, (uint64_t)i);
	}
	ck_assert_int_eq(hyd__ring_read(&c, &h, out, sizeof(out)), 0);
	ck_assert_int_eq(hyd__ring_space(&p), 4096);
}
END_TEST

/* Records of every size straddle the end of the data area at every offset, including headers
 * split in two; _i starts the counters just below 2^64 to cross their overflow too. */
START_TEST(test_wraparound)
{
	struct test_ring *t = ring_new(4096, 2048);
	if (_i) {
		uint64_t start = UINT64_MAX - 5000;
		start &= ~(uint64_t)7;
		atomic_store(&t->ctl.head, start);
		atomic_store(&t->ctl.tail, start);
	}
	struct hyd_ring p, c;
	attach(t, &p, &c);
	uint8_t buf[2048], out[2048];
	uint32_t seed = 0, rseed = 0;
	uint64_t written = 0;
	for (int round = 0; round < 20000; round++) {
		uint32_t len = (uint32_t)(round * 37 % 2000);
		fill(buf, len, seed);
		int err = hyd__ring_write(&p, 3, 0, seed, buf, len);
		while (err == -EAGAIN) {
			/* drain one, then retry */
			struct hyd_msg_hdr h;
			ck_assert_int_eq(hyd__ring_read(&c, &h, out, sizeof(out)), 1);
			ck_assert_uint_eq(h.id, rseed);
			ck_assert(check_fill(out, h.len, rseed));
			rseed++;
			err = hyd__ring_write(&p, 3, 0, seed, buf, len);
		}
		ck_assert_int_eq(err, 0);
		seed++;
		written += hyd__ring_record_size(len);
	}
	struct hyd_msg_hdr h;
	int r;
	while ((r = hyd__ring_read(&c, &h, out, sizeof(out))) == 1) {
		ck_assert_uint_eq(h.id, rseed);
		ck_assert(check_fill(out, h.len, rseed));
		rseed++;
	}
	ck_assert_int_eq(r, 0);
	ck_assert_uint_eq(rseed, seed);
	ck_assert_uint_gt(written, 100 * 4096);
	if (_i)
		ck_assert_uint_lt(atomic_load(&t->ctl.head), 1u << 30); /* wrapped past 2^64 */
}
END_TEST

START_TEST(test_malformed_ring)
{
	struct test_ring *t = ring_new(4096, 1024);
	struct hyd_ring p, c;
	attach(t, &p, &c);
	uint8_t out[4096];
	struct hyd_msg_hdr h;

	/* bad length: header claims more than max_record */
	ck_assert_int_eq(hyd__ring_write(&p, 1, 0, 1, out, 16), 0);
	struct hyd_msg_hdr bad;
	memcpy(&bad, t->data, sizeof(bad));
	bad.len = 1500;
	memcpy(t->data, &bad, sizeof(bad));
	ck_assert_int_eq(hyd__ring_read(&c, &h, out, sizeof(out)), -EBADMSG);
	/* length past the ring */
	bad.len = 1u << 31;
	memcpy(t->data, &bad, sizeof(bad));
	ck_assert_int_eq(hyd__ring_read(&c, &h, out, sizeof(out)), -EBADMSG);
	/* length within max_record but past what the producer published */
	bad.len = 200;
	memcpy(t->data, &bad, sizeof(bad));
	ck_assert_int_eq(hyd__ring_read(&c, &h, out, sizeof(out)), -EBADMSG);
	bad.len = 16;
	memcpy(t->data, &bad, sizeof(bad));
	ck_assert_int_eq(hyd__ring_read(&c, &h, out, sizeof(out)), 1);

	/* a head more than a ring ahead of the tail, or behind it, or misaligned */
	struct hyd_ring c2;
	attach(t, NULL, &c2);
	atomic_store(&t->ctl.head, c2.pos + 4096 + 8);
	ck_assert_int_eq(hyd__ring_read(&c2, &h, out, sizeof(out)), -EBADMSG);
	atomic_store(&t->ctl.head, c2.pos - 8);
	ck_assert_int_eq(hyd__ring_read(&c2, &h, out, sizeof(out)), -EBADMSG);
	atomic_store(&t->ctl.head, c2.pos + 20);
	ck_assert_int_eq(hyd__ring_read(&c2, &h, out, sizeof(out)), -EBADMSG);

	/* a consumer tail that is impossible for the producer */
	struct test_ring *t2 = ring_new(4096, 1024);
	struct hyd_ring p2;
	attach(t2, &p2, NULL);
	atomic_store(&t2->ctl.tail, 12345);
	ck_assert_int_eq(hyd__ring_space(&p2), -EBADMSG);
}
END_TEST

static uint32_t put_gen(uint8_t *b, uint64_t session, const char *const *stops, uint32_t n)
{
	struct hyd_wire_generate g = { .session = session };
	uint32_t at = sizeof(g);
	for (uint32_t i = 0; i < n; i++) {
		uint16_t l = (uint16_t)strlen(stops[i]);
		memcpy(b + at, &l, 2);
		memcpy(b + at + 2, stops[i], l);
		at += 2 + l;
	}
	g.s.n_stop = n;
	g.s.stop_bytes = at - (uint32_t)sizeof(g);
	memcpy(b, &g, sizeof(g));
	return at;
}

START_TEST(test_proto_checks)
{
	uint8_t b[4096];
	memset(b, 0, sizeof(b));
	/* type and id */
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_LIST, 0, 1, b, 0), 0);
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_LIST, 0, 0, b, 0), -EPROTO);
	ck_assert_int_eq(hyd__proto_check_request(999, 0, 1, b, 0), -EPROTO);
	ck_assert_int_eq(hyd__proto_check_request(HYD_EVT_TOKEN, 0, 1, b, 8), -EPROTO);
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_LIST, 0x80, 1, b, 0), -EPROTO);
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_LIST, 0, 1, b, 8), -EBADMSG);
	/* fixed sizes */
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_CREATE, 0, 1, b, sizeof(struct hyd_wire_create)), 0);
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_CREATE, 0, 1, b, sizeof(struct hyd_wire_create) - 1),
			 -EBADMSG);
	/* names must be terminated inside their field */
	struct hyd_wire_create cr = { 0 };
	memset(cr.name, 'a', sizeof(cr.name));
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_CREATE, 0, 1, &cr, sizeof(cr)), -EBADMSG);
	/* appended counts agree with the length */
	struct hyd_wire_append ap = { .session = 1, .count = 10 };
	memcpy(b, &ap, sizeof(ap));
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_APPEND_TEXT, 0, 1, b, sizeof(ap) + 10), 0);
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_APPEND_TEXT, 0, 1, b, sizeof(ap) + 11), -EBADMSG);
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_APPEND_TOKENS, 0, 1, b, sizeof(ap) + 40), 0);
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_APPEND_TOKENS, 0, 1, b, sizeof(ap) + 10), -EBADMSG);
	ap.count = 0x40000001; /* count * 4 overflows 32 bits */
	memcpy(b, &ap, sizeof(ap));
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_APPEND_TOKENS, 0, 1, b, sizeof(ap) + 4), -EBADMSG);
	/* stop strings */
	const char *stops[] = { "\n\n", "User:" };
	uint32_t len = put_gen(b, 1, stops, 2);
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_GENERATE, 0, 1, b, len), 0);
	uint32_t off = 0, sl;
	const char *s;
	ck_assert_int_eq(hyd__proto_next_stop((void *)b, len, &off, &s, &sl), 1);
	ck_assert_uint_eq(sl, 2);
	ck_assert_int_eq(hyd__proto_next_stop((void *)b, len, &off, &s, &sl), 1);
	ck_assert_int_eq(memcmp(s, "User:", 5), 0);
	ck_assert_int_eq(hyd__proto_next_stop((void *)b, len, &off, &s, &sl), 0);
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_GENERATE, 0, 1, b, len - 1), -EBADMSG);
	uint16_t huge = 4000;
	memcpy(b + sizeof(struct hyd_wire_generate), &huge, 2);
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_GENERATE, 0, 1, b, len), -EBADMSG);
	/* paths: no NUL inside, length agrees */
	struct hyd_wire_path pa = { .session = 1, .path_len = 4 };
	memcpy(b, &pa, sizeof(pa));
	memcpy(b + sizeof(pa), "/tmp", 4);
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_SNAPSHOT, 0, 1, b, sizeof(pa) + 4), 0);
	b[sizeof(pa) + 2] = 0;
	ck_assert_int_eq(hyd__proto_check_request(HYD_REQ_SNAPSHOT, 0, 1, b, sizeof(pa) + 4), -EBADMSG);
	/* events */
	struct hyd_wire_token tk = { .token = 5, .text_len = 3 };
	memcpy(b, &tk, sizeof(tk));
	ck_assert_int_eq(hyd__proto_check_event(HYD_EVT_TOKEN, 0, b, sizeof(tk) + 3), 0);
	ck_assert_int_eq(hyd__proto_check_event(HYD_EVT_TOKEN, 0, b, sizeof(tk) + 4), -EBADMSG);
	struct hyd_wire_error er = { .err = 5, .msg_len = 0 };
	ck_assert_int_eq(hyd__proto_check_event(HYD_EVT_ERROR, 0, &er, sizeof(er)), -EBADMSG);
	ck_assert_int_eq(hyd__proto_check_event(HYD_REQ_CREATE, 0, b, 0), -EPROTO);
}
END_TEST

START_TEST(test_futex_timeout)
{
	struct test_ring *t = ring_new(4096, 0);
	struct hyd_ring c;
	attach(t, NULL, &c);
	uint64_t t0 = hyd__now_ns();
	ck_assert_int_eq(hyd__ring_wait_data(&c, 1000, 20000000), 0);
	ck_assert_uint_ge(hyd__now_ns() - t0, 20000000);
	struct hyd_ring_stats st;
	hyd__ring_stats(&t->ctl, &st);
	ck_assert_uint_ge(st.sleeps, 1);
	/* a timed-out waiter leaves its bell disarmed: the producer need not wake anyone */
	struct hyd_ring p;
	attach(t, &p, NULL);
	ck_assert_int_eq(hyd__ring_write(&p, 1, 0, 1, NULL, 0), 0);
	ck_assert(!hyd__ring_notify_data(&p));
}
END_TEST

/* Two processes bounce a counter through a pair of rings with futex sleep and wake; _i selects
 * no spinning (every wait sleeps) or the default spin. */
START_TEST(test_pingpong_fork)
{
	const int N = 100000;
	uint64_t spin = _i ? 8000 : 0;
	struct test_ring *a = ring_new(4096, 0), *b = ring_new(4096, 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct hyd_ring in, out;
		if (hyd__ring_attach(&in, &a->ctl, a->data, 0, 0, HYD_RING_CONSUMER) ||
		    hyd__ring_attach(&out, &b->ctl, b->data, 0, 0, HYD_RING_PRODUCER))
			_exit(2);
		for (int i = 0; i < N; i++) {
			struct hyd_msg_hdr h;
			uint64_t v;
			int r;
			while ((r = hyd__ring_read(&in, &h, &v, sizeof(v))) == 0)
				if (hyd__ring_wait_data(&in, spin, 2000000000) < 0)
					_exit(3);
			if (r != 1 || h.len != sizeof(v) || v != (uint64_t)i)
				_exit(4);
			v++;
			if (hyd__ring_write(&out, 2, 0, h.id, &v, sizeof(v)) != 0)
				_exit(5);
			hyd__ring_notify_data(&out);
		}
		_exit(0);
	}
	struct hyd_ring out, in;
	attach(a, &out, NULL);
	attach(b, NULL, &in);
	for (int i = 0; i < N; i++) {
		uint64_t v = (uint64_t)i;
		ck_assert_int_eq(hyd__ring_write(&out, 1, 0, (uint64_t)i + 1, &v, sizeof(v)), 0);
		hyd__ring_notify_data(&out);
		struct hyd_msg_hdr h;
		int r;
		while ((r = hyd__ring_read(&in, &h, &v, sizeof(v))) == 0)
			ck_assert_int_ge(hyd__ring_wait_data(&in, spin, 2000000000), 0);
		ck_assert_int_eq(r, 1);
		ck_assert_uint_eq(h.id, (uint64_t)i + 1);
		ck_assert_uint_eq(v, (uint64_t)i + 1);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);

	struct hyd_ring_stats sa, sb;
	hyd__ring_stats(&a->ctl, &sa);
	hyd__ring_stats(&b->ctl, &sb);
	ck_assert_uint_eq(sa.prod_msgs, (uint64_t)N);
	ck_assert_uint_eq(sb.cons_msgs, (uint64_t)N);
	if (!_i) {
		/* without spinning both sides must have slept and been woken */
		ck_assert_uint_gt(sa.sleeps + sb.sleeps, 1000);
		ck_assert_uint_gt(sa.wakes + sb.wakes, 1000);
	}
	fprintf(stderr, "pingpong spin=%llu: sleeps %llu+%llu wakes %llu+%llu\n", (unsigned long long)spin,
		(unsigned long long)sa.sleeps, (unsigned long long)sb.sleeps, (unsigned long long)sa.wakes,
		(unsigned long long)sb.wakes);
}
END_TEST

/* A producer process streams variable-size records through a small ring, waiting for space;
 * the consumer checks every byte. */
START_TEST(test_stream_fork)
{
	const uint32_t N = 200000;
	struct test_ring *t = ring_new(4096, 1024);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct hyd_ring p;
		uint8_t buf[1024];
		if (hyd__ring_attach(&p, &t->ctl, t->data, 0, 0, HYD_RING_PRODUCER))
			_exit(2);
		for (uint32_t i = 0; i < N; i++) {
			uint32_t len = (i * 2654435761u) % 1000;
			fill(buf, len, i);
			int err;
			while ((err = hyd__ring_write(&p, 1, 0, i, buf, len)) == -EAGAIN) {
				hyd__ring_notify_data(&p);
				if (hyd__ring_wait_space(&p, hyd__ring_record_size(len), 2000, 2000000000) < 0)
					_exit(3);
			}
			if (err)
				_exit(4);
			hyd__ring_notify_data(&p);
		}
		_exit(0);
	}
	struct hyd_ring c;
	attach(t, NULL, &c);
	uint8_t out[1024];
	for (uint32_t i = 0; i < N; i++) {
		struct hyd_msg_hdr h;
		int r;
		while ((r = hyd__ring_read(&c, &h, out, sizeof(out))) == 0)
			ck_assert_int_ge(hyd__ring_wait_data(&c, 2000, 2000000000), 0);
		ck_assert_int_eq(r, 1);
		hyd__ring_notify_space(&c);
		ck_assert_uint_eq(h.id, i);
		ck_assert_uint_eq(h.len, (i * 2654435761u) % 1000);
		ck_assert(check_fill(out, h.len, i));
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(test_shm_roundtrip)
{
	struct hyd_shm d, cl;
	ck_assert_int_eq(hyd__shm_create(4096, 8192, HYD_SHM_F_KICK, 77, &d), 0);
	ck_assert_int_eq(hyd__shm_attach(d.fd, d.size, &cl), 0);
	ck_assert_uint_eq(cl.conn_id, 77);
	ck_assert_uint_eq(cl.flags, HYD_SHM_F_KICK);
	ck_assert_uint_eq(cl.req.size, 4096);
	ck_assert_uint_eq(cl.evt.size, 8192);
	/* the seals hold: nobody can shrink the mapping under the other side */
	ck_assert_int_lt(ftruncate(d.fd, 4096), 0);
	ck_assert_int_eq(hyd__ring_write(&cl.req, HYD_REQ_LIST, 0, 9, NULL, 0), 0);
	struct hyd_msg_hdr h;
	uint8_t buf[64];
	ck_assert_int_eq(hyd__ring_read(&d.req, &h, buf, sizeof(buf)), 1);
	ck_assert_uint_eq(h.id, 9);
	/* wrong size announced, or a corrupted header, is refused */
	struct hyd_shm x;
	ck_assert_int_eq(hyd__shm_attach(d.fd, d.size + 4096, &x), -EPROTO);
	((struct hyd_shm_hdr *)d.base)->evt_data = 4096; /* overlaps the request ring */
	ck_assert_int_eq(hyd__shm_attach(d.fd, d.size, &x), -EPROTO);
	hyd__shm_release(&cl);
	hyd__shm_release(&d);
}
END_TEST

static Suite *ipc_suite(void)
{
	Suite *s = suite_create("ipc");
	TCase *tc = tcase_create("ring");
	tcase_add_test(tc, test_init_rejects);
	tcase_add_test(tc, test_empty_full);
	tcase_add_loop_test(tc, test_wraparound, 0, 2);
	tcase_add_test(tc, test_malformed_ring);
	tcase_add_test(tc, test_proto_checks);
	tcase_add_test(tc, test_futex_timeout);
	tcase_add_test(tc, test_shm_roundtrip);
	suite_add_tcase(s, tc);
	TCase *tp = tcase_create("processes");
	tcase_set_timeout(tp, 120);
	tcase_add_loop_test(tp, test_pingpong_fork, 0, 2);
	tcase_add_test(tp, test_stream_fork);
	suite_add_tcase(s, tp);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ipc_suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
