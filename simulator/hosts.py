"""Host, VM and L2 network commands of a simulated host.

Each handler gets the SimState, the target SimHost and the typed command, returns the typed reply
and raises SimError to fail. It holds the host's lock while it reads or changes the host.
Rules enforced (each one an MN bug a test can catch): a VM's volumes must exist on a simulated
primary storage and be used by no other domain; its NICs' bridges must exist on the host; a VM
exists on one host at most; state changes follow libvirt (pause needs Running, resume needs
Paused...); bridge names fit Linux's 15 characters; a bridge in use cannot be deleted.
Stop and destroy of an unknown VM succeed (idempotent), as on ZStack's agent.
Applied EIPs are recorded per host by VIP; their bridges must exist and a VIP serves one EIP.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kvmagent import protocol as p
from simulator.model import SimError, SimHost, SimVm, vnc_port
from simulator.state import SimState

MAX_BRIDGE_NAME = 15
MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_MISSING = object()


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SimError(f"{name} must be a positive integer, not {value!r}")
    return value


def _vm(host: SimHost, vm_uuid: str) -> SimVm:
    vm = host.vms.get(vm_uuid)
    if vm is None:
        raise SimError(f"no VM {vm_uuid} on simulated host {host.uuid}")
    return vm


def _need_state(vm: SimVm, host: SimHost, action: str, *states: str) -> None:
    if vm.state not in states:
        raise SimError(f"cannot {action} VM {vm.uuid} on simulated host {host.uuid}: it is {vm.state}, "
                       f"not {' or '.join(states)}")


def need_bridge(host: SimHost, bridge: str, who: str) -> None:
    if bridge not in host.bridges:
        raise SimError(f"{who}: bridge {bridge} does not exist on simulated host {host.uuid}")


# ---- host -------------------------------------------------------------------------------------

def connect(state: SimState, host: SimHost, cmd: p.ConnectCmd) -> p.ConnectRsp:
    with host.lock:
        host.connected = True
        host.send_command_url = cmd.sendCommandUrl
    return p.ConnectRsp(hostUuid=host.uuid, libvirtVersion="simulated", qemuVersion="simulated",
                        agentVersion="simulated")


def echo(state: SimState, host: SimHost, cmd: p.EchoCmd) -> p.Reply:
    return p.Reply()


def ping(state: SimState, host: SimHost, cmd: p.PingCmd) -> p.PingRsp:
    """Answers the uuid the host was connected as; None until connected (or after an agent
    restart), which tells the MN to reconnect."""
    return p.PingRsp(hostUuid=host.uuid if host.connected else None)


def facts(state: SimState, host: SimHost, cmd: p.HostFactCmd) -> p.HostFactRsp:
    return p.HostFactRsp(
        hypervisorType="Simulator", osDistribution="Simulator", osVersion="1.0", architecture="x86_64",
        cpuModelName="Simulated CPU", cpuNum=host.cpu_num, cpuSockets=host.cpu_sockets,
        cpuSpeed=host.cpu_speed, totalMemory=host.memory, hostname=f"sim-{host.uuid[:8]}")


def capacity(state: SimState, host: SimHost, cmd: p.HostCapacityCmd) -> p.HostCapacityRsp:
    with host.lock:
        return p.HostCapacityRsp(cpuNum=host.cpu_num, cpuSockets=host.cpu_sockets, cpuSpeed=host.cpu_speed,
                                 totalMemory=host.memory, usedMemory=host.used_memory())


# ---- VM lifecycle -----------------------------------------------------------------------------

def start_vm(state: SimState, host: SimHost, cmd: p.StartVmCmd) -> p.StartVmRsp:
    """Define and start the domain. A VM already Running here fails; one in another state here
    (Paused, Crashed...) is replaced; one that exists on another host fails."""
    _positive_int(cmd.cpuNum, "cpuNum")
    _positive_int(cmd.memory, "memory")
    uuid = cmd.vmInstanceUuid
    paths = [cmd.rootVolume.installPath, *(v.installPath for v in cmd.dataVolumes)]
    nic_uuids = [n.uuid for n in cmd.nics]
    if len(set(nic_uuids)) != len(nic_uuids) or len({n.mac for n in cmd.nics}) != len(cmd.nics):
        raise SimError(f"VM {uuid} has two NICs with the same uuid or MAC")
    with host.lock:
        for nic in cmd.nics:
            need_bridge(host, nic.bridgeName, f"NIC {nic.uuid} of VM {uuid}")
        old = host.vms.get(uuid)
        if old is not None and old.state == p.VM_RUNNING:
            raise SimError(f"VM {uuid} is already running on simulated host {host.uuid}")
        state.claim_vm(uuid, host.uuid)
        try:
            state.claim_volumes(uuid, paths)
        except SimError:
            if old is None:
                state.vm_hosts.pop(uuid, None)
            raise
        if old is not None:
            state.release_volumes(uuid, [x for x in old.volume_paths() if x not in paths])
        host.vms[uuid] = SimVm(uuid, cmd.vmName, p.VM_RUNNING, cmd.cpuNum, cmd.memory, cmd.cpuSpeed,
                               cmd.rootVolume, list(cmd.dataVolumes), list(cmd.nics))
    return p.StartVmRsp(vncPort=vnc_port(uuid))


def _remove_vm(state: SimState, host: SimHost, vm_uuid: str) -> None:
    with host.lock:
        vm = host.vms.pop(vm_uuid, None)
        if vm is not None:
            state.forget_vm(vm, host.uuid)


def stop_vm(state: SimState, host: SimHost, cmd: p.StopVmCmd) -> p.Reply:
    """The domain goes away (transient domains); stopping an absent VM succeeds."""
    _remove_vm(state, host, cmd.uuid)
    return p.Reply()


def destroy_vm(state: SimState, host: SimHost, cmd: p.DestroyVmCmd) -> p.Reply:
    _remove_vm(state, host, cmd.uuid)
    return p.Reply()


def reboot_vm(state: SimState, host: SimHost, cmd: p.RebootVmCmd) -> p.Reply:
    with host.lock:
        _need_state(_vm(host, cmd.uuid), host, "reboot", p.VM_RUNNING)
    return p.Reply()


def pause_vm(state: SimState, host: SimHost, cmd: p.PauseVmCmd) -> p.Reply:
    with host.lock:
        vm = _vm(host, cmd.uuid)
        _need_state(vm, host, "pause", p.VM_RUNNING)
        vm.state = p.VM_PAUSED
    return p.Reply()


def resume_vm(state: SimState, host: SimHost, cmd: p.ResumeVmCmd) -> p.Reply:
    with host.lock:
        vm = _vm(host, cmd.uuid)
        _need_state(vm, host, "resume", p.VM_PAUSED)
        vm.state = p.VM_RUNNING
    return p.Reply()


def migrate_vm(state: SimState, host: SimHost, cmd: p.MigrateVmCmd) -> p.Reply:
    """Move a Running domain to another simulated host that has its bridges (shared storage)."""
    if cmd.srcHostUuid != host.uuid:
        raise SimError(f"migration source {cmd.srcHostUuid} is not this simulated host {host.uuid}")
    if cmd.destHostUuid == host.uuid:
        raise SimError(f"cannot migrate VM {cmd.vmUuid} to its own host {host.uuid}")
    dest = state.hosts.get(cmd.destHostUuid)
    if dest is None:
        raise SimError(f"migration destination: no simulated host {cmd.destHostUuid}")
    first, second = sorted((host, dest), key=lambda h: h.uuid)
    with first.lock, second.lock:
        vm = _vm(host, cmd.vmUuid)
        _need_state(vm, host, "migrate", p.VM_RUNNING)
        for nic in vm.nics:
            need_bridge(dest, nic.bridgeName, f"migration of VM {vm.uuid}")
        if vm.uuid in dest.vms:
            raise SimError(f"VM {vm.uuid} already exists on destination host {dest.uuid}")
        del host.vms[vm.uuid]
        dest.vms[vm.uuid] = vm
        state.vm_hosts[vm.uuid] = dest.uuid
    return p.Reply()


def vm_sync(state: SimState, host: SimHost, cmd: p.VmSyncCmd) -> p.VmSyncRsp:
    with host.lock:
        return p.VmSyncRsp(states={u: vm.state for u, vm in host.vms.items()})


def get_vnc_port(state: SimState, host: SimHost, cmd: p.GetVncPortCmd) -> p.GetVncPortRsp:
    with host.lock:
        _vm(host, cmd.vmUuid)
    return p.GetVncPortRsp(port=vnc_port(cmd.vmUuid))


# ---- devices ----------------------------------------------------------------------------------

def attach_volume(state: SimState, host: SimHost, cmd: p.AttachDataVolumeCmd) -> p.Reply:
    vol = cmd.volume
    with host.lock:
        vm = _vm(host, cmd.vmUuid)
        _need_state(vm, host, "attach a volume to", p.VM_RUNNING, p.VM_PAUSED)
        current = [vm.root_volume, *vm.data_volumes] if vm.root_volume else list(vm.data_volumes)
        if any(v.volumeUuid == vol.volumeUuid or v.installPath == vol.installPath for v in current):
            raise SimError(f"volume {vol.volumeUuid} ({vol.installPath}) is already attached to VM {vm.uuid}")
        state.claim_volumes(vm.uuid, [vol.installPath])
        vm.data_volumes.append(vol)
    return p.Reply()


def detach_volume(state: SimState, host: SimHost, cmd: p.DetachDataVolumeCmd) -> p.Reply:
    vol = cmd.volume
    with host.lock:
        vm = _vm(host, cmd.vmUuid)
        if vm.root_volume is not None and vm.root_volume.volumeUuid == vol.volumeUuid:
            raise SimError(f"volume {vol.volumeUuid} is the root volume of VM {vm.uuid}; it cannot be detached")
        found = next((v for v in vm.data_volumes if v.volumeUuid == vol.volumeUuid), None)
        if found is None:
            raise SimError(f"volume {vol.volumeUuid} is not attached to VM {vm.uuid}")
        vm.data_volumes.remove(found)
        state.release_volumes(vm.uuid, [found.installPath])
    return p.Reply()


def attach_nic(state: SimState, host: SimHost, cmd: p.AttachNicCmd) -> p.Reply:
    nic = cmd.nic
    with host.lock:
        vm = _vm(host, cmd.vmUuid)
        _need_state(vm, host, "attach a NIC to", p.VM_RUNNING, p.VM_PAUSED)
        need_bridge(host, nic.bridgeName, f"NIC {nic.uuid} of VM {vm.uuid}")
        if any(n.uuid == nic.uuid or n.mac == nic.mac for n in vm.nics):
            raise SimError(f"NIC {nic.uuid} (MAC {nic.mac}) is already attached to VM {vm.uuid}")
        vm.nics.append(nic)
    return p.Reply()


def detach_nic(state: SimState, host: SimHost, cmd: p.DetachNicCmd) -> p.Reply:
    with host.lock:
        vm = _vm(host, cmd.vmUuid)
        found = next((n for n in vm.nics if n.uuid == cmd.nic.uuid), None)
        if found is None:
            raise SimError(f"NIC {cmd.nic.uuid} is not attached to VM {vm.uuid}")
        vm.nics.remove(found)
    return p.Reply()


# ---- L2 networks ------------------------------------------------------------------------------

def _check_bridge_cmd(cmd: p.BridgeCmd) -> None:
    name = cmd.bridgeName
    if not isinstance(name, str) or not name or len(name) > MAX_BRIDGE_NAME:
        raise SimError(f"invalid bridge name {name!r}: Linux allows 1 to {MAX_BRIDGE_NAME} characters")
    if not isinstance(cmd.physicalInterfaceName, str) or not cmd.physicalInterfaceName:
        raise SimError(f"bridge {name}: physicalInterfaceName is required")


def _create_bridge(host: SimHost, cmd: p.BridgeCmd, vlan: int | None) -> p.Reply:
    _check_bridge_cmd(cmd)
    with host.lock:
        existing = host.bridges.get(cmd.bridgeName, _MISSING)
        if existing is not _MISSING and existing != vlan:
            raise SimError(f"bridge {cmd.bridgeName} already exists on simulated host {host.uuid} "
                           f"with vlan {existing}, not {vlan}")
        host.bridges[cmd.bridgeName] = vlan
    return p.Reply()


def create_bridge(state: SimState, host: SimHost, cmd: p.CreateBridgeCmd) -> p.Reply:
    if cmd.vlan is not None:
        raise SimError(f"bridge {cmd.bridgeName}: a no-VLAN bridge takes no vlan (got {cmd.vlan})")
    return _create_bridge(host, cmd, None)


def create_vlan_bridge(state: SimState, host: SimHost, cmd: p.CreateVlanBridgeCmd) -> p.Reply:
    if isinstance(cmd.vlan, bool) or not isinstance(cmd.vlan, int) or not 1 <= cmd.vlan <= 4094:
        raise SimError(f"bridge {cmd.bridgeName}: vlan must be an integer from 1 to 4094, not {cmd.vlan!r}")
    return _create_bridge(host, cmd, cmd.vlan)


def check_bridge(state: SimState, host: SimHost, cmd: p.CheckBridgeCmd) -> p.Reply:
    with host.lock:
        need_bridge(host, cmd.bridgeName, "check")
        if cmd.vlan is not None and host.bridges[cmd.bridgeName] != cmd.vlan:
            raise SimError(f"bridge {cmd.bridgeName} on simulated host {host.uuid} has vlan "
                           f"{host.bridges[cmd.bridgeName]}, not {cmd.vlan}")
    return p.Reply()


def delete_bridge(state: SimState, host: SimHost, cmd: p.DeleteBridgeCmd) -> p.Reply:
    """Deleting an absent bridge succeeds; deleting one a VM NIC uses fails."""
    with host.lock:
        users = [vm.uuid for vm in host.vms.values() if any(n.bridgeName == cmd.bridgeName for n in vm.nics)]
        if users:
            raise SimError(f"bridge {cmd.bridgeName} on simulated host {host.uuid} is in use by VMs {users}")
        host.bridges.pop(cmd.bridgeName, None)
    return p.Reply()


# ---- flat network EIP -------------------------------------------------------------------------

HANDLERS: dict[str, Callable[[SimState, SimHost, Any], p.Reply]] = {
    p.ConnectCmd.PATH: connect,
    p.EchoCmd.PATH: echo,
    p.PingCmd.PATH: ping,
    p.HostFactCmd.PATH: facts,
    p.HostCapacityCmd.PATH: capacity,
    p.StartVmCmd.PATH: start_vm,
    p.StopVmCmd.PATH: stop_vm,
    p.RebootVmCmd.PATH: reboot_vm,
    p.PauseVmCmd.PATH: pause_vm,
    p.ResumeVmCmd.PATH: resume_vm,
    p.DestroyVmCmd.PATH: destroy_vm,
    p.MigrateVmCmd.PATH: migrate_vm,
    p.VmSyncCmd.PATH: vm_sync,
    p.AttachDataVolumeCmd.PATH: attach_volume,
    p.DetachDataVolumeCmd.PATH: detach_volume,
    p.AttachNicCmd.PATH: attach_nic,
    p.DetachNicCmd.PATH: detach_nic,
    p.GetVncPortCmd.PATH: get_vnc_port,
    p.CreateBridgeCmd.PATH: create_bridge,
    p.CreateVlanBridgeCmd.PATH: create_vlan_bridge,
    p.CheckBridgeCmd.PATH: check_bridge,
    p.DeleteBridgeCmd.PATH: delete_bridge,
}
"""Protocol path -> handler for everything a host serves."""
