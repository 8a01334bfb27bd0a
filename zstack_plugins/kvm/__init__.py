"""KVM hosts: AddKVMHost, UpdateKVMHost; the agent deployed with Ansible and kept current.

The KVM agent itself (`kvmagent/`) is part of the core: it serves the agent protocol on a host,
and plugins add their commands to it. This plugin is the MN's side of KVM hosts: their SSH login
and OS facts (kvm_host rows), adding them with a deploy, redeploying an agent that is not current
before a connect, and reconnecting Disconnected ones.
"""

from zstack_plugins import Plugin

PLUGIN = Plugin(
    name="kvm",
    summary="KVM hosts (AddKVMHost, UpdateKVMHost): zstack-kvmagent deployed over SSH with Ansible",
    models=("zstack_plugins.kvm.models",),
    migrations="zstack_plugins.kvm.migrations",
    mn=("zstack_plugins.kvm.host",),
)
