#!/usr/bin/python3
"""test_cli_root.py: the admin CLI run as root on the service user's state.

The layout of the Debian package: the state directory belongs to the
service user, the master key file to root (mode 0600, in a directory only
root can enter). Run as root, `p8vault` loads the key into its keeper
process as root, then becomes the directory's owner before it opens the
store, so that every file it creates there stays that user's (issue 16;
before, every command failed with "input/output error").

A throwaway system user is created for the test (useradd) and removed at
the end. Cases: init, token create, keys import (a .p8 only root can
read), keys list, verify, backup, each as root, each leaving every file
of the directory owned by that user; a backup into a directory only root
may write is refused naming the user (the command no longer runs as
root); a directory owned by root is used as root (no switch). Every
failure names its cause: a missing key file, a key file of mode 0644, a
key file root's but run as another user, a state directory owned by
another user (run as `nobody` through setpriv), a directory writable by
others, a data file owned by root inside the user's directory.

Needs root (useradd, switching users): CI runs as root; elsewhere the
script reports SKIP with that reason.
"""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, check_eq  # noqa: E402

runner = harness.Runner("cli_root")
P8VAULT = os.path.abspath(os.environ.get("P8VAULT", ""))
TEAM_ID = "TEAMROOT01"
KEY_ID = "KEYROOT001"
ctx = {}


def cli(*args, user=None):
    cmd = [P8VAULT] + list(args)
    if user is not None:
        pw = pwd.getpwnam(user)
        cmd = ["setpriv", "--reuid", str(pw.pw_uid), "--regid",
               str(pw.pw_gid), "--clear-groups", "--"] + cmd
    return subprocess.run(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def ok(p, what):
    check(p.returncode == 0, "%s: exit %d\nstdout: %s\nstderr: %s" %
          (what, p.returncode, p.stdout, p.stderr))
    return p


def fails(p, what, *needles):
    check(p.returncode == 1, "%s: exit %d, want 1\nstderr: %s" %
          (what, p.returncode, p.stderr))
    for n in needles:
        check(n in p.stderr, "%s: %r not in the message: %s" %
              (what, n, p.stderr))
    check("input/output error" not in p.stderr,
          "%s: the message names no cause: %s" % (what, p.stderr))


def owners(d):
    """{relative path: uid} of d and everything under it."""
    out = {".": os.lstat(d).st_uid}
    for dirpath, dirs, files in os.walk(d):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, d)] = os.lstat(p).st_uid
    return out


def all_owned_by_user(what):
    got = owners(ctx["state"])
    bad = {p: u for p, u in got.items() if u != ctx["uid"]}
    check(not bad, "%s: files not owned by %s (uid %d): %r" %
          (what, ctx["user"], ctx["uid"], bad))
    check("data.mdb" in got, "%s: no data.mdb in %r" % (what, got))


def setup():
    tmp = tempfile.mkdtemp(prefix="p8v-cli-root-")
    ctx["tmp"] = tmp
    os.chmod(tmp, 0o711)  # the service user passes through
    user = "p8vt%d" % (os.getpid() % 100000)
    p = subprocess.run(["useradd", "--system", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell",
                        "/usr/sbin/nologin", "--user-group", user],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    check(p.returncode == 0, "useradd %s: %s" % (user, p.stdout))
    ctx["user"] = user
    pw = pwd.getpwnam(user)
    ctx["uid"], ctx["gid"] = pw.pw_uid, pw.pw_gid
    # The package's layout: /var/lib/p8vault (0700, the user's) and
    # /etc/p8vault/master.key (root's; here in a directory only root may
    # enter, so that only a root process can read it).
    state = os.path.join(tmp, "state")
    os.mkdir(state, 0o700)
    os.chown(state, ctx["uid"], ctx["gid"])
    etc = os.path.join(tmp, "etc")
    os.mkdir(etc, 0o700)
    ctx["state"], ctx["etc"] = state, etc
    ctx["key"] = os.path.join(etc, "master.key")
    # A .p8 that only root can read.
    p8 = os.path.join(etc, "AuthKey_%s.p8" % KEY_ID)
    p = subprocess.run(["openssl", "genpkey", "-algorithm", "EC",
                        "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p8],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    check(p.returncode == 0, "openssl genpkey: %s" % p.stdout)
    os.chmod(p8, 0o600)
    ctx["p8"] = p8


def teardown():
    if "tmp" in ctx:
        shutil.rmtree(ctx["tmp"], ignore_errors=True)
    if "user" in ctx:
        subprocess.run(["userdel", ctx["user"]], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["groupdel", ctx["user"]], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


@runner.test
def init_as_root_keeps_the_users_files():
    setup()
    p = ok(cli("init", "--state", ctx["state"], "--master-key-file",
               ctx["key"], "--json"), "init as root")
    check('"master_key_created":true' in p.stdout, p.stdout)
    all_owned_by_user("after init")
    st = os.stat(ctx["key"])
    check_eq((st.st_uid, oct(st.st_mode & 0o777)), (0, oct(0o600)),
             "the new master key file's owner and mode")
    # Again: only checks, still as the user.
    ok(cli("init", "--state", ctx["state"], "--master-key-file",
           ctx["key"]), "init again as root")
    all_owned_by_user("after a second init")


@runner.test
def commands_as_root_keep_the_users_files():
    s, k = ctx["state"], ctx["key"]
    p = ok(cli("token", "create", "--state", s, "--role", "admin",
               "--json"), "token create as root")
    check('"token":"p8v_' in p.stdout, p.stdout)
    all_owned_by_user("after token create")
    ok(cli("keys", "import", "--state", s, "--master-key-file", k,
           "--app", "com.example.root", "--team-id", TEAM_ID,
           "--key-id", KEY_ID, ctx["p8"]), "keys import as root")
    all_owned_by_user("after keys import")
    p = ok(cli("keys", "list", "--state", s, "--json"), "keys list")
    check(KEY_ID in p.stdout, "keys list: %s" % p.stdout)
    p = ok(cli("verify", "--state", s, "--master-key-file", k, "--json"),
           "verify as root")
    v = json.loads(p.stdout)
    check(v["ok"] and v["opened"] == 1 and v["bad"] == [] and
          v["audit_intact"], "verify: %s" % p.stdout)
    ok(cli("token", "list", "--state", s), "token list as root")
    all_owned_by_user("after keys list, verify, token list")


@runner.test
def root_really_gives_up_root():
    # A backup where only root may write: refused, naming the user the
    # command became; a backup where the user may write: its file.
    fails(cli("backup", "--state", ctx["state"],
              os.path.join(ctx["etc"], "backup.mdb")),
          "backup into root's directory", "cannot write",
          "as uid %d" % ctx["uid"])
    out = os.path.join(ctx["tmp"], "backups")
    os.mkdir(out, 0o700)
    os.chown(out, ctx["uid"], ctx["gid"])
    ok(cli("backup", "--state", ctx["state"], os.path.join(out, "b.mdb")),
       "backup as root into the user's directory")
    check_eq(os.stat(os.path.join(out, "b.mdb")).st_uid, ctx["uid"],
             "the backup's owner")
    all_owned_by_user("after backup")


@runner.test
def root_owned_directory_stays_root():
    d = os.path.join(ctx["tmp"], "rootstate")
    key = os.path.join(ctx["etc"], "root.key")
    ok(cli("init", "--state", d, "--master-key-file", key),
       "init of a new directory as root")
    got = owners(d)
    check(set(got.values()) == {0}, "root's directory: owners %r" % got)


@runner.test
def key_file_failures_name_their_cause():
    s = ctx["state"]
    missing = os.path.join(ctx["etc"], "nokey")
    fails(cli("verify", "--state", s, "--master-key-file", missing),
          "a missing key file", missing, "no such file")
    loose = os.path.join(ctx["tmp"], "loose.key")
    shutil.copy(ctx["key"], loose)
    os.chmod(loose, 0o644)
    fails(cli("verify", "--state", s, "--master-key-file", loose),
          "a key file of mode 0644", loose, "mode 0644")
    # Root's key, run as the service user: not readable, says whose.
    os.chmod(ctx["etc"], 0o711)
    try:
        fails(cli("verify", "--state", s, "--master-key-file", ctx["key"],
                  user=ctx["user"]), "root's key file as the user",
              ctx["key"], "Permission denied", "owned by uid 0")
    finally:
        os.chmod(ctx["etc"], 0o700)
    all_owned_by_user("after the refused key files")


@runner.test
def state_dir_failures_name_their_cause():
    s = ctx["state"]
    # Another user's directory, not as root: says whose it is.
    fails(cli("keys", "list", "--state", s, user="nobody"),
          "the user's directory as nobody",
          "state directory %s: owned by uid %d (%s), not by you" %
          (s, ctx["uid"], ctx["user"]), "run as root or as that user")
    fails(cli("token", "list", "--state", s, user="nobody"),
          "token list as nobody", "owned by uid %d" % ctx["uid"])
    # Writable by others.
    os.chmod(s, 0o777)
    try:
        fails(cli("keys", "list", "--state", s), "a 0777 directory",
              "mode 0777", "must not be writable by group or others")
    finally:
        os.chmod(s, 0o700)
    # A data file that root made its own inside the user's directory.
    data = os.path.join(s, "data.mdb")
    os.chown(data, 0, 0)
    try:
        fails(cli("keys", "list", "--state", s), "root's data.mdb",
              "%s is owned by uid 0 (root)" % data,
              "not by the directory's owner")
    finally:
        os.chown(data, ctx["uid"], ctx["gid"])
    # And a file of another mode.
    os.chmod(data, 0o640)
    try:
        fails(cli("token", "list", "--state", s), "a 0640 data.mdb",
              "%s has mode 0640, must be 0600" % data)
    finally:
        os.chmod(data, 0o600)
    ok(cli("keys", "list", "--state", s), "keys list after the repairs")
    all_owned_by_user("after the refused directories")


if __name__ == "__main__":
    if os.geteuid() != 0:
        runner.skip_all("needs root: creates a system user and runs "
                        "p8vault as root on its state directory")
    if not os.access(P8VAULT, os.X_OK):
        print("P8VAULT is not set to the p8vault binary", file=sys.stderr)
        sys.exit(2)
    try:
        runner.main()
    finally:
        teardown()
