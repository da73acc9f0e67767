"""A second dockerd of the suite's own, for tests that need an engine other than the host's:
own socket, data and exec roots, no iptables, and its own bridge made here. Not
`--bridge=none`: at startup that deletes the host's docker0, which breaks the first engine's
containers. It starts with nothing but `debian:bookworm-slim`, copied from the first engine."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def second_dockerd(docker_client: Any, what: str, subnet: int) -> Iterator[str]:
    """The address of a fresh dockerd; `what` names the test in messages and paths, `subnet`
    picks 10.<subnet>.x.1/24 for its bridge (distinct per caller)."""
    if shutil.which("dockerd") is None or shutil.which("ip") is None or os.geteuid() != 0:
        pytest.fail(f"the {what} test needs dockerd, ip and root (scripts/setup-test-env.sh)")
    import docker

    root = Path(tempfile.mkdtemp(prefix=f"iftest-{what}-dockerd-", dir="/tmp"))
    address = f"unix://{root}/docker.sock"
    bridge = f"if{what[:4]}-{uuid.uuid4().hex[:6]}"  # interface names: at most 15 characters
    _ip("link", "add", bridge, "type", "bridge")
    log = (root / "dockerd.log").open("w")
    proc = None
    try:
        _ip("addr", "add", f"10.{subnet}.{uuid.uuid4().int % 250 + 1}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        proc = subprocess.Popen(
            ["dockerd", "--host", address, "--data-root", str(root / "data"), "--exec-root",
             str(root / "exec"), "--pidfile", str(root / "docker.pid"), f"--bridge={bridge}",
             "--iptables=false"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                client = docker.DockerClient(base_url=address)
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"second dockerd did not start: {root / 'dockerd.log'}")
                time.sleep(0.5)
        image = docker_client.images.get("debian:bookworm-slim")
        client.images.load(b"".join(image.save(named=True)))
        client.close()
        yield address
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
