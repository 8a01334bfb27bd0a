"""The migrations and the models agree: after `upgrade head`, autogenerate sees no difference.

Runs on SQLite always, and on the local PostgreSQL / MariaDB servers when they answer
(a throw-away database each, dropped afterwards); otherwise those cases are skipped.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

import mn.models  # noqa: F401  (registers every table)
from mn.db.base import Base
from mn.db.migrate import alembic_config, current_revision, head_revision, upgrade

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
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
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
    command.downgrade(alembic_config(db_url), "0002")
    assert "ix_vm_instance_createDate" in _indexes(db_url, "vm_instance")
    command.downgrade(alembic_config(db_url), "0001")
    assert "ix_vm_instance_createDate" not in _indexes(db_url, "vm_instance")
    upgrade(db_url)
    assert _diff(db_url) == []
    command.downgrade(alembic_config(db_url), "base")  # every migration can be undone
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


def test_0003_creates_and_drops_the_vip_and_eip_tables(db_url: str) -> None:
    upgrade(db_url, "0003")
    assert {"ix_eip_guestIp", "ix_eip_vipIp", "ix_eip_vmNicUuid"} <= _indexes(db_url, "eip")
    assert {"ix_vip_ip", "ix_vip_l3NetworkUuid"} <= _indexes(db_url, "vip")
    command.downgrade(alembic_config(db_url), "0002")
    eng = create_engine(db_url, poolclass=NullPool)
    try:
        tables = set(inspect(eng).get_table_names())
    finally:
        eng.dispose()
    assert not tables & {"vip", "eip", "vip_network_services_ref", "vip_peer_l3_network_ref"}


def test_0005_replaces_sort_indexes_with_field_uuid_ones(db_url: str) -> None:
    upgrade(db_url, "0005")
    vm = _indexes(db_url, "vm_instance")
    assert {"ix_vm_instance_createDate_uuid", "ix_vm_instance_name_uuid"} <= vm
    assert not {"ix_vm_instance_createDate", "ix_vm_instance_name"} & vm
    assert "ix_volume_size" in _indexes(db_url, "volume")
    command.downgrade(alembic_config(db_url), "0004")
    vm = _indexes(db_url, "vm_instance")
    assert {"ix_vm_instance_createDate", "ix_vm_instance_name"} <= vm
    assert not {"ix_vm_instance_createDate_uuid", "ix_vm_instance_name_uuid"} & vm
    assert "ix_volume_size" not in _indexes(db_url, "volume")
