"""The simulator's state model, driven through simulator.dispatch.run_command (no HTTP)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kvmagent import protocol as p
from simulator.dispatch import BACKUP, HOSTS, PRIMARY, run_command
from simulator.model import SimError, vnc_port
from simulator.state import SimState
from simulator.storage import DEFAULT_IMAGE_SIZE

GiB = 2**30


def run(state: SimState, kind: str, uuid: str, cmd: Any) -> dict[str, Any]:
    return run_command(state, kind, uuid, cmd.PATH, p.to_wire(cmd))


def ok(state: SimState, kind: str, uuid: str, cmd: Any) -> dict[str, Any]:
    reply = run(state, kind, uuid, cmd)
    assert reply["success"], reply["error"]
    return reply


def fails(state: SimState, kind: str, uuid: str, cmd: Any, *fragments: str) -> str:
    reply = run(state, kind, uuid, cmd)
    assert reply["success"] is False, reply
    for f in fragments:
        assert f in reply["error"], reply["error"]
    return reply["error"]


class RecordingEvents:
    def __init__(self) -> None:
        self.posted: list[tuple[str, dict[str, Any]]] = []

    def post(self, url: str, event: dict[str, Any], key: bytes | None = None, sender: str = "") -> bool:
        self.posted.append((url, event))
        return True


@pytest.fixture
def state() -> SimState:
    s = SimState()
    s.put_host("h1", cpu_num=4, memory=8 * GiB)
    s.put_host("h2", cpu_num=4, memory=8 * GiB)
    s.put_primary_storage("ps1", total=100 * GiB)
    s.put_backup_storage("bs1", total=100 * GiB)
    for h in ("h1", "h2"):
        ok(s, HOSTS, h, p.CreateBridgeCmd(physicalInterfaceName="eth0", bridgeName="br_l2a", l2NetworkUuid="l2a"))
    return s


def volume(state: SimState, vol_uuid: str, size: int = GiB) -> p.VolumeTO:
    r = ok(state, PRIMARY, "ps1", p.CreateEmptyVolumeCmd(psUuid="ps1", volumeUuid=vol_uuid, size=size))
    return p.VolumeTO(volumeUuid=vol_uuid, installPath=r["installPath"], size=size)


def nic(uuid: str = "nic1", mac: str = "fa:16:3e:00:00:01", bridge: str = "br_l2a") -> p.NicTO:
    return p.NicTO(uuid=uuid, mac=mac, bridgeName=bridge)


def start_cmd(state: SimState, vm: str, memory: int = GiB, nics: list[p.NicTO] | None = None,
              root: p.VolumeTO | None = None) -> p.StartVmCmd:
    return p.StartVmCmd(vmInstanceUuid=vm, vmName=f"name-{vm}", cpuNum=1, memory=memory,
                        rootVolume=root or volume(state, f"root-{vm}"), nics=nics if nics is not None else [nic()])


# ---- hosts ------------------------------------------------------------------------------------

def test_put_host_creates_then_updates_keeping_vms(state: SimState) -> None:
    ok(state, HOSTS, "h1", start_cmd(state, "vm1"))
    h = state.put_host("h1", cpu_num=16, management_ip="10.0.0.5")
    assert (h.cpu_num, h.memory, h.management_ip) == (16, 8 * GiB, "10.0.0.5")
    assert "vm1" in h.vms


def test_facts_and_capacity_report_the_host(state: SimState) -> None:
    facts = ok(state, HOSTS, "h1", p.HostFactCmd(hostUuid="h1"))
    assert facts["hypervisorType"] == "Simulator" and facts["architecture"] == "x86_64"
    assert (facts["cpuNum"], facts["totalMemory"]) == (4, 8 * GiB) and facts["hostname"]
    ok(state, HOSTS, "h1", start_cmd(state, "vm1", memory=2 * GiB))
    cap = ok(state, HOSTS, "h1", p.HostCapacityCmd(hostUuid="h1"))
    assert (cap["totalMemory"], cap["usedMemory"], cap["cpuNum"]) == (8 * GiB, 2 * GiB, 4)


def test_ping_answers_the_connected_uuid_only(state: SimState) -> None:
    assert ok(state, HOSTS, "h1", p.PingCmd(hostUuid="h1"))["hostUuid"] is None
    ok(state, HOSTS, "h1", p.ConnectCmd(hostUuid="h1", sendCommandUrl="http://mn/events"))
    assert state.hosts["h1"].send_command_url == "http://mn/events"
    assert ok(state, HOSTS, "h1", p.PingCmd(hostUuid="h1"))["hostUuid"] == "h1"
    # a ping meant for another host still answers, with this host's uuid, so the MN can tell
    assert ok(state, HOSTS, "h1", p.PingCmd(hostUuid="other"))["hostUuid"] == "h1"
    state.restart_agent("h1")
    assert ok(state, HOSTS, "h1", p.PingCmd(hostUuid="h1"))["hostUuid"] is None


def test_unknown_target_and_misaddressed_commands_fail(state: SimState) -> None:
    fails(state, HOSTS, "nope", p.EchoCmd(), "no simulated host nope")
    fails(state, PRIMARY, "nope", p.PrimaryStorageCapacityCmd(psUuid="nope"), "no simulated primary storage nope")
    fails(state, BACKUP, "nope", p.BackupStorageCapacityCmd(bsUuid="nope"), "no simulated backup storage nope")
    fails(state, HOSTS, "h1", p.ConnectCmd(hostUuid="h2"), "for host h2 was sent to simulated host h1")
    fails(state, PRIMARY, "ps1", p.PrimaryStorageCapacityCmd(psUuid="ps2"), "ps2")
    assert "not a command" in run_command(state, HOSTS, "h1", "/primarystorage/init", {"psUuid": "x"})["error"]


def test_commands_are_validated_against_the_protocol(state: SimState) -> None:
    r = run_command(state, HOSTS, "h1", p.PingCmd.PATH, {})
    assert "missing required field hostUuid" in r["error"]
    body = p.to_wire(start_cmd(state, "vm1"))
    body["memory"] = "1024"
    assert "field memory must be int" in run_command(state, HOSTS, "h1", p.StartVmCmd.PATH, body)["error"]
    body["memory"] = True
    assert "field memory must be int" in run_command(state, HOSTS, "h1", p.StartVmCmd.PATH, body)["error"]
    body["memory"] = GiB
    del body["rootVolume"]["installPath"]
    assert "rootVolume: missing required field installPath" in run_command(
        state, HOSTS, "h1", p.StartVmCmd.PATH, body)["error"]
    body = p.to_wire(start_cmd(state, "vm2"))
    body["nics"] = body["nics"][0]
    assert "field nics must be list" in run_command(state, HOSTS, "h1", p.StartVmCmd.PATH, body)["error"]
    body["nics"] = [{"uuid": "n"}]
    assert "nics[0]: missing required field mac" in run_command(state, HOSTS, "h1", p.StartVmCmd.PATH, body)["error"]
    assert "expected a JSON object" in run_command(state, HOSTS, "h1", p.EchoCmd.PATH, [])["error"]
    # unknown fields are ignored, as from_wire does
    assert run_command(state, HOSTS, "h1", p.EchoCmd.PATH, {"extra": 1})["success"]


# ---- bridges ----------------------------------------------------------------------------------

def test_bridges(state: SimState) -> None:
    vlan = p.CreateVlanBridgeCmd(physicalInterfaceName="eth0", bridgeName="br_l2b_10", l2NetworkUuid="l2b", vlan=10)
    ok(state, HOSTS, "h1", vlan)
    ok(state, HOSTS, "h1", vlan)  # idempotent
    assert state.hosts["h1"].bridges["br_l2b_10"] == 10
    clash = p.CreateVlanBridgeCmd(physicalInterfaceName="eth0", bridgeName="br_l2b_10", l2NetworkUuid="l2b", vlan=11)
    fails(state, HOSTS, "h1", clash, "already exists", "vlan 10")
    fails(state, HOSTS, "h1", p.CreateVlanBridgeCmd(physicalInterfaceName="eth0", bridgeName="b", l2NetworkUuid="l",
                                                   vlan=None), "vlan must be")
    fails(state, HOSTS, "h1", p.CreateBridgeCmd(physicalInterfaceName="eth0", bridgeName="b", l2NetworkUuid="l",
                                               vlan=3), "takes no vlan")
    fails(state, HOSTS, "h1", p.CreateBridgeCmd(physicalInterfaceName="eth0", bridgeName="x" * 16,
                                               l2NetworkUuid="l"), "15 characters")
    check = p.CheckBridgeCmd(physicalInterfaceName="eth0", bridgeName="br_l2b_10", l2NetworkUuid="l2b", vlan=10)
    ok(state, HOSTS, "h1", check)
    fails(state, HOSTS, "h2", check, "does not exist")
    delete = p.DeleteBridgeCmd(physicalInterfaceName="eth0", bridgeName="br_l2b_10", l2NetworkUuid="l2b")
    ok(state, HOSTS, "h1", delete)
    ok(state, HOSTS, "h1", delete)  # idempotent
    fails(state, HOSTS, "h1", check, "does not exist")


def test_a_bridge_in_use_cannot_be_deleted(state: SimState) -> None:
    ok(state, HOSTS, "h1", start_cmd(state, "vm1"))
    fails(state, HOSTS, "h1", p.DeleteBridgeCmd(physicalInterfaceName="eth0", bridgeName="br_l2a",
                                               l2NetworkUuid="l2a"), "in use by VMs ['vm1']")


# ---- VM lifecycle -----------------------------------------------------------------------------

def test_start_records_the_vm(state: SimState) -> None:
    data = volume(state, "data1")
    cmd = start_cmd(state, "vm1")
    cmd.dataVolumes = [data]
    reply = ok(state, HOSTS, "h1", cmd)
    assert reply["vncPort"] == vnc_port("vm1")
    vm = state.hosts["h1"].vms["vm1"]
    assert (vm.state, vm.cpu_num, vm.memory) == (p.VM_RUNNING, 1, GiB)
    assert vm.volume_paths() == [cmd.rootVolume.installPath, data.installPath]
    assert state.vm_hosts["vm1"] == "h1"
    assert state.volume_users[data.installPath] == "vm1"
    assert ok(state, HOSTS, "h1", p.VmSyncCmd(hostUuid="h1"))["states"] == {"vm1": p.VM_RUNNING}


def test_start_needs_volumes_on_primary_storage_and_bridges(state: SimState) -> None:
    ghost = p.VolumeTO(volumeUuid="ghost", installPath="/nowhere/ghost.qcow2")
    fails(state, HOSTS, "h1", start_cmd(state, "vm1", root=ghost), "/nowhere/ghost.qcow2",
          "does not exist on any simulated primary storage")
    fails(state, HOSTS, "h1", start_cmd(state, "vm2", nics=[nic(bridge="br_missing")]),
          "bridge br_missing does not exist")
    cmd = start_cmd(state, "vm3")
    cmd.dataVolumes = [ghost]
    fails(state, HOSTS, "h1", cmd, "does not exist")
    # a failed start leaves nothing behind
    assert state.hosts["h1"].vms == {} and state.vm_hosts == {} and state.volume_users == {}


def test_start_rules_for_existing_vms(state: SimState) -> None:
    cmd = start_cmd(state, "vm1")
    ok(state, HOSTS, "h1", cmd)
    fails(state, HOSTS, "h1", cmd, "already running")
    fails(state, HOSTS, "h2", cmd, "already exists on simulated host h1")
    ok(state, HOSTS, "h1", p.PauseVmCmd(uuid="vm1"))
    ok(state, HOSTS, "h1", cmd)  # a paused domain is replaced
    assert state.hosts["h1"].vms["vm1"].state == p.VM_RUNNING
    other = start_cmd(state, "vm2", root=cmd.rootVolume)
    fails(state, HOSTS, "h2", other, "in use by VM vm1")
    twice = start_cmd(state, "vm3")
    twice.dataVolumes = [twice.rootVolume]
    fails(state, HOSTS, "h1", twice, "names one volume twice")
    fails(state, HOSTS, "h1", start_cmd(state, "vm4", nics=[nic("a"), nic("a", mac="fa:16:3e:00:00:02")]),
          "same uuid or MAC")


def test_restart_with_new_volumes_releases_the_old_ones(state: SimState) -> None:
    cmd = start_cmd(state, "vm1")
    cmd.dataVolumes = [volume(state, "d1")]
    ok(state, HOSTS, "h1", cmd)
    state.set_vm_state("h1", "vm1", "Crashed")
    cmd.dataVolumes = []
    ok(state, HOSTS, "h1", cmd)
    assert "/sim/ps/ps1/d1.qcow2" not in state.volume_users


def test_stop_and_destroy_remove_the_domain_idempotently(state: SimState) -> None:
    cmd = start_cmd(state, "vm1", memory=2 * GiB)
    ok(state, HOSTS, "h1", cmd)
    ok(state, HOSTS, "h1", p.StopVmCmd(uuid="vm1"))
    assert "vm1" not in state.hosts["h1"].vms and "vm1" not in state.vm_hosts
    assert cmd.rootVolume.installPath not in state.volume_users
    assert state.hosts["h1"].used_memory() == 0
    ok(state, HOSTS, "h1", p.StopVmCmd(uuid="vm1"))
    ok(state, HOSTS, "h1", cmd)  # start again after stop: defined anew
    ok(state, HOSTS, "h1", p.DestroyVmCmd(uuid="vm1"))
    ok(state, HOSTS, "h1", p.DestroyVmCmd(uuid="vm1"))
    ok(state, HOSTS, "h1", p.DestroyVmCmd(uuid="never-existed"))
    assert ok(state, HOSTS, "h1", p.VmSyncCmd(hostUuid="h1"))["states"] == {}


def test_pause_resume_reboot_follow_libvirt(state: SimState) -> None:
    fails(state, HOSTS, "h1", p.RebootVmCmd(uuid="vm1"), "no VM vm1")
    ok(state, HOSTS, "h1", start_cmd(state, "vm1"))
    ok(state, HOSTS, "h1", p.RebootVmCmd(uuid="vm1"))
    fails(state, HOSTS, "h1", p.ResumeVmCmd(uuid="vm1"), "it is Running, not Paused")
    ok(state, HOSTS, "h1", p.PauseVmCmd(uuid="vm1"))
    assert state.hosts["h1"].vms["vm1"].state == p.VM_PAUSED
    fails(state, HOSTS, "h1", p.PauseVmCmd(uuid="vm1"), "it is Paused")
    fails(state, HOSTS, "h1", p.RebootVmCmd(uuid="vm1"), "cannot reboot")
    ok(state, HOSTS, "h1", p.ResumeVmCmd(uuid="vm1"))
    assert ok(state, HOSTS, "h1", p.VmSyncCmd(hostUuid="h1"))["states"] == {"vm1": p.VM_RUNNING}


def migrate(vm: str, src: str = "h1", dest: str = "h2") -> p.MigrateVmCmd:
    return p.MigrateVmCmd(vmUuid=vm, srcHostUuid=src, destHostUuid=dest, destHostIp="127.0.0.1",
                          destAgentUrl=f"http://sim/hosts/{dest}")


def test_migrate_moves_a_running_vm(state: SimState) -> None:
    ok(state, HOSTS, "h1", start_cmd(state, "vm1", memory=3 * GiB))
    ok(state, HOSTS, "h1", migrate("vm1"))
    assert "vm1" not in state.hosts["h1"].vms and state.hosts["h2"].vms["vm1"].state == p.VM_RUNNING
    assert state.vm_hosts["vm1"] == "h2"
    assert ok(state, HOSTS, "h2", p.HostCapacityCmd(hostUuid="h2"))["usedMemory"] == 3 * GiB
    fails(state, HOSTS, "h1", migrate("vm1"), "no VM vm1 on simulated host h1")


def test_migrate_failures(state: SimState) -> None:
    state.put_host("h3")
    ok(state, HOSTS, "h1", start_cmd(state, "vm1"))
    fails(state, HOSTS, "h1", migrate("vm1", dest="h3"), "bridge br_l2a does not exist on simulated host h3")
    fails(state, HOSTS, "h1", migrate("vm1", dest="nope"), "no simulated host nope")
    fails(state, HOSTS, "h1", migrate("vm1", dest="h1"), "its own host")
    fails(state, HOSTS, "h1", migrate("vm1", src="h2"), "is not this simulated host")
    ok(state, HOSTS, "h1", p.PauseVmCmd(uuid="vm1"))
    fails(state, HOSTS, "h1", migrate("vm1"), "cannot migrate", "Paused")
    assert "vm1" in state.hosts["h1"].vms


def test_data_volumes_attach_and_detach(state: SimState) -> None:
    ok(state, HOSTS, "h1", start_cmd(state, "vm1"))
    d1 = volume(state, "d1")
    attach = p.AttachDataVolumeCmd(vmUuid="vm1", volume=d1)
    fails(state, HOSTS, "h1", p.AttachDataVolumeCmd(vmUuid="nope", volume=d1), "no VM nope")
    ok(state, HOSTS, "h1", attach)
    assert state.hosts["h1"].vms["vm1"].data_volumes == [d1]
    fails(state, HOSTS, "h1", attach, "already attached")
    ok(state, HOSTS, "h2", start_cmd(state, "vm2"))
    fails(state, HOSTS, "h2", p.AttachDataVolumeCmd(vmUuid="vm2", volume=d1), "in use by VM vm1")
    ghost = p.VolumeTO(volumeUuid="g", installPath="/nowhere")
    fails(state, HOSTS, "h1", p.AttachDataVolumeCmd(vmUuid="vm1", volume=ghost), "does not exist")
    root = state.hosts["h1"].vms["vm1"].root_volume
    fails(state, HOSTS, "h1", p.DetachDataVolumeCmd(vmUuid="vm1", volume=root), "root volume")
    detach = p.DetachDataVolumeCmd(vmUuid="vm1", volume=d1)
    ok(state, HOSTS, "h1", detach)
    fails(state, HOSTS, "h1", detach, "is not attached")
    assert d1.installPath not in state.volume_users


def test_nics_attach_and_detach(state: SimState) -> None:
    ok(state, HOSTS, "h1", start_cmd(state, "vm1"))
    n2 = nic("nic2", "fa:16:3e:00:00:02")
    ok(state, HOSTS, "h1", p.AttachNicCmd(vmUuid="vm1", nic=n2))
    fails(state, HOSTS, "h1", p.AttachNicCmd(vmUuid="vm1", nic=n2), "already attached")
    fails(state, HOSTS, "h1", p.AttachNicCmd(vmUuid="vm1", nic=nic("nic3", "fa:16:3e:00:00:02")), "already attached")
    fails(state, HOSTS, "h1", p.AttachNicCmd(vmUuid="vm1", nic=nic("nic4", "m4", bridge="br_x")), "br_x does not exist")
    ok(state, HOSTS, "h1", p.DetachNicCmd(vmUuid="vm1", nic=n2))
    fails(state, HOSTS, "h1", p.DetachNicCmd(vmUuid="vm1", nic=n2), "is not attached")
    assert [n.uuid for n in state.hosts["h1"].vms["vm1"].nics] == ["nic1"]


def test_vnc_port_is_stable(state: SimState) -> None:
    fails(state, HOSTS, "h1", p.GetVncPortCmd(vmUuid="vm1"), "no VM vm1")
    ok(state, HOSTS, "h1", start_cmd(state, "vm1"))
    ports = {ok(state, HOSTS, "h1", p.GetVncPortCmd(vmUuid="vm1"))["port"] for _ in range(3)}
    assert ports == {vnc_port("vm1")} and 5900 <= vnc_port("vm1") < 15900


# ---- out-of-band changes ----------------------------------------------------------------------

def test_set_vm_state_changes_and_reports(state: SimState) -> None:
    events = RecordingEvents()
    state.events = events  # type: ignore[assignment]
    ok(state, HOSTS, "h1", start_cmd(state, "vm1"))
    assert state.set_vm_state("h1", "vm1", "Paused") is False  # not connected: nobody to tell
    ok(state, HOSTS, "h1", p.ConnectCmd(hostUuid="h1", sendCommandUrl="http://mn/events"))
    assert state.set_vm_state("h1", "vm1", "Stopped") is True
    assert "vm1" not in state.hosts["h1"].vms and "vm1" not in state.vm_hosts
    assert events.posted == [("http://mn/events", {"hostUuid": "h1", "type": "VmStateChanged", "vmUuid": "vm1",
                                                   "state": "Stopped",
                                                   "reason": "changed out of band by the simulator"})]
    with pytest.raises(LookupError):
        state.set_vm_state("h1", "vm1", "Stopped")
    with pytest.raises(ValueError, match="state must be one of"):
        state.set_vm_state("h1", "vm1", "Exploded")
    with pytest.raises(SimError, match="no simulated host"):
        state.set_vm_state("nope", "vm1", "Running")
    # a stray VM planted out of band
    state.set_vm_state("h1", "stray", "Running", cpu_num=2, memory=GiB)
    assert ok(state, HOSTS, "h1", p.VmSyncCmd(hostUuid="h1"))["states"] == {"stray": "Running"}
    with pytest.raises(ValueError, match="already exists on simulated host h1"):
        state.set_vm_state("h2", "stray", "Running")


def test_remove_host_frees_its_vms_volumes(state: SimState) -> None:
    cmd = start_cmd(state, "vm1")
    ok(state, HOSTS, "h1", cmd)
    assert state.remove_host("h1") is True and state.remove_host("h1") is False
    assert state.vm_hosts == {} and state.volume_users == {}
    ok(state, HOSTS, "h2", cmd)


# ---- primary storage --------------------------------------------------------------------------

def test_primary_storage_capacity_accounting(state: SimState) -> None:
    state.put_primary_storage("ps2", total=10 * GiB)
    init = ok(state, PRIMARY, "ps2", p.InitPrimaryStorageCmd(psUuid="ps2", url="nfs://x"))
    assert (init["totalCapacity"], init["availableCapacity"]) == (10 * GiB, 10 * GiB)
    r = ok(state, PRIMARY, "ps2", p.CreateEmptyVolumeCmd(psUuid="ps2", volumeUuid="v1", size=4 * GiB))
    assert r["installPath"] == "/sim/ps/ps2/v1.qcow2" and r["size"] == 4 * GiB
    assert ok(state, PRIMARY, "ps2", p.PrimaryStorageCapacityCmd(psUuid="ps2"))["availableCapacity"] == 6 * GiB
    fails(state, PRIMARY, "ps2", p.CreateEmptyVolumeCmd(psUuid="ps2", volumeUuid="v2", size=7 * GiB),
          "insufficient capacity", "needs 7516192768 bytes, 6442450944 available")
    fails(state, PRIMARY, "ps2", p.CreateEmptyVolumeCmd(psUuid="ps2", volumeUuid="v1", size=GiB), "already exists")
    fails(state, PRIMARY, "ps2", p.CreateEmptyVolumeCmd(psUuid="ps2", volumeUuid="v3", size=0), "at least 1")
    delete = p.DeleteVolumeCmd(psUuid="ps2", installPath=r["installPath"])
    fails(state, PRIMARY, "ps1", p.DeleteVolumeCmd(psUuid="ps1", installPath=r["installPath"]),
          "lives on primary storage ps2")
    ok(state, PRIMARY, "ps2", delete)
    ok(state, PRIMARY, "ps2", delete)  # idempotent
    assert state.primary_storages["ps2"].available == 10 * GiB and r["installPath"] not in state.volume_ps


def test_a_volume_in_use_cannot_be_deleted(state: SimState) -> None:
    cmd = start_cmd(state, "vm1")
    ok(state, HOSTS, "h1", cmd)
    delete = p.DeleteVolumeCmd(psUuid="ps1", installPath=cmd.rootVolume.installPath)
    fails(state, PRIMARY, "ps1", delete, "in use by VM vm1")
    ok(state, HOSTS, "h1", p.DestroyVmCmd(uuid="vm1"))
    ok(state, PRIMARY, "ps1", delete)
    fails(state, HOSTS, "h1", cmd, "does not exist")


def download(state: SimState, image: str, url: str = "http://images/x.qcow2") -> dict[str, Any]:
    return ok(state, BACKUP, "bs1", p.DownloadImageCmd(bsUuid="bs1", imageUuid=image, url=url))


def test_create_volume_from_image(state: SimState) -> None:
    img = download(state, "img1", f"http://images/a.qcow2?size={2 * GiB}")
    base = {"psUuid": "ps1", "imageUuid": "img1", "imageInstallPath": img["installPath"], "backupStorageUuid": "bs1"}
    r = ok(state, PRIMARY, "ps1", p.CreateVolumeFromImageCmd(volumeUuid="root1", **base))
    assert (r["size"], r["actualSize"]) == (2 * GiB, 2 * GiB)
    r = ok(state, PRIMARY, "ps1", p.CreateVolumeFromImageCmd(volumeUuid="root2", size=5 * GiB, **base))
    assert r["size"] == 5 * GiB
    assert state.primary_storages["ps1"].available == 93 * GiB
    fails(state, PRIMARY, "ps1", p.CreateVolumeFromImageCmd(**{**base, "backupStorageUuid": "bsX"}, volumeUuid="r3"),
          "no simulated backup storage bsX")
    fails(state, PRIMARY, "ps1", p.CreateVolumeFromImageCmd(**{**base, "imageInstallPath": "/x"}, volumeUuid="r4"),
          "not found at /x")
    fails(state, PRIMARY, "ps1", p.CreateVolumeFromImageCmd(**{**base, "imageUuid": "img9"}, volumeUuid="r5"),
          "holds image img1, not img9")


# ---- backup storage ---------------------------------------------------------------------------

def test_backup_storage_downloads_and_deletes(state: SimState) -> None:
    state.put_backup_storage("bs2", total=GiB)
    conn = ok(state, BACKUP, "bs2", p.ConnectBackupStorageCmd(bsUuid="bs2", url="/bs"))
    assert conn["availableCapacity"] == GiB
    r = ok(state, BACKUP, "bs2", p.DownloadImageCmd(bsUuid="bs2", imageUuid="i1", url="http://x/i1.qcow2"))
    assert r["size"] == r["actualSize"] == DEFAULT_IMAGE_SIZE and r["installPath"] == "/sim/bs/bs2/i1.qcow2"
    assert len(r["md5Sum"]) == 32 and r["format"] == "qcow2"
    r2 = ok(state, BACKUP, "bs2", p.DownloadImageCmd(bsUuid="bs2", imageUuid="i2", url="http://x/a.iso?size=1000",
                                                     format="iso"))
    assert r2["size"] == 1000 and r2["installPath"].endswith(".iso")
    fails(state, BACKUP, "bs2", p.DownloadImageCmd(bsUuid="bs2", imageUuid="i3", url=f"http://x?size={GiB}"),
          "insufficient capacity on simulated backup storage bs2")
    fails(state, BACKUP, "bs2", p.DownloadImageCmd(bsUuid="bs2", imageUuid="i4", url="http://x?size=lots"),
          "not a number")
    fails(state, BACKUP, "bs2", p.DownloadImageCmd(bsUuid="bs2", imageUuid="i1", url="http://x/i1.qcow2"),
          "already exists")
    cap = ok(state, BACKUP, "bs2", p.BackupStorageCapacityCmd(bsUuid="bs2"))
    assert cap["availableCapacity"] == GiB - DEFAULT_IMAGE_SIZE - 1000
    ok(state, BACKUP, "bs2", p.DeleteImageCmd(bsUuid="bs2", installPath=r["installPath"]))
    ok(state, BACKUP, "bs2", p.DeleteImageCmd(bsUuid="bs2", installPath=r["installPath"]))
    assert state.backup_storages["bs2"].available == GiB - 1000


# ---- concurrency and figures ------------------------------------------------------------------

def test_concurrent_starts_on_one_host(state: SimState) -> None:
    state.put_primary_storage("ps1", total=1000 * GiB, available=1000 * GiB)
    cmds = [start_cmd(state, f"vm{i}", memory=1, nics=[nic(f"n{i}", f"m{i}")]) for i in range(200)]
    errors: list[str] = []

    def worker(chunk: list[p.StartVmCmd]) -> None:
        for c in chunk:
            r = run(state, HOSTS, "h1", c)
            if not r["success"]:
                errors.append(r["error"])

    threads = [threading.Thread(target=worker, args=(cmds[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(state.hosts["h1"].vms) == 200 and state.hosts["h1"].used_memory() == 200


def test_one_volume_one_domain_under_races(state: SimState) -> None:
    """Many VMs on two hosts race for the same root volume: exactly one wins."""
    root = volume(state, "shared")
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def worker(i: int) -> None:
        cmd = start_cmd(state, f"vm{i}", root=root, nics=[])
        barrier.wait()
        results.append(run(state, HOSTS, f"h{i % 2 + 1}", cmd)["success"])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1 and len(state.vm_hosts) == 1


def test_stats(state: SimState) -> None:
    ok(state, HOSTS, "h1", start_cmd(state, "vm1"))
    state.calls.count("/host/ping", True)
    state.calls.count("/host/ping", False)
    s = state.stats()
    assert (s["hosts"], s["vms"], s["primaryStorages"], s["backupStorages"], s["volumes"]) == (2, 1, 1, 1, 1)
    assert s["calls"] == {"/host/ping": 2} and s["failures"] == {"/host/ping": 1} and s["totalCalls"] == 2
