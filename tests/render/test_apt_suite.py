"""The repo.radeon.com apt distribution of every ROCm line comes from one rule
(imagefactory/render/rocm_apt.py `apt_suite`, printed by the templates): `xenial` up to
ROCm 4.1, `ubuntu` from 4.2 to 5.2, the Ubuntu codename from 5.3 on.
Checked against the known history, and (ROCM_DOCKER_SRC set) against every version of AMD's
own ROCm-docker Dockerfiles."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.errors import ConfigError
from imagefactory.render.renderer import Renderer
from imagefactory.render.rocm_apt import apt_suite

ROCM = ["rocm52-torch113", "rocm52-torch20", "rocm54-source", "rocm62-patched", "rocm62-native"]
APT_LINE = re.compile(r"https://repo\.radeon\.com/rocm/apt/(\S+) (\S+) main")


@pytest.fixture(scope="module")
def suite() -> Callable[[str, str], str]:
    return apt_suite


# (ROCm release, Ubuntu codename, distribution AMD published it under). Sources: ROCm/ROCm-docker
# dev/Dockerfile-ubuntu-20.04 at 9e9a8fd (4.1): `xenial`; f01f263 (4.2), 6518b21 (4.5.2),
# 3fd249a (5.1.3), 288cb05 (5.2.3): `ubuntu`; 1875cf7 (5.3), 1a7edda (5.4): `focal`;
# dev/Dockerfile-ubuntu-22.04 at a22917e (5.3), 1762a3f (6.1.1): `jammy`, 6c15a9c (6.4)
# dev/Dockerfile-ubuntu-24.04: `noble`; PyTorch's install_rocm.sh switches at 5.3 the same way.
HISTORY = [
    ("4.1", "focal", "xenial"),
    ("4.1.1", "focal", "xenial"),
    ("4.2", "focal", "ubuntu"),
    ("4.5.2", "focal", "ubuntu"),
    ("5.1.3", "focal", "ubuntu"),
    ("5.2", "focal", "ubuntu"),
    ("5.2.3", "focal", "ubuntu"),
    ("5.3", "jammy", "jammy"),
    ("5.3", "focal", "focal"),
    ("5.4.3", "focal", "focal"),
    ("6.1.1", "jammy", "jammy"),
    ("6.2.4", "jammy", "jammy"),
    ("6.4", "noble", "noble"),
    ("10.0", "noble", "noble"),
]


@pytest.mark.parametrize(("rocm", "codename", "expected"), HISTORY)
def test_suite_matches_known_history(suite, rocm: str, codename: str, expected: str) -> None:
    assert suite(rocm, codename) == expected


@given(major=st.integers(0, 99), minor=st.integers(0, 99), patch=st.integers(0, 99),
       codename=st.sampled_from(["focal", "jammy", "noble"]))
def test_suite_rule_for_any_version(major: int, minor: int, patch: int, codename: str) -> None:
    got = apt_suite(f"{major}.{minor}.{patch}", codename)
    expected = ("xenial" if (major, minor) < (4, 2) else
                "ubuntu" if (major, minor) < (5, 3) else codename)
    assert got == expected


@pytest.mark.parametrize("bad", ["latest", "5.x", "x.2", "6", "", "5.2.3 jammy"])
def test_suite_refuses_a_non_numeric_version(bad: str) -> None:
    with pytest.raises(ValueError, match="is not numeric"):
        apt_suite(bad, "jammy")


@given(st.text(max_size=20))
def test_suite_never_fails_other_than_value_error(text: str) -> None:
    try:
        got = apt_suite(text, "jammy")
    except ValueError:
        return
    assert got in ("xenial", "ubuntu", "jammy")


@pytest.mark.parametrize("name", ROCM)
def test_every_rendered_apt_line_follows_the_rule(project, suite, name: str) -> None:
    variant = project.matrix.get(name)
    text = Renderer(project).render(variant).dockerfile
    lines = APT_LINE.findall(text)
    if name == "rocm52-torch113":
        assert not lines  # the wheel bundles its ROCm libraries: no ROCm apt repo at all
        return
    assert lines, f"{name}: no repo.radeon.com line"
    for release, dist in lines:
        assert release == variant.rocm
        assert dist == suite(release, variant.recipe["codename"]), (name, release, dist)


def test_rocm523_uses_ubuntu_not_focal(project) -> None:
    """Issue 10 defect 4: `apt/5.2.3 focal` does not exist, apt-get update failed."""
    text = Renderer(project).render(project.matrix.get("rocm52-torch20")).dockerfile
    assert APT_LINE.findall(text) == [("5.2.3", "ubuntu")] * 2


def test_a_broken_version_is_a_config_error(project) -> None:
    """Through the renderer, a bad version is a one-line ConfigError, not a traceback."""
    import dataclasses

    variant = dataclasses.replace(project.matrix.get("rocm62-native"), rocm="6.x")
    with pytest.raises(ConfigError, match=r"variants\.rocm62-native\.rocm: .*not numeric"):
        Renderer(project).render(variant)


ROCM_DOCKER_SRC = os.environ.get("ROCM_DOCKER_SRC")


@pytest.mark.skipif(not ROCM_DOCKER_SRC,
                    reason="set ROCM_DOCKER_SRC to a ROCm/ROCm-docker clone to check its history")
def test_rule_matches_every_rocm_docker_version() -> None:
    """Every committed version of AMD's dev Dockerfiles (ARG ROCM_VERSION and its apt line)
    agrees with the rule, except that for 20.04 from 5.3 on AMD wrote either `focal` or the
    older `ubuntu` alias; both exist there and the rule picks the codename."""
    repo = Path(str(ROCM_DOCKER_SRC))

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=False)

    seen: set[str] = set()
    for path, codename in (("dev/Dockerfile-ubuntu-18.04", "bionic"),
                           ("dev/Dockerfile-ubuntu-20.04", "focal"),
                           ("dev/Dockerfile-ubuntu-22.04", "jammy"),
                           ("dev/Dockerfile-ubuntu-24.04", "noble")):
        for commit in git("log", "--format=%H", "--all", "--", path).stdout.split():
            text = git("show", f"{commit}:{path}").stdout
            version = re.search(r"ARG ROCM_VERSION=(\d+)\.(\d+)", text)
            line = re.search(r"rocm/apt/\$ROCM_VERSION/? (\w+) main", text)
            if not version or not line:
                continue
            release = f"{version[1]}.{version[2]}"
            expected = suite_for(release, codename)
            allowed = {expected, "ubuntu"} if (codename == "focal" and
                                                expected == codename) else {expected}
            assert line[1] in allowed, (commit[:7], path, release, line[1], expected)
            seen.add(f"{release}:{line[1]}")
    # the history spans all three eras
    assert {"4.1:xenial", "5.2:ubuntu", "5.3:jammy", "5.3:focal"} <= seen, sorted(seen)


def suite_for(release: str, codename: str) -> str:
    return apt_suite(release, codename)
