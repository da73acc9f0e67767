"""Handing a run to the docker CLI: `imagefactory run` execs the very argv `run --print`
shows (engine/runspec.py builds it), so TTY, signals and the exit code are docker's own."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

from ..errors import JobError


def exec_docker_cli(argv: list[str]) -> NoReturn:
    """Replace this process with `docker argv[1:]`; a missing CLI is one JobError line."""
    docker = shutil.which("docker")
    if docker is None:
        raise JobError("the docker command is not installed; install the Docker CLI "
                       "(docker-ce-cli or docker.io), or run the line `--print` shows elsewhere")
    os.execv(docker, argv)
