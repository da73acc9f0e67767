"""Rendered Dockerfiles as Docker reads them: stages, each stage's SHELL, and every RUN's
shell command after Docker's line-continuation rules (escape + newline removed, comment
lines inside a continuation dropped), for ShellCheck and the project's pipeline rules."""

from __future__ import annotations

import io
import itertools
import json
import re
from dataclasses import dataclass, field

from dockerfile_parse import DockerfileParser

DEFAULT_SHELL: tuple[str, ...] = ("/bin/sh", "-c")


@dataclass
class Run:
    line: int  # 1-based line of the RUN in the Dockerfile
    shell: tuple[str, ...]  # the stage's SHELL when the RUN executes
    script: str  # what Docker hands to `shell`

    @property
    def pipefail(self) -> bool:
        return any(a == "-o" and b == "pipefail" for a, b in itertools.pairwise(self.shell))


@dataclass
class Stage:
    name: str | None
    base: str
    runs: list[Run] = field(default_factory=list)
    instructions: list[dict[str, object]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [str(i["value"]) for i in self.instructions if i["instruction"] == instruction]


def shell_form(content: str) -> str | None:
    """The shell command of `RUN ...` content, or None for the exec (JSON) form."""
    lines = content.rstrip("\n").split("\n")
    first = re.sub(r"^\s*RUN\s+", "", lines[0], flags=re.IGNORECASE)
    parts: list[str] = []
    continued = True
    for i, raw in enumerate([first, *lines[1:]]):
        if i and raw.lstrip().startswith("#"):
            continue  # Docker drops comment lines inside a continuation
        if not continued:
            break
        continued = raw.endswith("\\")
        parts.append(raw[:-1] if continued else raw)
    script = "".join(parts).strip()
    # BuildKit's RUN flags (--mount=..., --network=...) are Docker's, not the shell's.
    script = re.sub(r"^(?:--[a-z]+=\S+\s+)+", "", script)
    if script.startswith("["):
        try:
            json.loads(script)
            return None
        except ValueError:
            pass
    return script


def parse(text: str) -> list[Stage]:
    stages: list[Stage] = []
    shells: dict[str, tuple[str, ...]] = {}  # a stage's SHELL at its end, by stage name
    shell = DEFAULT_SHELL
    for ins in DockerfileParser(fileobj=io.BytesIO(text.encode())).structure:
        kind = ins["instruction"]
        if kind == "FROM":
            parts = ins["value"].split()
            stages.append(Stage(parts[2] if len(parts) == 3 else None, parts[0]))
            # SHELL is image config: a stage built FROM an earlier stage inherits it.
            shell = shells.get(parts[0], DEFAULT_SHELL)
            continue
        if not stages:
            continue
        stages[-1].instructions.append(ins)
        if kind == "SHELL":
            shell = tuple(json.loads(ins["value"]))
            if stages[-1].name:
                shells[stages[-1].name] = shell
        elif kind == "RUN":
            script = shell_form(ins["content"])
            if script is not None:
                stages[-1].runs.append(Run(ins["startline"] + 1, shell, script))
    return stages
