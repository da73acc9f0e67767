"""GpuRunSpec: one run spec, the container the tester starts and the `docker run` line
`run --print` shows; mount fields quoted as docker's --mount CSV parser reads them."""

from __future__ import annotations

import ast
import csv
import subprocess
from pathlib import Path

import pytest
from fuzzing import NASTY
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.engine.containers import session_labels
from imagefactory.engine.runspec import GpuRunSpec, Mount, csv_field, mount_arg
from imagefactory.errors import UsageError

PACKAGE = Path(__file__).resolve().parents[2] / "imagefactory"


def read_mount(value: str) -> dict[str, str]:
    """A --mount value read the way docker's CLI reads it: one CSV record (encoding/csv:
    a quoted field may hold commas, "" is a quote), each field key=value."""
    (record,) = list(csv.reader([value], strict=True))
    out: dict[str, str] = {}
    for item in record:
        key, _, val = item.partition("=")
        assert key not in out, f"field {key!r} given twice in {value!r}"
        out[key] = val
    return out


# Anything a directory name can hold but NUL, "/" (it separates them) and line breaks.
NAMES = st.text(st.characters(blacklist_characters="\0/\r\n", blacklist_categories=("Cs",)),
                min_size=1, max_size=40).filter(lambda n: n not in (".", ".."))


@given(NAMES, NAMES)
def test_any_directory_name_mounts_that_directory(parent: str, name: str) -> None:
    source = f"/home/u/{parent}/{name}"
    fields = read_mount(mount_arg(Mount(source, "/work")))
    assert fields == {"type": "bind", "source": source, "target": "/work"}


def test_a_comma_cannot_add_a_source() -> None:
    fields = read_mount(mount_arg(Mount("/tmp/proj,source=/etc", "/work", readonly=True)))
    assert fields == {"type": "bind", "source": "/tmp/proj,source=/etc", "target": "/work",
                      "readonly": ""}


@pytest.mark.parametrize("bad", ["/tmp/a\nb", "/tmp/a\rb", "/tmp/a\0b"])
def test_line_breaks_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="cannot mount"):
        csv_field(f"source={bad}")


def test_no_docker_argv_is_built_outside_the_engine() -> None:
    """A list or tuple that starts with "docker", or "docker" handed to exec/subprocess,
    is a docker command line: only engine/ writes those."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "engine":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            first = None
            if isinstance(node, (ast.List, ast.Tuple)) and node.elts and _argv_like(node.elts):
                first = node.elts[0]
            elif isinstance(node, ast.Call) and node.args and isinstance(
                    node.func, ast.Attribute) and node.func.attr in {
                    "run", "Popen", "call", "check_call", "check_output", "execv", "execvp"}:
                first = node.args[0]
            if isinstance(first, ast.Constant) and first.value == "docker":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []


SUBCOMMANDS = {"run", "create", "build", "buildx", "exec", "image", "container", "push",
               "pull", "tag", "inspect", "rm", "rmi", "volume", "context", "version", "info"}


def _argv_like(elts: list[ast.expr]) -> bool:
    """["docker"] + ..., ["docker", "run", ...], ["docker", "--host", ...], ("docker", x):
    not a tuple of names such as the loggers ("docker", "urllib3")."""
    if len(elts) == 1:
        return True
    second = elts[1]
    return not isinstance(second, ast.Constant) or (
        isinstance(second.value, str)
        and (second.value.startswith("-") or second.value in SUBCOMMANDS))


def _spec(image: str, tmp_path: Path) -> GpuRunSpec:
    (tmp_path / "w,x").mkdir()
    return GpuRunSpec(
        image, command=("true",), devices=(("/dev/null", "/dev/kfd"),), group_ids=(44, 4242),
        env={"A": "1", "B": "x y"}, mounts=(Mount(str(tmp_path / "w,x"), "/work"),),
        user="4242:4242", workdir="/work", network="none", labels=session_labels())


FIELDS = ("Devices", "GroupAdd", "SecurityOpt", "IpcMode", "ShmSize", "NetworkMode")


@pytest.mark.docker
def test_the_cli_line_and_the_engine_start_the_same_container(docker_client, engine,
                                                              cpu_image, tmp_path) -> None:
    """The argv, with `run` made `create`, and the engine's create give one HostConfig."""
    spec = _spec(cpu_image, tmp_path)
    argv = spec.docker_argv()  # the CLI finds the engine docker_client.from_env did
    argv[argv.index("run")] = "create"
    made = []
    try:
        made.append(subprocess.run(argv, capture_output=True, text=True, check=True,
                                   timeout=60).stdout.strip())
        made.append(engine.create_container(spec.container_spec()))
        by_cli, by_engine = (docker_client.api.inspect_container(c) for c in made)
    finally:
        for c in made:
            engine.remove_container(c)
    for key in FIELDS:
        assert by_cli["HostConfig"][key] == by_engine["HostConfig"][key], key
    assert "seccomp=unconfined" in by_cli["HostConfig"]["SecurityOpt"]
    for key in ("User", "WorkingDir", "Cmd"):
        assert by_cli["Config"][key] == by_engine["Config"][key], key
    assert {"A=1", "B=x y"} <= set(by_cli["Config"]["Env"]) & set(by_engine["Config"]["Env"])
    mounts = [[(m["Type"], m["Source"], m["Destination"]) for m in c["Mounts"]]
              for c in (by_cli, by_engine)]
    assert mounts[0] == mounts[1] == [("bind", str(tmp_path / "w,x"), "/work")]


def go_csv_record(line: str) -> list[str]:
    """One record as Go's encoding/csv Reader (LazyQuotes off, docker's --mount parser)
    reads it, stricter than Python's csv: a quote inside an unquoted field is an error
    ("bare quote"), so is anything but a comma or the end after a closing quote."""
    fields: list[str] = []
    i = 0
    while True:
        if line[i:i + 1] == '"':
            i += 1
            value = []
            while True:
                if i >= len(line):
                    raise ValueError("extraneous or missing \" in quoted-field")
                if line[i] == '"':
                    if line[i + 1:i + 2] == '"':
                        value.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                value.append(line[i])
                i += 1
            fields.append("".join(value))
            if i < len(line) and line[i] != ",":
                raise ValueError('extraneous or missing " in quoted-field')
        else:
            end = line.find(",", i)
            end = len(line) if end < 0 else end
            if '"' in line[i:end]:
                raise ValueError('bare " in non-quoted-field')
            fields.append(line[i:end])
            i = end
        if i >= len(line):
            return fields
        i += 1  # the comma


PIECES = [*NASTY, ",", "=", '"', '""', ",source=/etc", " ", "readonly", "type=volume"]
PATHS = st.lists(st.one_of(st.sampled_from(PIECES),
                           st.text(max_size=8)), max_size=6).map(lambda p: "/" + "".join(p))


@given(source=PATHS, target=PATHS, readonly=st.booleans())
def test_any_path_round_trips_through_docker_csv_or_is_refused(source: str, target: str,
                                                               readonly: bool) -> None:
    mount = Mount(source, target, readonly=readonly)
    try:
        value = mount_arg(mount)
    except UsageError as exc:
        assert any(c in source + target for c in "\r\n\0"), exc
        return
    record = go_csv_record(value)
    fields = dict(item.partition("=")[::2] for item in record)
    assert len(fields) == len(record)  # no field given twice
    assert fields == {"type": "bind", "source": source, "target": target,
                      **({"readonly": ""} if readonly else {})}
