"""The dependency ranges of pyproject.toml, the pins of constraints.txt and install.sh's Ansible
agree: every requirement is bounded on both sides, every one is pinned inside its range, and
install.sh bootstraps the `installer` extra's ansible-core."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in PROJECT["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) != "zstack"]  # zstack[installer]: the extra itself


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_requirement_has_a_lower_and_an_upper_bound() -> None:
    for req in _requirements():
        ops = {s.operator for s in req.specifier}
        assert ">=" in ops and "<" in ops, f"{req} needs a tested lower bound and an upper bound"


def test_constraints_pin_every_requirement_inside_its_range_and_not_the_project() -> None:
    pins = _pins()
    assert "zstack" not in pins
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name]), f"constraints.txt pins {req.name}=={pins[name]}, outside {req}"


def test_install_sh_bootstraps_the_installer_extras_ansible() -> None:
    m = re.search(r'^ANSIBLE_CORE="([^"]+)"$', (ROOT / "install.sh").read_text(), re.M)
    assert m, "install.sh has no ANSIBLE_CORE line"
    assert PROJECT["optional-dependencies"]["installer"] == [m.group(1)]
    assert not any(canonicalize_name(Requirement(r).name) == "ansible-core" for r in PROJECT["dependencies"])
