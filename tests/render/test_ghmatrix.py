"""`imagefactory matrix` and the committed .github/workflows/images.yml staying in sync with
variants.yaml: the workflow takes its jobs from the command and names no variant itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from imagefactory.cli import main

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "images.yml"


def matrix_cli(capsys, *args: str) -> str:
    try:
        main(["--config", str(REPO / "variants.yaml"), "matrix", *args])
    except SystemExit as exc:
        assert exc.code == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_github_matrix(capsys, project) -> None:
    out = matrix_cli(capsys, "--format", "github", "--large-runner", "big-builder")
    assert out.count("\n") == 1  # one line, for $GITHUB_OUTPUT
    include = json.loads(out)["include"]
    assert [j["variant"] for j in include] == list(project.matrix.names)
    by = {j["variant"]: j for j in include}
    assert by["cpu"] == {"variant": "cpu", "image": "imagefactory:cpu", "runner": "ubuntu-24.04",
                         "timeout-minutes": 120, "source-build": False, "gpu": False}
    assert by["rocm52-torch113"]["source-build"] is False  # a wheel install
    for name in ("rocm52-torch20", "rocm54-source", "rocm62-native", "rocm62-patched"):
        # PyTorch from source, or builder stages (patched MIOpen) compile: large and long.
        assert (by[name]["source-build"], by[name]["runner"], by[name]["timeout-minutes"],
                by[name]["gpu"]) == (True, "big-builder", 360, True), name


def test_gpu_only_and_selection(capsys) -> None:
    include = json.loads(matrix_cli(capsys, "--format=github", "--gpu-only", "cpu",
                                    "rocm62-native"))["include"]
    assert [j["variant"] for j in include] == ["rocm62-native"]
    assert json.loads(matrix_cli(capsys, "--format=github", "--gpu-only", "cpu")) == {
        "include": []}


def test_text_format(capsys) -> None:
    out = matrix_cli(capsys, "--source-timeout", "900")
    assert out.splitlines()[0].split() == ["variant", "runner", "timeout", "source", "build",
                                           "GPU", "test"]
    assert re.search(r"^rocm54-source\s+ubuntu-24.04\s+900 min\s+yes\s+yes$", out, re.M)


def test_workflow_takes_its_jobs_from_imagefactory_matrix(workflow: dict) -> None:
    jobs = workflow["jobs"]
    script = jobs["matrix"]["steps"][-1]["run"]
    assert "imagefactory matrix --format github" in script
    assert "imagefactory render --check" in json.dumps(jobs["matrix"]["steps"])
    assert jobs["build"]["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.matrix) }}"
    assert jobs["gpu-test"]["strategy"]["matrix"] == (
        "${{ fromJSON(needs.matrix.outputs.gpu-matrix) }}")
    assert jobs["build"]["runs-on"] == "${{ matrix.runner }}"
    assert jobs["build"]["timeout-minutes"] == "${{ matrix.timeout-minutes }}"


def test_workflow_uses_only_keys_the_matrix_has(workflow: dict, capsys) -> None:
    keys = set(json.loads(matrix_cli(capsys, "--format=github"))["include"][0])
    used = set(re.findall(r"(?<![\w.])matrix\.([A-Za-z0-9_-]+)", WORKFLOW.read_text()))
    assert used and used <= keys, used - keys


def test_workflow_names_no_variant(project) -> None:
    """Variants come from variants.yaml through `imagefactory matrix`; a list written in the
    workflow would go stale when a variant is added."""
    text = WORKFLOW.read_text()
    for name in project.matrix.names:
        assert not re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", text), name


def test_workflow_gpu_tests_and_publishing(workflow: dict) -> None:
    gpu = workflow["jobs"]["gpu-test"]
    assert gpu["runs-on"][:2] == ["self-hosted", "amd-gpu"]
    assert "vars.IMAGEFACTORY_GPU_RUNNER == 'true'" in gpu["if"]
    assert "github.event_name != 'pull_request'" in gpu["if"]  # no PR code on own hardware
    text = WORKFLOW.read_text()
    pushes = re.findall(r'imagefactory push "\$VARIANT" --registry "\$\{REGISTRY,,\}"', text)
    assert len(pushes) == 2  # from the build job (no GPU runner) or after the GPU test
    assert text.count("--password-stdin") == 4  # 2 pushes, 2 docker logins: no token in argv
    assert workflow["env"]["REGISTRY"] == "ghcr.io/${{ github.repository_owner }}"
    assert workflow["env"]["PUBLISH"].startswith("${{ github.ref == 'refs/heads/main'")
    assert workflow["jobs"]["build"]["permissions"]["packages"] == "write"
    assert workflow["permissions"] == {"contents": "read"}
