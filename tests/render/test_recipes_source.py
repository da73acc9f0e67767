"""The ROCm recipes against the upstream sources at exactly the refs they pin.

Each test runs when its source checkout is named by an environment variable and skips cleanly
otherwise. A checkout is any git clone that holds the pinned commit (its work tree is never
used: everything is read from the commit itself):

  MIOPEN_SRC     ROCm/MIOpen            (rocm62-patched: patches, cmake flags, syntax check)
  HALF_SRC       ROCm/half              (half.hpp for the MIOpen syntax check)
  ROCBLAS_SRC    ROCm/rocBLAS           (rocm54-source: cmake flags, tensile_tag.txt)
  TENSILE_SRC    ROCm/Tensile           (rocm54-source: xuhuisheng's Tensile patch)
  ROCFFT_SRC, ROCSPARSE_SRC, ROCRAND_SRC, RCCL_SRC   (rocm54-source: cmake flags)
  ROCM_BUILD_SRC xuhuisheng/rocm-build  (rocm54-source: the patches it downloads)
  PYTORCH_SRC    pytorch/pytorch        (the build switches the torch stages set)

`git clone https://github.com/ROCm/MIOpen` (etc.) gives them; README says more.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _dockerfile import Stage, parse

from imagefactory.render.renderer import Renderer

REPO = Path(__file__).resolve().parents[2]
PATCH_DIR = REPO / "dockerfiles" / "files" / "patches"
_FLAG = re.compile(r"(?:^|\s)-D([A-Za-z_][A-Za-z0-9_]*)=")


def source(var: str) -> Path:
    value = os.environ.get(var)
    if not value:
        pytest.skip(f"set {var} to a clone of the upstream repository to run this check")
    path = Path(value)
    if not (path / ".git").exists() and not (path / "HEAD").exists():
        pytest.fail(f"{var}={value} is not a git repository")
    return path


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"git {' '.join(args)} in {repo}: {proc.stderr.strip()}")
    return proc


def has_commit(repo: Path, commit: str) -> None:
    if git(repo, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode != 0:
        pytest.fail(f"{repo} does not hold commit {commit}: fetch it (git fetch origin {commit})")


def checkout(repo: Path, commit: str, paths: list[str], dest: Path) -> Path:
    """`paths` of `commit` laid out under `dest` as a fresh git repository (for git apply).
    Only these paths: stored mirrors may lack MIOpen's large kernel-db blobs."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit, "--", *paths],
                             capture_output=True, check=False)
    assert archive.returncode == 0, archive.stderr.decode()
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    subprocess.run(["git", "init", "-q", str(dest)], check=True)
    return dest


def cmake_flags(stage: Stage) -> list[str]:
    """Every -DNAME a stage passes to a cmake configure."""
    return [name for run in stage.runs if re.search(r"\bcmake -S\b", run.script)
            for name in _FLAG.findall(run.script)]


def missing_cmake_flags(repo: Path, commit: str, flags: list[str]) -> list[str]:
    """Flags that no CMakeLists.txt / *.cmake of `commit` mentions (CMake's own CMAKE_*
    variables excepted)."""
    missing = []
    for name in flags:
        if name.startswith("CMAKE_"):
            continue
        found = git(repo, "grep", "-q", "-w", "-e", name, commit, "--", "*CMakeLists.txt",
                    "*.cmake", check=False)
        if found.returncode != 0:
            missing.append(name)
    return missing


def patch_files(patch: Path) -> list[str]:
    return re.findall(r"^\+\+\+ b/(\S+)$", patch.read_text(), flags=re.M)


@pytest.fixture(scope="module")
def rendered(project) -> dict[str, dict[str | None, Stage]]:
    r = Renderer(project)
    return {name: {s.name: s for s in parse(r.render(project.matrix.get(name)).dockerfile)}
            for name in ("rocm62-patched", "rocm54-source", "rocm52-torch20", "rocm62-native")}


# ---- MIOpen (rocm62-patched) ---------------------------------------------------------------

def miopen_patches(project) -> tuple[str, list[tuple[Path, str]]]:
    recipe = project.matrix.get("rocm62-patched").recipe
    listed = [item.rsplit("@", 1) for item in recipe["patches_verified"]]
    return str(recipe["miopen_commit"]), [(PATCH_DIR / name, ref) for name, ref in listed]


def test_miopen_patches_apply_at_the_pinned_commit(project, tmp_path: Path) -> None:
    src = source("MIOPEN_SRC")
    commit, patches = miopen_patches(project)
    assert {ref for _, ref in patches} == {commit}, "every patch verified at the pinned commit"
    has_commit(src, commit)
    touched = sorted({f for p, _ in patches for f in patch_files(p)})
    work = checkout(src, commit, touched, tmp_path / "miopen")
    for patch, _ in patches:  # in order, exactly (git apply has no fuzz)
        for args in (["apply", "--check"], ["apply"]):
            proc = subprocess.run(["git", "-C", str(work), *args, str(patch)],
                                  capture_output=True, text=True, check=False)
            assert proc.returncode == 0, f"{patch.name}: {proc.stderr}"


def test_miopen_cmake_flags_exist_at_the_pinned_commit(project, rendered) -> None:
    src = source("MIOPEN_SRC")
    commit, _ = miopen_patches(project)
    has_commit(src, commit)
    flags = cmake_flags(rendered["rocm62-patched"]["miopen-builder"])
    assert "MIOPEN_BACKEND" in flags and "BUILD_TESTING" in flags
    assert missing_cmake_flags(src, commit, flags) == []


def test_miopen_configure_needs_build_testing_off(project, rendered) -> None:
    """Why -DBUILD_TESTING=OFF (issue 10 defect 1), re-read at the pinned commit."""
    src = source("MIOPEN_SRC")
    commit, _ = miopen_patches(project)
    top = git(src, "show", f"{commit}:CMakeLists.txt").stdout
    gtest = git(src, "show", f"{commit}:test/gtest/CMakeLists.txt").stdout
    if "include(CTest)" in top and "find_package(GTest REQUIRED)" in gtest:
        run = "\n".join(r.script for r in rendered["rocm62-patched"]["miopen-builder"].runs)
        assert "-DBUILD_TESTING=OFF" in run


# Sites of the patched tree that may still compare the *reported* name against gfx103x, each
# with the reason it is right for RDNA1 under the override (see patch 2's header).
GFX103_LEFT_ALONE = {
    # MIO_BN_GFX103X=1 switches the GCN DPP row_bcast reductions off: needed on any gfx10
    "src/solver/batchnorm/": "MIO_BN_GFX103X",
    # WORKAROUND_MIOPEN_ISSUE_557 (buffer intrinsics off) and v_fmac_f32 (exists on gfx10.1)
    "src/include/miopen/solver/implicitgemm_util.hpp": "is_use_amd_buffer_load_store/fmac",
    # which -DCK_AMD_GPU_* to compile for: must follow the code-object target
    "src/include/miopen/solver/ck_utility_common.hpp": "compiler flag / allowlist tail",
    # reporting/mapping names, kernel naming inside already-gated solvers
    "src/target_properties.cpp": "device name map",
    "src/solver/conv_asm_implicit_gemm_gtc_perf_config.cpp": "kernel names (NCHWC, gated)",
    "src/solver/conv_asm_implicit_gemm_gtc_fwd_nchwc.cpp": "gated by Silicon() after this",
    "src/solver/conv_winoRxS.cpp": "the list is evaluated on Silicon()",
    "src/solver/conv_winoRxS_fused.cpp": "the list is evaluated on Silicon()",
    "src/solver.cpp": "the list is evaluated on Silicon()",
}


def test_every_gfx103x_check_in_miopen_is_reviewed(project, tmp_path: Path) -> None:
    """Every place in MIOpen's host code that tests for gfx103x at the pinned commit is either
    changed by the patches or listed above with a reason: a new one (another ref) fails here."""
    src = source("MIOPEN_SRC")
    commit, _ = miopen_patches(project)
    hits = git(src, "grep", "-l", "-E", r'"gfx103|gfx1030"', commit, "--", "src/*.cpp",
               "src/*.hpp", check=False).stdout.split()
    files = sorted({h.split(":", 1)[1] for h in hits})
    assert files, "expected gfx103x checks in MIOpen's sources"
    unreviewed = [f for f in files if not any(f.startswith(k) for k in GFX103_LEFT_ALONE)]
    assert unreviewed == [], f"gfx103x checks not reviewed for RDNA1: {unreviewed}"


def generated_headers(src: Path, commit: str, flags: dict[str, bool], out: Path) -> None:
    """What MIOpen's configure writes (src/CMakeLists.txt:50-57, ExportHeader.cmake): config.h
    and version.h from their .in files with the recipe's options, and the export headers.
    rocblas.h and roctracer's headers are not to be had here, so those two options are
    configured off; the patched code does not use them."""
    values = {"MIOpen_VERSION_MAJOR": "3", "MIOpen_VERSION_MINOR": "2", "MIOpen_VERSION_PATCH":
              "0", "MIOPEN_DEFAULT_FIND_MODE": "DynamicHybrid"}

    def configure(text: str) -> str:
        lines = []
        for line in text.splitlines():
            m = re.match(r"#cmakedefine01 (\w+)", line)
            if m:
                lines.append(f"#define {m[1]} {int(flags.get(m[1], False))}")
                continue
            m = re.match(r"#cmakedefine (\w+) @(\w+)@", line)
            if m and m[2] in values:
                lines.append(f"#define {m[1]} {values[m[2]]}")
                continue
            if line.startswith("#cmakedefine "):
                lines.append(f"/* #undef {line.split()[1]} */")
                continue
            lines.append(re.sub(r"@(\w+)@", lambda v: values.get(v[1], "0"), line))
        return "\n".join(lines) + "\n"

    (out / "miopen").mkdir(parents=True)
    for name in ("config.h", "version.h"):
        text = git(src, "show", f"{commit}:include/miopen/{name}.in").stdout
        (out / "miopen" / name).write_text(configure(text))
    for name, macro in (("export.h", "MIOPEN"), ("export_internals.h", "MIOPEN_INTERNALS")):
        (out / "miopen" / name).write_text(
            f'#pragma once\n#define {macro}_EXPORT __attribute__((visibility("default")))\n'
            f'#define {macro}_NO_EXPORT __attribute__((visibility("hidden")))\n')


def hip_include() -> Path:
    for candidate in (os.environ.get("HIP_INCLUDE"), "/opt/rocm/include", "/usr/include"):
        if candidate and (Path(candidate) / "hip" / "hip_runtime_api.h").is_file():
            return Path(candidate)
    pytest.skip("no HIP headers: apt-get install libamdhip64-dev (Debian) or set HIP_INCLUDE")


def test_patched_miopen_compiles(project, rendered, tmp_path: Path) -> None:
    """-fsyntax-only over every source file the patches change and one user of every header
    they change, against the pinned commit's headers and the recipe's configure options."""
    src = source("MIOPEN_SRC")
    half = source("HALF_SRC")
    commit, patches = miopen_patches(project)
    has_commit(src, commit)
    hip = hip_include()
    cxx = os.environ.get("MIOPEN_SYNTAX_CXX") or shutil.which("clang++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (clang++ or g++) for the syntax check")
    if not Path("/usr/include/boost/optional.hpp").is_file():
        pytest.skip("no Boost headers: apt-get install libboost-dev")

    # the whole of src/ and include/ minus the kernel databases (large, and absent in mirrors)
    listing = git(src, "ls-tree", "-r", "--name-only", commit, "--", "src", "include").stdout
    def wanted(path: str) -> bool:
        if path.endswith((".bz2", ".kdb")):
            return False
        return not path.startswith("src/kernels/") or path.endswith((".h", ".hpp"))

    paths = [p for p in listing.split() if wanted(p)]
    work = checkout(src, commit, paths, tmp_path / "miopen")
    for patch, _ in patches:
        proc = subprocess.run(["git", "-C", str(work), "apply", str(patch)],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{patch.name}: {proc.stderr}"

    options = {name: value == "ON" for name, value in re.findall(
        r"-D(MIOPEN_\w+)=(ON|OFF)", "\n".join(
            r.script for r in rendered["rocm62-patched"]["miopen-builder"].runs))}
    assert "-DMIOPEN_BACKEND=HIP" in "\n".join(
        r.script for r in rendered["rocm62-patched"]["miopen-builder"].runs)
    flags = {"MIOPEN_BACKEND_HIP": True, "MIOPEN_USE_COMGR": True, "MIOPEN_USE_HIPRTC": True,
             "MIOPEN_USE_HIP_KERNELS": True, "MIOPEN_ENABLE_SQLITE": True,
             "MIOPEN_ENABLE_SQLITE_KERN_CACHE": True, "BUILD_SHARED_LIBS": True,
             "MIOPEN_USE_ROCBLAS": False, "MIOPEN_USE_ROCTRACER": False, **options}
    gen = tmp_path / "generated"
    generated_headers(src, commit, flags, gen)
    (gen / "half").mkdir()
    half_hpp = git(half, "show", "HEAD:include/half.hpp").stdout
    assert "namespace half_float" in half_hpp
    (gen / "half" / "half.hpp").write_text(half_hpp)

    changed = sorted({f for p, _ in patches for f in patch_files(p)})
    units = [f for f in changed if f.endswith(".cpp")]
    for header in (f for f in changed if f.endswith(".hpp")):
        include = header.split("src/include/", 1)[1]
        users = sorted(u.split(":", 1)[1] for u in git(
            src, "grep", "-l", "-F", f"<{include}>", commit, "--", "src/*.cpp",
            check=False).stdout.split())
        assert users, f"no source file includes {header}"
        if not set(users) & set(units):
            units.append(users[0])

    def compile_one(unit: str) -> tuple[str, int, str]:
        proc = subprocess.run(
            [cxx, "-std=c++17", "-fsyntax-only", "-w", "-DMIOPEN_BETA_API=1",
             "-DBOOST_ALL_NO_LIB=1", "-D__HIP_PLATFORM_AMD__=1", f"-I{work / 'src/include'}",
             f"-I{work / 'include'}", f"-I{gen}", f"-I{hip}", str(work / unit)],
            capture_output=True, text=True, check=False)
        return unit, proc.returncode, proc.stderr

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        results = list(pool.map(compile_one, units))
    failed = [f"{unit}:\n{err[-3000:]}" for unit, rc, err in results if rc != 0]
    assert not failed, "\n".join(failed)
    assert {unit for unit, _, _ in results} >= {"src/target_properties.cpp",
                                                 "src/solver/conv_winoRxS.cpp"}


# ---- the rocm54-source library chain ---------------------------------------------------------

LIB_SOURCES = {"rocblas": "ROCBLAS_SRC", "rocfft": "ROCFFT_SRC", "rocsparse": "ROCSPARSE_SRC",
               "rocrand": "ROCRAND_SRC", "rccl": "RCCL_SRC"}


@pytest.mark.parametrize("lib", sorted(LIB_SOURCES))
def test_library_cmake_flags_exist_at_the_pinned_commit(project, rendered, lib: str) -> None:
    src = source(LIB_SOURCES[lib])
    recipe = project.matrix.get("rocm54-source").recipe
    commit = recipe.lib(lib).commit
    has_commit(src, commit)
    tag = git(src, "rev-parse", f"rocm-{project.matrix.get('rocm54-source').rocm}^{{commit}}",
              check=False).stdout.strip()
    if tag:  # the clone has the tag: the pinned commit is what it names
        assert tag == commit
    flags = cmake_flags(rendered["rocm54-source"][lib])
    assert "AMDGPU_TARGETS" in flags
    assert missing_cmake_flags(src, commit, flags) == []


def test_rocblas_uses_the_pinned_tensile(project) -> None:
    src = source("ROCBLAS_SRC")
    recipe = project.matrix.get("rocm54-source").recipe
    tag = git(src, "show", f"{recipe.lib('rocblas').commit}:tensile_tag.txt").stdout.strip()
    assert tag == recipe["tensile_commit"]


def xuhuisheng_patch(project, name: str) -> bytes:
    src = source("ROCM_BUILD_SRC")
    recipe = project.matrix.get("rocm54-source").recipe
    has_commit(src, str(recipe["xuhuisheng_commit"]))
    proc = subprocess.run(["git", "-C", str(src), "show",
                           f"{recipe['xuhuisheng_commit']}:{name}"], capture_output=True,
                          check=True)
    return proc.stdout


def test_tensile_patch_applies_at_the_pinned_commit(project, tmp_path: Path) -> None:
    src = source("TENSILE_SRC")
    recipe = project.matrix.get("rocm54-source").recipe
    [entry] = recipe["patches_verified"]
    name, ref = entry.rsplit("@", 1)
    assert ref == recipe["tensile_commit"]
    data = xuhuisheng_patch(project, name)
    assert hashlib.sha256(data).hexdigest() == recipe["tensile_patch_sha256"]
    has_commit(src, ref)
    patch = tmp_path / "tensile.patch"
    patch.write_bytes(data)
    touched = re.findall(r"^\+\+\+ b/(\S+)$", data.decode(), flags=re.M)
    work = checkout(src, ref, touched, tmp_path / "tensile")
    for args in (["apply", "--check"], ["apply"]):
        proc = subprocess.run(["git", "-C", str(work), *args, str(patch)], capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    # the patch limits the assembler's ISA list to gfx1010, the recipe's only target
    assert 'globalParameters["SupportedISA"] = [(10,1,0)]' in (
        work / "Tensile" / "Common.py").read_text()


def test_rocsparse_needs_no_patch_at_the_pinned_commit(project, tmp_path: Path) -> None:
    """Why the 5.2 rocSPARSE patch is gone (issue 10 defect 3): at the pinned commit it does
    not apply, and gfx1010 is already off the move-DPP path."""
    src = source("ROCSPARSE_SRC")
    recipe = project.matrix.get("rocm54-source").recipe
    commit = recipe.lib("rocsparse").commit
    has_commit(src, commit)
    common = git(src, "show", f"{commit}:library/src/include/common.h").stdout
    block = common[common.index("#ifndef ROCSPARSE_USE_MOVE_DPP"):
                   common.index("#endif", common.index("#ifndef ROCSPARSE_USE_MOVE_DPP"))]
    enabled_for = re.findall(r"defined\(__(gfx\w+)__\)", block)
    assert enabled_for and not any(g.startswith("gfx10") for g in enabled_for), enabled_for
    assert "#define ROCSPARSE_USE_MOVE_DPP 0" in block  # every other target
    old = xuhuisheng_patch(project, "patch/25.rocsparse-gfx10-1.patch")
    patch = tmp_path / "rocsparse.patch"
    patch.write_bytes(old)
    work = checkout(src, commit, ["library/src/include/common.h"], tmp_path / "rocsparse")
    proc = subprocess.run(["git", "-C", str(work), "apply", "--check", str(patch)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0


# ---- PyTorch ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rocm52-torch20", "rocm62-native"])
def test_torch_build_switches_exist_at_the_pinned_commit(project, rendered, name: str) -> None:
    """Every NAME=VALUE the torch stage sets as a build switch is read by PyTorch's setup.py or
    CMake at the pinned commit (a misspelt switch is silently ignored)."""
    src = source("PYTORCH_SRC")
    recipe = project.matrix.get(name).recipe
    commit = str(recipe["torch_commit"])
    has_commit(src, commit)
    switches = [item.split("=", 1)[0] for item in recipe["build_env"]]
    missing = [s for s in switches
               if git(src, "grep", "-q", "-w", "-e", s, commit, "--", "setup.py",
                      "tools/setup_helpers", "CMakeLists.txt", "cmake", check=False
                      ).returncode != 0]
    assert missing == []
