"""Simulated storages: AddSimulatorPrimaryStorage, AddSimulatorBackupStorage, and the simulator
forgetting a simulated storage deleted here.

Adding is a flow: insert the row (Connecting), declare the storage in the simulator (its admin
API, with the capacity asked for), then the common steps (init or connect over the agent protocol,
Connected); a failure at any step deletes the row and the simulated storage.
"""

from __future__ import annotations

from mn import extensions
from mn.api.registry import Msg, apis, key_of
from mn.connection import CONNECTING
from mn.context import ApiContext
from mn.errors import ApiError, invalid
from mn.flow import Flow, Step, register_flow
from mn.models import BackupStorage, PrimaryStorage, Zone
from mn.resource_types import BACKUP_STORAGES, PRIMARY_STORAGES, BackupStorageType, PrimaryStorageType
from mn.services import backup_storage as bss
from mn.services import primary_storage as pss
from mn.services.common import add_tags, check_storage_path, get_or_404, inventory, new_resource_uuid
from zstack_plugins.simulator.admin import require_simulator_url, simulated, simulator_admin, undo_declare

SIMULATOR_PS = "SimulatorPrimaryStorage"
SIMULATOR_BS = "SimulatorBackupStorage"
DEFAULT_SIMULATED_CAPACITY = 1 << 40  # 1 TiB, when AddSimulatorBackupStorage names none
PRIMARY_STORAGES.register(PrimaryStorageType(SIMULATOR_PS))
BACKUP_STORAGES.register(BackupStorageType(SIMULATOR_BS))


# ---- primary storage ----------------------------------------------------------------------------

def _check_add_ps(ctx: ApiContext, msg: Msg) -> None:
    uuid = msg["resourceUuid"] = new_resource_uuid(msg)  # fixed now, so the job's sync key names it
    require_simulator_url(ctx, "simulator primary storage")
    check_storage_path(msg.url, "AddSimulatorPrimaryStorage")
    for p in ("totalCapacity", "availableCapacity", "totalPhysicalCapacity", "availablePhysicalCapacity"):
        if msg.get(p) is not None and msg[p] < 0:
            raise invalid(f"parameter '{p}' of AddSimulatorPrimaryStorage cannot be negative, got {msg[p]}")
    if msg.availableCapacity > msg.totalCapacity:
        raise invalid(f"availableCapacity ({msg.availableCapacity}) cannot exceed totalCapacity "
                      f"({msg.totalCapacity})")
    with ctx.db.ro() as s:
        get_or_404(s, Zone, msg.zoneUuid)
        if s.get(PrimaryStorage, uuid) is not None:
            raise invalid(f"resourceUuid {uuid} is already used by another primary storage")

def _insert_ps(ctx: ApiContext, d: dict) -> None:
    msg = Msg(d["msg"])
    with ctx.db.tx() as s:
        get_or_404(s, Zone, msg.zoneUuid)
        s.add(PrimaryStorage(uuid=d["uuid"], name=msg.name, description=msg.get("description"),
                             zoneUuid=msg.zoneUuid, url=msg.url, type=SIMULATOR_PS, state="Enabled",
                             status=CONNECTING, agentUrl=d["agentUrl"]))
        add_tags(s, d["uuid"], "PrimaryStorageVO", msg)

def _declare_ps(ctx: ApiContext, d: dict) -> None:
    try:
        simulator_admin(ctx, "PUT", f"/primary-storage/{d['uuid']}",
                        {"totalCapacity": d["msg"]["totalCapacity"],
                         "availableCapacity": d["msg"]["availableCapacity"]})
    except ApiError:
        undo_declare(ctx, "primary-storage", d["uuid"])  # a timed-out PUT may have landed
        raise

def _undeclare_ps(ctx: ApiContext, d: dict) -> None:
    simulator_admin(ctx, "DELETE", f"/primary-storage/{d['uuid']}", missing_ok=True)

@register_flow("add-simulator-primary-storage")
def add_ps_flow() -> Flow:
    return Flow("add-simulator-primary-storage", [
        Step("insert-row", _insert_ps, pss.delete_row),
        Step("declare-simulated-storage", _declare_ps, _undeclare_ps),
        *pss.INIT_STEPS,
    ])

@apis.handler("AddSimulatorPrimaryStorage", check=_check_add_ps,
              sync_key=key_of("resourceUuid", "primary-storage"))
def add_simulator_primary_storage(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    base = require_simulator_url(ctx, "simulator primary storage")
    d = {"uuid": uuid, "agentUrl": f"{base}/primary-storage/{uuid}", "msg": dict(msg)}
    ctx.run_flow(add_ps_flow(), d)
    return {"inventory": inventory(ctx, PrimaryStorage, uuid)}


# ---- backup storage -----------------------------------------------------------------------------

def _capacities(msg: Msg) -> tuple[int, int]:
    total = msg.get("totalCapacity")
    total = DEFAULT_SIMULATED_CAPACITY if total is None else total
    avail = msg.get("availableCapacity")
    return total, total if avail is None else avail

def _check_add_bs(ctx: ApiContext, msg: Msg) -> None:
    uuid = msg["resourceUuid"] = new_resource_uuid(msg)  # fixed now, so the job's sync key names it
    require_simulator_url(ctx, "simulator backup storage")
    check_storage_path(msg.url, "AddSimulatorBackupStorage")
    for p in ("totalCapacity", "availableCapacity"):
        if msg.get(p) is not None and msg[p] < 0:
            raise invalid(f"parameter '{p}' of AddSimulatorBackupStorage cannot be negative, got {msg[p]}")
    total, avail = _capacities(msg)
    if avail > total:
        raise invalid(f"availableCapacity ({avail}) cannot exceed totalCapacity ({total})")
    with ctx.db.ro() as s:
        if s.get(BackupStorage, uuid) is not None:
            raise invalid(f"resourceUuid {uuid} is already used by another backup storage")

def _insert_bs(ctx: ApiContext, d: dict) -> None:
    msg = Msg(d["msg"])
    with ctx.db.tx() as s:
        s.add(BackupStorage(uuid=d["uuid"], name=msg.name, description=msg.get("description"), url=msg.url,
                            type=SIMULATOR_BS, state="Enabled", status=CONNECTING, agentUrl=d["agentUrl"]))
        add_tags(s, d["uuid"], "BackupStorageVO", msg)

def _declare_bs(ctx: ApiContext, d: dict) -> None:
    total, avail = _capacities(Msg(d["msg"]))
    try:
        simulator_admin(ctx, "PUT", f"/backup-storage/{d['uuid']}",
                        {"totalCapacity": total, "availableCapacity": avail})
    except ApiError:
        undo_declare(ctx, "backup-storage", d["uuid"])  # a timed-out PUT may have landed
        raise

def _undeclare_bs(ctx: ApiContext, d: dict) -> None:
    simulator_admin(ctx, "DELETE", f"/backup-storage/{d['uuid']}", missing_ok=True)

@register_flow("add-simulator-backup-storage")
def add_bs_flow() -> Flow:
    return Flow("add-simulator-backup-storage", [
        Step("insert-row", _insert_bs, bss.delete_row),
        Step("declare-simulated-storage", _declare_bs, _undeclare_bs),
        *bss.CONNECT_STEPS,
    ])

@apis.handler("AddSimulatorBackupStorage", check=_check_add_bs, sync_key=key_of("resourceUuid", "backup-storage"))
def add_simulator_backup_storage(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    base = require_simulator_url(ctx, "simulator backup storage")
    d = {"uuid": uuid, "agentUrl": f"{base}/backup-storage/{uuid}", "msg": dict(msg)}
    ctx.run_flow(add_bs_flow(), d)
    return {"inventory": inventory(ctx, BackupStorage, uuid)}


# ---- deleted here, forgotten there --------------------------------------------------------------

@extensions.PRIMARY_STORAGE_DELETED.register
def forget_primary_storage(ctx: ApiContext, ps: extensions.DeletedStorage) -> None:
    if ps.type == SIMULATOR_PS and simulated(ctx, "primary-storage", ps.agent_url):
        undo_declare(ctx, "primary-storage", ps.uuid)


@extensions.BACKUP_STORAGE_DELETED.register
def forget_backup_storage(ctx: ApiContext, bs: extensions.DeletedStorage) -> None:
    if bs.type == SIMULATOR_BS and simulated(ctx, "backup-storage", bs.agent_url):
        undo_declare(ctx, "backup-storage", bs.uuid)
