"""Fork server ("zygote"): imports torch once, then forks one child per case.

Why: a case's child spends almost all its time starting Python and importing torch (~1 s on
a CPU image, several on a CUDA one); the convolution itself takes milliseconds. The zygote
pays for the import once; each case still runs in a process of its own, in its own session
and process group, with its own stdout and stderr, and ends in its own real wait status.

The zygote never initialises the GPU and never runs a tensor op: a CUDA/HIP context does
not survive fork, and forking after an OpenMP thread pool started (GNU OpenMP, as in
Debian's torch) can deadlock the child. Each child initialises the GPU itself. Env vars
that are read at `import torch` (IMAGEFACTORY_CONV_IM2COL through sitecustomize) or at GPU
init (HSA_OVERRIDE_GFX_VERSION, MIOPEN_*, CUDA_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES) are in
the zygote's environment from its start: one zygote per run, and a run has one env.

Protocol (one JSON object per line): the zygote's stdin carries requests from the parent,
    {"argv": [...child-mode arguments...], "out": PATH, "err": PATH}
its stdout the replies: {"ready": ...facts} once, then per request {"pid": N} as soon as
the child has its own session (so the parent may kill its process group), and
{"pid": N, "status": WAIT_STATUS} when the zygote has reaped it. EOF on stdin ends it.
A child's stdout and stderr go to the files named in its request (the parent reads them).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import signal
import sys
import time
import warnings
from typing import Any

READY_TIMEOUT_MIN = 30.0  # seconds for the zygote's `import torch` at the least
# Pure-Python modules that torch imports lazily on a case's path, imported by the zygote too
# when this torch has them. torch 2.x: the first autograd.grad imports symbolic_shapes and
# with it sympy, ~3 s per backward case on the H100 machine (no .pyc cache there).
# torchvision (ResNet-18 case) when the image has it.
LAZY_IMPORTS = ("torch.fx.experimental.symbolic_shapes", "torchvision.models")


# ------------------------------------------------------------------------- zygote side
def _write(fd: int, payload: dict[str, Any]) -> None:
    data = (json.dumps(payload) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _read_line(fd: int, buf: bytearray) -> bytes | None:
    while b"\n" not in buf:
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


def _thread_count() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _preload() -> dict[str, Any]:
    """Import what every case needs, and nothing that starts the GPU or a thread pool."""
    start = time.monotonic()
    import torch
    import torch.nn.functional

    import im2col_fallback  # noqa: F401  (sitecustomize may have installed it already)
    from convcheck import child, childmode, faults  # noqa: F401

    fault = faults.zygote_fault("zygote")  # tests only: a zygote that cannot start or dies
    if fault:
        faults.trigger(fault)

    for name in LAZY_IMPORTS:  # an older torch without it: the case never imports it either
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    cuda = getattr(torch, "cuda", None)
    initialized = bool(cuda and hasattr(cuda, "is_initialized") and cuda.is_initialized())
    return {"ready": True, "pid": os.getpid(), "torch": torch.__version__,
            "seconds": round(time.monotonic() - start, 3), "threads": _thread_count(),
            "gpu_initialized": initialized}


def _exit_status(status: int) -> int:
    """subprocess's returncode convention: -N if killed by signal N, else the exit code."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return status


def _become_case_child(request: dict[str, Any], proto: tuple[int, int], sync_w: int) -> None:
    """In the forked child: own output files, own session, no zygote fds."""
    for fd in proto:
        os.close(fd)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for target, path in ((1, request["out"]), (2, request["err"])):
        fd = os.open(path, flags, 0o600)
        os.dup2(fd, target)
        os.close(fd)
    os.setsid()  # own session and process group: the parent kills it whole at the timeout
    os.close(sync_w)  # tells the zygote the pid may be handed out


def _fault_after_fork(request: dict[str, Any]) -> None:
    """Tests only: the zygote dies while the case it forked runs."""
    from convcheck import faults

    argv = list(request.get("argv", ()))
    if "--run-case" in argv[:-1]:
        fault = faults.zygote_fault("zygote:" + argv[argv.index("--run-case") + 1])
        if fault:
            faults.trigger(fault)


def serve(proto_in: int, proto_out: int) -> dict[str, Any] | None:
    """The zygote's loop. Returns None when the parent is gone (zygote exits), or, in a
    forked child, the request that child is to run."""
    buf = bytearray()
    while True:
        line = _read_line(proto_in, buf)
        if line is None:
            return None
        request: dict[str, Any] = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        sync_r, sync_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(sync_r)
            _become_case_child(request, (proto_in, proto_out), sync_w)
            return request
        os.close(sync_w)
        os.read(sync_r, 1)  # EOF once the child has its session (or died trying)
        os.close(sync_r)
        _write(proto_out, {"pid": pid})
        _fault_after_fork(request)
        _, status = os.waitpid(pid, 0)
        _write(proto_out, {"pid": pid, "status": _exit_status(status)})


def zygote_main() -> int:
    """`python3 -m convcheck --zygote`: returns 0 when the parent closes the pipe (1 when it
    could not get ready); each forked child runs its request's child-mode arguments
    (childmode.run_argv) and leaves from there."""
    # The protocol moves off fds 0 and 1, so that nothing torch prints can corrupt it and no
    # case child can read or write it; the zygote's own output goes to its stderr.
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    # Python 3.12+ warns when forking with threads; OpenBLAS's pool (numpy) exists from
    # import on and is fork-safe (it has atfork handlers), the OpenMP pool is never started.
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
    try:
        facts = _preload()
    except BaseException as exc:  # reported to the parent, which falls back to spawn
        _write(proto_out, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    # Move everything imported so far out of the collector's reach: a child's collections
    # and its interpreter shutdown then touch (copy-on-write) far fewer of the zygote's pages;
    # in the cpu image this cuts a forked child's exit from ~0.27 s to ~0.16 s.
    gc.collect()
    if hasattr(gc, "freeze"):  # Python 3.7+
        gc.freeze()
    _write(proto_out, facts)
    request = serve(proto_in, proto_out)
    if request is None:
        return 0
    from convcheck import childmode

    childmode.run_argv([str(arg) for arg in request["argv"]])


# ------------------------------------------------------------------------- parent side
class ZygoteError(Exception):
    """The zygote could not start, died, or answered nonsense."""


class ZygoteTimeout(ZygoteError):
    """No answer in time (a case that runs on, or a zygote stuck reaping a child)."""


class Zygote:
    """The parent's handle on one zygote process."""

    def __init__(self, env: dict[str, str], workdir: str, timeout: float) -> None:
        import subprocess

        self.workdir = workdir
        self._buf = bytearray()
        self._err_path = os.path.join(workdir, "zygote.err")
        with open(self._err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "convcheck", "--zygote"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
                start_new_session=True, close_fds=True,
            )
        try:
            facts = self._reply(max(timeout, READY_TIMEOUT_MIN))
        except ZygoteError:
            self.close()
            raise
        if not facts.get("ready"):
            self.close()
            raise ZygoteError(f"could not start: {facts.get('error') or 'no reason given'}")
        if facts.get("gpu_initialized"):
            self.close()
            raise ZygoteError("importing torch initialised the GPU; forking is unsafe")
        self.facts = facts

    def stderr_tail(self) -> str:
        try:
            with open(self._err_path, "rb") as fh:
                lines = fh.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def _reply(self, timeout: float) -> dict[str, Any]:
        """The next reply line; ZygoteError on EOF or timeout."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ZygoteTimeout(f"no answer in {timeout:.0f} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait()
                why = self.stderr_tail()
                raise ZygoteError(f"exited {self.proc.returncode}" + (f": {why}" if why else ""))
            self._buf += chunk
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf[:] = rest
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise ZygoteError(f"garbled answer {line[:80]!r}") from exc
        if not isinstance(value, dict):
            raise ZygoteError(f"garbled answer {line[:80]!r}")
        return value

    def request(self, argv: list[str], out: str, err: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"argv": argv, "out": out, "err": err}) + "\n")
                                  .encode())
            self.proc.stdin.flush()
        except OSError as exc:  # BrokenPipeError: it died
            raise ZygoteError(f"is gone ({exc.__class__.__name__})") from exc

    def started(self, timeout: float) -> int:
        """The child's pid, once it leads its own session."""
        reply = self._reply(timeout)
        if not isinstance(reply.get("pid"), int) or "status" in reply:
            raise ZygoteError(f"unexpected answer {reply!r}")
        return int(reply["pid"])

    def finished(self, pid: int, timeout: float) -> int:
        """The child's returncode (-N: killed by signal N)."""
        reply = self._reply(timeout)
        if reply.get("pid") != pid or not isinstance(reply.get("status"), int):
            raise ZygoteError(f"unexpected answer {reply!r}")
        return int(reply["status"])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Stop it: EOF first (it exits between cases), then its whole group is killed."""
        import subprocess

        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:  # busy (a stuck child) or stuck itself
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
