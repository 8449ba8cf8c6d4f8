/* Per-session state bytes by layer kind at several context lengths, computed by the code the
 * daemon sizes sessions with (each layer's plugin's state_layout via
 * hyd_model_layer_layout_for), so the table is what a session really costs.
 *
 *   bench/memory_table [-b] [-c 1024,8192,32768,131072] FILE...
 *
 * One row per (model, layer kind): the layers of that kind, the bytes of one such layer and of
 * all of them at each context length, and whether the kind is constant or grows. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "daemon/model.h"

#define MAX_CTX 8
#define MAX_KINDS 8

struct kind_row {
	const char *kind;
	uint32_t n_layers;
	uint64_t bytes[MAX_CTX];       /* all layers of the kind */
	uint64_t layer_bytes[MAX_CTX]; /* the first layer of the kind */
};

static bool exact; /* -b: bytes instead of KiB/MiB */

static void human(uint64_t b, char *buf, size_t n)
{
	if (exact)
		snprintf(buf, n, "%llu", (unsigned long long)b);
	else if (b >= 1ull << 30)
		snprintf(buf, n, "%.2f GiB", (double)b / (1 << 30));
	else if (b >= 1ull << 20)
		snprintf(buf, n, "%.1f MiB", (double)b / (1 << 20));
	else if (b >= 1ull << 10)
		snprintf(buf, n, "%.1f KiB", (double)b / 1024);
	else
		snprintf(buf, n, "%llu B", (unsigned long long)b);
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static int table_for(const char *path, const double *ctx, int n_ctx)
{
	char err[512];
	struct hyd_model *m;
	const struct hyd_model_opts opts = { .n_threads = 1 };
	int r = hyd_model_load(path, &opts, &m, err, sizeof(err));
	if (r) {
		fprintf(stderr, "memory_table: %s\n", err);
		return r;
	}
	struct kind_row rows[MAX_KINDS];
	int n_rows = 0;
	uint64_t total[MAX_CTX] = { 0 };
	const struct hyd_state_limits base = *hyd_model_limits(m);
	for (uint32_t i = 0; i < hyd_model_n_layer(m) && !r; i++) {
		const char *kind = hyd_model_layer_kind(m, i);
		int k = 0;
		while (k < n_rows && strcmp(rows[k].kind, kind))
			k++;
		if (k == n_rows) {
			if (n_rows == MAX_KINDS) {
				r = -E2BIG;
				break;
			}
			rows[n_rows++] = (struct kind_row){ .kind = kind };
		}
		rows[k].n_layers++;
		for (int c = 0; c < n_ctx; c++) {
			struct hyd_state_limits lim = base;
			lim.struct_size = sizeof(lim);
			lim.max_ctx = (uint32_t)ctx[c];
			struct hyd_state_layout lay;
			if ((r = hyd_model_layer_layout_for(m, i, &lim, &lay)))
				break;
			/* what a session holding max_ctx tokens has placed: the fixed region plus the
			 * pages covering every position (as the daemon's plan printout counts it) */
			const uint64_t pages = lay.page_bytes ? (lim.max_ctx + lay.page_tokens - 1) / lay.page_tokens : 0;
			const uint64_t b = lay.fixed_bytes + pages * lay.page_bytes;
			if (rows[k].n_layers == 1)
				rows[k].layer_bytes[c] = b;
			rows[k].bytes[c] += b;
			total[c] += b;
		}
	}
	if (r) {
		fprintf(stderr, "memory_table: %s: %s\n", path, strerror(-r));
		hyd_model_free(m);
		return r;
	}
	char buf[64];
	for (int k = 0; k < n_rows; k++) {
		printf("| %s | %s | %u |", base_name(path), rows[k].kind, rows[k].n_layers);
		for (int c = 0; c < n_ctx; c++) {
			human(rows[k].bytes[c], buf, sizeof(buf));
			printf(" %s |", buf);
		}
		human(rows[k].layer_bytes[0], buf, sizeof(buf));
		const bool flat = rows[k].bytes[n_ctx - 1] == rows[k].bytes[0];
		printf(" %s | %s |\n", buf,
		       flat ? "constant" : "grows with context");
	}
	printf("| %s | **total** | %u |", base_name(path), hyd_model_n_layer(m));
	for (int c = 0; c < n_ctx; c++) {
		human(total[c], buf, sizeof(buf));
		printf(" **%s** |", buf);
	}
	printf(" | |\n");
	hyd_model_free(m);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: memory_table [-b] [-c CTX,... (1024,8192,32768,131072)] FILE...\n  -b: exact bytes\n");
}

int main(int argc, char **argv)
{
	double ctx[MAX_CTX] = { 1024, 8192, 32768, 131072 };
	int n_ctx = 4, first = 1;
	for (;;) {
		if (argc > first + 1 && !strcmp(argv[first], "-c")) {
			n_ctx = hyd__bench_parse_list(argv[first + 1], ctx, MAX_CTX);
			first += 2;
		} else if (argc > first && !strcmp(argv[first], "-b")) {
			exact = true;
			first++;
		} else {
			break;
		}
	}
	if (n_ctx < 0 || first >= argc) {
		usage();
		return 2;
	}
	printf("| model | layer kind | layers | ");
	for (int c = 0; c < n_ctx; c++)
		printf("%gK ctx | ", ctx[c] / 1024);
	printf("one layer at %gK | |\n|", ctx[0] / 1024);
	for (int c = 0; c < n_ctx + 5; c++)
		printf(" --- |");
	printf("\n");
	int failed = 0;
	for (int i = first; i < argc; i++)
		if (table_for(argv[i], ctx, n_ctx))
			failed++;
	return failed ? 1 : 0;
}
