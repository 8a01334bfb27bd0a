"""zstack-ctl upgrade, a failed upgrade that rolls back, and rollback, as an operator runs them.

One MN home goes through the life of an installation (ZSTACK_TEST_DB picks its database):
1. the previous release (upgrade_env.previous_commit) installed in a venv, started with the
   embedded simulator and populated through its API (demo zone, VMs, tags, a second zone);
2. `zstack-ctl upgrade` to a wheel of this checkout, driven by this checkout's zstack-ctl (the
   previous release may not have the command): every inventory and row survives, the database
   is at this checkout's head, the MN answers the new version;
3. `zstack-ctl upgrade` (now the venv's own) to a wheel with a migration that changes the schema
   and raises: exit 1 naming the step, the previous code running again, every row identical;
4. `zstack-ctl rollback`: back to the previous release with its database as it was.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from integration import upgrade_env as ue
from integration.conftest import make_db_url
from mn.client import ZStackClient
from mn.db.migrate import current_revision, head_revision

QUERIES = ("QueryZone", "QueryCluster", "QueryHost", "QueryPrimaryStorage", "QueryBackupStorage",
           "QueryImage", "QueryL2Network", "QueryL3Network", "QueryInstanceOffering", "QueryVmInstance",
           "QueryVolume", "QueryUserTag", "QueryAccount")
# Rows the MN itself rewrites while it runs: its liveness row and the sessions of our logins.
VOLATILE = ("management_node", "session")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Wheels:
    """The previous release (a wheel), this checkout's (a release tarball) and a failing one."""

    def __init__(self, base: Path):
        old_tree = ue.previous_tree(base / "old-src")
        new_tree = ue.checkout_tree(base / "new-src")
        self.old_version = ue.version_of(old_tree)
        self.new_version = ue.version_of(new_tree) + "+new"
        ue.set_version(new_tree, self.new_version)
        with ThreadPoolExecutor(2) as pool:  # pip wheel mostly waits on its isolated build env
            old, new = pool.map(lambda t: ue.build_wheel(t[0], base / t[1]), [(old_tree, "old"), (new_tree, "new")])
        self.old = old
        self.new = ue.release_tarball(new, base / "dist")
        self.bad_version = ue.version_of(new_tree).split("+")[0] + "+bad"
        self.bad = ue.derive_wheel(new, base / "bad", self.bad_version, ue.failing_migration(head_revision()))


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Wheels:
    return Wheels(tmp_path_factory.mktemp("releases"))


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


def _populate(api: ZStackClient) -> None:
    """Resources of every kind beyond the demo zone: VMs (one stopped), a tag, another zone."""
    from mn.ops import demo

    d = demo.describe(api)
    vms = [api.call("CreateVmInstance", name=f"vm-{i}", instanceOfferingUuid=d["instanceOfferingUuid"],
                    imageUuid=d["imageUuid"], l3NetworkUuids=[d["l3NetworkUuid"]])["inventory"] for i in range(3)]
    api.call("StopVmInstance", uuid=vms[1]["uuid"])
    api.call("CreateUserTag", resourceType="VmInstanceVO", resourceUuid=vms[0]["uuid"], tag="web")
    api.call("CreateZone", name="zone-2", description="kept across upgrades")


def _inventories(url: str) -> dict[str, dict[str, dict]]:
    api = ZStackClient(url)
    api.login()
    return {q: {inv["uuid"]: inv for inv in api.query(q)} for q in QUERIES}


def _same_inventories(before: dict, after: dict) -> list[str]:
    """Differences: a resource missing, or a field of the old inventory with another value."""
    diffs = []
    for q, invs in before.items():
        for uuid, inv in invs.items():
            new = after[q].get(uuid)
            if new is None:
                diffs.append(f"{q} {uuid} missing")
                continue
            diffs += [f"{q} {uuid}.{k}: {v!r} -> {new.get(k)!r}" for k, v in inv.items()
                      if k != "lastOpDate" and new.get(k) != v]
    return diffs


def _rows_lost(before: dict, after: dict) -> list[str]:
    """Rows of `before` not in `after` (compared on the old columns: an upgrade may add columns and
    rows, such as the new release's global configs, but never lose or change one)."""
    lost = []
    for table, rows in before.items():
        if table.startswith("alembic_version"):  # every chain's version moves
            continue
        kept = {repr(sorted((k, v) for k, v in row.items() if k in rows[0])) for row in after.get(table, [])} \
            if rows else set()
        now = {r.get("uuid"): r for r in after.get(table, [])}
        for row in rows:
            if repr(sorted(row.items())) not in kept:
                other = now.get(row.get("uuid"), {})
                changed = {k: (v, other.get(k)) for k, v in row.items() if other.get(k) != v}
                lost.append(f"{table} {row.get('uuid')}: changed {changed}" if other else f"{table}: {row}")
    return lost


def _rows_differ(before: dict, after: dict) -> list[str]:
    """Every row of either snapshot that the other lacks, with the columns that differ."""
    return _rows_lost(before, after) + [f"extra {d}" for d in _rows_lost(after, before)]


def _version_of_status(out: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("version:"))


@pytest.mark.timeout(900)  # about a dozen processes start and stop; minutes on a loaded machine
def test_upgrade_failed_upgrade_and_rollback(wheels: Wheels, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = ue.clean_env(tmp_path / "user")
    venv = ue.make_venv(tmp_path / "venv", wheels.old)
    db_url, cleanup = make_db_url(home)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    own_ctl = [str(venv / "bin/zstack-ctl"), "--home", str(home)]
    try:
        # 1. the previous release, populated through its API
        r = _run([*own_ctl, "configure", f"simulator_port={_free_port()}"], env, tmp_path)
        assert r.returncode == 0, r.stderr
        r = _run([*own_ctl, "start", "--simulator", "--port", str(port), "--db-url", db_url], env, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        api = ZStackClient(url)
        api.login()
        _populate(api)
        inv_old = _inventories(url)
        assert len(inv_old["QueryVmInstance"]) == 3 and len(inv_old["QueryZone"]) == 2
        old_revision = current_revision(db_url)
        # (--timeout: SIGKILL sooner if the previous release is slow to stop; its data is committed)
        ue.wait_hosts_settled(db_url, url)
        assert _run([*own_ctl, "stop", "--timeout", "10"], env, tmp_path).returncode == 0
        rows_old = ue.snapshot(db_url, skip=VOLATILE)

        # 2. upgrade to this checkout, driven by this checkout's zstack-ctl
        new_ctl = [sys.executable, "-m", "mn.ctl", "--home", str(home)]
        r = _run([*new_ctl, "upgrade", "--venv", str(venv), str(wheels.new)], env, ue.ROOT)
        assert r.returncode == 0, r.stdout + r.stderr
        assert current_revision(db_url) == head_revision() != old_revision
        r = _run([*own_ctl, "status"], env, tmp_path)
        assert r.returncode == 0 and _version_of_status(r.stdout) == wheels.new_version, r.stdout
        ue.wait_hosts_settled(db_url, url)  # the new MN reconnects every host: Connecting meanwhile
        inv_new = _inventories(url)
        assert _same_inventories(inv_old, inv_new) == []
        assert _rows_lost(rows_old, ue.snapshot(db_url, skip=VOLATILE)) == []
        backups = sorted(p for p in (home / "backups").iterdir() if p.is_dir())
        assert len(backups) == 1 and (home / "backups/last-upgrade").read_text().strip() == backups[0].name

        # 3. a release whose migration fails: the venv's own zstack-ctl upgrades itself, rolls back
        ue.wait_hosts_settled(db_url, url)
        assert _run([*own_ctl, "stop"], env, tmp_path).returncode == 0
        rows_before_bad = ue.snapshot(db_url, skip=VOLATILE)
        r = _run([*own_ctl, "upgrade", str(wheels.bad)], env, tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "failed at 'migrate the database" in r.stderr and "injected failure" in r.stderr, r.stderr
        assert f"rolled back: version {wheels.new_version} is running again" in r.stderr
        r = _run([*own_ctl, "status"], env, tmp_path)
        assert r.returncode == 0 and _version_of_status(r.stdout) == wheels.new_version, r.stdout
        assert current_revision(db_url) == head_revision()
        engine = create_engine(db_url, poolclass=NullPool)
        schema = inspect(engine)
        assert "upgrade_probe" not in schema.get_table_names()
        assert "probe" not in {c["name"] for c in schema.get_columns("zone")}
        engine.dispose()
        ue.wait_hosts_settled(db_url, url)
        assert _run([*own_ctl, "stop"], env, tmp_path).returncode == 0
        assert _rows_differ(rows_before_bad, ue.snapshot(db_url, skip=VOLATILE)) == []

        # 4. rollback to the previous release (the backup of step 2)
        r = _run([*own_ctl, "rollback"], env, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"rolled back to {wheels.old_version}" in r.stdout
        r = _run([*own_ctl, "status"], env, tmp_path)
        assert r.returncode == 0 and _version_of_status(r.stdout) == wheels.old_version, r.stdout
        assert current_revision(db_url) == old_revision
        assert _same_inventories(inv_old, _inventories(url)) == []
        ue.wait_hosts_settled(db_url, url)
        assert _run([*own_ctl, "stop"], env, tmp_path).returncode == 0
        assert _rows_differ(rows_old, ue.snapshot(db_url, skip=VOLATILE)) == []
    finally:
        _run([*own_ctl, "stop"], env, tmp_path)
        cleanup()
