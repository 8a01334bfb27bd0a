"""sort and size indexes for a million VMs: (createDate, uuid) and (name, uuid) on vm_instance, volume.size

Query pages are ordered by the sort field then the primary key; an index on (field, uuid) serves
that order directly, so a page deep into 1,000,000 VMs walks one index instead of sorting the
table. These two replace the single-column ix_vm_instance_createDate and ix_vm_instance_name
(an index on (a, uuid) answers every lookup on a). volume.size serves conditions on volume
sizes (`allVolumes.size>=...`, `vmInstance.allVolumes.size>=...` on hosts).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (old single-column index, new composite index, columns)
REPLACED = [
    ("ix_vm_instance_createDate", "ix_vm_instance_createDate_uuid", ["createDate", "uuid"]),
    ("ix_vm_instance_name", "ix_vm_instance_name_uuid", ["name", "uuid"]),
]


def upgrade() -> None:
    for old, new, columns in REPLACED:
        op.create_index(new, "vm_instance", columns, unique=False)
        op.drop_index(old, table_name="vm_instance")
    op.create_index("ix_volume_size", "volume", ["size"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_volume_size", table_name="volume")
    for old, new, columns in reversed(REPLACED):
        op.create_index(old, "vm_instance", columns[:1], unique=False)
        op.drop_index(new, table_name="vm_instance")
