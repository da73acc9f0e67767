"""Rendering: deterministic, committed output in sync, drift detected, hash tracks inputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imagefactory.cli import main
from imagefactory.errors import ConfigError
from imagefactory.project import Project
from imagefactory.render.renderer import HASH_LABEL, Renderer, copy_sources

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A scratch copy of the matrix, templates and rendered files."""
    shutil.copy(REPO / "variants.yaml", tmp_path / "variants.yaml")
    shutil.copytree(REPO / "dockerfiles", tmp_path / "dockerfiles",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_committed_dockerfiles_are_in_sync(capsys) -> None:
    code, out, err = cli(["--config", str(REPO / "variants.yaml"), "render", "--check"], capsys)
    assert code == 0, err
    assert "11 rendered Dockerfile(s) up to date" in out


def test_check_fails_and_names_a_hand_edited_file(project_copy: Path, capsys) -> None:
    config = str(project_copy / "variants.yaml")
    assert cli(["--config", config, "render", "--check"], capsys)[0] == 0
    edited = project_copy / "dockerfiles" / "rocm62-patched" / "Dockerfile"
    edited.write_text(edited.read_text() + "RUN echo hand edit\n")
    code, _, err = cli(["--config", config, "render", "--check"], capsys)
    assert code == 1
    assert f"out of date: {edited}" in err
    assert "cpu/Dockerfile" not in err
    # render repairs it, and --check is then happy again
    assert cli(["--config", config, "render"], capsys)[0] == 0
    assert "hand edit" not in edited.read_text()
    assert cli(["--config", config, "render", "--check"], capsys)[0] == 0


def test_check_names_a_missing_file(project_copy: Path, capsys) -> None:
    (project_copy / "dockerfiles" / "cpu" / "Dockerfile").unlink()
    code, _, err = cli(["--config", str(project_copy / "variants.yaml"), "render", "--check"],
                       capsys)
    assert code == 1
    assert "cpu/Dockerfile" in err


def test_rendering_is_deterministic(project: Project) -> None:
    first = [Renderer(project).render(v) for v in project.variants()]
    second = [Renderer(project).render(v) for v in project.variants()]
    assert [c.dockerfile for c in first] == [c.dockerfile for c in second]
    assert len({c.inputs_hash for c in first}) == len(first)


def test_hash_label_matches_and_tracks_env(project_copy: Path) -> None:
    project = Project.locate(project_copy / "variants.yaml")
    before = {v.name: Renderer(project).render(v) for v in project.variants()}
    cpu = before["cpu"]
    assert f'{HASH_LABEL}="{cpu.inputs_hash}"' in cpu.dockerfile
    config = project_copy / "variants.yaml"
    config.write_text(config.read_text().replace(
        "      IMAGEFACTORY_VARIANT: cpu\n",
        "      IMAGEFACTORY_VARIANT: cpu\n    env:\n      EXTRA: \"1\"\n", 1))
    project = Project.locate(config)
    after = {v.name: Renderer(project).render(v) for v in project.variants()}
    changed = {n for n in before if before[n].inputs_hash != after[n].inputs_hash}
    assert changed == {"cpu"}
    assert 'EXTRA="1"' in after["cpu"].dockerfile


def test_hash_tracks_in_image_files(project_copy: Path) -> None:
    project = Project.locate(project_copy / "variants.yaml")
    cpu = project.matrix.get("cpu")
    before = Renderer(project).render(cpu).inputs_hash
    entry = project_copy / "dockerfiles" / "files" / "entrypoint.sh"
    entry.write_text(entry.read_text() + "# changed\n")
    assert Renderer(project).render(cpu).inputs_hash != before


def test_context_holds_only_copied_files(project: Project) -> None:
    ctx = Renderer(project).render(project.matrix.get("cpu"))
    rels = [rel for rel, _ in ctx.files]
    assert "files/entrypoint.sh" in rels
    assert all(r.startswith("files/") for r in rels)
    assert not any("__pycache__" in r or r.endswith(".pyc") for r in rels)
    for source in copy_sources(ctx.dockerfile):
        assert any(r == source.rstrip("/") or r.startswith(source) for r in rels), source


def test_copy_sources_skips_stage_copies() -> None:
    text = ("FROM a AS b\nCOPY --from=b /x /y\nCOPY --chown=1:1 files/a files/b /dst/\n"
            "ADD files/c \\\n    /d\n")
    assert copy_sources(text) == ["files/a", "files/b", "files/c"]


def test_template_missing_value_is_a_config_error(project_copy: Path) -> None:
    template = project_copy / "dockerfiles" / "templates" / "cpu.Dockerfile.j2"
    template.write_text(template.read_text().replace("v.recipe.apt_packages",
                                                     "v.recipe.apt_pakages"))
    project = Project.locate(project_copy / "variants.yaml")
    with pytest.raises(ConfigError) as info:
        Renderer(project).render(project.matrix.get("cpu"))
    assert "cpu.Dockerfile.j2" in str(info.value)
    assert "apt_pakages" in str(info.value)


def test_every_variant_runs_as_non_root_with_labels(project: Project) -> None:
    for v in project.variants():
        text = Renderer(project).render(v).dockerfile
        assert "\nUSER 1000:1000\n" in text, v.name
        for label in ("org.opencontainers.image.title",
                      "org.opencontainers.image.source", "org.opencontainers.image.revision",
                      "io.imagefactory.variant", "io.imagefactory.rocm",
                      "io.imagefactory.torch-declared", "io.imagefactory.gfx-targets",
                      HASH_LABEL):
            assert f"{label}=" in text, (v.name, label)
        for key, value in v.runtime_env().items():
            assert f'{key}="{value}"' in text, (v.name, key)


def test_help_is_fast_because_heavy_modules_load_lazily() -> None:
    code = ("import sys; from imagefactory.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('docker', 'jinja2', 'rich', 'yaml', 'testinfra') "
            "if m in sys.modules]\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "HEAVY []" in out
    assert "render" in out and "list" in out


def test_hidden_files_and_caches_are_not_inputs(project_copy: Path) -> None:
    project = Project.locate(project_copy / "variants.yaml")
    cpu = project.matrix.get("cpu")
    before = Renderer(project).render(cpu)
    python_dir = project_copy / "dockerfiles" / "files" / "python"
    (python_dir / ".ruff_cache").mkdir(exist_ok=True)
    (python_dir / ".ruff_cache" / "state").write_text("tool cache")
    (python_dir / "convcheck" / "__pycache__").mkdir(exist_ok=True)
    (python_dir / "convcheck" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    after = Renderer(project).render(cpu)
    assert after.inputs_hash == before.inputs_hash
    assert after.files == before.files


@pytest.mark.parametrize("link", ["dockerfiles/cpu/Dockerfile", "dockerfiles/docker-bake.json",
                                  "dockerfiles/cpu"])
def test_render_refuses_to_write_through_a_symlink(project_copy: Path, link: str,
                                                   capsys) -> None:
    # A symlinked rendered file or folder would make render write wherever it points (#25).
    outside = project_copy / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("precious\n")
    path = project_copy / link
    if path.is_dir():
        shutil.rmtree(path)
        path.symlink_to(outside, target_is_directory=True)
        victim = outside / "Dockerfile"
    else:
        path.unlink()
        path.symlink_to(victim)
    code, _, err = cli(["--config", str(project_copy / "variants.yaml"), "render"], capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and "is a symlink" in err and "Traceback" not in err
    assert not victim.exists() or victim.read_text() == "precious\n"


def test_rendered_files_are_shareable_whatever_the_umask(project_copy: Path, capsys) -> None:
    import os
    import stat

    (project_copy / "dockerfiles" / "cpu" / "Dockerfile").unlink()
    (project_copy / "dockerfiles" / "docker-bake.json").unlink()
    old = os.umask(0o000)
    try:
        assert cli(["--config", str(project_copy / "variants.yaml"), "render"], capsys)[0] == 0
    finally:
        os.umask(old)
    for name in ("cpu/Dockerfile", "docker-bake.json"):
        mode = stat.S_IMODE((project_copy / "dockerfiles" / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))
