"""test_compat.py: a state directory written by the code as it was before
issue 12 keeps working with the code under test.

Approach (issue 12 asks to say which): this test BUILDS the old version
itself, commit ec0ead3 (OLD_COMMIT below, the last commit before issue 12),
rather than using a checked-in fixture. `git archive` of that commit is
unpacked into the test's temporary folder (no worktree, nothing to clean in
the repository), configured with meson (the project's defaults, no
sanitizer) and only server/p8vaultd and cli/p8vault are built with ninja.
The two binaries (they link only system libraries) are cached in
build-compat/<commit>/ next to the build directory (or $P8V_COMPAT_CACHE),
so the plain and the sanitizer suites build them once: the build happens
under an exclusive lock (build-compat/<commit>.lock) in
<commit>.tmp.<pid>, which is renamed into place only when complete, with a
COMPLETE file holding the binaries' SHA-256; a cache entry whose binaries
do not match it is rebuilt. The commit missing from the repository (a
shallow clone) is a FAILURE of this test, never a skip.

The old p8vault and p8vaultd write a vault: `p8vault init` with a master
key, portal and signer tokens, keys in every form (development,
production, both; several apps; a standby key; one imported by the CLI),
APNs tokens (persisted sealed in the store), a /jwt, a revoked key. Then
the NEW p8vaultd and p8vault ($P8VAULTD, $P8VAULT) on the same directory
with the same bearer tokens:

- serve the cached APNs tokens byte for byte as the old daemon handed them
  out;
- sign with every old key (JWTs verified under the public key derived
  from the uploaded .p8 by python3-cryptography and by `openssl dgst`, not
  by our code);
- keep the revoked key revoked (no token, its Key ID not reusable);
- accept uploads and activate the old standby key;
- pass `p8vault verify` and `p8vault audit verify`;
- rotate the master key (`p8vault master rotate`), after which the new key
  alone opens everything, the cached tokens are still the same, every key
  signs, and the old key alone no longer opens the records.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, TestFailure, check, check_eq, daemon_path  # noqa
import signing  # noqa
from signing import (SignVault, apple_id, check_apns_answer,  # noqa
                     check_error, new_p8, p8vault, token_parts, verify,
                     verify_openssl)
from cryptography.hazmat.primitives import serialization  # noqa

runner = Runner("test_compat")

# The code as it was before issue 12 (git rev-parse ec0ead3).
OLD_COMMIT = "ec0ead33780382151cf68e8d99b36dca5ff3446f"
# What the old build produces, and where it is cached.
OLD_BINARIES = {"p8vaultd": "server/p8vaultd", "p8vault": "cli/p8vault"}
# meson setup + ninja of two targets; generous for a loaded CI machine.
BUILD_TIMEOUT_S = 900
SERVICES = ["apns", "devicecheck"]
ISSUER = "57246542-96fe-1a63-e053-0824d011072a"

NEW = {"p8vaultd": daemon_path(), "p8vault": signing.cli_path()}
TMP = tempfile.mkdtemp(prefix="p8v-compat-")
# What the cases hand on to each other (a case whose input is missing
# fails at once, naming it).
S = {}


def need(*names):
    for n in names:
        if n not in S:
            raise TestFailure("needs %s, which an earlier case did not "
                              "produce" % n)
    return [S[n] for n in names] if len(names) > 1 else S[names[0]]


# -- the old build --------------------------------------------------------

def source_root():
    return os.environ.get("P8V_SOURCE_ROOT") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cache_root():
    if os.environ.get("P8V_COMPAT_CACHE"):
        return os.path.abspath(os.environ["P8V_COMPAT_CACHE"])
    build = os.environ.get("P8V_BUILD_ROOT") or os.path.dirname(
        os.path.dirname(NEW["p8vaultd"]))
    return os.path.join(os.path.dirname(os.path.abspath(build)),
                        "build-compat")


def run(argv, what, log, timeout=BUILD_TIMEOUT_S, **kw):
    """Run argv with its output appended to log; fail with the log's end."""
    with open(log, "ab") as f:
        f.write(("$ %s\n" % " ".join(argv)).encode())
        f.flush()
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=f,
                                  stderr=subprocess.STDOUT, timeout=timeout,
                                  **kw)
            rc = proc.returncode
        except (OSError, subprocess.TimeoutExpired) as e:
            rc = repr(e)
    if rc != 0:
        with open(log, "rb") as f:
            tail = f.read()[-3000:].decode("utf-8", "replace")
        raise TestFailure("%s failed (%s); the end of %s:\n%s" % (
            what, rc, log, tail))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def cached(entry):
    """The binaries of a complete cache entry, or None."""
    try:
        with open(os.path.join(entry, "COMPLETE")) as f:
            info = json.load(f)
        if info.get("commit") != OLD_COMMIT:
            return None
        out = {}
        for name in OLD_BINARIES:
            path = os.path.join(entry, name)
            if info["sha256"].get(name) != sha256(path) or \
                    not os.access(path, os.X_OK):
                return None
            out[name] = path
        return out
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def build_old(out):
    """git archive OLD_COMMIT into TMP, meson setup, ninja the two
    binaries, copy them into out."""
    src = os.path.join(TMP, "old-src")
    bld = os.path.join(TMP, "old-build")
    log = os.path.join(TMP, "old-build.log")
    os.makedirs(src)
    tar = os.path.join(TMP, "old-src.tar")
    run(["git", "-C", source_root(), "archive", "--format=tar", "-o", tar,
         OLD_COMMIT], "git archive %s" % OLD_COMMIT, log)
    run(["tar", "-xf", tar, "-C", src], "unpacking the archive", log)
    os.unlink(tar)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MESON", "NINJA"))}
    run(["meson", "setup", bld, src], "meson setup of %s" % OLD_COMMIT, log,
        env=env)
    run(["ninja", "-C", bld] + list(OLD_BINARIES.values()),
        "ninja of %s" % OLD_COMMIT, log, env=env)
    info = {"commit": OLD_COMMIT, "built": int(time.time()), "sha256": {}}
    for name, rel in OLD_BINARIES.items():
        shutil.copy2(os.path.join(bld, rel), os.path.join(out, name))
        info["sha256"][name] = sha256(os.path.join(out, name))
    with open(os.path.join(out, "COMPLETE"), "w") as f:
        json.dump(info, f)
        f.flush()
        os.fsync(f.fileno())
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(bld, ignore_errors=True)


def old_binaries():
    """(binaries, "cached" or "built"): the old p8vaultd and p8vault."""
    git = subprocess.run(["git", "-C", source_root(), "cat-file", "-e",
                          OLD_COMMIT + "^{commit}"], capture_output=True,
                         text=True, timeout=60)
    check(git.returncode == 0,
          "commit %s (ec0ead3, the code before issue 12) is not in the git "
          "repository at %s (%s): this test builds it to write the old "
          "state directory. A shallow clone lacks it: fetch the history "
          "(git fetch --unshallow) instead of skipping this test." % (
              OLD_COMMIT, source_root(), git.stderr.strip() or "not found"))
    root = cache_root()
    os.makedirs(root, exist_ok=True)
    st = os.stat(root)
    check(st.st_uid == os.getuid() and not st.st_mode & 0o022,
          "%s is not a private directory of this user: not using it for "
          "binaries" % root)
    entry = os.path.join(root, OLD_COMMIT)
    with open(entry + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        got = cached(entry)
        if got is not None:
            return got, "cached"
        # Whatever else is there is a half-built or damaged leftover: only
        # the lock's holder builds, so nobody is using it.
        shutil.rmtree(entry, ignore_errors=True)
        for name in os.listdir(root):
            if name.startswith(OLD_COMMIT + ".tmp."):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        tmp = "%s.tmp.%d" % (entry, os.getpid())
        os.mkdir(tmp)
        try:
            build_old(tmp)
            os.rename(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        got = cached(entry)
        check(got is not None, "the cache entry %s is not complete after "
              "the build" % entry)
        return got, "built"


@contextlib.contextmanager
def binaries(which):
    """Make harness.Daemon and signing.p8vault() use these binaries."""
    saved = {k: os.environ.get(k) for k in ("P8VAULTD", "P8VAULT",
                                            "P8VAULT_CLI")}
    os.environ["P8VAULTD"] = which["p8vaultd"]
    os.environ["P8VAULT"] = which["p8vault"]
    os.environ.pop("P8VAULT_CLI", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def public_pem(p8):
    """The public key of a .p8, derived by python3-cryptography."""
    key = serialization.load_pem_private_key(p8.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# -- the cases ------------------------------------------------------------

# The old vault's keys: name -> app, upload options, how the test asks for
# its APNs token ("environment" of the request; None: no token asked).
KEYS = [
    ("dev", "compat.one", {"environment": "development"}, "development"),
    ("prod", "compat.one", {"environment": "production"}, "production"),
    ("both", "compat.two", {"environment": "both"}, "any"),
    ("standby", "compat.two", {"environment": "both", "activate": False},
     None),
    ("revoked", "compat.three", {}, "any"),
]
TEAM = apple_id()


@runner.test
def old_version_builds_or_is_cached():
    t0 = time.monotonic()
    old, how = old_binaries()
    print("  %s %s in %.1fs (%s)" % (how, OLD_COMMIT[:7],
                                     time.monotonic() - t0,
                                     os.path.dirname(old["p8vaultd"])))
    for name in OLD_BINARIES:
        check(os.path.realpath(old[name]) != os.path.realpath(NEW[name]),
              "the old %s is the new one" % name)
    S["old"] = old


def apns_request(env):
    return None if env == "any" else {"environment": env}


@runner.test
def old_version_writes_a_vault():
    old = need("old")
    keys, tokens, answers = {}, {}, {}
    with binaries(old):
        v = SignVault(tmp=TMP)
        try:
            v.start()
            tokens = {"portal": v.token("portal"),
                      "signer": v.token("signer")}
            for name, app, opts, _ in KEYS:
                meta, kid, team, pem = v.new_key(
                    app, team_id=TEAM, services=SERVICES, **opts)
                check_eq(meta["public_key_pem"], public_pem(pem),
                         "old daemon's public key of %s" % name)
                keys[name] = {"app": app, "kid": kid, "pem": pem,
                              "pub": public_pem(pem),
                              "active": name not in ("standby", "revoked")}
            # One more imported by the old CLI while the daemon runs.
            kid = apple_id()
            pem = new_p8()
            path = os.path.join(TMP, "AuthKey_%s.p8" % kid)
            with open(path, "w") as f:
                f.write(pem)
            p8vault("keys", "import", "--state", v.state,
                    "--master-key-file", v.key, "--app", "compat.cli",
                    "--team-id", TEAM, "--environment", "production",
                    "--services", ",".join(SERVICES), path)
            os.unlink(path)
            keys["cli"] = {"app": "compat.cli", "kid": kid, "pem": pem,
                           "pub": public_pem(pem), "active": True}
            # APNs tokens: minted and persisted, sealed, by the old code.
            for name, app, _, env in KEYS + [("cli", "compat.cli", {},
                                              "any")]:
                if env is None:
                    continue
                k = keys[name]
                a = check_apns_answer(v.apns(app, body=apns_request(env)),
                                      k["kid"], TEAM, k["pub"],
                                      "old daemon's APNs token of " + name)
                answers[name] = a
            a = v.jwt("compat.two", {"profile": "devicecheck"})
            check_eq(a.status, 200, "old daemon's /jwt: %r" % a)
            verify(keys["both"]["pub"], a.json["token"])
            r = v.portal("DELETE", "/v1/apps/compat.three/keys/%s" %
                         keys["revoked"]["kid"])
            check_eq(r.status, 200, "old daemon's revocation: %r" % r)
            check_error(v.apns("compat.three"), 410, "key_revoked",
                        "old daemon, revoked key")
            v.stop()
            mints = v.mint_events()
        finally:
            v.d and v.d.close()
            v.d = None
    del answers["revoked"]
    S.update(keys=keys, tokens=tokens, answers=answers, state=v.state,
             master=v.key, mints=mints)


@contextlib.contextmanager
def new_daemon():
    """A SignVault on the old state directory with the new binaries and
    the old bearer tokens; stopped (exit status and logs checked) at the
    end of the block."""
    tokens = need("tokens")
    v = SignVault(tmp=TMP)
    v.tokens = {(role, ()): t for role, t in tokens.items()}
    try:
        v.start()
        yield v
        v.stop()
    finally:
        if v.d is not None:
            v.d.close()


def check_cached_tokens(v, what):
    answers, keys = need("answers", "keys")
    for name, a in sorted(answers.items()):
        env = [e for n, _, _, e in KEYS if n == name]
        k = keys[name]
        b = check_apns_answer(
            v.apns(k["app"], body=apns_request(env[0] if env else "any")),
            k["kid"], TEAM, k["pub"], "%s: APNs token of %s" % (what, name))
        check_eq(b["token"].encode(), a["token"].encode(),
                 "%s: the cached APNs token of %s, byte for byte" % (
                     what, name))
        check_eq(b, a, "%s: the APNs answer of %s" % (what, name))
    kids = {keys[name]["kid"] for name in answers}
    check_eq([e for e in v.mint_events() if e.get("key_id") in kids],
             [e for e in need("mints") if e.get("key_id") in kids],
             "%s: the audited mints of the cached tokens' keys" % what)


def check_all_sign(v, what):
    """Every key that is not revoked signs a fresh JWT (devicecheck),
    verified by python3-cryptography and by `openssl dgst`."""
    keys = need("keys")
    for name, k in sorted(keys.items()):
        if not k["active"]:
            continue
        body = {"profile": "devicecheck"}
        if name in ("dev", "prod"):
            body["environment"] = {"dev": "development",
                                   "prod": "production"}[name]
        r = v.jwt(k["app"], body)
        check_eq(r.status, 200, "%s: /jwt of %s: %r" % (what, name, r))
        check_eq((r.json["key_id"], r.json["team_id"]), (k["kid"], TEAM),
                 "%s: /jwt ids of %s" % (what, name))
        header, claims = token_parts(r.json["token"])
        check_eq(header, '{"alg":"ES256","kid":"%s"}' % k["kid"],
                 "%s: /jwt header of %s" % (what, name))
        verify(k["pub"], r.json["token"])
        verify_openssl(k["pub"], r.json["token"], TMP)


def check_revoked(v, what):
    keys = need("keys")
    k = keys["revoked"]
    check_error(v.apns("compat.three"), 410, "key_revoked",
                what + ": APNs token of the revoked key")
    check_error(v.jwt("compat.three", {"profile": "devicecheck"}), 410,
                "key_revoked", what + ": /jwt of the revoked key")
    r = v.portal("GET", "/v1/apps/compat.three/keys/%s" % k["kid"])
    check_eq((r.status, r.json and r.json.get("state")), (200, "revoked"),
             what + ": the revoked key's metadata")
    r = v.portal("POST", "/v1/apps/compat.three/keys", {
        "key_id": k["kid"], "team_id": TEAM, "p8": k["pem"]})
    check_error(r, 410, "key_revoked", what + ": the revoked Key ID again")


@runner.test
def new_daemon_serves_the_old_cached_tokens_byte_for_byte():
    with new_daemon() as v:
        check_cached_tokens(v, "new daemon")


@runner.test
def every_old_key_signs_with_the_new_daemon():
    with new_daemon() as v:
        check_all_sign(v, "new daemon")


@runner.test
def the_revoked_key_stays_revoked():
    with new_daemon() as v:
        check_revoked(v, "new daemon")


@runner.test
def old_keys_are_found_by_fingerprint_and_keep_their_identity():
    """The old vault has no fingerprint or team index: the new code
    builds them when it opens the state directory (issue 15)."""
    keys = need("keys")
    with new_daemon() as v:
        admin = v.token("admin")
        for name, k in sorted(keys.items()):
            der = serialization.load_pem_public_key(
                k["pub"].encode()).public_bytes(
                serialization.Encoding.DER,
                serialization.PublicFormat.SubjectPublicKeyInfo)
            fp = hashlib.sha256(der).hexdigest()
            r = v.portal("GET", "/v1/keys?fingerprint=" + fp, token=admin)
            check_eq(r.status, 200, "%s: GET /v1/keys: %r" % (name, r))
            check_eq([(m["app"], m["key_id"]) for m in r.json["keys"]],
                     [(k["app"], k["kid"])], "%s: its copies" % name)
        k = keys["both"]
        r = v.portal("POST", "/v1/apps/compat.other/keys", {
            "key_id": apple_id(), "team_id": TEAM, "p8": k["pem"]})
        check_error(r, 409, "key_identity_conflict",
                    "an old key under another Key ID")


@runner.test
def uploads_and_activation_work_on_the_old_state():
    keys = need("keys")
    with new_daemon() as v:
        # A new app, and a new key beside old ones.
        meta, kid, team, pem = v.new_key("compat.new", team_id=TEAM,
                                         services=SERVICES)
        check_eq(meta["public_key_pem"], public_pem(pem), "new key's public")
        keys["new"] = {"app": "compat.new", "kid": kid, "pem": pem,
                       "pub": public_pem(pem), "active": True}
        check_apns_answer(v.apns("compat.new"), kid, TEAM, public_pem(pem),
                          "APNs token of the new key")
        meta, kid, team, pem = v.new_key("compat.one", team_id=TEAM,
                                         services=SERVICES, activate=False)
        keys["new_standby"] = {"app": "compat.one", "kid": kid, "pem": pem,
                               "pub": public_pem(pem), "active": False}
        # The old standby key, activated by the new code, signs.
        k = keys["standby"]
        r = v.portal("POST", "/v1/apps/compat.two/keys/%s/activate" %
                     k["kid"])
        check_eq((r.status, r.json and r.json.get("state")), (200, "active"),
                 "activating the old standby key: %r" % r)
        k["active"], keys["both"]["active"] = True, False
        S["answers"].pop("both", None)
        check_apns_answer(v.apns("compat.two"), k["kid"], TEAM, k["pub"],
                          "APNs token of the old standby key")
        check_all_sign(v, "after the uploads")


@runner.test
def verify_and_audit_verify_pass():
    state, master = need("state", "master")
    out = json.loads(p8vault("verify", "--state", state,
                             "--master-key-file", master, "--json"))
    check_eq(out.get("ok"), True, "p8vault verify --json: %r" % out)
    out = json.loads(p8vault("audit", "verify", "--state", state, "--json"))
    check_eq(out.get("intact"), True, "p8vault audit verify --json: %r" %
             out)


@runner.test
def master_rotate_then_everything_signs_under_the_new_key():
    state, master = need("state", "master")
    nxt = os.path.join(TMP, "next.key")
    old_copy = os.path.join(TMP, "previous.key")
    new_id = json.loads(p8vault("master", "generate", nxt,
                                "--json"))["master_key_id"]
    obj = json.loads(p8vault("master", "rotate", "--state", state,
                             "--master-key-file", master,
                             "--new-master-key-file", nxt, "--json"))
    check_eq((obj.get("complete"), obj.get("failed"), obj.get("remaining"),
              obj.get("master_key_id")), (True, [], 0, new_id),
             "master rotate --json: %r" % obj)
    check(obj.get("tokens_rewrapped", 0) >= 1,
          "no persisted APNs token re-wrapped: %r" % obj)
    st = json.loads(p8vault("master", "status", "--state", state,
                            "--master-key-file", master,
                            "--master-key-file", nxt, "--json"))
    check_eq(st.get("in_use"), [new_id], "master status: in use (%r)" % st)
    check_eq(len(st.get("retirable", [])), 1, "master status: retirable")
    # The daemon (Daemon reads TMP/master.key) gets the new key alone.
    shutil.copy2(master, old_copy)
    os.replace(nxt, master)
    with new_daemon() as v:
        check_cached_tokens(v, "after the rotation")
        check_all_sign(v, "after the rotation")
        check_revoked(v, "after the rotation")
    out = json.loads(p8vault("verify", "--state", state,
                             "--master-key-file", master, "--json"))
    check_eq(out.get("ok"), True, "verify with the new key: %r" % out)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("P8VAULT_")}
    proc = subprocess.run([NEW["p8vault"], "verify", "--state", state,
                           "--master-key-file", old_copy],
                          capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60)
    check(proc.returncode == 3 and "master_key_missing" in proc.stderr,
          "verify with the old key alone after the rotation: exit %d: %s" %
          (proc.returncode, proc.stderr[:300]))
    out = json.loads(p8vault("audit", "verify", "--state", state, "--json"))
    check_eq(out.get("intact"), True, "audit verify after the rotation")


if __name__ == "__main__":
    try:
        runner.main()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
