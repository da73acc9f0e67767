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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any

from .base import (
    ERROR,
    IMAGE,
    OUTPUT,
    BuildEvent,
    ContainerEngine,
    ContainerInfo,
    ContainerSpec,
    EngineError,
    ImageInfo,
    PushEvent,
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
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (container, path)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.unreachable:
            raise EngineError(what, "connection refused", address=self.address)

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
              pull: bool = False, no_cache: bool = False) -> Iterator[BuildEvent]:
        self._check("build")
        data = context if isinstance(context, bytes) else context.read()
        files: dict[str, tuple[bytes, int]] = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                f = tar.extractfile(member) if member.isfile() else None
                if f is not None:
                    files[member.name] = (f.read(), member.mode)
        dockerfile = files.pop("Dockerfile", (b"", 0))[0].decode()
        call = BuildCall(dockerfile, files, tag, target, dict(build_args or {}),
                         dict(labels or {}), pull, no_cache)
        self.builds.append(call)
        return self._build(call, data)

    def _build(self, call: BuildCall, data: bytes) -> Iterator[BuildEvent]:
        joined = re.sub(r"\\\n", " ", call.dockerfile)  # continuation lines
        steps = [line.strip() for line in joined.splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
        image_labels: dict[str, str] = {}
        for number, line in enumerate(steps, 1):
            yield BuildEvent(OUTPUT, f"Step {number}/{len(steps)} : {line}\n")
            words = line.split()
            if words[:2] == ["RUN", "exit"] and len(words) == 3 and words[2] != "0":
                yield BuildEvent(ERROR, f"The command '/bin/sh -c exit {words[2]}' returned a "
                                        f"non-zero code: {words[2]}")
                return
            if words[0] == "LABEL":
                for pair in shlex.split(line)[1:]:
                    key, _, value = pair.partition("=")
                    image_labels[key] = value
        image_labels.update(call.labels)
        digest = hashlib.sha256(data + json.dumps(
            [call.build_args, image_labels, call.target], sort_keys=True).encode()).hexdigest()
        image_id = f"sha256:{digest}"
        self.images[image_id] = ImageInfo(image_id, (), image_labels)
        if call.tag:
            self.tag(image_id, *call.tag.rsplit(":", 1))
        yield BuildEvent(OUTPUT, f"Successfully built {digest[:12]}\n")
        yield BuildEvent(IMAGE, image_id)

    def inspect_image(self, ref: str) -> ImageInfo | None:
        self._check(f"inspect {ref}")
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
            raise EngineError(f"tag {image}", f"no such image {image}",
                              address=self.address, status=404)
        self.refs[f"{repository}:{tag}"] = found.id

    def remove_image(self, ref: str, *, force: bool = False, prune: bool = True) -> bool:
        self._check(f"remove {ref}")
        if ref in self.refs:
            del self.refs[ref]
            return True
        return self.images.pop(ref, None) is not None

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
            raise EngineError("create container", f"No such image: {spec.image}",
                              address=self.address, status=404)
        container_id = hashlib.sha256(f"{spec}{len(self.containers)}".encode()).hexdigest()
        self.containers[container_id] = ContainerInfo(container_id, spec.name or "",
                                                      spec.image, "created", dict(spec.labels))
        return container_id

    def start_container(self, container: str) -> None:
        self._check(f"start {container[:12]}")
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
        self._check(f"exec {' '.join(command)}")
        answer = self.exec_answer(container, command) if self.exec_answer else None
        if answer is None:
            if on_output is not None and self.exec_output:
                on_output(self.exec_output)
            return 0
        rc, out, err = answer
        if out and on_output is not None:
            on_output(out)
        to_err = on_stderr or on_output  # without on_stderr the two streams are one
        if err and to_err is not None:
            to_err(err)
        return rc

    def read_file(self, container: str, path: str) -> bytes | None:
        return self.files.get((container, path))

    def export_container(self, container: str) -> Iterator[bytes]:
        """A tar of the files put into `files` for this container."""
        self._check(f"export {container[:12]}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for (owner, path), content in sorted(self.files.items()):
                if owner == container:
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
