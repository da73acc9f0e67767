"""Unexpected errors: one line naming the crash report; --debug / IMAGEFACTORY_DEBUG=1
show the traceback and debug logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
# `imagefactory list` with a bug planted where the matrix is loaded.
BUGGY = ("import sys, imagefactory.project as p\n"
         "def boom(*a, **k):\n    return 1 / 0\n"
         "p.load_matrix = boom\n"
         "from imagefactory.cli import main\nmain(sys.argv[1:])\n")


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), **env}
    if "IMAGEFACTORY_DEBUG" not in env:
        environ.pop("IMAGEFACTORY_DEBUG", None)
    return subprocess.run([sys.executable, "-c", BUGGY, *args], capture_output=True,
                          text=True, env=environ, cwd=REPO, timeout=60)


def test_a_bug_is_one_line_naming_the_traceback_file(tmp_path: Path) -> None:
    r = run(["list"], tmp_path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("imagefactory: internal error: ZeroDivisionError: division by "
                               "zero; full traceback in ")
    path = Path(lines[0].split("full traceback in ", 1)[1].split(" (please", 1)[0])
    assert path.parent == tmp_path / "cache" / "imagefactory" / "crashes"
    text = path.read_text()
    assert text.startswith("imagefactory list\n") and "Traceback (most recent call last)" in text
    assert 'line 3, in boom' in text


@pytest.mark.parametrize("how", ["--debug", "IMAGEFACTORY_DEBUG=1"])
def test_debug_shows_the_traceback(tmp_path: Path, how: str) -> None:
    if how == "--debug":
        r = run(["--debug", "list"], tmp_path)
    else:
        r = run(["list"], tmp_path, IMAGEFACTORY_DEBUG="1")
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr and "in boom" in r.stderr
    assert r.stderr.splitlines()[-1].startswith("imagefactory: internal error: ")


def test_debug_logs_engine_calls(tmp_path: Path) -> None:
    address = f"unix://{tmp_path}/no.sock"
    r = subprocess.run([sys.executable, "-m", "imagefactory", "--debug", "build", "cpu",
                        "--engine", address], capture_output=True, text=True, cwd=REPO,
                       timeout=60)
    assert r.returncode == 1
    assert f"imagefactory: DEBUG: imagefactory.engine.docker_engine: connecting to {address}" \
        in r.stderr
    assert r.stderr.splitlines()[-1].startswith(
        f"imagefactory: error: cannot reach the Docker engine at {address}")
