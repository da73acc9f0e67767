"""Where a registry login comes from: the command line, the environment, or Docker's config.

Order: `--username` + `--password-stdin`, then IMAGEFACTORY_REGISTRY_USERNAME/_PASSWORD,
then what docker-py reads from ~/.docker/config.json (auths and credential helpers). Nothing
is ever written to Docker's config: the login travels to the engine with each push only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO

from ..errors import UsageError
from .registry import Credentials, Target

ENV_USER = "IMAGEFACTORY_REGISTRY_USERNAME"
ENV_PASSWORD = "IMAGEFACTORY_REGISTRY_PASSWORD"


def resolve(target: Target, username: str | None, password_stdin: bool, stdin: TextIO,
            environ: Mapping[str, str] | None = None) -> Credentials | None:
    env = os.environ if environ is None else environ
    if password_stdin:
        if not username:
            raise UsageError("--password-stdin needs --username")
        # Like `docker login --password-stdin`: the first line, without its line ending.
        password = stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: nothing was read from standard input")
        return Credentials(username, password, "--password-stdin")
    if env.get(ENV_PASSWORD) or env.get(ENV_USER):
        user = username or env.get(ENV_USER)
        if not user or not env.get(ENV_PASSWORD):
            raise UsageError(f"set both {ENV_USER} and {ENV_PASSWORD} (or neither)")
        return Credentials(user, env[ENV_PASSWORD], "environment")
    if username:
        raise UsageError(f"--username {username} needs a password: pipe it to "
                         f"--password-stdin or set {ENV_PASSWORD}")
    return from_docker_config(target)


def from_docker_config(target: Target) -> Credentials | None:
    """The login docker-py would use for `target` (config auths, credsStore, credHelpers)."""
    from docker import auth
    from docker.errors import DockerException

    try:
        found = auth.load_config().resolve_authconfig(target.host)
    except DockerException as exc:  # a failing credential helper: say so, without secrets
        raise UsageError(f"cannot read Docker's credentials for {target.host}: "
                         f"{str(exc).splitlines()[0]}") from None
    if not found:
        return None
    user = found.get("Username") or found.get("username")
    secret = found.get("Password") or found.get("password")
    if user and secret:
        return Credentials(user, secret, "docker config")
    token = found.get("IdentityToken") or found.get("identitytoken")
    if token:
        # An OAuth refresh token (`docker login` against some registries): only the engine
        # knows how to trade it for access, so the post-push check goes through the engine.
        return Credentials(user or "<token>", token, "docker config", identity_token=True)
    return None
