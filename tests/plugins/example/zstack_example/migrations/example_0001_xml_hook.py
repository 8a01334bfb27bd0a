"""example_xml_hook: XML hook scripts and the host each was checked on

Revision ID: example_0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "example_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "example_xml_hook",
        sa.Column("uuid", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=2048), nullable=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("hookScript", sa.Text(), nullable=False),
        sa.Column("libvirtVersion", sa.String(length=64), nullable=True),
        sa.Column("hostUuid", sa.String(length=32), nullable=False),
        sa.Column("createDate", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("lastOpDate", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["hostUuid"], ["host.uuid"], name=op.f("fk_example_xml_hook_hostUuid_host")),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_example_xml_hook")),
    )
    op.create_index(op.f("ix_example_xml_hook_hostUuid"), "example_xml_hook", ["hostUuid"], unique=False)
    op.create_index(op.f("ix_example_xml_hook_name"), "example_xml_hook", ["name"], unique=False)


def downgrade() -> None:
    op.drop_table("example_xml_hook")
