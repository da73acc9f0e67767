"""Registry addresses and the registry's own view of a pushed tag (the HTTP API v2).

The post-push check asks the registry directly, not the engine that pushed, so a digest the
engine reported but the registry does not serve is caught. Stdlib only (urllib).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from ..errors import JobError, UsageError
from ..reference import NAME_TOTAL_MAX, is_domain, is_path_component

# What `docker push` produces (schema2) and what other tools push (OCI), single or multi-arch.
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Credentials:
    """A registry login. The secret never shows in repr(), logs or records."""

    username: str
    password: str = field(repr=False)
    source: str = ""  # where they came from, for messages: "--password-stdin", "environment", ...
    identity_token: bool = False  # `password` is an OAuth refresh token from `docker login`

    def auth_config(self) -> dict[str, str]:
        """What docker-py sends to the engine (X-Registry-Auth), never to stdout."""
        if self.identity_token:
            return {"identitytoken": self.password}
        return {"username": self.username, "password": self.password}


@dataclass(frozen=True)
class Target:
    """`--registry HOST[:PORT]/NAMESPACE`: where published images go."""

    host: str
    namespace: str

    @classmethod
    def parse(cls, text: str) -> Target:
        # No whitespace stripped: the grammar (reference.py, fullmatch) refuses a newline.
        raw = text.removeprefix("https://").removeprefix("http://").strip("/")
        host, _, namespace = raw.partition("/")
        # Docker's rule: a first component is a registry host only with a dot, a port or
        # `localhost`; anything else would silently mean Docker Hub.
        if not raw or not is_domain(host) or not (
                "." in host or ":" in host or host == "localhost"):
            raise UsageError(f"--registry {text!r}: give a registry host and a namespace, "
                             "e.g. ghcr.io/OWNER, docker.io/USER or 127.0.0.1:5000/NAMESPACE")
        parts = namespace.split("/") if namespace else []
        for part in parts:
            if not is_path_component(part):
                raise UsageError(f"--registry {text!r}: '{part}' is not a valid repository "
                                 "path component (lowercase letters, digits, . _ -)")
        if len(raw) > NAME_TOTAL_MAX:
            raise UsageError(f"--registry: longer than {NAME_TOTAL_MAX} characters")
        if host.lower() in _HUB_ALIASES:
            host = DOCKER_HUB
        return cls(host.lower(), namespace)

    def repository(self, name: str) -> str:
        """The full repository of image `name`, as the engine tags and pushes it."""
        return "/".join(p for p in (self.host, self.namespace, name) if p)

    def api_name(self, name: str) -> str:
        """The repository name in the registry's HTTP API (no host)."""
        path = "/".join(p for p in (self.namespace, name) if p)
        if self.host == DOCKER_HUB and "/" not in path:
            path = "library/" + path
        return path

    @property
    def is_loopback(self) -> bool:
        host = self.hostname
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def hostname(self) -> str:
        host = self.host
        if host.startswith("["):
            return host[1:host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    def api_base(self, insecure: bool) -> str:
        if self.host == DOCKER_HUB:
            return "https://registry-1.docker.io"
        return f"{'http' if insecure else 'https'}://{self.host}"


def engine_treats_insecure(target: Target, registry_config: dict[str, Any] | None) -> bool:
    """Whether the engine talks plain HTTP to `target` (loopback, or configured insecure)."""
    if target.is_loopback:
        return True
    config = registry_config or {}
    index = (config.get("IndexConfigs") or {}).get(target.host) or {}
    if index.get("Secure") is False:
        return True
    try:
        ip = ipaddress.ip_address(target.hostname)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(cidr, strict=False)
               for cidr in config.get("InsecureRegistryCIDRs") or [])


class RegistryError(JobError):
    """The registry answered something other than the manifest; `transient` if worth a retry."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def _request(url: str, headers: dict[str, str], auth: str | None, timeout: float
             ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers, method="GET")
    if auth:
        # Unredirected: a redirect to another host (a CDN) must not receive the login.
        req.add_unredirected_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryError(f"cannot reach the registry at {_origin(url)}: {reason}",
                            transient=True) from None


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _basic(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _token(challenge: str, name: str, creds: Credentials | None, timeout: float) -> str:
    """A pull token from the realm a Bearer challenge names (GHCR, Docker Hub, ...)."""
    params = dict(_CHALLENGE_PARAM.findall(challenge))
    realm = params.get("realm")
    if not realm:
        raise RegistryError(f"the registry's auth challenge names no token realm: {challenge}")
    query = {"scope": params.get("scope") or f"repository:{name}:pull"}
    if params.get("service"):
        query["service"] = params["service"]
    url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
    status, _, body = _request(url, {}, _basic(creds) if creds else None, timeout)
    if status in (401, 403):
        raise RegistryError(f"the registry's token service ({_origin(url)}) refused the "
                            f"credentials (HTTP {status})")
    if status != 200:
        raise RegistryError(f"the registry's token service ({_origin(url)}) answered HTTP "
                            f"{status}", transient=status >= 500)
    try:
        data = json.loads(body)
        return str(data.get("token") or data["access_token"])
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"the registry's token service ({_origin(url)}) sent no token"
                            ) from None


def manifest_digest(base_url: str, name: str, reference: str, creds: Credentials | None,
                    timeout: float = 30) -> str:
    """The digest the registry serves for `name:reference` (its Docker-Content-Digest)."""
    url = f"{base_url}/v2/{name}/manifests/{reference}"
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    status, resp_headers, body = _request(url, headers, None, timeout)
    if status == 401:
        challenge = _header(resp_headers, "WWW-Authenticate") or ""
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if creds is None:
                raise RegistryError(f"the registry at {base_url} needs credentials to read "
                                    f"{name}:{reference}")
            auth = _basic(creds)
        elif scheme == "bearer":
            auth = "Bearer " + _token(challenge, name, creds, timeout)
        else:
            raise RegistryError(f"the registry at {base_url} asks for unsupported auth "
                                f"{scheme or '(none named)'}")
        status, resp_headers, body = _request(url, headers, auth, timeout)
    if status != 200:
        what = {401: "refused the credentials", 403: "denied access",
                404: "has no such manifest"}.get(status, f"answered HTTP {status}")
        raise RegistryError(f"the registry at {base_url} {what} for {name}:{reference}",
                            transient=status >= 500)
    digest = _header(resp_headers, "Docker-Content-Digest")
    # The header is optional in the spec; the digest of the exact bytes is the same thing.
    return digest or "sha256:" + hashlib.sha256(body).hexdigest()
