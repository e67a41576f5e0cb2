/*
 * clock.h: the clocks of the vault and the keeper.
 *
 * Token ages are measured on CLOCK_BOOTTIME (monotonic, counts time spent
 * suspended); iat and record times come from CLOCK_REALTIME. Neither is an
 * option: no API, option or environment variable changes them. The unit
 * tests swap them through clock_test_set (vault_test_set_clocks in
 * vault/vault_internal.h calls it), which changes them for the vault and
 * the keeper alike; integration tests run the daemon under libfaketime.
 */
#ifndef P8V_COMMON_CLOCK_H
#define P8V_COMMON_CLOCK_H

#include <stdint.h>

/* /proc/sys/kernel/random/boot_id is a UUID: 16 bytes. */
#define CLOCK_BOOT_ID_BYTES 16
#define CLOCK_NS_PER_S INT64_C(1000000000)

/* CLOCK_REALTIME, seconds since the epoch (0 if the clock fails). */
int64_t clock_wall_now(void);
/* CLOCK_BOOTTIME, nanoseconds. */
int64_t clock_boot_now_ns(void);

/* This boot's id (16 bytes from /proc/sys/kernel/random/boot_id, or the
 * one set by clock_test_set_boot_id). 0, or P8V_ERR_NOT_FOUND (out
 * zeroed: unknown). */
int clock_boot_id(uint8_t out[CLOCK_BOOT_ID_BYTES]);

/*
 * TEST ONLY: replace the clocks (NULL restores the real one) and the boot
 * id (NULL: the real one). Not reachable from any API, option,
 * configuration file or environment variable: only unit tests call them,
 * before starting threads.
 */
void clock_test_set(int64_t (*wall_s)(void), int64_t (*boot_ns)(void));
void clock_test_set_boot_id(const uint8_t *boot_id);

#endif /* P8V_COMMON_CLOCK_H */
