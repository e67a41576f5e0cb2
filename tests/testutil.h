/*
 * testutil.h: helpers shared by the C tests: files, hex, JSON test vectors,
 * temporary directories, running commands.
 */
#ifndef P8V_TESTS_TESTUTIL_H
#define P8V_TESTS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Read a whole file; *buf malloc'd with a NUL after *len bytes. 0 or -1. */
int tu_read_file(const char *path, uint8_t **buf, size_t *len);

/* Write a whole file with the given mode. 0 or -1. */
int tu_write_file(const char *path, const void *buf, size_t len, int mode);

/* Decode lowercase/uppercase hex; *out malloc'd (non-NULL even for ""). 0 or -1. */
int tu_hex_decode(const char *hex, uint8_t **out, size_t *out_len);

/* Load "$P8V_WYCHEPROOF_DIR/<name>" (set by meson). NULL on failure (printed). */
json_t *tu_wycheproof_load(const char *name);

/* 1 if a Wycheproof test has flag `flag`. */
int tu_has_flag(const json_t *test, const char *flag);

/* mkdtemp under $TMPDIR (or /tmp) with the given prefix; malloc'd path. */
char *tu_mkdtemp(const char *prefix);

/* rm -rf path (for temp dirs made by tu_mkdtemp). */
void tu_rmtree(const char *path);

/* Run a shell command; returns its exit status, or -1. */
int tu_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* P8V_TESTS_TESTUTIL_H */
