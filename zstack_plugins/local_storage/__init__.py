"""Local primary storage: AddLocalPrimaryStorage, GetLocalStorageHostDiskCapacity.

Volumes are qcow2 files in a directory of each host of the attached clusters; a volume stays on
the host it was created on, so the host allocator pins its VM there.
"""

from zstack_plugins import Plugin

PLUGIN = Plugin(
    name="local_storage",
    summary="local primary storage: volumes as qcow2 files on each host, VMs pinned to their volumes' host",
    models=("zstack_plugins.local_storage.models",),
    migrations="zstack_plugins.local_storage.migrations",
    mn=("zstack_plugins.local_storage.primary_storage",),
    kvmagent=("zstack_plugins.local_storage.agent",),
)
