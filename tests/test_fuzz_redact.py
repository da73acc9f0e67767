"""Generated credentials against the one redaction (safety.redact, and clean on top of it):
a password of any printable characters (`/`, `@`, `:`, spaces included) in a URL with or
without a scheme, anywhere in a line of other text, never survives; text that holds no
credential (image references, digests, plain URLs, e-mail-like words) is left as it was."""

from __future__ import annotations

import string
import time

from fuzzing import NASTY, examples
from hypothesis import assume, given
from hypothesis import strategies as st

from imagefactory.safety import clean, is_control, redact

USER = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=12)
# Printable, anything a person may type into a password; no line break (a credential never
# spans lines), and not a URL of its own (`://` starts the next URL).
PASSWORD = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
                   min_size=4, max_size=64).filter(lambda p: "://" not in p)
TOKEN = st.text(string.ascii_letters + string.digits + "_-.~", min_size=8, max_size=64)
LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
HOST = st.one_of(st.lists(LABEL, min_size=1, max_size=3).map(".".join),
                 st.sampled_from(["127.0.0.1", "[::1]", "ghcr.io", "10.0.0.1"]))
PORT = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
PATH = st.one_of(st.just(""), st.text(string.ascii_letters + "/._-", max_size=12)
                 .map(lambda p: "/" + p))
SCHEME = st.sampled_from(["https://", "http://", "tcp://", "ssh://", "git+ssh://", "https:/"])
# Around the URL: other text, apart from it (glued to the host, `h:1a` could as well be
# `repo@sha256:1a...`, which must stay as it is).
AROUND = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=4
                  ).map("".join)
BEFORE = st.sampled_from(["", " ", "=", '"', "'", "(", ": ", "\n", "\t"])
AFTER = st.sampled_from([" ", '"', "'", ")", ", ", ". ", ": x", "\n", ";"])


@examples(300)
@given(prefix=AROUND, before=BEFORE, scheme=SCHEME, user=USER, password=PASSWORD,
       host=HOST, port=PORT, path=PATH, after=AFTER, suffix=AROUND)
def test_password_in_a_url_never_survives(prefix: str, before: str, scheme: str, user: str,
                                          password: str, host: str, port: str, path: str,
                                          after: str, suffix: str) -> None:
    text = f"{prefix}{before}{scheme}{user}:{password}@{host}{port}{path}{after}{suffix}"
    assume(password not in text.replace(f":{password}@", "", 1))  # not elsewhere too
    out = redact(text)
    assert password not in out, out
    assert password not in clean(text)


@examples(300)
@given(prefix=AROUND, before=BEFORE, user=USER, password=PASSWORD, host=HOST, port=PORT,
       path=PATH, after=AFTER, suffix=AROUND)
def test_password_without_a_scheme_never_survives(prefix: str, before: str, user: str,
                                                  password: str, host: str, port: str,
                                                  path: str, after: str, suffix: str) -> None:
    # user:password@host/path, as an engine address or a git remote is written.
    assume(not password[0].isspace() and password[0] != "/")  # "note: see bob@host"
    assume(not prefix or before)  # the user name is a word of its own
    text = f"{prefix}{before}{user}:{password}@{host}{port}{path}{after}{suffix}"
    assume(password not in text.replace(f":{password}@", "", 1))
    assert password not in redact(text), redact(text)


@examples(200)
@given(prefix=AROUND, scheme=SCHEME, token=TOKEN, host=HOST, path=PATH, suffix=AROUND)
def test_token_as_userinfo_never_survives(prefix: str, scheme: str, token: str, host: str,
                                          path: str, suffix: str) -> None:
    text = f"{prefix} {scheme}{token}@{host}{path} {suffix}"
    assume(token not in text.replace(f"{token}@", "", 1))
    assert token not in redact(text)


@given(secret=PASSWORD, prefix=AROUND, suffix=AROUND)
def test_given_secrets_never_survive(secret: str, prefix: str, suffix: str) -> None:
    assert secret not in redact(f"{prefix}{secret}{suffix}", [secret])


@given(name=st.sampled_from(["HF_TOKEN", "GITHUB_TOKEN", "password", "DB_PASSWORD",
                             "api_key", "client-secret", "auth"]),
       sep=st.sampled_from(["=", ": ", '": "']), value=TOKEN)
def test_fields_named_like_secrets_lose_their_values(name: str, sep: str, value: str) -> None:
    text = f'{{"{name}{sep}{value}"}}' if '"' in sep else f"--build-arg {name}{sep}{value} x"
    assert value not in redact(text)


REF = st.tuples(HOST, PORT, st.lists(LABEL, min_size=1, max_size=3).map("/".join),
                st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
                st.text("0123456789abcdef", min_size=64, max_size=64))


@given(ref=REF, scheme=SCHEME, path=PATH, word=USER)
def test_text_without_credentials_is_left_alone(ref: tuple[str, str, str, str, str],
                                                scheme: str, path: str, word: str) -> None:
    host, port, repo, tag, digest = ref
    # (An e-mail-like word after a URL with a port on the same line would be taken for the
    # end of a password with spaces: redact leans to removing too much there.)
    text = (f"pulled {host}{port}/{repo}:{tag}@sha256:{digest} from {scheme}{host}{port}{path}"
            f"\nfor {word}@{host}; step 3/4 : RUN x")
    assert redact(text) == text


@given(st.text())
def test_clean_leaves_no_control_character(text: str) -> None:
    assert not any(is_control(c) and c != "\t" for c in clean(text))


def test_redaction_is_linear_on_hostile_lines() -> None:
    # Shapes that made a backtracking pattern quadratic: many `user:` starts, many `@host`s,
    # long hyphenated or dotted hosts, many field names.
    for text in ("a:" * 200_000, "a:b@" * 100_000, "http://a:" + "@x@" * 100_000,
                 ("@" + "a-" * 1000) * 300, "@" + "a." * 300_000, "token=" * 100_000,
                 "ab:c " * 100_000, '"' * 500_000):
        started = time.monotonic()
        redact(text)
        assert time.monotonic() - started < 5, text[:20]
