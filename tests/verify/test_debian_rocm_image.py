"""The debian-rocm64 variant's first two stages, built for real from Debian's archive.

`rocm-runtime` (Debian's ROCm libraries, pruned to gfx1010 per-ISA files) and `toolchain`
(Debian's hipcc) are built through the engine from the context imagefactory renders, with
the archive build argument pointed at the live archive (snapshot.debian.org is out of reach
here; IMAGEFACTORY_DEBIAN_ARCHIVE overrides it). Then, on the real images:
- every shared library of the GPU packages resolves (ldd: no "not found");
- Debian's own tools (llvm-objcopy, clang-offload-bundler) show gfx1010 device code in the
  fat binaries of rocBLAS, rocFFT, rocSPARSE, rocRAND and rocSOLVER, and rocBLAS's Tensile
  directory holds gfx1010 files and no other ISA's;
- a HIP kernel compiles for gfx1010 with the toolchain stage's FHS environment and its
  object carries a gfx1010 code object;
- without a GPU (and with stand-in device nodes) the HIP runtime returns an error code with
  a one-line message instead of crashing.

The PyTorch stages are not built here (hours, and GitHub): tests/render checks them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagefactory.identity import ARGS_LABEL, TARGET_LABEL, build_args_digest
from imagefactory.project import Project

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.network]

REPO = Path(__file__).resolve().parents[2]
VARIANT = "debian-rocm64"
ARCHIVE = os.environ.get("IMAGEFACTORY_DEBIAN_ARCHIVE", "http://deb.debian.org/debian")
ARCH_DIR = "/usr/lib/x86_64-linux-gnu"
# The fat math libraries the issue names, by package: the audit must find gfx1010 in each.
# (SONAME links: the unversioned .so names belong to the -dev packages.)
MATH_LIBS = {"librocblas4": "librocblas.so.4", "librocfft0": "librocfft.so.0",
             "librocsparse1": "librocsparse.so.1", "librocrand1": "librocrand.so.1",
             "librocsolver0": "librocsolver.so.0"}
BUILD_SECONDS: dict[str, float] = {}


def tag_for(stage: str) -> str:
    return f"imagefactory:{VARIANT}-{stage}"


def build_stage(client: Any, project: Project, stage: str, **args: str) -> str:
    """Build the variant up to `stage` the way a user does:
    `imagefactory build debian-rocm64 --target STAGE --build-arg DEBIAN_ARCHIVE=...`."""
    tag = tag_for(stage)
    start = time.monotonic()
    build_args = {"DEBIAN_ARCHIVE": ARCHIVE, **args}
    argv = [sys.executable, "-m", "imagefactory", "--config", str(project.config_path),
            "build", VARIANT, "--target", stage, "--builder", "classic", "--progress", "plain",
            *(f"--build-arg={k}={v}" for k, v in build_args.items())]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=3000, cwd=REPO)
    if proc.returncode != 0:
        pytest.fail(f"building {stage} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    BUILD_SECONDS[stage] = time.monotonic() - start
    labels = client.images.get(tag).labels
    assert labels[TARGET_LABEL] == stage
    # the label holds the names and a keyed digest of the values (identity.py), not them
    from imagefactory.share.hostid import salt

    assert labels[ARGS_LABEL] == build_args_digest(build_args, bytes.fromhex(salt()))
    return tag


@pytest.fixture(scope="module")
def sid_base(docker_client: Any) -> None:
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get("debian:sid-slim")
    except ImageNotFound:
        subprocess.run([str(REPO / "scripts/make-debian-base.sh"), "sid"], check=True)


@pytest.fixture(scope="module")
def runtime_image(docker_client: Any, project: Project, sid_base: None) -> str:
    return build_stage(docker_client, project, "rocm-runtime")


@pytest.fixture(scope="module")
def toolchain_image(docker_client: Any, project: Project, runtime_image: str) -> str:
    return build_stage(docker_client, project, "toolchain")


def run(client: Any, image: str, script: str, args: tuple[str, ...] = (),
        **kwargs: Any) -> tuple[int, str]:
    """Run `script` (with `args` as $1...) by bash in a fresh container, no network;
    (exit status, stdout+stderr)."""
    container = client.containers.create(image, ["bash", "-c", script, "script", *args],
                                         network_disabled=True, **kwargs)
    try:
        container.start()
        status = container.wait(timeout=600)["StatusCode"]
        return status, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def runtime_packages(project: Project) -> list[str]:
    pins = project.matrix.get(VARIANT).recipe["runtime_packages"]
    return [p.split("=")[0] for p in pins]


def test_every_gpu_library_resolves(docker_client: Any, project: Project,
                                    runtime_image: str) -> None:
    # The listed packages and the ROCm libraries they pulled in (comgr, hiprtc builtins, ...).
    script = r"""
set -e
pkgs="$1 $(dpkg-query -W -f '${Package}\n' | grep -E '^lib(amd|hip|hsa|roc|miopen)' | tr '\n' ' ')"
n=0
for lib in $(dpkg -L $pkgs 2>/dev/null | grep -E '\.so(\.[0-9]+)*$' | sort -u); do
    [ -f "$lib" ] && [ ! -L "$lib" ] || continue
    n=$((n+1))
    out=$(ldd "$lib" 2>&1) || { echo "LDD-FAILED $lib: $out"; continue; }
    missing=$(echo "$out" | grep "not found" | tr '\n' ' ')
    [ -z "$missing" ] || echo "MISSING $lib: $missing"
done
echo "CHECKED $n"
"""
    status, out = run(docker_client, runtime_image, script,
                      (" ".join(runtime_packages(project)),))
    assert status == 0, out
    assert "MISSING" not in out and "LDD-FAILED" not in out, out
    checked = int(out.rsplit("CHECKED ", 1)[1].split()[0])
    assert checked >= 15, out  # the HIP runtime, HSA, comgr and ~13 math/DNN libraries


# Runs inside the runtime stage with its own python3 (no tools, nothing copied out): find the
# .hip_fatbin section in the ELF section headers, walk the clang offload bundles in it (one
# per translation unit: magic, entry count, then offset/size/triple per entry) and count, per
# device target, the bundles that carry it. Prints one AUDIT line per library.
AUDIT = r"""
import collections, mmap, struct, sys
MAGIC = b"__CLANG_OFFLOAD_BUNDLE__"

def fatbin(mm):
    shoff, = struct.unpack_from("<Q", mm, 0x28)
    entsize, count, strndx = struct.unpack_from("<HHH", mm, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", mm, shoff + i * entsize) for i in range(count)]
    strtab = headers[strndx][4]
    for name, _type, _flags, _addr, offset, size in headers:
        if mm[strtab + name:mm.find(b"\0", strtab + name)] == b".hip_fatbin":
            return offset, offset + size
    raise SystemExit("no .hip_fatbin section")

for path in sys.argv[1:]:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert mm[:4] == b"\x7fELF", path
        pos, end = fatbin(mm)
        counts, bundles = collections.Counter(), 0
        pos = mm.find(MAGIC, pos, end)
        while pos != -1:
            bundles += 1
            n, = struct.unpack_from("<Q", mm, pos + 24)
            at, last, targets = pos + 32, pos + 32, set()
            for _ in range(n):
                off, size, tlen = struct.unpack_from("<QQQ", mm, at)
                targets.add(mm[at + 24:at + 24 + tlen].decode())
                at += 24 + tlen
                last = max(last, pos + off + size)
            counts.update(targets)
            pos = mm.find(MAGIC, last, end)
        print("AUDIT", path.rsplit("/", 1)[1], bundles,
              " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
"""
# gfx1010 code, or code for the generic ISA family gfx1010 belongs to (LLVM's gfx10-1-generic
# runs on gfx1010-gfx1013 through the HIP runtime's generic code object matching).
GFX1010 = ("hipv4-amdgcn-amd-amdhsa--gfx1010", "hipv4-amdgcn-amd-amdhsa--gfx10-1-generic")


def audit(client: Any, image: str, paths: list[str]) -> dict[str, tuple[int, dict[str, int]]]:
    status, out = run(client, image, f"python3 - \"$@\" <<'PY'\n{AUDIT}\nPY", tuple(paths))
    assert status == 0, out
    result = {}
    for line in out.splitlines():
        if line.startswith("AUDIT "):
            _, name, bundles, *targets = line.split()
            result[name] = (int(bundles), {k: int(v) for k, v in
                                           (t.split("=") for t in targets)})
    return result


def test_audit_shows_gfx1010_in_each_math_library(docker_client: Any,
                                                   runtime_image: str) -> None:
    paths = [f"{ARCH_DIR}/{lib}" for lib in MATH_LIBS.values()]
    found = audit(docker_client, runtime_image, paths)
    assert len(found) == len(MATH_LIBS), found
    for name, (bundles, counts) in found.items():
        # every translation unit's bundle carries code gfx1010 can run
        assert bundles > 0, name
        assert any(counts.get(t) == bundles for t in GFX1010), (name, bundles, counts)
    print("\n" + "\n".join(f"{k}: {v[0]} bundles {v[1]}" for k, v in found.items()))


def test_audit_agrees_with_debians_offload_bundler(docker_client: Any,
                                                   toolchain_image: str) -> None:
    """The parser above lists what LLVM's own clang-offload-bundler lists (rocFFT: one
    bundle, ten ISAs), so its counts can be trusted for the big libraries."""
    lib = f"{ARCH_DIR}/{MATH_LIBS['librocfft0']}"
    (bundles, counts), = audit(docker_client, toolchain_image, [lib]).values()
    status, out = run(docker_client, toolchain_image, f"""
set -e -o pipefail
cd /tmp
/usr/lib/llvm-21/bin/llvm-objcopy --dump-section .hip_fatbin=fatbin {lib} stripped
/usr/lib/llvm-21/bin/clang-offload-bundler --list --type=o --input=fatbin
""")
    assert status == 0, out
    assert bundles == 1 and set(out.split()) == set(counts), (out, counts)


def test_rocblas_tensile_files_pruned_to_gfx1010(docker_client: Any,
                                                 runtime_image: str) -> None:
    status, out = run(docker_client, runtime_image, f"""
set -e
cd {ARCH_DIR}/rocblas/*/library
echo "TOTAL $(ls | wc -l)"
echo "GFX1010 $(ls | grep -c gfx1010)"
ls | grep gfx | grep -v gfx1010 | sed 's/^/OTHER /' || true
test -f TensileLibrary_lazy_gfx1010.dat && echo LAZY-OK
du -sb . | sed 's/^/BYTES /'
""")
    assert status == 0, out
    assert "LAZY-OK" in out and "OTHER " not in out, out
    assert int(out.split("GFX1010 ")[1].split()[0]) > 10, out


KERNEL = r"""
#include <hip/hip_runtime.h>
#include <cstdio>
__global__ void axpy(float a, const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += a * x[i];
}
int main() {
    int n = 0;
    hipError_t err = hipGetDeviceCount(&n);
    if (err != hipSuccess || n == 0) {
        std::printf("no GPU: %s\n", hipGetErrorString(err));
        return 3;
    }
    std::printf("%d GPU(s)\n", n);
    return 0;
}
"""


def test_toolchain_compiles_a_hip_kernel_for_gfx1010(docker_client: Any,
                                                     toolchain_image: str,
                                                     tmp_path: Path) -> None:
    # Runs with the stage's own environment (ROCM_PATH=/usr, the FHS layout the PyTorch
    # builder uses), as the unprivileged default user of the image would.
    script = f"""
set -e -o pipefail
cd /tmp
cat > k.hip <<'EOF'
{KERNEL}
EOF
hipcc --offload-arch=gfx1010 -c k.hip -o k.o
# the device code object sits in the host object's .hip_fatbin section, as an offload bundle
/usr/lib/llvm-21/bin/llvm-objcopy --dump-section .hip_fatbin=fatbin k.o k.stripped.o
/usr/lib/llvm-21/bin/clang-offload-bundler --list --type=o --input=fatbin | sed 's/^/BUNDLE /'
hipcc --offload-arch=gfx1010 k.o -o k
cp k.o k /out/
set +e
./k; echo "EXIT $?"
"""
    status, out = run(docker_client, toolchain_image, script,
                      volumes={str(tmp_path): {"bind": "/out", "mode": "rw"}})
    assert status == 0, out
    assert "BUNDLE hipv4-amdgcn-amd-amdhsa--gfx1010" in out, out
    # the linked program runs without a GPU and says so in one line, with its own exit code
    assert "EXIT 3" in out, out
    no_gpu = [line for line in out.splitlines() if line.startswith("no GPU: ")]
    assert len(no_gpu) == 1, out
    # imagefactory's audit finds the gfx1010 code object in what the toolchain produced
    audit = imagefactory_cli("audit", str(tmp_path), "--json")
    assert audit.returncode == 0, audit.stderr
    files = json.loads(audit.stdout)["inventory"]
    assert "gfx1010" in json.dumps(files), files
    assert "gfx1030" not in json.dumps(files), files


CTYPES_CHECK = r"""
import ctypes
hip = ctypes.CDLL("libamdhip64.so.6")
hip.hipGetErrorString.restype = ctypes.c_char_p
count = ctypes.c_int(-1)
rc = hip.hipGetDeviceCount(ctypes.byref(count))
print(f"rc={rc} count={count.value} msg={hip.hipGetErrorString(rc).decode()}")
"""


@pytest.fixture
def standin_devices(tmp_path: Path) -> Iterator[list[str]]:
    """Character devices standing in for /dev/kfd and a render node (copies of /dev/null;
    mknod: the parameter using it is marked root)."""
    kfd, render = tmp_path / "kfd", tmp_path / "renderD128"
    for node in (kfd, render):
        os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))
    yield [f"{kfd}:/dev/kfd:rwm", f"{render}:/dev/dri/renderD128:rwm"]


@pytest.mark.parametrize("devices", ["none", pytest.param("standin", marks=pytest.mark.root)])
def test_hip_runtime_without_gpu_returns_an_error(docker_client: Any, runtime_image: str,
                                                  request: pytest.FixtureRequest,
                                                  devices: str) -> None:
    kwargs: dict[str, Any] = {}
    if devices == "standin":
        kwargs["devices"] = request.getfixturevalue("standin_devices")
    status, out = run(docker_client, runtime_image,
                      f"python3 - <<'EOF'\n{CTYPES_CHECK}\nEOF", **kwargs)
    # a return code, not a crash (a signal would show as status 128+N)
    assert status == 0, out
    line = [x for x in out.splitlines() if x.startswith("rc=")]
    assert len(line) == 1, out
    rc = int(line[0].split()[0].removeprefix("rc="))
    assert rc != 0, out  # hipErrorNoDevice (100) or hipErrorInvalidDevice and the like
    assert "count=0" in line[0] or "count=-1" in line[0], out


def test_runtime_stage_has_no_compiler(docker_client: Any, runtime_image: str) -> None:
    status, out = run(docker_client, runtime_image,
                      "for c in gcc g++ cc c++ clang clang++ hipcc; do "
                      "command -v $c && echo FOUND $c; done; ls /usr/lib/llvm-* -d 2>/dev/null "
                      "| sed 's/^/LLVM /'; true")
    assert status == 0 and "FOUND" not in out, out


def test_stage_sizes_and_times(docker_client: Any, runtime_image: str,
                               toolchain_image: str) -> None:
    """Record what the two stages cost (the README quotes these); fails on nothing but
    a missing image, so the numbers stay visible in the test log."""
    sizes = {stage: docker_client.images.get(tag_for(stage)).attrs["Size"]
             for stage in ("rocm-runtime", "toolchain")}
    print("\n" + json.dumps({"bytes": sizes, "build_seconds": BUILD_SECONDS}))
    assert sizes["rocm-runtime"] < sizes["toolchain"]


PROBE_CMAKE = r"""
cmake_minimum_required(VERSION 3.21)
project(probe LANGUAGES CXX HIP)
# What PyTorch 2.9's cmake/public/LoadHIP.cmake asks for: FindHIP in module mode, then each
# ROCm component in config mode, searched from ROCM_PATH (= /usr here).
list(APPEND CMAKE_PREFIX_PATH $ENV{ROCM_PATH})
find_package(HIP 1.0 MODULE REQUIRED)
foreach(pkg hip amd_comgr rocrand hiprand rocblas hipblas miopen hipfft hipsparse rocprim hipcub
            rocthrust hipsolver rocsolver hiprtc hipblaslt hsa-runtime64)
  find_package(${pkg} CONFIG REQUIRED)
  message(STATUS "FOUND ${pkg} ${${pkg}_VERSION}")
endforeach()
add_executable(k k.hip)
set_target_properties(k PROPERTIES HIP_ARCHITECTURES gfx1010)
target_link_libraries(k PRIVATE hip::host roc::rocblas)
"""


def test_cmake_finds_every_rocm_package_pytorch_needs(docker_client: Any,
                                                      toolchain_image: str) -> None:
    """The builder's CMake, in the builder's environment, configures a HIP project for
    gfx1010 against Debian's layout and finds each component PyTorch's LoadHIP.cmake needs."""
    script = f"""
set -e
mkdir -p /tmp/p && cd /tmp/p
cat > CMakeLists.txt <<'EOF'
{PROBE_CMAKE}
EOF
cat > k.hip <<'EOF'
{KERNEL}
EOF
# PyTorch's setup.py forwards CMAKE_* environment variables as -D definitions
cmake -G Ninja -S . -B build -DCMAKE_HIP_ARCHITECTURES=gfx1010 \\
    -DCMAKE_MODULE_PATH="$CMAKE_MODULE_PATH" \\
    > configure.log 2>&1 \\
    || {{ cat configure.log; exit 1; }}
grep -E "FOUND|HIP" configure.log
cmake --build build
/usr/lib/llvm-21/bin/llvm-objcopy --dump-section .hip_fatbin=fatbin build/k build/k.stripped
/usr/lib/llvm-21/bin/clang-offload-bundler --list --type=o --input=fatbin | sed 's/^/BUNDLE /'
set +e
build/k; echo "EXIT $?"
"""
    status, out = run(docker_client, toolchain_image, script)
    assert status == 0, out
    assert "EXIT 3" in out and "no GPU: " in out, out  # linked through FindHIP's rule, runs
    for pkg in ("rocblas", "miopen", "hipblaslt", "rocsolver", "rocthrust", "hsa-runtime64"):
        assert f"FOUND {pkg} " in out, out
    assert "BUNDLE hipv4-amdgcn-amd-amdhsa--gfx1010" in out, out


def test_builder_and_runtime_pins_resolve(docker_client: Any, project: Project,
                                          toolchain_image: str) -> None:
    """The later stages' pinned packages (not built here) resolve against the archive."""
    recipe = project.matrix.get(VARIANT).recipe
    pins = " ".join([*recipe["builder_packages"], *recipe["python_packages"]])
    script = f"""
set -e
sed -i 's|^URIs: .*|URIs: {ARCHIVE}|' /etc/apt/sources.list.d/debian.sources
apt-get update -qq
apt-get install -s --no-install-recommends {pins} | grep -c '^Inst ' | sed 's/^/WOULD-INSTALL /'
"""
    container = docker_client.containers.create(toolchain_image, ["bash", "-c", script])
    try:
        container.start()
        status = container.wait(timeout=600)["StatusCode"]
        out = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status == 0, out
    assert "WOULD-INSTALL " in out, out


def imagefactory_cli(*args: str, config: Path = REPO / "variants.yaml"
                     ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "imagefactory", "--config", str(config), *args],
                          capture_output=True, text=True, env=env, timeout=900)


def test_cli_test_on_the_runtime_stage_runs_what_applies(runtime_image: str, tmp_path: Path,
                                                         session_volumes: None) -> None:
    """`imagefactory test --target rocm-runtime`: the stage has python3 and the ROCm
    libraries but no torch, user, labels or entrypoint yet; those checks and the conv check
    are skipped with the reason printed, the rest decide."""
    proc = imagefactory_cli("test", VARIANT, "--target", "rocm-runtime",
                            "--results", str(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"testing {tag_for('rocm-runtime')}" in out
    assert "ok    python version" in out
    assert "skip  torch imports: no torch in stage 'rocm-runtime'" in out
    assert "skip  entrypoint: stage 'rocm-runtime': only the variant's final image has it" in out
    assert "conv: skipped: no torch in stage 'rocm-runtime'" in out
    # imagefactory's GPU code audit (verify/gpucode) on the stage: gfx1010 code in each math
    # library, Tensile files for gfx1010 only after pruning, MIOpen compiling at run time
    assert "ok    gpu code" in out
    line = next(x for x in out.splitlines() if x.startswith("  gpu code: gfx1010 code: "))
    for lib in ("rocblas yes", "rocfft yes", "rocsparse yes", "rocrand yes", "rocsolver yes"):
        assert lib in line, line
    assert "miopen compiles at run time" in line
    assert "PASSED" in out
    # the stage's result sits apart from the variant's, which push and report read
    assert (tmp_path / "stages" / f"{VARIANT}.json").is_file()
    assert not (tmp_path / f"{VARIANT}.json").exists()


def test_cli_test_on_a_stage_still_fails_on_what_it_checks(runtime_image: str, tmp_path: Path,
                                                           session_volumes: None) -> None:
    """The same stage image against a matrix expecting another Python: FAILED, exit 1."""
    shutil.copy(REPO / "variants.yaml", tmp_path / "variants.yaml")
    shutil.copytree(REPO / "dockerfiles", tmp_path / "dockerfiles")
    config = tmp_path / "variants.yaml"
    text = config.read_text()
    assert '      python: "3.14"\n      torch: "2.9.1"' in text
    config.write_text(text.replace('      python: "3.14"\n      torch: "2.9.1"',
                                   '      python: "3.13"\n      torch: "2.9.1"'))
    proc = imagefactory_cli("test", VARIANT, "--target", "rocm-runtime",
                            "--results", str(tmp_path / "results"), config=config)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "FAIL  python version: python is 3.14" in out, out
    assert "conv: skipped: no torch in stage 'rocm-runtime'" in out


def test_cli_test_on_a_stage_never_built_names_the_build_command(tmp_path: Path) -> None:
    proc = imagefactory_cli("test", VARIANT, "--target", "no-such-stage",
                            "--results", str(tmp_path))
    assert proc.returncode == 1
    assert (f"no 'no-such-stage' stage image for {VARIANT}: run `imagefactory build {VARIANT} "
            "--target no-such-stage` first") in proc.stderr
    bad = imagefactory_cli("test", VARIANT, "--target", "-x;", "--results", str(tmp_path))
    assert bad.returncode == 2 and "--target '-x;'" in bad.stderr
