"""The therock recipe built for real against a loopback PEP 503 index (tests/fixtures/
wheelindex) that stands in for TheRock's: same project names, versions, extras and
dependency metadata, generated here. torch in that index is a real CPU build re-labelled as
TheRock's, so the image's tail (conv check, entrypoint, user, labels) runs on a real torch;
torchvision is a generated module, and there is no GPU code. A wrong pin, extra or name must
fail the build.

Needs: a Docker engine, the Debian archive (apt in the build), PyPI (the index mirrors
TheRock's third-party set). For the conv check in the image, a real CPU torch wheel for the
image's Python (3.11): IMAGEFACTORY_TORCH_CPU_WHEEL (a path, or "none"), or else
`pip download torch==2.13.0+cpu` through the host's pip configuration (CPU builds live on
download.pytorch.org, not PyPI).
Without one the stand-in torch is a module that only imports: everything but the conv check
still runs, and the conv check part skips, saying so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fixtures.wheelindex import TARGETS, THEROCK_10, Release, build_index, pip_download, serve
from suite_session import unique

from imagefactory.project import Project
from imagefactory.render.renderer import HASH_LABEL, BuildContext, Renderer

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.network]

REPO = Path(__file__).resolve().parents[2]
CPU_TORCH = "torch==2.13.0+cpu"
TAG_REPO = unique("therock")  # this session's: the session-end leftover check covers it


def _cpu_torch(cache: Path) -> Path | None:
    """A real CPU torch wheel for cp311, or None (then the index serves a module that only
    imports, and the conv check cannot run)."""
    given = os.environ.get("IMAGEFACTORY_TORCH_CPU_WHEEL")
    if given == "none":  # choose the import-only stand-in (faster; no conv check)
        return None
    if given:
        if not Path(given).is_file():
            pytest.fail(f"IMAGEFACTORY_TORCH_CPU_WHEEL={given}: no such file")
        return Path(given)
    found = sorted(cache.glob("torch-*.whl"))
    if not found:
        try:
            pip_download(cache, [CPU_TORCH], no_deps=True)
        except subprocess.CalledProcessError:
            return None
        found = sorted(cache.glob("torch-*.whl"))
    return found[0] if found else None


@dataclass
class Index:
    url: str
    requests: list[str]
    real_torch: bool


@pytest.fixture(scope="module")
def index(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    # pytest's cache keeps the downloaded wheels between runs; without it (-p no:cacheprovider)
    # they are fetched into this session's temporary folder.
    cache_plugin = getattr(request.config, "cache", None)
    cache = (Path(cache_plugin.mkdir("therock-source-wheels")) if cache_plugin is not None
             else tmp_path_factory.mktemp("therock-source-wheels"))
    torch = _cpu_torch(cache)
    # One index serving both lines (7.14 and 10.0), as TheRock's serves several releases.
    root = build_index(tmp_path_factory.mktemp("therock-index"), [Release(), THEROCK_10], torch)
    with serve(root) as (url, requests):
        yield Index(url, requests, torch is not None)


@pytest.fixture(scope="module")
def project() -> Project:
    return Project.locate(REPO / "variants.yaml")


@dataclass
class Built:
    ok: bool
    image_id: str | None
    log: str
    ctx: BuildContext
    tag: str
    seconds: float = 0.0


def build(docker_client: Any, ctx: BuildContext, index_url: str, directory: Path,
          tag: str, dockerfile: str | None = None) -> Built:
    """docker build --network host (the index is on the host's loopback) with the index URL
    as the recipe's build argument. The project's builder does not pass a network mode yet."""
    directory.mkdir(parents=True, exist_ok=True)
    ctx.write(directory)
    if dockerfile is not None:
        (directory / "Dockerfile").write_text(dockerfile)
    log: list[str] = []
    image_id = None
    start = time.monotonic()
    for chunk in docker_client.api.build(path=str(directory), tag=tag, network_mode="host",
                                         buildargs={"THEROCK_INDEX_URL": index_url},
                                         rm=True, forcerm=True, decode=True):
        if "stream" in chunk:
            log.append(chunk["stream"])
        if "error" in chunk:
            log.append("ERROR: " + chunk["error"])
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    text = "".join(log)
    return Built(image_id is not None and "ERROR: " not in text, image_id, text, ctx, tag,
                 time.monotonic() - start)


@pytest.fixture(scope="module")
def gfx1010(docker_client: Any, project: Project, index: Index,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    url, requests = index.url, index.requests
    ctx = Renderer(project).render(project.matrix.get("therock-gfx1010"))
    requests.clear()
    built = build(docker_client, ctx, url, tmp_path_factory.mktemp("ctx-gfx1010"),
                  f"{TAG_REPO}:therock-gfx1010")
    built.log += "\nREQUESTS " + json.dumps(requests)
    yield built
    if built.ok:
        docker_client.images.remove(built.tag, force=True)


def run(docker_client: Any, tag: str, command: list[str], quiet: bool = True
        ) -> tuple[int, str]:
    env = {"IMAGEFACTORY_QUIET": "1"} if quiet else {}
    container = docker_client.containers.run(tag, command, detach=True, network_mode="none",
                                             environment=env)
    try:
        rc = container.wait(timeout=900)["StatusCode"]
        return rc, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


_INSTALLED = ("import importlib.metadata as m, json; print(json.dumps(sorted("
              "(d.metadata['Name'].lower(), d.version) for d in m.distributions())))")


def test_therock_gfx1010_builds_against_the_local_index(gfx1010: Built, docker_client: Any
                                                        ) -> None:
    assert gfx1010.ok, gfx1010.log[-4000:]
    requests = json.loads(gfx1010.log.rsplit("REQUESTS ", 1)[1])
    fetched = {p.split("/")[2] for p in requests if p.startswith("/simple/")}
    # The extra pulled the gfx1010 device packages and nothing for other ISAs.
    assert {"amd-torch-device-gfx1010", "amd-torchvision-device-gfx1010",
            "rocm-sdk-device-gfx1010", "rocm", "rocm-sdk-core", "rocm-sdk-libraries",
            "rocm-bootstrap", "setuptools"} <= fetched
    assert not {f for f in fetched if "gfx" in f and not f.endswith("gfx1010")}
    rc, out = run(docker_client, gfx1010.tag, ["python3", "-c", _INSTALLED])
    assert rc == 0, out
    installed = dict(tuple(x) for x in json.loads(out.strip().splitlines()[-1]))
    assert installed["torch"] == "2.10.0+rocm7.14.0"
    assert installed["torchvision"] == "0.25.0+rocm7.14.0"
    for name in ("rocm", "rocm-sdk-core", "rocm-sdk-libraries", "rocm-sdk-device-gfx1010"):
        assert installed[name] == "7.14.0", name
    assert installed["amd-torch-device-gfx1010"] == "2.10.0+rocm7.14.0"
    assert installed["amd-torchvision-device-gfx1010"] == "0.25.0+rocm7.14.0"
    assert not [n for n in installed if "gfx" in n and not n.endswith("gfx1010")]
    assert "rocm-sdk-devel" not in installed, "the runtime image carries no devel package"
    size = docker_client.images.get(gfx1010.tag).attrs["Size"]
    print(f"therock-gfx1010 on the stand-in index: build {gfx1010.seconds:.0f} s, "
          f"image {size / 1e6:.0f} MB")


def test_therock_image_tail(gfx1010: Built, docker_client: Any, index: Index) -> None:
    """What `imagefactory test` checks in every image, on the stand-in torch."""
    assert gfx1010.ok, gfx1010.log[-2000:]
    attrs = docker_client.images.get(gfx1010.tag).attrs["Config"]
    labels = attrs["Labels"]
    assert labels["io.imagefactory.variant"] == "therock-gfx1010"
    assert labels["io.imagefactory.family"] == "therock"
    assert labels["io.imagefactory.gfx-targets"] == "gfx1010"
    assert labels["io.imagefactory.rocm"] == "7.14.0"
    assert labels[HASH_LABEL] == gfx1010.ctx.inputs_hash
    assert attrs["Entrypoint"] == ["/usr/local/bin/imagefactory-entrypoint"]
    assert attrs["User"] == "1000:1000"
    env = dict(e.split("=", 1) for e in attrs["Env"])
    assert env["IMAGEFACTORY_VARIANT"] == "therock-gfx1010" and env["IMAGEFACTORY_GPU"] == "rocm"
    assert "HSA_OVERRIDE_GFX_VERSION" not in env
    assert env["PATH"].startswith("/opt/venv/bin:")

    rc, out = run(docker_client, gfx1010.tag, ["sh", "-c", "id -u; command -v python3"])
    assert rc == 0 and out.split() == ["1000", "/opt/venv/bin/python3"], out
    rc, out = run(docker_client, gfx1010.tag, ["echo", "entrypoint-ok"], quiet=False)
    assert rc == 0 and "entrypoint-ok" in out, out
    assert "/dev/kfd is missing: run with --device=/dev/kfd --device=/dev/dri" in out
    # The conv check on the image's (CPU) torch: every quick case runs and matches.
    if not index.real_torch:
        pytest.skip(f"no CPU torch wheel ({CPU_TORCH}; set IMAGEFACTORY_TORCH_CPU_WHEEL): "
                    "the stand-in torch only imports, the conv check cannot run")
    rc, out = run(docker_client, gfx1010.tag,
                  ["sh", "-c", "python3 -m convcheck --device cpu --quick "
                               "--json /tmp/c.json >/dev/null 2>&1; echo rc=$?; cat /tmp/c.json"])
    head, _, body = out.partition("\n")
    assert head == "rc=0", out[-2000:]
    data = json.loads(body)
    # ok, or skipped: a feature a CPU torch does not have.
    assert data["cases"] and all(c["status"] in ("ok", "skipped") for c in data["cases"]), \
        body[-2000:]
    assert any(c["status"] == "ok" for c in data["cases"])


@pytest.mark.parametrize("old, new, says", [
    ('"torch[device-gfx1010]==2.10.0+rocm7.14.0"', '"torch[device-gfx1010]==2.10.1+rocm7.14.0"',
     "No matching distribution found for torch[device-gfx1010]==2.10.1+rocm7.14.0"),
    ('"torch[device-gfx1010]==2.10.0+rocm7.14.0"', '"torch[device-gfx1013]==2.10.0+rocm7.14.0"',
     "imagefactory: no amd-torch-device-gfx1010 on http://127.0.0.1:"),
    ('"rocm[libraries,device-gfx1010]==7.14.0"', '"rocm[libraries,device-gfx1010]==7.14.1"',
     "rocm[device-gfx1010,libraries]==7.14.1 (from versions: 7.14.0, 10.0.0)"),
    ('"torchvision[device-gfx1010]==0.25.0+rocm7.14.0"',
     '"torch-vision[device-gfx1010]==0.25.0+rocm7.14.0"',
     "No matching distribution found for torch-vision[device-gfx1010]==0.25.0+rocm7.14.0"),
], ids=["torch-pin", "extra", "rocm-pin", "name"])
def test_a_wrong_pin_extra_or_name_fails_the_build(docker_client: Any, project: Project,
                                                   index: Index, tmp_path: Path,
                                                   old: str, new: str, says: str) -> None:
    ctx = Renderer(project).render(project.matrix.get("therock-gfx1010"))
    assert old in ctx.dockerfile
    tag = f"{TAG_REPO}:bad-{uuid.uuid4().hex[:6]}"
    built = build(docker_client, ctx, index.url, tmp_path / "ctx", tag,
                  dockerfile=ctx.dockerfile.replace(old, new))
    try:
        assert not built.ok, "the build succeeded with " + new
        assert says in built.log, built.log[-3000:]
    finally:
        if built.image_id:
            docker_client.images.remove(built.image_id, force=True)


def test_therock_gfx1012_builds_with_gfx1012_device_code(docker_client: Any, project: Project,
                                                         index: Index,
                                                         tmp_path: Path) -> None:
    ctx = Renderer(project).render(project.matrix.get("therock-gfx1012"))
    built = build(docker_client, ctx, index.url, tmp_path / "ctx",
                  f"{TAG_REPO}:therock-gfx1012")
    try:
        assert built.ok, built.log[-4000:]
        rc, out = run(docker_client, built.tag, ["python3", "-c", _INSTALLED])
        assert rc == 0, out
        installed = dict(tuple(x) for x in json.loads(out.strip().splitlines()[-1]))
        assert installed["amd-torch-device-gfx1012"] == "2.10.0+rocm7.14.0"
        assert installed["rocm-sdk-device-gfx1012"] == "7.14.0"
        assert not [n for n in installed if "gfx" in n and not n.endswith("gfx1012")]
    finally:
        if built.ok:
            docker_client.images.remove(built.tag, force=True)


def _installed(docker_client: Any, tag: str) -> dict[str, str]:
    rc, out = run(docker_client, tag, ["python3", "-c", _INSTALLED])
    assert rc == 0, out
    return dict(tuple(x) for x in json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize("variant, gfx", [("therock10-gfx1010", "gfx1010"),
                                          ("therock10-gfx1012", "gfx1012")])
def test_therock10_builds_against_the_local_index(docker_client: Any, project: Project,
                                                  index: Index, tmp_path: Path,
                                                  variant: str, gfx: str) -> None:
    ctx = Renderer(project).render(project.matrix.get(variant))
    built = build(docker_client, ctx, index.url, tmp_path / "ctx", f"{TAG_REPO}:{variant}")
    try:
        assert built.ok, built.log[-4000:]
        installed = _installed(docker_client, built.tag)
        assert installed["torch"] == "2.11.0+rocm10.0.0"
        assert installed["torchvision"] == "0.26.0+rocm10.0.0"
        for name in ("rocm", "rocm-sdk-core", "rocm-sdk-libraries", f"rocm-sdk-device-{gfx}"):
            assert installed[name] == "10.0.0", name
        assert installed[f"amd-torch-device-{gfx}"] == "2.11.0+rocm10.0.0"
        assert installed[f"amd-torchvision-device-{gfx}"] == "0.26.0+rocm10.0.0"
        assert not [n for n in installed if "gfx" in n and not n.endswith(gfx)]
        labels = docker_client.images.get(built.tag).labels
        assert labels["io.imagefactory.rocm"] == "10.0.0"
        assert labels[HASH_LABEL] == ctx.inputs_hash
    finally:
        if built.ok:
            docker_client.images.remove(built.tag, force=True)


@pytest.mark.parametrize("how", ["keep-list", "wheel-deleted"])
def test_therock10_without_the_device_wheel_fails_in_one_line(
        docker_client: Any, project: Project, tmp_path: Path, how: str) -> None:
    # keep-list: a promotion's --multi-arch-targets dropped gfx1010 (extras and wheels go
    # together: promote_packages.py); wheel-deleted: the device wheel is gone while torch's
    # metadata still asks for it. The import-only torch is enough: both fail before it.
    if how == "keep-list":
        release = replace(THEROCK_10, targets=tuple(t for t in TARGETS if t != "gfx1010"))
        want = ("imagefactory: no rocm-sdk-device-gfx1010, amd-torch-device-gfx1010, "
                "amd-torchvision-device-gfx1010 on {url}: the index carries no device-gfx1010 "
                "wheels for this release (a promotion may have dropped the target)")
    else:
        release = replace(THEROCK_10, unpublished=("amd-torch-device-gfx1010",))
        want = ("ERROR: No matching distribution found for "
                'amd-torch-device-gfx1010==2.11.0+rocm10.0.0; extra == "device-gfx1010"')
    root = build_index(tmp_path / "index", release, None)
    ctx = Renderer(project).render(project.matrix.get("therock10-gfx1010"))
    with serve(root) as (url, _):
        built = build(docker_client, ctx, url, tmp_path / "ctx", f"{TAG_REPO}:missing-{how}")
    try:
        assert not built.ok
        # the engine's stream colours stderr (ESC[91m ... ESC[0m)
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in built.log.splitlines()]
        assert lines.count(want.format(url=url)) == 1, built.log[-3000:]
        assert "Traceback" not in built.log
    finally:
        if built.image_id:
            docker_client.images.remove(built.image_id, force=True)
