"""TrackedContainer: containers are removed however the block ends (real Docker engine)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from imagefactory.engine.containers import RUN_LABEL, TrackedContainer, new_run_id, signals_deferred

pytestmark = pytest.mark.docker


def _ours(client, run_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})


def test_removed_after_the_block(docker_client, cpu_image) -> None:
    run_id = new_run_id()
    with TrackedContainer(docker_client, cpu_image, role="test-containers", run_id=run_id,
                          command=["sleep", "infinity"], network_mode="none") as c:
        assert c.status == "running"
        assert c.labels["io.imagefactory.role"] == "test-containers"
        assert c.labels[RUN_LABEL] == run_id
        assert len(_ours(docker_client, run_id)) == 1
    assert _ours(docker_client, run_id) == []


def test_removed_on_an_exception_with_strays_of_the_same_run(docker_client, cpu_image) -> None:
    run_id = new_run_id()
    with pytest.raises(RuntimeError, match="boom"), TrackedContainer(
            docker_client, cpu_image, role="test-containers", run_id=run_id,
            command=["sleep", "infinity"], network_mode="none"):
        # As if a create call had been interrupted before its id came back.
        docker_client.containers.create(cpu_image, command=["true"], network_mode="none",
                                        labels={RUN_LABEL: run_id})
        assert len(_ours(docker_client, run_id)) == 2
        raise RuntimeError("boom")
    assert _ours(docker_client, run_id) == []


def test_a_failing_start_leaves_nothing(docker_client, cpu_image) -> None:
    from docker.errors import APIError

    run_id = new_run_id()
    with pytest.raises(APIError), TrackedContainer(
            docker_client, cpu_image, role="test-containers", run_id=run_id,
            command=["sleep", "infinity"], network_mode="none",
            devices=["/no/such/device:/dev/kfd:rwm"]):
        pass
    assert _ours(docker_client, run_id) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_still_clean_up(docker_client, cpu_image, sig) -> None:
    run_id = new_run_id()
    script = textwrap.dedent(f"""
        import sys, time, docker
        from imagefactory.engine.containers import TrackedContainer
        client = docker.from_env()
        try:
            with TrackedContainer(client, {cpu_image!r}, role="test-containers",
                                  run_id={run_id!r}, command=["sleep", "infinity"],
                                  network_mode="none"):
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
