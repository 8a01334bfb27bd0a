from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from mn.api.rest import _parse_condition
from mn.catalogue.catalog import load_catalog
from mn.errors import ApiError
from mn.models import (
    Cluster,
    Host,
    L2Network,
    L3Network,
    PrimaryStorage,
    SystemTag,
    UserTag,
    VmInstance,
    VmNic,
    Volume,
    Zone,
)
from mn.query import QueryCompiler, run_query


@pytest.fixture
def zones(db):
    with db.tx() as s:
        for i in range(5):
            s.add(Zone(uuid=f"{i:032x}", name=f"zone-{i}", description="d" if i % 2 else None))
        s.add(SystemTag(resourceUuid=f"{1:032x}", resourceType="ZoneVO", tag="region::west", type="System"))
    return db


def q(db, *conds, **kw):
    api = load_catalog().api("QueryZone")
    msg = {"conditions": [_parse_condition(c) if isinstance(c, str) else c for c in conds], **kw}
    with db.ro() as s:
        return run_query(s, api, msg)


def names(reply):
    return sorted(z["name"] for z in reply["inventories"])


def test_operators(zones):
    assert names(q(zones, "name=zone-1")) == ["zone-1"]
    assert names(q(zones, "name!=zone-1")) == ["zone-0", "zone-2", "zone-3", "zone-4"]
    assert names(q(zones, "name?=zone-1,zone-3")) == ["zone-1", "zone-3"]
    assert names(q(zones, "name!?=zone-1,zone-3")) == ["zone-0", "zone-2", "zone-4"]
    assert names(q(zones, "name~=zone-%")) == [f"zone-{i}" for i in range(5)]
    assert names(q(zones, "name!~=%1")) == ["zone-0", "zone-2", "zone-3", "zone-4"]
    assert names(q(zones, "description=null")) == ["zone-0", "zone-2", "zone-4"]
    assert names(q(zones, "description!=null")) == ["zone-1", "zone-3"]


def test_tags_positive_and_negative(zones):
    assert names(q(zones, "__systemTag__=region::west")) == ["zone-1"]
    assert names(q(zones, "__systemTag__!=region::west")) == ["zone-0", "zone-2", "zone-3", "zone-4"]
    assert names(q(zones, "__systemTag__~=region::%")) == ["zone-1"]


def test_paging_sorting_count_fields(zones):
    r = q(zones, limit=2, start=1, sortBy="name", sortDirection="desc", replyWithCount=True)
    assert [z["name"] for z in r["inventories"]] == ["zone-3", "zone-2"]
    assert r["total"] == 5
    assert q(zones, count=True)["total"] == 5
    r = q(zones, "name=zone-1", fields=["name"])
    assert r["inventories"] == [{"name": "zone-1"}]


def test_unknown_field_and_bad_values_are_clear_errors(zones):
    with pytest.raises(ApiError, match="'nme' is not a queryable field of ZoneInventory; valid fields"):
        q(zones, "nme=x")
    with pytest.raises(ApiError, match="'bogus' is not a field or expansion"):
        q(zones, "bogus.name=x")
    with pytest.raises(ApiError, match="not a valid boolean"):
        q(zones, "isDefault=maybe")


def test_injection_is_inert(zones):
    evil = "zone-1' OR '1'='1"
    assert q(zones, {"name": "name", "op": "=", "value": evil})["inventories"] == []
    assert q(zones, {"name": "name", "op": "in", "value": ["x'); DROP TABLE zone; --"]})["inventories"] == []
    with pytest.raises(ApiError):
        q(zones, {"name": "name; DROP TABLE zone", "op": "=", "value": "x"})
    with pytest.raises(ApiError, match="unknown query operator"):
        q(zones, {"name": "name", "op": "= 1 OR 1=1 --", "value": "x"})
    with zones.ro() as s:
        assert len(s.scalars(select(Zone)).all()) == 5


def test_nested_expansions_compile_to_subqueries():
    api = load_catalog().api("QueryVmInstance")
    sql = str(QueryCompiler().select("VmInstanceInventory", [
        {"name": "vmNics.l3Network.l2Network.zone.name", "op": "=", "value": "z"}], api))
    assert sql.count("SELECT") == 5 and "IN (SELECT" in sql


def test_condition_parser():
    assert _parse_condition("cpuNum>=2") == {"name": "cpuNum", "op": ">=", "value": "2"}
    assert _parse_condition("name!=a=b") == {"name": "name", "op": "!=", "value": "a=b"}
    assert _parse_condition("state?=Running,Stopped") == {"name": "state", "op": "in", "value": "Running,Stopped"}
    assert _parse_condition("x is null") == {"name": "x", "op": "is null", "value": None}
    with pytest.raises(ApiError):
        _parse_condition("novalue")


# ---- a seeded data centre: two zones, three hosts, VMs with NICs, volumes and tags ---------------

D = dt.datetime
VMS = [  # name, cpuNum, memorySize, state, host index or None, description, createDate
    ("vm-a", 1, 1 << 30, "Running", 0, "web", D(2026, 1, 1, 10, 0, 0)),
    ("vm-b", 2, 2 << 30, "Running", 1, None, D(2026, 1, 2, 10, 0, 0)),
    ("vm-c", 4, 4 << 30, "Stopped", None, "db", D(2026, 2, 1, 0, 0, 0)),
    ("vm-d", 2, 8 << 30, "Running", 2, "web", D(2026, 3, 1, 12, 30, 0)),
    ("vm-e", 8, 1 << 30, "Stopped", None, None, D(2026, 3, 2, 0, 0, 0)),
    ("vm-f", 1, 2 << 30, "Running", 1, "cache", D(2026, 4, 1, 0, 0, 0)),
]
GIB = 1 << 30


def uid(kind: str, i: int) -> str:
    return f"{kind:<4}".replace(" ", "0").encode().hex()[:8] + f"{i:024x}"


def seed_datacentre(db) -> None:
    """Rows inserted with the models (unit tier): every uuid is uid(kind, index)."""
    with db.tx() as s:
        for i in range(2):
            s.add(Zone(uuid=uid("zone", i), name=f"zone-{i}", isDefault=i == 1))
        s.flush()
        s.add(Cluster(uuid=uid("clu", 0), name="cluster-0", zoneUuid=uid("zone", 0), hypervisorType="KVM"))
        s.add(Cluster(uuid=uid("clu", 1), name="cluster-1", zoneUuid=uid("zone", 1), hypervisorType="Simulator"))
        for i in range(2):
            s.add(PrimaryStorage(uuid=uid("ps", i), name=f"ps-{i}", zoneUuid=uid("zone", i), url=f"/ps{i}",
                                 type=("LocalStorage", "NFS")[i]))
            s.add(L2Network(uuid=uid("l2", i), name=f"l2-{i}", zoneUuid=uid("zone", i), physicalInterface="eth0",
                            type="L2NoVlanNetwork"))
        s.flush()
        for i in range(2):
            s.add(L3Network(uuid=uid("l3", i), name=f"l3-{i}", zoneUuid=uid("zone", i), l2NetworkUuid=uid("l2", i)))
        hosts = [("host-0", 0, "KVM", "Connected"), ("host-1", 1, "Simulator", "Connected"),
                 ("host-2", 1, "Simulator", "Disconnected")]
        for i, (name, c, hv, status) in enumerate(hosts):
            s.add(Host(uuid=uid("host", i), name=name, zoneUuid=uid("zone", c), clusterUuid=uid("clu", c),
                       managementIp=f"192.168.0.{i + 1}", hypervisorType=hv, status=status, cpuNum=8 * (i + 1)))
        s.flush()
        for i, (name, cpu, mem, state, h, desc, created) in enumerate(VMS):
            z = 0 if h == 0 else 1
            s.add(VmInstance(uuid=uid("vm", i), name=name, cpuNum=cpu, memorySize=mem, state=state,
                             hostUuid=None if h is None else uid("host", h), zoneUuid=uid("zone", z),
                             clusterUuid=uid("clu", z), description=desc, createDate=created,
                             hypervisorType="KVM" if z == 0 else "Simulator",
                             rootVolumeUuid=uid("vol", 10 * i)))
        s.flush()
        for i, (name, *_rest) in enumerate(VMS):
            z = 0 if VMS[i][4] == 0 else 1
            s.add(VmNic(uuid=uid("nic", i), vmInstanceUuid=uid("vm", i), l3NetworkUuid=uid("l3", z),
                        ip=f"10.{z}.0.{i + 10}", mac=f"fa:00:00:00:00:{i:02x}", internalName=f"vnic{i}.0"))
            s.add(Volume(uuid=uid("vol", 10 * i), name=f"root-{name}", type="Root", size=10 * GIB,
                         vmInstanceUuid=uid("vm", i), primaryStorageUuid=uid("ps", z), deviceId=0))
            for d in range(i % 3):  # data volumes: vm-b 1, vm-c 2, vm-e 1, vm-f 2
                s.add(Volume(uuid=uid("vol", 10 * i + d + 1), name=f"data-{name}-{d}", type="Data",
                             size=(d + 1) * 100 * GIB * (i + 1), vmInstanceUuid=uid("vm", i),
                             primaryStorageUuid=uid("ps", z), deviceId=d + 1))
        s.add(SystemTag(resourceUuid=uid("vm", 0), resourceType="VmInstanceVO", tag="ha::NeverStop", type="System"))
        s.add(SystemTag(resourceUuid=uid("vm", 3), resourceType="VmInstanceVO", tag="ha::NeverStop", type="System"))
        s.add(SystemTag(resourceUuid=uid("vm", 3), resourceType="VmInstanceVO", tag="bootMode::UEFI", type="System"))
        s.add(UserTag(resourceUuid=uid("vm", 1), resourceType="VmInstanceVO", tag="team-red", type="User"))
        s.add(UserTag(resourceUuid=uid("host", 2), resourceType="HostVO", tag="rack-7", type="User"))


@pytest.fixture
def dc(db):
    seed_datacentre(db)
    return db


def run(db, api_name: str, *conds, **kw) -> dict:
    api = load_catalog().api(api_name)
    msg = {"conditions": [_parse_condition(c) if isinstance(c, str) else c for c in conds], **kw}
    with db.ro() as s:
        return run_query(s, api, msg)


def vm_names(db, *conds, **kw) -> list[str]:
    return sorted(v["name"] for v in run(db, "QueryVmInstance", *conds, **kw)["inventories"])


def host_names(db, *conds, **kw) -> list[str]:
    return sorted(v["name"] for v in run(db, "QueryHost", *conds, **kw)["inventories"])


@pytest.mark.parametrize(("cond", "expected"), [
    # int
    ("cpuNum=2", "bd"), ("cpuNum!=2", "acef"), ("cpuNum>2", "ce"), ("cpuNum>=2", "bcde"),
    ("cpuNum<2", "af"), ("cpuNum<=2", "abdf"), ("cpuNum?=1,8", "aef"), ("cpuNum!?=1,8", "bcd"),
    ("cpuNum~=%8", "e"), ("cpuNum!~=1", "bcde"), ("cpuNum is null", ""), ("cpuNum is not null", "abcdef"),
    # long
    (f"memorySize={GIB}", "ae"), (f"memorySize>{2 * GIB}", "cd"), (f"memorySize?={GIB},{8 * GIB}", "ade"),
    # string
    ("state=Running", "abdf"), ("state!=Running", "ce"), ("name>vm-d", "ef"), ("name<=vm-b", "ab"),
    ("name?=vm-a,vm-z", "a"), ("name!?=vm-a,vm-b", "cdef"), ("name~=vm-_", "abcdef"), ("name!~=%-a", "bcdef"),
    ("description=null", "be"), ("description!=null", "acdf"), ("description!=web", "cf"),
    ("description is null", "be"), ("description is not null", "acdf"), ("description~=%e%", "adf"),
    # timestamp: ZStack's formats, ISO 8601, epoch milliseconds
    ("createDate>2026-02-01", "def"), ("createDate>=2026-02-01 00:00:00", "cdef"),
    ("createDate<Jan 2, 2026 10:00:00 AM", "a"), ("createDate<=2026-01-02T10:00:00", "ab"),
    (f"createDate={int(D(2026, 3, 1, 12, 30, tzinfo=dt.UTC).timestamp() * 1000)}", "d"),
    ("createDate?=2026-01-01 10:00:00,2026-04-01", "af"), ("createDate!=2026-04-01", "abcde"),
    ("createDate~=2026-03%", "de"),
])
def test_each_operator_on_each_field_type(dc, cond, expected):
    assert vm_names(dc, cond) == [f"vm-{c}" for c in expected]


def test_boolean_fields(dc):
    def zones(*c):
        return sorted(z["name"] for z in run(dc, "QueryZone", *c)["inventories"])
    assert zones("isDefault=true") == ["zone-1"]
    assert zones("isDefault=FALSE") == ["zone-0"]
    assert zones("isDefault!=true") == ["zone-0"]
    assert zones("isDefault?=true,false") == ["zone-0", "zone-1"]
    assert zones({"name": "isDefault", "op": "=", "value": True}) == ["zone-1"]


def test_nested_expansions_three_levels_and_more(dc):
    assert vm_names(dc, "vmNics.l3Network.l2Network.zone.name=zone-0") == ["vm-a"]
    assert vm_names(dc, "host.cluster.zone.isDefault=true") == ["vm-b", "vm-d", "vm-f"]
    assert vm_names(dc, "allVolumes.primaryStorage.type=NFS") == ["vm-b", "vm-c", "vm-d", "vm-e", "vm-f"]
    assert host_names(dc, "vmInstance.allVolumes.primaryStorage.type=LocalStorage") == ["host-0"]
    assert host_names(dc, f"vmInstance.allVolumes.size>={400 * GIB}") == ["host-1"]
    assert host_names(dc, "cluster.zone.name=zone-1") == ["host-1", "host-2"]


def test_reverse_expansions(dc):
    assert host_names(dc, "vmInstance.state=Running") == ["host-0", "host-1", "host-2"]
    assert host_names(dc, "vmInstance.name=vm-f") == ["host-1"]
    zones = run(dc, "QueryZone", "vmInstance.cpuNum>=8")["inventories"]
    assert [z["name"] for z in zones] == ["zone-1"]
    # a negative operator applies inside the subquery: hosts with some VM not named vm-b
    assert host_names(dc, "vmInstance.name!=vm-b") == ["host-0", "host-1", "host-2"]
    assert host_names(dc, "vmInstance.name!?=vm-b,vm-f") == ["host-0", "host-2"]


def test_the_issue_queries(dc):
    r = run(dc, "QueryHost", "hypervisorType=KVM", "vmInstance.allVolumes.size>=549755813888000",
            "vmInstance.state=Running", fields=["name", "uuid", "managementIp"], start=0, limit=10)
    assert r["inventories"] == []
    r = run(dc, "QueryHost", "hypervisorType=Simulator", f"vmInstance.allVolumes.size>={200 * GIB}",
            "vmInstance.state=Running", fields=["name", "uuid", "managementIp"], start=0, limit=10)
    assert r["inventories"] == [{"uuid": uid("host", 1), "name": "host-1", "managementIp": "192.168.0.2"}]
    assert run(dc, "QueryVmInstance", "vmNics.eip.guestIp=16.16.16.16", "zone.name=west-coast")["inventories"] == []
    with pytest.raises(ApiError, match=r"the expansion 'securityGroupRef' \(VmNicSecurityGroupRefInventory\) of "
                                       r"VmNicInventory in 'vmNics.securityGroupRef.uuid' is not available.*'eip'"):
        run(dc, "QueryVmInstance", "vmNics.securityGroupRef.uuid=x")


@pytest.mark.parametrize(("cond", "expected"), [
    ("__systemTag__=ha::NeverStop", "ad"), ("__systemTag__!=ha::NeverStop", "bcef"),
    ("__systemTag__?=bootMode::UEFI,nothing", "d"), ("__systemTag__!?=bootMode::UEFI,ha::NeverStop", "bcef"),
    ("__systemTag__~=ha::%", "ad"), ("__systemTag__!~=%UEFI", "abcef"),
    ("__systemTag__>bootMode::UEFI", "ad"), ("__systemTag__<=bootMode::UEFI", "d"),
    ("__systemTag__ is null", "bcef"), ("__systemTag__ is not null", "ad"),
    ("__userTag__=team-red", "b"), ("__userTag__!=team-red", "acdef"), ("__userTag__ is not null", "b"),
    ("host.__userTag__=rack-7", "d"), ("host.__userTag__ is null", "abf"),
])
def test_tags_with_every_operator(dc, cond, expected):
    assert vm_names(dc, cond) == [f"vm-{c}" for c in expected]


def test_tags_on_expanded_inventories_from_the_root(dc):
    assert host_names(dc, "vmInstance.__systemTag__=bootMode::UEFI") == ["host-2"]
    assert host_names(dc, "__userTag__~=rack%") == ["host-2"]


@pytest.mark.parametrize(("cond", "message"), [
    ("cpuNum=abc", "value 'abc' of field 'cpuNum' is not a valid int"),
    ("cpuNum=1.5", "not a valid int"),
    ("cpuNum?=1,x", "value 'x' of field 'cpuNum' is not a valid int"),
    ("memorySize>lots", "not a valid long"),
    ("createDate>yesterday", "value 'yesterday' of field 'createDate' is not a valid timestamp"),
    ("host.cpuNum>many", "field 'host.cpuNum' is not a valid int"),
    ("nme=x", r"'nme' is not a queryable field of VmInstanceInventory; valid fields: \[.*'cpuNum'"),
    ("vmNics", "cannot parse"),
    ("host.nme=x", r"'nme' is not a queryable field of HostInventory \(in 'host.nme'\); valid fields"),
    ("hots.name=x", r"'hots' is not a field or expansion of VmInstanceInventory.*expansions: \[.*'host'"),
    ("vmNics.ip.x=1", "'ip' is not a field or expansion of VmNicInventory"),
    ("allVolumes=x", "'allVolumes' is not a queryable field"),
])
def test_typed_value_and_name_errors_are_sys_1007(dc, cond, message):
    with pytest.raises(ApiError, match=message) as e:
        run(dc, "QueryVmInstance", cond)
    assert e.value.code == "SYS.1007"


def test_wrong_shapes_of_values(dc):
    with pytest.raises(ApiError, match="takes one value, got a list"):
        run(dc, "QueryVmInstance", {"name": "cpuNum", "op": "=", "value": [1, 2]})
    with pytest.raises(ApiError, match="not a valid boolean"):
        run(dc, "QueryZone", {"name": "isDefault", "op": "=", "value": 1})
    assert vm_names(dc, {"name": "cpuNum", "op": "in", "value": [2, "4"]}) == ["vm-b", "vm-c", "vm-d"]
    assert vm_names(dc, {"name": "cpuNum", "op": ">", "value": 3.0}) == ["vm-c", "vm-e"]
    assert vm_names(dc, {"name": "cpuNum", "op": "in", "value": []}) == []


@pytest.mark.parametrize("evil", [
    {"name": "name", "op": "=", "value": "vm-a' OR '1'='1"},
    {"name": "name", "op": "like", "value": "%' OR 1=1 --"},
    {"name": "name", "op": "in", "value": ["x'); DROP TABLE vm_instance; --"]},
    {"name": "__systemTag__", "op": "=", "value": "x' OR 'a'='a"},
    {"name": "vmNics.ip", "op": "=", "value": "1' OR '1'='1"},
])
def test_injection_in_values_is_inert(dc, evil):
    assert run(dc, "QueryVmInstance", evil)["inventories"] == []


@pytest.mark.parametrize(("extra", "message"), [
    ({"conditions": [{"name": "name OR 1=1", "op": "=", "value": "x"}]}, "not a queryable field"),
    ({"conditions": [{"name": "host.uuid) OR (1=1", "op": "=", "value": "x"}]}, "not a queryable field"),
    ({"conditions": [{"name": "__class__", "op": "=", "value": "x"}]}, "not a queryable field"),
    ({"conditions": [{"name": "metadata.x", "op": "=", "value": "x"}]}, "not a field or expansion"),
    ({"conditions": [{"name": "name", "op": "= 'x' OR 1=1 --", "value": "x"}]}, "unknown query operator"),
    ({"conditions": [{"name": "name", "op": "exists", "value": "x"}]}, "unknown query operator"),
    ({"sortBy": "name; DROP TABLE vm_instance"}, "not a sortBy field"),
    ({"sortBy": "name", "sortDirection": "desc; DROP TABLE vm_instance"}, "sortDirection"),
    ({"groupBy": "state) OR (1=1"}, "not a groupBy field"),
    ({"fields": ["name", "uuid FROM vm_instance --"]}, "unknown fields"),
    ({"limit": "1; DROP TABLE vm_instance"}, "'limit' must be an integer"),
    ({"start": -1}, "non-negative"),
])
def test_injection_in_names_operators_and_parameters_is_refused(dc, extra, message):
    api = load_catalog().api("QueryVmInstance")
    msg = {"conditions": [], **extra}
    with pytest.raises(ApiError, match=message), dc.ro() as s:
        run_query(s, api, msg)
    assert len(vm_names(dc)) == len(VMS)


def test_sort_by_any_field_both_directions_with_nulls_first_ascending(dc):
    def order(**kw):
        return [v["name"] for v in run(dc, "QueryVmInstance", **kw)["inventories"]]
    # Ties go by uuid in the sort's direction (so an index on (field, uuid) serves the order).
    assert order(sortBy="memorySize", sortDirection="desc") == ["vm-d", "vm-c", "vm-f", "vm-b", "vm-e", "vm-a"]
    assert order(sortBy="createDate") == [f"vm-{c}" for c in "abcdef"]
    assert order(sortBy="description")[:2] == ["vm-b", "vm-e"]
    assert order(sortBy="description", sortDirection="desc")[-2:] == ["vm-e", "vm-b"]
    assert order(sortBy="hostUuid", sortDirection="desc", limit=2, start=1) == ["vm-f", "vm-b"]


def test_count_is_total_only_and_reply_with_count_counts_all_pages(dc):
    r = run(dc, "QueryVmInstance", "state=Running", count=True)
    assert r == {"total": 4}
    r = run(dc, "QueryVmInstance", "state=Running", replyWithCount=True, limit=1, start=1, sortBy="name")
    assert r["total"] == 4 and [v["name"] for v in r["inventories"]] == ["vm-b"]


def test_fields_restrict_the_inventory(dc):
    r = run(dc, "QueryVmInstance", "name=vm-b", fields=["uuid", "allVolumes"])
    (inv,) = r["inventories"]
    assert set(inv) == {"uuid", "allVolumes"} and len(inv["allVolumes"]) == 2


def test_group_by_returns_one_row_per_distinct_value(dc):
    r = run(dc, "QueryVmInstance", groupBy="state", replyWithCount=True, sortBy="name")
    assert [v["name"] for v in r["inventories"]] == ["vm-a", "vm-c"] and r["total"] == 2
    r = run(dc, "QueryVmInstance", "cpuNum<8", groupBy="hostUuid", sortBy="name")
    assert [v["name"] for v in r["inventories"]] == ["vm-a", "vm-b", "vm-c", "vm-d"]  # NULL is one group
    assert run(dc, "QueryVmInstance", groupBy="zoneUuid", count=True)["total"] == 2
    with pytest.raises(ApiError, match=r"'vmNics' is not a groupBy field of VmInstanceInventory; valid"):
        run(dc, "QueryVmInstance", groupBy="vmNics")


def test_condition_parser_edge_cases():
    assert _parse_condition("name=a>=b") == {"name": "name", "op": "=", "value": "a>=b"}
    assert _parse_condition("name~=%a!=b%") == {"name": "name", "op": "like", "value": "%a!=b%"}
    assert _parse_condition("name!?=a,b=c") == {"name": "name", "op": "not in", "value": "a,b=c"}
    assert _parse_condition("cpuNum<=4") == {"name": "cpuNum", "op": "<=", "value": "4"}
    assert _parse_condition("description=null") == {"name": "description", "op": "is null", "value": None}
    assert _parse_condition("description!=null") == {"name": "description", "op": "is not null", "value": None}
    assert _parse_condition("name=") == {"name": "name", "op": "=", "value": ""}
    assert _parse_condition("vmNics.ip is not null") == {"name": "vmNics.ip", "op": "is not null", "value": None}
    assert _parse_condition("createDate>Nov 23, 2026 8:28:38 PM")["value"] == "Nov 23, 2026 8:28:38 PM"
    with pytest.raises(ApiError):
        _parse_condition("=x")


def test_tags_on_an_inventory_without_uuid_are_a_clear_error(dc):
    with pytest.raises(ApiError, match="GlobalConfigInventory has no uuid") as e:
        run(dc, "QueryGlobalConfig", "__systemTag__=x")
    assert e.value.code == "SYS.1007"
