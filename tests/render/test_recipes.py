"""What each ROCm variant's rendered Dockerfile promises, read through dockerfile-parse.

These images cannot be built here (their bases live on Docker Hub), so their recipes are
checked statement by statement: stages and their order, a compiler-free runtime stage, the
env, the pinned versions and checksums, the MIOpen patch steps and the labels.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from imagefactory.render.renderer import Renderer

REPO = Path(__file__).resolve().parents[2]
PATCHES = sorted((REPO / "dockerfiles/files/patches/miopen").glob("*.patch"))
MIOPEN_COMMIT = "d62f77307968e63a9c0b5c1688a2927a1410510c"
ROCM = ["rocm52-torch113", "rocm52-torch20", "rocm54-source", "rocm62-patched", "rocm62-native"]
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|hipcc|cmake|rocm-dev|rocm-llvm|"
                       r"rocm-hip-sdk|ninja-build)\b")


class Stage:
    def __init__(self, name: str | None, base: str) -> None:
        self.name, self.base, self.instructions = name, base, []

    def values(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]

    @property
    def run(self) -> str:
        return "\n".join(self.values("RUN"))

    @property
    def env(self) -> str:
        return "\n".join(self.values("ENV"))


def stages(text: str) -> list[Stage]:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    out: list[Stage] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            parts = ins["value"].split()
            out.append(Stage(parts[2] if len(parts) == 3 else None, parts[0]))
        elif out:
            out[-1].instructions.append(ins)
    return out


@pytest.fixture(scope="module")
def rendered(project) -> dict[str, str]:
    r = Renderer(project)
    return {name: r.render(project.matrix.get(name)).dockerfile for name in ROCM}


def by_name(st: list[Stage]) -> dict[str | None, Stage]:
    return {s.name: s for s in st}


@pytest.mark.parametrize("name", ROCM)
def test_committed_dockerfile_matches_template(project, rendered, name: str) -> None:
    assert project.dockerfile_path(project.matrix.get(name)).read_text() == rendered[name]


@pytest.mark.parametrize("name", ROCM)
def test_last_stage_is_runtime_with_labels_and_user(rendered, name: str) -> None:
    st = stages(rendered[name])
    runtime = st[-1]
    assert runtime.name == "runtime"
    labels = "\n".join(runtime.values("LABEL"))
    assert f'io.imagefactory.variant="{name}"' in labels
    assert "io.imagefactory.rocm=" in labels and "io.imagefactory.inputs-hash=" in labels
    assert runtime.values("USER"), "images run as a non-root user"


@pytest.mark.parametrize("name", ["rocm52-torch20", "rocm54-source", "rocm62-native",
                                  "rocm62-patched"])
def test_runtime_stage_has_no_toolchain(rendered, name: str) -> None:
    runtime = stages(rendered[name])[-1]
    assert runtime.base.startswith("ubuntu:"), "runtime must not start from a rocm/dev image"
    assert not COMPILERS.search(runtime.run.replace("for c in gcc g++ cc c++ hipcc", "")), \
        runtime.run
    # ... and the stage checks it at build time, since a dependency could drag one in.
    assert "runtime stage must not carry a compiler" in runtime.run


def test_rocm52_torch113_wheels_and_override(rendered) -> None:
    st = stages(rendered["rocm52-torch113"])
    assert [s.base for s in st] == ["rocm/dev-ubuntu-20.04:5.2.3"]
    run = st[-1].run
    assert "torch==1.13.1+rocm5.2" in run and "torchvision==0.14.1+rocm5.2" in run
    assert "https://download.pytorch.org/whl/rocm5.2" in run
    assert 'HSA_OVERRIDE_GFX_VERSION="10.3.0"' in st[-1].env


def test_rocm52_torch20_source_build_on_523(rendered) -> None:
    st = by_name(stages(rendered["rocm52-torch20"]))
    assert list(st) == ["rocm-base", "torch-builder", "vision-builder", "runtime"]
    assert st["rocm-base"].base == "rocm/dev-ubuntu-20.04:5.2.3-complete"
    # apt list rewritten to the versioned path before any apt-get update
    base_run = st["rocm-base"].run
    assert "https://repo.radeon.com/rocm/apt/5.2.3 focal main" in base_run
    assert "https://repo.radeon.com/rocm/apt/5.2.3 focal main" in st["runtime"].run
    assert "--branch v2.0.1" in st["torch-builder"].run
    assert "e9ebda29d87ce0916ab08c06ab26fd3766a870e5" in st["torch-builder"].run
    assert "PYTORCH_ROCM_ARCH=gfx1010" in st["torch-builder"].env
    copies = st["runtime"].values("COPY")
    assert "--from=torch-builder /wheels/ /wheels/" in copies
    assert "HSA_OVERRIDE_GFX_VERSION" not in st["runtime"].env


def test_rocm54_library_chain_order_and_tensile(rendered) -> None:
    st = stages(rendered["rocm54-source"])
    names = [s.name for s in st]
    assert names == ["rocm-base", "rocblas", "rocfft", "rocsparse", "rocrand", "rccl",
                     "torch-builder", "vision-builder", "runtime"]
    # each library stage builds FROM the one before it, so a late edit keeps the earlier cache
    for prev, cur in itertools.pairwise(st[:7]):
        assert cur.base == prev.name
    assert st[0].base == "rocm/dev-ubuntu-20.04:5.4.3-complete"
    rocblas = by_name(st)["rocblas"].run
    for opt in ("-DTensile_ARCHITECTURE=gfx1010", "-DTensile_LOGIC=asm_full",
                "-DTensile_CODE_OBJECT_VERSION=V3", "-DTensile_SEPARATE_ARCHITECTURES=OFF",
                "-DTensile_LIBRARY_FORMAT=msgpack"):
        assert opt in rocblas
    assert "000b8e8b45f5bbe9af70928ec59a257323a3d9cd8795d32d78eefd0e006fc123" in rocblas
    assert "sha256sum -c" in by_name(st)["rocsparse"].run
    assert all("-DAMDGPU_TARGETS=gfx1010" in s.run for s in st[1:6])
    assert "MAX_JOBS=" in "\n".join(st[0].values("ARG"))
    runtime = st[-1]
    for lib in ("rocblas", "rocfft", "rocsparse", "rocrand", "rccl"):
        assert f"--from={lib} /stage/{lib}/opt/rocm-5.4.3/ /opt/rocm-5.4.3/" in \
            runtime.values("COPY")


def test_rocm62_native_no_override_no_attention_kernels(rendered) -> None:
    st = by_name(stages(rendered["rocm62-native"]))
    assert st["rocm-base"].base == "rocm/dev-ubuntu-22.04:6.2.4-complete"
    env = st["torch-builder"].env
    for item in ("PYTORCH_ROCM_ARCH=gfx1010", "USE_FLASH_ATTENTION=0",
                 "USE_MEM_EFF_ATTENTION=0"):
        assert item in env
    assert "a8d6afb511a69687bbb2b7e88a3cf67917e1697e" in st["torch-builder"].run
    assert "7e08c7f56e2c89859310e53d898f72bccc4987cd83e08cfd6303513da15a9e71" in \
        st["vision-builder"].run
    assert "HSA_OVERRIDE_GFX_VERSION" not in st["runtime"].env


def test_rocm62_patched_miopen_build(rendered) -> None:
    st = by_name(stages(rendered["rocm62-patched"]))
    b = st["miopen-builder"]
    assert b.base == "rocm/dev-ubuntu-22.04:6.2.4-complete"
    assert MIOPEN_COMMIT in b.run and "rev-parse HEAD" in b.run
    assert "files/patches/miopen/ /src/patches/" in b.values("COPY")
    assert "git apply --check" in b.run
    for opt in ("-DMIOPEN_BACKEND=HIP", "-DMIOPEN_USE_MLIR=OFF",
                "-DMIOPEN_USE_COMPOSABLEKERNEL=OFF", "-DMIOPEN_ENABLE_AI_KERNEL_TUNING=OFF",
                "-DMIOPEN_ENABLE_AI_IMMED_MODE_FALLBACK=OFF", "-DMIOPEN_BUILD_DRIVER=OFF"):
        assert opt in b.run
    assert "HIPBLASLT" not in b.run  # no such option in MIOpen 3.2.0
    rt = st["runtime"]
    assert "torch==2.5.1+rocm6.2" in rt.run and "torchvision==0.20.1+rocm6.2" in rt.run
    assert 'libMIOpen.so.original' in rt.run
    assert 'MIOPEN_FORCE_RDNA1="1"' in rt.env
    assert 'HSA_OVERRIDE_GFX_VERSION="10.3.0"' in rt.env


def test_patches_have_headers_and_touch_only_known_files() -> None:
    assert [p.name[:4] for p in PATCHES] == ["0001", "0002", "0003"]
    for patch in PATCHES:
        text = patch.read_text()
        header = text.split("diff --git", 1)[0]
        assert "What:" in header and "Why:" in header and MIOPEN_COMMIT in header, patch.name
        files = re.findall(r"^\+\+\+ b/(\S+)$", text, flags=re.M)
        assert files and all(f.startswith("src/") for f in files), patch.name


@pytest.mark.skipif(not os.environ.get("MIOPEN_SRC"),
                    reason="set MIOPEN_SRC to a ROCm/MIOpen checkout to check the patches apply")
def test_patches_apply_to_pinned_miopen(tmp_path: Path) -> None:
    src = Path(os.environ["MIOPEN_SRC"])
    work = tmp_path / "miopen"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(src), str(work)], check=True)
    touched = sorted({f for p in PATCHES
                      for f in re.findall(r"^\+\+\+ b/(\S+)$", p.read_text(), flags=re.M)})
    # only the touched files: stored mirrors may lack MIOpen's large kernel-db blobs
    subprocess.run(["git", "-C", str(work), "checkout", "-q", MIOPEN_COMMIT, "--", *touched],
                   check=True)
    for patch in PATCHES:
        subprocess.run(["git", "-C", str(work), "apply", "--check", str(patch)], check=True)
        subprocess.run(["git", "-C", str(work), "apply", str(patch)], check=True)
