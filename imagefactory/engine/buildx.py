"""BuildKit builds through `docker buildx build`, as a second build client next to docker-py.

docker-py speaks only the classic builder's API; BuildKit needs the buildx CLI plugin, which
drives the engine's embedded BuildKit (the `docker` driver) or any other builder (`--builder`:
docker-container, remote, kubernetes). This module runs it as a subprocess:

- the context is the same in-memory tar the classic path uploads, sent on stdin (`-`), so both
  paths build exactly the same inputs;
- `--progress rawjson` (BuildKit's SolveStatus objects, one pretty-printed JSON object after
  another, mixed with plain `ERROR: ...` lines) is turned into the events the builder already
  consumes: log lines, the current step, the error, and the failing step;
- nothing is tagged: the image id comes from `--metadata-file` and the caller tags it once the
  build succeeded, so a failed or interrupted build never moves a tag;
- cancelling (Ctrl-C) sends SIGINT to buildx, which cancels the solve in BuildKit; an atexit
  hook does the same for builds still running when the interpreter leaves.
"""

from __future__ import annotations

import atexit
import base64
import codecs
import contextlib
import json
import logging
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import ERROR, IMAGE, OUTPUT, STEP, BuildEvent, Step

log = logging.getLogger(__name__)

TAIL_LINES = 15
# `[stage-1 3/7] RUN make`, `[builder 2/5] COPY ...`, `[2/4] RUN ...` (single stage, old
# frontends); bake prefixes the target: `[cpu runtime 3/7] ...`.
_STEP = re.compile(r"^\[(?:(?P<stage>[^\]]+?) )?(?P<n>\d+)/(?P<total>\d+)\] (?P<instr>.*)$")
OnLine = Callable[[str], None]
OnStep = Callable[[int, int, str, "str | None"], None]


def buildx_version(docker: str = "docker", address: str | None = None,
                   timeout: float = 20) -> str | None:
    """`docker buildx version`'s version field, or None when the plugin is not installed."""
    try:
        out = subprocess.run([docker, "buildx", "version"], capture_output=True, text=True,
                             timeout=timeout, check=False, env=_env(address))
    except (OSError, subprocess.SubprocessError):
        return None
    words = out.stdout.split()
    if out.returncode != 0 or len(words) < 2:
        return None
    return words[1]


def _env(address: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if address:
        env["DOCKER_HOST"] = address
    # Provenance/SBOM attestations turn a loaded image into an index the docker driver of
    # older engines cannot store; the classic path never made them either.
    env.setdefault("BUILDX_NO_DEFAULT_ATTESTATIONS", "1")
    return env


class RawJsonSplitter:
    """Splits buildx's rawjson stream into JSON objects and plain text lines.

    buildx prints each SolveStatus as indented JSON: a line `{`, the body, a line `}`. Error
    summaries (`ERROR: failed to solve: ...`) and warnings come as plain lines in between.
    """

    def __init__(self) -> None:
        self._partial = ""
        self._object: list[str] | None = None

    def feed(self, text: str) -> Iterator[dict[str, Any] | str]:
        text = self._partial + text
        *lines, self._partial = text.split("\n")
        for line in lines:
            yield from self._line(line)

    def close(self) -> Iterator[dict[str, Any] | str]:
        if self._partial:
            yield from self._line(self._partial)
            self._partial = ""
        if self._object is not None:  # cut short: hand back what came as text
            pending, self._object = self._object, None
            yield from (line for line in pending if line.strip())

    def _line(self, line: str) -> Iterator[dict[str, Any] | str]:
        if self._object is None:
            if line.rstrip() == "{":
                self._object = [line]
            elif line.strip():
                yield line.rstrip()
            return
        self._object.append(line)
        if line.rstrip() != "}":
            return
        body, self._object = "\n".join(self._object), None
        try:
            value = json.loads(body)
        except ValueError:
            yield from (text for text in body.splitlines() if text.strip())
            return
        if isinstance(value, dict):
            yield value
        else:
            yield body


@dataclass
class _Vertex:
    number: int
    name: str = ""
    shown: bool = False
    finished: bool = False
    step: tuple[int, int, str, str | None] | None = None


@dataclass
class SolveProgress:
    """Turns SolveStatus objects into log lines, steps and the failure.

    Lines follow buildx's plain progress (`#N [stage i/n] RUN ...`, `#N CACHED`,
    `#N DONE 12.3s`) except that a RUN's own output comes as it is, unprefixed, as the
    classic builder shows it.
    """

    on_line: OnLine | None = None
    on_step: OnStep | None = None
    step: tuple[int, int, str, str | None] | None = None  # (number, total, instruction, stage)
    error: str | None = None
    failed_step: tuple[int, int, str, str | None] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    _vertices: dict[str, _Vertex] = field(default_factory=dict)
    _partial: dict[tuple[str, int], str] = field(default_factory=dict)

    def feed(self, item: dict[str, Any] | str) -> None:
        if isinstance(item, str):
            self._text(item)
            return
        for vertex in _dicts(item.get("vertexes")):
            self._vertex(vertex)
        for entry in _dicts(item.get("logs")):
            self._log(entry)
        for warning in _dicts(item.get("warnings")):
            if warning.get("short"):
                with contextlib.suppress(ValueError, TypeError):
                    short = base64.b64decode(str(warning["short"])).decode(errors="replace")
                    self._emit(f"WARNING: {short.strip()}")

    def close(self) -> None:
        for key, text in list(self._partial.items()):
            if text:
                self._emit(text)
            del self._partial[key]

    def _text(self, line: str) -> None:
        if line.startswith("ERROR: ") and self.error is None:
            self.error = line.removeprefix("ERROR: ").strip()
        self._emit(line)

    def _vertex(self, raw: dict[str, Any]) -> None:
        digest = str(raw.get("digest") or "")
        vertex = self._vertices.get(digest)
        if vertex is None:
            vertex = self._vertices[digest] = _Vertex(len(self._vertices) + 1)
        if raw.get("name"):
            vertex.name = str(raw["name"])
        if not vertex.shown and (raw.get("started") or raw.get("cached") or raw.get("error")):
            vertex.shown = True
            self._emit(f"#{vertex.number} {vertex.name}")
            m = _STEP.match(vertex.name)
            if m:
                vertex.step = (int(m.group("n")), int(m.group("total")), m.group("instr"),
                               m.group("stage"))
                self.step = vertex.step
                if self.on_step:
                    self.on_step(*vertex.step)
        if vertex.finished:
            return
        if raw.get("error"):
            vertex.finished = True
            message = str(raw["error"]).strip()
            self._emit(f"#{vertex.number} ERROR: {message}")
            # BuildKit reports "context canceled" on the other running steps once one fails:
            # the first real error names the failing step.
            if self.failed_step is None or self.error is None:
                self.failed_step = vertex.step or self.failed_step
                self.error = self.error or message
        elif raw.get("cached"):
            vertex.finished = True
            self._emit(f"#{vertex.number} CACHED")
        elif raw.get("completed"):
            vertex.finished = True
            took = _seconds(raw.get("started"), raw.get("completed"))
            self._emit(f"#{vertex.number} DONE" + (f" {took:.1f}s" if took is not None else ""))

    def _log(self, entry: dict[str, Any]) -> None:
        try:
            data = base64.b64decode(str(entry.get("data") or "")).decode(errors="replace")
        except (ValueError, TypeError):
            return
        key = (str(entry.get("vertex") or ""), 2 if entry.get("stream") == 2 else 1)
        text = self._partial.get(key, "") + data
        *lines, self._partial[key] = text.split("\n")
        for line in lines:
            self._emit(line)

    def _emit(self, line: str) -> None:
        line = line.rstrip().rsplit("\r", 1)[-1]  # a progress bar's last redraw
        if not line:
            return
        self.tail.append(line)
        if self.on_line:
            self.on_line(line)


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The mappings of a list field; anything else in a hostile stream is ignored."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _seconds(start: Any, end: Any) -> float | None:
    from datetime import datetime

    def parse(value: Any) -> datetime | None:
        if not isinstance(value, str):
            return None
        # RFC 3339 with nanoseconds: Python takes at most microseconds.
        m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", value)
        if not m:
            return None
        frac = (m.group(2) or "0")[:6].ljust(6, "0")
        zone = "+00:00" if m.group(3) == "Z" else m.group(3)
        try:
            return datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}")
        except ValueError:
            return None

    a, b = parse(start), parse(end)
    return (b - a).total_seconds() if a and b else None


@dataclass(frozen=True)
class BuildxRequest:
    """One build: the context tar (Dockerfile at its root) and what the classic path passes."""

    context_tar: bytes
    labels: Mapping[str, str] = field(default_factory=dict)
    build_args: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    address: str | None = None  # the engine (DOCKER_HOST) the image is loaded into
    builder: str | None = None  # a named buildx builder; None: the engine's own BuildKit
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # only for pushes to a registry (push=True)
    push: bool = False
    target: str | None = None  # a stage of the Dockerfile
    network: str | None = None  # RUN's network (`none`), as the classic build's network_mode
    docker: str = "docker"

    def argv(self, metadata: Path) -> list[str]:
        argv = [self.docker, "buildx", "build", "--progress", "rawjson",
                "--metadata-file", str(metadata)]
        if self.builder:
            argv += ["--builder", self.builder]
        # --load: the image goes into the engine (the docker driver does it anyway; any other
        # driver needs it), --push: to the registry named by the tags.
        argv.append("--push" if self.push else "--load")
        for key, value in sorted(self.labels.items()):
            argv += ["--label", f"{key}={value}"]
        for key, value in sorted(self.build_args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        for spec in self.cache_from:
            argv += ["--cache-from", spec]
        for spec in self.cache_to:
            argv += ["--cache-to", spec]
        for tag in self.tags:
            argv += ["--tag", tag]
        if self.target:
            argv += ["--target", self.target]
        if self.network:
            argv += ["--network", self.network]
        if self.no_cache:
            argv.append("--no-cache")
        if self.pull:
            argv.append("--pull")
        argv.append("-")  # the context tar comes on stdin
        return argv


@dataclass(frozen=True)
class BuildxOutcome:
    image_id: str | None
    error: str | None
    step: tuple[int, int, str, str | None] | None  # the failing step, else the last one
    tail: tuple[str, ...]
    returncode: int
    cancelled: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)


# Builds still running: interrupted when the interpreter exits (workers are daemon threads).
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def _interrupt(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGINT (buildx cancels the solve and exits), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(OSError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            proc.kill()


@atexit.register
def _interrupt_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGINT)
    for proc in live:
        _interrupt(proc)


def build(request: BuildxRequest, on_line: OnLine | None = None,
          on_step: OnStep | None = None, cancel: threading.Event | None = None
          ) -> BuildxOutcome:
    """Run one `docker buildx build`; never raises for a failed build (see the outcome)."""
    progress = SolveProgress(on_line, on_step)
    splitter = RawJsonSplitter()
    cancel = cancel or threading.Event()
    with tempfile.TemporaryDirectory(prefix="imagefactory-buildx-") as tmp:
        metadata = Path(tmp) / "metadata.json"
        argv = request.argv(metadata)
        log.debug("running %s", " ".join(argv))
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=_env(request.address))
        except OSError as exc:
            return BuildxOutcome(None, f"cannot run {request.docker} buildx: {exc.strerror}",
                                 None, (), 127)
        with _LIVE_LOCK:
            _LIVE.add(proc)
        writer = threading.Thread(target=_write, args=(proc, request.context_tar),
                                  name="buildx-context", daemon=True)
        writer.start()
        watcher = threading.Thread(target=_watch, args=(proc, cancel), name="buildx-cancel",
                                   daemon=True)
        watcher.start()
        try:
            stdout = proc.stdout
            assert stdout is not None
            # os.read: whatever is there now, so a step's output shows as it comes.
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            for chunk in iter(lambda: os.read(stdout.fileno(), 65536), b""):
                for item in splitter.feed(decoder.decode(chunk)):
                    progress.feed(item)
            for item in splitter.close():
                progress.feed(item)
            progress.close()
            returncode = proc.wait()
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
            if proc.poll() is None:
                _interrupt(proc)
        meta: dict[str, Any] = {}
        if metadata.is_file():
            with contextlib.suppress(ValueError, OSError):
                loaded = json.loads(metadata.read_text(encoding="utf-8"))
                meta = loaded if isinstance(loaded, dict) else {}
    # The config digest is the engine's image id; the docker driver reports it as the
    # image digest, other drivers (with --load) as containerimage.config.digest.
    image_id = meta.get("containerimage.config.digest") or meta.get("containerimage.digest")
    error = progress.error
    if returncode != 0 and not error:
        last = progress.tail[-1] if progress.tail else ""
        error = f"docker buildx build exited with status {returncode}" + (
            f": {last}" if last else "")
    if returncode == 0 and not error and not image_id and not request.push:
        error = "docker buildx build reported no image id"
    return BuildxOutcome(
        image_id=str(image_id) if image_id and not error else None, error=error,
        step=progress.failed_step or progress.step, tail=tuple(progress.tail),
        returncode=returncode, cancelled=cancel.is_set(), metadata=meta)


def build_events(request: BuildxRequest, cancel: threading.Event | None = None
                 ) -> Iterator[BuildEvent]:
    """build() as the engine interface's event stream (engine/base.py): OUTPUT lines, STEP
    events, then IMAGE (the id buildx reports; after a stop, one loaded before it) or ERROR
    with the failing step. Leaving the iterator early stops the build, as `cancel` does."""
    stop = threading.Event()
    events: queue.Queue[BuildEvent | BuildxOutcome] = queue.Queue()

    def on_step(number: int, total: int, instruction: str, stage: str | None) -> None:
        events.put(BuildEvent(STEP, instruction, Step(number, total, instruction, stage)))

    def work() -> None:
        try:
            events.put(build(request, lambda line: events.put(BuildEvent(OUTPUT, line + "\n")),
                             on_step, stop))
        except Exception as exc:  # the stream must end, whatever broke
            events.put(BuildxOutcome(None, f"docker buildx build: {exc}", None, (), -1))

    worker = threading.Thread(target=work, name="buildx-events", daemon=True)
    worker.start()
    try:
        while True:
            try:
                item = events.get(timeout=0.2)
            except queue.Empty:
                if cancel is not None and cancel.is_set():
                    stop.set()
                continue
            if isinstance(item, BuildEvent):
                yield item
                continue
            if item.image_id:  # build() names an image only when nothing failed
                yield BuildEvent(IMAGE, item.image_id)
            else:
                yield BuildEvent(ERROR, item.error or "the build was interrupted",
                                 Step(*item.step) if item.step else None)
            return
    finally:
        stop.set()  # a no-op once buildx has exited
        worker.join()


def _write(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
    except (BrokenPipeError, OSError):
        pass  # buildx exited early; its output says why
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()


def _watch(proc: subprocess.Popen[bytes], cancel: threading.Event) -> None:
    while proc.poll() is None:
        if cancel.wait(0.2):
            log.debug("cancelling buildx (pid %d)", proc.pid)
            _interrupt(proc)
            return
