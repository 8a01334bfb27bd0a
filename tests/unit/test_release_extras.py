"""mn.release: the extras an upgrade keeps installing, and the constraints of a release."""

from __future__ import annotations

import sys
from pathlib import Path

from mn.ops import release

REQUIRES = (
    "flask<4,>=3.0",
    'ansible-core<2.20,>=2.15; extra == "installer"',
    "psycopg[binary]<4,>=3.1; extra == 'postgresql'",
    'PyMySQL<2,>=1.1; extra == "mariadb"',
    'zstack[installer]; extra == "test"',
    'pytest<10,>=8; extra == "test"',
)


def test_an_extra_is_in_use_when_all_its_requirements_are_installed() -> None:
    have = frozenset({"flask", "ansible-core", "psycopg", "zstack"})
    assert release.extras_in_use(REQUIRES, have) == ("installer", "postgresql")
    assert release.extras_in_use(REQUIRES, have | {"pytest", "pymysql"}) == ("installer", "mariadb",
                                                                             "postgresql", "test")
    assert release.extras_in_use(REQUIRES, frozenset({"flask", "zstack"})) == ()


def test_names_compare_as_pip_does() -> None:
    assert release.normal_name("Ansible_Core") == release.normal_name("ansible-core") == "ansible-core"
    assert release.normal_name("ruamel.yaml") == "ruamel-yaml"


def test_the_running_venv_lists_its_distributions() -> None:
    found = release.installed_distributions(Path(sys.prefix))
    assert {"flask", "sqlalchemy", "zstack"} <= found


def test_a_release_wheel_finds_its_constraints(tmp_path: Path) -> None:
    wheel = tmp_path / "zstack-1.0" / "wheels" / "zstack-1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    wheel.touch()
    assert release.release_constraints(wheel) is None
    (tmp_path / "zstack-1.0" / "constraints.txt").write_text("flask==3.1.3\n")
    assert release.release_constraints(wheel) == tmp_path / "zstack-1.0" / "constraints.txt"
    loose = tmp_path / "zstack-1.0-py3-none-any.whl"
    loose.touch()
    assert release.release_constraints(loose) is None
