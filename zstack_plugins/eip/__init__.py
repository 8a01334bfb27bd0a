"""Flat network VIPs and EIPs: CreateVip, CreateEip, AttachEip, ... on the hosts' iptables.

A VIP holds one IP of a (public) L3 network; an EIP maps it to a guest NIC, NATed on the VM's
host while the VM runs there (docs/architecture.md, "VIPs and EIPs").
"""

from zstack_plugins import Plugin

PLUGIN = Plugin(
    name="eip",
    summary="flat network VIPs and EIPs (VIP and EIP APIs, NAT on the VM's host)",
    protocol=("zstack_plugins.eip.protocol",),
    models=("zstack_plugins.eip.models",),
    migrations="zstack_plugins.eip.migrations",
    mn=("zstack_plugins.eip.host", "zstack_plugins.eip.vip", "zstack_plugins.eip.eip"),
    kvmagent=("zstack_plugins.eip.agent",),
    simulator=("zstack_plugins.eip.simulated",),
)
