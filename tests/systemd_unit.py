#!/usr/bin/python3
"""systemd_unit.py: the installed systemd files (dist/) are sound.

- the unit the build made (build/dist/p8vaultd.service, paths substituted
  by meson) rates 2.0 or lower in `systemd-analyze security
  --offline=true`, and `systemd-analyze verify` says nothing about it (its
  ExecStart pointed at the built p8vaultd, MANPATH at the built man pages,
  so that the binary and Documentation=man: pages are checked too);
- its system call filter, expanded by systemd-analyze itself, lets the
  daemon start the keeper and the keeper lock itself in (seccomp,
  Landlock: keeper/sandbox.c);
- its ExecStart command line, run by hand with its paths moved into a
  temporary directory and the example /etc/p8vault/p8vaultd.conf, starts
  a daemon that serves;
- the sysusers.d and tmpfiles.d files create the users and directories
  (systemd-sysusers and systemd-tmpfiles with --root: as root only).
Speaks TAP (tests/integration/harness.py)."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("P8V_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
from harness import Daemon, Runner, check, check_eq, write_master_key  # noqa

runner = Runner("systemd_unit")

UNIT = os.environ.get("P8V_UNIT")
MAN_DIR = os.environ.get("P8V_MAN_DIR")
P8VAULTD = os.environ.get("P8VAULTD")
# Where meson installs p8vaultd (the unit's ExecStart=).
SBINDIR = os.environ.get("P8V_SBINDIR", "/usr/sbin")
# Where the configuration and the master key are (/etc with --prefix=/usr).
SYSCONFDIR = os.environ.get("P8V_SYSCONFDIR", "/etc")
# Where an installed p8vaultd finds p8vault-keeper (libexecdir/p8vault).
KEEPER_DIR = os.environ.get("P8V_LIBEXECDIR", "")
MAX_EXPOSURE = 2.0


def analyze(*args):
    r = subprocess.run(["systemd-analyze", "--no-pager"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    return r.returncode, r.stdout


def unit_text():
    check(UNIT and os.path.isfile(UNIT), "no built unit at %r" % UNIT)
    with open(UNIT) as f:
        return f.read()


def directives(text, name):
    """The values of every `name=` line of the unit, in order."""
    return [l.split("=", 1)[1] for l in text.splitlines()
            if l.startswith(name + "=")]


@runner.test
def security_exposure_at_most_2_0():
    unit_text()
    rc, out = analyze("security", "--offline=true", "--threshold=%d" %
                      int(MAX_EXPOSURE * 10), UNIT)
    m = re.search(r"Overall exposure level for p8vaultd\.service: "
                  r"([0-9.]+)", out)
    check(m is not None, "no exposure level in:\n%s" % out)
    level = float(m.group(1))
    print("exposure level %.1f" % level)
    check(level <= MAX_EXPOSURE, "exposure %.1f above %.1f:\n%s" % (
        level, MAX_EXPOSURE, "\n".join(l for l in out.splitlines()
                                       if "\u2717" in l)))
    check_eq(rc, 0, "systemd-analyze security exit status")


@runner.test
def verify_is_clean():
    text = unit_text()
    check(P8VAULTD and os.access(P8VAULTD, os.X_OK), "no p8vaultd")
    sbin = directives(text, "ExecStart")[0].split()[0]
    check(sbin.endswith("/p8vaultd"), "ExecStart: %r" % sbin)
    tmp = tempfile.mkdtemp(prefix="p8v-unit-")
    try:
        # The unit as built, but ExecStart= on the binary of this build;
        # the man pages of this build in MANPATH.
        with open(os.path.join(tmp, "p8vaultd.service"), "w") as f:
            f.write(text.replace(sbin + " ", P8VAULTD + " "))
        for page in ("p8vaultd.8", "p8vault.1", "p8vaultd.conf.5"):
            src = os.path.join(MAN_DIR or "", page)
            check(os.path.isfile(src), "man page %s not built (scdoc "
                  "missing?)" % src)
            sect = os.path.join(tmp, "man", "man" + page[-1])
            os.makedirs(sect, exist_ok=True)
            shutil.copy(src, sect)
        env = dict(os.environ, MANPATH=os.path.join(tmp, "man"))
        r = subprocess.run(["systemd-analyze", "--no-pager", "verify",
                            os.path.join(tmp, "p8vaultd.service")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=env, timeout=60)
        check_eq(r.stdout.strip(), "", "systemd-analyze verify output")
        check_eq(r.returncode, 0, "systemd-analyze verify exit status")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def expand(groups_and_calls):
    """System calls a list of SystemCallFilter= words names, as
    systemd-analyze syscall-filter expands each group."""
    out = set()
    for word in groups_and_calls:
        if not word.startswith("@"):
            out.add(word)
            continue
        rc, text = analyze("syscall-filter", word)
        check_eq(rc, 0, "systemd-analyze syscall-filter %s" % word)
        for line in text.splitlines()[1:]:
            line = line.strip()
            if line.startswith("#") or not line:
                continue
            out |= expand([line]) if line.startswith("@") else {line}
    return out


@runner.test
def syscall_filter_fits_the_keeper():
    text = unit_text()
    allowed, denied = set(), set()
    for value in directives(text, "SystemCallFilter"):
        if value.startswith("~"):
            denied |= expand(value[1:].split())
        else:
            allowed |= expand(value.split())
    allowed -= denied
    check(len(allowed) > 200, "filter expanded to %d calls" % len(allowed))
    # The keeper's sandbox (keeper/sandbox.c): the raw system calls it
    # makes by number, and those libseccomp and libc make for it.
    with open(os.path.join(SRC, "keeper", "sandbox.c")) as f:
        raw = set(re.findall(r"\bSYS_([a-z0-9_]+)", f.read()))
    check({"landlock_create_ruleset", "landlock_restrict_self"} <= raw,
          "keeper/sandbox.c's syscalls not found: %r" % raw)
    needed = raw | {
        "seccomp", "prctl",            # the filter, no_new_privs
        "mlockall", "mlock", "munlock",  # guarded memory, lock_memory
        "setrlimit", "prlimit64",      # harden (RLIMIT_CORE, NOFILE)
        "socketpair", "execve", "clone", "clone3", "wait4",  # the keeper
        "unshare",                     # the signing socket's umask
        "rt_sigtimedwait",             # signals, in the main thread
    }
    missing = sorted(n for n in needed if n not in allowed)
    check(not missing, "the unit's SystemCallFilter= refuses: %s" %
          ", ".join(missing))
    # Address families: unix (socket, keeper channels), inet (etcd, APNs).
    fams = " ".join(directives(text, "RestrictAddressFamilies"))
    for fam in ("AF_UNIX", "AF_INET", "AF_INET6"):
        check(fam in fams, "RestrictAddressFamilies= lacks %s" % fam)


@runner.test
def unit_has_the_layout():
    text = unit_text()
    want = {
        "Type": "notify", "User": "p8vault", "Group": "p8vault",
        "StateDirectory": "p8vault", "StateDirectoryMode": "0700",
        "RuntimeDirectory": "p8vault", "UMask": "0077",
        "NoNewPrivileges": "yes",
        "LoadCredential": "p8vault-master-key:%s/p8vault/master.key" % SYSCONFDIR,
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "After": "network.target", "WantedBy": "multi-user.target",
    }
    for k, v in want.items():
        check(v in directives(text, k), "%s=%s not in the unit (%r)" % (
            k, v, directives(text, k)))
    check("man:p8vaultd(8)" in " ".join(directives(text, "Documentation")),
          "Documentation= lacks man:p8vaultd(8)")
    argv = shlex.split(directives(text, "ExecStart")[0])
    check_eq(argv[0], os.path.join(SBINDIR, "p8vaultd"), "ExecStart binary")
    for opt, val in (("--state", "/var/lib/p8vault"),
                     ("--sign-socket", "/run/p8vault/sign.sock"),
                     ("--master-key-file", "%d/p8vault-master-key")):
        check(opt in argv and argv[argv.index(opt) + 1] == val,
              "ExecStart lacks %s %s: %r" % (opt, val, argv))
    check("@" not in text.replace("@system-service", "").replace(
          "@privileged", ""), "an unsubstituted @var@ in the unit")


@runner.test
def execstart_serves():
    """The unit's command line, its paths moved into a temporary
    directory (%d, /var/lib, /run) and its --config the example file,
    gets a daemon that serves on the signing socket."""
    text = unit_text()
    tmp = tempfile.mkdtemp(prefix="p8v-unit-")
    try:
        creds = os.path.join(tmp, "credentials")
        os.mkdir(creds, 0o700)
        write_master_key(os.path.join(creds, "p8vault-master-key"))
        argv = shlex.split(directives(text, "ExecStart")[0])
        moved = []
        for a in argv[1:]:
            a = a.replace("%d", creds)
            a = a.replace("/var/lib/p8vault", os.path.join(tmp, "state"))
            a = a.replace("/run/p8vault", tmp)
            if a.endswith("/p8vault/p8vaultd.conf"):
                a = os.path.join(SRC, "dist", "p8vaultd.conf")
            moved.append(a)
        # Not the default 127.0.0.1:8470 of a developer's ./run.sh.
        moved += ["--listen", "127.0.0.1:0"]
        with Daemon(args=moved, listen=None, sign_socket=False,
                    master_key=False, cwd=tmp) as d:
            d.start()
            check("sign" in d.listening, "no signing socket: %r" %
                  d.listening)
            check_eq(d.listening["sign"].get("socket"),
                     os.path.join(tmp, "sign.sock"), "socket path")
            d.sock_path = d.listening["sign"]["socket"]
            check_eq(d.get("/readyz", unix=True).status, 200, "/readyz")
            d.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@runner.test
def installed_daemon_looks_in_libexecdir():
    """A p8vaultd with no keeper beside it nor a build tree's keeper/
    looks in libexecdir/p8vault, the unit's layout (keeper/client.c)."""
    check(KEEPER_DIR.endswith("/p8vault"), "P8V_LIBEXECDIR: %r" %
          KEEPER_DIR)
    tmp = tempfile.mkdtemp(prefix="p8v-unit-")
    try:
        os.mkdir(os.path.join(tmp, "sbin"))
        alone = os.path.join(tmp, "sbin", "p8vaultd")
        shutil.copy(P8VAULTD, alone)
        with Daemon(args=["--dev", "--listen", "127.0.0.1:0"],
                    listen=None, sign_socket=False, master_key=False,
                    cwd=tmp) as d:
            d.argv[0] = alone
            if os.access(os.path.join(KEEPER_DIR, "p8vault-keeper"),
                         os.X_OK):
                # Installed on this machine: the copy starts with it.
                d.start()
                d.stop()
                return
            rc, _ = d.run_to_exit()
            check_eq(rc, 1, "exit status without a keeper")
            errors = " ".join(l.get("msg", "") for l in d.logs)
            check("nor in %s" % KEEPER_DIR in errors,
                  "the error does not name %s: %s" % (KEEPER_DIR, errors))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@runner.test
def sysusers_and_tmpfiles():
    if os.geteuid() != 0:
        return "skip"       # --root chowns: root only (CI runs as root)
    root = tempfile.mkdtemp(prefix="p8v-root-")
    try:
        os.makedirs(os.path.join(root, "etc"))
        r = subprocess.run(["systemd-sysusers", "--root=" + root,
                            os.path.join(SRC, "dist", "systemd",
                                         "p8vault.sysusers")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
        check_eq(r.returncode, 0, "systemd-sysusers: %s" % r.stdout)
        users = {}
        with open(os.path.join(root, "etc", "passwd")) as f:
            for line in f:
                name, _, uid, gid, _, home, shell = line.strip().split(":")
                users[name] = (int(uid), int(gid), home, shell)
        groups = {}
        with open(os.path.join(root, "etc", "group")) as f:
            for line in f:
                name, _, gid, _ = line.strip().split(":")
                groups[name] = int(gid)
        for name, home in (("p8vault", "/var/lib/p8vault"),
                           ("p8vault-keeper", "/")):
            check(name in users, "no user %s: %r" % (name, users))
            uid, gid, h, shell = users[name]
            check(uid < 1000, "%s is not a system user (%d)" % (name, uid))
            check_eq(gid, groups.get(name), "%s's group" % name)
            check_eq(h, home, "%s's home" % name)
            check(shell.endswith("nologin"), "%s's shell %s" % (name, shell))
        # tmpfiles resolves names through --root's passwd and group.
        r = subprocess.run(["systemd-tmpfiles", "--root=" + root, "--create",
                            os.path.join(SRC, "dist", "systemd",
                                         "p8vault.tmpfiles")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
        check_eq(r.returncode, 0, "systemd-tmpfiles: %s" % r.stdout)
        for path, mode, uid, gid in (
                ("etc/p8vault", 0o750, 0, groups["p8vault"]),
                ("var/lib/p8vault", 0o700, users["p8vault"][0],
                 groups["p8vault"])):
            st = os.stat(os.path.join(root, path))
            check_eq((oct(st.st_mode & 0o7777), st.st_uid, st.st_gid),
                     (oct(mode), uid, gid), "/%s mode, owner, group" % path)
    finally:
        shutil.rmtree(root, ignore_errors=True)


runner.main()
