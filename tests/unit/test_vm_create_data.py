"""The typed view of create-vm's flow data: it reads and writes the dict the flow engine journals,
and reads a dict of the shape the dict-based steps wrote, as read back from JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mn.services.vm_create_data import (
    CreateVmData,
    DataDisk,
    ImageRef,
    Installed,
    Plan,
    PsReservation,
    Reservation,
    StartCall,
    VolumePlace,
    typed,
)

U = {k: k * 32 for k in "abcdefghijklm"}


def _plan(**kw: Any) -> Plan:
    fields: dict[str, Any] = dict(
        vm_uuid=U["a"], name="vm", cpu=2, memory=2 << 30, reserved_memory=1 << 30, offering_uuid=None,
        allocator_strategy="DefaultHostAllocatorStrategy",
        image=ImageRef(U["b"], 1 << 30, "qcow2", "RootVolumeTemplate", "Linux", "x86_64", None),
        root_size=1 << 31, root_disk_offering=None, data_disks=[DataDisk(1 << 30, U["c"]), DataDisk(5)],
        l3s=[U["d"]], default_l3=U["d"], static_ips={U["d"]: "10.0.0.9"}, zone_uuid=None, cluster_uuid=None,
        host_uuid=None, ps_uuid=None, strategy="InstantStart", description=None, platform="Linux",
        guest_os=None, architecture="x86_64", system_tags=["staticIp::x"], user_tags=[])
    return Plan(**{**fields, **kw})


def _reloaded(raw: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(raw))


# What the dict-based steps left in the data after `start` (values as they wrote them).
OLD = {
    "plan": {"vm_uuid": U["a"], "name": "vm", "cpu": 1, "memory": 1 << 30, "reserved_memory": 1 << 30,
             "offering_uuid": U["e"], "allocator_strategy": "DefaultHostAllocatorStrategy",
             "image": {"uuid": U["b"], "size": 1024, "format": "qcow2", "mediaType": "RootVolumeTemplate",
                       "platform": "Linux", "architecture": "x86_64", "guestOsType": None},
             "root_size": 1024, "root_disk_offering": None, "data_disks": [{"size": 1 << 30, "diskOfferingUuid": None}],
             "l3s": [U["d"]], "default_l3": U["d"], "static_ips": {}, "zone_uuid": None, "cluster_uuid": None,
             "host_uuid": None, "ps_uuid": None, "strategy": "InstantStart", "description": None,
             "platform": "Linux", "guest_os": None, "architecture": "x86_64", "system_tags": [], "user_tags": []},
    "rootVolumeUuid": U["f"], "dataVolumeUuids": [U["g"]], "nicUuids": [U["h"]],
    "reserved": {"host": U["i"], "cpu": 1, "memory": 1 << 30},
    "psReserved": {"ps": U["j"], "size": 1024 + (1 << 30), "ratio": 1.0},
    "paths": {U["f"]: {"url": "http://ps", "ps": U["j"], "host": U["i"], "path": f"/ps/rootVolumes/vol-{U['f']}/x"},
              U["g"]: {"url": "http://ps", "ps": U["j"], "host": U["i"], "path": f"/ps/dataVolumes/vol-{U['g']}/x"}},
    "zone": U["k"], "allocated": True,
    "start": {"url": "http://host", "cmd": {"vmInstanceUuid": U["a"], "rootVolume": {"volumeUuid": U["f"]},
                                            "dataVolumes": [{"volumeUuid": U["g"]}]}},
    "installed": {U["f"]: {"path": "/ps/r", "size": 2048, "actualSize": 10},
                  U["g"]: {"path": "/ps/d", "size": 1 << 30, "actualSize": 0}},
}


def test_plan_survives_json_and_keeps_the_dict_based_keys():
    plan = _plan()
    j = plan.to_json()
    assert list(j) == list(vars(plan))  # the fields, in order, as plan.__dict__ was stored
    assert j["image"]["mediaType"] == "RootVolumeTemplate" and j["data_disks"][0]["diskOfferingUuid"] == U["c"]
    assert Plan.from_json(_reloaded(j)) == plan


@pytest.mark.parametrize(("strategy", "starts", "instantiates"), [
    ("InstantStart", True, True), ("CreateStopped", False, True), ("JustCreate", False, False)])
def test_plan_strategy_predicates(strategy, starts, instantiates):
    plan = _plan(strategy=strategy)
    assert (plan.starts, plan.instantiates) == (starts, instantiates)
    assert plan.volume_bytes == (1 << 31) + (1 << 30) + 5


def test_new_data_chooses_a_uuid_per_volume_and_nic():
    data = CreateVmData.new(_plan())
    assert len(data.data_volume_uuids) == 2 and len(data.nic_uuids) == 1
    assert data.volume_uuids == [data.root_volume_uuid, *data.data_volume_uuids]
    assert len(set(data.volume_uuids)) == 3
    assert data.plan == _plan() and data.vm_uuid == U["a"]
    assert set(data.raw) == {"plan", "rootVolumeUuid", "dataVolumeUuids", "nicUuids"}


def test_writes_go_to_the_dict_and_read_back_from_its_json():
    data = CreateVmData.new(_plan())
    root, d1, _ = data.volume_uuids
    data.reserved = Reservation(U["i"], 2, 1 << 30)
    data.ps_reserved = PsReservation(U["j"], 42, 2.5)
    data.places = {u: VolumePlace("http://ps", U["j"], None, f"/ps/{u}") for u in data.volume_uuids}
    data.zone = U["k"]
    data.start = StartCall("http://host", {"x": 1})
    data.add_installed(root, Installed("/ps/r", 7, 3))
    data.add_installed(d1, Installed("/ps/d", 8, 0))
    assert data.raw["reserved"] == {"host": U["i"], "cpu": 2, "memory": 1 << 30}
    assert data.raw["psReserved"] == {"ps": U["j"], "size": 42, "ratio": 2.5}
    assert data.raw["installed"][root] == {"path": "/ps/r", "size": 7, "actualSize": 3}
    again = CreateVmData(_reloaded(data.raw))
    assert again.plan == data.plan
    assert (again.reserved, again.ps_reserved, again.zone) == (data.reserved, data.ps_reserved, U["k"])
    assert again.places == data.places and again.place(d1).path == f"/ps/{d1}"
    assert again.start == data.start and again.installed == data.installed
    assert again.host_uuid == U["i"]


def test_the_dict_based_shape_is_read_as_it_was_written():
    data = CreateVmData(_reloaded(OLD))
    assert data.plan.image.media_type == "RootVolumeTemplate" and data.plan.data_disks == [DataDisk(1 << 30)]
    assert data.plan.offering_uuid == U["e"] and data.vm_uuid == U["a"]
    assert data.reserved == Reservation(U["i"], 1, 1 << 30) and data.host_uuid == U["i"]
    assert data.ps_reserved == PsReservation(U["j"], 1024 + (1 << 30), 1.0)
    assert data.place(U["f"]) == VolumePlace("http://ps", U["j"], U["i"], f"/ps/rootVolumes/vol-{U['f']}/x")
    assert data.installed[U["g"]] == Installed("/ps/d", 1 << 30, 0)
    assert data.start.cmd["rootVolume"] == {"volumeUuid": U["f"]}
    assert data.zone == U["k"]


def test_reservations_and_the_source_are_taken_once():
    data = CreateVmData(_reloaded(OLD))
    assert data.take_reserved() == Reservation(U["i"], 1, 1 << 30)
    assert data.take_reserved() is None and data.reserved is None and "reserved" not in data.raw
    assert data.take_ps_reserved() is not None and data.take_ps_reserved() is None
    data.source = {"backupStorageUuid": U["l"]}
    assert data.take_source() == {"backupStorageUuid": U["l"]} and data.take_source() is None


def test_before_allocate_nothing_is_placed_installed_or_reserved():
    data = CreateVmData.new(_plan())
    assert data.places == {} and data.installed == {}
    assert data.reserved is None and data.ps_reserved is None and data.take_reserved() is None
    data.drop_installed(data.root_volume_uuid)  # nothing to drop: no error
    assert data.raw.keys() == {"plan", "rootVolumeUuid", "dataVolumeUuids", "nicUuids"}


def test_a_start_call_is_the_journaled_command_itself():
    data = CreateVmData(_reloaded(OLD))
    data.start.cmd["rootVolume"]["installPath"] = "/ps/r"
    assert data.raw["start"]["cmd"]["rootVolume"]["installPath"] == "/ps/r"


def test_typed_steps_see_a_view_of_the_engine_dict():
    seen = []

    @typed
    def step(ctx: Any, data: CreateVmData) -> None:
        seen.append((ctx, data.vm_uuid))
        data.zone = U["m"]

    raw = CreateVmData.new(_plan()).raw
    step("ctx", raw)
    assert seen == [("ctx", U["a"])] and raw["zone"] == U["m"]
    assert step.__name__ == "step"
