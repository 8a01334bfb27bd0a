"""Keeping VMs true to reality: agent-reported state changes, crash reconciliation, cascades,
and the periodic expunge of destroyed VMs.

Reconcile invariant (run at MN start after journaled flows were rolled back): no VM is left in
a transitional state, and every host's available capacity equals its total minus what the VMs
in HOLDING_STATES on it hold.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select, update

from kvmagent.protocol import VmSyncCmd, VmSyncRsp
from mn import cascade, extensions
from mn.background import periodic
from mn.context import ApiContext, Services
from mn.db.base import utcnow
from mn.errors import ApiError
from mn.globalconfig import VM_DELETION_POLICY, VM_EXPUNGE_PERIOD
from mn.models import Host, IpRange, L3Network, UsedIp, VmInstance, VmNic, Volume
from mn.recovery import reconciler
from mn.services.vm_common import (
    DESTROYED,
    DESTROYING,
    EXPUNGING,
    PAUSED,
    RUNNING,
    STOPPED,
    TRANSITIONAL,
    UNKNOWN,
)

log = logging.getLogger(__name__)


def _release_and_stop(ctx: ApiContext, s: Any, vm: VmInstance, state: str = STOPPED) -> None:
    from mn.services.vm_ops import release_host_capacity

    release_host_capacity(ctx, s, vm)
    s.execute(update(VmInstance).where(VmInstance.uuid == vm.uuid).values(
        state=state, hostUuid=None, lastHostUuid=vm.hostUuid or vm.lastHostUuid))


def apply_reported_state(ctx: ApiContext, vm_uuid: str, host_uuid: str, reported: str | None) -> None:
    """Bring a VM in a stable state in line with what its host reports (None: not on the host).
    A VM found stopped also has its network services released on that host (best effort)."""
    stopped = False
    with ctx.db.tx() as s:
        vm = s.get(VmInstance, vm_uuid)
        if vm is not None and vm.hostUuid != host_uuid:
            log.warning("host %s reported VM %s as %s, but the VM is on host %s: ignored", host_uuid, vm_uuid,
                        reported or "gone", vm.hostUuid)
            return
        if vm is None or vm.state in TRANSITIONAL:
            return
        if reported in (None, STOPPED) and vm.state in (RUNNING, PAUSED, UNKNOWN):
            log.warning("VM %s is %s on host %s; marking it Stopped", vm_uuid, reported or "gone", host_uuid)
            _release_and_stop(ctx, s, vm)
            stopped = True
        elif reported in (RUNNING, PAUSED) and vm.state != reported and vm.state in (RUNNING, PAUSED, UNKNOWN):
            s.execute(update(VmInstance).where(VmInstance.uuid == vm_uuid).values(state=reported))
    if stopped:
        from mn.services.vm_ops import release_network

        release_network(ctx, vm_uuid, host_uuid)


def _on_vm_state_changed(svc: Services, event: dict[str, Any]) -> None:
    vm_uuid, host_uuid = event.get("vmUuid"), event.get("hostUuid")
    if not vm_uuid or not host_uuid:
        return
    ctx = ApiContext(svc)
    svc.job_runner().submit_internal(
        f"vm-{vm_uuid}", lambda: apply_reported_state(ctx, vm_uuid, host_uuid, event.get("state")) or {})


extensions.AGENT_EVENTS["VmStateChanged"] = _on_vm_state_changed


def _host_states(ctx: ApiContext, host_uuid: str) -> dict[str, str] | None:
    with ctx.db.ro() as s:
        h = s.get(Host, host_uuid)
        url = h.agentUrl if h is not None else None
    if not url:
        return None
    try:
        return ctx.agents.send(url, VmSyncCmd(hostUuid=host_uuid), VmSyncRsp, timeout=30).states
    except ApiError as exc:
        log.warning("vmsync of host %s failed: %s", host_uuid, exc)
        return None


@reconciler("vm")
def reconcile_vms(svc: Services) -> None:
    ctx = ApiContext(svc)
    with svc.db.ro() as s:
        stuck = list(s.scalars(select(VmInstance).where(VmInstance.state.in_(TRANSITIONAL))))
    by_host: dict[str | None, list[VmInstance]] = {}
    for vm in stuck:
        by_host.setdefault(vm.hostUuid, []).append(vm)
    for host_uuid, vms in by_host.items():
        states = _host_states(ctx, host_uuid) if host_uuid else {}
        with svc.db.tx() as s:
            for vm in vms:
                if vm.state == EXPUNGING or (vm.state == DESTROYING and (states is None or vm.uuid not in states)):
                    _release_and_stop(ctx, s, vm, DESTROYED)
                elif states is None:
                    s.execute(update(VmInstance).where(VmInstance.uuid == vm.uuid).values(state=UNKNOWN))
                elif states.get(vm.uuid) in (RUNNING, PAUSED):
                    s.execute(update(VmInstance).where(VmInstance.uuid == vm.uuid).values(state=states[vm.uuid]))
                else:
                    _release_and_stop(ctx, s, vm)
                log.warning("reconciled VM %s from %s", vm.uuid, vm.state)
    with svc.db.tx() as s:
        # Volumes a dead MN left Creating belong to no journaled flow any more: not instantiated.
        s.execute(update(Volume).where(Volume.status == "Creating", Volume.installPath.is_(None))
                  .values(status="NotInstantiated", primaryStorageUuid=None))
    try:
        from mn.services.host_capacity import recompute_host_capacity
    except ImportError:  # the host module is optional in unit tests
        return
    from mn.services.host_capacity import drifted_hosts

    with svc.db.ro() as s:
        hosts = drifted_hosts(s)  # one grouped read; writes only where capacity drifted
    for h in hosts:
        with svc.db.tx() as s:
            recompute_host_capacity(s, h)


# ---- cascades -----------------------------------------------------------------------------------

def _vms_on_host(s: Any, host_uuid: str) -> list[str]:
    return list(s.scalars(select(VmInstance.uuid).where(VmInstance.hostUuid == host_uuid)))


def _vm_host_deleted(ctx: ApiContext, vm_uuid: str, mode: str) -> None:
    """The VM's host is being deleted: the VM is stopped (best effort on the agent)."""
    from mn.services.vm_ops import stop_vm

    try:
        stop_vm(ctx, vm_uuid, "cold")
    except ApiError:
        with ctx.db.tx() as s:
            vm = s.get(VmInstance, vm_uuid)
            if vm is not None:
                _release_and_stop(ctx, s, vm, DESTROYED if vm.state in (DESTROYING, DESTROYED) else STOPPED)


def _nics_on_l3(s: Any, l3_uuid: str) -> list[str]:
    return list(s.scalars(select(VmNic.uuid).where(VmNic.l3NetworkUuid == l3_uuid)))


def _nics_in_range(s: Any, range_uuid: str) -> list[str]:
    return list(s.scalars(select(UsedIp.vmNicUuid).where(UsedIp.ipRangeUuid == range_uuid,
                                                          UsedIp.vmNicUuid.is_not(None))))


def _detach(ctx: ApiContext, nic_uuid: str, mode: str) -> None:
    from mn.services.vm_nic import detach_nic

    detach_nic(ctx, nic_uuid)


cascade.dependent(Host, "VmInstanceVO", _vms_on_host, _vm_host_deleted)
cascade.dependent(L3Network, "VmNicVO", _nics_on_l3, _detach)
cascade.dependent(IpRange, "VmNicVO", _nics_in_range, _detach)


# ---- expunge ------------------------------------------------------------------------------------

def _expunge_interval(svc: Services) -> float:
    return float(min(600, max(1, svc.gconf.get(VM_EXPUNGE_PERIOD) // 4)))


@periodic("expunge-destroyed-vms", _expunge_interval)
def expunge_destroyed(svc: Services) -> None:
    if svc.gconf.get(VM_DELETION_POLICY) != "Delay":
        return
    cutoff = utcnow() - dt.timedelta(seconds=svc.gconf.get(VM_EXPUNGE_PERIOD))
    with svc.db.ro() as s:
        due = list(s.scalars(select(VmInstance.uuid).where(VmInstance.state == DESTROYED,
                                                            VmInstance.lastOpDate < cutoff).limit(500)))
    from mn.services.vm_ops import expunge_vm

    ctx = ApiContext(svc)
    for vm_uuid in due:
        def work(u: str = vm_uuid) -> dict:
            try:
                expunge_vm(ctx, u)
            except ApiError as exc:
                log.warning("expunging VM %s failed: %s", u, exc)
            return {}

        svc.job_runner().submit_internal(f"vm-{vm_uuid}", work)


# ---- host hooks ---------------------------------------------------------------------------------

def _host_disconnected(ctx: ApiContext, host_uuid: str) -> None:
    """VMs on a host that stopped answering are Unknown until the host is back."""
    with ctx.db.tx() as s:
        s.execute(update(VmInstance).where(VmInstance.hostUuid == host_uuid,
                                           VmInstance.state.in_((RUNNING, PAUSED))).values(state=UNKNOWN))


def _host_connected(ctx: ApiContext, host_uuid: str) -> None:
    """On (re)connect: VMs the database places on the host take the states the host reports, and
    VMs the host runs that the database does not place there (strays, e.g. destroyed while the
    host was unreachable) are destroyed on it."""
    states = _host_states(ctx, host_uuid)
    if states is None:
        return
    with ctx.db.ro() as s:
        placed = {u: st for u, st in s.execute(select(VmInstance.uuid, VmInstance.state)
                                                   .where(VmInstance.hostUuid == host_uuid))}
    for vm_uuid, state in placed.items():
        if state in (RUNNING, PAUSED, UNKNOWN):
            apply_reported_state(ctx, vm_uuid, host_uuid, states.get(vm_uuid))
    strays = [u for u in states if u not in placed]
    if strays:
        from kvmagent.protocol import DestroyVmCmd

        with ctx.db.ro() as s:
            url = s.get(Host, host_uuid).agentUrl
            moving = set(s.scalars(select(VmInstance.uuid).where(VmInstance.uuid.in_(strays),
                                                                  VmInstance.state.in_(TRANSITIONAL))))
        for vm_uuid in strays:
            if vm_uuid in moving:  # being started or migrated here right now: not a stray
                continue
            log.warning("host %s runs VM %s, which the database does not place there: destroying it",
                        host_uuid, vm_uuid)
            try:
                ctx.agents.send(url, DestroyVmCmd(uuid=vm_uuid, hostUuid=host_uuid), timeout=60)
            except ApiError as exc:
                log.warning("destroying stray VM %s on host %s failed: %s", vm_uuid, host_uuid, exc)


def _host_maintenance(ctx: ApiContext, host_uuid: str) -> None:
    """Entering maintenance: running VMs migrate away (or stop when no host can take them)."""
    from mn.services.vm_ops import migrate_vm, stop_vm

    with ctx.db.ro() as s:
        vms = list(s.execute(select(VmInstance.uuid, VmInstance.state).where(VmInstance.hostUuid == host_uuid)))
    for vm_uuid, state in vms:
        if state == RUNNING:
            try:
                migrate_vm(ctx, vm_uuid, None)
                continue
            except ApiError as exc:
                log.warning("VM %s cannot migrate off host %s (%s); stopping it", vm_uuid, host_uuid, exc)
        if state in (RUNNING, PAUSED, UNKNOWN):
            stop_vm(ctx, vm_uuid, "cold")


extensions.HOST_DISCONNECTED.register(_host_disconnected)
extensions.HOST_CONNECTED.register(_host_connected)
extensions.HOST_MAINTENANCE.register(_host_maintenance)
