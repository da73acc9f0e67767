"""TrackedContainer on the real Docker engine, where the fake cannot go: a start the engine
refuses, and signals in another process. That the block removes its container and strays
of its run, on success or an exception, is tests/engine/test_contract.py's (both engines)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from imagefactory.engine.base import ContainerSpec, EngineError
from imagefactory.engine.containers import RUN_LABEL, new_run_id, signals_deferred

pytestmark = pytest.mark.docker


def _ours(client, run_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})


def _spec(image: str, **kwargs) -> ContainerSpec:
    return ContainerSpec(image, command=["sleep", "infinity"], network_mode="none", **kwargs)


def test_a_failing_start_leaves_nothing(docker_client, engine, cpu_image) -> None:
    run_id = new_run_id()
    with pytest.raises(EngineError, match="no such file or directory"), engine.run_container(
            _spec(cpu_image, devices=["/no/such/device:/dev/kfd:rwm"]),
            role="test-containers", run_id=run_id):
        pass
    assert _ours(docker_client, run_id) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_still_clean_up(docker_client, cpu_image, sig) -> None:
    run_id = new_run_id()
    script = textwrap.dedent(f"""
        import sys, time
        from imagefactory.engine.base import ContainerSpec
        from imagefactory.engine.docker_engine import DockerEngine
        spec = ContainerSpec({cpu_image!r}, command=["sleep", "infinity"], network_mode="none")
        try:
            with DockerEngine().run_container(spec, role="test-containers", run_id={run_id!r}):
                print("started", flush=True)
                time.sleep(60)
        except KeyboardInterrupt as exc:
            print("interrupted", type(exc).__name__, flush=True)
            sys.exit(130)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        assert len(_ours(docker_client, run_id)) == 1
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in out
    assert _ours(docker_client, run_id) == []


def test_signals_deferred_delivers_after_the_block() -> None:
    seen = []
    with pytest.raises(KeyboardInterrupt), signals_deferred():
        signal.raise_signal(signal.SIGINT)
        time.sleep(0.01)
        seen.append("cleanup finished")
    assert seen == ["cleanup finished"]
