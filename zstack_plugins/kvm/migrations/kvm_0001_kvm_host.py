"""kvm_host: the SSH login and OS facts of KVM hosts (extends host rows)

The kvm plugin's first revision. Databases made before KVM was a plugin have the table from
the core's revision 0004 (the same definition): it is adopted, not created again.

Revision ID: kvm_0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'kvm_0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table('kvm_host'):
        return  # made by core revision 0004: adopted as it is
    op.create_table('kvm_host',
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('username', sa.String(length=255), nullable=False),
    sa.Column('password', sa.String(length=255), nullable=True),
    sa.Column('sshPort', sa.Integer(), nullable=False),
    sa.Column('osDistribution', sa.String(length=64), nullable=True),
    sa.Column('osRelease', sa.String(length=64), nullable=True),
    sa.Column('osVersion', sa.String(length=64), nullable=True),
    sa.Column('agentVersion', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['uuid'], ['host.uuid'], name=op.f('fk_kvm_host_uuid_host'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_kvm_host'))
    )


def downgrade() -> None:
    op.drop_table('kvm_host')
