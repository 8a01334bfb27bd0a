"""Agent conformance, shared by both agents: every command of kvmagent/protocol.py over real HTTP, as
the MN sends it, against an *agent under test*.

The tests talk to the agent through mn.agent.AgentClient only, and prepare what they need (bridges,
images, volumes) through protocol commands, so the same functions run against the simulator
(integration/test_agent_conformance.py) and the real KVM agent on libvirt
(system_tests/test_agent_conformance_real.py). Each of those modules imports these tests and
provides the `agent` fixture: an AgentUnderTest, which also says how to make test material on
that agent (image URLs, physical interfaces, out-of-band changes) and which checks hold there
(exact capacity accounting holds on the simulator, not on a real file system others write to).
The error fragments the tests look for ("already running", "no VM", "does not exist", "in use",
"insufficient capacity", "already attached", "not attached") are part of the contract.
"""

from __future__ import annotations

import http.server
import json
import queue
import threading
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from integration.agent_keys import signed_client
from kvmagent import protocol as p
from mn.agent import AgentClient
from mn.errors import AGENT_ERROR, ApiError
from simulator.client import SimulatorAdmin

GiB = 2**30
MiB = 2**20
GUEST_TIMEOUT = 5  # stop/reboot timeout the tests give: a guest still booting misses ACPI, then force


def new_uuid() -> str:
    return uuidlib.uuid4().hex


@dataclass
class AgentUnderTest:
    """Where the agent under test serves a host, a second host (for migration; None to skip),
    a primary storage and a backup storage, and how to prepare test material for it."""

    kind: str
    host_uuid: str
    host_url: str
    ps_uuid: str
    ps_url: str
    bs_uuid: str
    bs_url: str
    host2_uuid: str | None = None
    host2_url: str | None = None
    host2_ip: str = "127.0.0.1"  # MigrateVmCmd.destHostIp
    physical_interface: str = "eth0"
    admin: SimulatorAdmin | None = None  # the simulator's admin API; None for a real agent
    fault_ids: list[str] = field(default_factory=list)
    ps_dir: str = "/sim"  # InitPrimaryStorageCmd.url
    bs_dir: str | None = None  # ConnectBackupStorageCmd.url
    exact_capacity: bool = True  # capacities move by exactly what the tests store
    vlan: bool = True  # the host's kernel has 802.1Q (without it, Vlan bridges must fail clearly)
    image_fetch: dict[str, Any] = field(default_factory=dict)  # extra CreateVolumeFromImageCmd fields
    make_image_url: Callable[[int], str] | None = None
    url_policy: dict[str, Any] = field(default_factory=dict)  # DownloadImageCmd's policy fields for image_url()
    make_interface: Callable[[bool], str] | None = None  # a fresh interface (one NoVlan bridge each); on host2?
    wait_guest: Callable[[str], None] | None = None  # until a VM's guest is up (hot-unplug needs it)
    stop_out_of_band: Callable[[str, str], None] | None = None  # (host uuid, vm uuid): stop behind the agent

    def image_url(self, size: int = 64 * MiB) -> str:
        """A URL the backup storage can download, yielding an image of `size` bytes (on the real
        agent the default size gives a bootable guest image)."""
        if self.make_image_url is not None:
            return self.make_image_url(size)
        return f"http://images.example/{new_uuid()}.qcow2?size={size}"

    def interface(self, on_host2: bool = False) -> str:
        return self.make_interface(on_host2) if self.make_interface is not None else self.physical_interface

    def guest_up(self, vm: str) -> None:
        if self.wait_guest is not None:
            self.wait_guest(vm)

    def inject(self, path: str, target: str | None = None, **kw: Any) -> str:
        assert self.admin is not None
        fid = self.admin.inject(path, target, **kw)
        self.fault_ids.append(fid)
        return fid


@pytest.fixture(scope="module", name="client")
def client_fixture() -> AgentClient:
    """The MN's agent client (generous timeout: real guests under TCG are slow)."""
    return signed_client(timeout=120)


def send(client: AgentClient, url: str, cmd: Any, reply_cls: type | None = None, timeout: float | None = None) -> Any:
    return client.send(url, cmd, reply_cls, timeout=timeout)


def refused(client: AgentClient, url: str, cmd: Any, *fragments: str, code: str = AGENT_ERROR) -> ApiError:
    with pytest.raises(ApiError) as info:
        client.send(url, cmd)
    assert info.value.code == code, info.value.details
    for f in fragments:
        assert f in info.value.details, info.value.details
    return info.value


# ---- preparation through the protocol -----------------------------------------------------------

def bridge_cmd(cls: type, a: AgentUnderTest, l2: str, vlan: int | None = None, host: str | None = None,
               iface: str | None = None) -> Any:
    return cls(physicalInterfaceName=iface or a.physical_interface, bridgeName=p.bridge_name(l2, vlan),
               l2NetworkUuid=l2, vlan=vlan, hostUuid=host or a.host_uuid)


def make_bridge(client: AgentClient, a: AgentUnderTest, url: str | None = None, host: str | None = None) -> str:
    l2 = new_uuid()
    send(client, url or a.host_url, bridge_cmd(p.CreateBridgeCmd, a, l2, host=host, iface=a.interface()))
    return p.bridge_name(l2)


def make_image(client: AgentClient, a: AgentUnderTest, size: int = 64 * MiB) -> tuple[str, p.DownloadImageRsp]:
    image = new_uuid()
    r = send(client, a.bs_url, p.DownloadImageCmd(bsUuid=a.bs_uuid, imageUuid=image, url=a.image_url(size), **a.url_policy),
             p.DownloadImageRsp)
    return image, r


def make_volume(client: AgentClient, a: AgentUnderTest, size: int = GiB) -> p.VolumeTO:
    vol = new_uuid()
    r = send(client, a.ps_url, p.CreateEmptyVolumeCmd(psUuid=a.ps_uuid, volumeUuid=vol, size=size), p.VolumeRsp)
    return p.VolumeTO(volumeUuid=vol, installPath=r.installPath, size=r.size)


def make_root(client: AgentClient, a: AgentUnderTest) -> p.VolumeTO:
    image, img = make_image(client, a)
    vol = new_uuid()
    r = send(client, a.ps_url, p.CreateVolumeFromImageCmd(
        psUuid=a.ps_uuid, volumeUuid=vol, imageUuid=image, imageInstallPath=img.installPath,
        backupStorageUuid=a.bs_uuid, size=GiB, **a.image_fetch), p.VolumeRsp)
    return p.VolumeTO(volumeUuid=vol, installPath=r.installPath, size=r.size)


def mac() -> str:
    h = new_uuid()
    return "fa:16:3e:" + ":".join(h[i:i + 2] for i in (0, 2, 4))


def start_vm(client: AgentClient, a: AgentUnderTest, bridge: str, memory: int = 512 * MiB,
             vm: str | None = None) -> tuple[p.StartVmCmd, p.StartVmRsp]:
    cmd = p.StartVmCmd(vmInstanceUuid=vm or new_uuid(), vmName="conformance", cpuNum=1, memory=memory,
                       rootVolume=make_root(client, a), hostUuid=a.host_uuid,
                       nics=[p.NicTO(uuid=new_uuid(), mac=mac(), bridgeName=bridge)])
    return cmd, send(client, a.host_url, cmd, p.StartVmRsp)


def vm_states(client: AgentClient, url: str, host: str) -> dict[str, str]:
    return send(client, url, p.VmSyncCmd(hostUuid=host), p.VmSyncRsp).states


# ---- host ---------------------------------------------------------------------------------------

def test_connect_echo_ping(client: AgentClient, agent: AgentUnderTest) -> None:
    send(client, agent.host_url, p.EchoCmd())
    r = send(client, agent.host_url, p.ConnectCmd(hostUuid=agent.host_uuid, sendCommandUrl="http://127.0.0.1:9/x"),
             p.ConnectRsp)
    assert r.success and r.hostUuid == agent.host_uuid
    assert send(client, agent.host_url, p.PingCmd(hostUuid=agent.host_uuid), p.PingRsp).hostUuid == agent.host_uuid


def test_async_form_with_reply_within_answers_inline(agent: AgentUnderTest) -> None:
    """A quick command in the async form with `replywithin` comes back inline: the callback URL
    here leads nowhere, so a reply that went there instead would make the call time out."""
    inline = signed_client(timeout=20, callback_url=lambda: "http://127.0.0.1:9/agent/callback", reply_within=15)
    image = new_uuid()
    r = inline.send(agent.bs_url, p.DownloadImageCmd(bsUuid=agent.bs_uuid, imageUuid=image,
                                                     url=agent.image_url(MiB), **agent.url_policy), p.DownloadImageRsp)
    assert r.success and r.size >= MiB and inline._waiters == {}
    send(inline, agent.bs_url, p.DeleteImageCmd(bsUuid=agent.bs_uuid, installPath=r.installPath))


def test_facts_and_capacity(client: AgentClient, agent: AgentUnderTest) -> None:
    facts = send(client, agent.host_url, p.HostFactCmd(hostUuid=agent.host_uuid), p.HostFactRsp)
    assert facts.cpuNum > 0 and facts.totalMemory > 0 and facts.architecture == "x86_64" and facts.hostname
    cap = send(client, agent.host_url, p.HostCapacityCmd(hostUuid=agent.host_uuid), p.HostCapacityRsp)
    assert cap.totalMemory == facts.totalMemory and cap.cpuNum == facts.cpuNum and cap.usedMemory >= 0
    bridge = make_bridge(client, agent)
    start_vm(client, agent, bridge, memory=256 * MiB)
    cap2 = send(client, agent.host_url, p.HostCapacityCmd(hostUuid=agent.host_uuid), p.HostCapacityRsp)
    assert cap2.usedMemory == cap.usedMemory + 256 * MiB


# ---- L2 -----------------------------------------------------------------------------------------

def test_bridges(client: AgentClient, agent: AgentUnderTest) -> None:
    l2 = new_uuid()
    plain = bridge_cmd(p.CreateBridgeCmd, agent, l2)
    send(client, agent.host_url, plain)
    send(client, agent.host_url, plain)  # idempotent
    send(client, agent.host_url, bridge_cmd(p.CheckBridgeCmd, agent, l2))
    vlan = bridge_cmd(p.CreateVlanBridgeCmd, agent, l2, vlan=100)
    if agent.vlan:
        send(client, agent.host_url, vlan)
        send(client, agent.host_url, bridge_cmd(p.CheckBridgeCmd, agent, l2, vlan=100))
    else:
        refused(client, agent.host_url, vlan, "VLAN")
    refused(client, agent.host_url, bridge_cmd(p.CreateVlanBridgeCmd, agent, l2, vlan=None), "vlan")
    send(client, agent.host_url, bridge_cmd(p.DeleteBridgeCmd, agent, l2, vlan=100))
    send(client, agent.host_url, bridge_cmd(p.DeleteBridgeCmd, agent, l2))
    refused(client, agent.host_url, bridge_cmd(p.CheckBridgeCmd, agent, l2), "does not exist")
    refused(client, agent.host_url, bridge_cmd(p.CheckBridgeCmd, agent, l2, vlan=100), "does not exist")


# ---- storage ------------------------------------------------------------------------------------

def test_backup_storage(client: AgentClient, agent: AgentUnderTest) -> None:
    cap = send(client, agent.bs_url, p.ConnectBackupStorageCmd(bsUuid=agent.bs_uuid, url=agent.bs_dir), p.CapacityRsp)
    assert 0 < cap.availableCapacity <= cap.totalCapacity
    _, img = make_image(client, agent, 10 * MiB)
    assert img.installPath and img.size == 10 * MiB and img.actualSize == 10 * MiB and len(img.md5Sum) == 32
    after = send(client, agent.bs_url, p.BackupStorageCapacityCmd(bsUuid=agent.bs_uuid), p.CapacityRsp)
    assert after.availableCapacity == cap.availableCapacity - 10 * MiB or not agent.exact_capacity
    refused(client, agent.bs_url, p.DownloadImageCmd(bsUuid=agent.bs_uuid, imageUuid=new_uuid(),
                                                     url=agent.image_url(cap.totalCapacity + 1),
                                                     **agent.url_policy),
            "insufficient capacity")
    delete = p.DeleteImageCmd(bsUuid=agent.bs_uuid, installPath=img.installPath)
    send(client, agent.bs_url, delete)
    send(client, agent.bs_url, delete)  # idempotent
    final = send(client, agent.bs_url, p.BackupStorageCapacityCmd(bsUuid=agent.bs_uuid), p.CapacityRsp)
    assert final.availableCapacity == cap.availableCapacity or not agent.exact_capacity


def test_backup_storage_refuses_hostile_urls(client: AgentClient, agent: AgentUnderTest) -> None:
    """Without the MN's opt-in in the command, local files, the metadata address, loopback and
    other schemes are refused (issue 13: the agent checks again before it fetches)."""
    send(client, agent.bs_url, p.ConnectBackupStorageCmd(bsUuid=agent.bs_uuid, url=agent.bs_dir), p.CapacityRsp)
    for url, why in (("file:///etc/shadow", "no directory is allowed"), ("/etc/shadow", "no directory is allowed"),
                     ("http://169.254.169.254/latest/meta-data/", "metadata"),
                     ("http://127.0.0.1:9/a.qcow2", "loopback"), ("gopher://x/", "scheme")):
        refused(client, agent.bs_url, p.DownloadImageCmd(bsUuid=agent.bs_uuid, imageUuid=new_uuid(), url=url), why)
    refused(client, agent.bs_url, p.DownloadImageCmd(bsUuid=agent.bs_uuid, imageUuid=new_uuid(),
                                                     url="/srv/images/../../etc/shadow",
                                                     allowedFileDirectories=["/srv/images"]), "'..' components")


def test_primary_storage(client: AgentClient, agent: AgentUnderTest) -> None:
    cap = send(client, agent.ps_url, p.InitPrimaryStorageCmd(psUuid=agent.ps_uuid, url=agent.ps_dir), p.CapacityRsp)
    assert 0 < cap.availableCapacity <= cap.totalCapacity
    empty = make_volume(client, agent, 2 * GiB)
    assert empty.installPath and empty.size == 2 * GiB
    image, img = make_image(client, agent, 3 * GiB)
    from_image = send(client, agent.ps_url, p.CreateVolumeFromImageCmd(
        psUuid=agent.ps_uuid, volumeUuid=new_uuid(), imageUuid=image, imageInstallPath=img.installPath,
        backupStorageUuid=agent.bs_uuid, size=GiB, **agent.image_fetch), p.VolumeRsp)
    assert from_image.size == 3 * GiB  # never smaller than the image
    now = send(client, agent.ps_url, p.PrimaryStorageCapacityCmd(psUuid=agent.ps_uuid), p.CapacityRsp)
    assert now.availableCapacity == cap.availableCapacity - 5 * GiB or not agent.exact_capacity
    refused(client, agent.ps_url, p.CreateEmptyVolumeCmd(psUuid=agent.ps_uuid, volumeUuid=new_uuid(),
                                                         size=now.availableCapacity + 1), "insufficient capacity")
    refused(client, agent.ps_url, p.CreateVolumeFromImageCmd(
        psUuid=agent.ps_uuid, volumeUuid=new_uuid(), imageUuid=new_uuid(), imageInstallPath="/no/such/image",
        backupStorageUuid=agent.bs_uuid, **agent.image_fetch), "not found")
    for path in (empty.installPath, from_image.installPath, empty.installPath):  # delete is idempotent
        send(client, agent.ps_url, p.DeleteVolumeCmd(psUuid=agent.ps_uuid, installPath=path))
    final = send(client, agent.ps_url, p.PrimaryStorageCapacityCmd(psUuid=agent.ps_uuid), p.CapacityRsp)
    assert final.availableCapacity == cap.availableCapacity or not agent.exact_capacity


def test_volume_snapshot(client: AgentClient, agent: AgentUnderTest) -> None:
    """A volume no VM runs on is snapshotted in place: same installPath, the snapshot a new file."""
    send(client, agent.ps_url, p.InitPrimaryStorageCmd(psUuid=agent.ps_uuid, url=agent.ps_dir), p.CapacityRsp)
    cmd, _ = start_vm(client, agent, make_bridge(client, agent))
    root = cmd.rootVolume
    snap = p.CreateVolumeSnapshotCmd(psUuid=agent.ps_uuid, volumeUuid=root.volumeUuid, installPath=root.installPath,
                                     snapshotUuid=new_uuid())
    refused(client, agent.ps_url, snap, "in use")
    send(client, agent.host_url, p.DestroyVmCmd(uuid=cmd.vmInstanceUuid))
    r = send(client, agent.ps_url, snap, p.VolumeSnapshotRsp)
    assert r.volumeInstallPath == root.installPath and r.installPath not in (None, root.installPath)
    assert r.size == root.size
    refused(client, agent.ps_url, snap, "already exists")
    refused(client, agent.ps_url, p.CreateVolumeSnapshotCmd(
        psUuid=agent.ps_uuid, volumeUuid=new_uuid(), installPath=root.installPath, snapshotUuid=new_uuid()),
        "not found")
    send(client, agent.ps_url, p.DeleteVolumeCmd(psUuid=agent.ps_uuid, installPath=root.installPath))


# ---- VMs ----------------------------------------------------------------------------------------

def test_vm_lifecycle(client: AgentClient, agent: AgentUnderTest) -> None:
    bridge = make_bridge(client, agent)
    cmd, started = start_vm(client, agent, bridge)
    vm = cmd.vmInstanceUuid
    assert started.success and vm_states(client, agent.host_url, agent.host_uuid)[vm] == p.VM_RUNNING
    port = send(client, agent.host_url, p.GetVncPortCmd(vmUuid=vm), p.GetVncPortRsp).port
    assert port and port == send(client, agent.host_url, p.GetVncPortCmd(vmUuid=vm), p.GetVncPortRsp).port
    refused(client, agent.host_url, cmd, "already running")
    refused(client, agent.host_url, p.ResumeVmCmd(uuid=vm), "Running")
    send(client, agent.host_url, p.RebootVmCmd(uuid=vm, timeout=GUEST_TIMEOUT))
    send(client, agent.host_url, p.PauseVmCmd(uuid=vm))
    assert vm_states(client, agent.host_url, agent.host_uuid)[vm] == p.VM_PAUSED
    refused(client, agent.host_url, p.RebootVmCmd(uuid=vm), "Paused")
    send(client, agent.host_url, p.ResumeVmCmd(uuid=vm))
    send(client, agent.host_url, p.StopVmCmd(uuid=vm, timeout=GUEST_TIMEOUT))
    assert vm not in vm_states(client, agent.host_url, agent.host_uuid)
    send(client, agent.host_url, p.StopVmCmd(uuid=vm, type="cold"))  # idempotent
    refused(client, agent.host_url, p.PauseVmCmd(uuid=vm), "no VM")
    send(client, agent.host_url, cmd)  # start again after a stop
    send(client, agent.host_url, p.DestroyVmCmd(uuid=vm))
    send(client, agent.host_url, p.DestroyVmCmd(uuid=vm))  # idempotent
    assert vm not in vm_states(client, agent.host_url, agent.host_uuid)
    refused(client, agent.host_url, p.GetVncPortCmd(vmUuid=vm), "no VM")


def test_start_needs_real_volumes_and_bridges(client: AgentClient, agent: AgentUnderTest) -> None:
    bridge = make_bridge(client, agent)
    ghost = p.StartVmCmd(vmInstanceUuid=new_uuid(), vmName="ghost", cpuNum=1, memory=256 * MiB,
                         rootVolume=p.VolumeTO(volumeUuid=new_uuid(), installPath="/no/such/volume.qcow2"),
                         nics=[p.NicTO(uuid=new_uuid(), mac=mac(), bridgeName=bridge)])
    refused(client, agent.host_url, ghost, "/no/such/volume.qcow2")
    nobridge = p.StartVmCmd(vmInstanceUuid=new_uuid(), vmName="nobridge", cpuNum=1, memory=256 * MiB,
                            rootVolume=make_root(client, agent),
                            nics=[p.NicTO(uuid=new_uuid(), mac=mac(), bridgeName="br_missing")])
    refused(client, agent.host_url, nobridge, "br_missing")


def test_data_volumes(client: AgentClient, agent: AgentUnderTest) -> None:
    bridge = make_bridge(client, agent)
    cmd, _ = start_vm(client, agent, bridge)
    vm = cmd.vmInstanceUuid
    data = make_volume(client, agent)
    attach = p.AttachDataVolumeCmd(vmUuid=vm, volume=data, hostUuid=agent.host_uuid)
    send(client, agent.host_url, attach)
    refused(client, agent.host_url, attach, "already attached")
    refused(client, agent.host_url, p.AttachDataVolumeCmd(vmUuid=new_uuid(), volume=make_volume(client, agent)),
            "no VM")
    refused(client, agent.ps_url, p.DeleteVolumeCmd(psUuid=agent.ps_uuid, installPath=data.installPath), "in use")
    detach = p.DetachDataVolumeCmd(vmUuid=vm, volume=data, hostUuid=agent.host_uuid)
    agent.guest_up(vm)  # a hot-unplug needs the guest's consent
    send(client, agent.host_url, detach)
    refused(client, agent.host_url, detach, "not attached")
    send(client, agent.ps_url, p.DeleteVolumeCmd(psUuid=agent.ps_uuid, installPath=data.installPath))


def test_nics(client: AgentClient, agent: AgentUnderTest) -> None:
    bridge = make_bridge(client, agent)
    cmd, _ = start_vm(client, agent, bridge)
    vm = cmd.vmInstanceUuid
    nic = p.NicTO(uuid=new_uuid(), mac=mac(), bridgeName=make_bridge(client, agent), deviceId=1)
    send(client, agent.host_url, p.AttachNicCmd(vmUuid=vm, nic=nic))
    refused(client, agent.host_url, p.AttachNicCmd(vmUuid=vm, nic=nic), "already attached")
    refused(client, agent.host_url, p.AttachNicCmd(
        vmUuid=vm, nic=p.NicTO(uuid=new_uuid(), mac=mac(), bridgeName="br_nothere")), "br_nothere")
    agent.guest_up(vm)
    send(client, agent.host_url, p.DetachNicCmd(vmUuid=vm, nic=nic))
    refused(client, agent.host_url, p.DetachNicCmd(vmUuid=vm, nic=nic), "not attached")


def test_migrate(client: AgentClient, agent: AgentUnderTest) -> None:
    assert agent.host2_url is not None, f"the {agent.kind} fixture must provide a second host"
    bridge = make_bridge(client, agent)
    cmd, _ = start_vm(client, agent, bridge, memory=300 * MiB)
    vm = cmd.vmInstanceUuid
    migrate = p.MigrateVmCmd(vmUuid=vm, srcHostUuid=agent.host_uuid, destHostUuid=agent.host2_uuid,
                             destHostIp=agent.host2_ip, destAgentUrl=agent.host2_url)
    refused(client, agent.host_url, migrate, bridge)  # the destination lacks the bridge
    send(client, agent.host2_url, p.CreateBridgeCmd(physicalInterfaceName=agent.interface(on_host2=True),
                                                    bridgeName=bridge, l2NetworkUuid=new_uuid(),
                                                    hostUuid=agent.host2_uuid))
    send(client, agent.host_url, migrate)
    assert vm not in vm_states(client, agent.host_url, agent.host_uuid)
    assert vm_states(client, agent.host2_url, agent.host2_uuid)[vm] == p.VM_RUNNING
    refused(client, agent.host_url, migrate, "no VM")
    cap = send(client, agent.host2_url, p.HostCapacityCmd(hostUuid=agent.host2_uuid), p.HostCapacityRsp)
    assert cap.usedMemory >= 300 * MiB


# ---- events the agent did not cause -------------------------------------------------------------

class _EventSink(http.server.BaseHTTPRequestHandler):
    received: queue.Queue[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.put(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def test_out_of_band_stop_is_reported_to_the_mn(client: AgentClient, agent: AgentUnderTest) -> None:
    a = agent
    assert a.stop_out_of_band is not None, f"the {a.kind} fixture must offer an out-of-band stop"
    sink = type("Sink", (_EventSink,), {"received": queue.Queue()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/events"
        send(client, a.host_url, p.ConnectCmd(hostUuid=a.host_uuid, sendCommandUrl=url))
        cmd, _ = start_vm(client, a, make_bridge(client, a))
        vm = cmd.vmInstanceUuid
        send(client, a.host_url, p.PauseVmCmd(uuid=vm))  # the agent's own changes are not reported
        send(client, a.host_url, p.ResumeVmCmd(uuid=vm))
        a.stop_out_of_band(a.host_uuid, vm)
        event = p.from_wire(p.HostEvent, sink.received.get(timeout=15))
        assert (event.hostUuid, event.type, event.vmUuid, event.state) == (a.host_uuid, "VmStateChanged", vm,
                                                                           p.VM_STOPPED)
        assert vm not in vm_states(client, a.host_url, a.host_uuid)
        assert sink.received.empty()
    finally:
        server.shutdown()
        server.server_close()
