/* The plugin loader: accepts the real plugins, refuses a wrong ABI version, a truncated
 * table, a file without the entry symbol and a group-writable file, each with a message that
 * names the file and the reason. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/plugin_loader.h"

static char libs[4096];

static void path_of(char *buf, size_t n, const char *dir, const char *file)
{
	const int len = snprintf(buf, n, "%s/%s", dir, file);
	ck_assert_msg(len >= 0 && (size_t)len < n, "path too long: %s/%s", dir, file);
}

START_TEST(real_plugins_load)
{
	struct hyd_plugin_set *s;
	char err[512] = "";
	ck_assert_int_eq(hyd_plugins_load(getenv("HYD_PLUGIN_PATH"), NULL, &s, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(hyd_plugins_find(s, "attn"));
	ck_assert_ptr_nonnull(hyd_plugins_find(s, "swa"));
	ck_assert_ptr_null(hyd_plugins_find(s, "no-such-kind"));
	hyd_plugins_free(s);
}
END_TEST

START_TEST(wrong_abi_version_refused)
{
	struct hyd_plugin_set *s;
	char file[4096], err[512] = "";
	ck_assert_int_eq(hyd_plugins_new(NULL, &s), 0);
	path_of(file, sizeof(file), libs, "bad_abi.so");
	ck_assert_int_eq(hyd_plugin_load_file(s, file, err, sizeof(err)), -EPROTO);
	ck_assert_msg(strstr(err, "bad_abi.so") && strstr(err, "ABI version"), "message: %s", err);
	ck_assert_ptr_null(hyd_plugins_find(s, "future"));
	hyd_plugins_free(s);
}
END_TEST

START_TEST(truncated_table_refused)
{
	struct hyd_plugin_set *s;
	char file[4096], err[512] = "";
	ck_assert_int_eq(hyd_plugins_new(NULL, &s), 0);
	path_of(file, sizeof(file), libs, "small_table.so");
	ck_assert_int_eq(hyd_plugin_load_file(s, file, err, sizeof(err)), -EPROTO);
	ck_assert_msg(strstr(err, "small_table.so") && strstr(err, "bytes"), "message: %s", err);
	hyd_plugins_free(s);
}
END_TEST

START_TEST(not_a_plugin_refused)
{
	struct hyd_plugin_set *s;
	char err[512] = "";
	ck_assert_int_eq(hyd_plugins_new(NULL, &s), 0);
	/* a shared object without the entry symbol: the C library itself */
	int r = hyd_plugin_load_file(s, "/lib/x86_64-linux-gnu/libm.so.6", err, sizeof(err));
	ck_assert_msg(r == -ENOEXEC || r == -ENOENT, "r = %d (%s)", r, err);
	if (r == -ENOEXEC)
		ck_assert_msg(strstr(err, "hyd_plugin_entry"), "message: %s", err);
	hyd_plugins_free(s);
}
END_TEST

START_TEST(writable_file_refused)
{
	char src[4096], tmpl[] = "/tmp/hyd-plugin-XXXXXX", dst[4200], cmd[9000], err[512] = "";
	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	path_of(src, sizeof(src), getenv("HYD_PLUGIN_PATH"), "attn.so");
	snprintf(dst, sizeof(dst), "%s/attn.so", tmpl);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", src, dst);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(chmod(dst, 0666), 0);
	struct hyd_plugin_set *s;
	ck_assert_int_eq(hyd_plugins_new(NULL, &s), 0);
	ck_assert_int_eq(hyd_plugin_load_file(s, dst, err, sizeof(err)), -EPERM);
	ck_assert_msg(strstr(err, "writable"), "message: %s", err);
	ck_assert_int_eq(chmod(dst, 0644), 0);
	ck_assert_int_eq(hyd_plugin_load_file(s, dst, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(hyd_plugins_find(s, "attn"));
	hyd_plugins_free(s);
	unlink(dst);
	rmdir(tmpl);
}
END_TEST

START_TEST(empty_dir_is_an_error)
{
	char tmpl[] = "/tmp/hyd-plugin-XXXXXX", err[512] = "";
	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	struct hyd_plugin_set *s = NULL;
	ck_assert_int_eq(hyd_plugins_load(tmpl, NULL, &s, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, tmpl) && strstr(err, "HYD_PLUGIN_PATH"), "message: %s", err);
	rmdir(tmpl);
}
END_TEST

int main(void)
{
	const char *b = getenv("HYD_BUILDDIR");
	snprintf(libs, sizeof(libs), "%s/tests/plugins/.libs", b ? b : ".");
	Suite *su = suite_create("plugin_loader");
	TCase *tc = tcase_create("loader");
	tcase_add_test(tc, real_plugins_load);
	tcase_add_test(tc, wrong_abi_version_refused);
	tcase_add_test(tc, truncated_table_refused);
	tcase_add_test(tc, not_a_plugin_refused);
	tcase_add_test(tc, writable_file_refused);
	tcase_add_test(tc, empty_dir_is_an_error);
	suite_add_tcase(su, tc);
	SRunner *sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
