/* hydd's settings: sizes, keys, the config file, and flags overriding it. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/hydd_config.h"

static char tmpdir[] = "/tmp/check_hydd_config.XXXXXX";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static int parse(struct hydd_config *c, char *err, size_t errlen, FILE *out, int argc, ...)
{
	char *argv[32];
	va_list ap;
	va_start(ap, argc);
	argv[0] = "hydd";
	for (int i = 1; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[argc] = NULL;
	return hyd__cfg_parse_args(c, argc, argv, out, err, errlen);
}

START_TEST(test_size)
{
	uint64_t v = 0;
	ck_assert_int_eq(hyd__cfg_parse_size("123", &v), 0);
	ck_assert_uint_eq(v, 123);
	ck_assert_int_eq(hyd__cfg_parse_size("64K", &v), 0);
	ck_assert_uint_eq(v, 65536);
	ck_assert_int_eq(hyd__cfg_parse_size("2M", &v), 0);
	ck_assert_uint_eq(v, 2u << 20);
	ck_assert_int_eq(hyd__cfg_parse_size("1.5G", &v), 0);
	ck_assert_uint_eq(v, 3ull << 29);
	ck_assert_int_eq(hyd__cfg_parse_size("4GiB", &v), 0);
	ck_assert_uint_eq(v, 4ull << 30);
	ck_assert_int_eq(hyd__cfg_parse_size("1T", &v), 0);
	ck_assert_uint_eq(v, 1ull << 40);
	v = 7;
	ck_assert_int_eq(hyd__cfg_parse_size("", &v), -EINVAL);
	ck_assert_int_eq(hyd__cfg_parse_size("12Q", &v), -EINVAL);
	ck_assert_int_eq(hyd__cfg_parse_size("-5", &v), -EINVAL);
	ck_assert_int_eq(hyd__cfg_parse_size("K", &v), -EINVAL);
	ck_assert_int_eq(hyd__cfg_parse_size("99999999999T", &v), -ERANGE);
	ck_assert_uint_eq(v, 7); /* written only on success */
}
END_TEST

START_TEST(test_set)
{
	struct hydd_config c;
	char err[256] = "";
	hyd__cfg_init(&c);
	ck_assert_int_eq(hyd__cfg_set(&c, "max_context", "4096", err, sizeof(err)), 0);
	ck_assert_uint_eq(c.max_context, 4096);
	ck_assert_int_eq(hyd__cfg_set(&c, "memory-limit", "1M", err, sizeof(err)), 0);
	ck_assert_uint_eq(c.memory_limit, 1u << 20);
	ck_assert_int_eq(hyd__cfg_set(&c, "foreground", "yes", err, sizeof(err)), 0);
	ck_assert(c.foreground);
	ck_assert_int_eq(hyd__cfg_set(&c, "model", "/m.gguf", err, sizeof(err)), 0);
	ck_assert_str_eq(c.model, "/m.gguf");
	ck_assert_int_eq(hyd__cfg_set(&c, "model", "", err, sizeof(err)), 0);
	ck_assert_ptr_null(c.model); /* empty: back to the default */
	ck_assert_int_eq(hyd__cfg_set(&c, "threads", "many", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "threads"));
	ck_assert_int_eq(hyd__cfg_set(&c, "threads", "-1", err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(hyd__cfg_set(&c, "max-sessions", "99999999999", err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(hyd__cfg_set(&c, "colour", "blue", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "unknown setting 'colour'"));
	hyd__cfg_free(&c);
}
END_TEST

START_TEST(test_file_and_flags)
{
	char path[256], err[512] = "";
	snprintf(path, sizeof(path), "%s/hydd.conf", tmpdir);
	write_file(path, "# comment\n\n  model = /models/a.gguf\nthreads=3\nmax-context = 2048 \n"
			 "memory_limit = \"512M\"\nsocket = /run/x.sock\n");
	struct hydd_config c;
	hyd__cfg_init(&c);
	ck_assert_int_eq(parse(&c, err, sizeof(err), stdout, 5, "--config", path, "-t", "7"), HYD_CFG_RUN);
	ck_assert_str_eq(c.model, "/models/a.gguf");
	ck_assert_str_eq(c.socket, "/run/x.sock");
	ck_assert_uint_eq(c.threads, 7); /* the flag wins */
	ck_assert_uint_eq(c.max_context, 2048);
	ck_assert_uint_eq(c.memory_limit, 512u << 20);
	ck_assert_str_eq(c.config_file, path);
	hyd__cfg_free(&c);

	hyd__cfg_init(&c);
	ck_assert_int_eq(parse(&c, err, sizeof(err), stdout, 9, "-m", "/b.gguf", "--state-dir=/s", "-vv",
			       "--max-sessions", "5", "--foreground", "--memory-limit=2G"),
			 HYD_CFG_RUN);
	ck_assert_str_eq(c.model, "/b.gguf");
	ck_assert_str_eq(c.state_dir, "/s");
	ck_assert_int_eq(c.verbose, 2);
	ck_assert_uint_eq(c.max_sessions, 5);
	ck_assert(c.foreground);
	ck_assert_uint_eq(c.memory_limit, 2ull << 30);
	hyd__cfg_free(&c);
}
END_TEST

START_TEST(test_errors)
{
	char path[256], err[512] = "";
	struct hydd_config c;
	snprintf(path, sizeof(path), "%s/bad.conf", tmpdir);
	write_file(path, "threads = 2\nthis line has no equals sign\n");
	hyd__cfg_init(&c);
	ck_assert_int_eq(parse(&c, err, sizeof(err), stdout, 3, "--config", path), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, ":2: expected 'key = value'"));
	hyd__cfg_free(&c);

	write_file(path, "max-context = lots\n");
	hyd__cfg_init(&c);
	ck_assert_int_eq(parse(&c, err, sizeof(err), stdout, 3, "--config", path), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, ":1: bad value 'lots' for max-context"));
	hyd__cfg_free(&c);

	hyd__cfg_init(&c);
	ck_assert_int_eq(parse(&c, err, sizeof(err), stdout, 3, "--config", "/nonexistent/hydd.conf"), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "cannot open /nonexistent/hydd.conf"));
	ck_assert_int_eq(parse(&c, err, sizeof(err), stdout, 2, "--bogus"), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "unknown option '--bogus'"));
	ck_assert_int_eq(parse(&c, err, sizeof(err), stdout, 2, "--model"), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "requires an argument"));
	ck_assert_int_eq(parse(&c, err, sizeof(err), stdout, 3, "--memory-limit", "10X"), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--memory-limit"));
	ck_assert_int_eq(parse(&c, err, sizeof(err), stdout, 2, "stray"), -EINVAL);
	hyd__cfg_free(&c);
}
END_TEST

START_TEST(test_help_version)
{
	char buf[8192] = "", err[256];
	FILE *out = fmemopen(buf, sizeof(buf) - 1, "w");
	struct hydd_config c;
	hyd__cfg_init(&c);
	ck_assert_int_eq(parse(&c, err, sizeof(err), out, 2, "--help"), HYD_CFG_EXIT);
	fflush(out);
	/* every long option is documented */
	const char *opts[] = { "--model", "--socket", "--state-dir", "--threads", "--max-sessions", "--max-context",
			       "--max-chunk", "--memory-limit", "--plugin-dir", "--config", "--foreground",
			       "--verbose", "--help", "--version" };
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		ck_assert_msg(strstr(buf, opts[i]), "%s missing from --help", opts[i]);
	rewind(out);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(parse(&c, err, sizeof(err), out, 2, "-V"), HYD_CFG_EXIT);
	fflush(out);
	ck_assert_ptr_nonnull(strstr(buf, "hydd " PACKAGE_VERSION));
	fclose(out);
	hyd__cfg_free(&c);
}
END_TEST

START_TEST(test_default_file)
{
	char buf[512];
	setenv("XDG_CONFIG_HOME", "/xdg", 1);
	ck_assert_int_eq(hyd__cfg_default_file(buf, sizeof(buf)), 0);
	if (geteuid() == 0)
		ck_assert_str_eq(buf, "/etc/hyd/hydd.conf");
	else
		ck_assert_str_eq(buf, "/xdg/hyd/hydd.conf");
	ck_assert_int_eq(hyd__cfg_default_file(buf, 4), -ENAMETOOLONG);
}
END_TEST

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 99;
	Suite *s = suite_create("hydd_config");
	TCase *tc = tcase_create("config");
	tcase_add_test(tc, test_size);
	tcase_add_test(tc, test_set);
	tcase_add_test(tc, test_file_and_flags);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_help_version);
	tcase_add_test(tc, test_default_file);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		failed++;
	return failed ? 1 : 0;
}
