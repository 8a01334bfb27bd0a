"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account',
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('passwordHash', sa.String(length=255), nullable=False),
    sa.Column('passwordSalt', sa.String(length=64), nullable=False),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_account'))
    )
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_name'), ['name'], unique=False)

    op.create_table('api_job',
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('apiName', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('request', sa.Text(), nullable=False),
    sa.Column('result', sa.Text(), nullable=True),
    sa.Column('syncKey', sa.String(length=128), nullable=True),
    sa.Column('managementNodeUuid', sa.String(length=32), nullable=False),
    sa.Column('flowState', sa.Text(), nullable=True),
    sa.Column('createDate', sa.DateTime(), nullable=False),
    sa.Column('finishedDate', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_api_job'))
    )
    with op.batch_alter_table('api_job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_job_managementNodeUuid'), ['managementNodeUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_api_job_state'), ['state'], unique=False)

    op.create_table('backup_storage',
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('totalCapacity', sa.BigInteger(), nullable=False),
    sa.Column('availableCapacity', sa.BigInteger(), nullable=False),
    sa.Column('agentUrl', sa.String(length=1024), nullable=True),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_backup_storage'))
    )
    with op.batch_alter_table('backup_storage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backup_storage_name'), ['name'], unique=False)

    op.create_table('disk_offering',
    sa.Column('diskSize', sa.BigInteger(), nullable=False),
    sa.Column('sortKey', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('allocatorStrategy', sa.String(length=64), nullable=True),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_disk_offering'))
    )
    with op.batch_alter_table('disk_offering', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disk_offering_name'), ['name'], unique=False)

    op.create_table('global_config',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('defaultValue', sa.String(length=2048), nullable=False),
    sa.Column('value', sa.String(length=2048), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_global_config')),
    sa.UniqueConstraint('category', 'name', name=op.f('uq_global_config_category_name'))
    )
    op.create_table('image',
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('actualSize', sa.BigInteger(), nullable=False),
    sa.Column('md5Sum', sa.String(length=255), nullable=True),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('mediaType', sa.String(length=64), nullable=False),
    sa.Column('guestOsType', sa.String(length=255), nullable=True),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('platform', sa.String(length=64), nullable=False),
    sa.Column('architecture', sa.String(length=32), nullable=False),
    sa.Column('format', sa.String(length=32), nullable=False),
    sa.Column('system', sa.Boolean(), nullable=False),
    sa.Column('virtio', sa.Boolean(), nullable=False),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_image'))
    )
    with op.batch_alter_table('image', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_image_name'), ['name'], unique=False)

    op.create_table('instance_offering',
    sa.Column('cpuNum', sa.Integer(), nullable=False),
    sa.Column('cpuSpeed', sa.Integer(), nullable=False),
    sa.Column('memorySize', sa.BigInteger(), nullable=False),
    sa.Column('reservedMemorySize', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('allocatorStrategy', sa.String(length=64), nullable=True),
    sa.Column('sortKey', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_instance_offering'))
    )
    with op.batch_alter_table('instance_offering', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instance_offering_name'), ['name'], unique=False)

    op.create_table('management_node',
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('hostName', sa.String(length=255), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('joinDate', sa.DateTime(), nullable=False),
    sa.Column('heartBeat', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_management_node'))
    )
    op.create_table('system_tag',
    sa.Column('inherent', sa.Boolean(), nullable=False),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('resourceUuid', sa.String(length=32), nullable=False),
    sa.Column('resourceType', sa.String(length=64), nullable=False),
    sa.Column('tag', sa.String(length=2048), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_system_tag'))
    )
    with op.batch_alter_table('system_tag', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_system_tag_resourceType'), ['resourceType'], unique=False)
        batch_op.create_index(batch_op.f('ix_system_tag_resourceUuid'), ['resourceUuid'], unique=False)

    op.create_table('user_tag',
    sa.Column('tagPatternUuid', sa.String(length=32), nullable=True),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('resourceUuid', sa.String(length=32), nullable=False),
    sa.Column('resourceType', sa.String(length=64), nullable=False),
    sa.Column('tag', sa.String(length=2048), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_user_tag'))
    )
    with op.batch_alter_table('user_tag', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_tag_resourceType'), ['resourceType'], unique=False)
        batch_op.create_index(batch_op.f('ix_user_tag_resourceUuid'), ['resourceUuid'], unique=False)

    op.create_table('zone',
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('isDefault', sa.Boolean(), nullable=False),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_zone'))
    )
    with op.batch_alter_table('zone', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_zone_name'), ['name'], unique=False)

    op.create_table('backup_storage_zone_ref',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('backupStorageUuid', sa.String(length=32), nullable=False),
    sa.Column('zoneUuid', sa.String(length=32), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['backupStorageUuid'], ['backup_storage.uuid'], name=op.f('fk_backup_storage_zone_ref_backupStorageUuid_backup_storage'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['zoneUuid'], ['zone.uuid'], name=op.f('fk_backup_storage_zone_ref_zoneUuid_zone'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backup_storage_zone_ref')),
    sa.UniqueConstraint('backupStorageUuid', 'zoneUuid', name=op.f('uq_backup_storage_zone_ref_backupStorageUuid_zoneUuid'))
    )
    with op.batch_alter_table('backup_storage_zone_ref', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backup_storage_zone_ref_backupStorageUuid'), ['backupStorageUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_backup_storage_zone_ref_zoneUuid'), ['zoneUuid'], unique=False)

    op.create_table('cluster',
    sa.Column('zoneUuid', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('hypervisorType', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('architecture', sa.String(length=32), nullable=True),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['zoneUuid'], ['zone.uuid'], name=op.f('fk_cluster_zoneUuid_zone')),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_cluster'))
    )
    with op.batch_alter_table('cluster', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cluster_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_cluster_zoneUuid'), ['zoneUuid'], unique=False)

    op.create_table('image_backup_storage_ref',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('imageUuid', sa.String(length=32), nullable=False),
    sa.Column('backupStorageUuid', sa.String(length=32), nullable=False),
    sa.Column('installPath', sa.String(length=2048), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('exportMd5Sum', sa.String(length=255), nullable=True),
    sa.Column('exportUrl', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['backupStorageUuid'], ['backup_storage.uuid'], name=op.f('fk_image_backup_storage_ref_backupStorageUuid_backup_storage'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['imageUuid'], ['image.uuid'], name=op.f('fk_image_backup_storage_ref_imageUuid_image'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_image_backup_storage_ref')),
    sa.UniqueConstraint('imageUuid', 'backupStorageUuid', name=op.f('uq_image_backup_storage_ref_imageUuid_backupStorageUuid'))
    )
    with op.batch_alter_table('image_backup_storage_ref', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_image_backup_storage_ref_backupStorageUuid'), ['backupStorageUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_image_backup_storage_ref_imageUuid'), ['imageUuid'], unique=False)

    op.create_table('l2_network',
    sa.Column('zoneUuid', sa.String(length=32), nullable=False),
    sa.Column('physicalInterface', sa.String(length=1024), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('vSwitchType', sa.String(length=32), nullable=False),
    sa.Column('virtualNetworkId', sa.Integer(), nullable=False),
    sa.Column('isolated', sa.Boolean(), nullable=False),
    sa.Column('pvlan', sa.String(length=255), nullable=True),
    sa.Column('vlan', sa.Integer(), nullable=True),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['zoneUuid'], ['zone.uuid'], name=op.f('fk_l2_network_zoneUuid_zone')),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_l2_network'))
    )
    with op.batch_alter_table('l2_network', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_l2_network_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_l2_network_type'), ['type'], unique=False)
        batch_op.create_index(batch_op.f('ix_l2_network_zoneUuid'), ['zoneUuid'], unique=False)

    op.create_table('primary_storage',
    sa.Column('zoneUuid', sa.String(length=32), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('mountPath', sa.String(length=2048), nullable=True),
    sa.Column('totalCapacity', sa.BigInteger(), nullable=False),
    sa.Column('availableCapacity', sa.BigInteger(), nullable=False),
    sa.Column('totalPhysicalCapacity', sa.BigInteger(), nullable=False),
    sa.Column('availablePhysicalCapacity', sa.BigInteger(), nullable=False),
    sa.Column('systemUsedCapacity', sa.BigInteger(), nullable=False),
    sa.Column('agentUrl', sa.String(length=1024), nullable=True),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['zoneUuid'], ['zone.uuid'], name=op.f('fk_primary_storage_zoneUuid_zone')),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_primary_storage'))
    )
    with op.batch_alter_table('primary_storage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_primary_storage_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_primary_storage_zoneUuid'), ['zoneUuid'], unique=False)

    op.create_table('session',
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('accountUuid', sa.String(length=32), nullable=False),
    sa.Column('userUuid', sa.String(length=32), nullable=False),
    sa.Column('userType', sa.String(length=64), nullable=False),
    sa.Column('expiredDate', sa.DateTime(), nullable=False),
    sa.Column('createDate', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['accountUuid'], ['account.uuid'], name=op.f('fk_session_accountUuid_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_session'))
    )
    with op.batch_alter_table('session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_session_accountUuid'), ['accountUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_session_expiredDate'), ['expiredDate'], unique=False)

    op.create_table('host',
    sa.Column('zoneUuid', sa.String(length=32), nullable=False),
    sa.Column('clusterUuid', sa.String(length=32), nullable=False),
    sa.Column('managementIp', sa.String(length=255), nullable=False),
    sa.Column('hypervisorType', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('architecture', sa.String(length=32), nullable=True),
    sa.Column('cpuNum', sa.Integer(), nullable=False),
    sa.Column('cpuSockets', sa.Integer(), nullable=False),
    sa.Column('totalCpuCapacity', sa.BigInteger(), nullable=False),
    sa.Column('availableCpuCapacity', sa.BigInteger(), nullable=False),
    sa.Column('totalMemoryCapacity', sa.BigInteger(), nullable=False),
    sa.Column('availableMemoryCapacity', sa.BigInteger(), nullable=False),
    sa.Column('totalPhysicalMemory', sa.BigInteger(), nullable=False),
    sa.Column('agentUrl', sa.String(length=1024), nullable=True),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['clusterUuid'], ['cluster.uuid'], name=op.f('fk_host_clusterUuid_cluster')),
    sa.ForeignKeyConstraint(['zoneUuid'], ['zone.uuid'], name=op.f('fk_host_zoneUuid_zone')),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_host'))
    )
    with op.batch_alter_table('host', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_host_clusterUuid'), ['clusterUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_host_hypervisorType'), ['hypervisorType'], unique=False)
        batch_op.create_index(batch_op.f('ix_host_managementIp'), ['managementIp'], unique=False)
        batch_op.create_index(batch_op.f('ix_host_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_host_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_host_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_host_zoneUuid'), ['zoneUuid'], unique=False)

    op.create_table('l2_network_cluster_ref',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('clusterUuid', sa.String(length=32), nullable=False),
    sa.Column('l2NetworkUuid', sa.String(length=32), nullable=False),
    sa.Column('l2ProviderType', sa.String(length=64), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['clusterUuid'], ['cluster.uuid'], name=op.f('fk_l2_network_cluster_ref_clusterUuid_cluster'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['l2NetworkUuid'], ['l2_network.uuid'], name=op.f('fk_l2_network_cluster_ref_l2NetworkUuid_l2_network'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_l2_network_cluster_ref')),
    sa.UniqueConstraint('l2NetworkUuid', 'clusterUuid', name=op.f('uq_l2_network_cluster_ref_l2NetworkUuid_clusterUuid'))
    )
    with op.batch_alter_table('l2_network_cluster_ref', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_l2_network_cluster_ref_clusterUuid'), ['clusterUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_l2_network_cluster_ref_l2NetworkUuid'), ['l2NetworkUuid'], unique=False)

    op.create_table('l3_network',
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('zoneUuid', sa.String(length=32), nullable=False),
    sa.Column('l2NetworkUuid', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('dnsDomain', sa.String(length=255), nullable=True),
    sa.Column('system', sa.Boolean(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('ipVersion', sa.Integer(), nullable=False),
    sa.Column('enableIPAM', sa.Boolean(), nullable=False),
    sa.Column('isolated', sa.Boolean(), nullable=False),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['l2NetworkUuid'], ['l2_network.uuid'], name=op.f('fk_l3_network_l2NetworkUuid_l2_network')),
    sa.ForeignKeyConstraint(['zoneUuid'], ['zone.uuid'], name=op.f('fk_l3_network_zoneUuid_zone')),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_l3_network'))
    )
    with op.batch_alter_table('l3_network', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_l3_network_l2NetworkUuid'), ['l2NetworkUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_l3_network_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_l3_network_zoneUuid'), ['zoneUuid'], unique=False)

    op.create_table('primary_storage_cluster_ref',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('clusterUuid', sa.String(length=32), nullable=False),
    sa.Column('primaryStorageUuid', sa.String(length=32), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['clusterUuid'], ['cluster.uuid'], name=op.f('fk_primary_storage_cluster_ref_clusterUuid_cluster'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['primaryStorageUuid'], ['primary_storage.uuid'], name=op.f('fk_primary_storage_cluster_ref_primaryStorageUuid_primary_storage'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_primary_storage_cluster_ref')),
    sa.UniqueConstraint('clusterUuid', 'primaryStorageUuid', name=op.f('uq_primary_storage_cluster_ref_clusterUuid_primaryStorageUuid'))
    )
    with op.batch_alter_table('primary_storage_cluster_ref', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_primary_storage_cluster_ref_clusterUuid'), ['clusterUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_primary_storage_cluster_ref_primaryStorageUuid'), ['primaryStorageUuid'], unique=False)

    op.create_table('ip_range',
    sa.Column('l3NetworkUuid', sa.String(length=32), nullable=False),
    sa.Column('startIp', sa.String(length=64), nullable=False),
    sa.Column('endIp', sa.String(length=64), nullable=False),
    sa.Column('netmask', sa.String(length=64), nullable=False),
    sa.Column('gateway', sa.String(length=64), nullable=True),
    sa.Column('networkCidr', sa.String(length=64), nullable=False),
    sa.Column('ipVersion', sa.Integer(), nullable=False),
    sa.Column('addressMode', sa.String(length=64), nullable=True),
    sa.Column('prefixLen', sa.Integer(), nullable=False),
    sa.Column('ipRangeType', sa.String(length=32), nullable=False),
    sa.Column('startIpInLong', sa.BigInteger(), nullable=False),
    sa.Column('endIpInLong', sa.BigInteger(), nullable=False),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['l3NetworkUuid'], ['l3_network.uuid'], name=op.f('fk_ip_range_l3NetworkUuid_l3_network')),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_ip_range'))
    )
    with op.batch_alter_table('ip_range', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ip_range_l3NetworkUuid'), ['l3NetworkUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_ip_range_name'), ['name'], unique=False)

    op.create_table('l3_network_dns',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('l3NetworkUuid', sa.String(length=32), nullable=False),
    sa.Column('dns', sa.String(length=255), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['l3NetworkUuid'], ['l3_network.uuid'], name=op.f('fk_l3_network_dns_l3NetworkUuid_l3_network'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_l3_network_dns')),
    sa.UniqueConstraint('l3NetworkUuid', 'dns', name=op.f('uq_l3_network_dns_l3NetworkUuid_dns'))
    )
    with op.batch_alter_table('l3_network_dns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_l3_network_dns_l3NetworkUuid'), ['l3NetworkUuid'], unique=False)

    op.create_table('vm_instance',
    sa.Column('zoneUuid', sa.String(length=32), nullable=True),
    sa.Column('clusterUuid', sa.String(length=32), nullable=True),
    sa.Column('imageUuid', sa.String(length=32), nullable=True),
    sa.Column('hostUuid', sa.String(length=32), nullable=True),
    sa.Column('lastHostUuid', sa.String(length=32), nullable=True),
    sa.Column('instanceOfferingUuid', sa.String(length=32), nullable=True),
    sa.Column('rootVolumeUuid', sa.String(length=32), nullable=True),
    sa.Column('platform', sa.String(length=64), nullable=True),
    sa.Column('architecture', sa.String(length=32), nullable=True),
    sa.Column('defaultL3NetworkUuid', sa.String(length=32), nullable=True),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('hypervisorType', sa.String(length=32), nullable=True),
    sa.Column('memorySize', sa.BigInteger(), nullable=False),
    sa.Column('reservedMemorySize', sa.BigInteger(), nullable=False),
    sa.Column('cpuNum', sa.Integer(), nullable=False),
    sa.Column('cpuSpeed', sa.BigInteger(), nullable=False),
    sa.Column('allocatorStrategy', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('guestOsType', sa.String(length=255), nullable=True),
    sa.Column('internalId', sa.BigInteger(), nullable=False),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['clusterUuid'], ['cluster.uuid'], name=op.f('fk_vm_instance_clusterUuid_cluster'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['hostUuid'], ['host.uuid'], name=op.f('fk_vm_instance_hostUuid_host'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['imageUuid'], ['image.uuid'], name=op.f('fk_vm_instance_imageUuid_image'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['instanceOfferingUuid'], ['instance_offering.uuid'], name=op.f('fk_vm_instance_instanceOfferingUuid_instance_offering'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['lastHostUuid'], ['host.uuid'], name=op.f('fk_vm_instance_lastHostUuid_host'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['zoneUuid'], ['zone.uuid'], name=op.f('fk_vm_instance_zoneUuid_zone'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_vm_instance'))
    )
    with op.batch_alter_table('vm_instance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vm_instance_clusterUuid'), ['clusterUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_instance_hostUuid'), ['hostUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_instance_imageUuid'), ['imageUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_instance_instanceOfferingUuid'), ['instanceOfferingUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_instance_lastHostUuid'), ['lastHostUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_instance_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_instance_rootVolumeUuid'), ['rootVolumeUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_instance_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_instance_zoneUuid'), ['zoneUuid'], unique=False)

    op.create_table('vm_nic',
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('vmInstanceUuid', sa.String(length=32), nullable=True),
    sa.Column('l3NetworkUuid', sa.String(length=32), nullable=False),
    sa.Column('usedIpUuid', sa.String(length=32), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('mac', sa.String(length=17), nullable=False),
    sa.Column('hypervisorType', sa.String(length=32), nullable=True),
    sa.Column('netmask', sa.String(length=64), nullable=True),
    sa.Column('gateway', sa.String(length=64), nullable=True),
    sa.Column('metaData', sa.String(length=255), nullable=True),
    sa.Column('ipVersion', sa.Integer(), nullable=False),
    sa.Column('driverType', sa.String(length=64), nullable=False),
    sa.Column('internalName', sa.String(length=128), nullable=False),
    sa.Column('deviceId', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['l3NetworkUuid'], ['l3_network.uuid'], name=op.f('fk_vm_nic_l3NetworkUuid_l3_network')),
    sa.ForeignKeyConstraint(['vmInstanceUuid'], ['vm_instance.uuid'], name=op.f('fk_vm_nic_vmInstanceUuid_vm_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_vm_nic')),
    sa.UniqueConstraint('mac', name=op.f('uq_vm_nic_mac'))
    )
    with op.batch_alter_table('vm_nic', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vm_nic_ip'), ['ip'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_nic_l3NetworkUuid'), ['l3NetworkUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_nic_usedIpUuid'), ['usedIpUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_nic_vmInstanceUuid'), ['vmInstanceUuid'], unique=False)

    op.create_table('used_ip',
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('ipRangeUuid', sa.String(length=32), nullable=False),
    sa.Column('l3NetworkUuid', sa.String(length=32), nullable=False),
    sa.Column('ipVersion', sa.Integer(), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=False),
    sa.Column('netmask', sa.String(length=64), nullable=False),
    sa.Column('gateway', sa.String(length=64), nullable=True),
    sa.Column('usedFor', sa.String(length=64), nullable=False),
    sa.Column('ipInLong', sa.BigInteger(), nullable=False),
    sa.Column('vmNicUuid', sa.String(length=32), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['ipRangeUuid'], ['ip_range.uuid'], name=op.f('fk_used_ip_ipRangeUuid_ip_range'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['l3NetworkUuid'], ['l3_network.uuid'], name=op.f('fk_used_ip_l3NetworkUuid_l3_network'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['vmNicUuid'], ['vm_nic.uuid'], name=op.f('fk_used_ip_vmNicUuid_vm_nic'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_used_ip')),
    sa.UniqueConstraint('l3NetworkUuid', 'ipInLong', name=op.f('uq_used_ip_l3NetworkUuid_ipInLong'))
    )
    with op.batch_alter_table('used_ip', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_used_ip_ip'), ['ip'], unique=False)
        batch_op.create_index(batch_op.f('ix_used_ip_ipRangeUuid'), ['ipRangeUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_used_ip_l3NetworkUuid'), ['l3NetworkUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_used_ip_vmNicUuid'), ['vmNicUuid'], unique=False)

    op.create_table('volume',
    sa.Column('primaryStorageUuid', sa.String(length=32), nullable=True),
    sa.Column('vmInstanceUuid', sa.String(length=32), nullable=True),
    sa.Column('diskOfferingUuid', sa.String(length=32), nullable=True),
    sa.Column('rootImageUuid', sa.String(length=32), nullable=True),
    sa.Column('installPath', sa.String(length=2048), nullable=True),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('format', sa.String(length=32), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('actualSize', sa.BigInteger(), nullable=False),
    sa.Column('deviceId', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('isShareable', sa.Boolean(), nullable=False),
    sa.Column('volumeQos', sa.String(length=255), nullable=True),
    sa.Column('lastDetachDate', sa.DateTime(), nullable=True),
    sa.Column('lastAttachDate', sa.DateTime(), nullable=True),
    sa.Column('lastVmInstanceUuid', sa.String(length=32), nullable=True),
    sa.Column('protocol', sa.String(length=64), nullable=True),
    sa.Column('hostUuid', sa.String(length=32), nullable=True),
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=2048), nullable=True),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['diskOfferingUuid'], ['disk_offering.uuid'], name=op.f('fk_volume_diskOfferingUuid_disk_offering'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['hostUuid'], ['host.uuid'], name=op.f('fk_volume_hostUuid_host'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['primaryStorageUuid'], ['primary_storage.uuid'], name=op.f('fk_volume_primaryStorageUuid_primary_storage'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['rootImageUuid'], ['image.uuid'], name=op.f('fk_volume_rootImageUuid_image'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['vmInstanceUuid'], ['vm_instance.uuid'], name=op.f('fk_volume_vmInstanceUuid_vm_instance'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_volume'))
    )
    with op.batch_alter_table('volume', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_volume_diskOfferingUuid'), ['diskOfferingUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_volume_hostUuid'), ['hostUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_volume_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_volume_primaryStorageUuid'), ['primaryStorageUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_volume_rootImageUuid'), ['rootImageUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_volume_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_volume_type'), ['type'], unique=False)
        batch_op.create_index(batch_op.f('ix_volume_vmInstanceUuid'), ['vmInstanceUuid'], unique=False)



def downgrade() -> None:
    # Dropping a table drops its indexes (MySQL refuses to drop an index a foreign key still uses).
    op.drop_table('volume')
    op.drop_table('used_ip')
    op.drop_table('vm_nic')
    op.drop_table('vm_instance')
    op.drop_table('l3_network_dns')
    op.drop_table('ip_range')
    op.drop_table('primary_storage_cluster_ref')
    op.drop_table('l3_network')
    op.drop_table('l2_network_cluster_ref')
    op.drop_table('host')
    op.drop_table('session')
    op.drop_table('primary_storage')
    op.drop_table('l2_network')
    op.drop_table('image_backup_storage_ref')
    op.drop_table('cluster')
    op.drop_table('backup_storage_zone_ref')
    op.drop_table('zone')
    op.drop_table('user_tag')
    op.drop_table('system_tag')
    op.drop_table('management_node')
    op.drop_table('instance_offering')
    op.drop_table('image')
    op.drop_table('global_config')
    op.drop_table('disk_offering')
    op.drop_table('backup_storage')
    op.drop_table('api_job')
    op.drop_table('account')
