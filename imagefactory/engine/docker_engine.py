"""The ContainerEngine on docker-py: the only module that talks to docker-py.

The client is made the way the docker CLI and `docker.from_env()` make it: DOCKER_HOST with
DOCKER_TLS_VERIFY / DOCKER_CERT_PATH (docker-py's kwargs_from_env), else the current docker
context with its TLS material (docker.context.ContextAPI), else the local socket; `ssh://`
goes through the ssh binary, so ~/.ssh/config applies as it does for `docker -H ssh://`.
docker-py is imported on first use, so `--help` and config errors never pay for it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

from ..safety import redact
from .base import (
    ERROR,
    IMAGE,
    OUTPUT,
    STATUS,
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

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
EXPORT_CHUNK = 1 << 20
T = TypeVar("T")
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")  # the classic builder's


def _docker_config_file() -> str | None:
    """The docker CLI config file, found the way docker-py finds it."""
    home = os.path.expanduser("~")
    candidates = [os.path.join(os.environ["DOCKER_CONFIG"], "config.json")
                  if os.environ.get("DOCKER_CONFIG") else None,
                  os.path.join(home, ".docker", "config.json"),
                  os.path.join(home, ".dockercfg")]
    return next((p for p in candidates if p and os.path.exists(p)), None)


def _current_context_name() -> str:
    """The docker CLI's current context: DOCKER_CONTEXT, else the config's currentContext."""
    if os.environ.get("DOCKER_CONTEXT"):
        return os.environ["DOCKER_CONTEXT"]
    path = _docker_config_file()
    if not path:
        return "default"
    try:
        with open(path, encoding="utf-8") as f:
            return str(json.load(f).get("currentContext") or "default")
    except (OSError, ValueError, AttributeError):  # docker-py, too, reads it as no context
        return "default"


def default_address() -> str:
    """What a bare `docker` would use: DOCKER_HOST, else the current context, else the
    local socket."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    name = _current_context_name()
    if name == "default":
        return DEFAULT_SOCKET  # no need to import docker-py for that
    return name  # a context name; client_kwargs resolves it


def client_kwargs(address: str | None) -> dict[str, Any]:
    """DockerClient arguments for `address` (a URL or a docker context name; None: the
    default), with TLS settings from the environment or from the context."""
    from docker.context import ContextAPI
    from docker.errors import ContextNotFound
    from docker.utils import kwargs_from_env

    address = address or default_address()
    if "://" not in address:  # a docker context, by name
        try:
            context = ContextAPI.get_context(address)
        except ContextNotFound:
            context = None
        if context is None:
            reason = "no such docker context (`docker context ls` lists them)"
            raise EngineUnreachable("connect", reason, address=address,
                                    message=f"cannot reach the Docker engine at {address}: "
                                            f"{reason}")
        host = context.Host or DEFAULT_SOCKET
        kwargs: dict[str, Any] = {"base_url": host}
        if context.TLSConfig is not None:
            kwargs["tls"] = context.TLSConfig
        return kwargs
    env = kwargs_from_env()
    kwargs = {"base_url": address}
    # As with `docker -H tcp://...`: DOCKER_TLS_VERIFY / DOCKER_CERT_PATH apply to any TCP
    # address, not only to DOCKER_HOST's.
    if "tls" in env and address.startswith(("tcp://", "https://")):
        kwargs["tls"] = env["tls"]
    return kwargs


def connect(address: str | None = None, timeout: int = 600) -> docker.DockerClient:
    """A docker-py client for `address` (default: DOCKER_HOST / docker context), pinged."""
    import docker
    from docker.constants import MINIMUM_DOCKER_API_VERSION
    from docker.errors import DockerException

    shown = redact(address or default_address())
    try:
        kwargs = client_kwargs(address)
        shown = redact(str(kwargs["base_url"])) if "://" not in shown else shown
        log.debug("connecting to %s (tls: %s)", shown, "tls" in kwargs)
        tls = kwargs.get("tls")
        pin = tls is not None and bool(getattr(tls, "ca_cert", None))
        if pin:  # negotiate the API version only once the CA is pinned (see _pin_ca)
            kwargs["version"] = MINIMUM_DOCKER_API_VERSION
        client = docker.DockerClient(timeout=timeout,
                                     use_ssh_client=str(kwargs["base_url"]).startswith("ssh://"),
                                     **kwargs)
        if pin:
            _pin_ca(client)
            client.api._version = (  # type: ignore[attr-defined]
                client.api._retrieve_server_version())  # type: ignore[attr-defined]
        client.ping()
    except (DockerException, OSError, ValueError) as exc:  # ValueError: a URL's bad port
        reason = _reason(exc)
        raise EngineUnreachable("connect", reason, address=shown,
                                message=f"cannot reach the Docker engine at {shown}: "
                                        f"{reason}") from None
    return client


def _pin_ca(client: docker.DockerClient) -> None:
    """Make the engine's CA (DOCKER_CERT_PATH/ca.pem, or the context's) the one verified.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's own `verify` for
    every request (merge_environment_settings), so with either set, as on hosts behind a TLS
    proxy, docker-py would check the engine against the wrong CAs and fail. Not trusting the
    environment also drops proxy variables, so they are carried over explicitly.
    """
    from requests.utils import get_environ_proxies

    api = client.api
    api.proxies.update(get_environ_proxies(str(api.base_url)))
    api.trust_env = False


def _reason(exc: BaseException) -> str:
    """One line out of a docker-py / requests exception."""
    text = str(getattr(exc, "explanation", None) or exc).strip()
    # A URL or a helper's message may carry credentials (safety.redact).
    return redact((text.splitlines() or [type(exc).__name__])[0])


def _image_info(attrs: Mapping[str, Any]) -> ImageInfo:
    config = attrs.get("Config") or {}
    return ImageInfo(
        id=str(attrs["Id"]), tags=tuple(attrs.get("RepoTags") or ()),
        labels=dict(config.get("Labels") or {}), created=str(attrs.get("Created") or ""),
        size=int(attrs.get("Size") or 0), entrypoint=tuple(config.get("Entrypoint") or ()),
        env=tuple(config.get("Env") or ()))


def _push_event(chunk: Mapping[str, Any]) -> PushEvent:
    if "errorDetail" in chunk or "error" in chunk:
        detail = chunk.get("errorDetail") or {}
        message = detail.get("message") if isinstance(detail, dict) else None
        return PushEvent(error=str(message or chunk.get("error") or "unknown error"))
    aux = chunk.get("aux") or {}
    detail = chunk.get("progressDetail") or {}
    return PushEvent(status=str(chunk.get("status", "")), layer=chunk.get("id"),
                     progress=bool(detail.get("total")) or "progress" in chunk,
                     digest=aux.get("Digest") if isinstance(aux, dict) else None)


class DockerEngine(ContainerEngine):
    """A Docker engine through docker-py; connects (and pings) on first use."""

    def __init__(self, address: str | None = None, *, timeout: int = 120,
                 client: docker.DockerClient | None = None) -> None:
        self.address = address or default_address()
        self.timeout = timeout
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = connect(self.address, timeout=self.timeout)
            return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one docker-py call, its failures as EngineError."""
        from docker.errors import DockerException
        from requests.exceptions import RequestException

        log.debug("engine %s: %s", self.address, what)
        try:
            return fn()
        except (DockerException, RequestException, OSError) as exc:
            status = getattr(exc, "status_code", None)
            raise EngineError(what, _reason(exc), address=self.address,
                              status=status if isinstance(status, int) else None) from None

    # -- engine ------------------------------------------------------------------------------

    def ping(self) -> None:
        self._call("ping", self.client.ping)

    def version(self) -> str:
        return str(self._call("version", self.client.version).get("Version", "?"))

    def registry_config(self) -> dict[str, Any]:
        return dict(self._call("info", self.client.info).get("RegistryConfig") or {})

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- images ------------------------------------------------------------------------------

    def build(self, context: bytes | IO[bytes], *, tag: str | None = None,
              target: str | None = None, build_args: Mapping[str, str] | None = None,
              labels: Mapping[str, str] | None = None, network_mode: str | None = None,
              pull: bool = False, no_cache: bool = False, buildkit: BuildKit | None = None,
              cancel: threading.Event | None = None) -> Iterator[BuildEvent]:
        if buildkit is not None:
            data = context if isinstance(context, bytes) else context.read()
            return self._buildkit(data, tag, buildkit, cancel, target=target,
                                  build_args=dict(build_args or {}),
                                  labels=dict(labels or {}), network=network_mode,
                                  pull=pull, no_cache=no_cache)
        fileobj = io.BytesIO(context) if isinstance(context, bytes) else context
        api = self.client.api
        kwargs: dict[str, Any] = dict(
            fileobj=fileobj, custom_context=True, rm=True, forcerm=True, decode=True,
            nocache=no_cache, pull=pull, labels=dict(labels or {}),
            buildargs=dict(build_args or {}), tag=tag, target=target,
            network_mode=network_mode,
            timeout=None)  # a compile step may print nothing for an hour
        chunks = self._call("build", lambda: api.build(**kwargs))
        return self._build_events(chunks)

    def buildkit_version(self) -> str | None:
        from .buildx import buildx_version

        return buildx_version(address=self._buildx_address())

    def _buildx_address(self) -> str | None:
        """DOCKER_HOST for buildx: the address where the docker CLI reads it as one. A
        docker context's name, or docker-py's own `http+docker://` spelling of the local
        socket, is None: buildx then finds the engine as docker does (DOCKER_HOST, the
        current context)."""
        scheme = self.address.partition("://")[0] if "://" in self.address else ""
        return self.address if scheme in ("unix", "tcp", "ssh", "npipe", "fd") else None

    def _buildkit(self, data: bytes, tag: str | None, options: BuildKit,
                  cancel: threading.Event | None, **request: Any) -> Iterator[BuildEvent]:
        """The build through `docker buildx build` (engine/buildx.py), loaded into this
        engine; nothing is tagged unless `tag`, and only once the image is here."""
        from . import buildx

        image_id: str | None = None
        for event in buildx.build_events(buildx.BuildxRequest(
                data, address=self._buildx_address(), builder=options.builder,
                cache_from=options.cache_from, cache_to=options.cache_to, **request), cancel):
            if event.kind != IMAGE:
                yield event
                continue
            found = self.inspect_image(event.text)
            if found is None:
                yield BuildEvent(ERROR, f"buildx reported image {event.text}, which engine "
                                        f"{redact(self.address)} does not have (a builder "
                                        "that does not load into it?)")
                return
            image_id = found.id
        if image_id is None:
            return
        if tag and not (cancel and cancel.is_set()):
            self.tag(image_id, *tag.rsplit(":", 1))
        yield BuildEvent(IMAGE, image_id)

    def _build_events(self, chunks: Iterator[Mapping[str, Any]]) -> Iterator[BuildEvent]:
        from docker.errors import DockerException
        from requests.exceptions import RequestException

        image_id: str | None = None
        short_id: str | None = None
        partial = ""  # a step line may come in pieces
        try:
            for chunk in chunks:
                if "stream" in chunk:
                    text = str(chunk["stream"])
                    if text.startswith("Successfully built "):
                        short_id = text.split()[-1]
                    yield BuildEvent(OUTPUT, text)
                    *lines, partial = (partial + text).split("\n")
                    for line in lines:
                        m = _STEP.match(line.rstrip())
                        if m:
                            step = Step(int(m.group(1)), int(m.group(2)), m.group(3))
                            yield BuildEvent(STEP, step.instruction, step)
                elif "status" in chunk and "progress" not in chunk:
                    ident = f"{chunk['id']}: " if chunk.get("id") else ""
                    yield BuildEvent(STATUS, f"{ident}{chunk['status']}")
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = str(aux["ID"])
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    message = detail.get("message") if isinstance(detail, dict) else None
                    yield BuildEvent(ERROR, str(message or chunk.get("error")
                                                or "unknown build error").strip())
                    return  # after an error the engine ends the stream itself
        except (DockerException, RequestException, OSError) as exc:
            yield BuildEvent(ERROR, f"engine {self.address}: {_reason(exc)}")
            return
        if image_id is None and short_id is not None:
            found = self.inspect_image(short_id)
            image_id = found.id if found else None
        if image_id is None:
            yield BuildEvent(ERROR, "the engine reported no image id")
        else:
            yield BuildEvent(IMAGE, image_id)

    def inspect_image(self, ref: str) -> ImageInfo | None:
        from docker.errors import ImageNotFound, NotFound

        api = self.client.api
        try:
            attrs = self._call(f"inspect {ref}", lambda: _not_found_passes(
                lambda: api.inspect_image(ref),  # type: ignore[no-untyped-call]
                (ImageNotFound, NotFound)))
        except _NotFound:
            return None
        return _image_info(attrs)

    def tag(self, image: str, repository: str, tag: str) -> None:
        api = self.client.api
        self._call(f"tag {repository}:{tag}",
                   lambda: api.tag(image, repository, tag=tag, force=True))

    def remove_image(self, ref: str, *, force: bool = False, prune: bool = True) -> bool:
        from docker.errors import ImageNotFound, NotFound

        api = self.client.api
        try:
            self._call(f"remove {ref}", lambda: _not_found_passes(
                lambda: api.remove_image(ref, force=force, noprune=not prune),
                (ImageNotFound, NotFound)))
        except _NotFound:
            return False
        return True

    def list_images(self, *, label: str | None = None, repository: str | None = None
                    ) -> list[ImageInfo]:
        api = self.client.api
        filters = {"label": label} if label else None
        listed = self._call("list images", lambda: api.images(name=repository,
                                                               filters=filters))
        out = []
        for row in listed:
            info = self.inspect_image(str(row["Id"]))
            if info is not None:
                out.append(info)
        return out

    def pull(self, repository: str, tag: str) -> Iterator[PushEvent]:
        api = self.client.api
        chunks = self._call(f"pull {repository}:{tag}", lambda: list(api.pull(
            repository, tag=tag, stream=True, decode=True)))
        for chunk in chunks:
            event = _push_event(chunk)
            if event.error:
                raise EngineError(f"pull {repository}:{tag}", event.error,
                                  address=self.address)
            yield event

    def push(self, repository: str, tag: str, auth: Mapping[str, str] | None = None
             ) -> Iterator[PushEvent]:
        api = self.client.api
        chunks = self._call(f"push {repository}:{tag}", lambda: api.push(
            repository, tag=tag, stream=True, decode=True,
            auth_config=dict(auth) if auth else None))
        return self._push_events(f"push {repository}:{tag}", chunks)

    def _push_events(self, what: str, chunks: Iterator[Mapping[str, Any]]
                     ) -> Iterator[PushEvent]:
        from docker.errors import DockerException
        from requests.exceptions import RequestException

        try:
            for chunk in chunks:
                yield _push_event(chunk)
        except (DockerException, RequestException, OSError) as exc:
            name = type(exc).__name__
            raise EngineUnreachable(what, name, address=self.address, message=(
                f"engine {self.address}: {what}: lost the connection to the Docker engine "
                f"({name})")) from None

    def distribution_digest(self, ref: str, auth: Mapping[str, str] | None = None) -> str:
        api = self.client.api
        info = self._call(f"inspect distribution {ref}",
                          lambda: api.inspect_distribution(  # type: ignore[no-untyped-call]
                              ref, auth_config=dict(auth) if auth else None))
        return str(info["Descriptor"]["digest"])

    # -- containers --------------------------------------------------------------------------

    def create_container(self, spec: ContainerSpec) -> str:
        client = self.client
        kwargs: dict[str, Any] = dict(
            command=list(spec.command) if spec.command is not None else None,
            name=spec.name, environment=dict(spec.environment), devices=list(spec.devices),
            group_add=list(spec.group_add), security_opt=list(spec.security_opt) or None,
            ipc_mode=spec.ipc_mode, network_mode=spec.network_mode, labels=dict(spec.labels),
            shm_size=spec.shm_size, user=spec.user, working_dir=spec.working_dir,
            detach=True)
        if spec.mounts:
            from docker.types import Mount

            # Structured mounts: no path is parsed out of a "src:dst:mode" string.
            kwargs["mounts"] = [Mount(m.target, m.source,
                                      type="volume" if m.volume else "bind",
                                      read_only=m.readonly)
                                for m in spec.mounts]
        container = self._call(f"create a container of {spec.image}",
                               lambda: client.containers.create(spec.image, **kwargs))
        return str(container.id)

    def start_container(self, container: str) -> None:
        api = self.client.api
        self._call(f"start {container[:12]}", lambda: api.start(container))

    def remove_container(self, container: str) -> None:
        from docker.errors import APIError, NotFound

        try:
            self.client.api.remove_container(container, force=True, v=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise EngineError(f"remove container {container[:12]}", _reason(exc),
                                  address=self.address, status=exc.status_code) from None

    def list_containers(self, *, label: str) -> list[ContainerInfo]:
        api = self.client.api
        rows = self._call("list containers", lambda: api.containers(
            all=True, filters={"label": label}))
        return [ContainerInfo(str(r["Id"]), str((r.get("Names") or ["/"])[0]).lstrip("/"),
                              str(r.get("Image", "")), str(r.get("State", "")),
                              dict(r.get("Labels") or {})) for r in rows]

    def exec(self, container: str, command: Sequence[str],
             on_output: Callable[[bytes], None] | None = None, *,
             on_stderr: Callable[[bytes], None] | None = None) -> int:
        api = self.client.api
        exec_id = self._call("exec", lambda: api.exec_create(
            container, list(command), stdout=True, stderr=True))["Id"]

        def run() -> int:
            if on_stderr is None:
                for chunk in api.exec_start(exec_id, stream=True):
                    if on_output:
                        on_output(chunk)
            else:  # demultiplexed: (stdout, stderr) frames, one of the two None
                for out, err in api.exec_start(exec_id, stream=True, demux=True):
                    if out and on_output:
                        on_output(out)
                    if err:
                        on_stderr(err)
            return int(api.exec_inspect(exec_id)["ExitCode"])

        return self._call(f"exec {command[0] if command else ''}", run)

    def read_file(self, container: str, path: str) -> bytes | None:
        from docker.errors import NotFound

        api = self.client.api
        try:
            stream, _ = self._call(f"copy {path} out", lambda: _not_found_passes(
                lambda: api.get_archive(container, path), (NotFound,)))
        except _NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            f = tar.extractfile(member) if member else None
            return f.read() if f else None


    def export_container(self, container: str) -> Iterator[bytes]:
        api = self.client.api
        response = self._call(f"export {container[:12]}", lambda: api.export(
            container, chunk_size=EXPORT_CHUNK))
        return self._export_chunks(container, response)

    def _export_chunks(self, container: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        from docker.errors import DockerException
        from requests.exceptions import RequestException

        try:
            yield from chunks
        except (DockerException, RequestException, OSError) as exc:
            raise EngineError(f"export {container[:12]}", _reason(exc),
                              address=self.address) from None

    # -- volumes -----------------------------------------------------------------------------

    def ensure_volume(self, name: str, labels: Mapping[str, str], *, empty: bool = False
                      ) -> bool:
        emptied = empty and self.remove_volume(name)
        api = self.client.api
        # Creating a volume that exists returns it unchanged: no race between two runs.
        self._call(f"create volume {name}", lambda: api.create_volume(
            name, labels=dict(labels)))
        return emptied

    def remove_volume(self, name: str) -> bool:
        from docker.errors import NotFound

        api = self.client.api
        try:
            self._call(f"remove volume {name}", lambda: _not_found_passes(
                lambda: api.remove_volume(name, force=True), (NotFound,)))
        except _NotFound:
            return False
        return True

    def list_volumes(self, *, label: str) -> list[str]:
        api = self.client.api
        found = self._call("list volumes", lambda: api.volumes(filters={"label": label}))
        return sorted(str(v["Name"]) for v in (found or {}).get("Volumes") or ())


def registry_login(host: str) -> dict[str, str] | None:
    """The login docker-py would use for a registry host (config auths, credsStore,
    credHelpers), or None; a failing credential helper is one EngineError line."""
    from docker import auth
    from docker.errors import DockerException

    try:
        found = auth.load_config().resolve_authconfig(host)
    except DockerException as exc:
        raise EngineError(f"cannot read Docker's credentials for {host}", _reason(exc)
                          ) from None
    return {str(k): str(v) for k, v in found.items()} if found else None


class _NotFound(Exception):
    """docker-py's NotFound, passed through _call untouched."""


def _not_found_passes(fn: Callable[[], T], kinds: tuple[type[BaseException], ...]) -> T:
    try:
        return fn()
    except kinds:
        raise _NotFound() from None


def open_engine(address: str | None = None, timeout: int = 120) -> DockerEngine:
    """The engine at `address` (default: DOCKER_HOST / context), pinged: an unreachable
    engine is one EngineUnreachable line naming the address."""
    engine = DockerEngine(address, timeout=timeout)
    engine.client  # noqa: B018 - connects and pings
    return engine
