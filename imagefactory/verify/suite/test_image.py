"""Checks every imagefactory image must pass, plus the facts its variant declares in
variants.yaml (`expect`). `facts` and `host` come from imagefactory.verify.suite.plugin;
`host` is testinfra's, connected to the running container through the engine (backend.py).
Each failing assertion says what was expected and what the image has: it becomes the
check's `detail` in the result JSON."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

# The suite runs on the host, in imagefactory's own process (plugin.run_suite; testinfra
# reaches into the container): the label schema is this imagefactory's.
from imagefactory.identity import HASH_LABEL, VARIANT_LABEL

ENTRYPOINT = "/usr/local/bin/imagefactory-entrypoint"
IN_IMAGE_PYTHON = "/opt/imagefactory/python"


@pytest.fixture(scope="module")  # testinfra's `host` is module-scoped
def probe(host, facts: dict[str, Any]) -> dict[str, Any]:
    """All in-container facts from one python3 run (see probe.py)."""
    want = {"files": facts["expect"]["files"], "devices": facts["devices"],
            "env": sorted({*facts["expect"]["env"], *facts["env"], "PYTHONPATH",
                           "IMAGEFACTORY_VARIANT"}),
            "executables": [ENTRYPOINT]}
    source = (Path(__file__).parent / "probe.py").read_text(encoding="utf-8")
    cmd = host.run(f"python3 -c {shlex.quote(source)} {shlex.quote(json.dumps(want))}")
    assert cmd.rc == 0, f"python3 in the image failed (rc {cmd.rc}): {cmd.stderr.strip()[-300:]}"
    return json.loads(cmd.stdout)


def _final_image_only(facts: dict[str, Any]) -> None:
    """Skip a check of what only the final stage adds (user, labels, entrypoint, tools)."""
    if facts.get("stage"):
        pytest.skip(f"stage '{facts['stage']}': only the variant's final image has it")


def _needs_torch(facts: dict[str, Any], probe: dict[str, Any]) -> None:
    """A stage image may come before torch is installed: skip, saying so."""
    missing = "ModuleNotFoundError: No module named 'torch'"
    if facts.get("stage") and probe.get("torch_error", "").startswith(missing):
        pytest.skip(f"no torch in stage '{facts['stage']}'")


def _prefix(expected: str, found: str | None) -> bool:
    """'1.13' matches 1.13.1 and 1.13.1+rocm5.2, not 1.130."""
    return found is not None and re.match(re.escape(expected) + r"(?![0-9])", found) is not None


# -- every image ------------------------------------------------------------------------

def test_runs_as_non_root(facts, probe) -> None:
    _final_image_only(facts)
    assert probe["uid"] != 0, "the image runs as root; it must run as the non-root user"


def test_home_writable(probe) -> None:
    assert probe["home_writable"], f"HOME ({probe['home']}) is not writable by the user"


def test_labels(facts) -> None:
    _final_image_only(facts)
    labels = facts["labels"]
    assert labels.get(VARIANT_LABEL) == facts["variant"], (
        f"label {VARIANT_LABEL} is {labels.get(VARIANT_LABEL)!r}, expected {facts['variant']!r}")
    digest = labels.get(HASH_LABEL, "")
    assert re.fullmatch(r"[0-9a-f]{64}", digest), (
        f"label {HASH_LABEL} is {digest!r}, expected a sha256 hex digest")


def test_entrypoint(facts, probe) -> None:
    _final_image_only(facts)
    assert facts["entrypoint"] == [ENTRYPOINT], (
        f"ENTRYPOINT is {facts['entrypoint']}, expected [{ENTRYPOINT!r}]")
    assert probe["executables"][ENTRYPOINT], f"{ENTRYPOINT} is missing or not executable"


def test_entrypoint_runs_command(facts, host) -> None:
    _final_image_only(facts)
    cmd = host.run(f"{ENTRYPOINT} echo entrypoint-ok")
    assert cmd.rc == 0 and "entrypoint-ok" in cmd.stdout, (
        f"the entrypoint did not run its command (rc {cmd.rc}): {cmd.stderr.strip()[-200:]}")


def test_convcheck_installed(facts, probe) -> None:
    _final_image_only(facts)
    assert probe["convcheck"], f"python3 cannot import convcheck (PYTHONPATH={IN_IMAGE_PYTHON})"
    assert probe["env"]["PYTHONPATH"] and IN_IMAGE_PYTHON in probe["env"]["PYTHONPATH"]


def test_variant_env(facts, probe) -> None:
    _final_image_only(facts)
    found = probe["env"]["IMAGEFACTORY_VARIANT"]
    assert found == facts["variant"], f"IMAGEFACTORY_VARIANT is {found!r}"


def test_torch_imports(facts, probe) -> None:
    _needs_torch(facts, probe)
    assert "torch_error" not in probe, f"import torch failed: {probe.get('torch_error')}"


def test_torch_computes(facts, probe) -> None:
    _needs_torch(facts, probe)
    assert probe.get("torch_computes"), "a 4x4 matmul on the CPU gave the wrong answer"


def test_runtime_env(facts, probe) -> None:
    """The env profile the run asked for reached the container."""
    wrong = {k: probe["env"][k] for k, v in facts["env"].items() if probe["env"][k] != v}
    assert not wrong, f"runtime env differs from the profile: {wrong}"


# -- what the variant declares (variants.yaml expect) -----------------------------------

def test_python_version(facts, probe) -> None:
    expected = facts["expect"]["python"]
    if expected is None:
        pytest.skip("the variant declares no python version")
    assert _prefix(expected, probe["python"]), (
        f"python is {probe['python']}, expected {expected}")


def test_torch_version(facts, probe) -> None:
    expected = facts["expect"]["torch"]
    if expected is None:
        pytest.skip("the variant declares no torch version")
    _needs_torch(facts, probe)
    assert _prefix(expected, probe.get("torch")), (
        f"torch is {probe.get('torch')}, expected {expected}")


def test_hip_version(facts, probe) -> None:
    _needs_torch(facts, probe)  # torch.version.hip is what is checked
    expected = facts["expect"]["hip"]
    if expected is None:
        assert not (facts["rocm"] is None and probe.get("hip")), (
            f"a CPU variant's torch reports HIP {probe.get('hip')}")
        return
    assert _prefix(expected, probe.get("hip")), (
        f"torch.version.hip is {probe.get('hip')}, expected {expected}")


def test_expected_file(expected_file: str, probe) -> None:
    assert probe["files"][expected_file], f"{expected_file} is missing"


def test_expected_env(expected_env: str, facts, probe) -> None:
    want, found = facts["expect"]["env"][expected_env], probe["env"][expected_env]
    assert found == want, f"{expected_env} is {found!r}, expected {want!r}"


# -- the GPU devices passed (--device, or /dev/kfd and /dev/dri found on the host) ------

def test_device_present(device: str, probe) -> None:
    d = probe["devices"][device]
    assert d["exists"], f"{device} is not in the container ({d.get('error')})"
    assert d["char"], f"{device} is not a character device"


def test_device_opens(device: str, probe) -> None:
    d = probe["devices"][device]
    assert d.get("opens"), (
        f"uid {probe['uid']} cannot open {device} read-write ({d.get('error')}; "
        f"node gid {d.get('gid')}, mode {d.get('mode')}, user groups {probe['groups']})")


def test_device_groups(facts, probe) -> None:
    if not facts["devices"]:
        pytest.skip("no devices passed")
    missing = sorted(set(facts["group_ids"]) - set(probe["groups"]))
    assert not missing, f"group ids {missing} were added but the user lacks them"
