"""gc jobs: the garbage collector's table (agent cleanups that failed, retried until done)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gc_job",
        sa.Column("uuid", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("runnerClass", sa.String(length=255), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("managementNodeUuid", sa.String(length=32), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("resourceUuid", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("nextRunDate", sa.DateTime(), nullable=False),
        sa.Column("leaseExpiry", sa.DateTime(), nullable=True),
        sa.Column("lastError", sa.Text(), nullable=True),
        sa.Column("createDate", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("lastOpDate", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_gc_job")),
    )
    op.create_index(op.f("ix_gc_job_nextRunDate"), "gc_job", ["nextRunDate"], unique=False)
    op.create_index(op.f("ix_gc_job_resourceUuid"), "gc_job", ["resourceUuid"], unique=False)
    op.create_index(op.f("ix_gc_job_status"), "gc_job", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_gc_job_status"), table_name="gc_job")
    op.drop_index(op.f("ix_gc_job_resourceUuid"), table_name="gc_job")
    op.drop_index(op.f("ix_gc_job_nextRunDate"), table_name="gc_job")
    op.drop_table("gc_job")
