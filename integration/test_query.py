"""The query API end to end: one seeded data centre, a table of queries, three transports.

The world is built only through the public API (three simulator zones from envs.build_env, the
first named `west-coast`, VMs with data volumes, one stopped, system and user tags, and an EIP on
a second NIC of the first VM, guest IP 16.16.16.16, as in the README's query). Every query of QUERIES runs through RPC
(api.call), REST (GET /zstack/v1/<resources>?q=...) and a real zstack-cli process, and each must
give the answer computed from what was created (never hard-coded uuids). Queries are scoped to
this module's zones, since the MN is shared with the rest of the tier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from integration.envs import GB, Env, add_public_network, build_env, unique
from mn.catalogue.catalog import load_catalog
from mn.catalogue.conditions import parse_condition
from mn.client import ClientError, ZStackClient

BIG = 2000 * GB  # a data volume no other test of the tier creates
CLI_BIN = Path(sys.executable).parent / "zstack-cli"
CLI = [str(CLI_BIN)] if CLI_BIN.exists() else [sys.executable, "-m", "mn.ops.cli"]
README_HOST_QUERY = ["fields=name,uuid,managementIp", "hypervisorType=KVM",
                     "vmInstance.allVolumes.size>=549755813888000", "vmInstance.state=Running",
                     "start=0", "limit=10"]


@dataclass
class World:
    envs: list[Env]
    vms: list[dict[str, Any]]  # inventories as queried after everything was set up
    hosts: list[dict[str, Any]]
    tagged_user: str  # uuid of the VM with the user tag
    tagged_system: str  # uuid of the VM with the system tag
    cli: Callable[..., subprocess.CompletedProcess]
    eip: dict[str, Any]  # the EIP of vm0's NIC with IP 16.16.16.16
    vip: dict[str, Any]  # its VIP

    @property
    def zones(self) -> str:
        return ",".join(e.zone for e in self.envs)

    def vm(self, i: int) -> dict[str, Any]:
        return self.vms[i]

    def uuids(self, pred: Callable[[dict[str, Any]], bool], of: str = "vms") -> set[str]:
        return {x["uuid"] for x in getattr(self, of) if pred(x)}


@pytest.fixture(scope="module")
def world(api: ZStackClient, mn, tmp_path_factory) -> World:
    p = unique("q")
    octet = int(uuidlib.uuid4().hex[:2], 16) % 200
    envs = [build_env(api, hosts=2, prefix=f"{p}{k}", ps_capacity=20000 * GB, cidr_third_octet=octet + "abc".index(k),
                      memory=64 * GB, zone_name="west-coast" if k == "a" else None) for k in "abc"]
    small = api.call("CreateDiskOffering", name=f"{p}-do-small", diskSize=5 * GB)["inventory"]["uuid"]
    big = api.call("CreateDiskOffering", name=f"{p}-do-big", diskSize=BIG)["inventory"]["uuid"]
    plan = [(0, []), (0, [small]), (1, [big, small]), (1, [small]), (2, [big])]
    uuids = []
    for i, (e, disks) in enumerate(plan):
        env = envs[e]
        vm = api.call("CreateVmInstance", name=f"{p}-vm{i}", instanceOfferingUuid=env.offering,
                      imageUuid=env.image, l3NetworkUuids=[env.l3], dataDiskOfferingUuids=disks)["inventory"]
        uuids.append(vm["uuid"])
    api.call("StopVmInstance", uuid=uuids[3])
    eip, vip = _eip_on_16(api, envs[0], uuids[0], octet)
    api.call("CreateUserTag", resourceType="VmInstanceVO", resourceUuid=uuids[1], tag=f"{p}-team")
    api.call("CreateSystemTag", resourceType="VmInstanceVO", resourceUuid=uuids[2], tag=f"{p}::owner")
    zones = ",".join(e.zone for e in envs)
    vms = sorted(api.query("QueryVmInstance", f"zoneUuid?={zones}"), key=lambda v: v["name"])
    hosts = api.query("QueryHost", f"zoneUuid?={zones}")
    assert [v["uuid"] for v in vms] == uuids and len(hosts) == 6

    home = tmp_path_factory.mktemp("cli-home")
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_")}
    env_vars["HOME"] = str(home)
    port = str(urlparse(mn.url).port)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, "--json-compact", "-H", "127.0.0.1", "-p", port, *args], env=env_vars,
                              capture_output=True, text=True, timeout=120)

    r = cli("LogInByAccount", "accountName=admin", "password=password")
    assert r.returncode == 0, r.stdout + r.stderr
    return World(envs, vms, hosts, uuids[1], uuids[2], cli, eip, vip)


def _eip_on_16(api: ZStackClient, env: Env, vm_uuid: str, octet: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """vm0 gets a second NIC with IP 16.16.16.16, and an EIP on it from a VIP of a public network."""
    _, pub = add_public_network(api, env, octet)
    guest = api.call("CreateL3Network", name=f"{env.prefix}-l3-16", l2NetworkUuid=env.l2)["inventory"]["uuid"]
    api.call("AddIpRange", l3NetworkUuid=guest, name=f"{env.prefix}-16", startIp="16.16.16.10",
             endIp="16.16.16.250", netmask="255.255.255.0", gateway="16.16.16.1")
    vm = api.call("AttachL3NetworkToVm", vmInstanceUuid=vm_uuid, l3NetworkUuid=guest,
                  staticIp="16.16.16.16")["inventory"]
    nic = next(n for n in vm["vmNics"] if n["l3NetworkUuid"] == guest)
    vip = api.call("CreateVip", name=f"{env.prefix}-vip", l3NetworkUuid=pub)["inventory"]
    eip = api.call("CreateEip", name=f"{env.prefix}-eip", vipUuid=vip["uuid"], vmNicUuid=nic["uuid"])["inventory"]
    assert eip["guestIp"] == "16.16.16.16"
    return eip, vip


# ---- the three transports ------------------------------------------------------------------------

LIST_PARAMS = {"fields"}
INT_PARAMS = {"limit", "start"}
BOOL_PARAMS = {"count", "replyWithCount"}
PARAMS = LIST_PARAMS | INT_PARAMS | BOOL_PARAMS | {"sortBy", "sortDirection", "groupBy"}


def _split(args: list[str]) -> tuple[list[str], dict[str, str]]:
    conds, params = [], {}
    for a in args:
        key, sep, value = a.partition("=")
        if sep and key in PARAMS:
            params[key] = value
        else:
            conds.append(a)
    return conds, params


def via_rpc(api: ZStackClient, w: World, name: str, args: list[str]) -> dict[str, Any]:
    conds, params = _split(args)
    msg: dict[str, Any] = {"conditions": [parse_condition(c) for c in conds]}
    for k, v in params.items():
        msg[k] = v.split(",") if k in LIST_PARAMS else int(v) if k in INT_PARAMS else \
            v == "true" if k in BOOL_PARAMS else v
    try:
        return api.call(name, **msg)
    except ClientError as e:
        return {"error": e.error}


def via_rest(api: ZStackClient, w: World, name: str, args: list[str]) -> dict[str, Any]:
    conds, params = _split(args)
    fields: list[tuple[str, str]] = [("q", c) for c in conds]
    for k, v in params.items():
        if k == "sortBy":
            fields.append(("sort", ("-" if params.get("sortDirection") == "desc" else "+") + v))
        elif k != "sortDirection":
            fields.append((k, v))
    status, body = api.rest("GET", load_catalog().api(name).rest.path, fields=fields)
    if status != 200:
        return {"error": body["error"], "status": status}
    return body


def via_cli(api: ZStackClient, w: World, name: str, args: list[str]) -> dict[str, Any]:
    r = w.cli(name, *args)
    if r.returncode != 0:
        return {"error": {"code": "SYS.1007" if "SYS.1007" in r.stderr else None, "details": r.stderr}}
    return json.loads(r.stdout)


TRANSPORTS = {"rpc": via_rpc, "rest": via_rest, "cli": via_cli}


# ---- the table ------------------------------------------------------------------------------------

@dataclass
class Case:
    """A query and its expected answer, both computed from the world.

    kind: "set" (uuids, any order), "list" (uuids in order), "exact" (inventories, sorted by name),
    "total" (count only), "error" (SYS.1007 whose text holds every given string).
    """

    id: str
    api: str
    args: Callable[[World], list[str]]
    kind: str
    expected: Callable[[World], Any]
    with_total: int | None = None


def _size_holders(w: World, threshold: int) -> set[str]:
    """Hosts of Running VMs (of this world) with a volume of at least `threshold` bytes."""
    return {v["hostUuid"] for v in w.vms if v["state"] == "Running"
            and any(vol["size"] >= threshold for vol in v["allVolumes"])}


def _host_rows(w: World, uuids: set[str]) -> list[dict[str, Any]]:
    return sorted(({"name": h["name"], "uuid": h["uuid"], "managementIp": h["managementIp"]}
                   for h in w.hosts if h["uuid"] in uuids), key=lambda h: h["name"])


def _env_of(w: World, vm: dict[str, Any]) -> Env:
    return next(e for e in w.envs if e.zone == vm["zoneUuid"])


QUERIES = [
    Case("readme-host-kvm", "QueryHost", lambda w: README_HOST_QUERY, "exact", lambda w: []),
    Case("readme-host-simulator", "QueryHost",
         lambda w: [t.replace("=KVM", "=Simulator").replace("549755813888000", str(BIG)) for t in README_HOST_QUERY],
         "exact", lambda w: _host_rows(w, _size_holders(w, BIG))),
    Case("readme-vm-eip", "QueryVmInstance", lambda w: ["vmNics.eip.guestIp=16.16.16.16", "zone.name=west-coast"],
         "set", lambda w: {w.vm(0)["uuid"]}),
    Case("eip-by-vip-ip", "QueryEip", lambda w: [f"vipIp={w.vip['ip']}"], "set", lambda w: {w.eip["uuid"]}),
    Case("vip-by-eip-vm-name", "QueryVip", lambda w: [f"eip.vmNic.vmInstance.name={w.vm(0)['name']}"],
         "set", lambda w: {w.vip["uuid"]}),
    Case("vm-by-eip-vip-l3", "QueryVmInstance", lambda w: ["vmNics.eip.vip.l3Network.zone.name=west-coast",
                                                          f"zoneUuid?={w.zones}"],
         "set", lambda w: {w.vm(0)["uuid"]}),
    Case("nested-2-host-cluster", "QueryVmInstance", lambda w: [f"host.cluster.name={w.envs[1].prefix}-cluster"],
         "set", lambda w: w.uuids(lambda v: v["clusterUuid"] == w.envs[1].cluster and v["hostUuid"])),
    Case("nested-3-nic-l3-l2", "QueryVmInstance", lambda w: [f"vmNics.l3Network.l2Network.name={w.envs[0].prefix}-l2"],
         "set", lambda w: w.uuids(lambda v: v["zoneUuid"] == w.envs[0].zone)),
    Case("nested-3-reverse-volumes-ps", "QueryHost",
         lambda w: [f"zoneUuid?={w.zones}", "vmInstance.allVolumes.primaryStorage.name~=%c-ps"],
         "set", lambda w: {v["hostUuid"] for v in w.vms if v["zoneUuid"] == w.envs[2].zone}),
    Case("nested-3-zone-cluster-host-vm", "QueryZone", lambda w: [f"uuid?={w.zones}", "host.vmInstance.cpuNum>=1",
                                                                 "cluster.host.vmInstance.state=Running"],
         "set", lambda w: {v["zoneUuid"] for v in w.vms if v["state"] == "Running"}),
    Case("reverse-zone-by-vm-name", "QueryZone", lambda w: [f"vmInstance.name={w.vm(3)['name']}"],
         "set", lambda w: {w.vm(3)["zoneUuid"]}),
    Case("user-tag", "QueryVmInstance", lambda w: [f"__userTag__={w.envs[0].prefix[:-1]}-team"],
         "set", lambda w: {w.tagged_user}),
    Case("system-tag-like", "QueryVmInstance", lambda w: [f"__systemTag__~={w.envs[0].prefix[:-1]}::%"],
         "set", lambda w: {w.tagged_system}),
    Case("system-tag-negative", "QueryVmInstance",
         lambda w: [f"zoneUuid?={w.zones}", f"__systemTag__!={w.envs[0].prefix[:-1]}::owner"],
         "set", lambda w: w.uuids(lambda v: v["uuid"] != w.tagged_system)),
    Case("user-tag-is-null", "QueryVmInstance", lambda w: [f"zoneUuid?={w.zones}", "__userTag__ is null"],
         "set", lambda w: w.uuids(lambda v: v["uuid"] != w.tagged_user)),
    Case("eq-null", "QueryVmInstance", lambda w: [f"zoneUuid?={w.zones}", "hostUuid=null"],
         "set", lambda w: w.uuids(lambda v: v["hostUuid"] is None)),
    Case("ne-null-and-state", "QueryVmInstance", lambda w: [f"zoneUuid?={w.zones}", "hostUuid!=null",
                                                           "state!=Stopped"],
         "set", lambda w: w.uuids(lambda v: v["hostUuid"] is not None and v["state"] != "Stopped")),
    Case("in-and-not-in", "QueryVmInstance",
         lambda w: [f"zoneUuid?={w.zones}", f"name!?={w.vm(0)['name']},{w.vm(4)['name']}"],
         "set", lambda w: {w.vm(i)["uuid"] for i in (1, 2, 3)}),
    Case("typed-long-on-volumes", "QueryVmInstance", lambda w: [f"zoneUuid?={w.zones}", f"allVolumes.size>{GB * 6}"],
         "set", lambda w: w.uuids(lambda v: any(x["size"] > 6 * GB for x in v["allVolumes"]))),
    Case("date-epoch-and-iso", "QueryVmInstance",
         lambda w: [f"zoneUuid?={w.zones}", "createDate>=0", "createDate<2999-01-01T00:00:00"],
         "set", lambda w: w.uuids(lambda v: True)),
    Case("count", "QueryVmInstance", lambda w: [f"zoneUuid?={w.zones}", "state=Running", "count=true"],
         "total", lambda w: len(w.uuids(lambda v: v["state"] == "Running"))),
    Case("sorted-page", "QueryVmInstance",
         lambda w: [f"zoneUuid?={w.zones}", "sortBy=name", "sortDirection=desc", "start=1", "limit=2"],
         "list", lambda w: [w.vm(3)["uuid"], w.vm(2)["uuid"]]),
    Case("sorted-page-with-count", "QueryVmInstance",
         lambda w: [f"zoneUuid?={w.zones}", "sortBy=name", "start=0", "limit=2", "replyWithCount=true"],
         "list", lambda w: [w.vm(0)["uuid"], w.vm(1)["uuid"]], with_total=5),
    Case("sort-nullable-asc", "QueryVmInstance", lambda w: [f"zoneUuid?={w.zones}", "sortBy=hostUuid"],
         "list", lambda w: [v["uuid"] for v in sorted(w.vms, key=lambda v: (v["hostUuid"] is not None,
                                                                           v["hostUuid"] or "", v["uuid"]))]),
    Case("like-on-int", "QueryVmInstance", lambda w: [f"zoneUuid?={w.zones}", "cpuNum~=1%", "memorySize!~=%5"],
         "set", lambda w: w.uuids(lambda v: str(v["cpuNum"]).startswith("1") and not str(v["memorySize"]).endswith("5"))),
    Case("boolean", "QueryZone", lambda w: [f"uuid?={w.zones}", "isDefault=false"],
         "set", lambda w: {e.zone for e in w.envs}),
    Case("fields", "QueryHost", lambda w: [f"clusterUuid={w.envs[2].cluster}", "fields=name,uuid,managementIp"],
         "exact", lambda w: _host_rows(w, set(w.envs[2].hosts))),
    Case("group-by-zone", "QueryVmInstance", lambda w: [f"zoneUuid?={w.zones}", "groupBy=zoneUuid"],
         "set", lambda w: {min(v["uuid"] for v in w.vms if v["zoneUuid"] == e.zone) for e in w.envs}),
    Case("bad-int", "QueryVmInstance", lambda w: ["cpuNum=many"], "error", lambda w: ["cpuNum", "not a valid int"]),
    Case("bad-field", "QueryHost", lambda w: ["vmInstance.nme=x"], "error",
         lambda w: ["'nme'", "VmInstanceInventory", "valid fields"]),
]


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize("case", QUERIES, ids=[c.id for c in QUERIES])
def test_query_table(api: ZStackClient, world: World, case: Case, transport: str) -> None:
    reply = TRANSPORTS[transport](api, world, case.api, case.args(world))
    expected = case.expected(world)
    if case.kind == "error":
        assert "error" in reply, reply
        assert reply["error"]["code"] == "SYS.1007"
        text = json.dumps(reply["error"]) if transport != "cli" else reply["error"]["details"]
        for s in expected:
            assert s in text, (s, text)
        return
    assert "error" not in reply, reply
    if case.kind == "total":
        assert reply["total"] == expected
        assert not reply.get("inventories")
        return
    invs = reply["inventories"]
    if case.kind == "set":
        assert {i["uuid"] for i in invs} == expected
    elif case.kind == "list":
        assert [i["uuid"] for i in invs] == expected
    else:
        assert sorted(invs, key=lambda i: i["name"]) == expected
    if case.with_total is not None:
        assert reply["total"] == case.with_total


def test_the_simulator_host_query_finds_exactly_the_hosts_of_big_running_vms(world: World) -> None:
    holders = _size_holders(world, BIG)
    assert len(holders) == 2  # vm2 and vm4 (vm3, stopped, holds only a small data volume)


def test_get_one_resource_by_uuid_over_rest(api: ZStackClient, world: World) -> None:
    vm = world.vm(2)
    status, body = api.rest("GET", f"/vm-instances/{vm['uuid']}")
    assert status == 200 and [i["uuid"] for i in body["inventories"]] == [vm["uuid"]]
    status, body = api.rest("GET", f"/vm-instances/{vm['uuid']}", fields=[("fields", "uuid,name")])
    assert status == 200 and body["inventories"] == [{"uuid": vm["uuid"], "name": vm["name"]}]
    status, body = api.rest("GET", "/vm-instances/0123456789abcdef0123456789abcdef")
    assert status == 200 and body["inventories"] == []


def test_rest_q_values_holding_operators(api: ZStackClient, world: World) -> None:
    name = world.vm(1)["name"]
    status, body = api.rest("GET", "/vm-instances", fields=[("q", f"name={name}>=x"), ("q", f"zoneUuid?={world.zones}")])
    assert status == 200 and body["inventories"] == []
    status, body = api.rest("GET", "/vm-instances", fields=[("q", f"name~={name[:-1]}_"), ("q", "description=null"),
                                                            ("q", f"zoneUuid?={world.zones}"), ("fields", "uuid")])
    assert status == 200 and {i["uuid"] for i in body["inventories"]} == world.uuids(lambda v: True)
    status, body = api.rest("GET", "/vm-instances", fields=[("q", "nope")])
    assert status == 400 and body["error"]["code"] == "SYS.1007"


def test_rest_takes_sort_by_and_sort_direction_as_well_as_sort(api: ZStackClient, world: World) -> None:
    scope = ("q", f"zoneUuid?={world.zones}")
    for params in ([("sortBy", "name"), ("sortDirection", "desc")], [("sort", "-name")]):
        status, body = api.rest("GET", "/vm-instances", fields=[scope, *params, ("limit", "1"), ("fields", "uuid")])
        assert status == 200 and body["inventories"] == [{"uuid": world.vm(4)["uuid"]}]
    status, body = api.rest("GET", "/vm-instances", fields=[scope, ("groupBy", "nope")])
    assert status == 400 and "'nope' is not a groupBy field" in body["error"]["details"]
