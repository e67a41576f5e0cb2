#!/usr/bin/python3
"""test_docs_api.py: docs/api.md's examples run as written, in order.

The convention (docs/api.md, "Quick start"): every block fenced as ```sh
is part of one sequence a newcomer pastes into a shell in the repository
while ./run.sh runs; blocks fenced otherwise (console, json, ...) are
illustrative and not run. ```bash and ```shell fences are refused, so that
no example looks runnable without being run.

The daemon is started as ./run.sh starts it, by scripts/dev-daemon.sh
(p8vaultd --dev in a directory: its ./var), in a temporary directory, with
one change: the portal listens on a free port instead of 8470 (other
daemons may hold 8470), and "127.0.0.1:8470" in the blocks is replaced by
that address. The temporary directory has a link build -> this build, so
that the blocks' build/cli/p8vault is the CLI under test.

The blocks run one after the other in one `bash -euo pipefail` (variables
carry over, as in a shell), each a case of its own: a block fails when any
of its commands fails. curl is wrapped to add --fail-with-body, so an
example that gets an HTTP error fails instead of printing it.

The README's quick start ("Quick start: a first token", what ./run.sh
prints on a first run) runs the same way against a daemon of its own.
Then the daemon is restarted on the same ./var, as a second ./run.sh
does: it must log no error (no "master_key_generate ... File exists")
and print no plain line, and still serve the token.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Runner, check, check_eq, daemon_path  # noqa

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOC = os.path.join(REPO, "docs", "api.md")
README = os.path.join(REPO, "README.md")
DEV_DAEMON = os.path.join(REPO, "scripts", "dev-daemon.sh")
# What the examples name as the portal's address (./run.sh's).
DOC_PORTAL = "127.0.0.1:8470"
# The whole sequence of blocks may take this long (a few seconds normally).
BLOCKS_TIMEOUT_S = 90
# The plain line --dev prints when it creates the development master key.
DEV_KEY_LINE = "DEVELOPMENT master key"

runner = Runner("test_docs_api")

FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


def shell_blocks(path, section=None):
    """The ```sh blocks of path (of one '## ' section if given), in order:
    [(line number, text)], the text unindented as the fence is."""
    blocks, cur, indent, start, sect = [], None, "", 0, None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for no, line in enumerate(lines, 1):
        if cur is None and line.startswith("## "):
            sect = line[3:].strip()
        m = FENCE.match(line)
        if cur is None and m:
            tag = m.group(2)
            check(tag not in ("bash", "shell"), "%s:%d: a ```%s block: "
                  "use ```sh (run by this test) or ```console (not run)"
                  % (os.path.basename(path), no, tag))
            cur, indent, start = ([] if tag == "sh" else False), \
                m.group(1), no
            continue
        if cur is not None and m and m.group(2) == "" and \
                line.strip() == "```":
            if cur is not False and (section is None or sect == section):
                blocks.append((start, "\n".join(cur)))
            cur = None
            continue
        if cur is not None and cur is not False:
            cur.append(line[len(indent):] if line.startswith(indent)
                       else line)
    check(cur is None, "%s: a code block is not closed" % path)
    return blocks


def build_dir():
    cli = os.environ.get("P8VAULT")
    check(cli and os.access(cli, os.X_OK), "P8VAULT is not set to the CLI")
    return os.path.dirname(os.path.dirname(os.path.abspath(cli)))


def dev_daemon(tmp):
    """p8vaultd started by scripts/dev-daemon.sh in tmp (its ./var), the
    portal on a free port."""
    d = Daemon(listen=None, sign_socket=False, master_key=False, cwd=tmp,
               tmpdir=tmp,
               env={"P8V_DEV_DIR": tmp, "P8V_DEV_DAEMON": daemon_path()})
    d.argv = [DEV_DAEMON, "--listen", "127.0.0.1:0"]
    return d


def workdir():
    tmp = tempfile.mkdtemp(prefix="p8v-docs-")
    os.symlink(build_dir(), os.path.join(tmp, "build"))
    wrap = os.path.join(tmp, ".bin")
    os.mkdir(wrap)
    real = shutil.which("curl")
    check(real is not None, "no curl command")
    with open(os.path.join(wrap, "curl"), "w") as f:
        # -f and --fail-with-body may not be given together: a block that
        # asks for -f (the readiness loop) keeps it.
        f.write("#!/bin/bash\n"
                "for a in \"$@\"; do\n"
                "  case $a in --fail*) exec %s \"$@\";; --*) ;;\n"
                "    -*f*) exec %s \"$@\";; esac\n"
                "done\n"
                "exec %s --fail-with-body \"$@\"\n" % (real, real, real))
    os.chmod(os.path.join(wrap, "curl"), 0o755)
    return tmp


class Sequence:
    """Blocks run in order in one bash -euo pipefail; markers on fd 3 say
    which finished."""

    def __init__(self, name, blocks):
        self.name = name
        self.blocks = blocks
        self.done = None                # block indexes that finished
        self.rc = None
        self.output = ""

    def run(self, tmp, port):
        script = ["exec 3>%s" % os.path.join(tmp, ".done")]
        for i, (_, text) in enumerate(self.blocks):
            text = text.replace(DOC_PORTAL, "127.0.0.1:%d" % port)
            script += ["# -- block %d" % i, text,
                       "printf '%d\\n' >&3" % i]
        path = os.path.join(tmp, ".%s.sh" % self.name)
        with open(path, "w") as f:
            f.write("\n".join(script) + "\n")
        env = dict(os.environ)
        env["PATH"] = os.path.join(tmp, ".bin") + ":" + env["PATH"]
        for k in list(env):
            if k.startswith("P8V") and k not in ("PATH",):
                del env[k]
        try:
            p = subprocess.run(["bash", "-euo", "pipefail", path], cwd=tmp,
                               env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT,
                               timeout=BLOCKS_TIMEOUT_S)
            self.rc, out = p.returncode, p.stdout
        except subprocess.TimeoutExpired as e:
            self.rc, out = "timeout", e.stdout or b""
        self.output = out.decode("utf-8", "replace")
        with open(os.path.join(tmp, ".done")) as f:
            self.done = {int(l) for l in f.read().split()}

    def check_block(self, i):
        line, text = self.blocks[i]
        if i in self.done:
            return
        if i == 0 or i - 1 in self.done:
            raise_fail = "the block at %s line %d failed (exit %s):\n%s\n" \
                "-- output (last 40 lines):\n%s" % (
                    self.name, line, self.rc, text,
                    "\n".join(self.output.splitlines()[-40:]))
        else:
            raise_fail = "not run: an earlier block failed"
        check(False, raise_fail)


def register_blocks(seq, what):
    for i, (line, text) in enumerate(seq.blocks):
        first = next((l.strip() for l in text.split("\n")
                      if l.strip() and not l.strip().startswith("#")), "")

        def case(i=i):
            seq.check_block(i)
        case.__name__ = "%s_line_%d: %s" % (what, line, first[:60])
        runner.test(case)


DOCS = Sequence("api.md", shell_blocks(DOC))
QUICK = Sequence("README.md", shell_blocks(README,
                                           "Quick start: a first token"))
STATE = {}


@runner.test
def the_docs_have_runnable_examples():
    # The quick start, uploads, health, whoami and both signing routes.
    check(len(DOCS.blocks) >= 15, "only %d ```sh blocks in docs/api.md"
          % len(DOCS.blocks))
    text = "\n".join(t for _, t in DOCS.blocks)
    for needle in ("/readyz", "/healthz", "/v1/whoami", "apns-token",
                   "/jwt", "--unix-socket ./var/sign.sock",
                   "token create --state ./var"):
        check(needle in text, "no runnable example uses %r" % needle)
    check("/run/p8vault/sign.sock" not in text, "a runnable example uses "
          "the installed socket path")
    check_eq(len(QUICK.blocks), 1, "README quick start blocks")


@runner.test
def docs_examples_run_in_order():
    tmp = workdir()
    STATE["docs_tmp"] = tmp
    d = dev_daemon(tmp)
    STATE["docs_daemon"] = d
    d.start()
    check(os.path.isfile(os.path.join(tmp, "var", "dev-master.key")),
          "the daemon does not use ./var of its directory")
    DOCS.run(tmp, d.port)
    print(DOCS.output[-3000:])
    check_eq(DOCS.rc, 0, "exit status of the blocks")


register_blocks(DOCS, "api.md")


@runner.test
def docs_daemon_logged_no_error_and_restarts_quietly():
    d = STATE.get("docs_daemon")
    check(d is not None, "no daemon")
    errors = [l for l in d.logs if l.get("level") == "error"]
    check(not errors, "errors logged while the examples ran: %r" % errors[:3])
    d.stop(allow_plain=(DEV_KEY_LINE,))
    # A second ./run.sh on the same ./var: it uses the key it made.
    tmp = STATE["docs_tmp"]
    d2 = dev_daemon(tmp)
    try:
        d2.start()
        check(not d2.bad_lines, "plain lines on a restart: %r" %
              d2.bad_lines)
        errors = [l for l in d2.logs if l.get("level") == "error"]
        check(not errors, "errors logged on a restart: %r" % errors[:3])
        check(d2.log_events("dev_master_key"), "no development key warning")
        d2.stop()
    finally:
        d2.close()


@runner.test
def readme_quick_start_runs():
    tmp = workdir()
    with dev_daemon(tmp) as d:
        d.start()
        QUICK.run(tmp, d.port)
        print(QUICK.output[-2000:])
        check_eq(QUICK.rc, 0, "exit status of README's quick start")
        check('"token":"' in QUICK.output, "no token fetched")
        d.stop(allow_plain=(DEV_KEY_LINE,))
    shutil.rmtree(tmp, ignore_errors=True)


@runner.test
def run_sh_prints_the_readme_quick_start():
    """The commands ./run.sh prints on a first run are README's (which the
    case above runs): the same command lines, comments aside."""
    with open(os.path.join(REPO, "run.sh"), encoding="utf-8") as f:
        m = re.search(r"<<STEPS\n(.*?)\nSTEPS\n", f.read(), re.S)
    check(m is not None, "no first-run text in run.sh")
    printed = m.group(1).replace("\\$", "$").replace("\\\\", "\\")

    def commands(text):
        return [l.strip() for l in text.split("\n") if l.startswith("  ")
                and l.strip() and not l.strip().startswith("#")]
    check_eq(commands(printed), commands(
        "\n".join("  " + l for l in QUICK.blocks[0][1].split("\n"))),
        "run.sh's commands against README's")


def main():
    try:
        runner.main()
    finally:
        d = STATE.get("docs_daemon")
        if d is not None:
            d.close()
        if "docs_tmp" in STATE:
            shutil.rmtree(STATE["docs_tmp"], ignore_errors=True)


if __name__ == "__main__":
    main()
