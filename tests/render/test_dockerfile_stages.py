"""The one reader of a Dockerfile's stages and BuildKit-only lines (render/dockerfile.py, #26):
build --target, docker-bake.json, the CI matrix and the builder's classic/BuildKit choice all
read FROM through it, as Docker reads it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.render.dockerfile import (
    DockerfileError,
    Stage,
    buildkit_syntax,
    stage_names,
    stages,
)


def test_from_with_platform_lowercase_as_comments_and_continuations() -> None:
    text = ("# syntax=docker/dockerfile:1\n"
            "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n"
            "RUN make\n"
            "# FROM commented AS nope\n"
            "from debian:bookworm-slim as Runtime\n"
            "FROM \\\n"
            "  # a comment inside the continuation\n"
            "  --platform=linux/amd64 \\\n"
            "  busybox:1 \\\n"
            "  AS last\n"
            "  FROM scratch\n")
    assert stages(text) == [
        Stage(2, "golang:1.22", "build", "$BUILDPLATFORM"),
        Stage(5, "debian:bookworm-slim", "Runtime", None),
        Stage(6, "busybox:1", "last", "linux/amd64"),
        Stage(11, "scratch", None, None),
    ]
    assert stage_names(text) == ["build", "Runtime", "last"]


def test_crlf_and_escape_directive() -> None:
    assert stage_names("FROM a AS one\r\nFROM b AS two\r\n") == ["one", "two"]
    assert stage_names("# escape=`\nFROM `\n  a AS one\n") == ["one"]


@pytest.mark.parametrize("text", ["FROM\n", "FROM a AS\n", "FROM a b c d\n",
                                  "FROM a FOR b\n"])
def test_malformed_from_is_refused(text: str) -> None:
    with pytest.raises(DockerfileError, match="line 1: FROM"):
        stages(text)


def test_rendered_dockerfiles_agree_with_bake_and_target(project) -> None:
    from imagefactory.render.bake import stages as bake_stages
    from imagefactory.render.renderer import Renderer

    renderer = Renderer(project)
    for variant in project.matrix.variants:
        text = renderer.render(variant).dockerfile
        found = stages(text)
        assert found and found[-1].image, variant.name  # the image's own FROM
        named = stage_names(text)
        assert bake_stages(text) == ([s.name for s in found[:-1] if s.name]
                                     if len(found) > 1 else []), variant.name
        assert len(named) == len({n.lower() for n in named}), variant.name


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_stage_reader_never_raises_anything_else(text: str) -> None:
    try:
        found = stages(text)
    except DockerfileError as exc:
        assert "\n" not in str(exc)
        return
    assert all(s.line >= 1 and s.image for s in found)


# -- which Dockerfiles need BuildKit (moved from engine/buildx.py: a reading of the text) ----

@pytest.mark.parametrize(("text", "expected"), [
    ("FROM a\nRUN --mount=type=cache,target=/root/.ccache make\n", (2, "RUN --mount")),
    ("FROM a\nRUN --network=none \\\n    --mount=type=secret,id=x true\n", (2, "RUN --network")),
    ("FROM a\nCOPY --link x /x\n", (2, "COPY --link")),
    ("FROM a\nCOPY --chown=1:1 --chmod=755 x /x\n", (2, "COPY --chmod")),
    ("# syntax=docker/dockerfile:1.4\nFROM a\n", (1, "a `# syntax=` directive")),
    ("FROM a\nRUN <<EOF\necho hi\nEOF\n", (2, "a here-document")),
])
def test_buildkit_only_lines_are_found(text: str, expected: tuple[int, str]) -> None:
    assert buildkit_syntax(text) == expected


@pytest.mark.parametrize("text", [
    "FROM a\nRUN echo --mount=type=cache\n",  # an argument, not a RUN flag
    "FROM a\nCOPY --chown=1:1 --from=b /x /x\n",
    "FROM a\n# RUN --mount=type=cache true\n",
    "FROM a AS b\nRUN make \\\n  && make install\n",
])
def test_classic_dockerfiles_pass(text: str) -> None:
    assert buildkit_syntax(text) is None


def test_rendered_dockerfiles_are_checked(project) -> None:
    from imagefactory.render.renderer import Renderer

    renderer = Renderer(project)
    for variant in project.matrix.variants:
        found = buildkit_syntax(renderer.render(variant).dockerfile)
        # Whatever the templates use, the check must name a real line of them.
        assert found is None or found[0] >= 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_buildkit_syntax_never_raises(text: str) -> None:
    found = buildkit_syntax(text)
    assert found is None or 1 <= found[0] <= max(1, len(text.splitlines()))
