"""The create-vm flows against a real (SQLite) database and an in-process simulator: the MN dies
after each step or in the middle of an agent call; recovery (mn.recovery.recover), working from
the journal read back as JSON, must leave the database and the agents as they were."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from mn.context import ApiContext
from mn.flow import Flow
from mn.models import ApiJob, VmInstance, Volume
from mn.recovery import recover
from mn.services.vm_create import create_vm
from tests.unit.vm_env import MN, Crash, copied, create_msg, footprint, migrated, new_job, services

STEPS = {
    "InstantStart": ["allocate", "root-volume", "data-volumes", "prepare-net", "start", "finalize"],
    "CreateStopped": ["allocate", "root-volume", "data-volumes", "finalize"],
    "JustCreate": ["allocate", "finalize"],
}
IN_FLIGHT = ["/primarystorage/volume/createfromimage", "/primarystorage/volume/createempty", "/vm/start"]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return migrated(tmp_path_factory.mktemp("template") / "unit.db")


@pytest.fixture
def svc(template, tmp_path):
    db = copied(template, tmp_path)
    yield services(db, tmp_path)
    db.dispose()


def _crash(svc, monkeypatch, strategy: str, after: str | None = None, agent: str | None = None,
           **msg: Any) -> tuple[str, Flow, dict[str, Any]]:
    """Create a VM and let the MN 'die' after step `after` or inside agent command `agent`: no
    rollback runs, the job row keeps the journal as the flow left it. Returns (job, flow, data)."""
    job = new_job(svc.db)
    ctx = ApiContext(svc, job_uuid=job)
    seen: list[tuple[Flow, dict[str, Any]]] = []

    def run_flow(flow: Flow, data: dict[str, Any]) -> dict[str, Any]:
        seen.append((flow, data))
        return ApiContext.run_flow(ctx, flow, data)

    ctx.run_flow = run_flow  # type: ignore[method-assign]
    if after is not None:
        svc.flow_faults = {f"{_flow_name(strategy)}:{after}"}
    if agent is not None:
        svc.agents.crash_after = {agent}
    with monkeypatch.context() as m:
        m.setattr(Flow, "_rollback", lambda *a: None)  # a dead MN rolls nothing back
        with pytest.raises((Crash, Exception)):
            create_vm(ctx, create_msg(strategy=strategy, **msg))
    svc.flow_faults = set()
    svc.agents.crash_after = set()
    return job, *seen[0]


def _flow_name(strategy: str) -> str:
    return {"InstantStart": "create-vm", "CreateStopped": "create-vm-stopped", "JustCreate": "create-vm-record"}[strategy]


def _journal_now(svc, job: str, flow: Flow, data: dict[str, Any], done: list[str]) -> None:
    """Write the entry a flow journaling before every step would have left (data as it is now)."""
    with svc.db.tx() as s:
        s.get(ApiJob, job).flowState = json.dumps({"flow": flow.name, "done": done, "data": data})


def _journal(svc, job: str) -> dict[str, Any]:
    with svc.db.ro() as s:
        return json.loads(s.get(ApiJob, job).flowState)


def test_a_vm_is_created_running_and_its_volumes_ready(svc):
    before = footprint(svc)
    vm = create_vm(ApiContext(svc, job_uuid=new_job(svc.db)), create_msg())
    with svc.db.ro() as s:
        assert s.get(VmInstance, vm).state == "Running"
        assert {v.status for v in s.query(Volume).filter_by(vmInstanceUuid=vm)} == {"Ready"}
    after = footprint(svc)
    assert after["host"] == (before["host"][0] - 2, before["host"][1] - (1 << 30))
    assert (after["vm_instance"], after["volume"], after["vm_nic"], after["used_ip"]) == (1, 2, 1, 1)
    assert len(after["sim-vms"]) == 1 and len(after["sim-volumes"]) == 2


CASES = [(st, step) for st, steps in STEPS.items() for step in steps]


@pytest.mark.parametrize("journal", ["as-left", "every-step"])
@pytest.mark.parametrize(("strategy", "after"), CASES)
def test_recovery_after_a_crash_after_each_step_undoes_everything(svc, monkeypatch, strategy, after, journal):
    before = footprint(svc)
    job, flow, data = _crash(svc, monkeypatch, strategy, after=after)
    if journal == "every-step":
        names = [s.name for s in flow.steps]
        _journal_now(svc, job, flow, data, names[:names.index(after) + 1])
    assert _journal(svc, job)["done"]  # allocate's entry committed with its effects
    recover(svc, [MN], reconcile=False)
    assert svc.jobs.finished == {job: "Failed"}
    assert footprint(svc) == before


@pytest.mark.parametrize("journal", ["as-left", "every-step"])
@pytest.mark.parametrize("agent", IN_FLIGHT)
def test_recovery_after_a_crash_inside_an_agent_call_undoes_everything(svc, monkeypatch, agent, journal):
    before = footprint(svc)
    job, flow, data = _crash(svc, monkeypatch, "InstantStart", agent=agent)
    if journal == "every-step":
        in_flight = {IN_FLIGHT[0]: "root-volume", IN_FLIGHT[1]: "data-volumes", IN_FLIGHT[2]: "start"}[agent]
        names = [s.name for s in flow.steps]
        _journal_now(svc, job, flow, data, names[:names.index(in_flight) + 1])
    recover(svc, [MN], reconcile=False)
    assert footprint(svc) == before


def test_recovery_without_data_disks(svc, monkeypatch):
    before = footprint(svc)
    _crash(svc, monkeypatch, "InstantStart", after="start", dataDiskSizes=[])
    recover(svc, [MN], reconcile=False)
    assert footprint(svc) == before


_UUID = re.compile(r"^[0-9a-f]{32}$")


def _shape(v: Any) -> Any:
    """A JSON value's shape: keys (uuid keys as "<uuid>"), list items and scalar types."""
    if isinstance(v, dict):
        return {("<uuid>" if _UUID.match(k) else k): _shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_shape(x) for x in v]
    return type(v).__name__


# The journal entry allocate writes (the only one create-vm writes: the later steps are covered by
# it), as the dict-based flow data wrote it: journals of an MN that ran that code must still be
# recovered, so its shape may not change.
PLAN_SHAPE = {
    "vm_uuid": "str", "name": "str", "cpu": "int", "memory": "int", "reserved_memory": "int",
    "offering_uuid": "NoneType", "allocator_strategy": "str",
    "image": {"uuid": "str", "size": "int", "format": "str", "mediaType": "str", "platform": "str",
              "architecture": "str", "guestOsType": "NoneType"},
    "root_size": "int", "root_disk_offering": "NoneType", "data_disks": [{"size": "int", "diskOfferingUuid": "NoneType"}],
    "l3s": ["str"], "default_l3": "str", "static_ips": {}, "zone_uuid": "NoneType", "cluster_uuid": "NoneType",
    "host_uuid": "NoneType", "ps_uuid": "NoneType", "strategy": "str", "description": "NoneType",
    "platform": "str", "guest_os": "NoneType", "architecture": "str", "system_tags": [], "user_tags": [],
}
PLACE = {"url": "str", "ps": "str", "host": "str", "path": "str"}
ALLOCATE_ENTRY = {
    "flow": "str", "done": ["str"] * 5,
    "data": {"plan": PLAN_SHAPE, "rootVolumeUuid": "str", "dataVolumeUuids": ["str"], "nicUuids": ["str"],
             "reserved": {"host": "str", "cpu": "int", "memory": "int"},
             "psReserved": {"ps": "str", "size": "int", "ratio": "float"},
             "paths": {"<uuid>": PLACE}, "zone": "str"},
}


def test_the_journal_keeps_the_shape_the_dict_based_flow_wrote(svc, monkeypatch):
    job, _, _ = _crash(svc, monkeypatch, "InstantStart", after="allocate")
    entry = _journal(svc, job)
    assert entry["done"] == ["allocate", "root-volume", "data-volumes", "prepare-net", "start"]
    expect = json.loads(json.dumps(ALLOCATE_ENTRY))
    expect["data"]["paths"] = {"<uuid>": PLACE}  # root and data volume: both uuid keys
    assert _shape(entry) == expect
