"""The upgrade flow's rollback order, on the tier's database (ZSTACK_TEST_DB).

The MN's stop/start/version are injected through upgrade.Node and pip is recorded, not run: what
is checked is which step undoes what, in which order, and that the database (really migrated,
dumped and restored) comes back as it was. integration/test_upgrade.py runs the real thing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from integration.conftest import make_db_url
from mn.db.migrate import MIGRATIONS, current_revision, head_revision
from mn.db.migrate import upgrade as migrate
from mn.ops import backup, release, upgrade
from mn.ops.ctl.settings import write_properties
from tests.unit.test_ctl_upgrade import _add_zone, _wheel


class FakeMN:
    """The MN's stop/start/version, recorded; `fail_start_of` makes starting that version fail."""

    def __init__(self, version: str):
        self.running, self.version, self.calls = False, version, []
        self.fail_start_of: str | None = None

    def node(self, home: Path, url: str) -> upgrade.Node:
        return upgrade.Node(home=home, venv=Path(sys.prefix), db_url=url, backups=home / "backups",
                            is_running=lambda: self.running, stop=self.stop, start=self.start,
                            running_version=lambda: self.version if self.running else None, say=lambda m: None)

    def stop(self) -> None:
        self.calls.append("stop")
        self.running = False

    def start(self) -> None:
        self.calls.append(f"start {self.version}")
        if self.version == self.fail_start_of:
            raise RuntimeError("the new MN does not start")
        self.running = True


@pytest.fixture
def installs(monkeypatch):
    """pip_install recorded instead of run: the flow's order is what these tests check."""
    done: list[str] = []

    def fake_install(venv, wheel, *, with_deps=False, cwd=None):
        done.append(release.read_wheel(wheel).version)

    monkeypatch.setattr(release, "pip_install", fake_install)
    monkeypatch.setattr(release, "installed_version", lambda venv: "1.0")
    monkeypatch.setattr(release, "installed_requires", lambda venv: ("flask>=3.0",))
    monkeypatch.setattr(release, "repack_installed", lambda venv, dest: _wheel(dest, "1.0"))
    return done


@pytest.fixture
def setup(tmp_path: Path):
    """A home whose database is at 0001 with a zone, and a wheel of this checkout's migrations."""
    home = tmp_path / "home"
    home.mkdir()
    url, cleanup = make_db_url(home)
    write_properties(home / "zstack.properties", {"db_url": url})  # for the migrate step's process
    migrate(url, "0001")
    _add_zone(url, "before")
    files = {p.name: p.read_text() for p in (MIGRATIONS / "versions").glob("*.py")}
    yield home, url, _wheel(tmp_path / "w", "2.0", files)
    cleanup()


def _zone_count(url: str) -> int:
    return backup.row_counts(url)["zone"]


def test_a_failed_start_rolls_every_step_back_in_reverse(setup, installs):
    home, url, whl = setup
    mn = FakeMN("1.0")
    mn.running = True
    node = mn.node(home, url)
    plan = upgrade.plan_upgrade(node, whl)
    assert [m.revision for m in plan.migrations][0] == "0002" and plan.was_running and not plan.deps_changed

    def start_new() -> None:  # the installed code decides the version that starts
        mn.version = installs[-1]
        FakeMN.start(mn)

    node.start = start_new
    mn.fail_start_of = "2.0"
    with pytest.raises(upgrade.UpgradeError) as exc:
        upgrade.run_upgrade(node, plan)
    assert "failed at 'start the management node'" in str(exc.value) and "rolled back" in str(exc.value)
    assert installs == ["2.0", "1.0"]
    assert mn.calls == ["stop", "start 2.0", "stop", "start 1.0"] and mn.running and mn.version == "1.0"
    assert current_revision(url) == "0001" and _zone_count(url) == 1  # migrated, then restored
    assert not (home / "backups/last-upgrade").exists()


def test_an_injected_fault_after_check_rolls_back_and_a_success_records_the_backup(setup, installs,
                                                                                monkeypatch):
    home, url, whl = setup
    mn = FakeMN("1.0")
    node = mn.node(home, url)

    def start_installed() -> None:
        mn.version = installs[-1] if installs else "1.0"
        FakeMN.start(mn)

    node.start = start_installed
    monkeypatch.setenv(upgrade.FAULT_ENV, "check")
    with pytest.raises(upgrade.UpgradeError, match="injected failure after step check"):
        upgrade.run_upgrade(node, upgrade.plan_upgrade(node, whl))
    assert mn.version == "1.0" and current_revision(url) == "0001"
    monkeypatch.delenv(upgrade.FAULT_ENV)
    mn.calls.clear()
    saved = upgrade.run_upgrade(node, upgrade.plan_upgrade(node, whl))
    assert mn.calls == ["stop", "start 2.0"] and current_revision(url) == head_revision()
    assert upgrade.last_upgrade(home / "backups") == saved
    manifest = upgrade.read_manifest(saved)
    assert (manifest["version"], manifest["revision"], manifest["rows"]["zone"]) == ("1.0", "0001", 1)
    assert (saved / manifest["wheel"]).is_file() and (saved / manifest["database"]).is_file()
