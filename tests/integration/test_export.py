#!/usr/bin/python3
"""test_export.py: p8vault export and import end to end.

A real p8vaultd gets a key uploaded through the portal API and serves an
APNs token; `p8vault export` copies its store while it runs; `p8vault
import` loads the file into a new state directory; a second p8vaultd on
that directory, with the same master key, must serve the same cached
APNs token (same text, same iat, no new mint), sign a /jwt that verifies
under the uploaded public key (python3-cryptography), and accept the
bearer tokens issued on the first vault; `p8vault verify` and `p8vault
audit verify` must pass on the imported vault. Then the refusals: an
existing OUT, a non-empty NEWDIR, a truncated or altered file (nothing
created).
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, check, check_eq  # noqa
from signing import (TOOL_TIMEOUT_S, SignVault, check_apns_answer,  # noqa
                     cli_path, p8vault, verify)
from cryptography.hazmat.primitives import serialization  # noqa

runner = Runner("test_export")

APP = "export.app"
S = {}          # what the tests share, in order


def p8vault_fails(*args):
    """Run the CLI; it must fail with exit 1 and one line on stderr."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("P8VAULT_")}
    proc = subprocess.run([cli_path()] + list(args), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=TOOL_TIMEOUT_S)
    check_eq(proc.returncode, 1, "p8vault %s: exit status (stderr %r)" % (
        " ".join(args), proc.stderr))
    lines = proc.stderr.strip().splitlines()
    check_eq(len(lines), 1, "p8vault %s: stderr lines" % " ".join(args))
    return lines[0]


@runner.test
def export_while_serving():
    tmp = tempfile.mkdtemp(prefix="p8v-export-")
    S["tmp"] = tmp
    os.mkdir(os.path.join(tmp, "one"), 0o700)
    v = SignVault(tmp=os.path.join(tmp, "one")).start()
    S["v"] = v
    meta, kid, team, pem = v.new_key(APP, services=["apns", "devicecheck"])
    S["key"] = (meta["public_key_pem"], kid, team, pem)
    a = check_apns_answer(v.apns(APP), kid, team, meta["public_key_pem"],
                          "before the export")
    S["apns"] = a
    out = os.path.join(tmp, "vault.p8vexport")
    S["file"] = out
    info = json.loads(p8vault("export", "--state", v.state, "--json", out))
    check_eq(info["export"], out, "export: file")
    check(info["entries"] >= 4, "export: entries %r" % info)
    st = os.stat(out)
    check_eq(oct(st.st_mode & 0o777), oct(0o600), "export file mode")
    check_eq(info["bytes"], st.st_size, "export: bytes")
    check_eq([n for n in os.listdir(tmp) if ".tmp-" in n], [],
             "temporary files left")
    # Ciphertext and metadata only: the private scalar is not in it.
    key = serialization.load_pem_private_key(pem.encode(), None)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    with open(out, "rb") as f:
        data = f.read()
    check(scalar not in data, "the private key is in the export")
    check(b"PRIVATE KEY" not in data, "PEM text in the export")
    check_eq(data[:8], b"P8VXPORT", "magic")


@runner.test
def import_into_a_new_directory():
    tmp2 = os.path.join(S["tmp"], "two")
    os.mkdir(tmp2, 0o700)
    shutil.copy2(S["v"].key, os.path.join(tmp2, "master.key"))
    os.chmod(os.path.join(tmp2, "master.key"), 0o600)
    new = os.path.join(tmp2, "state")
    info = json.loads(p8vault("import", "--state", new, "--json",
                              S["file"]))
    check_eq(info["state_dir"], new, "import: state_dir")
    check(info["entries"] >= 4, "import: entries %r" % info)
    key = os.path.join(tmp2, "master.key")
    p8vault("verify", "--state", new, "--master-key-file", key)
    p8vault("audit", "verify", "--state", new)
    S["tmp2"] = tmp2


@runner.test
def imported_vault_serves_the_same_token():
    pub, kid, team, _ = S["key"]
    v2 = SignVault(tmp=S["tmp2"])
    # The bearer tokens issued on the first vault were exported too.
    v2.tokens = dict(S["v"].tokens)
    v2.start()
    S["v2"] = v2
    before = len(v2.mint_events())
    b = check_apns_answer(v2.apns(APP), kid, team, pub, "after the import")
    a = S["apns"]
    check_eq(b["token"], a["token"], "cached token after the import")
    check_eq(b["issued_at"], a["issued_at"], "iat after the import")
    check_eq(len(v2.mint_events()), before, "a new mint after the import")
    r = v2.jwt(APP, {"profile": "devicecheck"})
    check_eq(r.status, 200, "/jwt on the imported vault: %r" % r)
    check_eq(r.json["key_id"], kid, "/jwt key_id")
    verify(pub, r.json["token"])


@runner.test
def refusals_change_nothing():
    tmp = S["tmp"]
    v = S["v"]
    line = p8vault_fails("export", "--state", v.state, S["file"])
    check("exists" in line, "export over a file: %r" % line)
    line = p8vault_fails("import", "--state", v.state, S["file"])
    check("not an empty directory" in line, "import into a vault: %r" %
          line)
    with open(S["file"], "rb") as f:
        data = f.read()
    cases = {
        "truncated": data[:len(data) // 2],
        "altered": data[:40] + bytes([data[40] ^ 0x20]) + data[41:],
        "no checksum": data[:-32],
        "another version": data[:8] + b"\0\0\0\x02" + data[12:],
        "not an export": b"SQLite format 3\0" + data[16:],
    }
    for what, content in cases.items():
        bad = os.path.join(tmp, "bad.p8vexport")
        if os.path.exists(bad):
            os.unlink(bad)
        with open(bad, "wb") as f:
            f.write(content)
        new = os.path.join(tmp, "never")
        line = p8vault_fails("import", "--state", new, bad)
        check("refused" in line, "%s: %r" % (what, line))
        check(not os.path.exists(new), "%s: the directory was created" %
              what)


def main():
    try:
        runner.main()
    finally:
        for k in ("v", "v2"):
            if k in S:
                S[k].stop()
        if "tmp" in S:
            shutil.rmtree(S["tmp"], ignore_errors=True)


if __name__ == "__main__":
    main()
