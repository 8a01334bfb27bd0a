"""Simulated hosts: AddSimulatorHost, and the simulator forgetting a simulated host deleted here.

Adding is a flow: insert the host row (Connecting), declare the host in the simulator (its admin
API), then the common connect steps (mn.services.host.CONNECT_STEPS); a failure at any step
deletes the row and the simulated host.
"""

from __future__ import annotations

import logging

from mn import extensions
from mn.api.registry import Msg, apis
from mn.connection import CONNECTING
from mn.context import ApiContext
from mn.errors import ApiError, invalid, wrap
from mn.flow import Flow, Step, register_flow
from mn.models import Host
from mn.query import Target, register_target
from mn.resource_types import HYPERVISORS, HypervisorType
from mn.services.common import add_tags, inventory, new_resource_uuid
from mn.services.host import CONNECT_STEPS, check_new_host, delete_host_row
from zstack_plugins.simulator.admin import require_simulator_url, simulated, simulator_admin

log = logging.getLogger(__name__)

SIMULATOR = "Simulator"
HYPERVISORS.register(HypervisorType(SIMULATOR))
register_target("SimulatorHostInventory", Target(Host, (("hypervisorType", SIMULATOR),)))


def _check_add_simulator(ctx: ApiContext, msg: Msg) -> None:
    uuid = new_resource_uuid(msg) if msg.get("resourceUuid") else None
    for p in ("cpuCapacity", "memoryCapacity"):
        if msg[p] <= 0:
            raise invalid(f"parameter '{p}' of AddSimulatorHost must be positive, got {msg[p]}")
    require_simulator_url(ctx, "simulator hosts")
    with ctx.db.ro() as s:
        check_new_host(s, msg, uuid, SIMULATOR)

def _insert_host(ctx: ApiContext, d: dict) -> None:
    msg = Msg(d["msg"])
    with ctx.db.tx() as s:
        cluster = check_new_host(s, msg, d["hostUuid"], SIMULATOR)
        s.add(Host(uuid=d["hostUuid"], name=msg.name, description=msg.get("description"),
                   zoneUuid=cluster.zoneUuid, clusterUuid=cluster.uuid, managementIp=msg.managementIp,
                   hypervisorType=cluster.hypervisorType, state="Enabled", status=CONNECTING,
                   agentUrl=d["agentUrl"]))
        add_tags(s, d["hostUuid"], "HostVO", msg)

def _declare_simulated_host(ctx: ApiContext, d: dict) -> None:
    simulator_admin(ctx, "PUT", f"/hosts/{d['hostUuid']}",
                         {"cpuNum": d["msg"]["cpuCapacity"], "memory": d["msg"]["memoryCapacity"],
                     "managementIp": d["msg"]["managementIp"]})

def _undeclare_simulated_host(ctx: ApiContext, d: dict) -> None:
    simulator_admin(ctx, "DELETE", f"/hosts/{d['hostUuid']}", missing_ok=True)

@register_flow("add-simulator-host")
def add_simulator_host_flow() -> Flow:
    return Flow("add-simulator-host", [
        Step("insert-host", _insert_host, delete_host_row),
        Step("declare-simulated-host", _declare_simulated_host, _undeclare_simulated_host),
        *CONNECT_STEPS,
    ])

@apis.handler("AddSimulatorHost", check=_check_add_simulator,
              sync_key=lambda msg: f"host-ip-{msg.managementIp}")
def add_simulator_host(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    sim = require_simulator_url(ctx, "simulator hosts")
    data = {"hostUuid": uuid, "agentUrl": f"{sim}/hosts/{uuid}", "msg": dict(msg)}
    try:
        ctx.run_flow(add_simulator_host_flow(), data)
    except Exception as exc:  # noqa: BLE001
        err = wrap(exc)
        raise ApiError(err.code, f"unable to add simulator host {msg.name} (managementIp "
                                 f"{msg.managementIp}): {err.details}", cause=err.cause,
                       http_status=err.http_status) from None
    return {"inventory": inventory(ctx, Host, uuid)}


@extensions.HOST_DELETED.register
def forget_host(ctx: ApiContext, host: extensions.DeletedHost) -> None:
    """A simulated host deleted here is deleted in the simulator too (best effort, logged)."""
    if host.hypervisor_type != SIMULATOR or not simulated(ctx, "hosts", host.agent_url):
        return
    try:
        _undeclare_simulated_host(ctx, {"hostUuid": host.uuid})
    except ApiError as err:
        log.warning("host %s deleted, but the simulator kept it: %s", host.uuid, err.details)
