"""`pip install .` users get the matrix, templates and in-image files inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from imagefactory.project import Project

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: hatchling comes from the test extras, so no download happens here.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(REPO)], check=True)
    (found,) = out.glob("imagefactory-*.whl")
    return found


def test_wheel_ships_matrix_templates_files_and_suite(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("imagefactory/_shipped/variants.yaml",
                     "imagefactory/_shipped/dockerfiles/templates/base.Dockerfile.j2",
                     "imagefactory/_shipped/dockerfiles/files/entrypoint.sh",
                     "imagefactory/_shipped/dockerfiles/files/python/convcheck/__main__.py",
                     "imagefactory/_shipped/dockerfiles/cpu/Dockerfile",
                     "imagefactory/verify/suite/test_image.py",
                     "imagefactory/verify/suite/pytest.ini",
                     # convcheck, a second top-level package the host imports
                     "convcheck/__init__.py", "convcheck/vocabulary.py",
                     "convcheck/__main__.py"):
        assert required in names, required
    # only the package: not the in-image folder's other modules (sitecustomize would run in
    # every interpreter that has site-packages on its path)
    assert not {"sitecustomize.py", "im2col_fallback.py"} & names
    # every stage package ships (an unanchored `build/` in .gitignore once dropped build/)
    for stage in ("matrix", "render", "engine", "build", "verify", "publish", "report", "host"):
        assert f"imagefactory/{stage}/__init__.py" in names, stage
    assert not any("__pycache__" in n for n in names if "_shipped" in n)


def test_wheel_ships_no_test_family(wheel: Path) -> None:
    """The test suite's families (tiny, mounts) are the fixture plugin's
    (tests/fixtures/familyplugin), not the package's (#26)."""
    zf = zipfile.ZipFile(wheel)
    names = zf.namelist()
    assert not any("testfamilies" in n or "familyplugin" in n for n in names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "imagefactory.families" not in zf.read(entry_points).decode()
    source = zf.read("imagefactory/matrix/recipes.py").decode()
    assert '@family("tiny")' not in source and '@family("mounts")' not in source


def test_installed_wheel_lists_every_variant_from_any_folder(wheel: Path,
                                                                tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "imagefactory", "list", "--json"], cwd=empty,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=True)
    variants = Project.locate(REPO / "variants.yaml").matrix.variants
    assert proc.stdout.count('"name"') == len(variants)
    assert '"cpu"' in proc.stdout and '"rocm62-patched"' in proc.stdout
    # convcheck imports from the wheel, and without torch (the host has none)
    proc = subprocess.run([sys.executable, "-c", "import sys, convcheck.vocabulary, "
                           "imagefactory.report.writer; print(convcheck.__file__); "
                           "print('torch' in sys.modules)"], cwd=empty,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=True)
    origin, torch_loaded = proc.stdout.split()
    assert Path(origin).is_relative_to(target) and torch_loaded == "False"


def test_editable_install_imports_convcheck_without_torch() -> None:
    """`pip install -e .` maps both packages to the checkout; importing the host (and the
    vocabulary the host reads) never imports torch."""
    code = ("import sys, convcheck, imagefactory.report.writer, imagefactory.publish.gate; "
            "print(convcheck.__file__); print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('torch', 'sitecustomize', 'im2col_fallback') "
            "and m != 'sitecustomize'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True,
                          text=True, check=True)
    origin, loaded = proc.stdout.splitlines()
    assert origin == str(REPO / "dockerfiles/files/python/convcheck/__init__.py")
    assert loaded == "[]"


def test_without_a_local_matrix_the_shipped_one_is_used(tmp_path: Path) -> None:
    project = Project.locate(None, cwd=tmp_path)
    assert project.config_path.name == "variants.yaml"
    assert project.templates_dir.is_dir()
    assert project.output_dir == tmp_path / "dockerfiles"
    checkout = Project.locate(REPO / "variants.yaml").matrix
    assert [v.name for v in project.matrix.variants] == [v.name for v in checkout.variants]
