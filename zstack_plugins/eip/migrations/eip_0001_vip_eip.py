"""vip and eip tables (flat network EIP), with their VIP service and peer-L3 references

The eip plugin's first revision. Databases made before EIP was a plugin have these tables from the
core's revision 0003 (the same definitions): they are adopted, not created again.
Indexed: every foreign key, and the fields EIP/VIP queries filter on (vip.ip, vip.state,
eip.vipIp, eip.guestIp, eip.state; eip.vipUuid through its unique constraint, one EIP per VIP).

Revision ID: eip_0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'eip_0001'
down_revision = None
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column]:
    return [sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
            sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False)]


def _resource() -> list[sa.Column]:
    return [sa.Column('uuid', sa.String(length=32), nullable=False),
            sa.Column('name', sa.String(length=255), nullable=False),
            sa.Column('description', sa.String(length=2048), nullable=True), *_stamps()]


def _indexes(table: str, *columns: str) -> None:
    for c in columns:
        op.create_index(op.f(f'ix_{table}_{c}'), table, [c], unique=False)


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table('vip'):
        return  # made by core revision 0003 before EIP was a plugin: adopted as it is
    op.create_table(
        'vip',
        sa.Column('l3NetworkUuid', sa.String(length=32), nullable=False),
        sa.Column('usedIpUuid', sa.String(length=32), nullable=True),
        sa.Column('ip', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=32), nullable=False),
        sa.Column('gateway', sa.String(length=64), nullable=True),
        sa.Column('netmask', sa.String(length=64), nullable=False),
        sa.Column('prefixLen', sa.Integer(), nullable=True),
        sa.Column('serviceProvider', sa.String(length=64), nullable=True),
        sa.Column('useFor', sa.String(length=64), nullable=True),
        sa.Column('system', sa.Boolean(), nullable=False),
        *_resource(),
        sa.ForeignKeyConstraint(['l3NetworkUuid'], ['l3_network.uuid'], name=op.f('fk_vip_l3NetworkUuid_l3_network')),
        sa.ForeignKeyConstraint(['usedIpUuid'], ['used_ip.uuid'], name=op.f('fk_vip_usedIpUuid_used_ip'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('uuid', name=op.f('pk_vip')),
    )
    _indexes('vip', 'ip', 'l3NetworkUuid', 'name', 'state', 'usedIpUuid')
    op.create_table(
        'eip',
        sa.Column('vipUuid', sa.String(length=32), nullable=False),
        sa.Column('vmNicUuid', sa.String(length=32), nullable=True),
        sa.Column('state', sa.String(length=32), nullable=False),
        sa.Column('vipIp', sa.String(length=64), nullable=False),
        sa.Column('guestIp', sa.String(length=64), nullable=True),
        *_resource(),
        sa.ForeignKeyConstraint(['vipUuid'], ['vip.uuid'], name=op.f('fk_eip_vipUuid_vip')),
        sa.ForeignKeyConstraint(['vmNicUuid'], ['vm_nic.uuid'], name=op.f('fk_eip_vmNicUuid_vm_nic'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('uuid', name=op.f('pk_eip')),
        sa.UniqueConstraint('vipUuid', name=op.f('uq_eip_vipUuid')),
    )
    _indexes('eip', 'guestIp', 'name', 'state', 'vipIp', 'vmNicUuid')
    op.create_table(
        'vip_network_services_ref',
        sa.Column('uuid', sa.String(length=32), nullable=False),
        sa.Column('serviceType', sa.String(length=64), nullable=False),
        sa.Column('vipUuid', sa.String(length=32), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(['vipUuid'], ['vip.uuid'], name=op.f('fk_vip_network_services_ref_vipUuid_vip'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('uuid', name=op.f('pk_vip_network_services_ref')),
    )
    _indexes('vip_network_services_ref', 'vipUuid')
    op.create_table(
        'vip_peer_l3_network_ref',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('vipUuid', sa.String(length=32), nullable=False),
        sa.Column('l3NetworkUuid', sa.String(length=32), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(['l3NetworkUuid'], ['l3_network.uuid'],
                                name=op.f('fk_vip_peer_l3_network_ref_l3NetworkUuid_l3_network'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['vipUuid'], ['vip.uuid'], name=op.f('fk_vip_peer_l3_network_ref_vipUuid_vip'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_vip_peer_l3_network_ref')),
        sa.UniqueConstraint('vipUuid', 'l3NetworkUuid', name=op.f('uq_vip_peer_l3_network_ref_vipUuid_l3NetworkUuid')),
    )
    _indexes('vip_peer_l3_network_ref', 'l3NetworkUuid', 'vipUuid')


def downgrade() -> None:
    for table in ('vip_peer_l3_network_ref', 'vip_network_services_ref', 'eip', 'vip'):
        op.drop_table(table)
