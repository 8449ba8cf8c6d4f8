/* Locating the shared test data (../shared or $HYD_TEST_DATA) from tests.  Missing data is a
 * SKIP (exit 77) for developers and a FAILURE under CI=true. */
#ifndef HYD_TESTS_TESTDATA_H
#define HYD_TESTS_TESTDATA_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline const char *hyd_test_data_dir(void)
{
	const char *d = getenv("HYD_TEST_DATA");
	return d && *d ? d : "../shared";
}

static inline bool hyd_test_under_ci(void)
{
	const char *ci = getenv("CI");
	return ci && !strcmp(ci, "true");
}

/* Joins the data dir and rel into buf; if the file is missing, exits 77 (SKIP) or, under CI,
 * exits 1 with a message. */
static inline const char *hyd_test_data_path(char *buf, size_t n, const char *rel)
{
	snprintf(buf, n, "%s/%s", hyd_test_data_dir(), rel);
	if (access(buf, R_OK) != 0) {
		if (hyd_test_under_ci()) {
			fprintf(stderr, "FAIL: test data %s is missing (CI=true: missing data is a failure)\n", buf);
			exit(1);
		}
		fprintf(stderr, "SKIP: test data %s is missing (configure --with-test-data=DIR)\n", buf);
		exit(77);
	}
	return buf;
}

#endif
