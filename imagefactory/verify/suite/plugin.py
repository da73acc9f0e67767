"""pytest plugin: hands the suite what the host knows (the variant's `expect`, the devices
passed, the image's labels) and testinfra's `host` connected through the engine
(backend.py), and collects one {name, passed, detail} per check.

`run_suite` runs the suite in this process (`pytest.main` with the plugin object): the
`host` it gets execs through the very engine connection the test run uses, wherever that
engine is, and no docker CLI is needed. What pytest prints is kept, not shown, unless the
suite is run by hand (`imagefactory test --suite-args`, `suite_args`): then pytest's own
options of that list pass through and its output goes to the terminal as it comes, so
`-x --pdb -k env` stops in the debugger at the first failing check.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ...errors import UsageError

log = logging.getLogger(__name__)
SUITE_DIR = Path(__file__).resolve().parent
# What the process environment may hold that would change how the suite runs (the options
# of whatever pytest run started us, its plugins, autoloaded plugins such as xdist and cov)
# and what pytest itself sets per test (the running outer test's own value is put back).
_PYTEST_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
               "PYTEST_CURRENT_TEST")


# The options a by-hand run may pass: what selects, stops, shows and debugs checks. Not
# those that move files (--rootdir, -c, -p, --basetemp, --junitxml) or read the cache.
_FLAGS = frozenset({"-x", "--exitfirst", "--pdb", "-v", "-vv", "-vvv", "-l", "--showlocals",
                    "-s", "--full-trace", "-ra", "-rA", "-rf", "--no-header",
                    "--setup-show"})
_VALUED = {"-k": re.compile(r"[\w(][\w .()*-]{0,199}"),  # a keyword expression
           "--tb": re.compile(r"auto|long|short|line|native|no"),
           "--maxfail": re.compile(r"[1-9][0-9]{0,3}")}


def suite_args(text: str) -> tuple[str, ...]:
    """`--suite-args`, checked: pytest options from a small allowed set (`-k EXPR`, `-x`,
    `--pdb`, `-v`, `--tb=short`, ...). Anything else is a UsageError naming it."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"--suite-args: {exc}") from None
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, value = word.partition("=")
        if word in _FLAGS:
            out.append(word)
        elif word in _VALUED:  # -k EXPR
            if i + 1 == len(words):
                raise UsageError(f"--suite-args: {word} needs a value")
            i += 1
            out += _valued(word, words[i])
        elif name in _VALUED and eq and name != "-k":  # --tb=short
            out += _valued(name, value)
        elif word.startswith("-k") and len(word) > 2:  # -kEXPR
            out += _valued("-k", word[2:])
        else:
            shown = word.encode("unicode_escape").decode()[:60]
            raise UsageError(f"--suite-args: {shown!r} is not an option a by-hand suite run "
                             f"takes (one of: {', '.join(sorted(_FLAGS | set(_VALUED)))})")
        i += 1
    return tuple(out)


def _valued(name: str, value: str) -> list[str]:
    if not _VALUED[name].fullmatch(value):
        shown = value.encode("unicode_escape").decode()[:60]
        raise UsageError(f"--suite-args: {name} {shown!r} is not a valid value")
    return [name, value]


class SuitePlugin:
    def __init__(self, facts: dict[str, Any], host: Any) -> None:
        self._facts = facts
        self._host = host
        self.outcomes: list[dict[str, Any]] = []
        self.interrupt: BaseException | None = None
        self._names: dict[str, str] = {}

    @pytest.fixture(scope="session")
    def facts(self) -> dict[str, Any]:
        return self._facts

    @pytest.fixture(scope="session")
    def host(self) -> Any:
        """testinfra's Host for the container under test (backend.engine_host)."""
        return self._host

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """One check per declared file, env var and device, named after it."""
        facts = self._facts
        for name, values in (("expected_file", facts["expect"]["files"]),
                             ("expected_env", sorted(facts["expect"]["env"])),
                             ("device", facts["devices"])):
            if name in metafunc.fixturenames:
                metafunc.parametrize(name, list(values))

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self._names[item.nodeid] = _check_name(item)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # One outcome per test: its call phase, or the setup/teardown phase that failed.
        if report.when == "call" or report.failed or report.skipped:
            name = self._names.get(report.nodeid, report.nodeid)
            if any(o["name"] == name for o in self.outcomes):
                return
            self.outcomes.append({"name": name, "passed": not report.failed,
                                  "skipped": report.skipped, "detail": _detail(report)})

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # pytest turns Ctrl-C (and SIGTERM's Terminated) into exit status 2; the run must
        # stop and clean up, so run_suite raises it again, as it came.
        self.interrupt = excinfo.value


@dataclass(frozen=True)
class SuiteRun:
    outcomes: list[dict[str, Any]]
    exit_code: int  # pytest's
    output: str  # what pytest printed


def run_suite(facts: dict[str, Any], host: Any, by_hand: tuple[str, ...] = ()) -> SuiteRun:
    """The suite against `host` (a testinfra Host), in this process. Raises the
    KeyboardInterrupt that stopped it. `by_hand`: options from `suite_args`, with pytest's
    output shown instead of kept."""
    plugin = SuitePlugin(facts, host)
    argv = [str(SUITE_DIR), "-c", str(SUITE_DIR / "pytest.ini"), "--rootdir", str(SUITE_DIR),
            # importlib: nothing put on sys.path; the checks' module is imported afresh per
            # run (_fresh_modules), so a second run in one process collects again.
            "--import-mode=importlib",
            # No cache written beside the suite, no capture of file descriptors (the
            # process's own output is not the suite's), logging and faulthandler left as
            # the process has them.
            "-p", "no:cacheprovider", "-p", "no:logging", "-p", "no:faulthandler",
            "--capture=sys", *(by_hand or ["-q"])]
    log.debug("suite: pytest %s", " ".join(argv))
    text = io.StringIO()
    with contextlib.ExitStack() as stack:
        shown = () if by_hand else (contextlib.redirect_stdout(text),
                                    contextlib.redirect_stderr(text))
        for ctx in (_pytest_env(), _fresh_modules(), *shown):
            stack.enter_context(ctx)
        code = int(pytest.main(argv, plugins=[plugin]))
    if plugin.interrupt is not None:
        raise plugin.interrupt
    return SuiteRun(plugin.outcomes, code, text.getvalue())


@contextlib.contextmanager
def _pytest_env() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _PYTEST_ENV}
    for k in _PYTEST_ENV:
        os.environ.pop(k, None)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plugin we hand in
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _fresh_modules() -> Iterator[None]:
    """pytest reuses a test module already in sys.modules: drop the suite's, before (one a
    previous run or anything else imported) and after."""
    def drop() -> None:
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if path and Path(path).parent == SUITE_DIR and Path(path).name.startswith("test_"):
                del sys.modules[name]

    drop()
    try:
        yield
    finally:
        drop()


def _check_name(item: pytest.Item) -> str:
    """test_expected_file[/usr/bin/x] -> "expected file /usr/bin/x": the test's words plus
    its own parameter."""
    words = getattr(item, "originalname", item.name).removeprefix("test_").replace("_", " ")
    callspec = getattr(item, "callspec", None)
    params = [str(v) for v in (callspec.params.values() if callspec else ())]
    return " ".join([words, *params])


def _detail(report: pytest.TestReport) -> str:
    if report.passed:
        return ""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        message = crash.message
    elif isinstance(report.longrepr, tuple):  # skips: (file, line, reason)
        message = str(report.longrepr[2])
    else:
        message = str(report.longrepr)
    # The assertion's own message is the useful part; pytest's introspection follows it.
    first = message.removeprefix("AssertionError: ").removeprefix("Failed: ")
    first = first.removeprefix("Skipped: ").split("\nassert ")[0]
    return " ".join(first.split())[:500]
