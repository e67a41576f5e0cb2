#!/usr/bin/python3
"""test_package.py: the Debian package (debian/), built and taken apart.

The source tree (the files git knows, tracked or not yet added, minus
ignored ones: no build directories) is copied to a temporary directory and
built there with `dpkg-buildpackage -b -us -uc`, as Debian 12 would (about
a minute; the package build runs none of the project's tests, see
debian/rules). Then:

- p8vault_*.deb exists and `lintian` reports no error (no "E:" line);
- `dpkg -x` into a throwaway root holds the install layout of
  docs/operations.md ("The Debian package"): the three programs, the
  keeper in /usr/libexec/p8vault, the systemd unit, the sysusers.d and
  tmpfiles.d files, the three man pages, the example configuration (a
  conffile) and the docs; and no master key, nor anything else under
  /etc/p8vault but the example configuration;
- the programs from that root run (--version), and p8vault finds its
  keeper at the installed path: `p8vault init` from the throwaway root,
  with the root's /usr/libexec bind-mounted over the system's in a
  private mount namespace (root only; CI runs as root);
- the postinst, run with DPKG_ROOT set to the throwaway root, creates the
  users p8vault and p8vault-keeper there (systemd-sysusers --root),
  enables p8vaultd.service, does not start it, creates no master key and
  prints how to make one; with a key file present it leaves the file as
  it was and prints no note.
"""

import os
import pwd
import glob
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, check_eq  # noqa: E402

SRC = os.environ.get("P8V_SOURCE_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
VERSION = "0.1.0"
BUILD_TIMEOUT_S = 1500
UNIT = "lib/systemd/system/p8vaultd.service"

runner = harness.Runner("package")
state = {}


def run(args, timeout=120, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, **kw)


def tail(text, n=40):
    return "\n".join(text.splitlines()[-n:])


def build():
    """Build the package once; every case after the first uses it."""
    if "deb" in state:
        return state
    tmp = tempfile.mkdtemp(prefix="p8v-package-")
    state["tmp"] = tmp
    src = os.path.join(tmp, "p8vault")
    os.mkdir(src)
    files = subprocess.run(
        ["git", "-C", SRC, "ls-files", "-z", "--cached", "--others",
         "--exclude-standard"], stdout=subprocess.PIPE, check=True).stdout
    for rel in files.decode().split("\0"):
        if not rel or not os.path.lexists(os.path.join(SRC, rel)):
            continue  # deleted in the work tree, not yet in git
        dst = os.path.join(src, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(SRC, rel), dst, follow_symlinks=False)
    check(os.path.exists(os.path.join(src, "debian", "rules")),
          "debian/rules was not copied from %s" % SRC)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MESON", "ASAN", "UBSAN", "LSAN", "P8V"))}
    env["DEB_BUILD_OPTIONS"] = "parallel=%d" % min(os.cpu_count() or 1, 4)
    env["LC_ALL"] = "C.UTF-8"
    p = run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=src, env=env,
            timeout=BUILD_TIMEOUT_S)
    state["log"] = p.stdout
    check(p.returncode == 0, "dpkg-buildpackage failed (%d):\n%s" %
          (p.returncode, tail(p.stdout)))
    debs = sorted(glob.glob(os.path.join(tmp, "p8vault_*.deb")))
    check(len(debs) == 1, "want one p8vault_*.deb in %s, found %r" %
          (tmp, os.listdir(tmp)))
    state["deb"] = debs[0]
    root = os.path.join(tmp, "root")
    ctl = os.path.join(tmp, "control")
    p = run(["dpkg-deb", "-x", debs[0], root])
    check(p.returncode == 0, "dpkg -x failed: %s" % p.stdout)
    p = run(["dpkg-deb", "-e", debs[0], ctl])
    check(p.returncode == 0, "dpkg-deb -e failed: %s" % p.stdout)
    state["root"] = root
    state["control"] = ctl
    return state


def in_root(*parts):
    return os.path.join(state["root"], *parts)


@runner.test
def package_builds():
    s = build()
    name = os.path.basename(s["deb"])
    check(name.startswith("p8vault_%s" % VERSION),
          "package %s is not version %s" % (name, VERSION))
    fields = run(["dpkg-deb", "-f", s["deb"], "Package", "Version",
                  "Depends"]).stdout
    check("Package: p8vault\n" in fields, fields)
    # ${shlibs:Depends} filled in, and the sysusers helper's dependency.
    check("libssl3" in fields and "liblmdb0" in fields,
          "Depends lacks the shared libraries: %s" % fields)
    check("systemd" in fields, "Depends lacks systemd: %s" % fields)


@runner.test
def lintian_reports_no_errors():
    s = build()
    p = run(["lintian", "--no-tag-display-limit", s["deb"]], timeout=600)
    errors = [line for line in p.stdout.splitlines()
              if line.startswith("E:")]
    check(not errors, "lintian errors:\n%s" % "\n".join(errors))
    # lintian exits 2 when it could not check at all.
    check(p.returncode in (0, 1), "lintian failed (%d): %s" %
          (p.returncode, tail(p.stdout)))


def doc(name):
    """A doc file as installed: dh_compress gzips the larger ones."""
    for n in (name, name + ".gz"):
        if os.path.isfile(in_root("usr/share/doc/p8vault", n)):
            return n
    return None


@runner.test
def package_holds_the_install_layout():
    build()
    for path in ("usr/sbin/p8vaultd", "usr/bin/p8vault",
                 "usr/libexec/p8vault/p8vault-keeper"):
        full = in_root(path)
        check(os.path.isfile(full) and os.access(full, os.X_OK),
              "/%s missing or not executable" % path)
    # systemd's unit directory on Debian 12 (pkg-config systemd
    # systemdsystemunitdir) is /lib/systemd/system.
    for path in (UNIT,
                 "usr/lib/sysusers.d/p8vault.conf",
                 "usr/lib/tmpfiles.d/p8vault.conf",
                 "etc/p8vault/p8vaultd.conf",
                 "usr/share/p8vault/prometheus/p8vault-alerts.yml"):
        check(os.path.isfile(in_root(path)), "/%s missing" % path)
    for page in ("man8/p8vaultd.8", "man1/p8vault.1",
                 "man5/p8vaultd.conf.5"):
        path = in_root("usr/share/man", page + ".gz")
        check(os.path.isfile(path), "/usr/share/man/%s.gz missing" % page)
        # It renders, without a groff warning.
        # groff's warnings go to stderr; the page itself may say
        # "warning".
        p = subprocess.run(["man", "--warnings", "-l", path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=120,
                           env=dict(os.environ, MANWIDTH="80",
                                    MANPAGER="cat", MAN_KEEP_FORMATTING=""))
        name = os.path.basename(page).rsplit(".", 1)[0]
        check(p.returncode == 0 and name in p.stdout and
              p.stderr.strip() == "",
              "man -l %s failed: %s" % (page, tail(p.stderr or p.stdout,
                                                   5)))
    for name in ("README.md", "operations.md", "api.md", "security.md",
                 "openapi.yaml", "copyright", "changelog"):
        check(doc(name) is not None,
              "/usr/share/doc/p8vault/%s missing" % name)
    # The unit runs the installed daemon as the service user.
    unit = open(in_root(UNIT)).read()
    check("/usr/sbin/p8vaultd" in unit, "the unit does not run "
          "/usr/sbin/p8vaultd:\n%s" % unit)
    check("User=p8vault" in unit, "the unit names no User=p8vault")
    users = open(in_root("usr/lib/sysusers.d/p8vault.conf")).read()
    for user in ("p8vault", "p8vault-keeper"):
        check(any(line.split()[:2] == ["u", user]
                  for line in users.splitlines() if line.strip()),
              "sysusers.d/p8vault.conf creates no user %s:\n%s" %
              (user, users))
    conffiles = open(os.path.join(state["control"], "conffiles")).read()
    check_eq(conffiles.split(), ["/etc/p8vault/p8vaultd.conf"], "conffiles")


@runner.test
def package_holds_no_master_key():
    build()
    under_etc = []
    for dirpath, dirs, files in os.walk(state["root"]):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), state["root"])
            check("master" not in f and not f.endswith((".key", ".cred")),
                  "the package holds a key file: /%s" % rel)
            if rel.startswith("etc/"):
                under_etc.append(rel)
    check_eq(under_etc, ["etc/p8vault/p8vaultd.conf"], "files under /etc")
    conf = open(in_root("etc/p8vault/p8vaultd.conf")).read()
    check("BEGIN PRIVATE KEY" not in conf, "the example configuration "
          "holds a private key")
    # No maintainer script writes a key: none runs init, generate or
    # redirects into a key file.
    for script in ("preinst", "postinst", "prerm", "postrm"):
        path = os.path.join(state["control"], script)
        if not os.path.exists(path):
            continue
        heredoc = None
        for line in open(path).read().splitlines():
            # Text a script prints (a here-document) is not code.
            if heredoc is not None:
                if line.strip() == heredoc:
                    heredoc = None
                continue
            code = line.split("#", 1)[0]
            if "<<" in code:
                heredoc = code.split("<<", 1)[1].strip().strip("'\"-")
            check(not (">" in code and "master" in code),
                  "%s writes to a master key file: %s" % (script, line))
            check("master generate" not in code and
                  not (code.lstrip().startswith("p8vault ") or
                       "/p8vault init" in code),
                  "%s runs a command that makes a key: %s" % (script, line))


@runner.test
def installed_programs_run():
    build()
    for path in ("usr/sbin/p8vaultd", "usr/bin/p8vault"):
        p = run([in_root(path), "--version"])
        check(p.returncode == 0 and VERSION in p.stdout,
              "/%s --version: %d %r" % (path, p.returncode, p.stdout))
    # The keeper runs only under p8vaultd or p8vault: by hand it prints
    # its usage line.
    p = run([in_root("usr/libexec/p8vault/p8vault-keeper"), "--help"])
    check("usage: p8vault-keeper" in p.stdout,
          "p8vault-keeper --help: %d %r" % (p.returncode, p.stdout))
    # Both front programs look for the keeper where the package puts it.
    for path in ("usr/sbin/p8vaultd", "usr/bin/p8vault"):
        data = open(in_root(path), "rb").read()
        check(b"/usr/libexec/p8vault" in data,
              "/%s does not look in /usr/libexec/p8vault" % path)


@runner.test
def keeper_runs_from_the_installed_path():
    build()
    if os.geteuid() != 0:
        return "skip"  # a private mount namespace needs root
    tmp = tempfile.mkdtemp(dir=state["tmp"], prefix="init-")
    st = os.path.join(tmp, "state")
    key = os.path.join(tmp, "master.key")
    # In a namespace of its own, /usr/libexec is the package's; the
    # program is the package's, run by its absolute path, so that the
    # keeper is found neither beside it nor in a build tree.
    script = ('mount --bind "$1" /usr/libexec && '
              'exec "$2" init --state "$3" --master-key-file "$4"')
    p = run(["unshare", "-m", "--propagation", "private", "--", "sh", "-c",
             script, "sh", in_root("usr/libexec"), in_root("usr/bin/p8vault"),
             st, key])
    check(p.returncode == 0, "p8vault init from the package: %d\n%s" %
          (p.returncode, p.stdout))
    check(os.path.isfile(os.path.join(st, "data.mdb")), "init made no store")
    check_eq(oct(os.stat(key).st_mode & 0o777), oct(0o600), "key mode")
    # And without the package's keeper it is not found: the run above
    # did use /usr/libexec/p8vault.
    if not os.path.exists("/usr/libexec/p8vault/p8vault-keeper"):
        p = run([in_root("usr/bin/p8vault"), "init", "--state", st + "2",
                 "--master-key-file", key])
        check(p.returncode != 0 and "keeper" in p.stdout,
              "p8vault found a keeper without the package's: %r" % p.stdout)


def postinst(root, extra_env=None):
    env = dict(os.environ, DPKG_ROOT=root, DPKG_MAINTSCRIPT_PACKAGE="p8vault",
               DPKG_MAINTSCRIPT_NAME="postinst")
    env.update(extra_env or {})
    return run(["sh", "-e", os.path.join(state["control"], "postinst"),
                "configure", ""], env=env)


def fresh_root(name):
    """A copy of the extracted root with an empty etc/passwd and group (as
    systemd-sysusers --root expects a system's to exist)."""
    root = os.path.join(state["tmp"], name)
    shutil.copytree(state["root"], root, symlinks=True)
    os.makedirs(os.path.join(root, "etc"), exist_ok=True)
    with open(os.path.join(root, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(root, "etc/group"), "w") as f:
        f.write("root:x:0:\n")
    return root


@runner.test
def postinst_without_a_key_enables_but_makes_no_key():
    build()
    if os.geteuid() != 0:
        return "skip"  # systemd-sysusers and tmpfiles chown as root
    root = fresh_root("postinst-nokey")
    state.setdefault("system_users", system_users())
    p = postinst(root)
    check(p.returncode == 0, "postinst configure failed: %d\n%s" %
          (p.returncode, p.stdout))
    passwd = open(os.path.join(root, "etc/passwd")).read()
    for user in ("p8vault", "p8vault-keeper"):
        check(any(line.startswith(user + ":") for line in
                  passwd.splitlines()),
              "postinst did not create the user %s:\n%s" % (user, passwd))
    wants = glob.glob(os.path.join(root, "etc/systemd/system/*.wants/"
                                   "p8vaultd.service"))
    check(wants, "postinst did not enable p8vaultd.service")
    check(not os.path.lexists(os.path.join(root, "etc/p8vault/master.key")),
          "postinst created /etc/p8vault/master.key")
    check_eq(sorted(os.listdir(os.path.join(root, "etc/p8vault"))),
             ["p8vaultd.conf"], "files in /etc/p8vault after postinst")
    check("p8vault init --state /var/lib/p8vault --master-key-file "
          "/etc/p8vault/master.key" in p.stdout,
          "postinst did not say how to make the key:\n%s" % p.stdout)
    check("not started" in p.stdout, "postinst did not say the service "
          "is not started:\n%s" % p.stdout)
    # Enabled without a start (dh_installsystemd --no-start); prerm
    # stops it on removal, which --no-start leaves out.
    text = open(os.path.join(state["control"], "postinst")).read()
    check("deb-systemd-invoke start p8vaultd.service" in text and
          "deb-systemd-invoke restart" not in text,
          "postinst starts p8vaultd otherwise than when a key exists")
    text = open(os.path.join(state["control"], "prerm")).read()
    check("deb-systemd-invoke stop p8vaultd.service" in text,
          "prerm does not stop p8vaultd.service on removal")


@runner.test
def postinst_leaves_an_existing_key_alone():
    build()
    if os.geteuid() != 0:
        return "skip"  # systemd-sysusers and tmpfiles chown as root
    root = fresh_root("postinst-key")
    state.setdefault("system_users", system_users())
    key = os.path.join(root, "etc/p8vault/master.key")
    content = "ab" * 32 + "\n"
    with open(key, "w") as f:
        f.write(content)
    os.chmod(key, 0o400)
    before = os.stat(key)
    p = postinst(root)
    check(p.returncode == 0, "postinst configure failed: %d\n%s" %
          (p.returncode, p.stdout))
    after = os.stat(key)
    check_eq(open(key).read(), content, "the key file after postinst")
    check_eq((after.st_mode, after.st_uid, after.st_mtime_ns, after.st_ino),
             (before.st_mode, before.st_uid, before.st_mtime_ns,
              before.st_ino), "the key file's mode, owner, time, inode")
    check("p8vault init" not in p.stdout,
          "postinst printed the note although a key exists:\n%s" % p.stdout)
    # DPKG_ROOT kept everything in the throwaway root.
    check_eq(system_users(), state["system_users"],
             "this system's p8vault users after postinst")


def system_users():
    users = []
    for name in ("p8vault", "p8vault-keeper"):
        try:
            users.append(pwd.getpwnam(name).pw_uid)
        except KeyError:
            users.append(None)
    return users


if __name__ == "__main__":
    try:
        runner.main()
    finally:
        if "tmp" in state and not os.environ.get("P8V_KEEP_PACKAGE"):
            shutil.rmtree(state["tmp"], ignore_errors=True)
