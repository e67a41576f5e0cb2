#!/usr/bin/python3
"""test_hardening.py: what p8vaultd does to itself at start, checked from
the outside through /proc: no core dumps, not dumpable, no new privileges,
umask 077, SIGPIPE ignored, standard fds never left closed, set-ID refused;
and that its logs never carry the master key."""

import grp
import os
import pwd
import shutil
import stat
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Runner, check, check_eq  # noqa

runner = Runner("test_hardening")

SIGPIPE_BIT = 1 << (13 - 1)


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def nobody():
    """(uid, gid) of an unprivileged user, or None if not root."""
    if os.geteuid() != 0:
        return None
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return None
    try:
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        gid = pwd.getpwnam("nobody").pw_gid
    return uid, gid


def as_user(uid, gid):
    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return drop


def unprivileged_daemon(args=()):
    """A daemon running as `nobody` when the tests run as root (so that
    the effect of PR_SET_DUMPABLE on /proc ownership is visible), else as
    the current user."""
    ids = nobody()
    tmp = tempfile.mkdtemp(prefix="p8v-hard-")
    d = Daemon(args=args, tmpdir=tmp,
               preexec_fn=as_user(*ids) if ids else None)
    if ids:
        for p in (tmp, d.key_file):
            os.chown(p, ids[0], ids[1])
        # The binary must be reachable for nobody.
        check(os.access(d.argv[0], os.X_OK), "binary not executable")
    return d, tmp, ids


@runner.test
def no_core_dumps_and_not_dumpable():
    d, tmp, ids = unprivileged_daemon()
    try:
        d.start()
        pid = d.proc.pid
        with open("/proc/%d/limits" % pid) as f:
            core = [l for l in f if l.startswith("Max core file size")]
        check(core, "no core line in /proc/PID/limits")
        check_eq(core[0].split()[4:6], ["0", "0"], "core size soft/hard")
        st = proc_status(pid)
        check_eq(st.get("NoNewPrivs"), "1", "NoNewPrivs")
        check_eq(st.get("Umask"), "0077", "Umask")
        check(int(st.get("SigIgn", "0"), 16) & SIGPIPE_BIT, "SIGPIPE "
              "not ignored")
        uid = int(st["Uid"].split()[0])
        # A non-dumpable process's /proc files belong to root, whoever
        # it runs as. Meaningful only when it does not run as root.
        if uid == 0:
            print("note: daemon runs as root; dumpable not checkable")
        else:
            check_eq(os.stat("/proc/%d/environ" % pid).st_uid, 0,
                     "owner of /proc/PID/environ (dumpable 0 => root)")
            check_eq(os.stat("/proc/%d/mem" % pid).st_uid, 0,
                     "owner of /proc/PID/mem")
        # Files the daemon created are private.
        for name in os.listdir(d.state):
            mode = stat.S_IMODE(os.stat(os.path.join(d.state, name)).st_mode)
            check_eq(mode & 0o077, 0, "mode of %s" % name)
        d.stop()
    finally:
        d.close()
        shutil.rmtree(tmp, ignore_errors=True)


@runner.test
def closed_standard_fds_are_reopened():
    if os.geteuid() != 0:
        return "skip"       # /proc/PID/fd of a non-dumpable process
    d = Daemon(preexec_fn=lambda: os.close(0))
    try:
        d.start()
        check_eq(os.readlink("/proc/%d/fd/0" % d.proc.pid), "/dev/null",
                 "fd 0 of a daemon started with fd 0 closed")
        d.stop()
    finally:
        d.close()


@runner.test
def set_id_execution_is_refused():
    ids = nobody()
    if ids is None:
        return "skip"       # needs root to make a set-user-ID binary
    tmp = tempfile.mkdtemp(prefix="p8v-suid-")
    try:
        if os.statvfs(tmp).f_flag & os.ST_NOSUID:
            return "skip"
        os.chmod(tmp, 0o755)
        binary = os.path.join(tmp, "p8vaultd")
        shutil.copy(os.environ["P8VAULTD"], binary)
        os.chmod(binary, 0o4755)
        d = Daemon(tmpdir=tempfile.mkdtemp(prefix="p8v-suid-run-"),
                   preexec_fn=as_user(*ids))
        d.argv[0] = binary
        os.chown(d.tmp, ids[0], ids[1])
        os.chown(d.key_file, ids[0], ids[1])
        try:
            rc, _ = d.run_to_exit()
            check_eq(rc, 1, "exit status when set-user-ID")
            check(any("set-user-ID" in l.get("msg", "") for l in d.logs),
                  "no refusal line: %r" % d.lines)
        finally:
            shutil.rmtree(d.tmp, ignore_errors=True)
            d.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@runner.test
def logs_never_hold_the_master_key():
    d = Daemon(args=["--log-level", "debug"])
    try:
        d.start()
        for path in ("/healthz", "/readyz", "/nope", "/%zz"):
            d.get(path)
            d.get(path, unix=True)
        d.stop()        # check_logs: all JSON, no master-key hex
        check(d.key_hex and len(d.key_hex) == 64, "no key to look for")
        text = "\n".join(d.lines).lower()
        check(d.key_hex[:32] not in text and d.key_hex[32:] not in text,
              "half of the master key in the logs")
    finally:
        d.close()


if __name__ == "__main__":
    runner.main()
