"""The one interface every stage uses to talk to a container engine.

Shaped after repo2docker's `ContainerEngine` (repo2docker/engine.py): an abstract class whose
methods return typed records and event streams, so build/, verify/, publish/ and host/ never
see docker-py's dicts or exceptions, and another engine (a buildx driver, a fake for unit
tests) slots in behind the same calls. The docker-py implementation is docker_engine.py.

Errors: every engine or connection failure is raised as `EngineError` (a JobError: one
line, exit 1); "no such image/container" is a return value (None / False), not an error.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from ..errors import JobError

if TYPE_CHECKING:
    from .containers import TrackedContainer
    from .runspec import Mount


class EngineError(JobError):
    """The engine refused a call or could not be reached. Callers read the fields, never the
    message: `operation` (what was asked: "pull a:b", "create container"), `reason` (the
    engine's one-line answer), `address` (the engine's, where known) and `status` (its HTTP
    status where it gave one). str() is one line: "engine ADDRESS: OPERATION: REASON"."""

    def __init__(self, operation: str, reason: str, *, address: str | None = None,
                 status: int | None = None, message: str | None = None) -> None:
        self.operation = operation
        self.reason = reason
        self.address = address
        self.status = status
        if message is None:
            message = (f"engine {address}: " if address else "") + f"{operation}: {reason}"
        super().__init__(message)


class EngineUnreachable(EngineError):
    """No engine answers at the address (connection refused, TLS handshake failed, ...)."""


@dataclass(frozen=True)
class ImageInfo:
    """What an engine says about one image."""

    id: str  # "sha256:..."
    tags: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str = ""  # RFC 3339, as the engine reports it
    size: int = 0
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "KEY=value", the image config's Env

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str
    status: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]


# Build events. A build stream is a sequence of these; the last one names the image (kind
# IMAGE) or the error (kind ERROR). OUTPUT text is raw: it may hold several lines or part of
# one (the engine sends what the build printed as it comes). STEP: an instruction started,
# whichever builder numbers it (the classic one over the whole build, BuildKit per stage).
OUTPUT, STATUS, STEP, IMAGE, ERROR = "output", "status", "step", "image", "error"


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
class BuildEvent:
    kind: str  # OUTPUT, STATUS (pull progress during a build), STEP, IMAGE or ERROR
    text: str  # the output, the status line, the instruction, the image id or the error
    step: Step | None = None  # STEP: the step; ERROR: the step that failed, where known


@dataclass(frozen=True)
class BuildKit:
    """Build with BuildKit instead of the engine's classic builder (`docker buildx build`):
    `builder` a named buildx builder (None: the engine's own BuildKit), `cache_from` and
    `cache_to` buildx cache specs."""

    builder: str | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class PushEvent:
    """One step of a push (or a pull): a layer's status, the final digest, or an error."""

    status: str = ""
    layer: str | None = None
    progress: bool = False  # a progress-bar redraw, not a state change
    digest: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ContainerSpec:
    """How to start a container: the parts of `docker run` the pipeline uses. A GPU run is
    made by engine/runspec.py's GpuRunSpec, which also writes the same run as a CLI line."""

    image: str
    command: Sequence[str] | None = None
    name: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    devices: Sequence[str] = ()  # "host:container:rwm"
    group_add: Sequence[str] = ()
    security_opt: Sequence[str] = ()
    ipc_mode: str | None = None
    shm_size: str | None = None
    network_mode: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    mounts: Sequence[Mount] = ()
    user: str | None = None
    working_dir: str | None = None


class ContainerEngine(abc.ABC):
    """A container engine at one address."""

    address: str

    # -- engine ------------------------------------------------------------------------------

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise EngineUnreachable unless the engine answers."""

    @abc.abstractmethod
    def version(self) -> str:
        """The engine's version string."""

    @abc.abstractmethod
    def registry_config(self) -> dict[str, Any]:
        """The engine's registry configuration (docker info's RegistryConfig)."""

    def close(self) -> None:  # noqa: B027 - engines without a connection need nothing
        """Release the connection."""

    # -- images ------------------------------------------------------------------------------

    @abc.abstractmethod
    def build(self, context: bytes | IO[bytes], *, tag: str | None = None,
              target: str | None = None, build_args: Mapping[str, str] | None = None,
              labels: Mapping[str, str] | None = None, network_mode: str | None = None,
              pull: bool = False, no_cache: bool = False, buildkit: BuildKit | None = None,
              cancel: threading.Event | None = None) -> Iterator[BuildEvent]:
        """Build a context (an uncompressed tar with a Dockerfile at its root) up to the
        stage `target`, with the classic builder or, given `buildkit`, with BuildKit. A STEP
        event follows each instruction the builder starts: the classic builder counts
        `labels` as one `LABEL key=value` step each at the end, BuildKit sets them on the
        image without a step. Errors of the build itself (a failing step, a target the
        Dockerfile lacks) arrive as an ERROR event, naming the failing step where the
        builder does; a lost engine raises EngineError. The IMAGE event names an image this
        engine has. `cancel` stops a BuildKit build (an image already loaded is still
        named, for the caller to remove); the classic builder runs to its end."""

    def buildkit_version(self) -> str | None:
        """The version of the BuildKit client `build(buildkit=...)` drives (buildx), or None
        when this engine has none."""
        return None

    @abc.abstractmethod
    def inspect_image(self, ref: str) -> ImageInfo | None:
        """The image `ref` (id, tag or short id), or None when the engine has none; a ref
        that is no reference (an uppercase repository) is an EngineError, status 400."""

    @abc.abstractmethod
    def tag(self, image: str, repository: str, tag: str) -> None:
        """Point `repository:tag` at `image` (moving it if it exists)."""

    @abc.abstractmethod
    def remove_image(self, ref: str, *, force: bool = False, prune: bool = True) -> bool:
        """Remove a tag (the image goes with its last tag) or an image by id (its tags with
        it; one with several tags is an EngineError, status 409, unless `force`); prune:
        also its untagged parents. False when there was none."""

    @abc.abstractmethod
    def list_images(self, *, label: str | None = None, repository: str | None = None
                    ) -> list[ImageInfo]:
        """Images with a label (`key` or `key=value`) and/or of a repository."""

    @abc.abstractmethod
    def pull(self, repository: str, tag: str) -> Iterator[PushEvent]:
        """Pull `repository:tag`; a refused pull raises EngineError."""

    @abc.abstractmethod
    def push(self, repository: str, tag: str, auth: Mapping[str, str] | None = None
             ) -> Iterator[PushEvent]:
        """Push `repository:tag`; registry errors arrive as events with `error` set (the
        engine reports them inside a successful HTTP stream)."""

    @abc.abstractmethod
    def distribution_digest(self, ref: str, auth: Mapping[str, str] | None = None) -> str:
        """The manifest digest the registry serves for `ref`, asked through the engine."""

    # -- containers --------------------------------------------------------------------------

    @abc.abstractmethod
    def create_container(self, spec: ContainerSpec) -> str:
        """Create (not start) a detached container; its id. A missing image is an
        EngineError with status 404, a name in use one with 409."""

    @abc.abstractmethod
    def start_container(self, container: str) -> None:
        """Start a created container; one that is gone is an EngineError, status 404."""

    @abc.abstractmethod
    def remove_container(self, container: str) -> None:
        """Force-remove with its volumes; no error for one already gone or being removed."""

    @abc.abstractmethod
    def list_containers(self, *, label: str) -> list[ContainerInfo]:
        """All containers (running or not) with a label (`key` or `key=value`)."""

    @abc.abstractmethod
    def exec(self, container: str, command: Sequence[str],
             on_output: Callable[[bytes], None] | None = None, *,
             on_stderr: Callable[[bytes], None] | None = None) -> int:
        """Run a command in a running container, stdout and stderr together passed to
        `on_output` as it comes; its exit code. A container not running is an EngineError
        (status 409). With `on_stderr`, stderr goes there apart (testinfra's results keep
        the two streams: verify/suite/backend.py)."""

    @abc.abstractmethod
    def read_file(self, container: str, path: str) -> bytes | None:
        """A file's content copied out of a container (get_archive); None if absent."""

    @abc.abstractmethod
    def export_container(self, container: str) -> Iterator[bytes]:
        """A container's filesystem as `docker export` tar chunks, read as they come."""

    # -- volumes -----------------------------------------------------------------------------

    @abc.abstractmethod
    def ensure_volume(self, name: str, labels: Mapping[str, str], *, empty: bool = False
                      ) -> bool:
        """Make the named volume exist (first removing it with `empty`); one that exists is
        kept as it is, its labels too. True when `empty` removed one that was there."""

    @abc.abstractmethod
    def remove_volume(self, name: str) -> bool:
        """Remove a named volume; False when there was none."""

    @abc.abstractmethod
    def list_volumes(self, *, label: str) -> list[str]:
        """Names of the volumes with a label (`key` or `key=value`)."""

    def run_container(self, spec: ContainerSpec, *, role: str, run_id: str | None = None
                      ) -> TrackedContainer:
        """`with engine.run_container(spec, role="test") as c:` a started container that is
        removed when the block ends, however it ends (engine/containers.py)."""
        from .containers import TrackedContainer

        return TrackedContainer(self, spec, role=role, run_id=run_id)
