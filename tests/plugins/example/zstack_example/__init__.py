"""A worked example of a plugin (docs/plugins.md): ZStack's VM XML hook scripts, as a toy.

It serves CreateVmUserDefinedXmlHookScript, UpdateVmUserDefinedXmlHookScript,
ExpungeVmUserDefinedXmlHookScript and QueryVmUserDefinedXmlHookScript of ZStack's catalogue. The
toy rule: a script is checked on a host named by the system tag `hostUuid::<uuid>`, by an agent
command of the plugin's own (`/example/xmlhook/validate`, served by the KVM agent and by the
simulator), which reports the host's libvirt version; the script belongs to that host, so
deleting the host deletes it (a cascade relation), and a host that reconnects checks its scripts
again (a hook). Everything is declared here and in the modules named below; nothing in the core
names this plugin.
"""

from zstack_plugins import Plugin

PLUGIN = Plugin(
    name="example",
    summary="example plugin: XML hook scripts checked on a host (tests/plugins/example)",
    protocol=("zstack_example.protocol",),
    models=("zstack_example.models",),
    migrations="zstack_example.migrations",
    mn=("zstack_example.api",),
    kvmagent=("zstack_example.agent",),
    simulator=("zstack_example.simulated",),
)
