#!/usr/bin/python3
"""man_pages.py: the man pages (docs/man/*.scd) stay true to the code.

Reads the sources, not the binaries: every option of p8vaultd's table
(server/config.c, opt_defs) must be in p8vaultd(8) with its P8VAULT_*
variable and in p8vaultd.conf(5) as a key; every command of the CLI's
table (cli/main.c), every subcommand its usage text names, every long
option of its getopt tables and every P8VAULT_* variable it reads must be
in p8vault(1); every exit status of both (server/main.c, cli/cli.h) in
the EXIT STATUS section. The other way round, an option a page documents
must exist in the code. Speaks TAP (tests/integration/harness.py)."""

import glob
import os
import re
import sys

SRC = os.environ.get("P8V_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
from harness import Runner, check  # noqa

runner = Runner("man_pages")


def read(*parts):
    with open(os.path.join(SRC, *parts), encoding="utf-8") as f:
        return f.read()


def page(name):
    """A page's source with scdoc's escapes undone (P8VAULT\\_STATE)."""
    return read("docs", "man", name + ".scd").replace("\\_", "_") \
        .replace("\\*", "*")


def section(text, title):
    """The text of '# TITLE' up to the next '# ' heading."""
    m = re.search(r"^# %s\n(.*?)(?=^# |\Z)" % re.escape(title), text,
                  re.M | re.S)
    check(m is not None, "no section %r" % title)
    return m.group(1)


def daemon_options():
    """(name, kind) of every option in server/config.c's table."""
    text = read("server", "config.c")
    opts = re.findall(r'\[OPT_[A-Z_]+\]\s*=\s*\{\s*"([a-z0-9-]+)",\s*'
                      r'KIND_([A-Z]+)', text)
    check(len(opts) >= 30, "only %d options parsed from server/config.c" %
          len(opts))
    return opts


def env_name(opt):
    return "P8VAULT_" + opt.upper().replace("-", "_")


def documented_options(text):
    """Every --option a page sets in bold."""
    return set(re.findall(r"\*--([a-z0-9-]*[a-z0-9])\*", text))


@runner.test
def p8vaultd_8_has_every_option_and_variable():
    text = page("p8vaultd.8")
    opts = section(text, "OPTIONS")
    missing = [o for o, _ in daemon_options()
               if "*--%s*" % o not in opts or env_name(o) not in opts]
    check(not missing, "p8vaultd.8.scd OPTIONS lacks --X or P8VAULT_X "
          "for: %s" % ", ".join(missing))
    for o in ("help", "version"):
        check("*--%s*" % o in opts, "p8vaultd.8.scd lacks --%s" % o)


@runner.test
def p8vaultd_8_documents_no_unknown_option():
    known = {o for o, _ in daemon_options()} | {"help", "version"}
    extra = documented_options(page("p8vaultd.8")) - known
    check(not extra, "p8vaultd.8.scd documents options p8vaultd does not "
          "have: %s" % ", ".join(sorted(extra)))


@runner.test
def p8vaultd_conf_5_has_every_key():
    text = section(page("p8vaultd.conf.5"), "KEYS")
    keys = set(re.findall(r"^\*([a-z0-9-]+)\* = ", text, re.M))
    # --config is not a key of the file (load_file refuses it).
    want = {o for o, _ in daemon_options() if o != "config"}
    check(not want - keys, "p8vaultd.conf.5.scd KEYS lacks: %s" %
          ", ".join(sorted(want - keys)))
    check(not keys - want, "p8vaultd.conf.5.scd KEYS has keys p8vaultd "
          "refuses: %s" % ", ".join(sorted(keys - want)))


def exit_statuses(path, prefix):
    return sorted(set(re.findall(r"#define %s[A-Z_]+\s+(\d+)" % prefix,
                                 read(*path))))


def check_exit_section(name, codes):
    text = section(page(name), "EXIT STATUS")
    documented = set(re.findall(r"^\*(\d+)\*$", text, re.M))
    check(len(codes) >= 3, "exit statuses not parsed: %r" % codes)
    check(set(codes) == documented, "%s EXIT STATUS documents %s, the "
          "code has %s" % (name, sorted(documented), codes))


@runner.test
def p8vaultd_8_exit_status():
    check_exit_section("p8vaultd.8",
                       exit_statuses(("server", "main.c"), "EXIT_"))


@runner.test
def p8vaultd_8_keeper_etcd_and_systemd():
    text = page("p8vaultd.8")
    section(text, "THE KEEPER PROCESS")
    for word in ("p8vault-keeper", "/usr/libexec/p8vault/", "seccomp",
                 "Landlock", "etcd://", "SIGHUP", "SIGTERM", "READY=1",
                 "RELOADING=1", "STOPPING=1", "STATUS=",
                 "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET"):
        check(word in text, "p8vaultd.8.scd does not mention %s" % word)
    files = section(text, "FILES")
    for path in ("/etc/p8vault/p8vaultd.conf", "/etc/p8vault/master.key",
                 "/var/lib/p8vault", "/run/p8vault/sign.sock"):
        check(path in files, "p8vaultd.8.scd FILES lacks %s" % path)


def cli_sources():
    return sorted(glob.glob(os.path.join(SRC, "cli", "*.c")))


def cli_commands():
    text = read("cli", "main.c")
    table = text[text.index("commands[] = {"):]
    table = table[:table.index("};")]
    cmds = re.findall(r'\{\s*"([a-z-]+)",', table)
    check(len(cmds) >= 10, "only %d commands parsed from cli/main.c" %
          len(cmds))
    return cmds


def cli_subcommands():
    """(command, subcommand) from the usage texts: 'p8vault keys list'."""
    subs = set()
    for path in cli_sources():
        with open(path, encoding="utf-8") as f:
            for cmd, sub in re.findall(r'p8vault ([a-z]+) ([a-z]+) --',
                                       f.read()):
                subs.add((cmd, sub))
    return subs


def cli_long_options():
    opts = set()
    for path in cli_sources():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        opts.update(re.findall(r'\{\s*"([a-z0-9-]+)",\s*'
                               r'(?:required|no|optional)_argument', text))
    # cli/cli.c takes --store and the etcd options before any command.
    cli_c = read("cli", "cli.c")
    names = cli_c[cli_c.index("etcd_opt_names"):]
    names = names[:names.index("};")]
    opts.update(re.findall(r'"([a-z0-9-]+)"', names))
    opts.add("store")
    return opts


@runner.test
def p8vault_1_has_every_command():
    text = page("p8vault.1")
    cmds = section(text, "COMMANDS")
    missing = [c for c in cli_commands()
               if not re.search(r"\*p8vault %s[* ]" % re.escape(c), cmds)]
    check(not missing, "p8vault.1.scd COMMANDS lacks: %s" %
          ", ".join(missing))
    subs = cli_subcommands()
    check(len(subs) >= 15, "only %d subcommands parsed" % len(subs))
    missing = ["%s %s" % s for s in sorted(subs)
               if "*p8vault %s %s*" % s not in cmds]
    check(not missing, "p8vault.1.scd COMMANDS lacks: %s" %
          ", ".join(missing))


@runner.test
def p8vault_1_has_every_option():
    text = page("p8vault.1")
    opts = cli_long_options()
    check(len(opts) >= 25, "only %d CLI options parsed" % len(opts))
    missing = sorted(o for o in opts if "*--%s*" % o not in text)
    check(not missing, "p8vault.1.scd lacks: %s" %
          ", ".join("--" + o for o in missing))
    extra = documented_options(text) - opts - {"help", "version"}
    check(not extra, "p8vault.1.scd documents options p8vault does not "
          "have: %s" % ", ".join(sorted(extra)))


@runner.test
def p8vault_1_has_every_variable():
    text = section(page("p8vault.1"), "ENVIRONMENT")
    found = set()
    for path in cli_sources():
        with open(path, encoding="utf-8") as f:
            found.update(re.findall(r'"(P8VAULT_[A-Z_]+[A-Z])"', f.read()))
    check(len(found) >= 9, "only %d variables parsed" % len(found))
    missing = sorted(v for v in found if v not in text)
    check(not missing, "p8vault.1.scd ENVIRONMENT lacks: %s" %
          ", ".join(missing))


@runner.test
def p8vault_1_exit_status():
    check_exit_section("p8vault.1",
                       exit_statuses(("cli", "cli.h"), "CLI_EXIT_"))


runner.main()
