"""The issue form and intake workflow: the workflow only reads the submission (extract, then
`imagefactory share --check`), and zizmor finds nothing in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "bundle-intake.yml"
FORM = ROOT / ".github" / "ISSUE_TEMPLATE" / "result-bundle.yml"


def test_form_takes_the_bundle_as_json() -> None:
    form = yaml.safe_load(FORM.read_text())
    (area,) = [b for b in form["body"] if b.get("id") == "bundle"]
    assert area["type"] == "textarea" and area["attributes"]["render"] == "json"
    assert "result-bundle" in form["labels"]


def test_workflow_pins_and_least_privilege() -> None:
    wf = yaml.safe_load(WORKFLOW.read_text())
    assert wf["permissions"] == {}
    for job in wf["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                ref = step["uses"].split("@")[1]
                assert len(ref) == 40, step["uses"]  # a commit, not a tag
                assert step["with"]["persist-credentials"] is False
            # No expression is pasted into a script: values come in through env.
            assert "${{" not in step.get("run", "")


def test_zizmor_finds_nothing() -> None:
    zizmor = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    run = subprocess.run([zizmor, "--offline", str(WORKFLOW)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def _extract(body: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "extract-bundle.py"),
                           str(out)], env={**os.environ, "BODY": body}, capture_output=True,
                          text=True, timeout=30)


def test_extract_then_check(tmp_path: Path) -> None:
    bundle = '{"_type": "x"}'
    body = f"### Bundle\n\n```json\n{bundle}\n```\n\n### Checked\n\n- [X] I looked"
    run = _extract(body, tmp_path / "b.json")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "b.json").read_text() == bundle
    assert _extract("no block here", tmp_path / "c.json").returncode == 2
    huge = "```json\n" + "1" * 70_000 + "\n```"
    run = _extract(huge, tmp_path / "d.json")
    assert run.returncode == 2 and "longer than" in run.stderr
    assert not (tmp_path / "d.json").exists()
