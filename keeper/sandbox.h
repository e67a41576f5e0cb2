/*
 * sandbox.h: what p8vault-keeper does to itself once its master keys are
 * loaded, before it reads a single request.
 *
 * In two steps, because the channel threads must exist before the
 * seccomp filter (which forbids creating them) and after the rest (which
 * they inherit):
 *
 * sandbox_enter (one thread):
 *   - core size 0 and not dumpable (already at start), no new privileges;
 *   - all memory locked (mlockall, current and future pages) where the
 *     process may lock that much: as root (the limit is raised first), or
 *     with an unlimited RLIMIT_MEMLOCK; secrets are in locked guarded
 *     memory in any case;
 *   - started as root: an empty, deleted directory as its root (chroot)
 *     and its own unprivileged user: "p8vault-keeper" if it exists, else
 *     "nobody", with no supplementary groups;
 *   - no filesystem at all with Landlock where the kernel has it;
 *   - every descriptor closed but stderr (logs) and the channels.
 * sandbox_lock (after the threads exist): a seccomp-bpf allow-list for all
 * threads (libseccomp, TSYNC). Any other system call kills the process;
 * open() and socket() fail with EACCES instead, so that a library that
 * tries them fails cleanly.
 *
 * Tests that drive the clock with libfaketime (LD_PRELOAD with
 * FAKETIME_TIMESTAMP_FILE) need the keeper to read that one file: then
 * there is no chroot and no change of user, Landlock allows reading files
 * in that file's directory only (the tests replace it by rename), and
 * open() is allowed. Whoever sets a daemon's LD_PRELOAD
 * owns it anyway; the keeper logs a warning.
 */
#ifndef P8V_KEEPER_SANDBOX_H
#define P8V_KEEPER_SANDBOX_H

#include <stddef.h>

/* Enter the sandbox; the n channels are descriptors 3 .. 3 + n - 1.
 * 0 or P8V_ERR_* (logged). */
int sandbox_enter(size_t n);

/* The system-call filter, for every thread. 0 or P8V_ERR_* (logged). */
int sandbox_lock(void);

#endif /* P8V_KEEPER_SANDBOX_H */
