/* See plugin_loader.h. */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/plugin_loader.h"
#include "engine/alloc.h"

#define MAX_FACTORIES 64

struct hyd_plugin_set {
	const struct hyd_plugin_support *sup;
	void *handles[MAX_FACTORIES];
	unsigned n_handles;
	const struct hyd_mixer_factory *factories[MAX_FACTORIES];
	unsigned n_factories;
	char kinds[512];
};

static void logf_(const struct hyd_plugin_support *sup, enum hyd_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void logf_(const struct hyd_plugin_support *sup, enum hyd_log_level lvl, const char *fmt, ...)
{
	if (!sup || !sup->log)
		return;
	va_list ap;
	va_start(ap, fmt);
	sup->log(sup->log_ctx, lvl, fmt, ap);
	va_end(ap);
}

int hyd_plugins_new(const struct hyd_plugin_support *sup, struct hyd_plugin_set **ret_set)
{
	struct hyd_plugin_set *s = hyd_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->sup = sup;
	*ret_set = s;
	return 0;
}

static int seterr(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int seterr(char *err, size_t errlen, int code, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Only code that nobody but root or ourselves could have written gets loaded. */
static int check_file_safety(const char *file, char *err, size_t errlen)
{
	struct stat st;
	if (stat(file, &st) < 0)
		return seterr(err, errlen, -errno, "%s: %s", file, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return seterr(err, errlen, -EPERM, "%s: not a regular file", file);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return seterr(err, errlen, -EPERM, "%s: refused: writable by group or others (mode %o)", file,
			      st.st_mode & 07777);
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return seterr(err, errlen, -EPERM, "%s: refused: owned by uid %u, not root or uid %u", file,
			      (unsigned)st.st_uid, (unsigned)geteuid());
	return 0;
}

static int check_factory(const struct hyd_mixer_factory *f, const char *file, unsigned i, char *err, size_t errlen)
{
	/* abi_version and struct_size are the first two words of every table: read them before
	 * trusting anything else in it. */
	if (f->abi_version != HYD_PLUGIN_ABI_VERSION)
		return seterr(err, errlen, -EPROTO, "%s: factory %u: ABI version %u, this daemon speaks %u", file,
			      i, f->abi_version, HYD_PLUGIN_ABI_VERSION);
	if (f->struct_size < sizeof(struct hyd_mixer_factory))
		return seterr(err, errlen, -EPROTO, "%s: factory %u: table of %u bytes, expected at least %zu", file,
			      i, f->struct_size, sizeof(struct hyd_mixer_factory));
	if (!f->kind || !f->bind || !f->unbind || !f->state_layout || !f->scratch_size || !f->state_init ||
	    !f->forward)
		return seterr(err, errlen, -ENOEXEC, "%s: factory %u: missing kind or a required method", file, i);
	if (strnlen(f->kind, 32) >= 32)
		return seterr(err, errlen, -ENOEXEC, "%s: factory %u: kind name too long", file, i);
	return 0;
}

int hyd_plugin_load_file(struct hyd_plugin_set *s, const char *file, char *err, size_t errlen)
{
	int r = check_file_safety(file, err, errlen);
	if (r)
		return r;
	if (s->n_handles >= MAX_FACTORIES)
		return seterr(err, errlen, -E2BIG, "%s: too many plugins", file);
	void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return seterr(err, errlen, -ENOEXEC, "%s: cannot load: %s", file, dlerror());
	hyd_plugin_entry_fn entry = (hyd_plugin_entry_fn)dlsym(h, HYD_PLUGIN_ENTRY);
	if (!entry) {
		dlclose(h);
		return seterr(err, errlen, -ENOEXEC, "%s: no %s symbol: not a hyd plugin", file, HYD_PLUGIN_ENTRY);
	}
	const struct hyd_mixer_factory *const *list = entry();
	unsigned n = 0;
	for (; list && list[n]; n++) {
		if (n >= 16 || s->n_factories + n >= MAX_FACTORIES) {
			r = seterr(err, errlen, -E2BIG, "%s: too many factories", file);
			goto fail;
		}
		if ((r = check_factory(list[n], file, n, err, errlen)))
			goto fail;
	}
	if (n == 0) {
		r = seterr(err, errlen, -ENOEXEC, "%s: plugin offers no factories", file);
		goto fail;
	}
	for (unsigned i = 0; i < n; i++) {
		if (hyd_plugins_find(s, list[i]->kind)) {
			logf_(s->sup, HYD_LOG_WARN, "%s: kind '%s' already provided by an earlier plugin; ignored", file,
			      list[i]->kind);
			continue;
		}
		s->factories[s->n_factories++] = list[i];
		size_t len = strlen(s->kinds);
		snprintf(s->kinds + len, sizeof(s->kinds) - len, "%s%s", len ? ", " : "", list[i]->kind);
	}
	s->handles[s->n_handles++] = h;
	return 0;
fail:
	dlclose(h);
	return r;
}

static int load_dir(struct hyd_plugin_set *s, const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	struct dirent *e;
	/* sorted order, so which plugin wins a duplicate kind does not depend on the file system */
	char *names[256];
	unsigned n = 0;
	while ((e = readdir(d)) && n < 256) {
		size_t len = strlen(e->d_name);
		if (len > 3 && !strcmp(e->d_name + len - 3, ".so"))
			names[n++] = hyd_strdup(e->d_name);
	}
	closedir(d);
	for (unsigned i = 1; i < n; i++)
		for (unsigned k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
			char *t = names[k];
			names[k] = names[k - 1];
			names[k - 1] = t;
		}
	for (unsigned i = 0; i < n; i++) {
		char path[4096], err[512];
		if (names[i] && snprintf(path, sizeof(path), "%s/%s", dir, names[i]) < (int)sizeof(path)) {
			int r = hyd_plugin_load_file(s, path, err, sizeof(err));
			if (r)
				logf_(s->sup, HYD_LOG_WARN, "plugin refused: %s", err);
		}
		hyd_free(names[i]);
	}
	return 0;
}

/* A binary run from the build tree (not installed) uses the plugins built beside it. */
static bool build_tree_plugins(char *buf, size_t n)
{
	char exe[4096];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len <= 0)
		return false;
	exe[len] = 0;
	char *slash = strrchr(exe, '/');
	if (!slash)
		return false;
	*slash = 0;
	/* libtool may run the real binary from .libs/ */
	size_t dl = strlen(exe);
	if (dl >= 6 && !strcmp(exe + dl - 6, "/.libs"))
		exe[dl - 6] = 0;
	if (snprintf(buf, n, "%s/plugins/.libs", exe) >= (int)n)
		return false;
	struct stat st;
	return stat(buf, &st) == 0 && S_ISDIR(st.st_mode);
}

int hyd_plugins_load(const char *dirs, const struct hyd_plugin_support *sup, struct hyd_plugin_set **ret_set,
		     char *err, size_t errlen)
{
	char build_tree[4200];
	if (!dirs)
		dirs = getenv("HYD_PLUGIN_PATH");
	if ((!dirs || !*dirs) && build_tree_plugins(build_tree, sizeof(build_tree)))
		dirs = build_tree;
	if (!dirs || !*dirs)
		dirs = HYD_PLUGIN_DIR;
	struct hyd_plugin_set *s;
	int r = hyd_plugins_new(sup, &s);
	if (r)
		return r;
	char *copy = hyd_strdup(dirs), *save = NULL;
	if (!copy) {
		hyd_plugins_free(s);
		return -ENOMEM;
	}
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save))
		load_dir(s, dir);
	hyd_free(copy);
	if (s->n_factories == 0) {
		hyd_plugins_free(s);
		return seterr(err, errlen, -ENOENT,
			      "no layer plugins found in '%s' (set HYD_PLUGIN_PATH or --plugin-dir to the directory "
			      "holding attn.so, swa.so, ssm.so)",
			      dirs);
	}
	*ret_set = s;
	return 0;
}

const struct hyd_mixer_factory *hyd_plugins_find(const struct hyd_plugin_set *s, const char *kind)
{
	for (unsigned i = 0; i < s->n_factories; i++)
		if (!strcmp(s->factories[i]->kind, kind))
			return s->factories[i];
	return NULL;
}

const char *hyd_plugins_kinds(const struct hyd_plugin_set *s)
{
	return s->kinds;
}

void hyd_plugins_free(struct hyd_plugin_set *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->n_handles; i++)
		dlclose(s->handles[i]);
	hyd_free(s);
}
