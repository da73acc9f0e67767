"""The layer rules (pyproject.toml [tool.importlinter], #26) hold for the package, and each
contract catches the import it forbids: the real lint-imports on a copy of the package
with one bad import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert exe, "lint-imports is missing: pip install -e '.[test]'"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([exe, "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_package_keeps_every_contract() -> None:
    out = _lint(REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "4 kept, 0 broken" in out.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("matrix/yamlsource.py", "import docker", "nothing outside engine/ imports docker"),
    ("render/context.py", "from docker import errors", "nothing outside engine/ imports docker"),
    ("matrix/recipes.py", "from ..commands import build", "commands > stages"),
    ("engine/images.py", "from ..verify import results", "commands > stages"),
    ("host/gpuinfo.py", "from ..verify import known", "commands > stages"),
    ("report/writer.py", "from ..publish import registry", "commands > stages"),
    ("verify/tester.py", "from . import run", "runs > stages"),
    # convcheck is the lowest layer: it imports nothing of imagefactory
    ("../convcheck/vocabulary.py", "from imagefactory import safety", "commands > stages"),
    # #26's circle, cli -> runner -> zygote -> cli, stays broken
    ("../convcheck/zygote.py", "from convcheck import cli", "convcheck: command line"),
])
def test_each_contract_catches_what_it_forbids(tmp_path: Path, module: str, line: str,
                                               broken: str) -> None:
    shutil.copytree(REPO / "imagefactory", tmp_path / "imagefactory",
                    ignore=shutil.ignore_patterns("__pycache__", "_shipped"))
    shutil.copytree(REPO / "dockerfiles" / "files" / "python" / "convcheck",
                    tmp_path / "convcheck", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "imagefactory" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    out = _lint(tmp_path)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr
    assert f"{broken}" in out.stdout.split("Broken contracts")[1], out.stdout[-3000:]
