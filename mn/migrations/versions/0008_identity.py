"""identity: users, groups, policies, quotas, resource ownership (account_resource_ref) and sharing

Resources made before tenancy existed are the admin account's: each core resource table a normal
account may own gets its owner rows here (the EIP plugin's chain does the same for its tables).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_resource_ref',
    sa.Column('resourceUuid', sa.String(length=32), nullable=False),
    sa.Column('accountUuid', sa.String(length=32), nullable=False),
    sa.Column('resourceType', sa.String(length=255), nullable=False),
    sa.Column('concreteResourceType', sa.String(length=255), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['accountUuid'], ['account.uuid'], name=op.f('fk_account_resource_ref_accountUuid_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('resourceUuid', name=op.f('pk_account_resource_ref'))
    )
    with op.batch_alter_table('account_resource_ref', schema=None) as batch_op:
        batch_op.create_index('ix_account_resource_ref_owner', ['accountUuid', 'resourceType', 'resourceUuid'],
                              unique=False)

    op.create_table('account_user',
    sa.Column('accountUuid', sa.String(length=32), nullable=False),
    sa.Column('passwordHash', sa.String(length=255), nullable=False),
    sa.Column('passwordSalt', sa.String(length=64), nullable=False),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['accountUuid'], ['account.uuid'], name=op.f('fk_account_user_accountUuid_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_account_user')),
    sa.UniqueConstraint('accountUuid', 'name', name=op.f('uq_account_user_accountUuid_name'))
    )
    with op.batch_alter_table('account_user', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_user_accountUuid'), ['accountUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_user_name'), ['name'], unique=False)

    op.create_table('policy',
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('accountUuid', sa.String(length=32), nullable=False),
    sa.Column('statementsJson', sa.Text(), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['accountUuid'], ['account.uuid'], name=op.f('fk_policy_accountUuid_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_policy')),
    sa.UniqueConstraint('accountUuid', 'name', name=op.f('uq_policy_accountUuid_name'))
    )
    with op.batch_alter_table('policy', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_policy_accountUuid'), ['accountUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_policy_name'), ['name'], unique=False)

    op.create_table('quota_usage',
    sa.Column('accountUuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('used', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['accountUuid'], ['account.uuid'], name=op.f('fk_quota_usage_accountUuid_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('accountUuid', 'name', name=op.f('pk_quota_usage'))
    )
    op.create_table('quota',
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('identityUuid', sa.String(length=32), nullable=False),
    sa.Column('identityType', sa.String(length=64), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['identityUuid'], ['account.uuid'], name=op.f('fk_quota_identityUuid_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_quota')),
    sa.UniqueConstraint('identityUuid', 'name', name=op.f('uq_quota_identityUuid_name'))
    )
    with op.batch_alter_table('quota', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quota_identityUuid'), ['identityUuid'], unique=False)

    op.create_table('shared_resource',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ownerAccountUuid', sa.String(length=32), nullable=False),
    sa.Column('receiverAccountUuid', sa.String(length=32), nullable=True),
    sa.Column('toPublic', sa.Boolean(), nullable=False),
    sa.Column('resourceType', sa.String(length=255), nullable=False),
    sa.Column('resourceUuid', sa.String(length=32), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['ownerAccountUuid'], ['account.uuid'], name=op.f('fk_shared_resource_ownerAccountUuid_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['receiverAccountUuid'], ['account.uuid'], name=op.f('fk_shared_resource_receiverAccountUuid_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shared_resource'))
    )
    with op.batch_alter_table('shared_resource', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shared_resource_ownerAccountUuid'), ['ownerAccountUuid'], unique=False)
        batch_op.create_index('ix_shared_resource_public', ['toPublic', 'resourceUuid'], unique=False)
        batch_op.create_index('ix_shared_resource_receiver', ['receiverAccountUuid', 'resourceUuid'], unique=False)
        batch_op.create_index('ix_shared_resource_resource', ['resourceUuid'], unique=False)

    op.create_table('user_group',
    sa.Column('accountUuid', sa.String(length=32), nullable=False),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['accountUuid'], ['account.uuid'], name=op.f('fk_user_group_accountUuid_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_user_group')),
    sa.UniqueConstraint('accountUuid', 'name', name=op.f('uq_user_group_accountUuid_name'))
    )
    with op.batch_alter_table('user_group', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_group_accountUuid'), ['accountUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_user_group_name'), ['name'], unique=False)

    op.create_table('user_group_policy_ref',
    sa.Column('groupUuid', sa.String(length=32), nullable=False),
    sa.Column('policyUuid', sa.String(length=32), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['groupUuid'], ['user_group.uuid'], name=op.f('fk_user_group_policy_ref_groupUuid_user_group'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['policyUuid'], ['policy.uuid'], name=op.f('fk_user_group_policy_ref_policyUuid_policy'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('groupUuid', 'policyUuid', name=op.f('pk_user_group_policy_ref'))
    )
    with op.batch_alter_table('user_group_policy_ref', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_group_policy_ref_policyUuid'), ['policyUuid'], unique=False)

    op.create_table('user_group_user_ref',
    sa.Column('userUuid', sa.String(length=32), nullable=False),
    sa.Column('groupUuid', sa.String(length=32), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['groupUuid'], ['user_group.uuid'], name=op.f('fk_user_group_user_ref_groupUuid_user_group'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['userUuid'], ['account_user.uuid'], name=op.f('fk_user_group_user_ref_userUuid_account_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('userUuid', 'groupUuid', name=op.f('pk_user_group_user_ref'))
    )
    with op.batch_alter_table('user_group_user_ref', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_group_user_ref_groupUuid'), ['groupUuid'], unique=False)

    op.create_table('user_policy_ref',
    sa.Column('userUuid', sa.String(length=32), nullable=False),
    sa.Column('policyUuid', sa.String(length=32), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['policyUuid'], ['policy.uuid'], name=op.f('fk_user_policy_ref_policyUuid_policy'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['userUuid'], ['account_user.uuid'], name=op.f('fk_user_policy_ref_userUuid_account_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('userUuid', 'policyUuid', name=op.f('pk_user_policy_ref'))
    )
    with op.batch_alter_table('user_policy_ref', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_policy_ref_policyUuid'), ['policyUuid'], unique=False)

    _backfill_owner()


ADMIN_UUID = "36c27e8ff05c4780bf6d2fa65700f22e"
OWNED_TABLES = {"vm_instance": "VmInstanceVO", "volume": "VolumeVO", "image": "ImageVO",
                "l3_network": "L3NetworkVO", "instance_offering": "InstanceOfferingVO",
                "disk_offering": "DiskOfferingVO"}


def _backfill_owner() -> None:
    refs = sa.table("account_resource_ref", *(sa.column(c) for c in (
        "resourceUuid", "accountUuid", "resourceType", "concreteResourceType", "createDate", "lastOpDate")))
    account = sa.table("account", sa.column("uuid"))
    admin_exists = sa.exists(sa.select(sa.literal(1)).select_from(account).where(account.c.uuid == ADMIN_UUID))
    for table, rtype in OWNED_TABLES.items():
        src = sa.table(table, sa.column("uuid"))
        rows = sa.select(src.c.uuid, sa.literal(ADMIN_UUID), sa.literal(rtype), sa.literal(rtype),
                         sa.func.now(), sa.func.now()).where(admin_exists)
        op.execute(refs.insert().from_select(list(refs.c.keys()), rows))


def downgrade() -> None:
    # Dropping a table drops its indexes (MariaDB refuses to drop an index a foreign key needs).
    for table in ("user_policy_ref", "user_group_user_ref", "user_group_policy_ref", "user_group",
                  "account_user", "shared_resource", "quota_usage", "quota", "policy", "account_resource_ref"):
        op.drop_table(table)
