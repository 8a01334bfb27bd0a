"""The tenancy table (issue 14): a normal account A against admin's resources and another tenant B's,
for every Query API the MN serves and every mutating API of each resource family, through RPC and
REST: nothing of theirs visible (plain, counted, grouped, through nested expansions), nothing of
theirs changed, each refusal ID.1002 (403 on REST) naming the resource. Then the positive side:
what admin shares A may use (a VM, a volume, a VIP and an EIP on it) but not change, and loses
when the share is revoked; ChangeResourceOwner moves a VM with its volumes.

The API lists are derived, not written: served APIs from GetSupportAPIs, the parameters naming a
resource from the catalogue (mn.access reads the same), the families from mn.ownership.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from integration.envs import Env, add_public_network, build_env, unique
from integration.test_identity import sha
from mn import access, ownership
from mn.catalogue.catalog import ApiSpec, ParamSpec, load_catalog
from mn.client import ClientError, ZStackClient
from mn.context import ADMIN_ACCOUNT_UUID, Caller
from mn.query import QueryCompiler

GB = 1 << 30
TRANSPORTS = ("rpc", "rest")
QUERY_OF = {  # resource type -> the Query API showing it (for before/after inventories)
    "VmInstanceVO": "QueryVmInstance", "VolumeVO": "QueryVolume", "ImageVO": "QueryImage",
    "L3NetworkVO": "QueryL3Network", "IpRangeVO": "QueryIpRange", "InstanceOfferingVO": "QueryInstanceOffering",
    "DiskOfferingVO": "QueryDiskOffering", "VmNicVO": "QueryVmNic", "UsedIpVO": "QueryIpAddress",
    "VipVO": "QueryVip", "EipVO": "QueryEip", "TagVO": "QueryUserTag", "UserVO": "QueryUser",
    "UserGroupVO": "QueryUserGroup", "PolicyVO": "QueryPolicy", "AccountVO": "QueryAccount",
}
TYPE_OF_INVENTORY = {load_catalog().api(q).inventory: t for t, q in QUERY_OF.items()}
ADMIN_ONLY_QUERIES = ("QueryZone", "QueryCluster", "QueryHost", "QueryPrimaryStorage", "QueryBackupStorage",
                      "QueryL2Network", "QueryGlobalConfig", "QueryManagementNode")


@dataclass
class Tenant:
    name: str
    account: str
    client: ZStackClient
    res: dict[str, str] = field(default_factory=dict)  # resource type -> uuid


def _tenant(api: ZStackClient, mn: Any) -> Tenant:
    name = unique("ten")
    acc = api.call("CreateAccount", name=name, password=sha("secret"))["inventory"]["uuid"]
    c = ZStackClient(mn.url)
    c.login(name, "secret")
    return Tenant(name, acc, c)


def _populate(t: Tenant, env: Env, octet: int, image: str, offering: str, l3: str | None = None,
              pub_l3: str | None = None) -> None:
    """One resource of every family, owned by `t`; its own L3 on admin's L2 unless `l3` is given."""
    c, r = t.client, t.res
    if l3 is None:
        l3 = c.call("CreateL3Network", name=unique("l3"), l2NetworkUuid=env.l2)["inventory"]["uuid"]
        c.call("AddIpRange", l3NetworkUuid=l3, name=unique("r"), startIp=f"10.{octet}.0.10",
               endIp=f"10.{octet}.0.200", netmask="255.255.255.0", gateway=f"10.{octet}.0.1")
    r["L3NetworkVO"] = l3
    r["IpRangeVO"] = c.query("QueryIpRange", f"l3NetworkUuid={l3}")[0]["uuid"]
    r["ImageVO"] = image
    r["InstanceOfferingVO"] = offering
    r["DiskOfferingVO"] = c.call("CreateDiskOffering", name=unique("do"), diskSize=GB)["inventory"]["uuid"]
    vm = c.call("CreateVmInstance", name=unique("vm"), instanceOfferingUuid=offering, imageUuid=image,
                l3NetworkUuids=[l3], dataDiskSizes=[GB])["inventory"]
    r["VmInstanceVO"] = r["ResourceVO"] = vm["uuid"]
    r["VmNicVO"] = vm["vmNics"][0]["uuid"]
    r["UsedIpVO"] = c.query("QueryIpAddress", f"vmNicUuid={r['VmNicVO']}")[0]["uuid"]
    r["VolumeVO"] = c.call("CreateDataVolume", name=unique("vol"), diskSize=GB)["inventory"]["uuid"]
    if pub_l3 is not None:
        r["VipVO"] = c.call("CreateVip", name=unique("vip"), l3NetworkUuid=pub_l3)["inventory"]["uuid"]
        r["EipVO"] = c.call("CreateEip", name=unique("eip"), vipUuid=r["VipVO"],
                            vmNicUuid=r["VmNicVO"])["inventory"]["uuid"]
    r["TagVO"] = c.call("CreateUserTag", resourceType="VmInstanceVO", resourceUuid=vm["uuid"],
                        tag=unique("tag"))["inventory"]["uuid"]
    r["UserVO"] = c.call("CreateUser", name=unique("u"), password=sha("p"))["inventory"]["uuid"]
    r["UserGroupVO"] = c.call("CreateUserGroup", name=unique("g"))["inventory"]["uuid"]
    r["PolicyVO"] = c.call("CreatePolicy", name=unique("p"),
                           statements=[{"effect": "Allow", "actions": ["*"]}])["inventory"]["uuid"]
    r["AccountVO"] = t.account
    r["SessionVO"] = c.session


def row_key(row: dict[str, Any]) -> str:
    if "uuid" in row:
        return row["uuid"]
    return json.dumps({k: v for k, v in row.items() if "Date" not in k}, sort_keys=True, default=str)


def served(api: ZStackClient) -> list[ApiSpec]:
    names = set(api.call("GetSupportAPIs")["supportApis"])
    return [s for s in load_catalog().apis.values() if s.message in names]


def query_rows(c: ZStackClient, transport: str, api_name: str, conds: list[str] = (), **extra: Any) -> dict:
    """The reply of a Query API (inventories and/or total) through RPC or REST."""
    if transport == "rpc":
        conditions = [_cond(x) for x in conds]
        return c.call(api_name, conditions=conditions, **extra)
    spec = load_catalog().api(api_name)
    fields = [("q", x) for x in conds] + [(k, str(v).lower() if isinstance(v, bool) else str(v))
                                           for k, v in extra.items()]
    status, body = c.rest("GET", spec.rest.path.split("/{")[0], fields=fields)
    if status != 200:
        raise ClientError(api_name, body.get("error") or body, status)
    return body


def rest_path(spec: ApiSpec, params: dict[str, Any]) -> str | None:
    """The REST path of a call: the one of the API's paths whose placeholders the params fill
    (the most specific), None when none can be filled."""
    paths = [x for x in (spec.rest.path, *spec.rest.optionalPaths) if x and x != "null"]
    fits = [x for x in paths if all(k in params for k in re.findall(r"{(\w+)}", x))]
    return max(fits, key=lambda x: x.count("{"), default=None)


def call_via(c: ZStackClient, transport: str, api_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """call() of test_identity, with the REST path chosen among the API's optional paths."""
    if transport == "rpc":
        return c.call(api_name, **params)
    spec = load_catalog().api(api_name)
    path = rest_path(spec, params)
    assert path is not None, api_name
    params = dict(params)
    for key in re.findall(r"{(\w+)}", path):
        path = path.replace("{" + key + "}", str(params.pop(key)))
    if spec.rest.method == "POST":
        status, body = c.rest("POST", path, {"params": params})
    elif spec.rest.method == "PUT":
        status, body = c.rest("PUT", path, {spec.action_key: params})
    else:
        fields = [(k, str(x).lower() if isinstance(x, bool) else str(x))
                  for k, v in params.items() for x in (v if isinstance(v, list) else [v])]
        status, body = c.rest(spec.rest.method, path, fields=fields)
    if status != 200:
        raise ClientError(api_name, body.get("error") or body, status)
    return body


def _cond(text: str) -> dict[str, str]:
    name, _, value = text.partition("=")
    return {"name": name, "op": "=", "value": value}


@dataclass
class World:
    env: Env
    admin: Tenant
    a: Tenant
    b: Tenant
    served: list[ApiSpec]
    before: dict[str, set[str]]  # Query API -> keys admin saw before A existed (none of them A's)


@pytest.fixture(scope="module")
def world(api: ZStackClient, mn: Any) -> World:
    env = build_env(api, hosts=1, cpu=64, memory=256 * GB)
    octet = int(env.prefix[-2:], 16) % 150 + 20
    _, pub_l3 = add_public_network(api, env, octet)
    env.extra["pub_l3"] = pub_l3
    admin = Tenant("admin", ADMIN_ACCOUNT_UUID, api)
    _populate(admin, env, octet, env.image, env.offering, l3=env.l3, pub_l3=pub_l3)
    b = _tenant(api, mn)
    api.call("ShareResource", resourceUuids=[env.image, env.l3, env.offering, pub_l3], accountUuids=[b.account])
    b_image = b.client.call("AddImage", name=unique("img"), url=f"http://images.test/b-{env.prefix}.qcow2?size={GB}",
                            backupStorageUuids=[env.bs], format="qcow2")["inventory"]["uuid"]
    b_off = b.client.call("CreateInstanceOffering", name=unique("off"), cpuNum=1, memorySize=GB)["inventory"]["uuid"]
    _populate(b, env, octet + 1, b_image, b_off, pub_l3=pub_l3)
    specs = served(api)
    before = {s.name: {row_key(r) for r in api.call(s.name, conditions=[], limit=100000).get("inventories", [])}
              for s in specs if s.kind == "query"}
    a = _tenant(api, mn)
    a_image = a.client.call("AddImage", name=unique("img"), url=f"http://images.test/a-{env.prefix}.qcow2?size={GB}",
                            backupStorageUuids=[env.bs], format="qcow2")["inventory"]["uuid"]
    a_off = a.client.call("CreateInstanceOffering", name=unique("off"), cpuNum=1, memorySize=GB)["inventory"]["uuid"]
    _populate(a, env, octet + 2, a_image, a_off)
    # A's own public L3 (on admin's public L2) for its VIP and EIP.
    pub_l2 = api.query("QueryL3Network", f"uuid={pub_l3}")[0]["l2NetworkUuid"]
    a_pub = a.client.call("CreateL3Network", name=unique("pub"), l2NetworkUuid=pub_l2,
                          category="Public")["inventory"]["uuid"]
    a.client.call("AddIpRange", l3NetworkUuid=a_pub, name=unique("r"), startIp=f"172.{octet}.1.10",
                  endIp=f"172.{octet}.1.100", netmask="255.255.0.0", gateway=f"172.{octet}.0.1")
    a.res["VipVO"] = a.client.call("CreateVip", name=unique("vip"), l3NetworkUuid=a_pub)["inventory"]["uuid"]
    a.res["EipVO"] = a.client.call("CreateEip", name=unique("eip"), vipUuid=a.res["VipVO"],
                                   vmNicUuid=a.res["VmNicVO"])["inventory"]["uuid"]
    return World(env, admin, a, b, specs, before)


# ---- queries ------------------------------------------------------------------------------------

def _query_specs(w: World) -> list[ApiSpec]:
    return [s for s in w.served if s.kind == "query"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_query_shows_a_normal_account_others_rows(world, transport):
    """Every served Query API, as A, with no conditions: none of admin's or B's rows; count,
    replyWithCount and groupBy agree with the rows; admin-only ones refused with ID.1002."""
    w, a = world, world.a.client
    checked = refused = 0
    for spec in _query_specs(w):
        if not access.api_allowed(spec, Caller(w.a.account)):
            with pytest.raises(ClientError) as e:
                query_rows(a, transport, spec.name)
            assert e.value.code == "ID.1002", (spec.name, e.value.error)
            if transport == "rest":
                assert e.value.status == 403
            refused += 1
            continue
        rows = query_rows(a, transport, spec.name, limit=100000)["inventories"]
        keys = {row_key(r) for r in rows}
        leaked = keys & w.before[spec.name]
        assert not leaked, (spec.name, leaked)
        total = query_rows(a, transport, spec.name, count=True)["total"]
        with_count = query_rows(a, transport, spec.name, replyWithCount=True, limit=100000)
        assert total == with_count["total"] == len(rows), spec.name
        cols = QueryCompiler().column_fields(spec.inventory)
        for g in [c for c in ("uuid", "state", "type", "name") if c in cols][:2]:
            grouped = query_rows(a, transport, spec.name, groupBy=g, replyWithCount=True, limit=100000)
            assert grouped["total"] == len(grouped["inventories"]) == len({r.get(g) for r in rows}), (spec.name, g)
        checked += 1
    for name in ADMIN_ONLY_QUERIES:
        assert not access.api_allowed(load_catalog().api(name), Caller(w.a.account)), name
    assert refused >= len(ADMIN_ONLY_QUERIES) and checked >= 15
    # A sees its own (the table is not vacuous).
    mine = {row_key(r) for r in query_rows(a, transport, "QueryVmInstance")["inventories"]}
    assert mine == {w.a.res["VmInstanceVO"]}
    assert {w.a.res["VolumeVO"]} < {row_key(r) for r in query_rows(a, transport, "QueryVolume")["inventories"]}


def _victims(w: World) -> dict[str, list[str]]:
    """Inventory -> uuids of admin's and B's resources of it (none shared with A)."""
    out: dict[str, list[str]] = {}
    for t in (w.admin, w.b):
        for rtype, uuid in t.res.items():
            q = QUERY_OF.get(rtype)
            if q:
                out.setdefault(load_catalog().api(q).inventory, []).append(uuid)
    out.setdefault("ZoneInventory", []).append(w.env.zone)
    out.setdefault("L2NetworkInventory", []).append(w.env.l2)
    out.setdefault("HostInventory", []).extend(w.env.hosts)
    return out


def _expansion_paths(inventory: str, depth: int = 2) -> list[tuple[str, str]]:
    """(path, target inventory) of every expansion chain up to `depth` steps."""
    qc = QueryCompiler()
    out: list[tuple[str, str]] = []
    frontier = [("", inventory)]
    for _ in range(depth):
        nxt = []
        for prefix, inv in frontier:
            exps = qc.expansions(inv)
            for f in qc.available_expansions(inv):
                target = exps[f]["inventory"]
                path = f"{prefix}{f}"
                out.append((path, target))
                nxt.append((f"{path}.", target))
        frontier = nxt
    return out


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nested_expansions_reach_no_others_rows(world, transport):
    """For every served Query API A may call, a condition naming admin's or B's row through each
    expansion chain (up to two steps: vmNics.l3Network.uuid=<B's L3>) answers A nothing of
    theirs, and nothing at all when the named row is of an owned family; admin finds rows with
    the same conditions (the conditions are not vacuous)."""
    w, a, adm = world, world.a.client, world.admin.client
    victims = _victims(w)
    admin_hits = n = 0
    for spec in _query_specs(w):
        if not access.api_allowed(spec, Caller(w.a.account)):
            continue
        for path, target in _expansion_paths(spec.inventory):
            if target not in victims or "uuid" not in QueryCompiler().column_fields(target):
                continue
            for uuid in victims[target]:
                cond = [f"{path}.uuid={uuid}"]
                rows = query_rows(a, transport, spec.name, cond, limit=100000)["inventories"]
                keys = {row_key(r) for r in rows}
                assert not keys & w.before[spec.name], (spec.name, cond)
                if target in TYPE_OF_INVENTORY:
                    assert rows == [], (spec.name, cond, keys)
                assert query_rows(a, transport, spec.name, cond, count=True)["total"] == len(rows)
                if transport == "rpc":
                    admin_hits += bool(query_rows(adm, "rpc", spec.name, cond, count=True)["total"])
                n += 1
    assert n > 100
    if transport == "rpc":
        assert admin_hits > 40, admin_hits
    # The brief's examples, by name.
    for q, c in (("QueryVmInstance", f"vmNics.l3Network.uuid={w.b.res['L3NetworkVO']}"),
                 ("QueryL3Network", f"ipRanges.uuid={w.b.res['IpRangeVO']}"),
                 ("QueryVmInstance", f"allVolumes.uuid={w.admin.res['VolumeVO']}"),
                 ("QueryVmNic", f"vmInstance.uuid={w.admin.res['VmInstanceVO']}")):
        assert query_rows(a, transport, q, [c])["inventories"] == [], (q, c)
    assert query_rows(w.b.client, transport, "QueryVmInstance",
                      [f"vmNics.l3Network.uuid={w.b.res['L3NetworkVO']}"])["inventories"]


# ---- mutating APIs ------------------------------------------------------------------------------

TEXT = {"startIp": "10.250.0.10", "endIp": "10.250.0.20", "netmask": "255.255.255.0", "gateway": "10.250.0.1",
        "networkCidr": "10.250.0.0/24", "dns": "8.8.8.8", "resourceType": "VmInstanceVO", "tag": "t",
        "password": sha("x"), "oldPassword": sha("secret"), "ip": "10.250.0.11", "url": "http://images.test/x.qcow2",
        "format": "qcow2", "staticIp": "10.250.0.11"}


def _value(p: ParamSpec, own: dict[str, str]) -> Any:
    """An otherwise valid value of a required, untyped parameter."""
    if p.validValues:
        v: Any = p.validValues[0]
        return {"true": True, "false": False}.get(v, v) if p.type == "boolean" else v
    if p.type in ("int", "long"):
        return p.numberRange[0] if p.numberRange and p.numberRange[0] > 0 else 1
    if p.type in ("float", "double"):
        return 1.0
    if p.type == "boolean":
        return False
    if p.type == "map":
        return {}
    if p.type == "list":
        if p.name == "statements":
            return [{"effect": "Allow", "actions": ["*"]}]
        return [TEXT.get(p.name.rstrip("s"), "x")] if (p.elementType or "string") == "string" else []
    return TEXT.get(p.name, unique("x"))


def families() -> set[str]:
    """Resource types with a visibility rule (plugins' too, once the MN loaded them), and ResourceVO."""
    return set(ownership.BY_TYPE) | {"ResourceVO"}


def _rtype(spec: ApiSpec, p: ParamSpec) -> str | None:
    return access.PARAM_TYPES.get((spec.name, p.name)) or p.resourceType


def mutating_calls(w: World) -> list[tuple[str, dict[str, Any], str]]:
    """(API, params, the victim's uuid) for every served mutating API a normal account may call
    whose parameters name a resource of an owned family: each such parameter in turn names
    admin's or B's resource, the others A's own, every other required one an ordinary value."""
    out = []
    fam = families()
    for spec in w.served:
        if spec.kind == "query" or spec.noSession or not access.api_allowed(spec, Caller(w.a.account)):
            continue
        typed = [p for p in spec.params if _rtype(spec, p) in fam]
        for p in typed:
            rtype = _rtype(spec, p)
            if rtype == "AccountVO" and p.name != "uuid":
                continue  # receivers of a share, not resources changed
            for victim in (w.admin, w.b):
                if rtype not in victim.res:
                    continue
                params: dict[str, Any] = {}
                for q in spec.params:
                    qt = _rtype(spec, q)
                    if q is p:
                        v = victim.res[rtype]
                    elif qt in fam and qt != "AccountVO":
                        if not q.required:
                            continue
                        v = w.a.res[qt]
                    elif q.required and q.default is None:
                        v = _value(q, w.a.res)
                    else:
                        continue
                    params[q.name] = [v] if q.type == "list" and not isinstance(v, list) else v
                out.append((spec.name, params, victim.res[rtype]))
    return out


def inventories(w: World) -> dict[str, Any]:
    """Admin's view of every resource of admin and B named above, and of their shares and owners."""
    adm = w.admin.client
    out: dict[str, Any] = {}
    for t in (w.admin, w.b):
        for rtype, uuid in t.res.items():
            q = QUERY_OF.get(rtype)
            if q:
                key = "resourceUuid" if q == "QueryAccountResourceRef" else "uuid"
                out[f"{t.name}:{rtype}"] = adm.query(q, f"{key}={uuid}")
        uuids = ",".join(t.res.values())
        out[f"{t.name}:owners"] = sorted(map(row_key, adm.query("QueryAccountResourceRef", f"resourceUuid?={uuids}")))
        out[f"{t.name}:shares"] = sorted(map(row_key, adm.query("QuerySharedResource", f"resourceUuid?={uuids}")))
    out["b:session"] = adm.call("ValidateSession", sessionUuid=w.b.client.session)["validSession"]
    return out


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_mutating_api_changes_others_resources(world, transport):
    w = world
    calls = mutating_calls(w)
    apis = {name for name, _, _ in calls}
    for must in ("DestroyVmInstance", "DeleteDataVolume", "UpdateL3Network", "DeleteImage", "DeleteEip",
                 "UpdateVip", "AttachDataVolumeToVm", "CreateVmInstance", "DeleteTag", "ShareResource",
                 "AddIpRange", "DeleteUser", "UpdateAccount"):
        assert must in apis, must
    before = inventories(w)
    failures = []
    for name, params, victim in calls:
        if transport == "rest" and rest_path(load_catalog().api(name), params) is None:
            continue  # no REST path takes these parameters
        try:
            call_via(w.a.client, transport, name, params)
            failures.append((name, params, "succeeded"))
        except ClientError as e:
            ok = (e.code == "ID.1002" and victim in (e.error.get("details") or "")
                  and (transport == "rpc" or e.status == 403))
            if not ok:
                failures.append((name, params, e.code, e.status, e.error.get("details")))
    assert not failures, "\n".join(map(str, failures))
    assert inventories(w) == before
    assert len(calls) > 100


def test_reads_naming_others_resources_are_refused(world):
    """The non-query reads (GetAccountQuotaUsage, GetResourceAccount, ...) naming admin's or B's
    resource answer nothing about it: ID.1002."""
    w, a = world, world.a.client
    for victim in (w.admin, w.b):
        for name, params in (("GetAccountQuotaUsage", {"uuid": victim.account}),
                             ("GetDataVolumeAttachableVm", {"volumeUuid": victim.res["VolumeVO"]}),
                             ("GetVmNicAttachableEips", {"vmNicUuid": victim.res["VmNicVO"]}),
                             ("GetEipAttachableVmNics", {"eipUuid": victim.res.get("EipVO", w.admin.res["EipVO"])}),
                             ("GetResourceAccount", {"resourceUuids": [victim.res["VmInstanceVO"]]})):
            with pytest.raises(ClientError) as e:
                a.call(name, **params)
            assert e.value.code == "ID.1002", (name, e.value.error)


ADMIN_ONLY_CALLS = (
    ("CreateZone", lambda w: {"name": unique("z")}),
    ("DeleteZone", lambda w: {"uuid": w.env.zone}),
    ("CreateCluster", lambda w: {"zoneUuid": w.env.zone, "name": unique("c"), "hypervisorType": "Simulator"}),
    ("AddKVMHost", lambda w: {"name": unique("h"), "managementIp": "10.0.0.9", "clusterUuid": w.env.cluster,
                              "username": "root", "password": "x"}),
    ("AddSimulatorHost", lambda w: {"name": unique("h"), "managementIp": "x.sim", "clusterUuid": w.env.cluster,
                                    "cpuCapacity": 8, "memoryCapacity": GB}),
    ("CreateL2NoVlanNetwork", lambda w: {"name": unique("l2"), "zoneUuid": w.env.zone, "physicalInterface": "eth9"}),
    ("UpdateGlobalConfig", lambda w: {"category": "vm", "name": "deletionPolicy", "value": "Direct"}),
    ("CreateAccount", lambda w: {"name": unique("acc"), "password": sha("x")}),
    ("UpdateQuota", lambda w: {"identityUuid": w.a.account, "name": "vm.num", "value": 1000}),
    ("ChangeResourceOwner", lambda w: {"accountUuid": w.a.account, "resourceUuid": w.b.res["VmInstanceVO"]}),
)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_admin_only_apis_are_refused(world, transport):
    w = world
    zones = w.admin.client.query("QueryZone", f"uuid={w.env.zone}")
    quota = w.admin.client.query("QueryQuota", f"identityUuid={w.a.account}", "name=vm.num")
    served_names = {s.name for s in w.served}
    for name, params in ADMIN_ONLY_CALLS:
        if name not in served_names:
            continue
        with pytest.raises(ClientError) as e:
            call_via(w.a.client, transport, name, params(w))
        assert e.value.code == "ID.1002", (name, e.value.error)
        assert transport == "rpc" or e.value.status == 403
    for name in ADMIN_ONLY_QUERIES:
        with pytest.raises(ClientError) as e:
            query_rows(w.a.client, transport, name)
        assert e.value.code == "ID.1002"
    assert w.admin.client.query("QueryZone", f"uuid={w.env.zone}") == zones
    assert w.admin.client.query("QueryQuota", f"identityUuid={w.a.account}", "name=vm.num") == quota
    # The documented exception: a normal account places its own L3 on admin's L2 (infrastructure it
    # may name, not see).
    mine = w.a.client.query("QueryL3Network", f"uuid={w.a.res['L3NetworkVO']}")
    assert mine and mine[0]["l2NetworkUuid"] == w.env.l2
    assert w.admin.client.query("QueryAccountResourceRef",
                                f"resourceUuid={w.b.res['VmInstanceVO']}")[0]["accountUuid"] == w.b.account


# ---- the positive side --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["toPublic", "toAccount"])
def test_shared_resources_are_usable_not_changeable_and_vanish_when_revoked(world, api, mn, how):
    w = world
    t = _tenant(api, mn)
    c, env = t.client, w.env
    shared = [env.image, env.l3, env.offering, env.extra["pub_l3"]]
    for q, u in (("QueryImage", env.image), ("QueryL3Network", env.l3), ("QueryInstanceOffering", env.offering)):
        assert c.query(q, f"uuid={u}") == []
    target = {"toPublic": True} if how == "toPublic" else {"accountUuids": [t.account]}
    api.call("ShareResource", resourceUuids=shared, **target)
    try:
        for q, u in (("QueryImage", env.image), ("QueryL3Network", env.l3),
                     ("QueryInstanceOffering", env.offering), ("QueryL3Network", env.extra["pub_l3"])):
            assert [r["uuid"] for r in c.query(q, f"uuid={u}")] == [u], q
        assert [r["uuid"] for r in c.query("QueryIpRange", f"l3NetworkUuid={env.l3}")] == [env.ip_range]
        vm = c.call("CreateVmInstance", name=unique("vm"), instanceOfferingUuid=env.offering, imageUuid=env.image,
                    l3NetworkUuids=[env.l3])["inventory"]
        vol = c.call("CreateDataVolume", name=unique("vol"), diskSize=GB)["inventory"]
        c.call("AttachDataVolumeToVm", vmInstanceUuid=vm["uuid"], volumeUuid=vol["uuid"])
        vip = c.call("CreateVip", name=unique("vip"), l3NetworkUuid=env.extra["pub_l3"])["inventory"]
        eip = c.call("CreateEip", name=unique("eip"), vipUuid=vip["uuid"], vmNicUuid=vm["vmNics"][0]["uuid"])
        assert eip["inventory"]["vmNicUuid"] == vm["vmNics"][0]["uuid"]
        owners = {r["resourceUuid"]: r["accountUuid"] for r in api.query(
            "QueryAccountResourceRef", f"resourceUuid?={vm['uuid']},{vol['uuid']},{vip['uuid']}")}
        assert owners == dict.fromkeys((vm["uuid"], vol["uuid"], vip["uuid"]), t.account)
        # Usable, not changeable.
        views = {u: api.query(q, f"uuid={u}") for q, u in (("QueryImage", env.image), ("QueryL3Network", env.l3),
                                                          ("QueryInstanceOffering", env.offering))}
        for name, params in (("UpdateImage", {"uuid": env.image, "name": "mine"}),
                             ("ChangeImageState", {"uuid": env.image, "stateEvent": "disable"}),
                             ("DeleteImage", {"uuid": env.image}),
                             ("UpdateL3Network", {"uuid": env.l3, "name": "mine"}),
                             ("DeleteL3Network", {"uuid": env.l3}),
                             ("AddDnsToL3Network", {"l3NetworkUuid": env.l3, "dns": "1.1.1.1"}),
                             ("AddIpRange", {"l3NetworkUuid": env.l3, "name": "r", "startIp": "10.251.0.2",
                                             "endIp": "10.251.0.9", "netmask": "255.255.255.0",
                                             "gateway": "10.251.0.1"}),
                             ("DeleteIpRange", {"uuid": env.ip_range}),
                             ("UpdateInstanceOffering", {"uuid": env.offering, "name": "mine"}),
                             ("DeleteInstanceOffering", {"uuid": env.offering}),
                             ("CreateUserTag", {"resourceType": "ImageVO", "resourceUuid": env.image, "tag": "x"}),
                             ("ShareResource", {"resourceUuids": [env.image], "toPublic": True}),
                             ("RevokeResourceSharing", {"resourceUuids": [env.image], "all": True})):
            for transport in TRANSPORTS:
                with pytest.raises(ClientError) as e:
                    call_via(c, transport, name, params)
                assert e.value.code == "ID.1002", (name, e.value.error)
        assert {u: api.query(q, f"uuid={u}") for q, u in (("QueryImage", env.image), ("QueryL3Network", env.l3),
                                                           ("QueryInstanceOffering", env.offering))} == views
    finally:
        api.call("RevokeResourceSharing", resourceUuids=shared, **target)
    for q, u in (("QueryImage", env.image), ("QueryL3Network", env.l3), ("QueryInstanceOffering", env.offering),
                 ("QueryL3Network", env.extra["pub_l3"])):
        assert c.query(q, f"uuid={u}") == [], q
        assert c.call(q, conditions=[{"name": "uuid", "op": "=", "value": u}], count=True)["total"] == 0
    assert c.query("QueryIpRange", f"l3NetworkUuid={env.l3}") == []
    # What A made stays A's: its VM, with its NIC on the (no longer shared) L3.
    assert [v["uuid"] for v in c.query("QueryVmInstance")] == [vm["uuid"]]
    with pytest.raises(ClientError) as e:
        c.call("CreateVmInstance", name=unique("vm"), instanceOfferingUuid=env.offering, imageUuid=env.image,
               l3NetworkUuids=[env.l3])
    assert e.value.code == "ID.1002"


def test_change_resource_owner_moves_a_vm_with_its_volumes(world, api, mn):
    env = world.env
    t, u = _tenant(api, mn), _tenant(api, mn)
    shared = [env.image, env.l3, env.offering]
    api.call("ShareResource", resourceUuids=shared, accountUuids=[t.account, u.account])
    try:
        vm = t.client.call("CreateVmInstance", name=unique("vm"), instanceOfferingUuid=env.offering,
                           imageUuid=env.image, l3NetworkUuids=[env.l3], dataDiskSizes=[GB])["inventory"]
        vols = sorted(v["uuid"] for v in vm["allVolumes"])
        assert len(vols) == 2
        api.call("ChangeResourceOwner", accountUuid=u.account, resourceUuid=vm["uuid"])
        assert t.client.query("QueryVmInstance") == [] and t.client.query("QueryVolume") == []
        assert t.client.query("QueryVmNic", f"vmInstanceUuid={vm['uuid']}") == []
        assert [v["uuid"] for v in u.client.query("QueryVmInstance")] == [vm["uuid"]]
        assert sorted(v["uuid"] for v in u.client.query("QueryVolume")) == vols
        assert [n["uuid"] for n in u.client.query("QueryVmNic")] == [vm["vmNics"][0]["uuid"]]
        owners = {r["resourceUuid"]: r["accountUuid"] for r in api.query(
            "QueryAccountResourceRef", f"resourceUuid?={','.join([vm['uuid'], *vols])}")}
        assert owners == dict.fromkeys([vm["uuid"], *vols], u.account)
        with pytest.raises(ClientError) as e:
            t.client.call("StopVmInstance", uuid=vm["uuid"])
        assert e.value.code == "ID.1002"
        assert u.client.call("StopVmInstance", uuid=vm["uuid"])["inventory"]["state"] == "Stopped"
        usage = {x["name"]: x["used"] for x in u.client.call("GetAccountQuotaUsage", uuid=u.account)["usages"]}
        assert usage["vm.num"] == 1
        usage = {x["name"]: x["used"] for x in t.client.call("GetAccountQuotaUsage", uuid=t.account)["usages"]}
        assert usage["vm.num"] == 0
    finally:
        api.call("RevokeResourceSharing", resourceUuids=shared, accountUuids=[t.account, u.account])
