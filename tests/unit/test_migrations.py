"""The migrations and the models agree: after `upgrade head` (the core's chain and every plugin's),
autogenerate sees no difference; each chain can be undone, and a plugin's first revision adopts
tables made before its family was a plugin.

Runs on SQLite always, and on the local PostgreSQL / MariaDB servers when they answer
(a throw-away database each, dropped afterwards); otherwise those cases are skipped.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

import mn.models  # noqa: F401  (registers the core's tables; conftest loads the plugins')
from mn.db.base import Base
from mn.db.migrate import chains, current_revision, downgrade, head_revision, revisions, upgrade

SERVERS = {
    "postgresql": ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/{}",
                   'CREATE DATABASE "{}"', 'DROP DATABASE IF EXISTS "{}" WITH (FORCE)'),
    "mariadb": ("mysql+pymysql://root@127.0.0.1:3306/", "mysql+pymysql://root@127.0.0.1:3306/{}",
                "CREATE DATABASE `{}`", "DROP DATABASE IF EXISTS `{}`"),
}


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request, tmp_path) -> Iterator[str]:
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    admin, url, create, drop = SERVERS[kind]
    name = f"zstack_mig_{uuidlib.uuid4().hex[:8]}"
    eng = create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with eng.connect() as c:  # the test machines run both servers: unreachable is a failure
        c.execute(text(create.format(name)))
    try:
        yield url.format(name)
    finally:
        with eng.connect() as c:
            c.execute(text(drop.format(name)))
        eng.dispose()


def _diff(url: str) -> list:
    eng = create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={
                "compare_type": True,
                "include_name": lambda name, type_, parent: not (type_ == "table" and name.startswith("alembic_version"))})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        eng.dispose()


def _indexes(url: str, table: str) -> set[str]:
    eng = create_engine(url, poolclass=NullPool)
    try:
        return {i["name"] for i in inspect(eng).get_indexes(table)}
    finally:
        eng.dispose()


def test_head_matches_models_and_0002_round_trips(db_url: str) -> None:
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    assert _diff(db_url) == []
    assert {"ix_vm_instance_createDate_uuid", "ix_vm_instance_hypervisorType"} <= _indexes(db_url, "vm_instance")
    assert "ix_system_tag_tag_resourceUuid" in _indexes(db_url, "system_tag")
    downgrade(db_url, "0002")
    assert "ix_vm_instance_createDate" in _indexes(db_url, "vm_instance")
    downgrade(db_url, "0001")
    assert "ix_vm_instance_createDate" not in _indexes(db_url, "vm_instance")
    upgrade(db_url)
    assert _diff(db_url) == []
    downgrade(db_url, "base")  # every migration can be undone
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert _diff(db_url) == []


def test_every_foreign_key_is_indexed() -> None:
    for table in Base.metadata.sorted_tables:
        leading = {next(iter(ix.columns)).name for ix in table.indexes}
        leading |= {c.columns[0].name for c in table.constraints
                    if c.__class__.__name__ in ("UniqueConstraint", "PrimaryKeyConstraint") and c.columns}
        for fk in table.foreign_keys:
            assert fk.parent.name in leading, f"{table.name}.{fk.parent.name} has no index"


def _tables(url: str) -> set[str]:
    eng = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(eng).get_table_names())
    finally:
        eng.dispose()


EIP_TABLES = {"vip", "eip", "vip_network_services_ref", "vip_peer_l3_network_ref"}


def test_every_plugin_chain_has_its_own_version_table_and_undoes_itself(db_url: str) -> None:
    upgrade(db_url)
    names = [c.name for c in chains()]
    assert names[0] == "core" and {"eip", "kvm", "local_storage", "sftp"} <= set(names)
    assert all(current == head for current, head in revisions(db_url).values())
    assert {"ix_eip_guestIp", "ix_eip_vipIp", "ix_eip_vmNicUuid"} <= _indexes(db_url, "eip")
    assert {"ix_vip_ip", "ix_vip_l3NetworkUuid"} <= _indexes(db_url, "vip")
    assert {f"alembic_version_{n}" for n in names[1:]} <= _tables(db_url)
    downgrade(db_url, "base", "eip")  # the plugin's tables go, the core's stay
    assert not _tables(db_url) & EIP_TABLES and "vm_nic" in _tables(db_url)
    assert current_revision(db_url, "eip") is None and current_revision(db_url) == head_revision()
    upgrade(db_url)
    assert _tables(db_url) >= EIP_TABLES and _diff(db_url) == []


def test_a_plugin_adopts_the_tables_a_database_had_before_it_was_one(db_url: str) -> None:
    """A database made before EIP, KVM, SFTP and local storage were plugins has their tables (from
    core revisions 0003 and 0004) and no plugin version tables: the plugins' first revisions adopt
    the tables as they are."""
    upgrade(db_url)
    eng = create_engine(db_url, poolclass=NullPool)
    try:
        with eng.begin() as c:
            for ch in chains()[1:]:
                c.execute(text(f"DROP TABLE {ch.version_table}"))
    finally:
        eng.dispose()
    assert all(current is None for name, (current, _) in revisions(db_url).items() if name != "core")
    upgrade(db_url)
    assert all(current == head for current, head in revisions(db_url).values())
    assert _diff(db_url) == []


def test_0005_replaces_sort_indexes_with_field_uuid_ones(db_url: str) -> None:
    upgrade(db_url, "0005")
    vm = _indexes(db_url, "vm_instance")
    assert {"ix_vm_instance_createDate_uuid", "ix_vm_instance_name_uuid"} <= vm
    assert not {"ix_vm_instance_createDate", "ix_vm_instance_name"} & vm
    assert "ix_volume_size" in _indexes(db_url, "volume")
    downgrade(db_url, "0004")
    vm = _indexes(db_url, "vm_instance")
    assert {"ix_vm_instance_createDate", "ix_vm_instance_name"} <= vm
    assert not {"ix_vm_instance_createDate_uuid", "ix_vm_instance_name_uuid"} & vm
    assert "ix_volume_size" not in _indexes(db_url, "volume")


def test_plugin_migrations_seal_clear_text_passwords_and_downgrades_open_them(db_url: str, tmp_path) -> None:
    """kvm_0002 and sftp_0002 seal the passwords a database holds in clear text (issue 13, finding
    4) with the MN's key file, and need it only when there are passwords; downgrades open them."""
    from alembic import command
    from sqlalchemy.orm import Session as OrmSession

    from mn import secretbox
    from mn.db.migrate import alembic_config
    from mn.models import Cluster, Zone
    from zstack_plugins.kvm.models import KVMHost
    from zstack_plugins.sftp.models import SftpBackupStorage

    upgrade(db_url)
    for name in ("kvm", "sftp"):
        command.downgrade(alembic_config(db_url, name), f"{name}_0001")  # no rows: no key needed
    eng = create_engine(db_url, poolclass=NullPool)
    try:
        with OrmSession(eng) as s, s.begin():  # rows as an MN before sealing wrote them
            s.add(Zone(uuid="a" * 32, name="z"))
            s.flush()
            s.add(Cluster(uuid="b" * 32, name="c", zoneUuid="a" * 32, hypervisorType="KVM"))
            s.flush()
            s.add(KVMHost(uuid="c" * 32, name="h", zoneUuid="a" * 32, clusterUuid="b" * 32,
                          managementIp="10.0.0.1", hypervisorType="KVM", username="root", password="kvm-secret"))
            s.add(KVMHost(uuid="e" * 32, name="k", zoneUuid="a" * 32, clusterUuid="b" * 32,
                          managementIp="10.0.0.2", hypervisorType="KVM", username="root", password=None))
            s.add(SftpBackupStorage(uuid="d" * 32, name="b", url="/bs", type="SftpBackupStorage",
                                    hostname="10.0.0.3", username="root", password="sftp-secret"))

        def stored() -> dict[str, str | None]:
            with eng.connect() as c:
                return {**dict(c.execute(text("SELECT uuid, password FROM kvm_host")).all()),
                        **dict(c.execute(text("SELECT uuid, password FROM sftp_backup_storage")).all())}

        with pytest.raises(RuntimeError, match="key file"):  # clear text to seal, no key given
            upgrade(db_url)
        assert stored()["c" * 32] == "kvm-secret"  # the failed migration changed nothing
        key = secretbox.key_path(tmp_path / "home")
        upgrade(db_url, secret_key=key)
        assert key.stat().st_mode & 0o777 == 0o600
        box = secretbox.load(key.parent, create=False)
        sealed = stored()
        assert sealed["e" * 32] is None
        for uuid, clear in (("c" * 32, "kvm-secret"), ("d" * 32, "sftp-secret")):
            assert secretbox.is_sealed(sealed[uuid]) and clear not in sealed[uuid]
            assert box.open(sealed[uuid]) == clear
        assert _diff(db_url) == []
        for name in ("kvm", "sftp"):
            command.downgrade(alembic_config(db_url, name, key), f"{name}_0001")
        assert stored() == {"c" * 32: "kvm-secret", "e" * 32: None, "d" * 32: "sftp-secret"}
    finally:
        eng.dispose()
