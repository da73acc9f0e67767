"""A real registry for push tests: Debian's `docker-registry` (distribution 2.x) on 127.0.0.1.

The engine treats 127.0.0.0/8 as insecure-allowed, so plain HTTP works without TLS setup.
Each instance has its own port, storage folder and log file, so parallel runs don't meet.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

V2 = Path("docker/registry/v2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """One `docker-registry serve` process; `users` maps user -> password (htpasswd, bcrypt)."""

    def __init__(self, root: Path, users: dict[str, str] | None = None) -> None:
        self.root = root
        self.users = users or {}
        self.port = free_port()
        self.storage = root / "data"
        self.log_path = root / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        self.root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.users:
            htpasswd = self.root / "htpasswd"
            lines = []
            for user, password in self.users.items():
                # -B: bcrypt, the only hash distribution accepts; -b takes the password as an
                # argument, fine for a throwaway test login.
                out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                                     capture_output=True, text=True).stdout
                lines.append(out.strip())
            htpasswd.write_text("\n".join(lines) + "\n")
            auth = (f"auth:\n  htpasswd:\n    realm: imagefactory-test\n"
                    f"    path: {htpasswd}\n")
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: {secrets.token_hex(16)}\n" + auth)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_path.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2).close()
                return self
            except urllib.error.HTTPError as exc:  # 401 with auth on: it answers
                if exc.code == 401:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.host}")

    def kill(self) -> None:
        """Gone at once, as a crashed or unplugged registry would be."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    # What is stored, read from the filesystem the registry writes.
    def repositories(self) -> list[str]:
        base = self.storage / V2 / "repositories"
        if not base.is_dir():
            return []
        return sorted(str(p.parent.relative_to(base)) for p in base.rglob("_manifests"))

    def blobs(self) -> set[str]:
        base = self.storage / V2 / "blobs"
        return {p.parent.name for p in base.rglob("data")} if base.is_dir() else set()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
