#!/usr/bin/python3
"""test_notify.py: p8vaultd tells its service manager what it does
(server/notify.h, the sd_notify protocol of Type=notify units): the test
binds the unix datagram socket systemd would, passes it in NOTIFY_SOCKET
and reads what the real daemon sends: READY=1 with a STATUS once it
serves, RELOADING=1 (with MONOTONIC_USEC) and READY=1 again around a
SIGHUP (also when the reload is refused), STOPPING=1 at SIGTERM, a STATUS
that follows a keeper restart, and why a start failed."""

import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Runner, check, check_eq  # noqa

runner = Runner("test_notify")

WAIT_S = 20


class Manager:
    """The service manager's end: a datagram socket and what arrived on
    it, each message as a dict of its assignments (in order)."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="p8v-notify-")
        self.path = os.path.join(self.tmp, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.cond = threading.Condition()
        self.done = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.done:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            msg = {}
            for line in data.decode("utf-8", "replace").split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    msg[k] = v
            with self.cond:
                self.msgs.append(msg)
                self.cond.notify_all()

    def wait_for(self, pred, start, what):
        """The first message from index start on that pred accepts, and
        its index."""
        deadline = time.monotonic() + WAIT_S
        with self.cond:
            while True:
                for i in range(start, len(self.msgs)):
                    if pred(self.msgs[i]):
                        return i, self.msgs[i]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s within %ss; got %r" % (
                        what, WAIT_S, self.msgs))
                self.cond.wait(left)

    def close(self):
        self.done = True
        self.thread.join(2)
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def ready(m):
    return m.get("READY") == "1"


@runner.test
def ready_once_serving():
    with Manager() as mgr, Daemon(env={"NOTIFY_SOCKET": mgr.path}) as d:
        d.start()
        i, msg = mgr.wait_for(ready, 0, "READY=1")
        # Nothing said READY before the keeper held the keys and the
        # store was open: "starting" first, then READY with what it serves.
        check(any(m.get("STATUS", "").startswith("starting")
                  for m in mgr.msgs[:i]),
              "no STATUS=starting... before READY=1: %r" % mgr.msgs)
        status = msg.get("STATUS", "")
        check(status.startswith("serving: 0 key record(s), store lmdb:"),
              "READY's STATUS: %r" % status)
        check(d.state in status and "1 master key(s)" in status,
              "READY's STATUS names the store and the keys: %r" % status)
        check_eq(sum(1 for m in mgr.msgs if ready(m)), 1, "READY=1 count")
        check(not any("STOPPING" in m or "RELOADING" in m
                      for m in mgr.msgs), "unexpected: %r" % mgr.msgs)
        # READY=1 comes after the listeners opened: /readyz says so too.
        check_eq(d.get("/readyz").status, 200, "/readyz after READY=1")
        d.stop()


@runner.test
def reloading_then_ready_at_sighup():
    with Manager() as mgr, Daemon(env={"NOTIFY_SOCKET": mgr.path}) as d:
        d.start()
        i, _ = mgr.wait_for(ready, 0, "READY=1")
        before = time.clock_gettime(time.CLOCK_MONOTONIC)
        d.signal(signal.SIGHUP)
        j, rel = mgr.wait_for(lambda m: "RELOADING" in m, i + 1,
                              "RELOADING=1")
        after = time.clock_gettime(time.CLOCK_MONOTONIC)
        check_eq(rel.get("RELOADING"), "1", "RELOADING")
        usec = rel.get("MONOTONIC_USEC", "")
        check(re.fullmatch(r"[0-9]+", usec) is not None,
              "MONOTONIC_USEC: %r" % usec)
        # The daemon's CLOCK_MONOTONIC, read at the reload.
        check(before * 1e6 - 1e6 <= int(usec) <= after * 1e6 + 1e6,
              "MONOTONIC_USEC %s not within [%f, %f]" % (usec, before,
                                                         after))
        check("READY" not in rel, "READY with RELOADING: %r" % rel)
        k, again = mgr.wait_for(ready, j + 1, "READY=1 after the reload")
        check("master keys reloaded" in again.get("STATUS", ""),
              "STATUS after the reload: %r" % again)
        # A refused reload (the key file is gone) still ends in READY=1:
        # the daemon serves on with the keys it has.
        os.unlink(d.key_file)
        d.signal(signal.SIGHUP)
        j, _ = mgr.wait_for(lambda m: "RELOADING" in m, k + 1,
                            "RELOADING=1 (second)")
        _, again = mgr.wait_for(ready, j + 1, "READY=1 after a refusal")
        check("refused" in again.get("STATUS", ""),
              "STATUS after a refused reload: %r" % again)
        check_eq(d.get("/readyz").status, 200, "/readyz after the reloads")
        d.stop(allow_plain=())


@runner.test
def status_follows_a_keeper_restart():
    # The keeper killed: the daemon starts another at once, and within
    # STATUS_INTERVAL_S (5 s) the STATUS line counts the restart; READY
    # is not sent again (the unit never stopped being ready).
    with Manager() as mgr, Daemon(env={"NOTIFY_SOCKET": mgr.path}) as d:
        d.start()
        i, _ = mgr.wait_for(ready, 0, "READY=1")
        keeper = d.log_events("keeper_started")[0]["pid"]
        os.kill(keeper, signal.SIGKILL)
        _, msg = mgr.wait_for(
            lambda m: "1 keeper restart(s)" in m.get("STATUS", ""), i + 1,
            "a STATUS counting the keeper restart")
        check(msg["STATUS"].startswith("serving: "), "STATUS: %r" % msg)
        check("READY" not in msg, "READY sent again: %r" % msg)
        d.stop()


@runner.test
def stopping_at_sigterm():
    for sig in (signal.SIGTERM, signal.SIGINT):
        with Manager() as mgr, Daemon(env={"NOTIFY_SOCKET": mgr.path}) as d:
            d.start()
            i, _ = mgr.wait_for(ready, 0, "READY=1")
            d.signal(sig)
            _, msg = mgr.wait_for(lambda m: "STOPPING" in m, i + 1,
                                  "STOPPING=1")
            check_eq(msg.get("STOPPING"), "1", "STOPPING")
            check(msg.get("STATUS", "").startswith("stopping"),
                  "STOPPING's STATUS: %r" % msg)
            check_eq(d.wait(), 0, "exit status after %s" % sig.name)


@runner.test
def status_when_start_fails():
    # No master key at all: exit status 2, and the manager is told why
    # the unit failed rather than left with "starting".
    with Manager() as mgr, Daemon(env={"NOTIFY_SOCKET": mgr.path},
                                  master_key=False) as d:
        rc, _ = d.run_to_exit()
        check_eq(rc, 2, "exit status without a master key")
        _, msg = mgr.wait_for(lambda m: m.get("STATUS", "").startswith(
            "not started"), 0, "STATUS=not started")
        check("exit status 2" in msg["STATUS"], "STATUS: %r" % msg)
        check(not any(ready(m) for m in mgr.msgs), "READY=1 sent: %r" %
              mgr.msgs)


runner.main()
