#!/usr/bin/python3
"""test_sign_memory.py: between mints, no plaintext key is left in the
daemon's memory; nor is a key sent in the wrong place of an upload body.

Keys are uploaded, APNs tokens minted (cold, then a new active key) and
every JWT profile signed; then, with the daemon idle, every anonymous
mapping of its address space (heap, stacks, guarded pages) is read through
/proc/PID/mem and searched for each key's private scalar (big-endian, and
byte-reversed as OpenSSL's BIGNUM limbs hold it on little-endian machines),
its PKCS#8 DER and the base64 lines of its PEM text.

The scan proves that it reads guarded memory: the APNs token the daemon
caches (in guarded memory, by design) must be found, or the test fails.

Reading another process's memory needs ptrace rights over it; p8vaultd
makes itself non-dumpable, so only root (CAP_SYS_PTRACE) may. Without
them, or in the AddressSanitizer build (its heap lives in reservations of
terabytes that a scan cannot read in a test's time), the script prints the
reason and exits 77 (meson: SKIP).
"""

import base64
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, check, check_eq  # noqa
from signing import SignVault, apple_id, check_error, new_p8  # noqa
from cryptography.hazmat.primitives import serialization  # noqa

runner = Runner("test_sign_memory")

PAGE = 4096
# Anonymous mappings larger than this are reservations, not memory the
# daemon wrote (the plain build has none; thread stacks are 8 MiB).
REGION_MAX = 512 << 20
ALL_SERVICES = ["apns", "app_store_connect", "sign_in_with_apple",
                "musickit", "weatherkit", "devicecheck", "maps"]
JWT_BODIES = [
    {"profile": "app_store_connect",
     "issuer_id": "57246542-96fe-1a63-e053-0824d011072a"},
    {"profile": "sign_in_with_apple", "client_id": "com.example"},
    {"profile": "musickit"},
    {"profile": "weatherkit", "service_id": "com.example.weather"},
    {"profile": "devicecheck"},
    {"profile": "maps"},
]


def skip_reason():
    daemon = os.environ.get("P8VAULTD", "")
    try:
        out = subprocess.run(["ldd", daemon], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    if "libasan" in out:
        return "p8vaultd is built with AddressSanitizer: its heap is in " \
               "reservations too large to scan; the plain build runs this"
    try:
        with open("/proc/self/status") as f:
            cap_eff = [l for l in f if l.startswith("CapEff:")][0]
        caps = int(cap_eff.split()[1], 16)
    except (OSError, IndexError, ValueError):
        caps = 0
    if not caps & (1 << 19):                # CAP_SYS_PTRACE
        return "reading a non-dumpable daemon's memory needs " \
               "CAP_SYS_PTRACE (run the tests as root)"
    return None


def needles(pem):
    """What must not be in memory: name -> bytes."""
    key = serialization.load_pem_private_key(pem.encode(), None)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    body = [l for l in pem.splitlines() if l and not l.startswith("-----")]
    out = {"scalar": scalar, "scalar reversed": scalar[::-1],
           "PKCS#8 DER": base64.b64decode("".join(body))}
    for i, line in enumerate(body):
        out["PEM line %d" % (i + 1)] = line.encode()
    return out


def scan(pid, wanted):
    """{name: [mapping lines where found]} over the anonymous mappings."""
    found = {name: [] for name in wanted}
    with open("/proc/%d/maps" % pid) as maps, \
            open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            path = fields[5] if len(fields) > 5 else ""
            if (path and not path.startswith("[")) or \
                    path in ("[vvar]", "[vvar_vclock]", "[vsyscall]") or \
                    hi - lo > REGION_MAX:
                continue
            pages = []
            for a in range(lo, hi, PAGE):
                try:
                    mem.seek(a)
                    pages.append(mem.read(PAGE))
                except OSError:
                    pages.append(b"\0" * PAGE)
            data = b"".join(pages)
            for name, needle in wanted.items():
                if needle in data:
                    found[name].append(line.strip())
    return found


@runner.test
def no_key_material_between_mints():
    v = SignVault()
    try:
        v.start()
        keys = []
        meta, kid, team, pem = v.new_key("mem.one", services=ALL_SERVICES)
        keys.append(pem)
        check_eq(v.apns("mem.one").status, 200, "first token")
        for body in JWT_BODIES:
            check_eq(v.jwt("mem.one", body).status, 200, body["profile"])
        # A second key of the team becomes active: a mint at once.
        meta2, kid2, _, pem2 = v.new_key("mem.one", team_id=team,
                                         services=ALL_SERVICES,
                                         activate=True)
        keys.append(pem2)
        token = v.apns("mem.one").json["token"]
        check_eq(v.jwt("mem.one", {"profile": "musickit"}).status, 200,
                 "musickit with the second key")
        # Let the last connections finish before looking.
        v.metrics_settled(lambda m: True, "an idle daemon")
        wanted = {"the cached APNs token": token.encode()}
        for i, pem_text in enumerate(keys):
            for name, needle in needles(pem_text).items():
                wanted["key %d %s" % (i + 1, name)] = needle
        found = scan(v.d.proc.pid, wanted)
        check(found.pop("the cached APNs token"),
              "the scan did not find the cached token: it does not read "
              "guarded memory, so it proves nothing")
        leaks = {k: w for k, w in found.items() if w}
        check(not leaks, "key material in the daemon's memory: %r" % leaks)
        v.stop()
    finally:
        v.close()


def misplaced_bodies(key_id, team_id, pem):
    """Upload bodies that hold the .p8 anywhere but the top-level string
    member p8: each must be refused before a JSON parser copies it."""
    lines = pem.splitlines()
    return [
        {"key_id": key_id, "team_id": team_id, "P8": pem},
        {"key_id": key_id, "team_id": team_id, "p8": [pem]},
        {"key_id": key_id, "team_id": team_id, "p8": lines},
        {"key_id": key_id, "team_id": team_id,
         "portal": {"files": [{"name": "AuthKey.p8", "p8": pem}]}},
        {pem: "the key as a member name", "key_id": key_id},
    ]


@runner.test
def misplaced_p8_never_reaches_the_json_heap():
    v = SignVault()
    try:
        v.start()
        # A real key and token first: the token proves the scan reads the
        # daemon's guarded memory.
        v.new_key("mem.two")
        token = v.apns("mem.two").json["token"]
        wanted = {"the cached APNs token": token.encode()}
        for i in range(2):
            pem = new_p8()
            key_id, team_id = apple_id(), apple_id()
            for j, body in enumerate(misplaced_bodies(key_id, team_id,
                                                      pem)):
                r = v.portal("POST", "/v1/apps/mem.two/keys", body)
                check_error(r, 400, "p8_misplaced",
                            "key %d, body %d" % (i + 1, j + 1))
            for name, needle in needles(pem).items():
                if name.startswith("PEM line"):
                    wanted["key %d %s" % (i + 1, name)] = needle
        v.metrics_settled(lambda m: True, "an idle daemon")
        found = scan(v.d.proc.pid, wanted)
        check(found.pop("the cached APNs token"),
              "the scan did not find the cached token: it does not read "
              "guarded memory, so it proves nothing")
        leaks = {k: w for k, w in found.items() if w}
        check(not leaks, "a misplaced key's PEM text in the daemon's "
              "memory: %r" % leaks)
        v.stop()
    finally:
        v.close()


@runner.test
def profile_tokens_are_wiped_after_sending():
    """A profile token is signed afresh for each request and kept nowhere:
    once answered, the daemon must hold no copy of it (the answer's buffer
    is wiped when libmicrohttpd is done with it)."""
    v = SignVault()
    try:
        v.start()
        v.new_key("mem.three", services=ALL_SERVICES)
        token = v.apns("mem.three").json["token"]
        wanted = {"the cached APNs token": token.encode()}
        for i in range(3):
            for body in JWT_BODIES:
                r = v.jwt("mem.three", body)
                check_eq(r.status, 200, body["profile"])
                if body["profile"] == "devicecheck":
                    # The shared APNs token (issue 15): cached by design.
                    check_eq(r.json["token"], token, "devicecheck")
                    continue
                # The signature: unique to the token, and far enough from
                # the start of any buffer that free() does not overwrite
                # it with its own bookkeeping.
                wanted["%s token %d" % (body["profile"], i + 1)] = \
                    r.json["token"].rsplit(".", 1)[1].encode()
        v.metrics_settled(lambda m: True, "an idle daemon")
        found = scan(v.d.proc.pid, wanted)
        check(found.pop("the cached APNs token"),
              "the scan did not find the cached token: it does not read "
              "guarded memory, so it proves nothing")
        leaks = {k: w for k, w in found.items() if w}
        check(not leaks, "answered tokens left in the daemon's memory: "
              "%r" % sorted(leaks))
        v.stop()
    finally:
        v.close()


if __name__ == "__main__":
    reason = skip_reason()
    if reason is not None:
        runner.skip_all(reason)
    runner.main()
