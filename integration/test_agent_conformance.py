"""Agent conformance against the simulator: the shared suite (integration/agent_conformance.py),
plus what only the simulator has (fault injection, its admin API, misaddressed targets).

The `agent` fixture builds an AgentUnderTest on the session's simulator: two fresh hosts, a
primary and a backup storage. Tests that need the simulator's admin API take `sim_agent`.
"""

from __future__ import annotations

import inspect
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from integration import agent_conformance as shared
from integration.agent_conformance import (  # noqa: F401 - the shared tests and fixtures, collected here
    AgentUnderTest,
    GiB,
    MiB,
    bridge_cmd,
    client_fixture,
    make_bridge,
    new_uuid,
    refused,
    send,
    start_vm,
    test_async_form_with_reply_within_answers_inline,
    test_backup_storage,
    test_backup_storage_refuses_hostile_urls,
    test_bridges,
    test_connect_echo_ping,
    test_data_volumes,
    test_facts_and_capacity,
    test_migrate,
    test_nics,
    test_out_of_band_stop_is_reported_to_the_mn,
    test_primary_storage,
    test_start_needs_real_volumes_and_bridges,
    test_vm_lifecycle,
    test_volume_snapshot,
    vm_states,
)
from kvmagent import protocol as p
from mn.agent import AgentClient
from mn.errors import AGENT_UNREACHABLE, TIMEOUT, ApiError
from simulator.client import SimulatorAdmin, SimulatorAdminError
from zstack_plugins.eip import protocol as eipp
from zstack_plugins.sftp import protocol as sftpp


def _simulator_agent(sim: Any) -> Iterator[AgentUnderTest]:
    admin = SimulatorAdmin(sim.url)
    h1, h2, ps, bs = new_uuid(), new_uuid(), new_uuid(), new_uuid()
    admin.add_host(h1, cpu_num=8, memory=16 * GiB)
    admin.add_host(h2, cpu_num=8, memory=16 * GiB)
    admin.add_primary_storage(ps, 100 * GiB, 100 * GiB)
    admin.add_backup_storage(bs, 100 * GiB, 100 * GiB)

    def stop_out_of_band(host: str, vm: str) -> None:
        assert admin.set_vm_state(host, vm, p.VM_STOPPED) is True

    a = AgentUnderTest("simulator", h1, admin.host_url(h1), ps, admin.primary_storage_url(ps), bs,
                       admin.backup_storage_url(bs), h2, admin.host_url(h2), admin=admin,
                       stop_out_of_band=stop_out_of_band)
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


@pytest.fixture
def agent(sim: Any) -> Iterator[AgentUnderTest]:
    """The simulator as the agent under test, with a fresh host, second host, primary and backup storage."""
    yield from _simulator_agent(sim)


@pytest.fixture
def sim_agent(agent: AgentUnderTest) -> AgentUnderTest:
    return agent


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


def test_a_simulated_storage_issues_no_transfer_keys(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    """SFTP transfer keys (zstack_plugins/sftp/protocol.py) exist on real SFTP storages only
    (system_tests/test_agent_storage_net.py); revoking is idempotent everywhere."""
    a = sim_agent
    refused(client, a.bs_url, sftpp.IssueTransferKeyCmd(bsUuid=a.bs_uuid, username="u", installPath="/x"),
            "issues no transfer keys")
    send(client, a.bs_url, sftpp.RevokeTransferKeyCmd(bsUuid=a.bs_uuid, username="u", keyId="ab"))


def test_every_protocol_command_is_exercised() -> None:
    """Each command class of protocol.COMMANDS appears in the conformance tests (shared or here)."""
    source = inspect.getsource(sys.modules[__name__]) + inspect.getsource(shared)
    missing = [cls.__name__ for cls in p.COMMANDS.values()
               if not any(f"{mod}.{cls.__name__}{end}" in source for mod in ("p", "eipp", "sftpp")
                          for end in ("(", ","))]
    assert missing == []


# ---- flat network EIP (the real agent's iptables rules are checked in system_tests/test_eip_agent.py) ----

def test_eips_apply_and_delete(client: AgentClient, sim_agent: AgentUnderTest) -> None:
    a = sim_agent
    guest, public = make_bridge(client, a), make_bridge(client, a)
    e = eipp.EipTO(eipUuid=new_uuid(), vip="192.0.2.10", guestIp="10.0.0.5", nicMac="fa:16:3e:00:00:01",
                guestBridgeName=guest, vipBridgeName=public)
    send(client, a.host_url, eipp.ApplyEipCmd(eips=[e], hostUuid=a.host_uuid))
    send(client, a.host_url, eipp.ApplyEipCmd(eips=[e], hostUuid=a.host_uuid))  # idempotent
    assert a.admin.host(a.host_uuid)["eips"] == {"192.0.2.10": p.to_wire(e)}
    other = eipp.EipTO(**{**p.to_wire(e), "eipUuid": new_uuid()})
    refused(client, a.host_url, eipp.ApplyEipCmd(eips=[other], hostUuid=a.host_uuid), "already applied")
    refused(client, a.host_url, eipp.DeleteEipCmd(eips=[other], hostUuid=a.host_uuid), "is applied for EIP")
    bad = eipp.EipTO(**{**p.to_wire(other), "vip": "192.0.2.11", "guestBridgeName": "br_nothere"})
    refused(client, a.host_url, eipp.ApplyEipCmd(eips=[bad], hostUuid=a.host_uuid), "does not exist")
    refused(client, a.host_url, eipp.ApplyEipCmd(eips=[eipp.EipTO(**{**p.to_wire(bad), "guestBridgeName": guest,
                                                                  "vip": "nope"})], hostUuid=a.host_uuid),
            "not an IPv4 address")
    send(client, a.host_url, eipp.DeleteEipCmd(eips=[e], hostUuid=a.host_uuid))
    send(client, a.host_url, eipp.DeleteEipCmd(eips=[e], hostUuid=a.host_uuid))  # idempotent
    assert a.admin.host(a.host_uuid)["eips"] == {}
