"""The GitHub workflows: actions pinned by commit (the tag in a comment), no persisted
checkout credentials, least permissions at the top of every workflow, and zizmor (run by
scripts/test.sh too) finds nothing in .github."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
_PINNED = re.compile(r"\s*-?\s*uses:\s*[\w.-]+/[\w./-]+@[0-9a-f]{40}\s+#\s*v\d+(\.\d+)*\s*")


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in doc["jobs"].values() for s in job.get("steps", [])]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_by_commit(path: Path) -> None:
    lines = [line for line in path.read_text().splitlines() if re.match(r"\s*-?\s*uses:", line)]
    assert lines, f"{path.name} uses no action?"
    unpinned = [line.strip() for line in lines if not _PINNED.fullmatch(line)]
    assert not unpinned, f"{path.name}: not pinned by commit with its tag: {unpinned}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkouts_drop_credentials_and_permissions_are_set(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert "permissions" in doc, f"{path.name}: no top-level permissions"
    assert doc["permissions"] in ({}, {"contents": "read"}), doc["permissions"]
    for step in _steps(doc):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, step


def test_zizmor_finds_nothing_in_github_folder() -> None:
    zizmor = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    run = subprocess.run([zizmor, "--offline", str(ROOT / ".github")], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No findings" in run.stdout + run.stderr
