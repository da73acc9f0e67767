"""Built + tested image -> tags in a registry -> a verified, recorded `repo@digest`.

The gate: only an image whose exact id has a passing `imagefactory test` result is pushed
(`--skip-tests` is the recorded exception). The engine pushes (docker-py, the login passed
per push as auth_config, never stored); the registry is then asked directly which digest
each tag names, and a publish record is written next to the test results.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property, partial
from pathlib import Path
from typing import Any, TypeVar

from .. import __version__
from ..engine.base import ContainerEngine, EngineError, EngineUnreachable, PushEvent
from ..engine.images import BuiltImage, find_built
from ..errors import JobError
from ..events import Emit, discard
from ..identity import (
    UNTESTED_SUFFIX,
    TagTooLong,
    declared_version,
    local_tag,
    publish_tags,
)
from ..matrix.loader import Matrix, Variant
from ..safety import (
    escape_control,
    json_dumps,
    redact,
    write_atomic,
)
from ..share import record as records
from ..verify.results import TestResult, result_path
from .events import PushNote
from .gate import Evidence, first_problem
from .registry import Credentials, RegistryError, Target, engine_treats_insecure, manifest_digest

log = logging.getLogger(__name__)
T = TypeVar("T")


# --- errors and retries ------------------------------------------------------------------


class PushError(JobError):
    """A push the engine (or registry) refused; `transient` failures are worth retrying."""

    def __init__(self, message: str, *, transient: bool = False, auth: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.auth = auth


_AUTH_SIGNS = ("unauthorized", "authentication required", "no basic auth credentials",
               "incorrect username or password", "denied", "forbidden", "401", "403")
_TRANSIENT_SIGNS = ("connection refused", "connection reset", "broken pipe", "eof",
                    "i/o timeout", "timeout", "timed out", "tls handshake", "temporarily",
                    "too many requests", "internal server error", "bad gateway",
                    "service unavailable", "gateway timeout", "no route to host",
                    "network is unreachable", "500", "502", "503", "504", "429")


def classify(message: str) -> PushError:
    """An engine push error message -> PushError with the right retry/auth flags."""
    low = message.lower()
    if any(re.search(rf"\b{re.escape(s)}\b", low) for s in _AUTH_SIGNS):
        return PushError(message, auth=True)
    if any(re.search(rf"\b{re.escape(s)}\b", low) for s in _TRANSIENT_SIGNS):
        return PushError(message, transient=True)
    return PushError(message)


def with_retries(action: Callable[[], T], *, retries: int, base_delay: float = 2.0,
                 max_delay: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 on_retry: Callable[[int, float, Exception], None] | None = None) -> T:
    """Run `action`; on a transient error wait (doubling from base_delay) and try again,
    at most `retries` more times. Anything else, or the last failure, is raised."""
    attempt = 0
    while True:
        try:
            return action()
        except (PushError, RegistryError) as exc:
            if not exc.transient:
                raise
            if attempt >= retries:
                raise type(exc)(f"{exc} (gave up after {attempt + 1} attempts)",
                                transient=True) from None
            delay = min(max_delay, base_delay * 2 ** attempt)
            attempt += 1
            if on_retry:
                on_retry(attempt, delay, exc)
            sleep(delay)


# --- the gate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What will be pushed for one variant, decided before anything is pushed."""

    built: BuiltImage
    image_name: str  # matrix.repository: the repository name without registry/namespace
    repository: str  # registry/namespace/image_name, as the engine tags and pushes it
    tags: tuple[str, ...]
    result: TestResult | None
    tests_skipped: bool

    @property
    def variant(self) -> Variant:
        return self.built.variant


def gate(built: BuiltImage, results_dir: Path, skip_tests: bool, allow_quick: bool = False,
         *, rendered_hash: str) -> TestResult | None:
    """The passing test result of this exact image, or a JobError naming the rule it breaks
    and the test to run. The rules are publish/gate.py's whitelist; `rendered_hash` is the
    inputs hash of the variant as the matrix declares it now.

    Only a full run counts, unless allow_quick lets a --quick (or --cases) run stand in when
    there is no full one. With skip_tests, whatever result exists is returned (for the record)
    and nothing is refused; an unreadable result is still an error (it would go into the
    record)."""
    name = built.variant.name
    path = result_path(results_dir, name)
    # Read without the variant check: the gate's same-variant rule makes it, by name.
    result = TestResult.load_path(path, name, check_variant=False)
    partial = next((s for s in ("quick", "subset") if result_path(results_dir, name, s).exists()),
                   None)
    if result is None and (allow_quick or skip_tests) and partial:
        path = result_path(results_dir, name, partial)
        result = TestResult.load_path(path, name, check_variant=False)
    if skip_tests:
        return result
    evidence = Evidence(built.variant, built, rendered_hash, result, path, partial, allow_quick)
    broken = first_problem(evidence)
    if broken is not None:
        rule, problem = broken
        raise JobError(escape_control(f"{name}: not publishing: {problem} [gate rule {rule}]; "
                                      f"run `imagefactory test {name}` after fixing that"))
    return result


def plan(engine: ContainerEngine, matrix: Matrix, variant: Variant, target: Target,
         results_dir: Path, skip_tests: bool, allow_quick: bool = False, *,
         rendered_hash: str) -> Plan:
    built = find_built(engine, matrix, variant)
    if built is None:
        raise JobError(f"{variant.name}: no image {local_tag(matrix, variant)} in the "
                       f"engine; run `imagefactory build {variant.name}` and "
                       f"`imagefactory test {variant.name}` first")
    if not built.inputs_hash:
        raise JobError(f"{variant.name}: image {built.short_id} has no inputs-hash label (not "
                       f"built by imagefactory); run `imagefactory build {variant.name}`")
    result = gate(built, results_dir, skip_tests, allow_quick, rendered_hash=rendered_hash)
    try:
        tags = publish_tags(variant, built.inputs_hash, untested=skip_tests,
                            torch=result.torch if result else None,
                            rocm=result.rocm if result else None)
    except TagTooLong as exc:
        raise JobError(escape_control(f"{variant.name}: not publishing: {exc} [gate rule "
                                      "tag-fits]")) from None
    return Plan(built, matrix.repository, target.repository(matrix.repository), tags,
                result, skip_tests)


def shared_tags(plans: Iterable[Plan]) -> list[str]:
    """One line per repository:tag that two of `plans` would both push (gate rule
    tags-unique): the second push would silently move the first variant's tag."""
    owner: dict[str, str] = {}
    out = []
    for p in plans:
        for tag in p.tags:
            ref = f"{p.repository}:{tag}"
            if ref in owner and owner[ref] != p.variant.name:
                out.append(f"{p.variant.name}: not publishing: {ref} is also the tag of "
                           f"{owner[ref]} [gate rule tags-unique]")
            owner.setdefault(ref, p.variant.name)
    return out


# --- pushing -----------------------------------------------------------------------------


@dataclass
class TagPush:
    """What one `push repo:tag` did, from the engine's progress stream."""

    tag: str
    digest: str = ""
    layers: dict[str, str] = field(default_factory=dict)  # layer id -> last status

    @property
    def uploaded(self) -> int:
        return sum(1 for s in self.layers.values() if s == "Pushed")

    @property
    def reused(self) -> int:
        return sum(1 for s in self.layers.values()
                   if s == "Layer already exists" or s.startswith("Mounted from"))


Chunk = PushEvent


def push_tag(engine: ContainerEngine, repository: str, tag: str,
             auth: dict[str, str] | None, on_chunk: Callable[[Chunk], None] | None = None
             ) -> TagPush:
    """Push one tag; every event is checked, since the engine reports most failures inside
    an HTTP 200 stream."""
    out = TagPush(tag)
    log.debug("push %s:%s (%s)", repository, tag, "with a login" if auth else "no login")
    try:
        for event in engine.push(repository, tag, auth):
            if on_chunk:
                on_chunk(event)
            if event.error is not None:
                raise classify(event.error)
            if event.layer and event.status and not event.progress:
                out.layers[event.layer] = event.status
            if event.digest:
                out.digest = event.digest
    except EngineUnreachable as exc:
        # The engine, not the registry, went away: retrying the registry will not help.
        raise PushError(f"lost the connection to the Docker engine during the push: "
                        f"{exc.reason}") from None
    except EngineError as exc:
        raise classify(exc.reason) from None
    if not out.digest:
        raise PushError(f"the engine finished pushing {repository}:{tag} without reporting "
                        "a digest")
    return out


@dataclass(frozen=True)
class Published:
    plan: Plan
    digest: str
    pushes: tuple[TagPush, ...]
    record_path: Path

    @property
    def reference(self) -> str:
        return f"{self.plan.repository}@{self.digest}"


class Publisher:
    """Pushes planned variants to one target with one login; emit() gets its progress
    (PushNote events)."""

    def __init__(self, engine: ContainerEngine, target: Target, creds: Credentials | None,
                 results_dir: Path, *, retries: int = 3, base_delay: float = 2.0,
                 emit: Emit = discard,
                 on_chunk: Callable[[Chunk], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.engine = engine
        self.target = target
        self.creds = creds
        self.results_dir = results_dir
        self.retries = retries
        self.base_delay = base_delay
        self.emit = emit
        self.on_chunk = on_chunk
        self.sleep = sleep

    def echo(self, text: str) -> None:
        self.emit(PushNote(text))

    def _secrets(self) -> tuple[str, ...]:
        return (self.creds.password,) if self.creds else ()

    def _watch(self, ref: str) -> Callable[[Chunk], None]:
        """Per-chunk hook: the engine retries failed layer uploads on its own (about a minute
        in all), so say once that it is doing so instead of going quiet."""
        told = False

        def on_chunk(chunk: Chunk) -> None:
            nonlocal told
            if self.on_chunk:
                self.on_chunk(chunk)
            if not told and chunk.status.startswith("Retrying in"):
                told = True
                self.echo(f"push {ref}: a layer upload failed; the engine is retrying it")

        return on_chunk

    def _retrying(self, action: Callable[[], T], what: str) -> T:
        def on_retry(attempt: int, delay: float, exc: Exception) -> None:
            self.echo(f"{what}: {redact(str(exc), self._secrets())}; retry {attempt}/"
                      f"{self.retries} in {delay:g}s")

        return with_retries(action, retries=self.retries, base_delay=self.base_delay,
                            sleep=self.sleep, on_retry=on_retry)

    def publish(self, plan: Plan) -> Published:
        added: list[str] = []  # registry-named tags this push created in the engine
        try:
            return self._publish(plan, added)
        except BaseException as exc:
            # A failed (or interrupted) push leaves neither its local registry tags nor a
            # publish record that reads as the current state.
            self._untag(added)
            self._mark_stale(plan, exc)
            if not isinstance(exc, (PushError, RegistryError)):
                raise
            message = redact(str(exc), self._secrets())
            where = f"{plan.variant.name} -> {plan.repository}"
            if isinstance(exc, PushError) and exc.auth:
                how = (f"the registry rejected user {self.creds.username} (login from "
                       f"{self.creds.source})" if self.creds else
                       f"no login for {self.target.host} was given; pass --username USER "
                       "--password-stdin")
                raise JobError(f"{where}: authentication failed ({message}): {how}"
                               ) from None
            raise JobError(f"{where}: push failed: {message}") from None

    def _untag(self, refs: list[str]) -> None:
        for ref in refs:
            try:
                self.engine.remove_image(ref, prune=False)
            except EngineError as exc:  # the push already failed; say it, don't mask it
                self.echo(f"could not remove the local tag {ref}: {exc}")

    def _mark_stale(self, plan: Plan, exc: BaseException) -> None:
        """Keep the last record (what the registry may still serve) but say it is not the
        outcome of this push."""
        path = records.record_path(self.results_dir, plan.variant.name)
        try:  # the strict reader (share/record.py); one that does not read names nothing
            last = records.load(path)
        except JobError:
            return
        if last is None:
            return
        record = dict(last.data)
        record["stale"] = True
        record["stale_since"] = _now()
        record["stale_reason"] = (f"a later push of image {plan.built.short_id} failed: "
                                  f"{redact(str(exc), self._secrets()) or type(exc).__name__}")
        _write_json(path, record)

    def _tag_exists(self, ref: str) -> bool:
        return self.engine.inspect_image(ref) is not None

    def _publish(self, plan: Plan, added: list[str]) -> Published:
        auth = self.creds.auth_config() if self.creds else None
        pushes: list[TagPush] = []
        for tag in plan.tags:
            ref = f"{plan.repository}:{tag}"
            if not self._tag_exists(ref):
                added.append(ref)
            try:
                self.engine.tag(plan.built.image_id, plan.repository, tag)
            except EngineError as exc:
                raise PushError(str(exc)) from None
            pushed = self._retrying(partial(push_tag, self.engine, plan.repository, tag, auth,
                                            self._watch(ref)), f"push {ref}")
            self.echo(f"pushed {ref} ({pushed.uploaded} layer(s) uploaded, {pushed.reused} "
                      "already in the registry)")
            pushes.append(pushed)
        digests = {p.digest for p in pushes}
        if len(digests) != 1:
            raise PushError(f"the tags of one image got different digests: {sorted(digests)}")
        digest = digests.pop()
        self.verify(plan, digest)
        record = self.write_record(plan, digest, pushes)
        return Published(plan, digest, tuple(pushes), record)

    def verify(self, plan: Plan, digest: str) -> None:
        """Ask the registry which digest each tag names; it must be the one pushed."""
        for tag in plan.tags:
            served = self._retrying(partial(self.served_digest, plan, tag),
                                    f"verify {plan.repository}:{tag}")
            if served != digest:
                raise PushError(f"the registry serves {served} for {plan.repository}:{tag}, "
                                f"but the engine pushed {digest}")

    def served_digest(self, plan: Plan, tag: str) -> str:
        if self.creds and self.creds.identity_token:
            return self._engine_digest(plan, tag)
        return manifest_digest(self.target.api_base(self._insecure),
                               self.target.api_name(plan.image_name),
                               tag, self.creds)

    @cached_property
    def _insecure(self) -> bool:
        """Plain HTTP where the engine pushed over plain HTTP (loopback, insecure-registries)."""
        return engine_treats_insecure(self.target, self.engine.registry_config())

    def _engine_digest(self, plan: Plan, tag: str) -> str:
        assert self.creds is not None
        try:
            return self.engine.distribution_digest(f"{plan.repository}:{tag}",
                                                   self.creds.auth_config())
        except EngineError as exc:
            raise classify(exc.reason) from None

    def write_record(self, plan: Plan, digest: str, pushes: list[TagPush]) -> Path:
        """<results>/<variant>.publish.json: what was published, from which tested image."""
        record = {
            "variant": plan.variant.name,
            "repository": plan.repository,
            "registry": self.target.host,
            "tags": list(plan.tags),
            "digest": digest,
            "reference": f"{plan.repository}@{digest}",
            "image_id": plan.built.image_id,
            "inputs_hash": plan.built.inputs_hash,
            "image_version": declared_version(
                plan.variant, plan.result.torch if plan.result else None,
                plan.result.rocm if plan.result else None),
            "torch_declared": plan.variant.torch.version,
            "torch_reported": plan.result.torch if plan.result else None,
            "rocm_declared": plan.variant.rocm,
            "rocm_reported": plan.result.rocm if plan.result else None,
            "tests_skipped": plan.tests_skipped,
            "test": summary(plan.result),
            "layers": {p.tag: {"uploaded": p.uploaded, "reused": p.reused} for p in pushes},
            "pushed_at": _now(),
            "imagefactory": __version__,
        }
        if plan.tests_skipped:
            record["note"] = ("published with --skip-tests: this image id had no passing "
                              "test result; tag "
                              f"{plan.variant.name}-{UNTESTED_SUFFIX} marks it in the registry")
        return _write_json(records.record_path(self.results_dir, plan.variant.name), record)


def summary(result: TestResult | None) -> dict[str, Any] | None:
    """The part of a test result a reader of the publish record needs."""
    if result is None:
        return None
    conv: dict[str, int] = dict(result.conv_summary)
    if not conv:
        for case in result.conv:
            conv[case.status] = conv.get(case.status, 0) + 1
    return {
        "passed": result.passed,
        "image_id": result.image_id,
        "host": result.host,
        "profile": result.profile,
        "device": result.device,
        "quick": result.quick,
        "checks": {"total": len(result.checks), "failed": len(result.failed_checks)},
        "conv": conv,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    return write_atomic(path, json_dumps(data, indent=2) + "\n", error=JobError)
