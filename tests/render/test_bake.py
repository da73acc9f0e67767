"""dockerfiles/docker-bake.json: generated from the matrix, committed, checked for drift, read
by the real `docker buildx bake`, and built by it (the `cpu` variant, on this engine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.cli import main
from imagefactory.project import Project
from imagefactory.render.bake import BAKE_FILE, bake, stages
from imagefactory.render.renderer import HASH_LABEL, Renderer

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "buildmatrix"

needs_buildx = pytest.mark.buildx  # conftest: skip without the plugin (fail where required)


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def definition(project: Project) -> dict:
    renderer = Renderer(project)
    return bake(project, [renderer.render(v) for v in project.matrix.variants])


def bake_print(cwd: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run(["docker", "buildx", "bake", "-f", f"dockerfiles/{BAKE_FILE}",
                          "--print", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Path:
    root = tmp_path / "matrix"
    shutil.copytree(FIXTURE, root)
    return root


# -- generation ---------------------------------------------------------------------------

def test_every_variant_is_a_target_with_its_dockerfile_tag_and_family_group(project) -> None:
    d = definition(project)
    names = [v.name for v in project.matrix.variants]
    assert d["group"]["all"]["targets"] == names
    assert d["group"]["default"]["targets"] == ["all"]
    for v in project.matrix.variants:
        t = d["target"][v.name]
        assert t["context"] == "dockerfiles"
        assert t["dockerfile"] == f"{v.name}/Dockerfile"
        assert t["tags"][0] == f"{project.matrix.repository}:{v.name}"
        assert v.name in d["group"][f"family-{v.family}"]["targets"]
        assert t["args"] == {"IMAGEFACTORY_REVISION": "${IMAGEFACTORY_REVISION}"}


def test_multi_stage_variants_get_one_cache_target_per_stage(project) -> None:
    d = definition(project)
    rendered = Renderer(project).render(project.matrix.get("rocm54-source")).dockerfile
    names = stages(rendered)
    assert names[:2] == ["rocm-base", "rocblas"] and "runtime" not in names
    group = d["group"]["rocm54-source-stages"]["targets"]
    assert group == [f"rocm54-source--{s}" for s in names]
    for ref, stage in zip(group, names, strict=True):
        t = d["target"][ref]
        assert t["target"] == stage and t["output"] == ["type=cacheonly"]
        assert "tags" not in t
        assert ref in t["cache-to"][0]
    assert "cpu-stages" not in d["group"]  # one stage: nothing to split


def test_base_variant_comes_from_its_target(fixture_copy: Path) -> None:
    project = Project.locate(fixture_copy / "variants.yaml")
    d = definition(project)
    assert d["target"]["child"]["contexts"] == {
        "iftest-build:base": '${BASE_CONTEXTS ? "target:base" : ""}'}
    assert "contexts" not in d["target"]["solo"]


def test_committed_bake_file_is_in_sync(capsys) -> None:
    code, out, err = cli(["--config", str(REPO / "variants.yaml"), "render", "--check"], capsys)
    assert code == 0, err
    assert "and docker-bake.json" in out


def test_check_names_a_stale_or_missing_bake_file(fixture_copy: Path, capsys) -> None:
    config = str(fixture_copy / "variants.yaml")
    assert cli(["--config", config, "render"], capsys)[0] == 0
    path = fixture_copy / "dockerfiles" / BAKE_FILE
    assert cli(["--config", config, "render", "--check"], capsys)[0] == 0
    path.write_text(path.read_text().replace('"all"', '"everything"', 1))
    code, _, err = cli(["--config", config, "render", "--check"], capsys)
    assert code == 1 and f"out of date: {path}" in err
    path.unlink()
    code, _, err = cli(["--config", config, "render", "--check"], capsys)
    assert code == 1 and f"out of date: {path}" in err
    # A variant added to the matrix is a drift of the bake file too.
    assert cli(["--config", config, "render"], capsys)[0] == 0
    yaml = fixture_copy / "variants.yaml"
    yaml.write_text(yaml.read_text() + (
        "  extra:\n    family: tiny\n    description: added\n    base: debian:bookworm-slim\n"
        "    torch: {version: '0', source: debian}\n    recipe:\n      command: echo x\n"
        "    expect: {}\n"))
    code, _, err = cli(["--config", config, "render", "extra"], capsys)  # Dockerfile only
    assert code == 0
    code, _, err = cli(["--config", config, "render", "--check"], capsys)
    assert code == 1 and err.strip().splitlines() == [
        f"out of date: {path} (run `imagefactory render`)",
        "imagefactory: error: 1 rendered file(s) differ from the templates"]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_stage_parsing_never_raises(text: str) -> None:
    assert all(name for name in stages(text))


# -- the real bake ------------------------------------------------------------------------

@needs_buildx
def test_bake_print_lists_every_variant_from_the_committed_file(project) -> None:
    printed = bake_print(REPO, "all")
    names = {v.name for v in project.matrix.variants}
    assert set(printed["target"]) == names
    assert printed["target"]["cpu"]["tags"] == [f"{project.matrix.repository}:cpu"]
    assert "cache-from" not in printed["target"]["cpu"]  # no CACHE_REPO: no cache refs
    every = bake_print(REPO, *(f"{n}-stages" for n in ("rocm54-source", "rocm62-native")))
    assert "rocm54-source--rocblas" in every["target"]


@needs_buildx
def test_bake_variables_shape_tags_and_caches(project) -> None:
    env = {"REGISTRY": "ghcr.io/owner", "CACHE_REPO": "127.0.0.1:5000/cache"}
    t = bake_print(REPO, "cpu", env=env)["target"]["cpu"]
    assert t["tags"] == ["imagefactory:cpu", "ghcr.io/owner/imagefactory:cpu"]
    assert t["cache-from"] == ["type=registry,ref=127.0.0.1:5000/cache:cpu"]
    assert t["cache-to"] == ["type=registry,ref=127.0.0.1:5000/cache:cpu,mode=max"]
    inline = bake_print(REPO, "cpu", env={**env, "CACHE_MODE": "inline"})["target"]["cpu"]
    assert inline["cache-to"] == ["type=inline"]
    read = bake_print(REPO, "cpu", env={**env, "CACHE_MODE": "read"})["target"]["cpu"]
    assert "cache-to" not in read and read["cache-from"] == t["cache-from"]


@needs_buildx
def test_base_contexts_can_be_turned_off_for_old_engines(fixture_copy: Path, capsys) -> None:
    assert cli(["--config", str(fixture_copy / "variants.yaml"), "render"], capsys)[0] == 0
    on = bake_print(fixture_copy, "child")["target"]
    assert on["child"]["contexts"] == {"iftest-build:base": "target:base"}
    off = bake_print(fixture_copy, "child", env={"BASE_CONTEXTS": "false"})["target"]
    assert "contexts" not in off["child"]


@pytest.mark.docker
@pytest.mark.slow
@needs_buildx
def test_bake_builds_cpu_with_the_rendered_labels(project, docker_client) -> None:
    # Our own tag: the shared `imagefactory:cpu` belongs to the other tests.
    tag = f"iftest-bake-{uuid.uuid4().hex[:8]}:cpu"
    run = subprocess.run(["docker", "buildx", "bake", "-f", f"dockerfiles/{BAKE_FILE}",
                          "--progress", "plain", "--set", f"cpu.tags={tag}", "cpu"],
                         cwd=REPO, capture_output=True, text=True, timeout=1800)
    try:
        assert run.returncode == 0, run.stderr[-3000:]
        labels = docker_client.images.get(tag).labels
        ctx = Renderer(project).render(project.matrix.get("cpu"))
        assert labels[HASH_LABEL] == ctx.inputs_hash
        assert labels["io.imagefactory.built-by"] == "bake"
        assert labels["io.imagefactory.variant"] == "cpu"
        out = docker_client.containers.run(tag, ["python3", "-c", "import torch; "
                                                 "print(torch.__version__)"], remove=True)
        assert out.decode().startswith("2.6.0")  # Debian's 2.6.0 says 2.6.0+debian
    finally:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


@pytest.mark.docker
@needs_buildx
def test_bake_builds_a_base_then_its_dependant_on_an_old_engine(fixture_copy: Path, capsys,
                                                                docker_client) -> None:
    """Without named contexts (BuildKit < 0.10, as dockerd 20.10's), the documented order:
    the base target first, then the dependant, which finds the base in the engine."""
    repository = f"iftest-bake-{uuid.uuid4().hex[:8]}"
    yaml = fixture_copy / "variants.yaml"
    yaml.write_text(yaml.read_text().replace("repository: iftest-build",
                                             f"repository: {repository}"))
    assert cli(["--config", str(yaml), "render"], capsys)[0] == 0
    env = {**os.environ, "BASE_CONTEXTS": "false"}
    try:
        for target in ("base", "child"):
            run = subprocess.run(["docker", "buildx", "bake", "-f", f"dockerfiles/{BAKE_FILE}",
                                  "--progress", "plain", target], cwd=fixture_copy, env=env,
                                 capture_output=True, text=True, timeout=600)
            assert run.returncode == 0, run.stderr[-3000:]
        child = docker_client.images.get(f"{repository}:child")
        base = docker_client.images.get(f"{repository}:base")
        assert child.attrs["RootFS"]["Layers"][:len(base.attrs["RootFS"]["Layers"])] == \
            base.attrs["RootFS"]["Layers"]
    finally:
        for name in ("child", "base"):
            subprocess.run(["docker", "image", "rm", f"{repository}:{name}"],
                           capture_output=True, check=False)


# -- the images workflow bakes with the registry cache -----------------------------------------

def test_images_workflow_bakes_stage_by_stage_with_the_registry_cache(project) -> None:
    import yaml

    from imagefactory.render.bake import VARIABLES
    from imagefactory.render.ghmatrix import jobs

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "images.yml").read_text())
    assert {"CACHE_REPO", "CACHE_MODE"} <= set(workflow["env"]) & set(VARIABLES)
    assert "'read'" in workflow["env"]["CACHE_MODE"]  # pull requests never write the cache
    steps = workflow["jobs"]["build"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("docker/setup-buildx-action@") for u in uses)
    runs = [s.get("run", "") for s in steps]
    stage_step = next(r for r in runs if '"$VARIANT-stages"' in r)
    image_step = next(r for r in runs if '--load "$VARIANT"' in r)
    for script in (stage_step, image_step):
        assert "docker buildx bake -f dockerfiles/docker-bake.json" in script
        assert "set -o pipefail" in script  # `| tee` must not hide a failed bake
    assert runs.index(stage_step) < runs.index(image_step)
    assert not any("imagefactory build" in r for r in runs)
    # Every variant CI treats as a source build has the stage group the loop reads.
    d = definition(project)
    for job in jobs(project, project.matrix.variants):
        if job.source_build:
            assert f"{job.variant}-stages" in d["group"], job.variant


_NAMES = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)


@settings(max_examples=40, deadline=None)
@given(names=st.lists(_NAMES, min_size=1, max_size=5, unique=True))
def test_any_valid_variant_names_give_valid_targets_or_one_config_error(
        names: list[str], tmp_path_factory) -> None:
    import re

    from imagefactory.errors import ConfigError

    root = tmp_path_factory.mktemp("bakenames")
    shutil.copytree(FIXTURE / "dockerfiles", root / "dockerfiles")
    entries = "".join(
        f"  {n}:\n    family: tiny\n    description: d\n    base: debian:bookworm-slim\n"
        f"    torch: {{version: '0', source: debian}}\n    recipe:\n      command: echo x\n"
        f"    expect: {{}}\n" for n in names)
    (root / "variants.yaml").write_text(f"repository: iftest-names\nvariants:\n{entries}")
    project = Project.locate(root / "variants.yaml")
    try:
        d = definition(project)
    except ConfigError as exc:
        assert "\n" not in str(exc) and "bake" in str(exc)
        return
    assert len(d["group"]["all"]["targets"]) == len(names)
    for target in d["target"]:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", target)
    json.loads(json.dumps(d))
