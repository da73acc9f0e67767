"""What each ROCm variant's rendered Dockerfile promises, read through dockerfile-parse.

These images cannot be built here (their bases live on Docker Hub), so their recipes are
checked statement by statement: stages and their order, a compiler-free runtime stage, the
env, the pinned versions and checksums, the MIOpen patch steps and the labels.
"""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from matrix_params import MATRIX, names, ubuntu_rocm

from imagefactory.render.renderer import Renderer

REPO = Path(__file__).resolve().parents[2]
PATCHES = sorted((REPO / "dockerfiles/files/patches/miopen").glob("*.patch"))
MIOPEN_COMMIT = "d62f77307968e63a9c0b5c1688a2927a1410510c"
# The compilers no runtime stage may carry, by path (also off the PATH).
COMPILER_PATHS = ("/usr/bin/gcc", "/usr/bin/g++", "/usr/bin/cc", "/usr/bin/c++",
                  "/opt/rocm/bin/hipcc")
ROCM = names(ubuntu_rocm)
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


@pytest.mark.parametrize("name", ROCM)
def test_runtime_stage_has_no_toolchain(rendered, name: str) -> None:
    if len(stages(rendered[name])) == 1:
        assert MATRIX.get(name).torch.source == "wheel", "a compiling variant has one stage"
        return  # a wheel install: one stage, no toolchain to keep out
    runtime = stages(rendered[name])[-1]
    assert runtime.base.startswith("ubuntu:"), "runtime must not start from a rocm/dev image"
    runs = runtime.values("RUN")
    check = [i for i, r in enumerate(runs) if "runtime stage must not carry a compiler" in r]
    assert len(check) == 1, "the stage checks for compilers at build time, exactly once"
    installs = "\n".join(r for i, r in enumerate(runs) if i != check[0])
    assert not COMPILERS.search(installs), installs
    # Issue 10 defect 6: the check must run after the stage's PATH is final ...
    order = [(i["instruction"], i["value"]) for i in runtime.instructions
             if i["instruction"] in ("ENV", "RUN")]
    last_path = max((n for n, (kind, value) in enumerate(order)
                     if kind == "ENV" and re.search(r"(^|\s)PATH=", value)), default=-1)
    first_check = next(n for n, (kind, value) in enumerate(order)
                       if kind == "RUN" and "must not carry a compiler" in value)
    assert first_check > last_path, "compiler check runs before ENV PATH is final"
    # ... and look by path too, hipcc included
    for path in COMPILER_PATHS:
        assert path in runs[check[0]], path


def test_rocm52_torch113_wheels_and_override(rendered) -> None:
    """Issue 10 defect 10: a lean runtime on plain Ubuntu, not the ~15 GB rocm/dev image."""
    st = stages(rendered["rocm52-torch113"])
    assert [s.base for s in st] == ["ubuntu:20.04"]
    run = st[-1].run
    assert "torch==1.13.1+rocm5.2" in run and "torchvision==0.14.1+rocm5.2" in run
    assert "https://download.pytorch.org/whl/rocm5.2" in run
    assert "rocm/dev" not in rendered["rocm52-torch113"]
    assert 'HSA_OVERRIDE_GFX_VERSION="10.3.0"' in st[-1].env


def test_rocm52_torch20_source_build_on_523(rendered, project) -> None:
    st = by_name(stages(rendered["rocm52-torch20"]))
    assert list(st) == ["rocm-base", "torch-builder", "vision-builder", "runtime"]
    assert st["rocm-base"].base == "rocm/dev-ubuntu-20.04:5.2.3-complete"
    # apt list rewritten to the versioned path before any apt-get update; before ROCm 5.3
    # the distribution is `ubuntu` (issue 10 defect 4)
    base_run = st["rocm-base"].run
    assert "https://repo.radeon.com/rocm/apt/5.2.3 ubuntu main" in base_run
    assert "https://repo.radeon.com/rocm/apt/5.2.3 ubuntu main" in st["runtime"].run
    assert "5.2.3 focal" not in rendered["rocm52-torch20"]
    assert "--branch v2.0.1" in st["torch-builder"].run
    assert "e9ebda29d87ce0916ab08c06ab26fd3766a870e5" in st["torch-builder"].run
    copies = st["runtime"].values("COPY")
    assert "--from=torch-builder /wheels/ /wheels/" in copies


def test_rocm52_torch20_is_gfx1030_with_the_override(rendered, project) -> None:
    """Issue 10 defect 5: stock ROCm 5.2.3 libraries carry gfx1030 code and no gfx1010 code,
    so torch is built for gfx1030 and run with the override (reported working on ROCm 5.2)."""
    st = by_name(stages(rendered["rocm52-torch20"]))
    assert "PYTORCH_ROCM_ARCH=gfx1030 " in st["torch-builder"].env + " "
    assert "gfx1010" not in st["torch-builder"].env
    assert 'HSA_OVERRIDE_GFX_VERSION="10.3.0"' in st["runtime"].env
    variant = project.matrix.get("rocm52-torch20")
    assert variant.recipe["torch_arch"] == "gfx1030"
    assert variant.default_profile is not None and variant.default_profile.name == "override"
    assert "override" in variant.description and "gfx1030" in variant.description


def test_rocm54_library_chain_order_and_tensile(rendered, project) -> None:
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
    # Tensile (patched to gfx1010) is prepared in the family's base stage, which rocBLAS
    # builds FROM; no library-name branch in the template
    base = by_name(st)["rocm-base"].run
    assert "000b8e8b45f5bbe9af70928ec59a257323a3d9cd8795d32d78eefd0e006fc123" in base
    assert "-DTensile_TEST_LOCAL_PATH=/src/Tensile" in rocblas
    assert all("-DAMDGPU_TARGETS=gfx1010" in s.run for s in st[1:6])
    assert "MAX_JOBS=" in "\n".join(st[0].values("ARG"))
    recipe = project.matrix.get("rocm54-source").recipe
    for s_ in st[1:6]:  # every clone is verified against the commit its flags were checked at
        assert f'= "{recipe.lib(s_.name).commit}"' in s_.run, s_.name
    runtime = st[-1]
    for lib in ("rocblas", "rocfft", "rocsparse", "rocrand", "rccl"):
        assert f"--from={lib} /stage/{lib}/opt/rocm-5.4.3/ /opt/rocm-5.4.3/" in \
            runtime.values("COPY")


def test_rocm54_no_rocsparse_patch(rendered, project) -> None:
    """Issue 10 defect 3: the ROCm 5.2 rocSPARSE patch does not apply to 5.4.3, which already
    keeps gfx10 off the DPP path: no patch step, no recorded patch."""
    st = by_name(stages(rendered["rocm54-source"]))
    assert "apply" not in st["rocsparse"].run and ".patch" not in st["rocsparse"].run
    recipe = project.matrix.get("rocm54-source").recipe
    assert "rocsparse_patch_sha256" not in recipe
    assert recipe["patches_verified"] == (
        "patch/22.tensile-gfx1010-1.patch@" + recipe["tensile_commit"],)


def test_rocm54_cxx_is_scoped_to_library_builds(rendered) -> None:
    """Issue 10 defect 7: CXX=hipcc only on the library configures, never as ENV in a stage
    the PyTorch builders inherit."""
    st = stages(rendered["rocm54-source"])
    for s_ in st:
        assert not re.search(r"(^|\s)CXX=", s_.env), f"ENV CXX in stage {s_.name}"
    for s_ in st[1:6]:
        assert "CXX=/opt/rocm/bin/hipcc cmake -S" in s_.run, s_.name
    for s_ in st[6:]:
        assert "CXX=" not in s_.run, s_.name


def test_compiler_cache_only_in_a_cache_mount(rendered) -> None:
    """Issue 10 defect 9 / issue 18: ccache only where its directory is a BuildKit cache
    mount, so its objects outlive a failed attempt of the step (nothing persisted before)."""
    for name, text in rendered.items():
        for ins in re.split(r"\n(?=[A-Z]+ )", text):
            if ins.startswith("RUN ") and ("COMPILER_LAUNCHER=ccache" in ins
                                           or "CCACHE_DIR=" in ins):
                assert "--mount=type=cache,target=/root/.cache/ccache," in ins, (name, ins)
        if "ccache" in text:
            assert "--mount=type=cache,target=/root/.cache/ccache," in text, name


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
    assert 'HSA_OVERRIDE_GFX_VERSION="10.3.0"' in rt.env


def test_rocm62_patched_configures_without_gtest(rendered) -> None:
    """Issue 10 defect 1: include(CTest) turns BUILD_TESTING on, and test/gtest needs GTest."""
    b = by_name(stages(rendered["rocm62-patched"]))["miopen-builder"]
    assert "-DBUILD_TESTING=OFF" in b.run


def test_rocm62_patched_checks_its_library_without_a_pipe(rendered) -> None:
    """Issue 10 defect 2: `strings lib | grep -q` died of SIGPIPE (141) under pipefail."""
    b = by_name(stages(rendered["rocm62-patched"]))["miopen-builder"]
    assert "strings " not in b.run
    assert "grep -qaF MIOPEN_FORCE_RDNA1 /opt/miopen-rdna1/lib/libMIOpen.so" in b.run


def test_rocm62_patched_lets_detection_run(rendered, project) -> None:
    """The image does not force RDNA1 mode: patch 1 reads KFD sysfs, visible in containers."""
    assert "MIOPEN_FORCE_RDNA1=" not in rendered["rocm62-patched"].replace(
        "grep -qaF MIOPEN_FORCE_RDNA1", "")
    assert "MIOPEN_FORCE_RDNA1" not in project.matrix.get("rocm62-patched").runtime_env()


def test_rdna1_tuning_profile_means_what_it_says(project) -> None:
    """Issue 10 defect 11: MIOPEN_FIND_ENFORCE=3 is SEARCH (auto-tune every new shape), not a
    'fresh Find'; the profile only switches solver families off and says so."""
    profile = project.matrix.profiles["rdna1-tuning"]
    assert "MIOPEN_FIND_ENFORCE" not in profile.env
    assert dict(profile.env) == {"MIOPEN_DEBUG_CONV_IMPLICIT_GEMM": "0",
                                 "MIOPEN_DEBUG_CONV_WINOGRAD": "0",
                                 "MIOPEN_DEBUG_CONV_DIRECT": "0"}
    assert "Find" not in profile.description
    for word in ("implicit-GEMM", "Winograd", "direct", "GEMM and FFT"):
        assert word in profile.description


def test_patches_have_headers_and_touch_only_known_files() -> None:
    assert [p.name for p in PATCHES] == ["0001-rdna1-detect-silicon.patch",
                                         "0002-rdna1-no-gfx103x-only-solvers.patch"]
    for patch in PATCHES:
        text = patch.read_text()
        header = text.split("diff --git", 1)[0]
        assert "What:" in header and "Why:" in header and MIOPEN_COMMIT in header, patch.name
        files = re.findall(r"^\+\+\+ b/(\S+)$", text, flags=re.M)
        assert files and all(f.startswith("src/") for f in files), patch.name
        # the header names every file the patch changes, with a line reference
        for f in files:
            assert re.search(re.escape(f) + r":\d+", header), (patch.name, f)


def test_patches_are_recorded_with_the_ref_they_were_verified_against(project) -> None:
    recipe = project.matrix.get("rocm62-patched").recipe
    recorded = [item.split("@") for item in recipe["patches_verified"]]
    assert [f"miopen/{p.name}" for p in PATCHES] == [name for name, _ in recorded]
    assert {ref for _, ref in recorded} == {recipe["miopen_commit"]} == {MIOPEN_COMMIT}


def test_no_placebo_patches() -> None:
    """The dropped patches: 0002 (hipExtMallocWithFlags(hipDeviceMallocDefault) is hipMalloc)
    and 0003 (immediate mode for Find, which MIOPEN_FIND_MODE=FAST, the find-fast profile,
    already gives)."""
    text = "".join(p.read_text() for p in PATCHES)
    added = "\n".join(line for line in text.splitlines() if line.startswith("+"))
    assert "hipExtMallocWithFlags" not in added and "hipDeviceMallocDefault" not in added
    assert "Rdna1UseImmediateFind" not in added
