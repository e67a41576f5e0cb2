/*
 * keeper_test.h: TEST ONLY. Declared here and only here on purpose: not
 * reachable from any API, option, configuration file or environment
 * variable; only unit tests, benchmarks and fuzzers include this header.
 */
#ifndef P8V_KEEPER_KEEPER_TEST_H
#define P8V_KEEPER_KEEPER_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "keeper/keeper.h"

/* Add a master key made from len raw bytes (master_key_create) to k, as
 * keeper_load_file adds one from a file. Same returns. */
int keeper_test_add_raw(struct keeper *k, const uint8_t *raw, size_t len,
    struct keeper_key_info *info);

#endif /* P8V_KEEPER_KEEPER_TEST_H */
