/*
 * check.h: assertions for p8vault's C tests.
 *
 * Each CHECK prints file:line, the expression and both values on failure,
 * counts it, and goes on, so one run shows every failure. A test program
 * ends with `return check_finish();`, which prints "N checks, N failed" and
 * returns non-zero if any check failed (meson counts the program as failed).
 */
#ifndef P8V_TESTS_CHECK_H
#define P8V_TESTS_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

static unsigned long check_count, check_failed;

static inline void
check_fail_hdr(const char *file, int line)
{
	check_failed++;
	fprintf(stderr, "FAIL %s:%d: ", file, line);
}

#define CHECK(cond) do { \
	check_count++; \
	if (!(cond)) { \
		check_fail_hdr(__FILE__, __LINE__); \
		fprintf(stderr, "%s\n", #cond); \
	} \
} while (0)

/* Like CHECK, with a printf-style note that says which case failed. */
#define CHECKF(cond, ...) do { \
	check_count++; \
	if (!(cond)) { \
		check_fail_hdr(__FILE__, __LINE__); \
		fprintf(stderr, "%s: ", #cond); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
	} \
} while (0)

#define CHECK_INT(a, b) do { \
	long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
	check_count++; \
	if (check_a_ != check_b_) { \
		check_fail_hdr(__FILE__, __LINE__); \
		fprintf(stderr, "%s == %s: %lld != %lld\n", #a, #b, \
		    check_a_, check_b_); \
	} \
} while (0)

/* An error code compared with its expected value, printed by name. */
#define CHECK_ERR(got, want) do { \
	int check_g_ = (got), check_w_ = (want); \
	check_count++; \
	if (check_g_ != check_w_) { \
		check_fail_hdr(__FILE__, __LINE__); \
		fprintf(stderr, "%s: got %d (%s), want %d (%s)\n", #got, \
		    check_g_, p8v_errname(check_g_), check_w_, \
		    p8v_errname(check_w_)); \
	} \
} while (0)

#define CHECK_OK(got) CHECK_ERR(got, 0)

#define CHECK_STR(a, b) do { \
	const char *check_a_ = (a), *check_b_ = (b); \
	check_count++; \
	if (check_a_ == NULL || check_b_ == NULL || \
	    strcmp(check_a_, check_b_) != 0) { \
		check_fail_hdr(__FILE__, __LINE__); \
		fprintf(stderr, "%s == %s: \"%s\" != \"%s\"\n", #a, #b, \
		    check_a_ ? check_a_ : "(null)", \
		    check_b_ ? check_b_ : "(null)"); \
	} \
} while (0)

#define CHECK_MEM(a, b, n) do { \
	check_count++; \
	if (memcmp((a), (b), (n)) != 0) { \
		check_fail_hdr(__FILE__, __LINE__); \
		fprintf(stderr, "%s and %s differ in %zu bytes\n", #a, #b, \
		    (size_t)(n)); \
	} \
} while (0)

/* Stop the program at once (setup failed; nothing after it can run). */
#define REQUIRE(cond) do { \
	check_count++; \
	if (!(cond)) { \
		check_fail_hdr(__FILE__, __LINE__); \
		fprintf(stderr, "required: %s\n", #cond); \
		exit(1); \
	} \
} while (0)

static inline int
check_finish(void)
{
	printf("%lu checks, %lu failed\n", check_count, check_failed);
	if (check_count == 0) {
		fprintf(stderr, "no checks ran\n");
		return 1;
	}
	return check_failed == 0 ? 0 : 1;
}

#endif /* P8V_TESTS_CHECK_H */
