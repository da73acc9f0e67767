"""The GPU code audit on real device code: a HIP kernel compiled by Debian's hipcc for chosen
targets (plain, compressed CCOB v2 and v3, a generic target, a standalone code object, a
shared library), and Debian sid's rocBLAS and hipBLASLt as shipped. Images come from
tests/fixtures/gpucode/Dockerfile on a sid base made with debootstrap (no registry needed).

Cost on the 2-core test machine: sid base 57 s (debootstrap 52 s + import), stage `kernels`
(hipcc, clang-21/llvm-21: ~300 MB download, 1.27 GB image) 3.5 min, stage `libs` (librocblas4
+ libhipblaslt1 + libmiopen1: ~445 MB download, 6.6 GB image) 1.7-2.8 min more.
Stages for the instruction check (#23), from those: `isa-subset` (two of rocBLAS's gfx1030
Tensile code objects on the base) seconds, `dot-kernels` (one hipcc kernel) about 30 s."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagefactory.commands._render import collect
from imagefactory.verify.gpucode import (
    Inventory,
    audit_file,
    audit_path,
    audit_tar,
    check_inventory,
    chunk_stream,
    format_inventory,
    runtime_isas,
)
from imagefactory.verify.gpucode.targets import processors_in_name

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.network]

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "gpucode"
# The shared sid base (scripts/setup-test-env.sh makes it; made here too when missing).
SID_BASE = os.environ.get("IMAGEFACTORY_SID_BASE", "debian:sid-slim")
KERNELS = "imagefactory-test/gpucode:kernels"
LIBS = "imagefactory-test/gpucode:libs"
# An image that already has Debian's librocblas4, libhipblaslt1 and libmiopen1 (e.g. the
# debian-rocm64 variant's toolchain stage) can stand in for the `libs` stage: no second
# 4.7 GB install in CI.
LIBS_IMAGE = os.environ.get("IMAGEFACTORY_GPUCODE_LIBS_IMAGE")
MIRROR = os.environ.get("IMAGEFACTORY_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# file -> (kind, targets found, compression) that the Dockerfile compiled; nothing else under
# /opt/gpucode carries GPU code.
COMPILED = {
    "plain-gfx1010-gfx1030": ("fatbin", {"gfx1010": 1, "gfx1030": 1}, ()),
    "ccob2-gfx1010-gfx1030": ("fatbin", {"gfx1010": 1, "gfx1030": 1}, ("zstd:v2",)),
    "ccob3-gfx1010-gfx1030": ("fatbin", {"gfx1010": 1, "gfx1030": 1}, ("zstd:v3",)),
    "plain-gfx1030": ("fatbin", {"gfx1030": 1}, ()),
    "plain-gfx10-1-generic": ("fatbin", {"gfx10-1-generic": 1}, ()),
    "plain-gfx1010-xnack-off": ("fatbin", {"gfx1010:xnack-": 1}, ()),
    "code-object-gfx1012.co": ("code-object", {"gfx1012": 1}, ()),
    "libvecadd.so": ("fatbin", {"gfx1010": 1}, ("zstd:v2",)),
}


def ensure_sid_base(client) -> None:  # type: ignore[no-untyped-def]
    """Make the sid base once (idempotent): debootstrap minbase + import, as for bookworm."""
    import docker

    try:
        client.images.get(SID_BASE)
        return
    except docker.errors.ImageNotFound:
        pass
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        pytest.fail(f"{SID_BASE} is missing and debootstrap (as root) is not available to "
                    "make it; run scripts/setup-test-env.sh")
    with tempfile.TemporaryDirectory(prefix="sid-rootfs-") as root:
        subprocess.run(["debootstrap", "--variant=minbase", "sid", root, MIRROR], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(f"tar -C {root} -c . | docker import - {SID_BASE}", shell=True,
                       check=True, stdout=subprocess.DEVNULL)


def build(client, target: str, tag: str) -> None:  # type: ignore[no-untyped-def]
    import docker

    try:
        client.images.build(path=str(FIXTURE), target=target, tag=tag, rm=True, forcerm=True,
                            buildargs={"BASE": SID_BASE})
    except docker.errors.BuildError as exc:
        log = "".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)
        pytest.fail(f"building {tag} failed: {exc}\n{log[-3000:]}")


def export_inventory(client, image: str) -> Inventory:  # type: ignore[no-untyped-def]
    """The audit of an image's whole filesystem, streamed from `docker export`."""
    ct = client.containers.create(image, "true")
    try:
        return audit_tar(chunk_stream(ct.export(chunk_size=1 << 20)), image)
    finally:
        ct.remove(force=True)


@pytest.fixture(scope="module")
def kernels_image(docker_client) -> str:  # type: ignore[no-untyped-def]
    ensure_sid_base(docker_client)
    build(docker_client, "kernels", KERNELS)
    return KERNELS


@pytest.fixture(scope="module")
def kernels_inventory(docker_client, kernels_image: str) -> Inventory:  # type: ignore[no-untyped-def]
    return export_inventory(docker_client, kernels_image)


@pytest.fixture(scope="module")
def kernels_dir(docker_client, kernels_image: str,  # type: ignore[no-untyped-def]
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """/opt/gpucode copied out of the image (only that directory)."""
    out = tmp_path_factory.mktemp("gpucode")
    ct = docker_client.containers.create(kernels_image, "true")
    try:
        stream, _stat = ct.get_archive("/opt/gpucode")
        with tarfile.open(fileobj=chunk_stream(stream), mode="r|") as tar:
            # The "data" filter exists from Python 3.11.4 (and 3.10.12); Debian 12's 3.11.2
            # lacks it, and this archive is one the test just made.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(out, filter="data")
            else:
                tar.extractall(out)
    finally:
        ct.remove(force=True)
    yield out / "gpucode"


def _by_name(inv: Inventory, prefix: str) -> dict[str, tuple[str, dict[str, int], tuple[str, ...]]]:
    return {Path(f.path).name: (f.kind, f.targets, f.compressed)
            for lib in inv.libraries for f in lib.files if f.path.startswith(prefix)}


def test_stream_audit_finds_exactly_the_compiled_targets(kernels_inventory: Inventory) -> None:
    assert _by_name(kernels_inventory, "/opt/gpucode/") == COMPILED
    # the rest of the image (clang, llvm, the HIP runtime: all carry the magic strings as
    # constants) yields no false bundles and no problems
    assert kernels_inventory.problems == ()


def test_file_audit_agrees_with_the_stream(kernels_dir: Path) -> None:
    inv = audit_path(kernels_dir)
    assert _by_name(inv, str(kernels_dir)) == COMPILED
    assert inv.problems == ()


def test_missing_targets_are_reported(kernels_inventory: Inventory) -> None:
    inv = kernels_inventory
    assert inv.carries("plain-gfx1010-gfx1030", "gfx1010")
    assert inv.carries("ccob3-gfx1010-gfx1030", "gfx1030")
    assert inv.carries("vecadd", "gfx1010")  # libvecadd.so
    # gfx1030 code does not run on gfx1010: built for gfx1030 only, gfx1010 is missing
    assert not inv.carries("plain-gfx1030", "gfx1010")
    assert inv.missing(["plain-gfx1030", "ccob2-gfx1010-gfx1030"], "gfx1010") == [
        "plain-gfx1030: no gfx1010 code (fatbin; it has gfx1030)"]
    # the generic target covers gfx1010 and gfx1012, not gfx1030
    assert inv.carries("plain-gfx10-1-generic", "gfx1010")
    assert inv.carries("plain-gfx10-1-generic", "gfx1012")
    assert not inv.carries("plain-gfx10-1-generic", "gfx1030")
    # the standalone code object is for gfx1012 only
    assert inv.carries("code-object-gfx1012.co", "gfx1012")
    assert not inv.carries("code-object-gfx1012.co", "gfx1010")
    # xnack- code runs on a gfx1010 in xnack- mode (RDNA1's default), not in xnack+ mode
    assert inv.carries("plain-gfx1010-xnack-off", "gfx1010:xnack-")
    assert not inv.carries("plain-gfx1010-xnack-off", "gfx1010:xnack+")


def test_truncated_real_files_give_typed_problems(kernels_dir: Path, tmp_path: Path) -> None:
    for name in ("plain-gfx1010-gfx1030", "ccob2-gfx1010-gfx1030", "ccob3-gfx1010-gfx1030"):
        data = (kernels_dir / name).read_bytes()
        # where the bundle starts in the file, then cuts inside its header and payload
        at = max(data.find(b"__CLANG_OFFLOAD_BUNDLE__"), data.find(b"CCOB"))
        assert at > 0
        for cut in (at + 3, at + 10, at + 30, at + 60, at + 200, len(data) // 2):
            f = tmp_path / f"{name}-{cut}"
            f.write_bytes(data[:cut])
            audit_file(f)  # never raises, whatever is left
            broken = bytearray(data)
            broken[at + 24: at + 40] = b"\xff" * 16  # absurd count / CCOB sizes
            f.write_bytes(bytes(broken))
            cf = audit_file(f)
            assert cf is None or cf.problems or "gfx1010" not in cf.targets


@pytest.fixture(scope="module")
def libs_image(docker_client, kernels_image: str) -> str:  # type: ignore[no-untyped-def]
    if LIBS_IMAGE:
        return LIBS_IMAGE
    build(docker_client, "libs", LIBS)
    return LIBS


def _in_image(client, image: str, cmd: str) -> str:  # type: ignore[no-untyped-def]
    out = client.containers.run(image, ["sh", "-c", cmd], remove=True)
    return out.decode() if isinstance(out, bytes) else str(out)


def test_debian_rocblas_and_hipblaslt(docker_client, libs_image: str) -> None:  # type: ignore[no-untyped-def]
    inv = export_inventory(docker_client, libs_image)
    rocblas = inv.library("rocblas")
    assert rocblas is not None
    # the architectures Debian built rocBLAS for (its control field) are exactly the ones
    # the audit finds in librocblas.so's fat binary and Tensile files
    status = _in_image(docker_client, libs_image, "dpkg -s librocblas4")
    field = next(line for line in status.splitlines()
                 if line.startswith("X-Rocm-Gpu-Architecture:"))
    debian_archs = set(field.split(":", 1)[1].split())
    assert {t.split(":")[0] for t in rocblas.targets} == debian_archs
    assert rocblas.kinds == ("fatbin", "tensile")
    assert inv.carries("rocblas", "gfx1010")
    # the Tensile files for gfx1010 are the ones the package lists
    listed = _in_image(docker_client, libs_image, 'dpkg -L librocblas4 | while read -r f; do '
                       '[ -f "$f" ] && echo "$f"; done').split()  # listed and still there
    tensile_1010 = [p for p in listed if "/library/" in p and "gfx1010" in processors_in_name(
        Path(p).name) and p.endswith((".co", ".hsaco", ".dat"))]
    assert rocblas.files_for("gfx1010", "tensile") == len(tensile_1010) > 0
    assert f"rocblas yes ({len(tensile_1010)} Tensile files)" in inv.summary("gfx1010")
    # Debian builds hipBLASLt without gfx1010: the audit names it
    assert not inv.carries("hipblaslt", "gfx1010")
    assert inv.missing(["rocblas", "hipblaslt"], "gfx1010") == inv.missing(["hipblaslt"],
                                                                            "gfx1010")
    assert inv.missing(["hipblaslt"], "gfx1010")[0].startswith("hipblaslt: no gfx1010 code")
    assert inv.problems == ()
    # the check `imagefactory test` runs: rocBLAS passes for gfx1010, hipBLASLt is named
    result = check_inventory(inv, runtime_isas(("gfx1010",), {}), ("rocblas", "hipblaslt"))
    assert result.failures == tuple(inv.missing(["hipblaslt"], "gfx1010"))
    # under the override the image runs as gfx1030: Debian's hipBLASLt lacks that too, and
    # rocBLAS passes exactly when its gfx1030 Tensile files are in the image (an image may
    # delete other archs' files after installing the package)
    result = check_inventory(inv, runtime_isas(("gfx1010",), {"HSA_OVERRIDE_GFX_VERSION":
                                                               "10.3.0"}), ("rocblas", "hipblaslt"))
    assert result.isas == ("gfx1030",)
    present = _in_image(docker_client, libs_image, "ls /usr/lib/x86_64-linux-gnu/rocblas/*/library"
                        "/ | grep -c gfx1030 || true").strip()
    expected = ["hipblaslt"] if int(present or 0) else ["rocblas", "hipblaslt"]
    assert [f.split(":")[0] for f in result.failures] == expected
    assert all(": no gfx1030 code" in f for f in result.failures)
    # MIOpen is there with no kernel database: it compiles at run time, a note, not a failure
    assert inv.library("miopen") is not None
    result = check_inventory(inv, ("gfx1010",), ("rocblas", "miopen"))
    assert result.passed
    assert any("MIOpen has no kernel database for gfx1010" in n for n in result.notes)
    assert "miopen compiles at run time" in inv.summary("gfx1010")
    text = format_inventory(inv, ("gfx1010",))
    assert "rocblas" in text and "hipblaslt" in text
    # and the result is JSON that reads back
    assert Inventory.from_dict(inv.to_dict()) == inv



def test_imagefactory_test_runs_the_gpu_code_check(engine, libs_image: str,  # type: ignore[no-untyped-def]
                                                   project, tmp_path: Path,
                                                   session_volumes: None) -> None:
    """Tester.run (what `imagefactory test` runs per variant) on the image with Debian's
    rocBLAS, as a gfx1010 ROCm variant needing rocBLAS, hipBLASLt and MIOpen: rocBLAS is
    found with gfx1010, hipBLASLt fails by name, and the result JSON carries the inventory."""
    from imagefactory.engine.images import BuiltImage
    from imagefactory.host.devices import GpuAccess
    from imagefactory.verify.results import TestResult
    from imagefactory.verify.tester import Tester, TestOptions

    variant = project.matrix.get("rocm62-native")
    assert variant.rocm and variant.gfx_targets == ("gfx1010",)
    info = engine.inspect_image(libs_image)
    assert info is not None
    built = BuiltImage(variant, info.id, libs_image, None, info)
    lines: list[str] = []
    opts = TestOptions(quick=True, results_dir=tmp_path,
                       gpu_libraries=("rocblas", "hipblaslt", "miopen"))
    result = Tester(engine, project.matrix, GpuAccess((), ()), opts,
                    emit=collect(lines.append)).run(built)
    check = next(c for c in result.checks if c.name == "gpu code")
    assert not check.passed
    assert check.detail.startswith("hipblaslt: no gfx1010 code (tensile; it has gfx")
    assert "rocblas" not in check.detail
    out = "\n".join(lines)
    assert "rocblas yes (52 Tensile files)" in out and "hipblaslt NO" in out
    assert "miopen compiles at run time" in out
    assert result.gpu_code is not None
    inv = result.gpu_code["inventory"]
    rocblas = next(lib for lib in inv["libraries"] if lib["name"] == "rocblas")
    assert rocblas["targets"]["gfx1010"]["tensile_files"] == 52
    assert result.gpu_code["check"]["isas"] == ["gfx1010"]
    back = TestResult.load(tmp_path, variant.name, result.scope) if result.save(tmp_path) \
        else None
    assert back is not None and back.gpu_code == json.loads(json.dumps(result.gpu_code))


def test_doctor_audits_a_host_torch(kernels_dir: Path, tmp_path: Path, project) -> None:  # type: ignore[no-untyped-def]
    """doctor on a torch/lib whose libtorch_hip.so is real compiled code: the gfx1010 library
    passes for an RX 5600 XT, the gfx1030-only one is named with the override as the way out."""
    from imagefactory.doctor.run import Options, diagnose

    sysfs = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs" / "rx5600xt"
    cases = {"libvecadd.so": "gfx1010 code: torch yes", "plain-gfx1030": "gfx1010 code: torch NO"}
    for source, expected in cases.items():
        lib = tmp_path / source / "torch" / "lib"
        lib.mkdir(parents=True)
        shutil.copy(kernels_dir / source, lib / "libtorch_hip.so")
        d = diagnose(project.matrix, Options(sysfs_root=sysfs, dev_root=tmp_path, docker=False,
                                             torch=lib.parent))
        check = next(c for c in d.checks if c.name == "host torch")
        assert check.ok is None and expected in check.detail, check
        if "NO" in expected:
            assert check.fix and "HSA_OVERRIDE_GFX_VERSION=10.3.0" in check.fix
            assert "(it has gfx1030)" in check.detail
        else:
            assert check.fix is None
    proc = subprocess.run(
        [sys.executable, "-m", "imagefactory", "doctor", "--no-docker", f"--sysfs-root={sysfs}",
         f"--dev-root={tmp_path}", f"--torch={tmp_path / 'libvecadd.so' / 'torch'}", "--json"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    data = json.loads(proc.stdout)
    assert any(c["name"] == "host torch" and "torch yes" in c["detail"] for c in data["checks"])


def test_audit_command_on_an_image(kernels_image: str) -> None:
    """`imagefactory audit IMAGE --isa gfx1010`: exit 1 naming the library built for gfx1030
    only; exit 0 for the ones that carry gfx1010 code."""
    cwd = Path(__file__).resolve().parents[2]
    base = [sys.executable, "-m", "imagefactory", "audit", kernels_image, "--isa", "gfx1010"]
    proc = subprocess.run([*base, "--need", "plain-gfx1030", "--need", "vecadd"],
                          capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    assert ("1 library without code for gfx1010: plain-gfx1030: no gfx1010 code (fatbin; it "
            "has gfx1030)") in proc.stderr
    assert re.search(r"\n  vecadd +\[fatbin\]  gfx1010 \(1 code object\)\n", proc.stdout)
    proc = subprocess.run([*base, "--need", "vecadd", "--need", "plain-gfx10-1-generic",
                           "--json"], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["check"]["passed"] is True
    files = {Path(f["path"]).name: f for lib in data["inventory"]["libraries"]
             for f in lib["files"]}
    assert files["ccob3-gfx1010-gfx1030"]["compressed"] == ["zstd:v3"]


# -- #23: the instruction check on Debian's rocBLAS as shipped -----------------------------

ISA_SUBSET = "imagefactory-test/gpucode:isa-subset"


@pytest.fixture(scope="module")
def isa_subset_image(docker_client, libs_image: str) -> str:  # type: ignore[no-untyped-def]
    """Two of Debian's rocBLAS gfx1030 Tensile code objects (fp16 and int8 GEMMs, 4 MB) on the
    sid base, copied from the `libs` stage (Dockerfile stage isa-subset)."""
    build(docker_client, "isa-subset", ISA_SUBSET)
    return ISA_SUBSET


def _isa_audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagefactory", "audit", *args],
                          capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[2])


def test_instruction_check_on_debian_rocblas(isa_subset_image: str, tmp_path: Path,
                                            docker_client) -> None:  # type: ignore[no-untyped-def]
    """Under the override a gfx1010 loads rocBLAS's gfx1030 code: it cannot decode the dot
    instructions, and the audit names them and the kernels that use them (exit 1); gfx1012
    has them (LLVM's FeatureISAVersion10_1_2): no undecodable word, exit 0, and it says what
    it could not check. Read from the image (the tar path) and from a folder (the file path)."""
    from imagefactory.verify.gpucode.isa import find_objdump

    if find_objdump() is None:
        pytest.fail("llvm-objdump is missing; scripts/setup-test-env.sh installs llvm-19")
    proc = _isa_audit(isa_subset_image, "--chip", "gfx1010", "--override", "10.3.0")
    out = proc.stdout
    assert proc.returncode == 1, proc.stdout + proc.stderr
    m = re.search(r"rocblas: ([\d,]+) of ([\d,]+) kernels use instructions gfx1010 lacks "
                  r"\(([\d,]+) words in 2 code objects\): (.*)", out)
    assert m, out
    flagged, kernels = (int(g.replace(",", "")) for g in m.groups()[:2])
    assert 0 < flagged <= kernels
    assert "v_dot2c_f32_f16 x" in m.group(4) and "v_dot4c_i32_i8 x" in m.group(4)
    for insn in ("v_dot2c_f32_f16", "v_dot4c_i32_i8"):  # each with the kernels using it
        k = re.search(rf"\n    {insn} in ([\d,]+) kernels:\n      (Cijk_\S+)\n", out)
        assert k, out
        assert int(k.group(1).replace(",", "")) <= flagged
    assert "compiled without gfx1010's hardware-bug workarounds (lds-misaligned-bug" in out
    err = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(err) == 1 and "v_dot2c_f32_f16 in" in err[0] and "kernels" in err[0], err

    proc = _isa_audit(isa_subset_image, "--chip", "gfx1012", "--override", "10.3.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"rocblas: 0 of {kernels:,} kernels use instructions gfx1012 lacks" in proc.stdout
    assert "not checked: how the code runs" in proc.stdout
    assert "necessary, not sufficient: the code was compiled without gfx1012's" in proc.stdout

    ct = docker_client.containers.create(isa_subset_image, "true")
    try:
        stream, _stat = ct.get_archive("/usr/lib/x86_64-linux-gnu/rocblas")
        with tarfile.open(fileobj=chunk_stream(stream), mode="r|") as tar:
            if hasattr(tarfile, "data_filter"):  # as in kernels_dir
                tar.extractall(tmp_path, filter="data")
            else:
                tar.extractall(tmp_path)
    finally:
        ct.remove(force=True)
    proc = _isa_audit(str(tmp_path / "rocblas"), "--chip", "gfx1010", "--override", "10.3.0",
                      "--json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)["instructions"][0]
    lib = data["libraries"]["rocblas"]
    assert (lib["kernels"], lib["kernels_flagged"]) == (kernels, flagged)
    using = lib["kernels_using"]["v_dot2c_f32_f16"]
    assert 0 < len(using["names"]) <= 10 and using["kernels"] >= len(using["names"])
    assert all(n.startswith("Cijk_") for n in using["names"])


def test_imagefactory_test_records_the_instruction_check(
        engine, isa_subset_image: str, project, tmp_path: Path,  # type: ignore[no-untyped-def]
        session_volumes: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Tester.run (what `imagefactory test` runs per variant) on Debian's rocBLAS gfx1030 code
    as the shipped override variant rocm52-torch113 (profile override, gfx_targets gfx1010):
    the gpu code check fails naming rocBLAS's dot instructions, the result JSON carries
    gpu_code["isa"], and the report prints the instruction line."""
    from imagefactory.cli import main
    from imagefactory.engine.images import BuiltImage
    from imagefactory.host.devices import GpuAccess
    from imagefactory.report import writer
    from imagefactory.verify.results import TestResult
    from imagefactory.verify.tester import Tester, TestOptions

    variant = project.matrix.get("rocm52-torch113")
    assert variant.runtime_env(None)["HSA_OVERRIDE_GFX_VERSION"] == "10.3.0"
    info = engine.inspect_image(isa_subset_image)
    assert info is not None
    built = BuiltImage(variant, info.id, isa_subset_image, None, info)
    lines: list[str] = []
    opts = TestOptions(quick=True, results_dir=tmp_path, gpu_libraries=("rocblas",))
    result = Tester(engine, project.matrix, GpuAccess((), ()), opts,
                    emit=collect(lines.append)).run(built)
    check = next(c for c in result.checks if c.name == "gpu code")
    assert not check.passed
    assert "override 10.3.0 on gfx1010: rocblas" in check.detail
    assert "v_dot2c_f32_f16 in" in check.detail and "v_dot4c_i32_i8 in" in check.detail
    out = "\n".join(lines)
    assert "  gpu isa: instructions: override 10.3.0 on gfx1010 (code loaded: gfx1030):" in out
    assert result.gpu_code is not None
    (isa,) = result.gpu_code["isa"]
    assert (isa["status"], isa["chip"], isa["loaded"]) == ("fail", "gfx1010", "gfx1030")
    assert isa["libraries"]["rocblas"]["code_objects"] == 2
    assert result.save(tmp_path)
    back = TestResult.load(tmp_path, variant.name, result.scope)
    assert back is not None and back.gpu_code is not None
    assert back.gpu_code["isa"] == json.loads(json.dumps(result.gpu_code["isa"]))
    with contextlib.suppress(SystemExit):
        main(["--config", str(Path(__file__).resolve().parents[2] / "variants.yaml"),
              "report", "--results", str(tmp_path)])
    capsys.readouterr()
    md = (tmp_path / writer.MARKDOWN).read_text()
    assert f"instructions (fail): {isa['summary']}" in md, md


DOT_KERNELS = "imagefactory-test/gpucode:dot-kernels"


def test_instruction_check_on_a_compiled_dot_kernel(docker_client, kernels_image: str,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    """A HIP kernel using __builtin_amdgcn_fdot2, compiled by Debian's hipcc for gfx1030
    (plain and in a compressed bundle), is flagged for gfx1010 and not for gfx1012; the same
    toolchain's kernel without it (plain-gfx1030) is clean on both."""
    build(docker_client, "dot-kernels", DOT_KERNELS)
    ct = docker_client.containers.create(DOT_KERNELS, "true")
    try:
        stream, _stat = ct.get_archive("/opt/gpucode-dot")
        with tarfile.open(fileobj=chunk_stream(stream), mode="r|") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp_path, filter="data")
            else:
                tar.extractall(tmp_path)
    finally:
        ct.remove(force=True)
    folder = tmp_path / "gpucode-dot"
    proc = _isa_audit(str(folder), "--chip", "gfx1010", "--override", "10.3.0", "--json")
    assert proc.returncode == 1, proc.stderr
    libs = json.loads(proc.stdout)["instructions"][0]["libraries"]
    assert set(libs) == {"fdot2-gfx1030", "fdot2-ccob-gfx1030", "plain-gfx1030"}
    for name in ("fdot2-gfx1030", "fdot2-ccob-gfx1030"):
        lib = libs[name]
        assert (lib["kernels"], lib["kernels_flagged"]) == (1, 1), lib
        (insn,) = lib["undecodable"]
        assert insn.startswith("v_dot2"), lib  # v_dot2c_f32_f16 or v_dot2_f32_f16
        assert lib["kernels_using"][insn]["names"] == ["_Z5fdot2PKDv2_DF16_S1_Pfi"]
    assert libs["plain-gfx1030"]["undecodable"] == {}
    assert libs["plain-gfx1030"]["kernels"] == 1
    proc = _isa_audit(str(folder), "--chip", "gfx1012", "--override", "10.3.0", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)["instructions"][0]
    assert data["status"] == "pass"
    assert all(not lib["undecodable"] and lib["kernels"] == 1
               for lib in data["libraries"].values())
