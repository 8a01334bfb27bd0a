"""Primary storage, backup storage and images through the public API (RPC and REST), on the simulator."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator

import pytest

from mn.client import ClientError, ZStackClient

GB = 1 << 30
NOT_FOUND, INVALID, OPERATION, DELETE_ERROR = "SYS.1003", "SYS.1007", "SYS.1006", "SYS.1004"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuidlib.uuid4().hex[:8]}"


def _uuid() -> str:
    return uuidlib.uuid4().hex


@pytest.fixture(scope="module")
def admin(sim):
    from simulator.client import SimulatorAdmin

    a = SimulatorAdmin(sim.url)
    yield a
    a.clear_faults()


@pytest.fixture(autouse=True)
def _no_faults_left(admin) -> Iterator[None]:
    yield
    admin.clear_faults()


def _sim_has_ps(admin, uuid: str) -> bool:
    try:
        return admin.primary_storage(uuid) is not None
    except Exception:  # noqa: BLE001 - the client's "not found" error
        return False


def _sim_has_bs(admin, uuid: str) -> bool:
    try:
        return admin.backup_storage(uuid) is not None
    except Exception:  # noqa: BLE001
        return False


def _fails(code: str, fn, *args, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as e:
        fn(*args, **kwargs)
    assert e.value.code == code, e.value.error
    return e.value


def _rest_fails(api: ZStackClient, code: str, method: str, path: str, body: dict | None = None, **kw) -> dict:
    status, out = api.rest(method, path, body, **kw)
    assert status >= 400, out
    assert out["error"]["code"] == code, out
    return out["error"]


@pytest.fixture(scope="module")
def zone(api) -> str:
    return api.call("CreateZone", name=_name("zone-st"))["inventory"]["uuid"]


@pytest.fixture(scope="module")
def cluster(api, zone) -> str:
    return api.call("CreateCluster", name=_name("cl-st"), zoneUuid=zone,
                    hypervisorType="Simulator")["inventory"]["uuid"]


def _add_ps(api: ZStackClient, zone: str, total: int = 100 * GB, available: int | None = None, **kw) -> dict:
    return api.call("AddSimulatorPrimaryStorage", name=kw.pop("name", _name("ps")), url="/simulated/ps",
                    zoneUuid=zone, totalCapacity=total,
                    availableCapacity=total if available is None else available, **kw)["inventory"]


def _add_bs(api: ZStackClient, total: int = 500 * GB, **kw) -> dict:
    return api.call("AddSimulatorBackupStorage", name=kw.pop("name", _name("bs")), url="/simulated/bs",
                    totalCapacity=total, availableCapacity=total, **kw)["inventory"]


def _query_one(api: ZStackClient, query: str, uuid: str) -> dict | None:
    found = api.query(query, f"uuid={uuid}")
    return found[0] if found else None


# ---- primary storage ----------------------------------------------------------------------------

def test_add_primary_storage_by_rpc(api, admin, zone):
    inv = _add_ps(api, zone, total=80 * GB, available=60 * GB, description="d")
    assert inv["status"] == "Connected" and inv["state"] == "Enabled"
    assert inv["type"] == "SimulatorPrimaryStorage" and inv["zoneUuid"] == zone
    assert (inv["totalCapacity"], inv["availableCapacity"]) == (80 * GB, 60 * GB)
    assert (inv["totalPhysicalCapacity"], inv["availablePhysicalCapacity"]) == (80 * GB, 60 * GB)
    assert inv["attachedClusterUuids"] == []
    assert _sim_has_ps(admin, inv["uuid"])
    assert _query_one(api, "QueryPrimaryStorage", inv["uuid"])["name"] == inv["name"]


def test_add_primary_storage_by_rest_with_resource_uuid(api, admin, zone):
    u, name = _uuid(), _name("ps-rest")
    status, out = api.rest("POST", "/primary-storage/simulators", {"params": {
        "name": name, "url": "/x", "zoneUuid": zone, "totalCapacity": 10 * GB, "availableCapacity": 10 * GB,
        "resourceUuid": u}, "systemTags": ["color::blue"]})
    assert status == 200, out
    assert out["inventory"]["uuid"] == u and out["inventory"]["status"] == "Connected"
    tags = api.query("QuerySystemTag", f"resourceUuid={u}")
    assert [t["tag"] for t in tags] == ["color::blue"]
    # the same resourceUuid again is refused up front
    _rest_fails(api, INVALID, "POST", "/primary-storage/simulators", {"params": {
        "name": name, "url": "/x", "zoneUuid": zone, "resourceUuid": u}})


@pytest.mark.parametrize(("params", "code", "words"), [
    ({"url": "/x"}, INVALID, "missing mandatory parameter 'zoneUuid'"),
    ({"url": "/x", "zoneUuid": "0" * 32}, NOT_FOUND, "ZoneVO"),
    ({"url": "/x", "zoneUuid": "ZONE", "totalCapacity": "lots"}, INVALID, "'totalCapacity'"),
    ({"url": "/x", "zoneUuid": "ZONE", "totalCapacity": 10, "availableCapacity": 20}, INVALID, "cannot exceed"),
    ({"url": "/x", "zoneUuid": "ZONE", "totalCapacity": -1, "availableCapacity": -1}, INVALID, "negative"),
    ({"url": "/x", "zoneUuid": "ZONE", "resourceUuid": "not-a-uuid"}, INVALID, "resourceUuid"),
])
def test_add_primary_storage_bad_input_leaves_nothing(api, zone, params, code, words):
    name = _name("ps-bad")
    params = {k: (zone if v == "ZONE" else v) for k, v in params.items()}
    err = _fails(code, api.call, "AddSimulatorPrimaryStorage", name=name, **params)
    assert words in err.error["details"]
    assert api.query("QueryPrimaryStorage", f"name={name}") == []


def test_add_primary_storage_init_failure_rolls_back(api, admin, zone):
    u, name = _uuid(), _name("ps-fault")
    admin.inject("/primarystorage/init", target=u, mode="fail")
    err = _fails("HOST.1001", _add_ps, api, zone, name=name, resourceUuid=u)
    assert "/primarystorage/init" in err.error["details"]
    assert api.query("QueryPrimaryStorage", f"name={name}") == []
    assert api.query("QuerySystemTag", f"resourceUuid={u}") == []
    assert not _sim_has_ps(admin, u)


def test_add_primary_storage_init_error_reply_rolls_back(api, admin, zone):
    u, name = _uuid(), _name("ps-fault")
    admin.inject("/primarystorage/init", target=u, mode="error")
    with pytest.raises(ClientError):
        _add_ps(api, zone, name=name, resourceUuid=u)
    assert api.query("QueryPrimaryStorage", f"name={name}") == []
    assert not _sim_has_ps(admin, u)


def test_update_state_and_reconnect_primary_storage(api, admin, zone):
    ps = _add_ps(api, zone)
    inv = api.call("UpdatePrimaryStorage", uuid=ps["uuid"], name="renamed-" + ps["name"], description="new")["inventory"]
    assert inv["name"] == "renamed-" + ps["name"] and inv["description"] == "new"
    status, out = api.rest("PUT", f"/primary-storage/{ps['uuid']}/actions",
                           {"changePrimaryStorageState": {"stateEvent": "disable"}})
    assert status == 200 and out["inventory"]["state"] == "Disabled"
    assert api.call("ChangePrimaryStorageState", uuid=ps["uuid"], stateEvent="enable")["inventory"]["state"] == "Enabled"
    _fails(INVALID, api.call, "ChangePrimaryStorageState", uuid=ps["uuid"], stateEvent="explode")
    _fails(NOT_FOUND, api.call, "UpdatePrimaryStorage", uuid=_uuid(), name="x")

    admin.inject("/primarystorage/init", target=ps["uuid"], mode="fail")
    _fails("HOST.1001", api.call, "ReconnectPrimaryStorage", uuid=ps["uuid"])
    assert _query_one(api, "QueryPrimaryStorage", ps["uuid"])["status"] == "Disconnected"
    inv = api.call("ReconnectPrimaryStorage", uuid=ps["uuid"])["inventory"]
    assert inv["status"] == "Connected" and inv["availableCapacity"] == ps["availableCapacity"]


def test_sync_capacity_keeps_reservations(api, admin, zone):
    ps = _add_ps(api, zone, total=50 * GB, available=40 * GB)
    admin.add_primary_storage(ps["uuid"], 80 * GB, 70 * GB)  # the storage grew behind our back
    status, out = api.rest("PUT", f"/primary-storage/{ps['uuid']}/actions", {"syncPrimaryStorageCapacity": {}})
    assert status == 200, out
    inv = out["inventory"]
    assert (inv["totalPhysicalCapacity"], inv["availablePhysicalCapacity"]) == (80 * GB, 70 * GB)
    # what was used of the logical capacity (10 GB) stays used
    assert (inv["totalCapacity"], inv["availableCapacity"]) == (80 * GB, 70 * GB)
    _fails(NOT_FOUND, api.call, "SyncPrimaryStorageCapacity", primaryStorageUuid=_uuid())


def test_attach_and_detach_cluster(api, zone, cluster):
    ps = _add_ps(api, zone)
    inv = api.call("AttachPrimaryStorageToCluster", clusterUuid=cluster, primaryStorageUuid=ps["uuid"])["inventory"]
    assert inv["attachedClusterUuids"] == [cluster]
    err = _fails(INVALID, api.call, "AttachPrimaryStorageToCluster", clusterUuid=cluster,
                 primaryStorageUuid=ps["uuid"])
    assert "already attached" in err.error["details"]
    _fails(NOT_FOUND, api.call, "AttachPrimaryStorageToCluster", clusterUuid=_uuid(), primaryStorageUuid=ps["uuid"])

    status, out = api.rest("DELETE", f"/clusters/{cluster}/primary-storage/{ps['uuid']}")
    assert status == 200 and out["inventory"]["attachedClusterUuids"] == []
    err = _fails(INVALID, api.call, "DetachPrimaryStorageFromCluster", clusterUuid=cluster,
                 primaryStorageUuid=ps["uuid"])
    assert "not attached" in err.error["details"]

    status, out = api.rest("POST", f"/clusters/{cluster}/primary-storage/{ps['uuid']}", {"params": {}})
    assert status == 200 and out["inventory"]["attachedClusterUuids"] == [cluster]


def test_attach_refuses_a_cluster_of_another_zone(api, zone):
    other = api.call("CreateZone", name=_name("zone-other"))["inventory"]["uuid"]
    cl = api.call("CreateCluster", name=_name("cl-other"), zoneUuid=other, hypervisorType="Simulator")["inventory"]
    ps = _add_ps(api, zone)
    err = _fails(INVALID, api.call, "AttachPrimaryStorageToCluster", clusterUuid=cl["uuid"],
                 primaryStorageUuid=ps["uuid"])
    assert "same zone" in err.error["details"]
    api.call("DeleteZone", uuid=other)


def test_primary_storage_capacity(api, zone, cluster):
    z = api.call("CreateZone", name=_name("zone-cap"))["inventory"]["uuid"]
    cl = api.call("CreateCluster", name=_name("cl-cap"), zoneUuid=z, hypervisorType="Simulator")["inventory"]["uuid"]
    a = _add_ps(api, z, total=30 * GB, available=20 * GB)
    b = _add_ps(api, z, total=10 * GB)
    api.call("AttachPrimaryStorageToCluster", clusterUuid=cl, primaryStorageUuid=a["uuid"])
    r = api.call("GetPrimaryStorageCapacity", zoneUuids=[z])
    assert (r["totalCapacity"], r["availableCapacity"]) == (40 * GB, 30 * GB)
    assert (r["totalPhysicalCapacity"], r["availablePhysicalCapacity"]) == (40 * GB, 30 * GB)
    r = api.call("GetPrimaryStorageCapacity", clusterUuids=[cl])
    assert (r["totalCapacity"], r["availableCapacity"]) == (30 * GB, 20 * GB)
    status, out = api.rest("GET", "/primary-storage/capacities", fields=[("primaryStorageUuids", b["uuid"])])
    assert status == 200 and out["totalCapacity"] == 10 * GB and out["availableCapacity"] == 10 * GB
    assert api.call("GetPrimaryStorageCapacity", all=True)["totalCapacity"] >= 40 * GB
    assert api.call("GetPrimaryStorageCapacity", primaryStorageUuids=[_uuid()])["totalCapacity"] == 0
    _fails(INVALID, api.call, "GetPrimaryStorageCapacity")
    api.call("DeleteZone", uuid=z)


def test_delete_primary_storage_enforcing_vs_permissive(api, admin, zone, cluster):
    ps = _add_ps(api, zone)
    api.call("AttachPrimaryStorageToCluster", clusterUuid=cluster, primaryStorageUuid=ps["uuid"])
    err = _fails(DELETE_ERROR, api.call, "DeletePrimaryStorage", uuid=ps["uuid"], deleteMode="Enforcing")
    assert "attached to ClusterVO" in err.error["details"] and cluster in err.error["details"]
    assert _query_one(api, "QueryPrimaryStorage", ps["uuid"]) is not None
    _fails(INVALID, api.call, "DeletePrimaryStorage", uuid=ps["uuid"], deleteMode="Sometimes")
    status, _ = api.rest("DELETE", f"/primary-storage/{ps['uuid']}", fields={"deleteMode": "Permissive"})
    assert status == 200
    assert _query_one(api, "QueryPrimaryStorage", ps["uuid"]) is None
    assert not _sim_has_ps(admin, ps["uuid"])
    _fails(NOT_FOUND, api.call, "DeletePrimaryStorage", uuid=ps["uuid"])


def test_storage_types_and_strategies(api):
    assert "SimulatorPrimaryStorage" in api.call("GetPrimaryStorageTypes")["primaryStorageTypes"]
    assert "SimulatorBackupStorage" in api.call("GetBackupStorageTypes")["backupStorageTypes"]
    status, out = api.rest("GET", "/primary-storage/types")
    assert status == 200 and "SimulatorPrimaryStorage" in out["types"]
    assert api.call("GetPrimaryStorageAllocatorStrategies")["primaryStorageAllocatorStrategies"]


# ---- backup storage -----------------------------------------------------------------------------

def test_add_backup_storage_rpc_and_rest(api, admin):
    inv = _add_bs(api, total=200 * GB)
    assert inv["status"] == "Connected" and inv["type"] == "SimulatorBackupStorage"
    assert (inv["totalCapacity"], inv["availableCapacity"]) == (200 * GB, 200 * GB)
    assert _sim_has_bs(admin, inv["uuid"])
    status, out = api.rest("POST", "/backup-storage/simulators",
                           {"params": {"name": _name("bs-rest"), "url": "/bs"}})
    assert status == 200 and out["inventory"]["status"] == "Connected"
    assert out["inventory"]["totalCapacity"] > 0  # a default capacity when none is given


def test_add_backup_storage_connect_failure_rolls_back(api, admin):
    u, name = _uuid(), _name("bs-fault")
    admin.inject("/backupstorage/connect", target=u, mode="fail")
    err = _fails("HOST.1001", _add_bs, api, name=name, resourceUuid=u)
    assert "/backupstorage/connect" in err.error["details"]
    assert api.query("QueryBackupStorage", f"name={name}") == []
    assert not _sim_has_bs(admin, u)


def test_add_backup_storage_bad_input(api):
    name = _name("bs-bad")
    _fails(INVALID, api.call, "AddSimulatorBackupStorage", name=name)
    _fails(INVALID, api.call, "AddSimulatorBackupStorage", name=name, url="/x", totalCapacity=1, availableCapacity=2)
    _fails(INVALID, api.call, "AddSimulatorBackupStorage", name=name, url="/x", totalCapacity=True)
    assert api.query("QueryBackupStorage", f"name={name}") == []


def test_backup_storage_zone_attachment_state_and_reconnect(api, admin, zone):
    bs = _add_bs(api)
    inv = api.call("AttachBackupStorageToZone", zoneUuid=zone, backupStorageUuid=bs["uuid"])["inventory"]
    assert inv["attachedZoneUuids"] == [zone]
    _fails(INVALID, api.call, "AttachBackupStorageToZone", zoneUuid=zone, backupStorageUuid=bs["uuid"])
    _fails(NOT_FOUND, api.call, "AttachBackupStorageToZone", zoneUuid=_uuid(), backupStorageUuid=bs["uuid"])
    r = api.call("GetBackupStorageCapacity", zoneUuids=[zone])
    assert r["totalCapacity"] >= bs["totalCapacity"]
    r = api.call("GetBackupStorageCapacity", backupStorageUuids=[bs["uuid"]])
    assert (r["totalCapacity"], r["availableCapacity"]) == (bs["totalCapacity"], bs["availableCapacity"])
    _fails(INVALID, api.call, "GetBackupStorageCapacity")

    status, out = api.rest("DELETE", f"/zones/{zone}/backup-storage/{bs['uuid']}")
    assert status == 200 and out["inventory"]["attachedZoneUuids"] == []
    _fails(INVALID, api.call, "DetachBackupStorageFromZone", zoneUuid=zone, backupStorageUuid=bs["uuid"])

    inv = api.call("UpdateBackupStorage", uuid=bs["uuid"], name="renamed")["inventory"]
    assert inv["name"] == "renamed"
    assert api.call("ChangeBackupStorageState", uuid=bs["uuid"], stateEvent="disable")["inventory"]["state"] == "Disabled"
    _fails(INVALID, api.call, "ChangeBackupStorageState", uuid=bs["uuid"], stateEvent="maintain")
    api.call("ChangeBackupStorageState", uuid=bs["uuid"], stateEvent="enable")

    admin.inject("/backupstorage/connect", target=bs["uuid"], mode="fail")
    _fails("HOST.1001", api.call, "ReconnectBackupStorage", uuid=bs["uuid"])
    assert _query_one(api, "QueryBackupStorage", bs["uuid"])["status"] == "Disconnected"
    assert api.call("ReconnectBackupStorage", uuid=bs["uuid"])["inventory"]["status"] == "Connected"


# ---- images -------------------------------------------------------------------------------------

def _url(size: int = GB, name: str = "img.qcow2") -> str:
    return f"http://images.example.com/{name}?size={size}"


@pytest.fixture
def bs(api) -> dict:
    return _add_bs(api, total=100 * GB)


def test_add_image_rpc(api, admin, bs):
    inv = api.call("AddImage", name=_name("img"), url=_url(2 * GB), backupStorageUuids=[bs["uuid"]])["inventory"]
    assert inv["status"] == "Ready" and inv["state"] == "Enabled"
    assert inv["size"] == 2 * GB and inv["actualSize"] > 0 and inv["md5Sum"]
    assert (inv["format"], inv["mediaType"], inv["platform"], inv["architecture"]) == \
        ("qcow2", "RootVolumeTemplate", "Linux", "x86_64")
    [ref] = inv["backupStorageRefs"]
    assert ref["backupStorageUuid"] == bs["uuid"] and ref["status"] == "Ready" and ref["installPath"]
    after = _query_one(api, "QueryBackupStorage", bs["uuid"])
    assert after["availableCapacity"] == bs["availableCapacity"] - inv["actualSize"]
    assert admin.backup_storage(bs["uuid"])["availableCapacity"] == after["availableCapacity"]


def test_add_image_rest_iso_and_raw_defaults(api, bs):
    status, out = api.rest("POST", "/images", {"params": {
        "name": _name("iso"), "url": _url(GB, "cd.iso"), "backupStorageUuids": [bs["uuid"]]}})
    assert status == 200, out
    assert (out["inventory"]["format"], out["inventory"]["mediaType"]) == ("iso", "ISO")
    inv = api.call("AddImage", name=_name("raw"), url=_url(GB, "disk.raw"), backupStorageUuids=[bs["uuid"]],
                   platform="Windows", mediaType="DataVolumeTemplate")["inventory"]
    assert (inv["format"], inv["mediaType"], inv["platform"]) == ("raw", "DataVolumeTemplate", "Windows")


@pytest.mark.parametrize(("params", "code", "words"), [
    ({"url": _url()}, INVALID, "missing mandatory parameter 'backupStorageUuids'"),
    ({"url": _url(), "backupStorageUuids": []}, INVALID, "must not be empty"),
    ({"url": _url(), "backupStorageUuids": "BS"}, INVALID, "must be a list"),
    ({"url": _url(), "backupStorageUuids": ["0" * 32]}, NOT_FOUND, "BackupStorageVO"),
    ({"url": "not a url", "backupStorageUuids": ["BS"]}, INVALID, "'url'"),
    ({"url": _url(), "backupStorageUuids": ["BS"], "format": "floppy"}, INVALID, "'format'"),
    ({"url": _url(), "backupStorageUuids": ["BS"], "mediaType": "ISO", "format": "qcow2"}, INVALID, "ISO"),
    ({"url": _url(), "backupStorageUuids": ["BS"], "platform": "Amiga"}, INVALID, "'platform'"),
])
def test_add_image_bad_input_leaves_nothing(api, bs, params, code, words):
    name = _name("img-bad")
    params = {k: ([bs["uuid"]] if v == ["BS"] else v) for k, v in params.items()}
    err = _fails(code, api.call, "AddImage", name=name, **params)
    assert words in err.error["details"]
    assert api.query("QueryImage", f"name={name}") == []


def test_add_image_to_a_disabled_backup_storage_is_refused(api, bs):
    api.call("ChangeBackupStorageState", uuid=bs["uuid"], stateEvent="disable")
    name = _name("img-dis")
    err = _fails(OPERATION, api.call, "AddImage", name=name, url=_url(), backupStorageUuids=[bs["uuid"]])
    assert "Disabled" in err.error["details"]
    assert api.query("QueryImage", f"name={name}") == []


def test_add_image_download_failure_everywhere_leaves_nothing(api, admin, bs):
    other = _add_bs(api)
    name, u = _name("img-fault"), _uuid()
    admin.inject("/backupstorage/image/download", mode="fail", count=2)
    err = _fails(OPERATION, api.call, "AddImage", name=name, url=_url(), resourceUuid=u,
                 backupStorageUuids=[bs["uuid"], other["uuid"]])
    assert bs["uuid"] in err.error["details"] and other["uuid"] in err.error["details"]
    assert api.query("QueryImage", f"name={name}") == []
    assert _query_one(api, "QueryBackupStorage", bs["uuid"])["availableCapacity"] == bs["availableCapacity"]
    assert admin.backup_storage(bs["uuid"])["images"] == {}


def test_add_image_partial_failure_keeps_the_good_copy(api, admin, bs):
    other = _add_bs(api)
    admin.inject("/backupstorage/image/download", target=other["uuid"], mode="fail")
    inv = api.call("AddImage", name=_name("img-half"), url=_url(),
                   backupStorageUuids=[bs["uuid"], other["uuid"]])["inventory"]
    assert inv["status"] == "Ready"
    assert [r["backupStorageUuid"] for r in inv["backupStorageRefs"]] == [bs["uuid"]]


def test_delete_recover_expunge_image(api, admin, bs):
    inv = api.call("AddImage", name=_name("img-del"), url=_url(), backupStorageUuids=[bs["uuid"]])["inventory"]
    u = inv["uuid"]
    _fails(OPERATION, api.call, "ExpungeImage", imageUuid=u)  # not deleted yet
    _fails(OPERATION, api.call, "RecoverImage", imageUuid=u)
    status, _ = api.rest("DELETE", f"/images/{u}")
    assert status == 200
    img = _query_one(api, "QueryImage", u)
    assert img["status"] == "Deleted" and img["backupStorageRefs"][0]["status"] == "Deleted"
    status, out = api.rest("PUT", f"/images/{u}/actions", {"recoverImage": {}})
    assert status == 200 and out["inventory"]["status"] == "Ready"
    api.call("DeleteImage", uuid=u)
    api.call("ExpungeImage", imageUuid=u)
    assert _query_one(api, "QueryImage", u) is None
    assert _query_one(api, "QueryBackupStorage", bs["uuid"])["availableCapacity"] == bs["availableCapacity"]
    assert admin.backup_storage(bs["uuid"])["images"] == {}
    _fails(NOT_FOUND, api.call, "DeleteImage", uuid=u)


def test_delete_image_direct_policy_expunges_at_once(api, bs):
    inv = api.call("AddImage", name=_name("img-direct"), url=_url(), backupStorageUuids=[bs["uuid"]])["inventory"]
    api.call("UpdateGlobalConfig", category="image", name="deletionPolicy", value="Direct")
    try:
        api.call("DeleteImage", uuid=inv["uuid"])
    finally:
        api.call("UpdateGlobalConfig", category="image", name="deletionPolicy", value="Delay")
    assert _query_one(api, "QueryImage", inv["uuid"]) is None


def test_update_and_change_image_state(api, bs):
    inv = api.call("AddImage", name=_name("img-upd"), url=_url(), backupStorageUuids=[bs["uuid"]])["inventory"]
    out = api.call("UpdateImage", uuid=inv["uuid"], name="new-name", guestOsType="Ubuntu", platform="Other",
                   virtio=False)["inventory"]
    assert (out["name"], out["guestOsType"], out["platform"], out["virtio"]) == ("new-name", "Ubuntu", "Other", False)
    _fails(INVALID, api.call, "UpdateImage", uuid=inv["uuid"], format="iso")  # a RootVolumeTemplate
    assert api.call("ChangeImageState", uuid=inv["uuid"], stateEvent="disable")["inventory"]["state"] == "Disabled"
    _fails(NOT_FOUND, api.call, "ChangeImageState", uuid=_uuid(), stateEvent="enable")


def test_delete_backup_storage_enforcing_vs_permissive(api, admin, zone):
    bs = _add_bs(api)
    shared = _add_bs(api)
    api.call("AttachBackupStorageToZone", zoneUuid=zone, backupStorageUuid=bs["uuid"])
    only = api.call("AddImage", name=_name("img-only"), url=_url(), backupStorageUuids=[bs["uuid"]])["inventory"]
    both = api.call("AddImage", name=_name("img-both"), url=_url(),
                    backupStorageUuids=[bs["uuid"], shared["uuid"]])["inventory"]
    err = _fails(DELETE_ERROR, api.call, "DeleteBackupStorage", uuid=bs["uuid"], deleteMode="Enforcing")
    assert only["uuid"] in err.error["details"] and "ZoneVO" in err.error["details"]
    api.call("DeleteBackupStorage", uuid=bs["uuid"])
    assert _query_one(api, "QueryBackupStorage", bs["uuid"]) is None
    assert not _sim_has_bs(admin, bs["uuid"])
    assert _query_one(api, "QueryImage", only["uuid"]) is None
    left = _query_one(api, "QueryImage", both["uuid"])
    assert [r["backupStorageUuid"] for r in left["backupStorageRefs"]] == [shared["uuid"]]


def test_zone_delete_cascades_to_storages(api, admin):
    z = api.call("CreateZone", name=_name("zone-cascade"))["inventory"]["uuid"]
    cl = api.call("CreateCluster", name=_name("cl-cascade"), zoneUuid=z, hypervisorType="Simulator")["inventory"]
    ps = _add_ps(api, z)
    api.call("AttachPrimaryStorageToCluster", clusterUuid=cl["uuid"], primaryStorageUuid=ps["uuid"])
    bs = _add_bs(api)
    api.call("AttachBackupStorageToZone", zoneUuid=z, backupStorageUuid=bs["uuid"])
    err = _fails(DELETE_ERROR, api.call, "DeleteZone", uuid=z, deleteMode="Enforcing")
    assert "PrimaryStorageVO" in err.error["details"] or "ClusterVO" in err.error["details"]
    assert _query_one(api, "QueryPrimaryStorage", ps["uuid"])["attachedClusterUuids"] == [cl["uuid"]]
    api.call("DeleteZone", uuid=z)
    assert _query_one(api, "QueryPrimaryStorage", ps["uuid"]) is None
    assert not _sim_has_ps(admin, ps["uuid"])
    assert _query_one(api, "QueryBackupStorage", bs["uuid"])["attachedZoneUuids"] == []


def test_cluster_delete_enforcing_refuses_with_storage_attached(api, zone):
    cl = api.call("CreateCluster", name=_name("cl-del"), zoneUuid=zone, hypervisorType="Simulator")["inventory"]
    ps = _add_ps(api, zone)
    api.call("AttachPrimaryStorageToCluster", clusterUuid=cl["uuid"], primaryStorageUuid=ps["uuid"])
    err = _fails(DELETE_ERROR, api.call, "DeleteCluster", uuid=cl["uuid"], deleteMode="Enforcing")
    assert ps["uuid"] in err.error["details"]
    api.call("DeleteCluster", uuid=cl["uuid"])
    assert _query_one(api, "QueryPrimaryStorage", ps["uuid"])["attachedClusterUuids"] == []
