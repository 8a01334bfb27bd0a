"""Offerings, tags, global configuration and the management-node APIs through the public API."""

from __future__ import annotations

import uuid as uuidlib

import pytest

from mn.client import ClientError, ZStackClient

GB = 1 << 30
NOT_FOUND, INVALID, OPERATION = "SYS.1003", "SYS.1007", "SYS.1006"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuidlib.uuid4().hex[:8]}"


def _uuid() -> str:
    return uuidlib.uuid4().hex


def _fails(code: str, fn, *args, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as e:
        fn(*args, **kwargs)
    assert e.value.code == code, e.value.error
    return e.value


def _one(api: ZStackClient, query: str, uuid: str) -> dict | None:
    found = api.query(query, f"uuid={uuid}")
    return found[0] if found else None


# ---- instance offerings -------------------------------------------------------------------------

def test_instance_offering_lifecycle(api):
    inv = api.call("CreateInstanceOffering", name=_name("io"), cpuNum=2, memorySize=2 * GB,
                   allocatorStrategy="LeastVmPreferredHostAllocatorStrategy")["inventory"]
    assert (inv["cpuNum"], inv["memorySize"], inv["state"], inv["type"]) == (2, 2 * GB, "Enabled", "UserVm")
    assert inv["allocatorStrategy"] == "LeastVmPreferredHostAllocatorStrategy"
    u = inv["uuid"]
    out = api.call("UpdateInstanceOffering", uuid=u, name="io-renamed", description="d")["inventory"]
    assert (out["name"], out["description"]) == ("io-renamed", "d")
    status, out = api.rest("PUT", f"/instance-offerings/{u}/actions",
                           {"changeInstanceOfferingState": {"stateEvent": "disable"}})
    assert status == 200 and out["inventory"]["state"] == "Disabled"
    _fails(INVALID, api.call, "UpdateInstanceOffering", uuid=u, allocatorStrategy="Random")
    status, _ = api.rest("DELETE", f"/instance-offerings/{u}")
    assert status == 200 and _one(api, "QueryInstanceOffering", u) is None
    _fails(NOT_FOUND, api.call, "DeleteInstanceOffering", uuid=u)


def test_create_instance_offering_by_rest(api):
    name = _name("io-rest")
    status, out = api.rest("POST", "/instance-offerings", {"params": {"name": name, "cpuNum": 1,
                                                                      "memorySize": GB}})
    assert status == 200 and out["inventory"]["name"] == name
    assert api.query("QueryInstanceOffering", f"name={name}", "cpuNum=1")[0]["uuid"] == out["inventory"]["uuid"]


@pytest.mark.parametrize(("params", "words"), [
    ({"cpuNum": 0, "memorySize": GB}, "'cpuNum'"),
    ({"cpuNum": 1, "memorySize": 0}, "'memorySize'"),
    ({"cpuNum": 1}, "missing mandatory parameter 'memorySize'"),
    ({"cpuNum": "two", "memorySize": GB}, "'cpuNum'"),
    ({"cpuNum": 1, "memorySize": GB, "allocatorStrategy": "Fastest"}, "allocatorStrategy"),
    ({"cpuNum": 1, "memorySize": GB, "reservedMemorySize": 2 * GB}, "reservedMemorySize"),
])
def test_create_instance_offering_bad_input(api, params, words):
    name = _name("io-bad")
    err = _fails(INVALID, api.call, "CreateInstanceOffering", name=name, **params)
    assert words in err.error["details"]
    assert api.query("QueryInstanceOffering", f"name={name}") == []


# ---- disk offerings -----------------------------------------------------------------------------

def test_disk_offering_lifecycle(api):
    inv = api.call("CreateDiskOffering", name=_name("do"), diskSize=10 * GB)["inventory"]
    assert (inv["diskSize"], inv["state"], inv["type"]) == (10 * GB, "Enabled", "zstack")
    u = inv["uuid"]
    assert api.call("UpdateDiskOffering", uuid=u, name="do-2")["inventory"]["name"] == "do-2"
    assert api.call("ChangeDiskOfferingState", uuid=u, stateEvent="disable")["inventory"]["state"] == "Disabled"
    _fails(INVALID, api.call, "ChangeDiskOfferingState", uuid=u, stateEvent="maintain")
    api.call("DeleteDiskOffering", uuid=u)
    assert _one(api, "QueryDiskOffering", u) is None


def test_disk_offering_bad_input(api):
    name = _name("do-bad")
    _fails(INVALID, api.call, "CreateDiskOffering", name=name, diskSize=0)
    _fails(INVALID, api.call, "CreateDiskOffering", name=name)
    status, out = api.rest("POST", "/disk-offerings", {"params": {"name": name, "diskSize": -5}})
    assert status == 400 and out["error"]["code"] == INVALID
    assert api.query("QueryDiskOffering", f"name={name}") == []
    _fails(NOT_FOUND, api.call, "UpdateDiskOffering", uuid=_uuid(), name="x")


# ---- tags ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zone(api) -> str:
    return api.call("CreateZone", name=_name("zone-tag"))["inventory"]["uuid"]


def test_system_and_user_tags(api, zone):
    t = api.call("CreateSystemTag", resourceType="ZoneVO", resourceUuid=zone, tag="owner::ops")["inventory"]
    assert (t["resourceUuid"], t["resourceType"], t["tag"], t["type"], t["inherent"]) == \
        (zone, "ZoneVO", "owner::ops", "System", False)
    err = _fails(INVALID, api.call, "CreateSystemTag", resourceType="ZoneVO", resourceUuid=zone, tag="owner::ops")
    assert "already has" in err.error["details"]
    assert [x["uuid"] for x in api.query("QuerySystemTag", f"resourceUuid={zone}", "tag=owner::ops")] == [t["uuid"]]
    assert [z["uuid"] for z in api.query("QueryZone", "__systemTag__=owner::ops", f"uuid={zone}")] == [zone]

    status, out = api.rest("PUT", f"/system-tags/{t['uuid']}/actions", {"updateSystemTag": {"tag": "owner::dev"}})
    assert status == 200 and out["inventory"]["tag"] == "owner::dev"
    _fails(INVALID, api.call, "UpdateSystemTag", uuid=t["uuid"], tag="no-separator")

    status, out = api.rest("POST", "/user-tags", {"params": {"resourceType": "ZoneVO", "resourceUuid": zone,
                                                              "tag": "web tier"}})
    assert status == 200 and out["inventory"]["type"] == "User"
    ut = out["inventory"]["uuid"]
    assert [x["tag"] for x in api.query("QueryUserTag", f"resourceUuid={zone}")] == ["web tier"]

    many = api.call("CreateSystemTags", resourceType="ZoneVO", resourceUuid=zone, tags=["a::1", "b::2"])
    assert sorted(x["tag"] for x in many["inventories"]) == ["a::1", "b::2"]

    api.call("DeleteTag", uuid=t["uuid"])
    status, _ = api.rest("DELETE", f"/tags/{ut}")
    assert status == 200
    assert sorted(x["tag"] for x in api.query("QuerySystemTag", f"resourceUuid={zone}")) == ["a::1", "b::2"]
    assert api.query("QueryUserTag", f"resourceUuid={zone}") == []
    _fails(NOT_FOUND, api.call, "DeleteTag", uuid=t["uuid"])


@pytest.mark.parametrize(("params", "code", "words"), [
    ({"resourceType": "ZoneVO", "resourceUuid": "ZONE", "tag": "plain"}, INVALID, "key::value"),
    ({"resourceType": "ZoneVO", "resourceUuid": "ZONE", "tag": "::v"}, INVALID, "key::value"),
    ({"resourceType": "NoSuchVO", "resourceUuid": "ZONE", "tag": "k::v"}, INVALID, "ZoneVO"),
    ({"resourceType": "ZoneVO", "resourceUuid": "0" * 32, "tag": "k::v"}, NOT_FOUND, "ZoneVO"),
    ({"resourceType": "VmInstanceVO", "resourceUuid": "ZONE", "tag": "k::v"}, NOT_FOUND, "VmInstanceVO"),
    ({"resourceType": "ZoneVO", "resourceUuid": "ZONE"}, INVALID, "'tag'"),
])
def test_create_system_tag_bad_input(api, zone, params, code, words):
    params = {k: (zone if v == "ZONE" else v) for k, v in params.items()}
    before = api.query("QuerySystemTag", f"resourceUuid={zone}")
    err = _fails(code, api.call, "CreateSystemTag", **params)
    assert words in err.error["details"]
    assert api.query("QuerySystemTag", f"resourceUuid={zone}") == before


def test_tags_given_at_creation_are_queryable(api):
    status, out = api.rest("POST", "/zones", {"params": {"name": _name("zone-tagged")},
                                              "systemTags": ["env::test"], "userTags": ["blue"]})
    assert status == 200
    z = out["inventory"]["uuid"]
    assert [t["tag"] for t in api.query("QuerySystemTag", f"resourceUuid={z}")] == ["env::test"]
    assert [t["tag"] for t in api.query("QueryUserTag", f"resourceUuid={z}")] == ["blue"]


# ---- global configuration -----------------------------------------------------------------------

def _config(api: ZStackClient, category: str, name: str) -> dict:
    [c] = api.query("QueryGlobalConfig", f"category={category}", f"name={name}")
    return c


def test_update_global_config(api):
    before = _config(api, "vm", "expungePeriod")
    try:
        inv = api.call("UpdateGlobalConfig", category="vm", name="expungePeriod", value="3600")["inventory"]
        assert (inv["value"], inv["defaultValue"]) == ("3600", before["defaultValue"])
        assert _config(api, "vm", "expungePeriod")["value"] == "3600"
        status, out = api.rest("PUT", "/global-configurations/vm/expungePeriod/actions",
                               {"updateGlobalConfig": {"value": "7200"}})
        assert status == 200 and out["inventory"]["value"] == "7200"
    finally:
        api.call("UpdateGlobalConfig", category="vm", name="expungePeriod", value=before["value"])


@pytest.mark.parametrize(("params", "words"), [
    ({"category": "vm", "name": "noSuchThing", "value": "1"}, "deletionPolicy"),
    ({"category": "nowhere", "name": "x", "value": "1"}, "categories"),
    ({"category": "vm", "name": "expungePeriod", "value": "soon"}, "takes a int"),
    ({"category": "vm", "name": "expungePeriod", "value": "-5"}, "invalid value"),
    ({"category": "vm", "name": "deletionPolicy", "value": "Sometimes"}, "must be one of"),
    ({"category": "vm", "name": "deletionPolicy"}, "needs a value"),
])
def test_update_global_config_bad_input(api, params, words):
    before = _config(api, "vm", params["name"]) if params["category"] == "vm" and params["name"] != "noSuchThing" \
        else None
    err = _fails(INVALID, api.call, "UpdateGlobalConfig", **params)
    assert words in err.error["details"]
    if before is not None:
        assert _config(api, params["category"], params["name"]) == before


def test_global_config_options(api):
    opts = api.call("GetGlobalConfigOptions", category="image", name="deletionPolicy")["options"]
    assert sorted(opts["validValue"]) == ["Delay", "Direct", "Never"]
    status, out = api.rest("GET", "/global-configurations/vm/expungePeriod")
    assert status == 200 and out["options"]["numberGreaterThan"] == 0
    _fails(INVALID, api.call, "GetGlobalConfigOptions", category="vm", name="nope")


def test_image_deletion_policy_is_defined(api):
    c = _config(api, "image", "deletionPolicy")
    assert c["defaultValue"] == "Delay"


# ---- management node ----------------------------------------------------------------------------

def test_version_and_time_need_no_session(mn):
    from mn import __version__

    anon = ZStackClient(mn.url)
    assert anon.call("GetVersion")["version"] == __version__
    now = anon.call("GetCurrentTime")["currentTime"]
    assert now["Seconds"] == now["MillionSeconds"] // 1000 > 1_600_000_000
    status, out = anon.rest("PUT", "/management-nodes/actions", {"getVersion": {}})
    assert status == 200 and out == {"version": __version__}
    status, out = anon.rest("PUT", "/management-nodes/actions", {"getCurrentTime": {}})
    assert status == 200 and "MillionSeconds" in out["currentTime"]


def test_management_node_family(api):
    assert api.call("GetManagementNodeArch")["architecture"]
    os_ = api.call("GetManagementNodeOS")
    assert os_["name"] and os_["version"]
    tz = api.call("GetPlatformTimeZone")
    assert tz["timezone"] and tz["offset"][0] in "+-"
    assert api.call("IsOpensourceVersion")["opensource"] is True
    supported = api.call("GetSupportAPIs")["supportApis"]
    assert "org.zstack.header.managementnode.APIGetVersionMsg" in supported
    assert "org.zstack.header.image.APIQueryImageMsg" in supported
