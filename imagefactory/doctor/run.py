"""Is this host ready to run the images, which GPU does it have, and which variant suits it.

Every problem comes with the command that fixes it: the people who run this are the ones
whose card AMD never supported, and a bare "permission denied" sends them to forums.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shlex
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..host import gpuinfo, kernellog
from ..host.gpuinfo import Gpu, Scan
from ..matrix.loader import Matrix, Variant
from ..safety import escape_control

RELOGIN = "then log out and back in (group changes apply to new logins)"


@dataclass(frozen=True)
class Identity:
    """Who would open the device nodes: the groups of this session, and the groups the user
    is a member of in /etc/group (they differ right after `usermod -aG`, until a new login)."""

    uid: int
    name: str
    session_gids: frozenset[int]
    member_gids: frozenset[int]
    current: bool = False  # this process: ask the kernel (os.access sees ACLs and root)

    @classmethod
    def of_process(cls) -> Identity:
        uid = os.getuid()
        try:
            pw = pwd.getpwuid(uid)
            name, primary = pw.pw_name, pw.pw_gid
        except KeyError:
            name, primary = str(uid), os.getgid()
        member = {primary} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return cls(uid, name, frozenset({os.getegid(), *os.getgroups()}), frozenset(member),
                   current=True)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: informational, neither pass nor fail
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class Recommendation:
    variant: str | None  # None: nothing from this matrix is needed
    reason: str
    arch: str | None = None


@dataclass(frozen=True)
class Diagnosis:
    scan: Scan
    checks: tuple[Check, ...]
    recommendations: tuple[Recommendation, ...]
    notes: tuple[str, ...] = ()

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.ok is False)

    @property
    def ready(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "gpus": [gpu_dict(g) for g in self.scan.gpus],
            "checks": [asdict(c) for c in self.checks],
            "problems": len(self.problems),
            "recommendations": [asdict(r) for r in self.recommendations],
            "notes": list(self.notes),
        }


def gpu_dict(g: Gpu) -> dict[str, Any]:
    return {
        "name": g.name, "chip": g.chip, "arch": g.arch, "generation": g.generation,
        "arch_source": g.arch_source, "pci_id": f"0x{g.device_id:04x}", "pci_slot": g.pci_slot,
        "driver": g.driver, "kfd_node": g.node, "render_node": g.render_node,
    }


# ---------------------------------------------------------------------------------------------
# Device nodes


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _mode_allows(st: os.stat_result, who: Identity) -> bool:
    """rw for `who` by the permission bits (what the kernel checks, ACLs aside)."""
    if who.uid == 0:
        return True
    if st.st_uid == who.uid:
        bits = st.st_mode >> 6
    elif st.st_gid in who.session_gids:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & 0o6 == 0o6


def check_node(path: Path, who: Identity, what: str) -> Check:
    """Does `path` exist, is it a real device, and can `who` open it read-write? If not, why."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Check(str(path), False, f"{what} is missing", None)
    except OSError as exc:
        return Check(str(path), False, f"cannot stat {what}: {exc.strerror}", None)
    kind = "" if stat.S_ISCHR(st.st_mode) else " (not a character device: a stand-in?)"
    group = _group_name(st.st_gid)
    usable = os.access(path, os.R_OK | os.W_OK) if who.current else _mode_allows(st, who)
    if usable:
        return Check(str(path), True, f"{what}: {who.name} can open it{kind}")
    detail = (f"{what}: {who.name} cannot open it (group {group}, "
              f"mode {stat.filemode(st.st_mode)}){kind}")
    # Names from the system (group names, device paths) are shell-quoted in every command.
    q_group, q_path = shlex.quote(group), shlex.quote(str(path))
    if st.st_mode & 0o060 != 0o060:
        rule = shlex.quote(f'KERNEL=="{path.name}", GROUP="{group}", MODE="0660"')
        fix = (f"sudo chmod g+rw {q_path}  (to keep it after reboots, a udev rule: {rule})")
    elif st.st_gid in who.member_gids:
        fix = (f"you were added to {q_group} after this login: log out and back in "
               f"(or run `newgrp {q_group}` in this shell)")
    else:
        fix = f'sudo usermod -aG {q_group} "$USER"  # {RELOGIN}'
    return Check(str(path), False, detail, fix)


def _missing_node_fix(path: Path, scan: Scan) -> str:
    if not scan.amdgpu_loaded:
        return "sudo modprobe amdgpu"
    if path.name == "kfd" and not scan.kfd_present:
        return ("boot a kernel built with CONFIG_HSA_AMD=y (every Ubuntu, Debian and Fedora "
                "kernel is)")
    return ("the node should appear with the driver: check `sudo dmesg | grep -i amdgpu`, "
            "then `sudo udevadm trigger` or reboot")


def device_checks(scan: Scan, dev_root: Path, who: Identity) -> list[Check]:
    checks: list[Check] = []
    gpus = scan.gpus
    if not gpus and not scan.kfd_present:
        return [Check("AMD GPU", None, "no AMD GPU found: images run on the CPU only")]
    if scan.amdgpu_loaded:
        checks.append(Check("amdgpu module", True, "the amdgpu kernel module is loaded"))
    else:
        checks.append(Check("amdgpu module", False, "the amdgpu kernel module is not loaded",
                            "sudo modprobe amdgpu  # if it fails: sudo dmesg | grep -i amdgpu"))
    for g in gpus:
        if g.driver and g.driver != "amdgpu":
            checks.append(Check(f"driver {g.pci_slot}", False,
                                f"{g.name} at {g.pci_slot} is bound to '{g.driver}', not amdgpu",
                                f"echo {shlex.quote(str(g.pci_slot))} | sudo tee "
                                + shlex.quote(f"/sys/bus/pci/drivers/{g.driver}/unbind")
                                + " && sudo modprobe amdgpu"))
    if scan.amdgpu_loaded and not scan.kfd_present:
        checks.append(Check("KFD topology", False,
                            "amdgpu is loaded but /sys/class/kfd is missing: no ROCm compute",
                            _missing_node_fix(dev_root / "kfd", scan)))
    for err in scan.errors:
        checks.append(Check("KFD node", False, f"unreadable GPU description: {err}",
                            "reload the driver (sudo modprobe -r amdgpu && sudo modprobe amdgpu) "
                            "or reboot; if it persists, report it with `uname -r`"))
    kfd = check_node(dev_root / "kfd", who, f"{dev_root / 'kfd'} (ROCm compute)")
    if kfd.ok is False and kfd.fix is None:
        kfd = Check(kfd.name, False, kfd.detail, _missing_node_fix(dev_root / "kfd", scan))
    checks.append(kfd)
    for g in gpus:
        if g.render_node is None:
            continue
        path = dev_root / "dri" / g.render_node
        c = check_node(path, who, f"{path} ({g.name})")
        if c.ok is False and c.fix is None:
            c = Check(c.name, False, c.detail, _missing_node_fix(path, scan))
        checks.append(c)
    return checks


# ---------------------------------------------------------------------------------------------
# Docker


def docker_check(url: str | None, timeout: int) -> Check:
    from ..engine.base import EngineError
    from ..engine.docker_engine import default_address, open_engine

    address = url or default_address()
    try:
        client = open_engine(url, timeout=timeout)
    except EngineError as exc:
        text = str(exc)
        import shutil

        if not shutil.which("dockerd") and not shutil.which("docker") and url is None:
            fix = ("install Docker: sudo apt install docker.io (Debian/Ubuntu), or "
                   "https://docs.docker.com/engine/install/")
        elif "ermission denied" in text:
            fix = f"sudo usermod -aG docker $USER  # {RELOGIN}"
        elif address.startswith("unix://"):
            fix = "sudo systemctl start docker  (without systemd: sudo service docker start)"
        else:
            fix = f"start the engine at {address}, or point DOCKER_HOST / --engine at one"
        return Check("docker", False, text, fix)
    try:
        version = client.version()
    except EngineError:  # the ping answered; a version is only decoration
        version = "?"
    finally:
        client.close()
    return Check("docker", True, f"Docker engine {version} answers at {address}")


# ---------------------------------------------------------------------------------------------
# Recommendations


def _version(v: Variant) -> tuple[int, ...]:
    parts = []
    for p in (v.rocm or "0").split("."):
        parts.append(int(p) if p.isdigit() else 0)
    return tuple(parts)


def _rank(v: Variant) -> tuple[bool, tuple[int, ...], bool, tuple[int, ...]]:
    # Native code for the card first (no override to fault on), the newest ROCm first among
    # it (TheRock's wheels carry gfx101X code on the newest stack: the recommended start);
    # then the override images, source-built PyTorch first, then the newer ROCm.
    newer = tuple(-x for x in _version(v))
    override = v.uses_override()
    return (override, () if override else newer, v.torch.source != "source", newer)


def _tested(results: dict[str, Any], variant: str, arch: str) -> str:
    r = results.get(variant)
    if r is None or r.host != arch:
        return ""
    ok = sum(1 for c in r.conv if c.status == "ok")
    return f"; tested on {arch}: {ok}/{len(r.conv)} conv cases ok"


def recommend(matrix: Matrix, gpus: Iterable[Gpu],
              results: dict[str, Any] | None = None) -> list[Recommendation]:
    """Variants for each distinct GPU arch, best first, each with the reason."""
    results = results or {}
    archs: list[str | None] = []
    for g in gpus:
        if g.arch not in archs:
            archs.append(g.arch)
    cpu = [v.name for v in matrix.variants if not v.rocm]
    cpu_name = cpu[0] if cpu else "cpu"
    out: list[Recommendation] = []
    if not archs:
        return [Recommendation(cpu_name, "no AMD GPU found: the CPU-only image runs anywhere")]
    for arch in archs:
        gen = gpuinfo.generation(arch)
        if arch is None:
            out.append(Recommendation(cpu_name, "the GPU's arch is unknown (no KFD node and an "
                                                "unknown PCI id): fix the driver first", None))
            continue
        if gen == "RDNA1":
            native = sorted((v for v in matrix.variants if arch in v.gfx_targets), key=_rank)
            for v in _by_results(native, results, arch):
                how = ("runs it as gfx1030 through the `override` profile"
                       if v.uses_override() else f"carries {arch} code, no override")
                out.append(Recommendation(
                    v.name, f"{how}: {v.description}{_tested(results, v.name, arch)}", arch))
            # The override makes the card ask for gfx1030 code: only images whose PyTorch
            # carries it (the official wheels) can serve; source builds hold gfx1010 only.
            # After the native images, as the alternatives they are.
            override = sorted((v for v in matrix.variants
                               if v.rocm and v.torch.source == "wheel" and v not in native
                               and v.offers_override),
                              key=_rank)
            for v in _by_results(override, results, arch):
                flag = "" if v.uses_override() else " --profile override"
                lead = "an alternative" if native else f"no image carries {arch} code"
                out.append(Recommendation(
                    v.name, f"{lead}; `imagefactory run {v.name}{flag}` "
                            f"runs it as gfx1030 (HSA_OVERRIDE_GFX_VERSION=10.3.0): "
                            f"{v.description}{_tested(results, v.name, arch)}", arch))
            if not override and not native:
                out.append(Recommendation(cpu_name, f"no image in this matrix supports {arch}",
                                          arch))
            continue
        if gen in ("RDNA2", "RDNA3", "RDNA3.5", "RDNA4"):
            extra = (" (gfx1031/gfx1032/gfx1034 cards commonly also need "
                     "HSA_OVERRIDE_GFX_VERSION=10.3.0)"
                     if gen == "RDNA2" and arch != "gfx1030" else "")
            out.append(Recommendation(
                None, f"{arch} ({gen}) needs none of these RDNA1 workarounds: use the official "
                      f"rocm/pytorch image or the PyTorch ROCm wheels{extra}", arch))
            continue
        out.append(Recommendation(cpu_name, f"{arch} ({gen}) is not an RDNA1 card: these images "
                                            "carry no code for it; the CPU image runs anywhere",
                                  arch))
    return out


def _by_results(variants: list[Variant], results: dict[str, Any], arch: str) -> list[Variant]:
    """Variants that passed their tests on this arch first (stable: keeps the static order)."""
    def tested_ok(v: Variant) -> int:
        r = results.get(v.name)
        return 0 if r is not None and r.host == arch and r.passed else 1
    return sorted(variants, key=tested_ok)


def load_results(results_dir: Path | None) -> dict[str, Any]:
    """Stored test results by variant; unreadable files are skipped (doctor must not fail on
    a stale results folder)."""
    from ..errors import ImagefactoryError
    from ..verify.results import TestResult, stored_results

    out: dict[str, Any] = {}
    if results_dir is None or not results_dir.is_dir():
        return out
    for _, variant, scope in stored_results(results_dir):
        with contextlib.suppress(ImagefactoryError):
            r = TestResult.load(results_dir, variant, scope)
            if r is not None:
                out[r.variant] = r
    return out


# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The host's own PyTorch: which GPUs its code is for (verify/gpucode)

_FIND_TORCH = ("import importlib.util as u; s = u.find_spec('torch'); "
               "print(s.submodule_search_locations[0] if s and s.submodule_search_locations "
               "else '')")


def find_host_torch(python: str = "python3", timeout: float = 15) -> Path | None:
    """The torch package directory of `python` (found without importing torch), or None."""
    import subprocess

    try:
        out = subprocess.run([python, "-c", _FIND_TORCH], capture_output=True, text=True,
                             timeout=timeout, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out and Path(out).is_dir() else None


def torch_check(torch_dir: Path | None, archs: list[str]) -> Check:
    """Informational: does the host's torch carry code for this host's GPUs (else gfx1010)?
    Read from its libraries' fat binaries, so it holds without ROCm or a working GPU."""
    from ..verify.gpucode.audit import audit_path
    from ..verify.gpucode.errors import GpuCodeError

    if torch_dir is None:
        return Check("host torch", None, "no PyTorch installed for python3 on this host (the "
                                         "images bring their own)")
    lib = torch_dir / "lib" if (torch_dir / "lib").is_dir() else torch_dir
    try:
        inv = audit_path(lib)
    except GpuCodeError as exc:
        return Check("host torch", None, f"torch at {lib}: not audited ({exc})")
    torch = inv.library("torch")
    if torch is None or not torch.targets:
        return Check("host torch", None, f"torch at {lib}: no AMD GPU code (a CPU or CUDA "
                                         "build)")
    isas = sorted(set(archs)) or ["gfx1010"]
    missing = [isa for isa in isas if not torch.carries(isa)]
    have = ", ".join(sorted({t.split(":")[0] for t in torch.targets}))
    detail = f"torch at {lib}: " + "; ".join(inv.summary(isa) for isa in isas)
    fix = None
    if missing:
        detail += f" (it has {have})"
        fix = (f"this torch has no {', '.join(missing)} code: it fails with 'invalid device "
               "function'; use one of the recommended images")
        if torch.carries("gfx1030"):
            fix += (" or run it with HSA_OVERRIDE_GFX_VERSION=10.3.0 (it carries gfx1030; "
                    f"whether that code decodes on {missing[0]}: `imagefactory audit --chip "
                    f"{missing[0]} --override 10.3.0 {lib}`)")
    return Check("host torch", None, detail, fix)


def objdump_check() -> Check:
    """Informational: can the instruction-level GPU code check (`audit --chip`) run here?"""
    from ..verify.gpucode.isa import INSTALL_HINT, objdump_status

    tool, line = objdump_status()
    return Check("llvm-objdump", None, line, None if tool else INSTALL_HINT)


# ---------------------------------------------------------------------------------------------
# PCIe atomics and the kernel log: why a card is missing or was refused


def atomics_checks(scan: Scan, sysfs_root: Path) -> list[Check]:
    """A KFD node whose PCIe link cannot do atomics (the flag the result bundles record)."""
    from ..host.facts import pcie_atomics

    out: list[Check] = []
    for g in scan.gpus:
        if g.node is None:
            continue
        if pcie_atomics(sysfs_root / gpuinfo.KFD_NODES / str(g.node)) is False:
            out.append(Check(f"PCIe atomics {g.pci_slot or g.node}", None,
                             f"{g.name}: KFD reports its PCIe link without atomics (the "
                             "card was accepted through its MEC firmware; if it faults, "
                             "the slot is the first suspect)"))
    return out


def kernel_log_checks(log: kernellog.KernelLog) -> list[Check]:
    if log.source is None:
        return [Check("kernel log", None, "kernel log not read: " + "; ".join(log.unread),
                      "to let doctor explain a missing GPU: sudo imagefactory doctor, or "
                      "`sudo dmesg > kernel.log` and --kernel-log kernel.log")]
    findings = kernellog.explain(log.lines)
    if not findings:
        return [Check("kernel log", None, f"kernel log ({log.source}): no amdgpu/KFD line "
                                          "about atomics, firmware or a GPU reset")]
    return [Check("kernel log", False if f.problem else None,
                  f"{f.what} (kernel log, {log.source}: {f.line.strip()[:160]})", f.fix)
            for f in findings]


@dataclass
class Options:
    sysfs_root: Path = Path("/sys")
    dev_root: Path = Path("/dev")
    docker: bool = True
    docker_url: str | None = None
    docker_timeout: int = 5
    results_dir: Path | None = None
    identity: Identity | None = None
    extra_notes: list[str] = field(default_factory=list)
    # The host PyTorch to audit: "auto" finds python3's, a path audits that, None skips it.
    torch: Path | str | None = None
    # The kernel log: "auto" reads /dev/kmsg or journalctl -k, a path reads a saved log
    # (dmesg output), None skips it.
    kernel_log: Path | str | None = None


def diagnose(matrix: Matrix, opts: Options) -> Diagnosis:
    who = opts.identity or Identity.of_process()
    scan = gpuinfo.scan(opts.sysfs_root)
    checks = device_checks(scan, opts.dev_root, who)
    if opts.docker:
        checks.append(docker_check(opts.docker_url, opts.docker_timeout))
    else:
        checks.append(Check("docker", None, "not checked (--no-docker)"))
    checks.append(objdump_check())
    if opts.torch is not None:
        where = find_host_torch() if opts.torch == "auto" else Path(opts.torch)
        checks.append(torch_check(where, [g.arch for g in scan.gpus if g.arch]))
    checks += atomics_checks(scan, opts.sysfs_root)
    if opts.kernel_log is not None:
        checks += kernel_log_checks(kernellog.read_system_log() if opts.kernel_log == "auto"
                                    else kernellog.read_saved_log(Path(opts.kernel_log)))
    recs = recommend(matrix, scan.gpus, load_results(opts.results_dir))
    notes = list(opts.extra_notes)
    if any(g.arch_source == "pci-id" for g in scan.gpus):
        notes.append("an arch marked (from PCI id) was inferred from the card's PCI id, "
                     "not reported by the driver")
    if scan.gpus and any(c.ok for c in checks if c.name.startswith(str(opts.dev_root))):
        notes.append("containers need the device nodes' group ids: `imagefactory run` passes "
                     "them (--group-add); `imagefactory run VARIANT --print` shows the flags")
    return Diagnosis(scan, tuple(checks), tuple(recs), tuple(notes))


def format_text(d: Diagnosis) -> str:
    lines = ["GPUs"]
    if not d.scan.gpus:
        lines.append("  none (no AMD GPU)")
    for i, g in enumerate(d.scan.gpus):
        arch = g.arch or "unknown arch"
        if g.arch_source == "pci-id":
            arch += " (from PCI id)"
        where = f"/dev/dri/{g.render_node}" if g.render_node else (g.pci_slot or "")
        chip = f"{g.chip}, " if g.chip else ""
        lines.append(f"  gpu{i}  {g.name}  [{chip}0x{g.device_id:04x}]  {arch}  "
                     f"{g.generation}  {where}".rstrip())
    lines.append("Checks")
    for c in d.checks:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[c.ok]
        lines.append(f"  {mark}  {c.detail}")
        if c.fix:
            lines.append(f"        fix: {c.fix}")
    lines.append("Recommended")
    several = len({r.arch for r in d.recommendations}) > 1
    for r in d.recommendations:
        tag = f"[{r.arch}] " if several and r.arch else ""
        lines.append(f"  {tag}{r.variant or '(none needed)'}: {r.reason}")
    for n in d.notes:
        lines.append(f"note: {n}")
    count = len(d.problems)
    lines.append("Ready: yes" if d.ready
                 else f"Ready: no ({count} problem{'s' if count != 1 else ''})")
    # Text from sysfs, /etc/group, results and config: no terminal control reaches the screen.
    return "\n".join(escape_control(line) for line in lines)
