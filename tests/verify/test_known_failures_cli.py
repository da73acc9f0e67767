"""Known failures end to end: `imagefactory test` on the real cpu image, with real faults
injected into the conv check's children (convcheck's IMAGEFACTORY_CONVCHECK_FAULTS hook,
passed as the variant's run-time env in a config copy), then `imagefactory report`.

The env is part of the image (an ENV line), so the copy is a different image: the test builds
it under a repository of its own (cached layers of the session's cpu image, then the ENV and
user layers) and removes it after, instead of needing an image only a warm engine has."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from suite_session import CPU_CONFIG, unique

from imagefactory.report import writer as report_writer

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from imagefactory.cli import main; main()"]
CASES = "conv2d-k1-c64-64x64-fwd,matmul-512-fwd,conv2d-k3-c16to32-32x32-fwd"

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _config(tmp_path: Path, known_globs: list[str], repository: str) -> Path:
    text = CPU_CONFIG.read_text()
    text, n = re.subn(r"(?m)^repository: .*$", f"repository: {repository}", text, count=1)
    assert n == 1
    old = "    profiles: [im2col]\n    recipe:\n      apt_packages:"
    assert old in text
    known = "".join(
        f"      - cases: [\"{g}\"]\n        reason: test fault {g}\n"
        f"        source: https://example.org/{g.strip('*-')}\n" for g in known_globs)
    new = ("    profiles: [im2col]\n"
           "    env:\n"
           "      IMAGEFACTORY_CONVCHECK_FAULTS: \"conv2d-k1-*=no-kernel,matmul-512-*=no-kernel\"\n"
           "    known_failures:\n" + known +
           "    recipe:\n      apt_packages:")
    path = tmp_path / "variants.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "IMAGEFACTORY_RUN_ID": f"known-{os.getpid()}"})


@pytest.fixture
def fault_repository(cpu_image: str, engine, tmp_path: Path) -> Iterator[str]:
    """A repository of this session holding the cpu variant built with the fault env (the
    known failures are labels only: both configs below build the same image)."""
    repository = unique("known")
    config = _config(tmp_path, [], repository)
    proc = _run(["--config", str(config), "build", "cpu"], tmp_path)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield repository
    finally:
        for image in engine.list_images(repository=repository):
            for tag in image.tags:
                engine.remove_image(tag, prune=False)


def test_known_fixed_and_regression_in_test_and_report(fault_repository: str, tmp_path: Path
                                                       ) -> None:
    # conv2d-k1 fails as declared (known), conv2d-k3-c16to32-32x32-fwd is declared but
    # passes (fixed), matmul fails undeclared (regression): the run fails on matmul alone.
    config = _config(tmp_path, ["conv2d-k1-*", "conv2d-k3-c16to32-32x32-fwd"], fault_repository)
    res = tmp_path / "res"
    proc = _run(["--config", str(config), "test", "cpu", "--quick", "--cases", CASES,
                 "--results", str(res)], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "known  conv2d-k1-c64-64x64-fwd: no-kernel (test fault conv2d-k1-*; " \
           "https://example.org/conv2d-k1)" in out
    assert "FIXED  conv2d-k3-c16to32-32x32-fwd: ok" in out
    assert "REGR   matmul-512-fwd: no-kernel" in out
    assert "1 of 1 variant(s) failed: cpu (conv matmul-512-fwd: no-kernel)" in out
    data = json.loads((res / "cpu.quick.json").read_text())
    cases = {c["case"]: c for c in data["conv"]}
    assert cases["conv2d-k1-c64-64x64-fwd"]["verdict"] == "known"
    assert cases["conv2d-k1-c64-64x64-fwd"]["known_reason"] == "test fault conv2d-k1-*"
    assert cases["conv2d-k1-c64-64x64-fwd"]["known_source"] == "https://example.org/conv2d-k1"
    assert cases["conv2d-k3-c16to32-32x32-fwd"]["verdict"] == "fixed"
    assert cases["matmul-512-fwd"]["verdict"] == "regression"
    assert data["conv_verdicts"] == {"fixed": 1, "known": 1, "regression": 1}
    assert data["passed"] is False

    # Declare matmul too: only known failures left, the run passes.
    config = _config(tmp_path, ["conv2d-k1-*", "matmul-512-*"], fault_repository)
    proc = _run(["--config", str(config), "test", "cpu", "--quick", "--cases", CASES,
                 "--results", str(res)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cpu: PASSED" in proc.stdout
    data = json.loads((res / "cpu.quick.json").read_text())
    assert data["passed"] is True and data["conv_verdicts"] == {"ok": 1, "known": 2}

    out_dir = tmp_path / "report"
    proc = _run(["--config", str(config), "report", "--results", str(res), "--out",
                 str(out_dir)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    md = (out_dir / "COMPATIBILITY.md").read_text()
    assert "## Known failures" in md and "### no AMD GPU" in md
    # Result text is inert Markdown in the report (escaped; case ids in code spans).
    esc = report_writer._md_escape
    assert (f"- cpu `matmul-512-fwd`: {esc('no-kernel')}: {esc('test fault matmul-512-*')} "
            f"({esc('https://example.org/matmul-512')})") in md
    assert "| `matmul-512-fwd` | no-kernel (known) |" in md
    assert "2 known" in md
    report = json.loads((out_dir / "compatibility.json").read_text())
    (row,) = report["rows"]
    assert row["verdicts"] == {"known": 2}
    assert row["cells"]["matmul-512-fwd"]["verdict"] == "known"
    assert row["cells"]["conv2d-k3-c16to32-32x32-fwd"]["verdict"] == "ok"
