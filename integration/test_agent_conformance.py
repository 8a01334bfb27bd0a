"""Agent conformance: every command of kvmagent/protocol.py over real HTTP, as the MN sends it.

The tests talk to an *agent under test* through mn.agent.AgentClient only, and prepare what they
need (bridges, images, volumes) through protocol commands, so the same functions can run against
the real KVM agent: add a parameter to the `agent` fixture that builds an AgentUnderTest for it.
Today the only parameter is the simulator. Tests that need the simulator's admin API (fault
injection, out-of-band changes) take `sim_agent`, which skips for agents without one.
The error fragments the tests look for ("already running", "no VM", "does not exist", "in use",
"insufficient capacity", "already attached", "not attached") are part of the contract.
"""

from __future__ import annotations

import http.server
import inspect
import json
import queue
import socket
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kvmagent import protocol as p
from mn.agent import AgentClient
from mn.errors import AGENT_ERROR, AGENT_UNREACHABLE, TIMEOUT, ApiError
from simulator.client import SimulatorAdmin, SimulatorAdminError

GiB = 2**30
MiB = 2**20


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
    physical_interface: str = "eth0"
    admin: SimulatorAdmin | None = None  # the simulator's admin API; None for a real agent
    fault_ids: list[str] = field(default_factory=list)

    def image_url(self, size: int = 64 * MiB) -> str:
        """A URL the backup storage can download, yielding an image of `size` bytes."""
        return f"http://images.example/{new_uuid()}.qcow2?size={size}"

    def inject(self, path: str, target: str | None = None, **kw: Any) -> str:
        assert self.admin is not None
        fid = self.admin.inject(path, target, **kw)
        self.fault_ids.append(fid)
        return fid


def _simulator_agent(sim: Any) -> Iterator[AgentUnderTest]:
    admin = SimulatorAdmin(sim.url)
    h1, h2, ps, bs = new_uuid(), new_uuid(), new_uuid(), new_uuid()
    admin.add_host(h1, cpu_num=8, memory=16 * GiB)
    admin.add_host(h2, cpu_num=8, memory=16 * GiB)
    admin.add_primary_storage(ps, 100 * GiB, 100 * GiB)
    admin.add_backup_storage(bs, 100 * GiB, 100 * GiB)
    a = AgentUnderTest("simulator", h1, admin.host_url(h1), ps, admin.primary_storage_url(ps), bs,
                       admin.backup_storage_url(bs), h2, admin.host_url(h2), admin=admin)
    yield a
    for fid in a.fault_ids:
        try:
            admin.remove_fault(fid)
        except SimulatorAdminError:
            pass  # consumed
    admin.remove_host(h1)
    admin.remove_host(h2)
    admin.remove_primary_storage(ps)
    admin.remove_backup_storage(bs)


@pytest.fixture(params=["simulator"])
def agent(request: pytest.FixtureRequest) -> Iterator[AgentUnderTest]:
    """The agent under test, with a fresh host, second host, primary and backup storage."""
    if request.param == "simulator":
        yield from _simulator_agent(request.getfixturevalue("sim"))
    else:  # pragma: no cover - the real KVM agent joins here
        raise ValueError(request.param)


@pytest.fixture
def sim_agent(agent: AgentUnderTest) -> AgentUnderTest:
    if agent.admin is None:
        pytest.skip("needs the simulator's admin API")
    return agent


@pytest.fixture(scope="module")
def client() -> AgentClient:
    return AgentClient(timeout=10)


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

def bridge_cmd(cls: type, a: AgentUnderTest, l2: str, vlan: int | None = None, host: str | None = None) -> Any:
    return cls(physicalInterfaceName=a.physical_interface, bridgeName=p.bridge_name(l2, vlan), l2NetworkUuid=l2,
               vlan=vlan, hostUuid=host or a.host_uuid)


def make_bridge(client: AgentClient, a: AgentUnderTest, url: str | None = None, host: str | None = None) -> str:
    l2 = new_uuid()
    send(client, url or a.host_url, bridge_cmd(p.CreateBridgeCmd, a, l2, host=host))
    return p.bridge_name(l2)


def make_image(client: AgentClient, a: AgentUnderTest, size: int = 64 * MiB) -> tuple[str, p.DownloadImageRsp]:
    image = new_uuid()
    r = send(client, a.bs_url, p.DownloadImageCmd(bsUuid=a.bs_uuid, imageUuid=image, url=a.image_url(size)),
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
        backupStorageUuid=a.bs_uuid, size=GiB), p.VolumeRsp)
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
    send(client, agent.host_url, vlan)
    send(client, agent.host_url, bridge_cmd(p.CheckBridgeCmd, agent, l2, vlan=100))
    refused(client, agent.host_url, bridge_cmd(p.CreateVlanBridgeCmd, agent, l2, vlan=None), "vlan")
    send(client, agent.host_url, bridge_cmd(p.DeleteBridgeCmd, agent, l2, vlan=100))
    send(client, agent.host_url, bridge_cmd(p.DeleteBridgeCmd, agent, l2))
    refused(client, agent.host_url, bridge_cmd(p.CheckBridgeCmd, agent, l2), "does not exist")
    refused(client, agent.host_url, bridge_cmd(p.CheckBridgeCmd, agent, l2, vlan=100), "does not exist")


# ---- storage ------------------------------------------------------------------------------------

def test_backup_storage(client: AgentClient, agent: AgentUnderTest) -> None:
    cap = send(client, agent.bs_url, p.ConnectBackupStorageCmd(bsUuid=agent.bs_uuid), p.CapacityRsp)
    assert 0 < cap.availableCapacity <= cap.totalCapacity
    _, img = make_image(client, agent, 10 * MiB)
    assert img.installPath and img.size == 10 * MiB and img.actualSize == 10 * MiB and len(img.md5Sum) == 32
    after = send(client, agent.bs_url, p.BackupStorageCapacityCmd(bsUuid=agent.bs_uuid), p.CapacityRsp)
    assert after.availableCapacity == cap.availableCapacity - 10 * MiB
    refused(client, agent.bs_url, p.DownloadImageCmd(bsUuid=agent.bs_uuid, imageUuid=new_uuid(),
                                                     url=agent.image_url(cap.totalCapacity + 1)),
            "insufficient capacity")
    delete = p.DeleteImageCmd(bsUuid=agent.bs_uuid, installPath=img.installPath)
    send(client, agent.bs_url, delete)
    send(client, agent.bs_url, delete)  # idempotent
    final = send(client, agent.bs_url, p.BackupStorageCapacityCmd(bsUuid=agent.bs_uuid), p.CapacityRsp)
    assert final.availableCapacity == cap.availableCapacity


def test_primary_storage(client: AgentClient, agent: AgentUnderTest) -> None:
    cap = send(client, agent.ps_url, p.InitPrimaryStorageCmd(psUuid=agent.ps_uuid, url="/sim"), p.CapacityRsp)
    assert 0 < cap.availableCapacity <= cap.totalCapacity
    empty = make_volume(client, agent, 2 * GiB)
    assert empty.installPath and empty.size == 2 * GiB
    image, img = make_image(client, agent, 3 * GiB)
    from_image = send(client, agent.ps_url, p.CreateVolumeFromImageCmd(
        psUuid=agent.ps_uuid, volumeUuid=new_uuid(), imageUuid=image, imageInstallPath=img.installPath,
        backupStorageUuid=agent.bs_uuid, size=GiB), p.VolumeRsp)
    assert from_image.size == 3 * GiB  # never smaller than the image
    now = send(client, agent.ps_url, p.PrimaryStorageCapacityCmd(psUuid=agent.ps_uuid), p.CapacityRsp)
    assert now.availableCapacity == cap.availableCapacity - 5 * GiB
    refused(client, agent.ps_url, p.CreateEmptyVolumeCmd(psUuid=agent.ps_uuid, volumeUuid=new_uuid(),
                                                         size=now.availableCapacity + 1), "insufficient capacity")
    refused(client, agent.ps_url, p.CreateVolumeFromImageCmd(
        psUuid=agent.ps_uuid, volumeUuid=new_uuid(), imageUuid=new_uuid(), imageInstallPath="/no/such/image",
        backupStorageUuid=agent.bs_uuid), "not found")
    for path in (empty.installPath, from_image.installPath, empty.installPath):  # delete is idempotent
        send(client, agent.ps_url, p.DeleteVolumeCmd(psUuid=agent.ps_uuid, installPath=path))
    final = send(client, agent.ps_url, p.PrimaryStorageCapacityCmd(psUuid=agent.ps_uuid), p.CapacityRsp)
    assert final.availableCapacity == cap.availableCapacity


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
    send(client, agent.host_url, p.RebootVmCmd(uuid=vm))
    send(client, agent.host_url, p.PauseVmCmd(uuid=vm))
    assert vm_states(client, agent.host_url, agent.host_uuid)[vm] == p.VM_PAUSED
    refused(client, agent.host_url, p.RebootVmCmd(uuid=vm), "Paused")
    send(client, agent.host_url, p.ResumeVmCmd(uuid=vm))
    send(client, agent.host_url, p.StopVmCmd(uuid=vm))
    assert vm not in vm_states(client, agent.host_url, agent.host_uuid)
    send(client, agent.host_url, p.StopVmCmd(uuid=vm))  # idempotent
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
    send(client, agent.host_url, p.DetachNicCmd(vmUuid=vm, nic=nic))
    refused(client, agent.host_url, p.DetachNicCmd(vmUuid=vm, nic=nic), "not attached")


def test_migrate(client: AgentClient, agent: AgentUnderTest) -> None:
    if agent.host2_url is None:
        pytest.skip("needs a second host")
    bridge = make_bridge(client, agent)
    cmd, _ = start_vm(client, agent, bridge, memory=300 * MiB)
    vm = cmd.vmInstanceUuid
    migrate = p.MigrateVmCmd(vmUuid=vm, srcHostUuid=agent.host_uuid, destHostUuid=agent.host2_uuid,
                             destHostIp="127.0.0.1", destAgentUrl=agent.host2_url)
    refused(client, agent.host_url, migrate, bridge)  # the destination lacks the bridge
    send(client, agent.host2_url, p.CreateBridgeCmd(physicalInterfaceName=agent.physical_interface,
                                                    bridgeName=bridge, l2NetworkUuid=new_uuid(),
                                                    hostUuid=agent.host2_uuid))
    send(client, agent.host_url, migrate)
    assert vm not in vm_states(client, agent.host_url, agent.host_uuid)
    assert vm_states(client, agent.host2_url, agent.host2_uuid)[vm] == p.VM_RUNNING
    refused(client, agent.host_url, migrate, "no VM")
    cap = send(client, agent.host2_url, p.HostCapacityCmd(hostUuid=agent.host2_uuid), p.HostCapacityRsp)
    assert cap.usedMemory >= 300 * MiB


# ---- simulator specifics: unknown targets, faults, out-of-band events ---------------------------

def test_misaddressed_commands_fail(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    """The URL names the target, so a command naming another one is an MN bug."""
    a = sim_agent
    other = new_uuid()
    refused(client, a.host_url, p.ConnectCmd(hostUuid=other), f"for host {other} was sent to simulated host")
    refused(client, a.ps_url, p.PrimaryStorageCapacityCmd(psUuid=other), "sent to simulated primary storage")
    refused(client, a.bs_url, p.BackupStorageCapacityCmd(bsUuid=other), "sent to simulated backup storage")
    refused(client, a.host_url, p.DeleteVolumeCmd(psUuid=a.ps_uuid, installPath="/x"), "not a command")


def test_unknown_targets_fail_clearly(client: AgentClient, sim_agent: AgentUnderTest, sim: Any) -> None:
    ghost = new_uuid()
    refused(client, sim.host_url(ghost), p.PingCmd(hostUuid=ghost), f"no simulated host {ghost}")
    refused(client, sim.primary_storage_url(ghost), p.PrimaryStorageCapacityCmd(psUuid=ghost),
            f"no simulated primary storage {ghost}")
    refused(client, sim.backup_storage_url(ghost), p.BackupStorageCapacityCmd(bsUuid=ghost),
            f"no simulated backup storage {ghost}")


def test_unreachable_agent(client: AgentClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ApiError) as info:
        client.send(f"http://127.0.0.1:{port}/hosts/x", p.EchoCmd(), timeout=2)
    assert info.value.code == AGENT_UNREACHABLE


def test_fault_fail(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    a = sim_agent
    a.inject("/host/echo", a.host_uuid, message="the disk is on fire")
    refused(client, a.host_url, p.EchoCmd(), "the disk is on fire")
    send(client, a.host_url, p.EchoCmd())


def test_fault_error_is_not_json(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    a = sim_agent
    a.inject("/host/facts", a.host_uuid, mode="error")
    refused(client, a.host_url, p.HostFactCmd(hostUuid=a.host_uuid), "HTTP 500", "not JSON")


def test_fault_timeout(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    a = sim_agent
    a.inject("/host/ping", a.host_uuid, mode="timeout", delay=1.0)
    t0 = time.monotonic()
    with pytest.raises(ApiError) as info:
        client.send(a.host_url, p.PingCmd(hostUuid=a.host_uuid), timeout=0.3)
    assert info.value.code == TIMEOUT and time.monotonic() - t0 < 1.0
    # a client that waits long enough sees the failure the timed-out command finally answers
    a.inject("/host/ping", a.host_uuid, mode="timeout", delay=0.2)
    refused(client, a.host_url, p.PingCmd(hostUuid=a.host_uuid), "simulated timeout")


def test_fault_slow_then_success(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    a = sim_agent
    a.inject("/host/capacity", a.host_uuid, mode="slow", delay=0.3)
    t0 = time.monotonic()
    r = send(client, a.host_url, p.HostCapacityCmd(hostUuid=a.host_uuid), p.HostCapacityRsp)
    assert r.success and time.monotonic() - t0 >= 0.3


def test_fault_count_and_prefix(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    a = sim_agent
    a.inject("/network/*", a.host_uuid, count=2)
    l2 = new_uuid()
    refused(client, a.host_url, bridge_cmd(p.CreateBridgeCmd, a, l2), "simulated failure")
    refused(client, a.host_url, bridge_cmd(p.CheckBridgeCmd, a, l2), "simulated failure")
    send(client, a.host_url, bridge_cmd(p.CreateBridgeCmd, a, l2))
    fid = a.inject("/host/echo", a.host_uuid, count=-1)
    for _ in range(3):
        refused(client, a.host_url, p.EchoCmd())
    assert a.admin is not None
    assert [f["hits"] for f in a.admin.faults() if f["id"] == fid] == [3]
    a.admin.remove_fault(fid)
    send(client, a.host_url, p.EchoCmd())


def test_fault_target(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    a = sim_agent
    assert a.host2_url is not None
    a.inject("/host/echo", a.host2_uuid)
    send(client, a.host_url, p.EchoCmd())  # another host is not hit
    refused(client, a.host2_url, p.EchoCmd(), "simulated failure")
    a.inject("/primarystorage/capacity", None)  # None: any target
    refused(client, a.ps_url, p.PrimaryStorageCapacityCmd(psUuid=a.ps_uuid), "simulated failure")
    a.inject("/backupstorage/image/download", a.bs_uuid)
    refused(client, a.bs_url, p.DownloadImageCmd(bsUuid=a.bs_uuid, imageUuid=new_uuid(), url=a.image_url()))


def test_fault_on_vm_start_leaves_nothing_behind(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    a = sim_agent
    bridge = make_bridge(client, a)
    a.inject("/vm/start", a.host_uuid)
    with pytest.raises(ApiError):
        start_vm(client, a, bridge)
    assert vm_states(client, a.host_url, a.host_uuid) == {}


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


def test_out_of_band_stop_is_reported_to_the_mn(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    a = sim_agent
    assert a.admin is not None
    sink = type("Sink", (_EventSink,), {"received": queue.Queue()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/events"
        send(client, a.host_url, p.ConnectCmd(hostUuid=a.host_uuid, sendCommandUrl=url))
        cmd, _ = start_vm(client, a, make_bridge(client, a))
        vm = cmd.vmInstanceUuid
        assert a.admin.set_vm_state(a.host_uuid, vm, p.VM_STOPPED) is True
        event = p.from_wire(p.HostEvent, sink.received.get(timeout=5))
        assert (event.hostUuid, event.type, event.vmUuid, event.state) == (a.host_uuid, "VmStateChanged", vm,
                                                                           p.VM_STOPPED)
        assert vm not in vm_states(client, a.host_url, a.host_uuid)
    finally:
        server.shutdown()
        server.server_close()


def test_admin_views_and_errors(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    a = sim_agent
    assert a.admin is not None
    cmd, _ = start_vm(client, a, make_bridge(client, a), memory=128 * MiB)
    h = a.admin.host(a.host_uuid)
    vm = h["vms"][cmd.vmInstanceUuid]
    assert vm["state"] == p.VM_RUNNING and vm["memory"] == 128 * MiB and len(vm["volumes"]) == 1
    assert h["usedMemory"] == 128 * MiB and len(h["bridges"]) == 1 and h["cpuNum"] == 8
    ps = a.admin.primary_storage(a.ps_uuid)
    assert ps["volumes"][cmd.rootVolume.installPath]["volumeUuid"] == cmd.rootVolume.volumeUuid
    assert len(a.admin.backup_storage(a.bs_uuid)["images"]) == 1
    stats = a.admin.stats()
    assert stats["hosts"] >= 2 and stats["vms"] >= 1 and stats["calls"]["/vm/start"] >= 1
    assert a.admin.host_count() >= 2
    with pytest.raises(SimulatorAdminError) as info:
        a.admin.host(new_uuid())
    assert info.value.status == 404
    with pytest.raises(SimulatorAdminError) as info:
        a.admin.inject("/vm/nonsense")
    assert info.value.status == 400
    with pytest.raises(SimulatorAdminError) as info:
        a.admin.set_vm_state(a.host_uuid, new_uuid(), p.VM_STOPPED)
    assert info.value.status == 404


def test_every_protocol_command_is_exercised() -> None:
    """Each command class of protocol.COMMANDS appears in this module's tests."""
    source = inspect.getsource(sys.modules[__name__])
    missing = [cls.__name__ for cls in p.COMMANDS.values() if f"p.{cls.__name__}(" not in source
               and f"p.{cls.__name__}," not in source]
    assert missing == []
