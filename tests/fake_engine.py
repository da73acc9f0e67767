"""An in-memory ContainerEngine for unit tests of the logic above the engine (the builder's
skip and failure decisions, the publisher's tagging), where a real engine would only add
minutes. It builds nothing: a build's image id is the hash of the context and its
arguments; a Dockerfile line `RUN exit N` (N > 0) fails the build at that step, as a real
engine would. Integration tests use the real engine (docker_engine.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any

from imagefactory.engine.base import (
    ERROR,
    IMAGE,
    OUTPUT,
    STEP,
    BuildEvent,
    BuildKit,
    ContainerEngine,
    ContainerInfo,
    ContainerSpec,
    EngineError,
    EngineUnreachable,
    ImageInfo,
    PushEvent,
    Step,
)


@dataclass
class BuildCall:
    dockerfile: str
    files: dict[str, tuple[bytes, int]]  # name -> (content, mode)
    tag: str | None
    target: str | None
    build_args: dict[str, str]
    labels: dict[str, str]
    pull: bool
    no_cache: bool
    buildkit: BuildKit | None = None


@dataclass
class FakeEngine(ContainerEngine):
    address: str = "fake://engine"
    images: dict[str, ImageInfo] = field(default_factory=dict)  # id -> image
    refs: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> id
    containers: dict[str, ContainerInfo] = field(default_factory=dict)
    builds: list[BuildCall] = field(default_factory=list)
    exec_output: bytes = b""  # what each exec prints (as one chunk)
    # Scripted execs: (container, command) -> (exit code, stdout, stderr), or None for the
    # default answer above (exit 0, exec_output). It may change the fake (put a file).
    exec_answer: Callable[[str, Sequence[str]], tuple[int, bytes, bytes] | None] | None = None
    calls: list[str] = field(default_factory=list)
    unreachable: bool = False
    buildkit: str | None = "fake"  # buildkit_version(); None: an engine without BuildKit
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (container, path)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels
    # id -> path -> content: what COPY/ADD put in a built image; its containers see it
    image_files: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.unreachable:
            raise EngineUnreachable(what, "connection refused", address=self.address)

    def add_image(self, ref: str, labels: Mapping[str, str] | None = None) -> ImageInfo:
        """An image as if pulled or loaded: `ref` names it."""
        image_id = "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
        info = ImageInfo(image_id, (ref,), dict(labels or {}))
        self.images[image_id] = info
        self.refs[ref] = image_id
        return info

    # -- engine ------------------------------------------------------------------------------

    def ping(self) -> None:
        self._check("ping")

    def version(self) -> str:
        self._check("version")
        return "fake"

    def registry_config(self) -> dict[str, Any]:
        self._check("info")
        return {}

    # -- images ------------------------------------------------------------------------------

    def build(self, context: bytes | IO[bytes], *, tag: str | None = None,
              target: str | None = None, build_args: Mapping[str, str] | None = None,
              labels: Mapping[str, str] | None = None, network_mode: str | None = None,
              pull: bool = False, no_cache: bool = False, buildkit: BuildKit | None = None,
              cancel: threading.Event | None = None) -> Iterator[BuildEvent]:
        self._check("build")
        if buildkit is not None and self.buildkit is None:
            raise EngineError("build", "docker buildx is not installed", address=self.address)
        data = context if isinstance(context, bytes) else context.read()
        files: dict[str, tuple[bytes, int]] = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                f = tar.extractfile(member) if member.isfile() else None
                if f is not None:
                    files[member.name] = (f.read(), member.mode)
        dockerfile = files.pop("Dockerfile", (b"", 0))[0].decode()
        call = BuildCall(dockerfile, files, tag, target, dict(build_args or {}),
                         dict(labels or {}), pull, no_cache, buildkit)
        self.builds.append(call)
        return self._build(call, data)

    def buildkit_version(self) -> str | None:
        return self.buildkit

    def _build(self, call: BuildCall, data: bytes) -> Iterator[BuildEvent]:
        """The builder's outline: the classic builder's steps numbered over the stages it
        builds (up to `target`), BuildKit's per stage (`[name i/n]`, an unnamed stage
        `stage-K`), each stage starting from its FROM's labels and files (an earlier stage
        or an image the engine has), LABEL (with its stage's ARG/ENV values expanded, build
        args given) and COPY/ADD of context files applied; the build's own labels last,
        for the classic builder as steps of the final stage (`LABEL key=value`, one a key,
        in key order), for BuildKit without a step."""
        kit = call.buildkit is not None
        joined = re.sub(r"\\\n", " ", call.dockerfile)  # continuation lines
        steps = [line.strip() for line in joined.splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
        starts = [i for i, line in enumerate(steps) if line.split()[0].upper() == "FROM"]
        if call.target is not None:
            names = [_stage_name(steps[i]) for i in starts]
            if call.target not in names:
                yield BuildEvent(ERROR, f'target stage "{call.target}" could not be found'
                                 if kit else f"failed to reach build target {call.target} in "
                                             "Dockerfile")
                return
            after = names.index(call.target) + 1
            if after < len(starts):
                steps = steps[:starts[after]]
        stages: dict[str, tuple[dict[str, str], dict[str, bytes]]] = {}
        image_labels: dict[str, str] = {}
        image_files: dict[str, bytes] = {}
        meta: dict[str, str] = {}  # ARGs before the first FROM
        scope: dict[str, str] = {}  # the stage's ARG and ENV values
        # The build's labels are LABEL steps of their own at the end, in key order.
        total = len(steps) + (0 if kit else len(call.labels))
        for number, line in enumerate(steps, 1):
            step: Step | None = Step(number, total, line)
            if kit:
                step = _buildkit_step(steps, starts, number - 1)
                if step is not None:
                    yield BuildEvent(OUTPUT, f"#{number} [{step.stage} {step.number}/"
                                             f"{step.total}] {step.instruction}\n")
            else:
                yield BuildEvent(OUTPUT, f"Step {number}/{total} : {line}\n")
            if step is not None:
                yield BuildEvent(STEP, step.instruction, step)
            words = line.split()
            op = words[0].upper()
            if op == "ARG" and len(words) == 2:
                name, eq, default = words[1].partition("=")
                outer = meta if not stages else scope
                outer[name] = call.build_args.get(
                    name, shlex.split(default)[0] if eq and default else meta.get(name, ""))
            elif op == "ENV" and len(words) > 1:
                pairs = shlex.split(_expand(line, scope))[1:]
                if "=" not in pairs[0]:  # ENV KEY value
                    pairs = [f"{pairs[0]}={' '.join(pairs[1:])}"]
                scope.update(pair.partition("=")[::2] for pair in pairs)
            elif op == "FROM":
                scope = {}
                base = next((w for w in words[1:] if not w.startswith("--")), "")
                if base in stages:
                    labels, files = stages[base]
                else:
                    found = self.images.get(self.refs.get(base, base))
                    labels = dict(found.labels) if found else {}
                    files = dict(self.image_files.get(found.id, {})) if found else {}
                image_labels, image_files = dict(labels), dict(files)
                stages[_stage_name(line) or str(len(stages))] = (image_labels, image_files)
            elif op == "RUN" and words[1:2] == ["exit"] and len(words) == 3 and words[2] != "0":
                yield (BuildEvent(ERROR, f'process "/bin/sh -c exit {words[2]}" did not '
                                         f"complete successfully: exit code: {words[2]}", step)
                       if kit else
                       BuildEvent(ERROR, f"The command '/bin/sh -c exit {words[2]}' returned "
                                         f"a non-zero code: {words[2]}"))
                return
            elif op == "LABEL":
                for pair in shlex.split(_expand(line, scope))[1:]:
                    key, _, value = pair.partition("=")
                    image_labels[key] = value
            elif op in ("COPY", "ADD") and not any(w.startswith("--from") for w in words):
                args = [w for w in words[1:] if not w.startswith("--")]
                for source in args[:-1]:
                    _copy(call.files, source, args[-1], image_files)
        for number, key in enumerate([] if kit else sorted(call.labels), len(steps) + 1):
            line = f"LABEL {key}={call.labels[key]}"
            yield BuildEvent(OUTPUT, f"Step {number}/{total} : {line}\n")
            yield BuildEvent(STEP, line, Step(number, total, line))
        image_labels.update(call.labels)
        digest = hashlib.sha256(data + json.dumps(
            [call.build_args, image_labels, call.target], sort_keys=True).encode()).hexdigest()
        image_id = f"sha256:{digest}"
        self.images[image_id] = ImageInfo(image_id, (), image_labels)
        self.image_files[image_id] = image_files
        if call.tag:
            self.tag(image_id, *call.tag.rsplit(":", 1))
        if not kit:
            yield BuildEvent(OUTPUT, f"Successfully built {digest[:12]}\n")
        yield BuildEvent(IMAGE, image_id)

    def inspect_image(self, ref: str) -> ImageInfo | None:
        self._check(f"inspect {ref}")
        name = ref.split("@", 1)[0]
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        if not ref.startswith("sha256:") and name != name.lower():
            raise EngineError(f"inspect {ref}", "invalid reference format: repository name "
                              f"({name}) must be lowercase", address=self.address, status=400)
        image_id = self.refs.get(ref, ref)
        found = self.images.get(image_id)
        if found is None:
            found = next((i for i in self.images.values() if i.short_id == ref), None)
        if found is None:
            return None
        return replace(found, tags=tuple(r for r, i in self.refs.items() if i == found.id))

    def tag(self, image: str, repository: str, tag: str) -> None:
        self._check(f"tag {repository}:{tag}")
        found = self.inspect_image(image)
        if found is None:
            raise EngineError(f"tag {repository}:{tag}", f"No such image: {image}",
                              address=self.address, status=404)
        self.refs[f"{repository}:{tag}"] = found.id

    def remove_image(self, ref: str, *, force: bool = False, prune: bool = True) -> bool:
        self._check(f"remove {ref}")
        if ref in self.refs:  # a tag: untagged; the image goes with its last tag
            image_id = self.refs.pop(ref)
            if image_id not in self.refs.values():
                self._delete(image_id)
            return True
        found = self.images.get(ref) or next(
            (i for i in self.images.values() if i.short_id == ref), None)
        if found is None:
            return False
        tags = [r for r, i in self.refs.items() if i == found.id]
        if len(tags) > 1 and not force:
            raise EngineError(f"remove {ref}", f"conflict: unable to delete {found.short_id} "
                              "(must be forced) - image is referenced in multiple "
                              "repositories", address=self.address, status=409)
        for r in tags:
            del self.refs[r]
        self._delete(found.id)
        return True

    def _delete(self, image_id: str) -> None:
        self.images.pop(image_id, None)
        self.image_files.pop(image_id, None)

    def list_images(self, *, label: str | None = None, repository: str | None = None
                    ) -> list[ImageInfo]:
        out = []
        for image_id in list(self.images):
            info = self.inspect_image(image_id)
            if info is None:
                continue
            if label is not None:
                key, _, value = label.partition("=")
                if key not in info.labels or (value and info.labels[key] != value):
                    continue
            if repository is not None and not any(t.startswith(repository + ":")
                                                  for t in info.tags):
                continue
            out.append(info)
        return out

    def pull(self, repository: str, tag: str) -> Iterator[PushEvent]:
        self._check(f"pull {repository}:{tag}")
        if f"{repository}:{tag}" not in self.refs:
            raise EngineError(f"pull {repository}:{tag}", "not found", address=self.address)
        yield PushEvent(status=f"Status: Image is up to date for {repository}:{tag}")

    def push(self, repository: str, tag: str, auth: Mapping[str, str] | None = None
             ) -> Iterator[PushEvent]:
        self._check(f"push {repository}:{tag}")
        image_id = self.refs.get(f"{repository}:{tag}")
        if image_id is None:
            yield PushEvent(error=f"An image does not exist locally with the tag: {repository}")
            return
        yield PushEvent(status="Pushed", layer="0" * 12)
        yield PushEvent(digest="sha256:" + hashlib.sha256(image_id.encode()).hexdigest())

    def distribution_digest(self, ref: str, auth: Mapping[str, str] | None = None) -> str:
        self._check(f"inspect distribution {ref}")
        return "sha256:" + hashlib.sha256(self.refs[ref].encode()).hexdigest()

    # -- containers --------------------------------------------------------------------------

    def create_container(self, spec: ContainerSpec) -> str:
        self._check(f"create {spec.image}")
        if self.inspect_image(spec.image) is None:
            raise EngineError(f"create a container of {spec.image}",
                              f"No such image: {spec.image}", address=self.address, status=404)
        if spec.name and any(c.name == spec.name for c in self.containers.values()):
            raise EngineError(f"create a container of {spec.image}", "Conflict. The container "
                              f'name "/{spec.name}" is already in use', address=self.address,
                              status=409)
        container_id = hashlib.sha256(f"{spec}{len(self.containers)}".encode()).hexdigest()
        self.containers[container_id] = ContainerInfo(container_id, spec.name or "",
                                                      spec.image, "created", dict(spec.labels))
        return container_id

    def start_container(self, container: str) -> None:
        self._check(f"start {container[:12]}")
        self._container(f"start {container[:12]}", container)
        self.containers[container] = replace(self.containers[container], status="running")

    def remove_container(self, container: str) -> None:
        self._check(f"remove container {container[:12]}")
        self.containers.pop(container, None)

    def list_containers(self, *, label: str) -> list[ContainerInfo]:
        key, _, value = label.partition("=")
        return [c for c in self.containers.values()
                if key in c.labels and (not value or c.labels[key] == value)]

    def exec(self, container: str, command: Sequence[str],
             on_output: Callable[[bytes], None] | None = None, *,
             on_stderr: Callable[[bytes], None] | None = None) -> int:
        """`exec_answer` (when set and it answers) gives (rc, stdout, stderr); else
        `sh -c 'exit N'` exits N and `cat PATH` prints the file (else fails as cat does);
        anything else prints `exec_output` and exits 0. Without `on_stderr` the two streams
        are one, as Docker's."""
        self._check(f"exec {' '.join(command)}")
        found = self._container(f"exec {command[0] if command else ''}", container)
        if found.status != "running":
            raise EngineError(f"exec {command[0] if command else ''}",
                              f"container {container} is not running", address=self.address,
                              status=409)
        to_err = on_stderr or on_output
        answer = self.exec_answer(container, command) if self.exec_answer else None
        if answer is not None:
            rc, out, err = answer
            if out and on_output is not None:
                on_output(out)
            if err and to_err is not None:
                to_err(err)
            return rc
        words = list(command)
        if words[:2] == ["sh", "-c"] and len(words) == 3 and re.fullmatch(r"exit \d+", words[2]):
            return int(words[2].split()[1])
        if words[:1] == ["cat"] and len(words) == 2:
            content = self.read_file(container, words[1])
            if content is None:
                if to_err is not None:
                    to_err(f"cat: {words[1]}: No such file or directory\n".encode())
                return 1
            if on_output is not None and content:
                on_output(content)
            return 0
        if on_output is not None and self.exec_output:
            on_output(self.exec_output)
        return 0

    def _container(self, what: str, container: str) -> ContainerInfo:
        found = self.containers.get(container)
        if found is None:
            raise EngineError(what, f"No such container: {container}", address=self.address,
                              status=404)
        return found

    def _filesystem(self, container: str) -> dict[str, bytes]:
        """A container's files: its image's, then those put into `files` for it."""
        found = self.containers.get(container)
        image_id = self.refs.get(found.image, found.image) if found is not None else ""
        out = dict(self.image_files.get(image_id, {}))
        out.update({path: content for (owner, path), content in self.files.items()
                    if owner == container})
        return out

    def read_file(self, container: str, path: str) -> bytes | None:
        return self._filesystem(container).get(path)

    def export_container(self, container: str) -> Iterator[bytes]:
        """A tar of the container's files (its image's and those put into `files`)."""
        self._check(f"export {container[:12]}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path, content in sorted(self._filesystem(container).items()):
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        yield buf.getvalue()

    # -- volumes -----------------------------------------------------------------------------

    def ensure_volume(self, name: str, labels: Mapping[str, str], *, empty: bool = False
                      ) -> bool:
        self._check(f"create volume {name}")
        emptied = empty and self.volumes.pop(name, None) is not None
        self.volumes.setdefault(name, dict(labels))
        return emptied

    def remove_volume(self, name: str) -> bool:
        self._check(f"remove volume {name}")
        return self.volumes.pop(name, None) is not None

    def list_volumes(self, *, label: str) -> list[str]:
        key, _, value = label.partition("=")
        return sorted(n for n, labels in self.volumes.items()
                      if key in labels and (not value or labels[key] == value))


# What BuildKit shows as a step (a vertex of the solve): the rest (ENV, LABEL, ARG, USER,
# ...) only changes the image config, and a FROM of an earlier stage is that stage.
_VERTEX_OPS = frozenset({"RUN", "COPY", "ADD", "WORKDIR"})


def _buildkit_step(steps: list[str], starts: list[int], index: int) -> Step | None:
    """BuildKit's step for instruction `index`: numbered over its stage's vertices, the
    stage named as BuildKit names it (`AS name`, else `stage-K`), a FROM by the image's
    full name; None for an instruction that makes no vertex (or comes before any FROM)."""
    starts = [i for i in starts if i < len(steps)]  # a --target build stops at its stage
    first = max((i for i in starts if i <= index), default=None)
    if first is None:
        return None
    stop = next((i for i in starts if i > index), len(steps))
    names = [_stage_name(steps[i]) for i in starts]

    def shown(i: int) -> str | None:
        words = steps[i].split()
        op = words[0].upper()
        if op == "FROM":
            image = next(w for w in words[1:] if not w.startswith("--"))
            return None if image in names else f"FROM {_full_name(image)}"
        return steps[i] if op in _VERTEX_OPS else None

    vertices = [i for i in range(first, stop) if shown(i) is not None]
    if index not in vertices:
        return None
    stage = names[starts.index(first)] or f"stage-{starts.index(first)}"
    return Step(vertices.index(index) + 1, len(vertices), str(shown(index)), stage)


def _full_name(image: str) -> str:
    """`debian:bookworm-slim` as BuildKit shows it: docker.io/library/debian:bookworm-slim."""
    first, _, rest = image.partition("/")
    if not rest:
        return f"docker.io/library/{image}"
    if "." in first or ":" in first or first == "localhost":
        return image
    return f"docker.io/{image}"


def _stage_name(from_line: str) -> str | None:
    """The name of `FROM image AS name`, else None."""
    words = from_line.split()
    return words[-1] if len(words) >= 4 and words[-2].lower() == "as" else None


def _copy(context: Mapping[str, tuple[bytes, int]], source: str, dest: str,
          into: dict[str, bytes]) -> None:
    """COPY `source` (a file or a folder of the context) to `dest`, as Docker places it: a
    folder's content goes under dest; a file goes to dest, or into it when dest ends in /."""
    source = source.strip("/")
    for name, (content, _mode) in context.items():
        if name == source:
            path = dest + name.rsplit("/", 1)[-1] if dest.endswith("/") else dest
        elif name.startswith(source + "/") or source in ("", "."):
            rest = name if source in ("", ".") else name[len(source) + 1:]
            path = dest.rstrip("/") + "/" + rest
        else:
            continue
        into["/" + path.lstrip("/")] = content


def _expand(line: str, scope: Mapping[str, str]) -> str:
    """`$NAME` and `${NAME}` as the builder expands them: the stage's ARG/ENV value, else
    empty."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: scope.get(m.group(1) or m.group(2), ""),
                  line)
