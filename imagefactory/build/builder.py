"""One variant's build on one engine: skip decision, streamed build, tag on success.

The image is built without a tag and tagged `<repository>:<variant>` only once the engine
reports success, so a failed or interrupted build never moves a tag. docker-py does not raise
for errors reported inside the build stream (chunks with "error"/"errorDetail"); `BuildStream`
catches them.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..engine.docker_engine import Engine, is_engine_error
from ..engine.images import local_tag
from ..errors import ImagefactoryError
from ..matrix.loader import Matrix, Variant
from ..render.renderer import HASH_LABEL, BuildContext

if TYPE_CHECKING:
    import docker

logger = logging.getLogger(__name__)

# The id of the image the variant was built FROM: a rebuilt base (another variant, or a
# re-imported external base) changes it, so dependants rebuild although their inputs did not.
BASE_LABEL = "io.imagefactory.base-image-id"
TARGET_LABEL = "io.imagefactory.target"  # the stage a --target build stopped at
BUILD_ARGS_LABEL = "io.imagefactory.build-args"  # the --build-arg values, as JSON
REVISION_ARG = "IMAGEFACTORY_REVISION"
TAIL_LINES = 15

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_BUILT = re.compile(r"^Successfully built ([0-9a-f]{12,64})$")

# Outcomes: built and skipped leave a usable image; the others leave the tag as it was.
BUILT, SKIPPED, FAILED, BLOCKED, CANCELLED = "built", "skipped", "failed", "blocked", "cancelled"
USABLE = frozenset({BUILT, SKIPPED})


# Build clients: docker-py's classic builder, or BuildKit through `docker buildx build`.
# AUTO: buildx where the plugin answers, else classic (decided at the first real build, so a
# no-change build never runs the docker CLI).
CLASSIC, BUILDX, AUTO = "classic", "buildx", "auto"


@dataclass(frozen=True)
class Step:
    number: int
    total: int
    instruction: str
    stage: str | None = None  # BuildKit numbers steps per stage

    def __str__(self) -> str:
        stage = f" of stage {self.stage}" if self.stage else ""
        return f"step {self.number}/{self.total}{stage} ({self.instruction})"


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


class Reporter(Protocol):
    """Receives a build's progress; called from worker threads."""

    def started(self, variant: str, engine: str, context_bytes: int, files: int,
                log_path: Path) -> None: ...

    def step(self, variant: str, step: Step) -> None: ...

    def line(self, variant: str, text: str) -> None: ...

    def finished(self, result: BuildResult) -> None: ...


@dataclass(frozen=True)
class BuildOptions:
    log_dir: Path
    force: frozenset[str] = frozenset()  # variants to rebuild even when up to date
    no_cache: bool = False
    pull: bool = False
    # git HEAD of the project, passed as IMAGEFACTORY_REVISION; a callable is asked only when
    # something is built (a no-change build need not run git).
    revision: str | Callable[[], str | None] | None = None
    builder: str = CLASSIC  # CLASSIC, BUILDX or AUTO
    buildx_builder: str | None = None  # a named buildx builder; None: the engine's BuildKit
    cache_from: tuple[str, ...] = ()  # buildx --cache-from specs (BuildKit only)
    cache_to: tuple[str, ...] = ()  # buildx --cache-to specs
    # `docker build --target`: build up to this stage, tagged <repository>:<variant>-<stage>
    target: str | None = None
    # `docker build --build-arg`: on top of IMAGEFACTORY_REVISION; recorded in a label so an
    # image built with other values is not taken as up to date
    build_args: Mapping[str, str] = field(default_factory=dict)

    def build_args_label(self) -> str:
        return json.dumps(dict(sorted(self.build_args.items())), separators=(",", ":"))


class BuildStream:
    """Parses docker-py's decoded build stream: lines, steps, the image id, the error."""

    def __init__(self, on_line: Any = None, on_step: Any = None) -> None:
        self._on_line = on_line
        self._on_step = on_step
        self._partial = ""
        self.step: Step | None = None
        self.image_id: str | None = None
        self.short_id: str | None = None
        self.error: str | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if "stream" in chunk:
            self._text(str(chunk["stream"]))
        elif "status" in chunk and "progress" not in chunk:
            # Pull progress: keep the state changes, not every progress-bar redraw.
            ident = f"{chunk['id']}: " if chunk.get("id") else ""
            self._emit(f"{ident}{chunk['status']}")
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            self.image_id = str(aux["ID"])
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = detail.get("message") if isinstance(detail, dict) else None
            self.error = str(message or chunk.get("error") or "unknown build error").strip()
            self._emit(f"ERROR: {self.error}")

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
        m = _STEP.match(line)
        if m:
            self.step = Step(int(m.group(1)), int(m.group(2)), m.group(3))
            if self._on_step:
                self._on_step(self.step)
        m = _BUILT.match(line)
        if m:
            self.short_id = m.group(1)
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

    `engines`: per engine name, an `Engine` (inspects without docker-py, connects it only to
    build) or a docker-py client.
    """

    def __init__(self, matrix: Matrix, contexts: Mapping[str, BuildContext],
                 engines: Mapping[str, Engine | docker.DockerClient], options: BuildOptions,
                 reporter: Reporter, cancel: threading.Event | None = None) -> None:
        self.matrix = matrix
        self.contexts = contexts
        self.engines = {name: e if isinstance(e, Engine) else Engine(name, client=e)
                        for name, e in engines.items()}
        self.options = options
        self.reporter = reporter
        self.cancel = cancel or threading.Event()
        self._revision_lock = threading.Lock()
        self._revision: str | None = None
        self._client_kind: str | None = None

    def revision(self) -> str | None:
        """BuildOptions.revision, a callable one asked once."""
        if not callable(self.options.revision):
            return self.options.revision
        with self._revision_lock:
            self._revision = self._revision or self.options.revision()
            return self._revision

    def client_kind(self) -> str:
        """CLASSIC or BUILDX: BuildOptions.builder, AUTO resolved once."""
        if self.options.builder == CLASSIC:
            return CLASSIC
        with self._revision_lock:
            if self._client_kind is None:
                from ..engine.buildx import buildx_version

                version = buildx_version()
                if version is None and self.options.builder == BUILDX:
                    raise _Failed("--builder buildx: `docker buildx version` does not answer; "
                                  "install the docker buildx plugin (package docker-buildx "
                                  "or docker-buildx-plugin)")
                self._client_kind = BUILDX if version else CLASSIC
                logger.info("builder: %s", f"buildx {version}" if version else
                            "classic (no docker buildx plugin found)")
            return self._client_kind

    def tag(self, variant: Variant) -> str:
        if self.options.target:
            return f"{local_tag(self.matrix, variant)}-{self.options.target}"
        return local_tag(self.matrix, variant)

    def base_ref(self, variant: Variant) -> str:
        """The image the final stage is built FROM (what render puts in its FROM line)."""
        if variant.base_variant:
            return local_tag(self.matrix, self.matrix.get(variant.base_variant))
        assert variant.base is not None  # config guarantees one of the two
        return variant.base.ref

    def _inspect(self, engine: str, ref: str) -> dict[str, Any] | None:
        return self.engines[engine].inspect_image(ref)

    def current(self, variant: Variant, engine: str, base_id: str | None) -> str | None:
        """The id of the variant's tagged image if it is up to date, else None.

        Up to date: same inputs hash, and built FROM the base image the engine has now
        (when the base is absent, e.g. an external base not pulled, only the hash counts).
        """
        image = self._inspect(engine, self.tag(variant))
        if image is None:
            return None
        labels = (image.get("Config") or {}).get("Labels") or {}
        if labels.get(HASH_LABEL) != self.contexts[variant.name].inputs_hash:
            return None
        if base_id is not None and labels.get(BASE_LABEL) != base_id:
            return None
        if labels.get(TARGET_LABEL, "") != (self.options.target or ""):
            return None
        if labels.get(BUILD_ARGS_LABEL, "{}") != self.options.build_args_label():
            return None
        return str(image["Id"])

    def probe(self, variant: Variant, engine: str) -> bool:
        """Whether `engine` already holds an up-to-date image of a variant with an external
        base (the scheduler then builds, i.e. skips, it there)."""
        if variant.name in self.options.force or variant.base_variant:
            return False
        try:
            base = self._inspect(engine, self.base_ref(variant))
            return self.current(variant, engine, base["Id"] if base else None) is not None
        except Exception as exc:
            if is_engine_error(exc):
                return False  # the build on that engine, if chosen, reports the error
            raise

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
                base_id = found["Id"] if found else None
            if variant.name not in self.options.force:
                current = self.current(variant, engine, base_id)
                if current:
                    result = BuildResult(variant.name, engine, SKIPPED, current, tag)
                    self.reporter.finished(result)
                    return result
            if self.client_kind() == CLASSIC:
                self._refuse_buildkit_syntax(variant)
            return self._build(variant, engine, tag, base_id)
        except (_Failed, ImagefactoryError) as exc:  # e.g. docker-py could not connect
            error = str(exc)
        except Exception as exc:  # a bug must fail this variant, not hang the others
            error = (f"engine {engine}: {_one_line(exc)}" if is_engine_error(exc)
                     else f"{type(exc).__name__}: {_one_line(exc)}")
        result = BuildResult(variant.name, engine, FAILED, tag=tag, error=error)
        self.reporter.finished(result)
        return result

    def _refuse_buildkit_syntax(self, variant: Variant) -> None:
        """The classic builder would fail at the first BuildKit-only line after building
        everything above it (hours for a source variant): refuse before starting."""
        from ..engine.buildx import buildkit_syntax

        found = buildkit_syntax(self.contexts[variant.name].dockerfile)
        if found:
            line, what = found
            raise _Failed(f"needs BuildKit: its Dockerfile line {line} uses {what}, which the "
                          "classic builder cannot build; install the docker buildx plugin "
                          "(package docker-buildx or docker-buildx-plugin) and build with "
                          "--builder buildx")

    def _pull(self, engine: str, ref: str) -> None:
        from docker.errors import DockerException
        from requests import RequestException

        repository, name = split_tag(ref.split("@", 1)[0])
        try:
            self.engines[engine].client.api.pull(repository, tag=name)
        except (DockerException, RequestException) as exc:
            raise _Failed(f"--pull: cannot pull {ref} into {engine}: {_one_line(exc)}"
                          ) from None

    def _build(self, variant: Variant, engine: str, tag: str, base_id: str | None
               ) -> BuildResult:
        from docker.errors import DockerException
        from requests import RequestException

        from ..render.context import context_tar  # tarfile: only when something is built

        ctx = self.contexts[variant.name]
        data = context_tar(ctx)
        self.options.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S.%f")
        log_path = self.options.log_dir / f"{variant.name}-{stamp}.log"
        self.reporter.started(variant.name, engine, len(data), len(ctx.files) + 1, log_path)
        started = time.monotonic()
        labels = {BASE_LABEL: base_id} if base_id else {}
        if self.options.target:
            labels[TARGET_LABEL] = self.options.target
        if self.options.build_args:
            labels[BUILD_ARGS_LABEL] = self.options.build_args_label()
        revision = self.revision()
        buildargs = {REVISION_ARG: revision} if revision else {}
        buildargs.update(self.options.build_args)
        with log_path.open("w", encoding="utf-8") as log:
            log.write(f"# imagefactory build of {variant.name} ({tag}) on {engine}, "
                      f"{self.client_kind()} builder\n"
                      f"# inputs hash {ctx.inputs_hash}, base {self.base_ref(variant)} "
                      f"{base_id or '(not in the engine)'}, context {len(data)} bytes\n")

            def on_line(text: str) -> None:
                log.write(f"{datetime.now():%H:%M:%S} {text}\n")
                log.flush()
                self.reporter.line(variant.name, text)

            if self.client_kind() == BUILDX:
                image_id, error, step, tail = self._buildx(variant, engine, data, labels,
                                                           buildargs, on_line)
                if image_id is None and error is None:
                    error = "the build was interrupted"
                result = self._finish(variant, engine, tag, started, log_path, log, image_id,
                                      error, step, tail)
                self.reporter.finished(result)
                return result
            stream = BuildStream(on_line, lambda s: self.reporter.step(variant.name, s))
            try:
                chunks = self.engines[engine].client.api.build(
                    fileobj=data, custom_context=True, rm=True, forcerm=True, decode=True,
                    nocache=self.options.no_cache,
                    # Only external bases can be pulled; a base variant lives in this engine.
                    pull=self.options.pull and not variant.base_variant,
                    labels=labels, buildargs=buildargs, target=self.options.target,
                    timeout=None,  # a compile step may print nothing for an hour
                )
                for chunk in chunks:
                    stream.feed(chunk)  # after an error the engine ends the stream itself
            except (DockerException, RequestException) as exc:
                stream.close()
                stream.feed({"error": f"engine {engine}: {_one_line(exc)}"})
            stream.close()
            image_id = stream.image_id
            if not stream.error and not image_id and stream.short_id:
                found = self._inspect(engine, stream.short_id)
                image_id = found["Id"] if found else None
            result = self._finish(variant, engine, tag, started, log_path, log, image_id,
                                  stream.error, stream.step, tuple(stream.tail))
        self.reporter.finished(result)
        return result

    def _finish(self, variant: Variant, engine: str, tag: str, started: float,
                log_path: Path, log: Any, image_id: str | None, error: str | None,
                step: Step | None, tail: tuple[str, ...]) -> BuildResult:
        """Tag a successful build (unless interrupted); either client's outcome."""
        duration = time.monotonic() - started
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
            return BuildResult(variant.name, engine, CANCELLED, image_id, tag, duration,
                               log_path)
        repository, name = split_tag(tag)
        self.engines[engine].client.api.tag(image_id, repository, name, force=True)
        log.write(f"# tagged {tag} -> {image_id}\n")
        return BuildResult(variant.name, engine, BUILT, image_id, tag, duration, log_path)

    def _buildx(self, variant: Variant, engine: str, data: bytes, labels: dict[str, str],
                buildargs: dict[str, str], on_line: Callable[[str], None]
                ) -> tuple[str | None, str | None, Step | None, tuple[str, ...]]:
        """The same build through `docker buildx build` (BuildKit); nothing is tagged."""
        from ..engine import buildx

        def on_step(number: int, total: int, instruction: str, stage: str | None) -> None:
            self.reporter.step(variant.name, Step(number, total, instruction, stage))

        outcome = buildx.build(
            buildx.BuildxRequest(
                data, labels=labels, build_args=buildargs, no_cache=self.options.no_cache,
                pull=self.options.pull and not variant.base_variant,
                # An engine given as a docker-py client has a name, not an address: buildx
                # then uses DOCKER_HOST / the docker context, as that client did.
                address=engine if "://" in engine else None,
                builder=self.options.buildx_builder, cache_from=self.options.cache_from,
                cache_to=self.options.cache_to, target=self.options.target),
            on_line, on_step, self.cancel)
        step = Step(*outcome.step) if outcome.step else None
        if outcome.image_id and not outcome.error:
            # buildx loaded the image into the engine: make sure it is the one we tag.
            found = self._inspect(engine, outcome.image_id)
            if found is None:
                return None, (f"buildx reported image {outcome.image_id}, which engine "
                              f"{engine} does not have (a builder that does not load into "
                              "it?)"), step, outcome.tail
            return str(found["Id"]), None, step, outcome.tail
        if outcome.cancelled:
            return None, None, step, outcome.tail
        return None, outcome.error, step, outcome.tail


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if hasattr(exc, "explanation") and getattr(exc, "explanation", None):
        text = str(exc.explanation)  # type: ignore[attr-defined]
    return (text.splitlines() or [type(exc).__name__])[0]

