"""Migrations of password columns between clear text and sealed values (mn.secretbox).

A migration gets the MN's key file from its Alembic config (`attributes["secret_key"]`, set by
mn.db.migrate.upgrade/downgrade: the MN at start and `zstack-ctl deploydb` pass
`<home>/secret.key`). The key is needed only when there are rows to convert; without it such a
migration fails, naming the table, and changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

from mn.secretbox import SecretBox, is_sealed, load


def _box(table: str) -> SecretBox:
    key = context.config.attributes.get("secret_key")
    if key is None:
        raise RuntimeError(f"{table} holds passwords to seal or open, which needs the MN's key file: "
                           f"migrate with 'zstack-ctl deploydb' or mn.db.migrate.upgrade(url, "
                           f"secret_key=<home>/secret.key)")
    return load(Path(key).parent)


def _resize(table: str, column: str, length: int) -> None:
    with op.batch_alter_table(table) as batch:
        batch.alter_column(column, type_=sa.String(length), existing_nullable=True)


def seal(table: str, column: str, length: int) -> int:
    """Widen table.column to `length` and seal its clear-text values; the rows changed. The key
    is looked for before anything changes, so a migration without it fails having done nothing."""
    return _convert(table, column, length, sealing=True)


def open_(table: str, column: str, length: int) -> int:
    """Open the sealed values of table.column and narrow it back to `length`; the rows changed."""
    return _convert(table, column, length, sealing=False)


def _convert(table: str, column: str, length: int, sealing: bool) -> int:
    t = sa.table(table, sa.column("uuid", sa.String), sa.column(column, sa.String))
    bind = op.get_bind()
    rows = [(u, v) for u, v in bind.execute(sa.select(t.c.uuid, t.c[column]).where(t.c[column].is_not(None)))
            if v and is_sealed(v) != sealing]
    box = _box(table) if rows else None
    if sealing:
        _resize(table, column, length)
    for uuid, value in rows:
        assert box is not None
        bind.execute(sa.update(t).where(t.c.uuid == uuid)
                     .values({column: box.seal(value) if sealing else box.open(value)}))
    if not sealing:
        _resize(table, column, length)
    return len(rows)
