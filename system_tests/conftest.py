"""System tier: this machine as the future KVM host. Prints a prerequisites report at the end."""

from __future__ import annotations

import pytest

# The MN + KVM host + storage fixtures (system_tests/cloud.py), for every system test module.
pytest_plugins = ["system_tests.cloud"]

_REPORT = pytest.StashKey[dict[str, str]]()


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> dict[str, str]:
    """Facts about the host, printed after the run (name → what was found)."""
    return request.config.stash.setdefault(_REPORT, {})


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    facts = config.stash.get(_REPORT, {})
    if not facts:
        return
    terminalreporter.section("host prerequisites")
    width = max(len(k) for k in facts)
    for k, v in facts.items():
        terminalreporter.write_line(f"{k:<{width}}  {v}")
