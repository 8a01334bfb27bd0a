"""SFTP backup storage: AddSftpBackupStorage, UpdateSftpBackupStorage, ReconnectSftpBackupStorage.

Images are files in a directory of an SSH host running zstack-kvmagent (deployed as on KVM hosts,
without libvirt); hosts fetch them over SCP with the MN's key (docs/architecture.md, "Agents").
"""

from zstack_plugins import Plugin

PLUGIN = Plugin(
    name="sftp",
    summary="SFTP backup storage: images on an SSH host, fetched by hosts over SCP",
    models=("zstack_plugins.sftp.models",),
    migrations="zstack_plugins.sftp.migrations",
    mn=("zstack_plugins.sftp.backup_storage",),
    kvmagent=("zstack_plugins.sftp.agent",),
)
