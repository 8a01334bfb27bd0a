"""The pieces of create-vm's `allocate` step (mn/services/vm_allocate.py) on a real SQLite
database: what each reserves and records, and that the write is one transaction."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from mn import ipam
from mn.context import ApiContext
from mn.errors import ApiError
from mn.globalconfig import PS_OVER_PROVISIONING
from mn.models import ApiJob, Host, PrimaryStorage, UsedIp, VmNic
from mn.services import vm_allocate
from mn.services.vm_create import create_vm, resolve
from mn.services.vm_create_data import CreateVmData
from tests.unit import vm_env
from tests.unit.vm_env import CLUSTER, GB, HOST, L3, PS, create_msg, footprint, new_job


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return vm_env.migrated(tmp_path_factory.mktemp("template") / "unit.db")


@pytest.fixture
def svc(template, tmp_path):
    db = vm_env.copied(template, tmp_path)
    yield vm_env.services(db, tmp_path)
    db.dispose()


def _data(svc, **msg: Any) -> CreateVmData:
    with svc.db.read() as conn:
        return CreateVmData.new(resolve(ApiContext(svc), create_msg(**msg), conn))


def _pieces(svc, data: CreateVmData) -> tuple[Any, vm_allocate.Prefetch]:
    req = vm_allocate.host_request(svc.gconf, data.plan)
    return req, vm_allocate.prefetch(svc.db, data.plan, req)


def _capacity(svc) -> tuple[int, int, int]:
    with svc.db.ro() as s:
        h, ps = s.get(Host, HOST), s.get(PrimaryStorage, PS)
        return h.availableCpuCapacity, h.availableMemoryCapacity, ps.availableCapacity


def test_a_vm_not_started_asks_a_host_for_nothing(svc):
    assert vm_allocate.host_request(svc.gconf, _data(svc, strategy="CreateStopped").plan).cpu == 0
    req = vm_allocate.host_request(svc.gconf, _data(svc).plan)
    assert (req.cpu, req.memory, req.l3_uuids) == (2, GB, [L3])


def test_prefetched_storages_count_only_for_the_first_candidates_cluster(svc):
    data = _data(svc)
    _, pre = _pieces(svc, data)
    assert list(pre.hosts) == [HOST] and [r.uuid for r in pre.storages] == [PS]
    assert len(pre.ips[L3]) > 0
    assert pre.storages_of(CLUSTER) == pre.storages
    assert pre.storages_of("o" * 32) is None
    assert vm_allocate.Prefetch({}, [], {}).storages_of(CLUSTER) is None


def test_a_static_ip_is_not_probed(svc):
    _, pre = _pieces(svc, _data(svc, systemTags=[f"staticIp::{L3}::10.0.0.77"]))
    assert pre.ips == {}


@pytest.mark.parametrize("strategy", ["InstantStart", "CreateStopped", "JustCreate"])
def test_reservations_and_places_by_strategy(svc, strategy):
    data = _data(svc, strategy=strategy)
    req, pre = _pieces(svc, data)
    before = _capacity(svc)
    with svc.db.tx() as s:
        place = vm_allocate.reserve_host(s, data, req, pre)
        ps_uuid = vm_allocate.reserve_storage(s, data, place, pre, 1.0)
    cpu, mem, ps_free = _capacity(svc)
    started = strategy == "InstantStart"
    assert place.host.uuid == HOST and place.host_uuid == (HOST if started else None)
    assert (cpu, mem) == ((before[0] - 2, before[1] - GB) if started else before[:2])
    assert ("reserved" in data.raw) is started
    if strategy == "JustCreate":
        assert ps_uuid is None and ps_free == before[2] and data.places == {} and data.ps_reserved is None
        return
    assert ps_uuid == PS and ps_free == before[2] - data.plan.volume_bytes
    assert data.ps_reserved is not None and data.ps_reserved.size == data.plan.volume_bytes
    places = data.places
    assert list(places) == data.volume_uuids
    root, disk = data.volume_uuids
    assert places[root].path == f"/ps/rootVolumes/vol-{root}/{root}.qcow2"
    assert places[disk].path == f"/ps/dataVolumes/vol-{disk}/{disk}.qcow2"
    assert {(w.url, w.ps, w.host) for w in places.values()} == {(f"sim://primary-storage/{PS}", PS, place.host_uuid)}


@pytest.mark.parametrize(("strategy", "state", "status"), [
    ("InstantStart", "Starting", "Creating"), ("JustCreate", "Created", "NotInstantiated")])
def test_vm_and_volume_rows(svc, strategy, state, status):
    data = _data(svc, strategy=strategy, dataDiskSizes=[GB, 2 * GB])
    req, pre = _pieces(svc, data)
    with svc.db.tx() as s:
        place = vm_allocate.reserve_host(s, data, req, pre)
    vm = vm_allocate.vm_row(data, place)
    assert (vm["state"], vm["hostUuid"], vm["hypervisorType"]) == (state, place.host_uuid, "Simulator")
    assert vm["clusterUuid"] == (CLUSTER if strategy == "InstantStart" else None)
    assert vm["rootVolumeUuid"] == data.root_volume_uuid and vm["internalId"] == int(data.vm_uuid[:7], 16)
    rows = vm_allocate.volume_rows(data, PS, place.host_uuid)
    assert [(r["uuid"], r["type"], r["deviceId"], r["size"]) for r in rows] == [
        (data.root_volume_uuid, "Root", 0, data.plan.root_size),
        (data.data_volume_uuids[0], "Data", 1, GB), (data.data_volume_uuids[1], "Data", 2, 2 * GB)]
    assert {r["status"] for r in rows} == {status} and len({frozenset(r) for r in rows}) == 1


def test_a_nic_whose_prefetched_ip_was_taken_gets_another(svc):
    data = _data(svc)
    req, pre = _pieces(svc, data)
    guess = pre.ips[L3][0]
    with svc.db.tx() as s:  # someone takes the guessed address after the probe
        s.add(UsedIp(uuid="t" * 32, ipRangeUuid=guess.ipRangeUuid, l3NetworkUuid=L3, ip=guess.ip,
                     netmask=guess.netmask, gateway=guess.gateway, ipInLong=guess.ipInLong, usedFor="Vip"))
    stale = vm_allocate.Prefetch(pre.hosts, pre.storages, {L3: [guess]})
    with svc.db.tx() as s:
        place = vm_allocate.reserve_host(s, data, req, stale)
        vm = vm_allocate.vm_row(data, place)
        s.connection().execute(vm_allocate._INSERT_VM, vm)
        nics = vm_allocate.insert_nics(s, data, vm, stale)
    with svc.db.ro() as s:
        row = s.get(VmNic, data.nic_uuids[0])
        used = s.scalars(select(UsedIp).where(UsedIp.vmNicUuid == row.uuid)).one()
    assert used.ip != guess.ip and row.ip == used.ip == nics[0]["ip"] and row.usedIpUuid == used.uuid


def test_nic_ip_columns():
    assert vm_allocate.nic_ip(None) == {"usedIpUuid": None, "ip": None, "netmask": None, "gateway": None,
                                        "ipVersion": 4}
    a = ipam.Allocated("u" * 32, "r" * 32, L3, "10.0.0.5", "255.255.255.0", "10.0.0.1", 4, 167772165)
    assert vm_allocate.nic_ip(a) == {"usedIpUuid": a.uuid, "ip": a.ip, "netmask": a.netmask,
                                     "gateway": a.gateway, "ipVersion": 4}


def test_the_write_is_one_transaction_with_its_journal_entry(svc):
    """A failure in the write's last piece (the NIC's static IP is taken) undoes the reservations
    made before it, and the step's journal entry is not written either."""
    job = new_job(svc.db)
    ctx = ApiContext(svc, job_uuid=job)
    with svc.db.tx() as s:
        r = ipam.allocate_ip(s, L3, ip="10.0.0.77")
    assert r.ip == "10.0.0.77"
    before = footprint(svc)
    with pytest.raises(ApiError, match="10.0.0.77"):
        create_vm(ctx, create_msg(systemTags=[f"staticIp::{L3}::10.0.0.77"]))
    assert footprint(svc) == before
    with svc.db.ro() as s:
        assert s.get(ApiJob, job).flowState is None


def test_undo_releases_once_and_tolerates_a_write_that_never_happened(svc):
    create_vm(ApiContext(svc), create_msg())  # holds capacity: an extra release would show
    before = footprint(svc)
    data = _data(svc)
    vm_allocate.undo(svc.db, data)  # nothing was written
    assert footprint(svc) == before
    req, pre = _pieces(svc, data)
    ratio = svc.gconf.get(PS_OVER_PROVISIONING)
    svc.db.grouped(lambda s: vm_allocate.write(s, data, req, pre, ratio))
    assert footprint(svc) != before
    vm_allocate.undo(svc.db, data)
    vm_allocate.undo(svc.db, data)
    assert footprint(svc) == before
