"""Property: a query as an account answers exactly the rows that account may see, computed in Python.

A random world (seeded) of VMs, NICs, used IPs, L3 networks with IP ranges, volumes, images,
offerings and system tags, with random owners among admin and three normal accounts (some rows
with no owner record at all), and random shares (to one account, or toPublic). Random queries on
eight inventories with conditions on plain fields and through expansions up to two steps deep
(`vmNics.l3Network.name`, `ipRanges.l3Network.uuid`), every operator, plus count/replyWithCount
and groupBy, run through mn.query.run_query as each account; the expected rows come from
`expected()`, an evaluator that knows the visibility rules only as the design states them:
- owned types (VM, volume, image, L3, offerings): the owner, and the accounts it is shared with
  (a receiver, or everyone for toPublic);
- NICs via their VM, used IPs via their NIC, IP ranges via their L3, tags via their resource;
- infrastructure (zones, L2 networks): admins only.
An expansion reaches only rows the account may see. Deterministic in CI: derandomized.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from mn import models as m
from mn.catalogue.catalog import load_catalog
from mn.context import ADMIN_ACCOUNT_UUID, Caller
from mn.db.engine import Database
from mn.db.migrate import upgrade
from mn.query import TARGETS, run_query

ADMIN = Caller(ADMIN_ACCOUNT_UUID, admin=True)
NORMALS = [f"{c * 32}" for c in "abc"]  # three normal accounts
CALLERS = [ADMIN, *(Caller(a) for a in NORMALS)]
OWNERS = [ADMIN_ACCOUNT_UUID, *NORMALS, None]  # None: a row without an owner record

# inventory -> (model, the rule: ("owned", type) | ("via", fk, parent inventory) | ("tag",) | ("admin",))
RULES: dict[str, tuple] = {
    "VmInstanceInventory": ("owned", "VmInstanceVO"),
    "VolumeInventory": ("owned", "VolumeVO"),
    "ImageInventory": ("owned", "ImageVO"),
    "L3NetworkInventory": ("owned", "L3NetworkVO"),
    "InstanceOfferingInventory": ("owned", "InstanceOfferingVO"),
    "VmNicInventory": ("via", "vmInstanceUuid", "VmInstanceInventory"),
    "UsedIpInventory": ("via", "vmNicUuid", "VmNicInventory"),
    "IpRangeInventory": ("via", "l3NetworkUuid", "L3NetworkInventory"),
    "SystemTagInventory": ("tag",),
    "ZoneInventory": ("admin",),
    "L2NetworkInventory": ("admin",),
}
QUERIES = {"QueryVmInstance": "VmInstanceInventory", "QueryVolume": "VolumeInventory",
           "QueryImage": "ImageInventory", "QueryL3Network": "L3NetworkInventory",
           "QueryInstanceOffering": "InstanceOfferingInventory", "QueryVmNic": "VmNicInventory",
           "QueryIpRange": "IpRangeInventory", "QuerySystemTag": "SystemTagInventory",
           "QueryIpAddress": "UsedIpInventory"}
SIMPLE = {"string", "int", "long", "boolean"}
OPS = ["=", "!=", ">", "<=", "in", "not in", "like", "not like", "is null", "is not null"]
PROPERTY = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


RESOURCE_TYPES = {"img": "ImageVO", "ioff": "InstanceOfferingVO", "l3": "L3NetworkVO", "vm": "VmInstanceVO",
                  "vol": "VolumeVO"}


def uid(kind: str, i: int) -> str:
    return f"{kind[:6]:0<6}{i:026d}"


@dataclass
class World:
    db: Database
    rows: dict[str, list[dict[str, Any]]]  # inventory -> rows (column fields)
    owner: dict[str, str | None]  # resource uuid -> owner account (owned types)
    shares: list[tuple[str, str | None, bool]] = field(default_factory=list)  # (uuid, receiver, public)


def build_world(db: Database, seed: int) -> World:
    """Insert a random world; returns it with the owners and shares as generated (not read back)."""
    rnd = random.Random(seed)
    owner: dict[str, str | None] = {}
    shares: list[tuple[str, str | None, bool]] = []
    words = ["web", "db", "Web", "cache", "x_y", "a%b", None]

    def pick_owner(u: str) -> None:
        owner[u] = rnd.choice(OWNERS)

    with db.tx() as s:
        for a in NORMALS:
            s.add(m.Account(uuid=a, name=f"acct-{a[0]}", type="Normal", passwordHash="x", passwordSalt="y"))
        for i in range(2):
            s.add(m.Zone(uuid=uid("zone", i), name=f"zone-{i}"))
        s.flush()
        for i in range(2):
            s.add(m.L2Network(uuid=uid("l2", i), name=f"l2-{i}", zoneUuid=uid("zone", i),
                              physicalInterface="eth0", type="L2NoVlanNetwork"))
        s.flush()
        l3s = [uid("l3", i) for i in range(6)]
        for i, u in enumerate(l3s):
            z = i % 2
            s.add(m.L3Network(uuid=u, name=f"l3-{rnd.choice(words[:5])}-{i}", zoneUuid=uid("zone", z),
                              l2NetworkUuid=uid("l2", z), category=rnd.choice(["Private", "Public"]),
                              system=rnd.random() < 0.3, description=rnd.choice(words)))
            pick_owner(u)
        s.flush()
        ranges = {}
        for i, u in enumerate(l3s):
            for j in range(rnd.randint(0, 2)):
                r = uid("ipr", 10 * i + j)
                ranges[r] = u
                s.add(m.IpRange(uuid=r, name=f"range-{i}-{j}", l3NetworkUuid=u, startIp=f"10.{i}.{j}.10",
                                endIp=f"10.{i}.{j}.200", netmask="255.255.255.0", gateway=f"10.{i}.{j}.1",
                                networkCidr=f"10.{i}.{j}.0/24", prefixLen=24, startIpInLong=i * 1000 + j,
                                endIpInLong=i * 1000 + j + 190))
        images = [uid("img", i) for i in range(5)]
        for i, u in enumerate(images):
            s.add(m.Image(uuid=u, name=f"img-{rnd.choice(words[:5])}-{i}", url=f"http://x/{i}",
                          status=rnd.choice(["Ready", "Downloading"]), size=rnd.choice([1, 2, 3]) << 30,
                          system=rnd.random() < 0.2, description=rnd.choice(words)))
            pick_owner(u)
        offerings = [uid("ioff", i) for i in range(4)]
        for i, u in enumerate(offerings):
            s.add(m.InstanceOffering(uuid=u, name=f"off-{i}", cpuNum=rnd.choice([1, 2, 4]),
                                     memorySize=rnd.choice([1, 2]) << 30))
            pick_owner(u)
        s.flush()
        vms = [uid("vm", i) for i in range(14)]
        nic_i = ip_i = 0
        for i, u in enumerate(vms):
            z = rnd.randint(0, 1)
            s.add(m.VmInstance(uuid=u, name=f"vm-{rnd.choice(words[:5])}-{i}", cpuNum=rnd.choice([1, 2, 4]),
                               memorySize=rnd.choice([1, 2, 4]) << 30,
                               state=rnd.choice(["Running", "Stopped", "Destroyed"]), zoneUuid=uid("zone", z),
                               imageUuid=rnd.choice([*images, None]),
                               instanceOfferingUuid=rnd.choice([*offerings, None]),
                               defaultL3NetworkUuid=rnd.choice(l3s), description=rnd.choice(words),
                               rootVolumeUuid=uid("vol", 10 * i)))
            pick_owner(u)
        s.flush()
        for i, u in enumerate(vms):
            for d in range(rnd.randint(0, 2)):
                l3 = rnd.choice(l3s)
                n = uid("nic", nic_i)
                s.add(m.VmNic(uuid=n, vmInstanceUuid=u, l3NetworkUuid=l3, ip=f"10.9.{nic_i // 250}.{nic_i % 250}",
                              mac=f"fa:00:00:00:{nic_i // 256:02x}:{nic_i % 256:02x}", internalName=f"vnic{i}.{d}",
                              deviceId=d))
                nic_i += 1
                rng = [r for r, owner_l3 in ranges.items() if owner_l3 == l3]
                if rng:
                    s.flush()
                    s.add(m.UsedIp(uuid=uid("uip", ip_i), ipRangeUuid=rng[0], l3NetworkUuid=l3,
                                   ip=f"10.8.0.{ip_i}", netmask="255.255.255.0", ipInLong=ip_i, vmNicUuid=n,
                                   usedFor="Vm"))
                    ip_i += 1
            for d in range(rnd.randint(1, 3)):  # the root volume and data volumes
                v = uid("vol", 10 * i + d)
                s.add(m.Volume(uuid=v, name=f"vol-{i}-{d}", type="Root" if d == 0 else "Data",
                               size=rnd.choice([1, 10, 100]) << 30, vmInstanceUuid=u if rnd.random() < 0.9 else None,
                               rootImageUuid=rnd.choice([*images, None]), deviceId=d,
                               status=rnd.choice(["Ready", "Deleted"])))
                pick_owner(v)
        # A used IP of no NIC (a VIP's): admins only.
        rng0 = next(iter(ranges), None)
        if rng0:
            s.add(m.UsedIp(uuid=uid("uip", 999), ipRangeUuid=rng0, l3NetworkUuid=ranges[rng0], ip="10.7.0.1",
                           netmask="255.255.255.0", ipInLong=10**9, vmNicUuid=None))
        s.flush()
        tagged = list(owner)
        for _ in range(20):
            r = rnd.choice(tagged)
            s.add(m.SystemTag(resourceUuid=r, resourceType="X", tag=rnd.choice(["ha::NeverStop", "k::v", "t"]),
                              type="System"))
        for u, acct in owner.items():
            if acct is not None:
                rtype = RESOURCE_TYPES[u[:6].rstrip("0")]  # owner records name their resource's type
                s.add(m.AccountResourceRef(resourceUuid=u, accountUuid=acct, resourceType=rtype,
                                           concreteResourceType=rtype))
        for u in rnd.sample(tagged, 12):
            public = rnd.random() < 0.3
            receiver = None if public else rnd.choice(NORMALS)
            shares.append((u, receiver, public))
            s.add(m.SharedResource(ownerAccountUuid=owner[u] or ADMIN_ACCOUNT_UUID, receiverAccountUuid=receiver,
                                   toPublic=public, resourceType="X", resourceUuid=u))
    cat = load_catalog()
    rows: dict[str, list[dict[str, Any]]] = {}
    with db.ro() as s:
        for inv in RULES:
            model = TARGETS[inv].model
            names = [n for n, t in cat.inventories[inv].fields if t != "list" and hasattr(model, n)]
            rows[inv] = [{n: getattr(r, n) for n in names} for r in s.scalars(select(model))]
    return World(db, rows, owner, shares)


@pytest.fixture(scope="module", params=[1, 2, 3])
def world(request, tmp_path_factory) -> World:
    url = f"sqlite:///{tmp_path_factory.mktemp('tenancy') / 'w.db'}"
    upgrade(url)
    db = Database(url)
    from types import SimpleNamespace

    from mn.services.identity import ensure_admin

    ensure_admin(SimpleNamespace(db=db))
    yield build_world(db, request.param)
    db.dispose()


# ---- the independent evaluator ------------------------------------------------------------------

def may_see(w: World, caller: Caller, inv: str, row: dict[str, Any]) -> bool:
    if caller.admin:
        return True
    rule = RULES[inv]
    if rule[0] == "owned":
        return _owned_visible(w, caller.account_uuid, row["uuid"])
    if rule[0] == "via":
        parent_key = row[rule[1]]
        return any(p["uuid"] == parent_key and may_see(w, caller, rule[2], p) for p in w.rows[rule[2]])
    if rule[0] == "tag":
        return _owned_visible(w, caller.account_uuid, row["resourceUuid"])
    return False


def _owned_visible(w: World, account: str, uuid: str) -> bool:
    if w.owner.get(uuid) == account and uuid in w.owner:
        return True
    return any(u == uuid and (public or receiver == account) for u, receiver, public in w.shares)


def _like(pattern: str) -> re.Pattern:
    out = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(f"^{out}$", re.IGNORECASE | re.DOTALL)


def compare(v: Any, op: str, value: Any) -> bool:
    """SQL semantics: a comparison with NULL is never true; SQLite's LIKE ignores ASCII case."""
    if op == "is null":
        return v is None
    if op == "is not null":
        return v is not None
    if v is None:
        return False
    if isinstance(v, bool):
        v = int(v)
    match op:
        case "=":
            return v == value
        case "!=":
            return v != value
        case ">":
            return v > value
        case "<=":
            return v <= value
        case "in":
            return v in value
        case "not in":
            return v not in value
        case "like":
            return bool(_like(value).match(str(v)))
        case "not like":
            return not _like(value).match(str(v))
    raise AssertionError(op)


def matches(w: World, caller: Caller, inv: str, row: dict[str, Any], path: list[str], op: str,
            value: Any, cat: Any) -> bool:
    head, rest = path[0], path[1:]
    if not rest:
        return compare(row[head], op, value)
    exp = {e["field"]: e for e in cat.inventories[inv].expanded}[head]
    fk = row[exp["foreignKey"]]
    if fk is None:
        return False
    sub = exp["inventory"]
    return any(c[exp["expandedInventoryKey"]] == fk and may_see(w, caller, sub, c)
               and matches(w, caller, sub, c, rest, op, value, cat) for c in w.rows[sub])


def expected(w: World, caller: Caller, inv: str, conds: list[tuple[list[str], str, Any]],
             group_by: str | None) -> list[str]:
    cat = load_catalog()
    pk = "uuid"
    out = [r for r in w.rows[inv] if may_see(w, caller, inv, r)
           and all(matches(w, caller, inv, r, p, op, v, cat) for p, op, v in conds)]
    if group_by:
        firsts: dict[Any, dict] = {}
        for r in sorted(out, key=lambda r: r[pk]):
            firsts.setdefault(r[group_by], r)
        out = list(firsts.values())
    return sorted(r[pk] for r in out)


# ---- random queries -----------------------------------------------------------------------------

def expansions(inv: str) -> list[dict]:
    cat = load_catalog()
    return [e for e in cat.inventories[inv].expanded if e["inventory"] in RULES
            and hasattr(TARGETS[inv].model, e["foreignKey"])]


def plain_fields(inv: str) -> list[tuple[str, str]]:
    cat = load_catalog()
    model = TARGETS[inv].model
    return [(n, t) for n, t in cat.inventories[inv].fields if t in SIMPLE and hasattr(model, n)]


@st.composite
def condition(draw, w: World, inv: str) -> tuple[list[str], str, Any]:
    path: list[str] = []
    here = inv
    for _ in range(draw(st.integers(0, 2))):
        exps = expansions(here)
        if not exps:
            break
        e = draw(st.sampled_from(exps))
        path.append(e["field"])
        here = e["inventory"]
    fname, ftype = draw(st.sampled_from(plain_fields(here)))
    path.append(fname)
    seen = sorted({r[fname] for r in w.rows[here] if r[fname] is not None}, key=repr) or ["none"]
    if ftype == "boolean":
        op = draw(st.sampled_from(["=", "!=", "is null"]))
        return path, op, draw(st.booleans())
    op = draw(st.sampled_from(OPS))
    if ftype != "string" and op in ("like", "not like"):
        op = "="
    one = draw(st.sampled_from(seen)) if draw(st.booleans()) else (
        draw(st.integers(0, 5 << 30)) if ftype != "string" else draw(st.sampled_from(["web", "zzz", ""])))
    if op in ("in", "not in"):
        return path, op, [one, draw(st.sampled_from(seen))]
    if op in ("like", "not like"):
        s = str(one)
        return path, op, draw(st.sampled_from([s, f"%{s[2:5]}%", f"{s[:3]}%", "%_%", "%WEB%"]))
    if op in ("is null", "is not null"):
        return path, op, None
    return path, op, one


def wire(path: list[str], op: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, list):
        value = ",".join(str(v) for v in value)
    return {"name": ".".join(path), "op": op, "value": value}


def _py_value(w: World, inv: str, path: list[str], op: str, value: Any) -> Any:
    """The value as the engine types it (a list for in/not in; numbers for numeric fields)."""
    here = inv
    for step in path[:-1]:
        here = {e["field"]: e for e in expansions(here)}[step]["inventory"]
    ftype = dict(plain_fields(here))[path[-1]]
    conv = (lambda x: int(x)) if ftype in ("int", "long") else (
        lambda x: int(x) if isinstance(x, bool) else x) if ftype == "boolean" else str
    if isinstance(value, list):
        return [conv(v) for v in value]
    return None if value is None else conv(value)


@pytest.mark.parametrize("api_name", sorted(QUERIES))
def test_queries_answer_exactly_what_each_account_may_see(world, api_name):
    inv = QUERIES[api_name]
    spec = load_catalog().api(api_name)
    fields = [n for n, _ in plain_fields(inv)]

    @PROPERTY
    @given(conds=st.lists(condition(world, inv), max_size=3), caller=st.sampled_from(CALLERS),
           group_by=st.sampled_from([None, None, *fields]))
    def check(conds, caller, group_by):
        msg = {"conditions": [wire(*c) for c in conds]}
        if group_by:
            msg["groupBy"] = group_by
        want = expected(world, caller, inv, [(p, op, _py_value(world, inv, p, op, v)) for p, op, v in conds],
                        group_by)
        with world.db.ro() as s:
            got = run_query(s, spec, {**msg, "replyWithCount": True}, caller)
            count = run_query(s, spec, {**msg, "count": True}, caller)
        assert sorted(r["uuid"] for r in got["inventories"]) == want, (caller, msg)
        assert got["total"] == count["total"] == len(want), (caller, msg)

    check()


def test_the_world_has_something_to_hide(world):
    """Each normal account sees some rows of each owned type and misses others (the property
    above is not vacuous), and shares make some rows visible that the account does not own."""
    for a in NORMALS:
        c = Caller(a)
        for inv in ("VmInstanceInventory", "VolumeInventory", "VmNicInventory"):
            seen = [r for r in world.rows[inv] if may_see(world, c, inv, r)]
            assert 0 < len(seen) < len(world.rows[inv]), (a, inv)
    shared_in = [(u, r) for u, r, public in world.shares if r is not None and world.owner.get(u) != r]
    assert shared_in and all(_owned_visible(world, r, u) for u, r in shared_in)
    assert any(public for _, _, public in world.shares)
