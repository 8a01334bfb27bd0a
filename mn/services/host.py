"""Hosts: UpdateHost, ChangeHostState, ReconnectHost, DeleteHost, GetHypervisorTypes.

`status` is connectivity (Connecting -> Connected | Disconnected), `state` is the admin state
(Enabled, Disabled, PreMaintenance -> Maintenance). Invariants:
- Connecting a host is a flow of small steps with rollback. Each hypervisor's plugin adds hosts
  (AddKVMHost, AddSimulatorHost) with its own first steps, then CONNECT_STEPS (connect, facts and
  capacity, HOST_CONNECTED hooks, Connected). A failed add leaves no host row (delete_host_row);
  a failed reconnect leaves the host Disconnected.
- Only one connect flow runs per host: a reconnect first claims the host with a compare-and-swap
  of its status to Connecting (the tracker claims in bulk before it reconnects).
- managementIp is unique among hosts.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kvmagent.protocol import DEFAULT_PORT, ConnectCmd, ConnectRsp, HostFactCmd, HostFactRsp
from mn import extensions
from mn.agent import EVENTS_PATH
from mn.api.registry import Msg, apis, key_of
from mn.cascade import cascade, dependent
from mn.connection import CONNECTED, CONNECTING, DISCONNECTED
from mn.context import ApiContext
from mn.errors import (
    AGENT_ERROR,
    CHANGE_RESOURCE_STATE_ERROR,
    OPERATION_ERROR,
    ApiError,
    invalid,
    operr,
    wrap,
)
from mn.flow import Flow, Step, register_flow
from mn.globalconfig import CPU_OVER_PROVISIONING, MEMORY_OVER_PROVISIONING
from mn.inventory import to_inventory
from mn.models import ApiJob, Cluster, Host
from mn.recovery import reconciler
from mn.resource_types import HYPERVISORS
from mn.services.common import (
    cas,
    check_exists,
    forget_resource,
    get_or_404,
    inventory,
    transition,
)
from mn.services.host_capacity import host_totals, recompute_host_capacity

log = logging.getLogger(__name__)



def agent_url(host: Any) -> str:
    """Where a host's agent listens: the stored agentUrl, else the KVM agent on its managementIp."""
    return host.agentUrl or f"http://{host.managementIp}:{DEFAULT_PORT}"


# ---- checks -------------------------------------------------------------------------------------

def ip_in_use(s: Session, ip: str, except_uuid: str | None = None) -> str | None:
    q = select(Host.uuid).where(Host.managementIp == ip)
    if except_uuid is not None:
        q = q.where(Host.uuid != except_uuid)
    return s.scalars(q.limit(1)).first()


def check_new_host(s: Session, msg: Msg, uuid: str | None, hypervisor: str) -> Cluster:
    cluster = get_or_404(s, Cluster, msg.clusterUuid)
    if cluster.hypervisorType != hypervisor:
        raise invalid(f"cluster[uuid:{cluster.uuid}] has hypervisorType {cluster.hypervisorType}; "
                      f"a {hypervisor} host can only be added to a cluster of hypervisorType {hypervisor}")
    other = ip_in_use(s, msg.managementIp)
    if other is not None:
        raise invalid(f"managementIp {msg.managementIp} is already used by host[uuid:{other}]")
    if uuid is not None and s.get(Host, uuid) is not None:
        raise invalid(f"resourceUuid {uuid} is already used by another host")
    return cluster


def _check(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, Host, msg.uuid)


# ---- connect flow steps -------------------------------------------------------------------------

def delete_host_row(ctx: ApiContext, d: dict) -> None:
    """Rollback of an add's insert: the host row (rows extending it go with it) and its tags."""
    with ctx.db.tx() as s:
        h = s.get(Host, d["hostUuid"])
        if h is not None:
            forget_resource(s, h.uuid)
            s.delete(h)


def _claim(ctx: ApiContext, d: dict) -> None:
    """Reconnect: take the host by a CAS of its status to Connecting (unless already claimed)."""
    if d.get("claimed"):
        return
    with ctx.db.tx() as s:
        h = get_or_404(s, Host, d["hostUuid"])
        if not cas(s, Host, h.uuid, [CONNECTED, DISCONNECTED], CONNECTING, field="status"):
            raise ApiError(CHANGE_RESOURCE_STATE_ERROR,
                           f"host[uuid:{h.uuid}] is being connected now (status {h.status}); "
                           "retry when that ends")


def _mark_disconnected(ctx: ApiContext, d: dict) -> None:
    with ctx.db.tx() as s:
        s.execute(update(Host).where(Host.uuid == d["hostUuid"]).values(status=DISCONNECTED))


def _connect(ctx: ApiContext, d: dict) -> None:
    extensions.HOST_BEFORE_CONNECT.run(ctx, d["hostUuid"])
    url = f"{ctx.config.public_url}{EVENTS_PATH}"
    ctx.agents.send(d["agentUrl"], ConnectCmd(hostUuid=d["hostUuid"], sendCommandUrl=url), ConnectRsp)


def _facts(ctx: ApiContext, d: dict) -> None:
    """Record the host's facts and capacity; available capacity keeps what its VMs hold."""
    uuid = d["hostUuid"]
    f: HostFactRsp = ctx.agents.send(d["agentUrl"], HostFactCmd(hostUuid=uuid), HostFactRsp)
    if not f.cpuNum or f.cpuNum <= 0 or not f.totalMemory or f.totalMemory <= 0:
        raise ApiError(AGENT_ERROR, f"the agent of host[uuid:{uuid}] reported cpuNum={f.cpuNum} and "
                                    f"totalMemory={f.totalMemory}; both must be positive")
    total_cpu, total_mem = host_totals(f.cpuNum, f.totalMemory, ctx.gconf.get(CPU_OVER_PROVISIONING))
    with ctx.db.tx() as s:
        res = s.execute(update(Host).where(Host.uuid == uuid).values(
            cpuNum=f.cpuNum, cpuSockets=f.cpuSockets or 1, architecture=f.architecture,
            totalPhysicalMemory=f.totalMemory, totalCpuCapacity=total_cpu, totalMemoryCapacity=total_mem))
        if res.rowcount != 1:
            raise operr(f"host[uuid:{uuid}] was deleted while it was connecting")
        recompute_host_capacity(s, uuid, ctx.gconf.get(MEMORY_OVER_PROVISIONING))


def _connected_hooks(ctx: ApiContext, d: dict) -> None:
    extensions.HOST_CONNECTED.run(ctx, d["hostUuid"])


def _mark_connected(ctx: ApiContext, d: dict) -> None:
    with ctx.db.tx() as s:
        if not cas(s, Host, d["hostUuid"], [CONNECTING], CONNECTED, field="status"):
            raise operr(f"host[uuid:{d['hostUuid']}] left status Connecting while it was connecting "
                        "(deleted, or marked Disconnected by another management node)")


CONNECT_STEPS = [
    Step("connect", _connect),
    Step("facts", _facts),
    Step("host-connected-hooks", _connected_hooks),
    Step("mark-connected", _mark_connected),
]


@register_flow("reconnect-host")
def reconnect_host_flow() -> Flow:
    return Flow("reconnect-host", [Step("claim", _claim, _mark_disconnected), *CONNECT_STEPS])


def reconnect_host(ctx: ApiContext, uuid: str, claimed: bool = False) -> None:
    """Run the connect flow on an existing host; on failure it is Disconnected and the error raised.

    `claimed` means the caller already moved the host's status to Connecting (the tracker).
    """
    with ctx.db.ro() as s:
        h = get_or_404(s, Host, uuid)
        url = agent_url(h)
    try:
        ctx.run_flow(reconnect_host_flow(), {"hostUuid": uuid, "agentUrl": url, "claimed": claimed})
    except Exception as exc:  # noqa: BLE001
        err = wrap(exc)
        if err.code == CHANGE_RESOURCE_STATE_ERROR:
            raise err from None
        raise ApiError(err.code, f"unable to reconnect host[uuid:{uuid}], it is now Disconnected: "
                                 f"{err.details}", cause=err.cause) from None


# ---- APIs ---------------------------------------------------------------------------------------

@apis.handler("UpdateHost", check=_check, sync_key=key_of("uuid", "host"))
def update_host(ctx: ApiContext, msg: Msg) -> dict:
    """Name, description and managementIp (unique); a KVM agent URL follows its managementIp."""
    with ctx.db.tx() as s:
        h = get_or_404(s, Host, msg.uuid)
        ip = msg.get("managementIp")
        if ip is not None and ip != h.managementIp:
            other = ip_in_use(s, ip, except_uuid=h.uuid)
            if other is not None:
                raise invalid(f"managementIp {ip} is already used by host[uuid:{other}]")
            if h.agentUrl == f"http://{h.managementIp}:{DEFAULT_PORT}":
                h.agentUrl = f"http://{ip}:{DEFAULT_PORT}"
            h.managementIp = ip
        for f in ("name", "description"):
            if msg.get(f) is not None:
                setattr(h, f, msg[f])
        s.flush()
        return {"inventory": to_inventory(s, h)}


def _enter_maintenance(ctx: ApiContext, uuid: str) -> None:
    """Enabled/Disabled -> PreMaintenance -> HOST_MAINTENANCE hooks -> Maintenance; back on failure."""
    with ctx.db.ro() as s:
        previous = get_or_404(s, Host, uuid).state
    if previous == "Maintenance":
        return
    if previous not in ("Enabled", "Disabled"):
        raise ApiError(CHANGE_RESOURCE_STATE_ERROR,
                       f"host[uuid:{uuid}] is {previous}; only an Enabled or Disabled host can enter maintenance")
    transition(ctx, Host, uuid, [previous], "PreMaintenance")
    try:
        extensions.HOST_MAINTENANCE.run(ctx, uuid)
    except Exception as exc:  # noqa: BLE001
        transition(ctx, Host, uuid, ["PreMaintenance"], previous)
        err = wrap(exc)
        # A HOST_MAINTENANCE hook refuses by raising: its message is the reason users are shown.
        reason = err.details if isinstance(exc, ApiError) else str(exc)
        raise ApiError(OPERATION_ERROR, f"host[uuid:{uuid}] cannot enter maintenance and is back in "
                                        f"state {previous}: {reason}", cause=err) from None
    transition(ctx, Host, uuid, ["PreMaintenance"], "Maintenance")


@apis.handler("ChangeHostState", check=_check, sync_key=key_of("uuid", "host"))
def change_host_state(ctx: ApiContext, msg: Msg) -> dict:
    event = msg.stateEvent
    if event == "maintain":
        _enter_maintenance(ctx, msg.uuid)
    else:
        new = {"enable": "Enabled", "disable": "Disabled"}.get(event)
        if new is None:
            raise invalid(f"unknown stateEvent {event!r} for a host; valid: enable, disable, maintain")
        transition(ctx, Host, msg.uuid, ["Enabled", "Disabled", "Maintenance"], new)
    return {"inventory": inventory(ctx, Host, msg.uuid)}


@apis.handler("ReconnectHost", check=_check, sync_key=key_of("uuid", "host"))
def api_reconnect_host(ctx: ApiContext, msg: Msg) -> dict:
    reconnect_host(ctx, msg.uuid)
    return {"inventory": inventory(ctx, Host, msg.uuid)}


def delete_host(ctx: ApiContext, uuid: str, mode: str) -> None:
    """Cascade to the host's dependents (VMs), delete the row, then the HOST_DELETED hooks."""
    cascade(ctx, Host, uuid, mode)
    with ctx.db.tx() as s:
        h = s.get(Host, uuid)
        if h is None:
            return
        gone = extensions.DeletedHost(uuid, h.clusterUuid, h.hypervisorType, h.agentUrl)
        forget_resource(s, uuid)
        s.delete(h)
    extensions.HOST_DELETED.run(ctx, gone)


@apis.handler("DeleteHost", check=_check, sync_key=key_of("uuid", "host"))
def api_delete_host(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        get_or_404(s, Host, msg.uuid)
    delete_host(ctx, msg.uuid, msg.deleteMode)
    return {}


@apis.handler("GetHypervisorTypes")
def get_hypervisor_types(ctx: ApiContext, msg: Msg) -> dict:
    return {"hypervisorTypes": HYPERVISORS.names()}


def _hosts_of_cluster(s: Session, cluster_uuid: str) -> list[str]:
    return list(s.scalars(select(Host.uuid).where(Host.clusterUuid == cluster_uuid).order_by(Host.uuid)))


dependent(Cluster, "HostVO", _hosts_of_cluster, delete_host)


@reconciler("host")
def reconcile_hosts(svc: Any) -> None:
    """At MN start: hosts left Connecting become Disconnected (the tracker reconnects them) and
    hosts left PreMaintenance become Disabled, unless a running job of a live MN owns them."""
    with svc.db.tx() as s:
        busy = set(s.scalars(select(ApiJob.syncKey).where(ApiJob.state == "Processing",
                                                          ApiJob.syncKey.is_not(None))))
        rows = s.execute(select(Host.uuid, Host.managementIp, Host.status, Host.state)
                         .where((Host.status == CONNECTING) | (Host.state == "PreMaintenance"))).all()
        for uuid, ip, status, state in rows:
            if f"host-{uuid}" in busy or f"host-ip-{ip}" in busy:
                continue
            if status == CONNECTING:
                cas(s, Host, uuid, [CONNECTING], DISCONNECTED, field="status")
            if state == "PreMaintenance":
                cas(s, Host, uuid, ["PreMaintenance"], "Disabled")
            log.warning("host %s was left %s/%s by a stopped management node; repaired", uuid, status, state)

