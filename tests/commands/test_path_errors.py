"""A path the file system refuses is one line naming it, never an internal error (#25)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LONG = "a" * 300  # longer than any file name a Linux file system takes (NAME_MAX 255)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagefactory", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [("--config", LONG, "list"), ("report", "--results", LONG),
                                  ("--config", f"{LONG}/variants.yaml", "render")])
def test_a_too_long_name_is_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("imagefactory: error: ") and "File name too long" in line
    assert "internal error" not in line and "Traceback" not in proc.stderr


def test_a_path_through_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = _run("report", "--results", "file/results", cwd=tmp_path)
    assert proc.returncode in (1, 2), proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("imagefactory: error: ") and "internal error" not in line
