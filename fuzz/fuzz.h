/*
 * fuzz.h: what the fuzz targets in fuzz/ share.
 *
 * Every target is one file defining LLVMFuzzerTestOneInput (and, when it
 * needs set-up, LLVMFuzzerInitialize) over the real parsing functions of
 * one input p8vault takes from outside (OpenSSH regress/misc/fuzz-harness
 * style). fuzz/meson.build builds each target two ways:
 *
 *   - with -Dfuzzing=true and clang: a libFuzzer binary (libFuzzer's own
 *     main, every library instrumented), run by fuzz/run.sh;
 *   - otherwise, with any compiler: linked with fuzz/replay.c, a plain
 *     program that runs the target once over every file of its seed corpus
 *     fuzz/corpus/<target>/ (meson test suite "fuzz-replay", in both of
 *     test.sh's builds).
 *
 * A target crashes (abort) on anything that breaks a parser's contract,
 * not only on memory errors: FUZZ_CHECK states what the header of the
 * parser promises (an error code it documents, fields filled on success,
 * nothing owned on failure, a round trip that must hold). Targets free
 * everything they get, so that LeakSanitizer can speak.
 */
#ifndef P8V_FUZZ_FUZZ_H
#define P8V_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "crypto/p8.h"

/* The libFuzzer interface (https://llvm.org/docs/LibFuzzer.html). Return 0
 * (-1 keeps an input out of the corpus; unused here). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A violated property is a crash: libFuzzer saves the input. */
#define FUZZ_CHECK(cond) do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: %s: check failed: %s\n", \
			    __FILE__, __LINE__, __func__, #cond); \
			abort(); \
		} \
	} while (0)

/*
 * Set-up every target needs once: guarded memory (secmem_init; aborts if
 * it cannot be had, since every parser of key material needs it) and
 * quiet logs (warnings and errors only: the parsers' own refusals are not
 * news, an error line is).
 */
void fuzz_init(void);

/*
 * Take the next line of *data (up to '\n' or the end) off the input: a
 * malloc'd NUL-terminated copy, cut at the first NUL byte as an HTTP
 * header or request target reaches the code as a C string. *data and
 * *size move past the line and its '\n'. Never NULL (aborts when out of
 * memory); free() it.
 */
char *fuzz_take_line(const uint8_t **data, size_t *size);

/* 1 if err is one of the n codes in allowed. */
int fuzz_err_in(int err, const int *allowed, size_t n);
#define FUZZ_ERR_IN(err, ...) fuzz_err_in((err), (const int[]){ __VA_ARGS__ }, \
    sizeof((const int[]){ __VA_ARGS__ }) / sizeof(int))

/*
 * A fixed P-256 key for targets that sign or verify (fuzz_jwt_profile,
 * fuzz_jwt_verify): scalar 0x01 0x02 ... 0x20, a public test constant that
 * signs nothing real. Made on first use; the same object for the life of
 * the process (not freed: LeakSanitizer does not count what is still
 * reachable). pub gets its public point when not NULL.
 */
const struct p8_key *fuzz_test_key(uint8_t pub[P8_PUBLIC_BYTES]);

#endif /* P8V_FUZZ_FUZZ_H */
