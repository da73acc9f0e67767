"""imagefactory doctor: host readiness, GPU detection, the variant to use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import JobError
from ..paths import RESULTS_DIR

if TYPE_CHECKING:
    from ..appstate import AppState


@click.command("doctor")
@click.option("--sysfs-root", type=click.Path(path_type=Path, file_okay=False), default="/sys",
              show_default=True, help="Where sysfs is (a copy of it, for tests).")
@click.option("--dev-root", type=click.Path(path_type=Path, file_okay=False), default="/dev",
              show_default=True, help="Where the device nodes are.")
@click.option("--engine", "engine_url", default=None, metavar="URL",
              help="Docker engine to check. Default: DOCKER_HOST / the docker context.")
@click.option("--no-docker", is_flag=True, help="Do not check the Docker engine.")
@click.option("--docker-timeout", type=click.IntRange(1, 120), default=5, show_default=True,
              help="Seconds to wait for the engine to answer.")
@click.option("--results", "results_dir", type=click.Path(path_type=Path, file_okay=False),
              default=RESULTS_DIR, show_default=True,
              help="Test results to rank the recommendations by (skipped if absent).")
@click.option("--torch", "torch_dir", default="auto", show_default=True, metavar="PATH|auto",
              help="A PyTorch install (its torch/ or torch/lib folder) whose GPU code to "
                   "audit; auto: python3's, if any.")
@click.option("--no-torch", is_flag=True, help="Do not audit the host's PyTorch.")
@click.option("--kernel-log", "kernel_log", default="auto", show_default=True,
              metavar="PATH|auto|none",
              help="Where to read the kernel log for amdgpu/KFD lines that explain a missing "
                   "GPU: auto (/dev/kmsg, else journalctl -k), a saved `dmesg` file, or none.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(state: AppState, sysfs_root: Path, dev_root: Path, engine_url: str | None,
            no_docker: bool,
            docker_timeout: int, results_dir: Path, torch_dir: str, no_torch: bool,
            kernel_log: str, as_json: bool) -> None:
    """Check this host: AMD GPUs and their arch, kernel driver, /dev/kfd and render node
    access, the Docker engine; recommend variants. Exit 0 when ready, 1 when not."""
    from ..doctor.run import Options, diagnose, format_text

    d = diagnose(state.project.matrix, Options(
        sysfs_root=sysfs_root, dev_root=dev_root, docker=not no_docker, docker_url=engine_url,
        docker_timeout=docker_timeout, results_dir=results_dir,
        torch=None if no_torch else (torch_dir if torch_dir == "auto" else Path(torch_dir)),
        kernel_log=None if kernel_log == "none" else (
            kernel_log if kernel_log == "auto" else Path(kernel_log))))
    click.echo(json.dumps(d.to_dict(), indent=2) if as_json else format_text(d))
    if not d.ready:
        n = len(d.problems)
        raise JobError(f"this host is not ready: {n} problem{'s' if n != 1 else ''}, each "
                       "listed with its fix")
