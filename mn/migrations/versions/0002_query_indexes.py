"""query indexes: every commonly filtered field, and tags by (tag, resourceUuid)

Every foreign key is already indexed by 0001; this adds the state/status/type/hypervisorType
columns queries filter on, createDate of the big tables (sorting and date ranges), and a
(tag, resourceUuid) index serving `__systemTag__`/`__userTag__` conditions, which compile to
`uuid IN (SELECT resourceUuid FROM <tag table> WHERE tag <op> :v)`. MySQL/MariaDB index only
the first 255 characters of `tag` (a 2048-character column exceeds its key length).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# (table, column): single-column indexes named by the metadata's convention ix_<table>_<column>.
SINGLE = [
    ('backup_storage', 'state'), ('backup_storage', 'status'), ('backup_storage', 'type'),
    ('cluster', 'hypervisorType'), ('cluster', 'state'),
    ('disk_offering', 'state'),
    ('host', 'createDate'),
    ('image', 'createDate'), ('image', 'mediaType'), ('image', 'state'), ('image', 'status'),
    ('instance_offering', 'state'),
    ('l3_network', 'state'), ('l3_network', 'type'),
    ('primary_storage', 'state'), ('primary_storage', 'status'), ('primary_storage', 'type'),
    ('vm_instance', 'createDate'), ('vm_instance', 'hypervisorType'), ('vm_instance', 'type'),
    ('volume', 'createDate'), ('volume', 'state'),
    ('zone', 'state'),
]
TAG_TABLES = ['system_tag', 'user_tag']


def upgrade() -> None:
    for table, column in SINGLE:
        op.create_index(f'ix_{table}_{column}', table, [column], unique=False)
    for table in TAG_TABLES:
        op.create_index(f'ix_{table}_tag_resourceUuid', table, ['tag', 'resourceUuid'], unique=False,
                        mysql_length={'tag': 255})


def downgrade() -> None:
    for table in reversed(TAG_TABLES):
        op.drop_index(f'ix_{table}_tag_resourceUuid', table_name=table)
    for table, column in reversed(SINGLE):
        op.drop_index(f'ix_{table}_{column}', table_name=table)
