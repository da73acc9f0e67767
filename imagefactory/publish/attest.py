"""Signed result bundles: a bundle's Test Result predicate attached to the published image
digest with cosign (a key pair, no transparency log), and read back and compared.

The flags, as Debian's cosign 2.5.0 defines them (sigstore/cosign v2.5.0,
cmd/cosign/cli/options/attest.go, verify.go, registry.go, predicate.go), checked against
v3.1.1 (sid's):
- `attest --predicate FILE --type URI`: with a URI type the file's JSON object becomes the
  Statement's predicate as it is (pkg/cosign/attestation/attestation.go,
  generateCustomPredicate; only `--type custom` wraps it in {Data, Timestamp}). cosign makes
  the Statement itself (Statement v0.1 in 2.x), its subject the repository and digest given.
- `--tlog-upload=false`: no Rekor entry (nothing here reaches Rekor, and a test result of a
  private runner need not be public); `verify-attestation --insecure-ignore-tlog=true`
  accepts an attestation without one.
- `--allow-http-registry`: plain HTTP, given for loopback registries only (the engine pushes
  to those over HTTP too, publish/registry.py); elsewhere TLS is required.
- cosign 3 signs through a signing config fetched with TUF unless `--use-signing-config=false`
  and refuses `--tlog-upload=false` with it (cmd/cosign/cli/signcommon/common.go,
  LoadTrustedMaterialAndSigningConfig). Debian's builds report `GitVersion: devel`, so the
  flag is passed where `cosign attest --help` lists it rather than by version (run here with
  sid's 3.1.1 as well: it then writes a Sigstore bundle through the referrers API; both
  print each verified attestation as a DSSE envelope, a line each).
- The key's password: cosign reads COSIGN_PASSWORD from the environment (else it prompts, or
  reads standard input). It is required there and never put on a command line, in a log
  line or in a message.
- `cosign attest` signs for a digest the registry does not have without complaint: the
  registry is asked for the manifest first.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import JobError, UsageError
from ..safety import escape_control, json_dumps, redact
from ..share.bundle import PREDICATE_TYPE, STATEMENT_TYPE
from ..share.reader import Bundle, BundleError, from_text, parse
from .registry import RegistryError, Target, manifest_digest

log = logging.getLogger(__name__)

PASSWORD_ENV = "COSIGN_PASSWORD"
TIMEOUT = 180  # seconds for one cosign call: a push of one small layer, or a few reads
MAX_OUTPUT = 64 << 20  # what verify-attestation may print: each attestation is ~60 KiB
# cosign 2.x writes Statement v0.1 around the predicate; v1 is the same header.
STATEMENT_TYPES = ("https://in-toto.io/Statement/v0.1", STATEMENT_TYPE)
DSSE_TYPE = "application/vnd.in-toto+json"


@dataclass(frozen=True)
class Image:
    """The published image a bundle names."""

    repository: str
    digest: str  # sha256:<hex>
    target: Target

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Attested:
    """What a key verifies on a digest: the attestations that read as bundles, and one line
    for each that does not (someone else's predicate of the same type, or a hostile one)."""

    bundles: list[Bundle]
    refused: list[str]


@dataclass(frozen=True)
class Verified:
    image: Image
    attested: Attested


def published_image(bundle: Bundle) -> Image:
    """The image by repository and digest, or one line saying the bundle names none."""
    subject = bundle.subject
    if bundle.kind != "image-digest":
        what = {"image-id": "a local image id", "host-torch": "a host torch"}[bundle.kind]
        variant = bundle.ours["variant"]
        raise JobError(f"{bundle.source}: subject[0] is {what} ({bundle.digest[:19]}), not a "
                       f"published image digest: push the image (`imagefactory push "
                       f"{variant}`), then make its bundle again (`imagefactory share "
                       f"{variant}`)")
    name = str(subject["name"])
    try:
        target = Target.parse(name)
    except UsageError:
        raise JobError(f"{bundle.source}: subject[0].name {escape_control(name)!r} is not a "
                       "repository in a registry") from None
    return Image(name, bundle.digest, target)


def _insecure(image: Image) -> bool:
    return image.target.is_loopback


def check_published(image: Image, source: str) -> None:
    """The registry serves `image.digest` in its repository, else one line."""
    from .credentials import from_docker_config

    try:
        creds = from_docker_config(image.target)
    except UsageError:
        creds = None  # no usable login: ask anonymously, as a puller would
    if creds is not None and creds.identity_token:
        creds = None  # only the engine can trade a refresh token; cosign has the keychain
    base = image.target.api_base(_insecure(image))
    try:
        served = manifest_digest(base, image.target.api_name(""), image.digest, creds)
    except RegistryError as exc:
        raise JobError(f"{source}: {image.reference} was never published: {exc}") from None
    if served != image.digest:
        raise JobError(f"{source}: the registry serves {served} for {image.reference}")


def cosign_binary() -> str:
    path = shutil.which("cosign")
    if path is None:
        raise JobError("cosign is not installed: install Debian's package (`apt-get install "
                       "cosign`; scripts/setup-test-env.sh brings it to bookworm)")
    return path


@functools.cache
def _lists_signing_config(cosign: str) -> bool:
    try:
        proc = subprocess.run([cosign, "attest", "--help"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"--use-signing-config" in proc.stdout + proc.stderr


def _reason(stderr: str) -> str:
    """cosign's own words: its `Error: ...` line, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.removeprefix("Error: ") for line in lines if line.startswith("Error: ")]
    text = (errors or lines or ["no message"])[-1]
    return text if len(text) <= 400 else text[:400] + "..."


def _run(argv: list[str], what: str, env: Mapping[str, str], secrets: tuple[str, ...]
         ) -> bytes:
    log.debug("running %s", shlex.join(argv))  # the argv holds paths and names, no secret
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=TIMEOUT, env=dict(env), check=False)
    except subprocess.TimeoutExpired:
        raise JobError(f"{what}: cosign gave no answer in {TIMEOUT} s") from None
    except OSError as exc:
        raise JobError(f"{what}: cannot run cosign: {exc.strerror or exc}") from None
    stderr = redact(proc.stderr.decode("utf-8", "replace"), secrets)
    if stderr.strip():
        log.debug("cosign said: %s", stderr.strip())
    if proc.returncode != 0:
        raise JobError(f"{what}: cosign: {redact(_reason(stderr), secrets)}")
    return proc.stdout


def attest(bundle: Bundle, key: Path, *, environ: Mapping[str, str] | None = None) -> Image:
    """Attach the bundle's predicate to its published image digest, signed with `key`."""
    env = dict(os.environ if environ is None else environ)
    if PASSWORD_ENV not in env:
        raise UsageError(f"set {PASSWORD_ENV} to the password of {key} (it is read from the "
                         "environment only; an unencrypted key takes an empty one)")
    password = env[PASSWORD_ENV]
    cosign = cosign_binary()
    image = published_image(bundle)
    check_published(image, bundle.source)
    extra = ["--allow-http-registry"] if _insecure(image) else []
    if _lists_signing_config(cosign):
        extra.append("--use-signing-config=false")
    with tempfile.TemporaryDirectory(prefix="imagefactory-attest-") as tmp:
        predicate = Path(tmp, "predicate.json")
        predicate.write_text(json_dumps(bundle.data["predicate"]), encoding="utf-8")
        # `--flag=value`: a path starting with '-' stays a value.
        _run([cosign, "attest", f"--predicate={predicate}", f"--type={PREDICATE_TYPE}",
              f"--key={key}", "--tlog-upload=false", "--yes", *extra, image.reference],
             f"cosign attest {image.reference}", env, (password,))
    log.debug("attested %s with %s", image.reference, key)
    return image


def attested(image: Image, public_key: Path, source: str) -> Attested:
    """Every attestation of the Test Result type on `image` that `public_key` verifies,
    each read as strictly as a submitted bundle (its subject the one cosign signed)."""
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}  # verifying needs none
    extra = ["--allow-http-registry"] if _insecure(image) else []
    what = f"{source}: cosign verify-attestation {image.reference}"
    out = _run([cosign_binary(), "verify-attestation", f"--key={public_key}",
                f"--type={PREDICATE_TYPE}", "--insecure-ignore-tlog=true", *extra,
                image.reference], what, env, ())
    if len(out) > MAX_OUTPUT:
        raise JobError(f"{what}: printed {len(out)} bytes; the limit is {MAX_OUTPUT}")
    found, refused = [], []
    lines = [line for line in out.splitlines() if line.strip()]
    for n, line in enumerate(lines, 1):
        try:
            found.append(_statement(line, image, f"attestation {n} on {image.reference}"))
        except JobError as exc:
            refused.append(str(exc))
    if not lines:
        raise JobError(f"{what}: cosign printed no attestation")
    return Attested(found, refused)


def _strict(data: bytes, where: str) -> Any:
    try:
        return parse(data.decode("utf-8"), where)
    except UnicodeDecodeError:
        raise JobError(f"{where}: not UTF-8") from None
    except BundleError as exc:
        raise JobError(str(exc)) from None


def _statement(line: bytes, image: Image, where: str) -> Bundle:
    envelope = _strict(line, where)  # a DSSE envelope, as 2.x and 3.x both print
    if not isinstance(envelope, dict) or envelope.get("payloadType") != DSSE_TYPE \
            or not isinstance(envelope.get("payload"), str):
        raise JobError(f"{where}: not an in-toto DSSE envelope")
    try:
        raw = base64.b64decode(envelope["payload"], validate=True)
    except (binascii.Error, ValueError):
        raise JobError(f"{where}: payload: not base64") from None
    statement = _strict(raw, f"{where} payload")
    if not isinstance(statement, dict) or statement.get("_type") not in STATEMENT_TYPES:
        raise JobError(f"{where}: not an in-toto Statement")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise JobError(f"{where}: predicateType is not {PREDICATE_TYPE}")
    hexdigest = image.digest.removeprefix("sha256:")
    subjects = statement.get("subject")
    mine = [s for s in subjects if isinstance(s, dict) and s.get("digest") == {
        "sha256": hexdigest}] if isinstance(subjects, list) else []
    if len(mine) != 1 or mine[0].get("name") != image.repository:
        raise JobError(f"{where}: its subject is not {image.reference}")
    predicate = statement.get("predicate")
    ours = predicate.get("imagefactory") if isinstance(predicate, dict) else None
    image_id = ours.get("image_id") if isinstance(ours, dict) else None
    bundle = {"_type": STATEMENT_TYPE,
              "subject": [{"name": image.repository, "digest": {"sha256": hexdigest},
                           "annotations": {"kind": "image-digest", "image_id": image_id}}],
              "predicateType": PREDICATE_TYPE, "predicate": predicate}
    try:
        return from_text(json_dumps(bundle), where)
    except BundleError as exc:
        raise JobError(str(exc)) from None


def same(a: Any, b: Any) -> bool:
    """JSON equality, numbers by value (cosign re-encodes 5.0 as 5), bools apart from 1/0."""
    return first_difference(a, b, "") is None


def first_difference(a: Any, b: Any, path: str) -> tuple[str, Any, Any] | None:
    """Where `a` and `b` first differ (path, a's value, b's value), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}", a.get(key, "(absent)"), b.get(key, "(absent)")
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{path} length", len(a), len(b)
        return None
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool) or not (
            isinstance(a, numbers) and isinstance(b, numbers)):
        return None if type(a) is type(b) and a == b else (path, a, b)
    return None if a == b else (path, a, b)


def _shown(value: Any) -> str:
    text = escape_control(json_dumps(value) if not isinstance(value, str) else repr(value))
    return text if len(text) <= 60 else text[:60] + "..."


def verify(bundle: Bundle, public_key: Path) -> Verified:
    """The bundle's predicate is attested on its published digest, signed by the key."""
    cosign_binary()
    image = published_image(bundle)
    check_published(image, bundle.source)
    read = attested(image, public_key, bundle.source)
    mine = bundle.data["predicate"]
    if any(same(b.data["predicate"], mine) for b in read.bundles):
        return Verified(image, read)
    count = len(read.bundles) + len(read.refused)
    head = (f"{bundle.source}: refused: none of the {count} attestation(s) on "
            f"{image.reference} signed by {public_key} carries this bundle's predicate")
    if not read.bundles:
        raise JobError(f"{head} (none reads as a result bundle: {read.refused[0]})")
    # Say where the closest one (same host and run, else the first) differs.
    ours = bundle.ours
    closest = next((b for b in read.bundles if b.host_id == bundle.host_id
                    and b.ours["started_at"] == ours["started_at"]), read.bundles[0])
    diff = first_difference(closest.data["predicate"], mine, "predicate")
    assert diff is not None
    where, theirs, yours = diff
    raise JobError(f"{head} (the closest differs at {where}: attested {_shown(theirs)}, "
                   f"bundle {_shown(yours)})")
