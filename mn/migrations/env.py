"""Alembic environment: migrations of one chain (mn.db.migrate.Chain) against the caller's URL.

The chain decides the version table and, for autogenerate, which tables are compared: a plugin's
chain owns the tables of its model modules, the core's chain every other table.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

import mn.models  # noqa: F401  (registers the core's tables)
from mn import plugins
from mn.db.base import Base
from mn.db.migrate import CORE, Chain, chains

plugins.load("models")
config = context.config
target_metadata = Base.metadata
CHAIN: Chain = config.attributes.get("chain") or chains()[0]


def _owner(table_name: str) -> str:
    """The chain whose models define a table (core unless a plugin's model module does)."""
    for mapper in Base.registry.mappers:
        if getattr(mapper.local_table, "name", None) == table_name:
            module = mapper.class_.__module__
            for c in chains():
                if module in c.models:
                    return c.name
    return CORE


def include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001
    table = obj if type_ == "table" else getattr(obj, "table", None)
    table_name = getattr(table, "name", name)
    if type_ == "table" and (name or "").startswith("alembic_version"):
        return False
    if type_ == "table" and reflected and compare_to is None:
        return False  # a table no model knows (a disabled plugin's): never dropped by autogenerate
    return _owner(table_name) == CHAIN.name


def _configure(**kw) -> None:  # noqa: ANN003
    context.configure(target_metadata=target_metadata, render_as_batch=True, compare_type=True,
                      version_table=CHAIN.version_table, include_object=include_object, **kw)


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=NullPool)
    with engine.connect() as conn:
        _run(conn)


def _run(conn) -> None:  # noqa: ANN001
    _configure(connection=conn)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
