"""Config values that used to pass validation and are not valid (issue #25): a `$` anchor that
accepts a final newline, image references outside the distribution grammar, variant names
that collide with the tool's own files, a raw control character without a line number."""

from __future__ import annotations

import pytest
from test_config import GOOD, error_of, parse

from imagefactory.errors import UsageError
from imagefactory.publish.registry import Target
from imagefactory.reference import ReferenceError, check_repository, parse_reference

SHA = "sha256:" + "a" * 64


@pytest.mark.parametrize("key", ['"FOO\\n"', '"FOO\\r"', '"FOO\\t"', '"1FOO"', '"FO-O"'])
def test_env_key_with_a_final_newline_is_refused(key: str) -> None:
    text = GOOD.replace('env: {B: "2"}', f'env: {{{key}: "2"}}')
    assert text != GOOD
    assert "variants.yaml:" in error_of(text)
    assert "is not a valid environment variable name" in error_of(text)


@pytest.mark.parametrize("ref", [
    "a:b:c", "a//b:1", "a/:1", "a..b:1", "a-:1", "-a:1", "a/B:1", "a:" + "t" * 129,
    "a" * 300 + ":1", "a:1@sha256:abc", "a:1@md5:" + "0" * 32, "a:1\\n", "a:-x",
    "localhost:port/a:1", "a b:1", "a:1@" + SHA + "\\n",
])
def test_base_outside_the_reference_grammar_is_refused(ref: str) -> None:
    text = GOOD.replace("base: debian:bookworm-slim", f'base: "{ref}"')
    message = error_of(text)
    assert message.startswith("variants.yaml:16: variants.one.base: ")
    assert "is not a pinned image reference" in message or "newline" in message


@pytest.mark.parametrize("ref", [
    "debian:bookworm-slim", "localhost:5000/a/b:1", "[::1]:5000/x:y", "a__b.c-d:T_1.0-x",
    f"debian:bookworm-slim@{SHA}", "registry.example.com/team/img:" + "t" * 128,
])
def test_base_in_the_grammar_is_accepted(ref: str) -> None:
    m = parse(GOOD.replace("base: debian:bookworm-slim", f'base: "{ref}"'))
    assert str(m.get("one").base) == ref


@pytest.mark.parametrize("repo", ["a//b", "a/", "a..b", "a-", "r" * 300, "a\\n", "A", "a:1",
                                  "/a", "a_-b"])
def test_repository_outside_the_grammar_is_refused(repo: str) -> None:
    message = error_of(GOOD.replace("repository: imagefactory", f'repository: "{repo}"'))
    assert message.startswith("variants.yaml:1: repository: ")


def test_repository_in_the_grammar_is_accepted() -> None:
    m = parse(GOOD.replace("repository: imagefactory", "repository: ghcr.io/o-w/img.x__y"))
    assert m.repository == "ghcr.io/o-w/img.x__y"


@pytest.mark.parametrize("text", ["ghcr.io\n/owner", "ghcr.io/own\ner", "ghcr.io/owner\n",
                                  "ghcr.io/a//b", "ghcr.io/a-", "ghcr.io/a..b", "ghcr.io:x/a",
                                  "ghcr.io/" + "a" * 300, " ghcr.io/owner"])
def test_registry_outside_the_grammar_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="--registry"):
        Target.parse(text)


@pytest.mark.parametrize("name", ["compatibility", "templates", "files", "one.quick",
                                  "one.publish", "manifests", "stages", "docker-bake", "a.b"])
def test_variant_names_that_collide_with_the_tools_files_are_refused(name: str) -> None:
    text = GOOD.replace("\n  one:\n", f"\n  {name}:\n").replace("base_variant: one",
                                                                f"base_variant: {name}")
    message = error_of(text)
    assert message.startswith(f"variants.yaml:13: variants.{name}: "), message


@pytest.mark.parametrize("char", ["\x07", "\x1b", "\x00", "\x7f", "\ud800"])
def test_raw_control_character_names_its_line(char: str) -> None:
    text = GOOD.replace("description: second", f"description: sec{char}ond")
    message = error_of(text)
    assert message.startswith("variants.yaml:21: "), message
    assert f"U+{ord(char):04X}" in message


def test_reference_parts() -> None:
    ref = parse_reference(f"localhost:5000/a/b:v1@{SHA}")
    assert (ref.name, ref.tag, ref.digest) == ("localhost:5000/a/b", "v1", SHA)
    assert parse_reference("a").tag is None
    with pytest.raises(ReferenceError):
        check_repository("a/b:1")
