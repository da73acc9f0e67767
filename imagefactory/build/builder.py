"""One variant's build on one engine: skip decision, streamed build, tag on success.

The image is built without a tag and tagged `<repository>:<variant>` only once the engine
reports success, so a failed or interrupted build never moves a tag. The engine reports a
failed build inside its event stream (an ERROR event), not as an exception; `BuildStream`
follows the stream and keeps the failing step and the last lines for the failure report.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from ..engine.base import (
    ERROR,
    IMAGE,
    OUTPUT,
    STEP,
    BuildEvent,
    BuildKit,
    ContainerEngine,
    EngineError,
    ImageInfo,
    Step,
)
from ..errors import ImagefactoryError
from ..events import Emit
from ..identity import (
    ARGS_LABEL,
    BASE_LABEL,
    HASH_LABEL,
    TARGET_LABEL,
    build_args_digest,
    local_tag,
)
from ..matrix.loader import Matrix, Variant
from ..render.renderer import BuildContext
from ..safety import clean
from .events import BuildFinished, BuildLine, BuildStarted, BuildStep

__all__ = ["BASE_LABEL", "BuildOptions", "BuildResult", "Builder", "Step"]
log = logging.getLogger(__name__)
REVISION_ARG = "IMAGEFACTORY_REVISION"
TAIL_LINES = 15

_SECRET_ARG = re.compile(r"(?i)token|secret|passw|key|auth|cred")

# Outcomes: built and skipped leave a usable image; the others leave the tag as it was.
BUILT, SKIPPED, FAILED, BLOCKED, CANCELLED = "built", "skipped", "failed", "blocked", "cancelled"
USABLE = frozenset({BUILT, SKIPPED})


# Build clients: docker-py's classic builder, or BuildKit through `docker buildx build`.
# AUTO: buildx where the plugin answers, else classic (decided at the first real build, so a
# no-change build never runs the docker CLI).
CLASSIC, BUILDX, AUTO = "classic", "buildx", "auto"


@dataclass(frozen=True)
class BuildResult:
    """What became of one variant on one engine."""

    variant: str
    engine: str
    status: str
    image_id: str | None = None
    tag: str | None = None
    duration: float = 0.0
    log_path: Path | None = None
    step: Step | None = None  # the failing step, for failures
    error: str | None = None
    log_tail: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in USABLE

    @property
    def short_id(self) -> str:
        return (self.image_id or "").removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class BuildOptions:
    log_dir: Path
    force: frozenset[str] = frozenset()  # variants to rebuild even when up to date
    no_cache: bool = False
    pull: bool = False
    # git HEAD of the project, passed as IMAGEFACTORY_REVISION; a callable is asked only when
    # something is built (a no-change build need not run git).
    revision: str | Callable[[], str | None] | None = None
    target: str | None = None  # build up to this Dockerfile stage (docker build --target)
    build_args: Mapping[str, str] = field(default_factory=dict)  # docker build --build-arg
    # the variants target and build_args apply to (None: all); their bases are built whole
    targeted: frozenset[str] | None = None
    builder: str = CLASSIC  # CLASSIC, BUILDX or AUTO
    buildx_builder: str | None = None  # a named buildx builder; None: the engine's BuildKit
    cache_from: tuple[str, ...] = ()  # buildx --cache-from specs (BuildKit only)
    cache_to: tuple[str, ...] = ()  # buildx --cache-to specs


class BuildStream:
    """Follows an engine's build events: lines, steps, the image id, the error."""

    def __init__(self, on_line: Callable[[str], None] | None = None,
                 on_step: Callable[[Step], None] | None = None) -> None:
        self._on_line = on_line
        self._on_step = on_step
        self._partial = ""
        self.step: Step | None = None
        self.image_id: str | None = None
        self.error: str | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, event: BuildEvent) -> None:
        if event.kind == OUTPUT:
            self._text(event.text)
        elif event.kind == STEP:
            if event.step is not None:
                self.step = event.step
                if self._on_step:
                    self._on_step(self.step)
        elif event.kind == IMAGE:
            self.image_id = event.text
        elif event.kind == ERROR:
            self.close()
            self.error = event.text
            # BuildKit runs steps side by side: the failing one, not the last started.
            self.step = event.step or self.step
            self._emit(f"ERROR: {self.error}")
        else:
            self._emit(event.text)

    def close(self) -> None:
        if self._partial:
            self._emit(self._partial)
            self._partial = ""

    def _text(self, text: str) -> None:
        text = self._partial + text
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._emit(line)

    def _emit(self, line: str) -> None:
        line = line.rstrip().rsplit("\r", 1)[-1]  # a progress bar's last redraw
        if not line:
            return
        self.tail.append(line)
        if self._on_line:
            self._on_line(line)


class _Failed(Exception):
    """A failure before the build whose message is complete as it is."""


def split_tag(tag: str) -> tuple[str, str]:
    repository, _, name = tag.rpartition(":")
    return repository, name


class Builder:
    """Builds variants of one matrix on a set of engines.

    `engines`: per engine name, the engine (engine/base.py) to build on; `emit` gets the
    progress (build/events.py), from the worker threads.
    """

    def __init__(self, matrix: Matrix, contexts: Mapping[str, BuildContext],
                 engines: Mapping[str, ContainerEngine], options: BuildOptions,
                 emit: Emit, cancel: threading.Event | None = None) -> None:
        self.matrix = matrix
        self.contexts = contexts
        self.engines = dict(engines)
        self.options = options
        self.emit = emit
        self.cancel = cancel or threading.Event()
        self._revision_lock = threading.Lock()
        self._revision: str | None = None
        self._logs: dict[tuple[str, str], Path] = {}  # the log of a build in progress
        self._client_kind: str | None = None
        self._args_key: bytes | None = None

    def shown(self, text: str) -> str:
        """Engine text as it may be logged and printed: credentials (and the values of
        build args named like secrets) redacted, terminal controls and bidi escaped."""
        secrets = [v for k, v in self.options.build_args.items() if _SECRET_ARG.search(k)]
        return clean(text, secrets)

    def args_key(self) -> bytes:
        """The key of the build-args label: this host's salt, asked only with build args."""
        if not self.options.build_args:
            return b""
        from ..share.hostid import salt

        with self._revision_lock:
            if self._args_key is None:
                self._args_key = bytes.fromhex(salt())
            return self._args_key

    def revision(self) -> str | None:
        """BuildOptions.revision, a callable one asked once."""
        if not callable(self.options.revision):
            return self.options.revision
        with self._revision_lock:
            self._revision = self._revision or self.options.revision()
            return self._revision

    def client_kind(self) -> str:
        """CLASSIC or BUILDX: BuildOptions.builder, AUTO resolved once (on the first
        engine: every engine of a run is driven by the same docker CLI)."""
        if self.options.builder == CLASSIC:
            return CLASSIC
        with self._revision_lock:
            if self._client_kind is None:
                version = next(iter(self.engines.values())).buildkit_version()
                if version is None and self.options.builder == BUILDX:
                    raise _Failed("--builder buildx: `docker buildx version` does not answer; "
                                  "install the docker buildx plugin (package docker-buildx "
                                  "or docker-buildx-plugin)")
                self._client_kind = BUILDX if version else CLASSIC
                log.info("builder: %s", f"buildx {version}" if version else
                            "classic (no docker buildx plugin found)")
            return self._client_kind

    def tag(self, variant: Variant) -> str:
        """Where a successful build goes; a --target stage of a named variant gets its own
        tag, its bases (built whole, for it to build FROM) their usual one."""
        target = self.options.target if variant.name in self.targeted else None
        return local_tag(self.matrix, variant, target)

    @property
    def targeted(self) -> frozenset[str]:
        """Variants that get --target and --build-arg: those named, not their bases."""
        if self.options.targeted is not None:
            return self.options.targeted
        return frozenset(self.contexts)

    def base_ref(self, variant: Variant) -> str:
        """The image the final stage is built FROM (what render puts in its FROM line)."""
        if variant.base_variant:
            return local_tag(self.matrix, self.matrix.get(variant.base_variant))
        assert variant.base is not None  # config guarantees one of the two
        return variant.base.ref

    def _inspect(self, engine: str, ref: str) -> ImageInfo | None:
        return self.engines[engine].inspect_image(ref)

    def build_labels(self, variant: Variant, base_id: str | None) -> dict[str, str]:
        """Labels the engine adds at build time (the classic builder adds a step for each,
        so only those the template cannot write)."""
        labels = {}
        if base_id:
            labels[BASE_LABEL] = base_id
        if variant.name in self.targeted:
            digest = build_args_digest(self.options.build_args, self.args_key())
            if digest:
                labels[ARGS_LABEL] = digest
            if self.options.target:
                # The template's LABELs are on its final stage; an earlier one needs these.
                labels[TARGET_LABEL] = self.options.target
                labels[HASH_LABEL] = self.contexts[variant.name].inputs_hash
        return labels

    def current(self, variant: Variant, engine: str, base_id: str | None) -> str | None:
        """The id of the variant's tagged image if it is up to date, else None.

        Up to date: same inputs hash, and built FROM the base image the engine has now
        (when the base is absent, e.g. an external base not pulled, only the hash counts).
        """
        image = self._inspect(engine, self.tag(variant))
        if image is None:
            return None
        want = {HASH_LABEL: self.contexts[variant.name].inputs_hash,
                **self.build_labels(variant, base_id)}
        if any(image.labels.get(k) != want.get(k) for k in (HASH_LABEL, ARGS_LABEL,
                                                             TARGET_LABEL)):
            return None
        if base_id is not None and image.labels.get(BASE_LABEL) != base_id:
            return None
        return image.id

    def probe(self, variant: Variant, engine: str) -> bool:
        """Whether `engine` already holds an up-to-date image of a variant with an external
        base (the scheduler then builds, i.e. skips, it there)."""
        if variant.name in self.options.force or variant.base_variant:
            return False
        try:
            base = self._inspect(engine, self.base_ref(variant))
            return self.current(variant, engine, base.id if base else None) is not None
        except ImagefactoryError:
            return False  # the build on that engine, if chosen, reports the error

    def run(self, variant: Variant, engine: str, base: BuildResult | None) -> BuildResult:
        """Skip or build `variant` on `engine`; `base`: the result of its base variant."""
        tag = self.tag(variant)
        try:
            if variant.base_variant:
                base_id = base.image_id if base else None
            else:
                if self.options.pull:
                    self._pull(engine, self.base_ref(variant))
                found = self._inspect(engine, self.base_ref(variant))
                base_id = found.id if found else None
            if variant.name not in self.options.force:
                current = self.current(variant, engine, base_id)
                if current:
                    result = BuildResult(variant.name, engine, SKIPPED, current, tag)
                    self.emit(BuildFinished(result))
                    return result
            if self.client_kind() == CLASSIC:
                self._refuse_buildkit_syntax(variant)
            return self._build(variant, engine, tag, base_id)
        except (_Failed, ImagefactoryError) as exc:  # e.g. the engine could not be reached
            error = self.shown(str(exc))
            log.debug("%s on %s: %s", variant.name, engine, error, exc_info=True)
            log_path = self._log_error(variant, engine, error, None)
        except Exception as exc:  # a bug must fail this variant, not hang the others
            error = self.shown(f"{type(exc).__name__}: {_one_line(exc)}")
            log.debug("%s on %s: unexpected error", variant.name, engine, exc_info=True)
            log_path = self._log_error(variant, engine, error, exc)
            error += f" (a bug; traceback in {log_path})" if log_path else " (a bug)"
        result = BuildResult(variant.name, engine, FAILED, tag=tag, error=error,
                             log_path=log_path)
        self.emit(BuildFinished(result))
        return result

    def _refuse_buildkit_syntax(self, variant: Variant) -> None:
        """The classic builder would fail at the first BuildKit-only line after building
        everything above it (hours for a source variant): refuse before starting."""
        from ..render.dockerfile import buildkit_syntax

        found = buildkit_syntax(self.contexts[variant.name].dockerfile)
        if found:
            line, what = found
            raise _Failed(f"needs BuildKit: its Dockerfile line {line} uses {what}, which the "
                          "classic builder cannot build; install the docker buildx plugin "
                          "(package docker-buildx or docker-buildx-plugin) and build with "
                          "--builder buildx")

    def _new_log(self, variant: Variant) -> Path:
        self.options.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S.%f")
        return self.options.log_dir / f"{variant.name}-{stamp}.log"

    def _log_error(self, variant: Variant, engine: str, error: str,
                   exc: BaseException | None) -> Path | None:
        """Append the full error (with the traceback of an unexpected one) to the variant's
        build log, made for it if the build never started; its path."""
        path = self._logs.pop((variant.name, engine), None)
        try:
            path = path or self._new_log(variant)
            with path.open("a", encoding="utf-8") as f:
                f.write(f"# imagefactory: {variant.name} on {engine} failed: {error}\n")
                if exc is not None:
                    f.write("".join(traceback.format_exception(type(exc), exc,
                                                               exc.__traceback__)))
        except OSError:
            return None
        return path

    def _pull(self, engine: str, ref: str) -> None:
        repository, name = split_tag(ref.split("@", 1)[0])
        try:
            for _ in self.engines[engine].pull(repository, name):
                pass
        except ImagefactoryError as exc:
            reason = exc.reason if isinstance(exc, EngineError) else str(exc)
            raise _Failed(f"--pull: cannot pull {ref} into {engine}: {reason}") from None

    def _build(self, variant: Variant, engine: str, tag: str, base_id: str | None
               ) -> BuildResult:
        from ..render.context import context_tar  # tarfile: only when something is built

        ctx = self.contexts[variant.name]
        data = context_tar(ctx)
        log_path = self._new_log(variant)
        self._logs[(variant.name, engine)] = log_path
        self.emit(BuildStarted(variant.name, engine, len(data), len(ctx.files) + 1, log_path))
        started = time.monotonic()
        labels = self.build_labels(variant, base_id)
        revision = self.revision()
        buildargs = dict(self.options.build_args) if variant.name in self.targeted else {}
        if revision:
            buildargs[REVISION_ARG] = revision
        target = self.options.target if variant.name in self.targeted else None
        with log_path.open("w", encoding="utf-8") as out:
            out.write(f"# imagefactory build of {variant.name} ({tag}) on {engine}, "
                      f"{self.client_kind()} builder\n"
                      f"# inputs hash {ctx.inputs_hash}, base {self.base_ref(variant)} "
                      f"{base_id or '(not in the engine)'}, context {len(data)} bytes"
                      + (f", target {target}" if target else "") + "\n")

            def on_line(text: str) -> None:
                text = self.shown(text)  # the log, the progress view and the tail alike
                out.write(f"{datetime.now():%H:%M:%S} {text}\n")
                out.flush()
                self.emit(BuildLine(variant.name, text))

            result = self._stream(variant, engine, tag, started, log_path, out, data,
                                  labels, buildargs, target, on_line)
        self._logs.pop((variant.name, engine), None)
        self.emit(BuildFinished(result))
        return result

    def _stream(self, variant: Variant, engine: str, tag: str, started: float,
                log_path: Path, out: TextIO, data: bytes, labels: dict[str, str],
                buildargs: dict[str, str], target: str | None,
                on_line: Callable[[str], None]) -> BuildResult:
        """The build through the engine, with its classic builder or with BuildKit."""
        stream = BuildStream(on_line, lambda s: self.emit(BuildStep(variant.name, self._step(s))))
        buildkit = (BuildKit(self.options.buildx_builder, self.options.cache_from,
                             self.options.cache_to)
                    if self.client_kind() == BUILDX else None)
        try:
            for event in self.engines[engine].build(
                    data, target=target, build_args=buildargs, labels=labels,
                    no_cache=self.options.no_cache,
                    # Only external bases can be pulled; a base variant is in this engine.
                    pull=self.options.pull and not variant.base_variant,
                    buildkit=buildkit, cancel=self.cancel):
                stream.feed(event)  # after an error the engine ends the stream itself
        except ImagefactoryError as exc:
            stream.feed(BuildEvent(ERROR, str(exc)))
        stream.close()
        return self._finish(variant, engine, tag, started, log_path, out, stream.image_id,
                            stream.error, stream.step, tuple(stream.tail))

    def _finish(self, variant: Variant, engine: str, tag: str, started: float,
                log_path: Path, log: TextIO, image_id: str | None, error: str | None,
                step: Step | None, tail: tuple[str, ...]) -> BuildResult:
        """Tag a successful build (unless interrupted); either client's outcome."""
        duration = time.monotonic() - started
        error = self.shown(error) if error else error
        step = self._step(step) if step else None
        tail = tuple(self.shown(line) for line in tail)
        if error or not image_id:
            if self.cancel.is_set():
                log.write("# interrupted: not tagged\n")
                return BuildResult(variant.name, engine, CANCELLED, None, tag, duration,
                                   log_path)
            return BuildResult(variant.name, engine, FAILED, tag=tag, duration=duration,
                               log_path=log_path, step=step,
                               error=error or "the engine reported no image id",
                               log_tail=tail)
        if self.cancel.is_set():
            log.write("# interrupted: not tagged\n")
            self._discard(engine, image_id, log)
            return BuildResult(variant.name, engine, CANCELLED, None, tag, duration,
                               log_path)
        repository, name = split_tag(tag)
        self.engines[engine].tag(image_id, repository, name)
        log.write(f"# tagged {tag} -> {image_id}\n")
        return BuildResult(variant.name, engine, BUILT, image_id, tag, duration, log_path)

    def _step(self, step: Step) -> Step:
        return Step(step.number, step.total, self.shown(step.instruction),
                    self.shown(step.stage) if step.stage else None)

    def _discard(self, engine: str, image_id: str, log: TextIO) -> None:
        """Remove the image an interrupted build finished but must not tag, so nothing of it
        is left to take for a result. Only while untagged (an identical image may already
        carry a tag), and not its parent layers: those are the layer cache the next build
        reuses."""
        try:
            found = self.engines[engine].inspect_image(image_id)
            if found is not None and not found.tags:
                self.engines[engine].remove_image(image_id, prune=False)
                log.write(f"# removed the untagged image {found.short_id}\n")
        except ImagefactoryError as exc:  # cleanup must not turn Ctrl-C into a failure
            log.write(f"# could not remove the untagged image {image_id}: {exc}\n")

def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]

