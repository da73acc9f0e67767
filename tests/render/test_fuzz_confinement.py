"""Build inputs are confined: whatever variants.yaml or a template says, only regular files
under dockerfiles/files/ get into a build context, and COPY lines are read as Docker reads
them (issue 12, severe finding 2: an invisible line separator in a config value let a later
COPY reach /etc)."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from fuzzing import NASTY  # tests/ is on sys.path (rootdir conftest)
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.errors import ConfigError
from imagefactory.project import Project
from imagefactory.render.context import confined_files, context_tar
from imagefactory.render.dockerfile import context_sources, instructions
from imagefactory.render.renderer import Renderer

REPO = Path(__file__).resolve().parents[2]


# --- Docker's line rules -------------------------------------------------------------------

@pytest.mark.parametrize("sep", ["\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
                                 "\u2029"])
def test_invisible_separators_do_not_start_an_instruction(sep: str) -> None:
    # Python's splitlines() breaks here; Docker does not: the COPY is part of the comment
    # (or of the RUN), so it copies nothing.
    text = f"FROM x\n# note{sep}COPY /etc/shadow /s\nRUN echo a{sep}COPY /etc/passwd /p\n"
    assert context_sources(text) == []
    assert [i.name for i in instructions(text)] == ["from", "run"]


def test_continuations_comments_and_escape_directive() -> None:
    text = ("FROM x\nCOPY files/a \\  \n# a comment inside the continuation\n\n"
            "    files/b /dst/\nRUN echo \\\nCOPY files/not-a-copy /x\n")
    assert context_sources(text) == [(2, "files/a"), (2, "files/b")]
    # With `# escape=``, a backslash is an ordinary character and the backtick continues.
    text = "# escape=`\nFROM x\nCOPY files/a `\n  files/b /d/\nCOPY files/c\\ /e\n"
    assert context_sources(text) == [(3, "files/a"), (3, "files/b"), (5, "files/c\\")]


def test_crlf_and_json_form_and_stage_copies() -> None:
    text = 'FROM x AS b\r\nCOPY ["files/a b", "/d"]\r\nCOPY --from=b /etc /e\r\n'
    assert context_sources(text) == [(2, "files/a b")]


def test_quotes_are_literal_in_the_shell_form() -> None:
    # Docker splits COPY arguments on whitespace only; quotes are part of the name.
    assert context_sources('FROM x\nCOPY "files/a b" /d\n') == [(2, '"files/a'), (2, 'b"')]


# --- confinement ---------------------------------------------------------------------------

@pytest.fixture()
def files_root(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    (root / "dir").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "dir" / "b.txt").write_text("b")
    return root


@pytest.mark.parametrize("source", [
    "/etc/passwd", "files/../../etc/passwd", "files/dir/../../x", "../files/a.txt",
    "files/*", "files/$X", "files/${X}", "http://example.com/x", "git@host:r", "a.txt",
    "files/a\u2028.txt", "files/nope", 'files/"a.txt"', "files/~",
])
def test_sources_that_could_escape_are_refused(files_root: Path, source: str) -> None:
    with pytest.raises(ConfigError) as info:
        confined_files(files_root, [(3, source)], "t.j2")
    assert str(info.value).startswith("t.j2:3: COPY: source ")
    assert "\n" not in str(info.value)


def test_symlinks_are_refused_at_any_level(files_root: Path) -> None:
    (files_root / "etc").symlink_to("/etc")
    (files_root / "dir" / "shadow").symlink_to("/etc/shadow")
    for source in ("files/etc/passwd", "files/etc", "files/dir", "files/dir/shadow"):
        with pytest.raises(ConfigError, match="symlink"):
            confined_files(files_root, [(1, source)], "t")


def test_special_files_are_refused(files_root: Path) -> None:
    os.mkfifo(files_root / "dir" / "fifo")
    with pytest.raises(ConfigError, match="not a regular file"):
        confined_files(files_root, [(1, "files/dir")], "t")


def test_allowed_sources(files_root: Path) -> None:
    got = confined_files(files_root, [(1, "files/a.txt"), (2, "./files/dir/")], "t")
    assert [rel for rel, _ in got] == ["files/a.txt", "files/dir/b.txt"]


# --- the property: /etc never reaches a context, whatever the config says ------------------

@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("confine")
    shutil.copy(REPO / "variants.yaml", root / "variants.yaml")
    shutil.copytree(REPO / "dockerfiles" / "templates", root / "dockerfiles" / "templates")
    shutil.copytree(REPO / "dockerfiles" / "files", root / "dockerfiles" / "files",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


FIELDS = [
    ('description: CPU-only PyTorch 2.6 from Debian trixie; the reference every machine can build',
     "description: {}"),
    ("        IMAGEFACTORY_VARIANT: cpu", "        IMAGEFACTORY_VARIANT: {}"),
    ("        - python3-torch=2.6.0+dfsg-7", "        - {}"),
    ("    base: debian:trixie-slim", "    base: {}"),
]


def _yaml_string(value: str) -> str:
    # A double-quoted YAML scalar holding exactly `value` (json escapes are valid YAML).
    import json

    return json.dumps(value)


@given(field=st.sampled_from(FIELDS),
       value=st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=6)
       .map("".join))
def test_fuzz_config_values_cannot_pull_files_from_outside(project_dir: Path, field: tuple[
        str, str], value: str) -> None:
    original = (project_dir / "variants.yaml").read_text()
    assert field[0] in original
    config = project_dir / "fuzz.yaml"
    config.write_text(original.replace(field[0], field[1].format(_yaml_string(value)), 1))
    project = Project.locate(config)
    try:
        ctx = Renderer(project).render(project.matrix.get("cpu"))
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    base = (project_dir / "dockerfiles" / "files").resolve()
    for rel, src in ctx.files:
        assert rel.startswith("files/")
        assert src.resolve().is_relative_to(base)
    with tarfile.open(fileobj=io.BytesIO(context_tar(ctx))) as tar:
        names = tar.getnames()
    assert all(n == "Dockerfile" or n.startswith("files") for n in names)
    assert not any("etc" in Path(n).parts for n in names)


@pytest.mark.docker
def test_the_engine_reads_lines_as_this_parser_does(docker_client) -> None:
    """The real engine: each separator stays inside its line, so a context holding only the
    Dockerfile builds (were any a line break to Docker, its COPY would fail the build)."""
    seps = ["\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
    lines = ["FROM debian:bookworm-slim"]
    lines += [f"# note{sep}COPY missing-{i} /m{i}" for i, sep in enumerate(seps)]
    lines += [f"LABEL l{i}=a{sep}COPY=missing" for i, sep in enumerate(seps)]
    text = "\n".join(lines) + "\n"
    assert context_sources(text) == []
    data = text.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    events = list(docker_client.api.build(fileobj=io.BytesIO(buf.getvalue()),
                                          custom_context=True, rm=True, decode=True))
    errors = [e for e in events if "error" in e]
    assert not errors, errors
    image = next(e["aux"]["ID"] for e in events if "aux" in e and "ID" in e["aux"])
    docker_client.images.remove(image, noprune=False)
