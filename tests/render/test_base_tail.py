"""The shared tail of every image (base.Dockerfile.j2) creates user `torch` with uid/gid 1000
on any base: built for real on debian:bookworm-slim, on a derivative where uid 1000 is already
taken (as `ubuntu` is on ubuntu:24.04, issue 10 defect 8) and on a base that already has
`torch` (a variant built FROM another imagefactory image)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
from suite_session import unique

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TAG = f"{unique('base-tail')}:tail"  # this session's: the session-end leftover check covers it


def docker(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # The classic builder, as imagefactory's docker-py build path uses.
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True,
                          env=env, check=False)


@pytest.fixture(scope="module")
def tags() -> Iterator[list[str]]:
    if shutil.which("docker") is None or docker("version").returncode != 0:
        pytest.fail("no Docker engine answers; run scripts/setup-test-env.sh")
    made: list[str] = []
    yield made
    for tag in reversed(made):  # only the images this test made
        docker("rmi", "--force", tag)


def build(tags: list[str], directory: Path, suffix: str) -> str:
    tag = f"{TAG}-{suffix}"
    proc = docker("build", "--quiet", "--force-rm", "--tag", tag, str(directory))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tags.append(tag)
    return tag


def tail_context(project, tmp_path: Path, from_ref: str) -> Path:
    """A build context holding only base.Dockerfile.j2's shared tail on `from_ref`."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([
            jinja2.DictLoader({"tail.j2": '{% extends "base.Dockerfile.j2" %}'}),
            jinja2.FileSystemLoader(str(project.templates_dir))]),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
        lstrip_blocks=True)
    text = env.get_template("tail.j2").render(
        v=project.matrix.get("cpu"), from_ref=from_ref, runtime_env={},
        labels=[("io.imagefactory.test", "base-tail")])
    ctx = tmp_path / "ctx"
    shutil.copytree(project.files_dir / "python", ctx / "files" / "python",
                    ignore=shutil.ignore_patterns("__pycache__", ".*"))
    shutil.copy2(project.files_dir / "entrypoint.sh", ctx / "files" / "entrypoint.sh")
    (ctx / "Dockerfile").write_text(text)
    return ctx


def identity(tag: str) -> str:
    proc = docker("run", "--rm", "--entrypoint", "sh", tag, "-c",
                  'id; getent passwd 1000 | cut -d: -f1,6; echo "$HOME"; test -w "$HOME"')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


EXPECTED = "uid=1000(torch) gid=1000(torch) groups=1000(torch)\ntorch:/home/torch\n/home/torch\n"


def test_tail_on_plain_debian(project, tags, tmp_path: Path) -> None:
    tag = build(tags, tail_context(project, tmp_path, "debian:bookworm-slim"), "plain")
    assert identity(tag) == EXPECTED


def test_tail_when_uid_1000_is_taken(project, tags, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "Dockerfile").write_text(
        "FROM debian:bookworm-slim\n"
        "RUN useradd --uid 1000 --user-group --create-home --shell /bin/bash ubuntu\n")
    base = build(tags, taken, "uid1000-taken")
    check = docker("run", "--rm", base, "id", "ubuntu")
    assert check.stdout.startswith("uid=1000(ubuntu) gid=1000(ubuntu)"), check.stdout
    tag = build(tags, tail_context(project, tmp_path, base), "on-taken")
    assert identity(tag) == EXPECTED
    gone = docker("run", "--rm", "--entrypoint", "getent", tag, "passwd", "ubuntu")
    assert gone.returncode != 0 and gone.stdout == ""


def test_tail_on_a_base_that_already_has_torch(project, tags, tmp_path: Path) -> None:
    first = build(tags, tail_context(project, tmp_path / "a", "debian:bookworm-slim"), "first")
    # the tail switches to USER 1000; the next build's RUN needs root again, as a variant
    # built FROM another variant's image does in its own stages
    again = tmp_path / "b"
    again.mkdir()
    (again / "Dockerfile").write_text(f"FROM {first}\nUSER root\n")
    root_base = build(tags, again, "root-again")
    tag = build(tags, tail_context(project, tmp_path / "c", root_base), "twice")
    assert identity(tag) == EXPECTED
