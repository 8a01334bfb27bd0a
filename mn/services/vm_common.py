"""What the VM flows share: VM states, agent addresses and the transfer objects sent to agents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from kvmagent.protocol import NicTO, VolumeTO, bridge_name
from mn.errors import VM_STATE_ERROR, ApiError
from mn.models import Host, L2Network, L3Network, PrimaryStorage, VmInstance, VmNic, Volume

# Stable and transitional VM states (ZStack's names).
CREATED, STARTING, RUNNING, STOPPING, STOPPED = "Created", "Starting", "Running", "Stopping", "Stopped"
REBOOTING, PAUSING, PAUSED, RESUMING = "Rebooting", "Pausing", "Paused", "Resuming"
MIGRATING, DESTROYING, DESTROYED, EXPUNGING, UNKNOWN = (
    "Migrating", "Destroying", "Destroyed", "Expunging", "Unknown")
TRANSITIONAL = (STARTING, STOPPING, REBOOTING, PAUSING, RESUMING, MIGRATING, DESTROYING, EXPUNGING)
# The states an operation may start from: operation -> (from states, transitional state).
OPERATIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "start": ((CREATED, STOPPED), STARTING),
    "stop": ((RUNNING, PAUSED, UNKNOWN), STOPPING),
    "reboot": ((RUNNING,), REBOOTING),
    "pause": ((RUNNING,), PAUSING),
    "resume": ((PAUSED,), RESUMING),
    "migrate": ((RUNNING,), MIGRATING),
    "destroy": ((CREATED, RUNNING, STOPPED, PAUSED, UNKNOWN), DESTROYING),
    "expunge": ((DESTROYED,), EXPUNGING),
}


def state_error(vm: VmInstance, op: str) -> ApiError:
    allowed = OPERATIONS[op][0] if op in OPERATIONS else ()
    return ApiError(VM_STATE_ERROR, f"cannot {op} VmInstanceVO[uuid:{vm.uuid}, name:{vm.name}] in state "
                                    f"{vm.state}; it must be one of {list(allowed)}")


def host_url(s: Session, host_uuid: str) -> str:
    return agent_url(s.get(Host, host_uuid), host_uuid)


def agent_url(host: Any, host_uuid: str) -> str:
    """A host's agent address (`host`: its row, ORM or Core; None if gone)."""
    if host is None or not host.agentUrl:
        raise ApiError(VM_STATE_ERROR, f"HostVO[uuid:{host_uuid}] has no agent address")
    return host.agentUrl


def ps_url(s: Session, ps_uuid: str, host_uuid: str | None = None) -> str:
    """Where a primary storage's commands go: its own agent, or the host's for local storage."""
    ps = s.get(PrimaryStorage, ps_uuid)
    if ps is None:
        raise ApiError(VM_STATE_ERROR, f"PrimaryStorageVO[uuid:{ps_uuid}] is gone")
    if ps.agentUrl:
        return ps.agentUrl
    if host_uuid:
        return host_url(s, host_uuid)
    raise ApiError(VM_STATE_ERROR, f"PrimaryStorageVO[uuid:{ps_uuid}] has no agent address")


def volume_install_path(ps_url: str | None, volume_uuid: str, root: bool) -> str:
    """Where the MN places a new volume on its primary storage (the MN chooses, so recovery can
    delete a volume whose creation was cut short): `<ps url>/rootVolumes|dataVolumes/vol-<uuid>/<uuid>.qcow2`."""
    base = (ps_url or "/").rstrip("/")
    return f"{base}/{'rootVolumes' if root else 'dataVolumes'}/vol-{volume_uuid}/{volume_uuid}.qcow2"


def volume_to(v: Volume) -> VolumeTO:
    return VolumeTO(volumeUuid=v.uuid, installPath=v.installPath or "", deviceId=v.deviceId or 0,
                    format=v.format, size=v.size)


# Built once: every VM start asks them.
_L2_OF_L3S = select(L3Network.uuid, L3Network.l2NetworkUuid).where(L3Network.uuid.in_(bindparam("l3s", expanding=True)))
_L2S = select(L2Network.uuid, L2Network.vlan).where(L2Network.uuid.in_(bindparam("l2s", expanding=True)))


def nic_tos(s: Session, nics: list[VmNic]) -> list[NicTO]:
    if not nics:
        return []
    conn = s.connection()
    l3s = {r.uuid: r.l2NetworkUuid for r in conn.execute(_L2_OF_L3S, {"l3s": list({n.l3NetworkUuid for n in nics})})}
    l2s = {r.uuid: r for r in conn.execute(_L2S, {"l2s": list(set(l3s.values()))})}
    out = []
    for n in nics:
        l2 = l2s[l3s[n.l3NetworkUuid]]
        out.append(NicTO(uuid=n.uuid, mac=n.mac, bridgeName=bridge_name(l2.uuid, l2.vlan), deviceId=n.deviceId,
                         ip=n.ip, netmask=n.netmask, gateway=n.gateway, driverType=n.driverType,
                         l3NetworkUuid=n.l3NetworkUuid))
    return out


def vm_devices(s: Session, vm_uuid: str) -> dict[str, Any]:
    """The VM's root volume, attached data volumes and NICs, for a start command."""
    vols = s.scalars(select(Volume).where(Volume.vmInstanceUuid == vm_uuid).order_by(Volume.deviceId)).all()
    nics = s.scalars(select(VmNic).where(VmNic.vmInstanceUuid == vm_uuid).order_by(VmNic.deviceId)).all()
    root = next((v for v in vols if v.type == "Root"), None)
    return {"root": root, "data": [v for v in vols if v.type == "Data"], "nics": list(nics)}
