"""`imagefactory build --target STAGE --build-arg NAME=VALUE`: what is refused before any
engine is asked (the real builds are in tests/verify/test_debian_rocm_image.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.build.run import parse_build_args
from imagefactory.errors import UsageError
from imagefactory.render.dockerfile import stage_names

REPO = Path(__file__).resolve().parents[2]


def build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagefactory", "--config",
                           str(REPO / "variants.yaml"), "build", *args, "--engine",
                           "unix:///nonexistent/docker.sock"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize(("args", "message"), [
    (["debian-rocm64", "--target", "nosuch"],
     "--target nosuch: debian-rocm64 has no such stage (it has: rocm-runtime, toolchain, "
     "torch-builder, vision-builder, runtime)"),
    (["debian-rocm64", "cpu", "--target", "toolchain"],
     "--target toolchain: name one variant built FROM an external base"),
    (["cpu", "--build-arg", "NO EQUALS"], "--build-arg 'NO EQUALS': expected NAME=VALUE"),
    (["cpu", "--build-arg", "A=b\x07"], "--build-arg A: the value has control characters"),
])
def test_refused_in_one_line_before_any_engine(args: list[str], message: str) -> None:
    r = build(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_stages_are_docker_s_named_stages() -> None:
    text = "FROM a AS one\nRUN x\nfrom b as Two\n# FROM c AS three\nFROM d\n"
    assert stage_names(text) == ["one", "Two"]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_build_args_are_name_value_or_refused(item: str) -> None:
    try:
        parsed = parse_build_args((item,))
    except UsageError as exc:
        assert str(exc).count("\n") == 0
        return
    (name, value), = parsed.items()
    assert f"{name}={value}" == item and value.isprintable()
