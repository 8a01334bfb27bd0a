"""SFTP backup storage: AddSftpBackupStorage, UpdateSftpBackupStorage, ReconnectSftpBackupStorage.

Images are files in a directory of an SSH host running zstack-kvmagent (deployed as on KVM hosts,
without libvirt); hosts fetch them over SSH with a key the storage's agent issues for that one
transfer, never the MN's own (docs/security.md, "Credentials for image transfer").
"""

from zstack_plugins import Plugin

PLUGIN = Plugin(
    name="sftp",
    summary="SFTP backup storage: images on an SSH host, fetched by hosts over SSH with per-transfer keys",
    protocol=("zstack_plugins.sftp.protocol",),
    models=("zstack_plugins.sftp.models",),
    migrations="zstack_plugins.sftp.migrations",
    mn=("zstack_plugins.sftp.backup_storage",),
    kvmagent=("zstack_plugins.sftp.agent",),
    simulator=("zstack_plugins.sftp.simulated",),
)
