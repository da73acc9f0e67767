"""pytest plugin: hands the suite what the host knows (the variant's `expect`, the devices
passed, the image's labels) and collects one {name, passed, detail} per check.

Loaded by name (`-p imagefactory.verify.suite.plugin`) in the `python -m pytest` process of its
own that imagefactory.verify.tester.run_suite_process starts, with --facts (a JSON file the
tester writes) and --outcomes (where the collected checks go); the same command line runs it
by hand for debugging:
`pytest -p imagefactory.verify.suite.plugin --facts FILE --hosts docker://ID <suite dir>`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FACTS_OPTION = "--facts"


class SuitePlugin:
    def __init__(self, facts: dict[str, Any] | None = None) -> None:
        self._facts = facts
        self.outcomes: list[dict[str, Any]] = []
        self._names: dict[str, str] = {}

    def load(self, config: pytest.Config) -> dict[str, Any]:
        if self._facts is None:
            path = config.getoption("facts", None)
            if not path:
                raise pytest.UsageError(f"the imagefactory suite needs {FACTS_OPTION} FILE")
            self._facts = json.loads(Path(path).read_text(encoding="utf-8"))
        return self._facts

    @pytest.fixture(scope="session")
    def facts(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        return self.load(request.config)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """One check per declared file, env var and device, named after it."""
        facts = self.load(metafunc.config)
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


def _check_name(item: pytest.Item) -> str:
    """test_expected_file[docker://ID-/usr/bin/x] -> "expected file /usr/bin/x": the test's
    words plus its own parameter, without testinfra's host parameter."""
    words = getattr(item, "originalname", item.name).removeprefix("test_").replace("_", " ")
    callspec = getattr(item, "callspec", None)
    params = [str(v) for k, v in (callspec.params.items() if callspec else ())
              if not k.startswith("_testinfra")]
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


# Entry points when loaded with -p imagefactory.verify.suite.plugin.
_plugin = SuitePlugin()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(FACTS_OPTION, dest="facts", default=None,
                     help="JSON file with the variant facts (imagefactory.verify.tester writes it)")
    parser.addoption("--outcomes", dest="outcomes", default=None,
                     help="write the checks' outcomes to this JSON file")


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("outcomes", None)
    if path:
        Path(path).write_text(json.dumps(_plugin.outcomes), encoding="utf-8")


def pytest_configure(config: pytest.Config) -> None:
    if not any(isinstance(p, SuitePlugin) for p in config.pluginmanager.get_plugins()):
        config.pluginmanager.register(_plugin, "imagefactory-suite")
