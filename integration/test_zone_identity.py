"""Zones, sessions and the transports' error handling; a zone deleted with everything under it."""

from __future__ import annotations

import hashlib
import json

import pytest
import urllib3

from integration.envs import build_env, unique
from mn.client import ClientError, ZStackClient


def test_zone_crud_over_both_transports(api):
    z = api.call("CreateZone", name=unique("z"), description="first")["inventory"]
    assert z["state"] == "Enabled" and z["isDefault"] is False and z["type"] == "zstack"
    z = api.call("UpdateZone", uuid=z["uuid"], name=z["name"] + "-renamed", isDefault=True)["inventory"]
    assert z["name"].endswith("-renamed") and z["isDefault"] is True
    status, body = api.rest("POST", "/zones", {"params": {"name": unique("z2"), "isDefault": True}})
    assert status == 200
    z2 = body["inventory"]
    # Only one zone is the default.
    assert api.query("QueryZone", f"uuid={z['uuid']}")[0]["isDefault"] is False
    status, body = api.rest("PUT", f"/zones/{z2['uuid']}/actions", {"changeZoneState": {"stateEvent": "disable"}})
    assert status == 200 and body["inventory"]["state"] == "Disabled"
    status, body = api.rest("PUT", f"/zones/{z2['uuid']}/actions", {"updateZone": {"description": "d"}})
    assert status == 200 and body["inventory"]["description"] == "d"
    status, body = api.rest("GET", "/zones", fields=[("q", f"uuid={z2['uuid']}"), ("q", "state=Disabled")])
    assert [x["uuid"] for x in body["inventories"]] == [z2["uuid"]]
    for uuid in (z["uuid"], z2["uuid"]):
        api.call("DeleteZone", uuid=uuid)
    assert api.query("QueryZone", f"uuid?={z['uuid']},{z2['uuid']}") == []


def test_unknown_uuid_bad_params_and_unknown_paths(api):
    with pytest.raises(ClientError) as e:
        api.call("DeleteZone", uuid="0" * 32)
    assert e.value.code == "SYS.1003" and "ZoneVO" in e.value.error["details"]
    with pytest.raises(ClientError) as e:
        api.call("CreateZone")
    assert e.value.code == "SYS.1007" and "'name'" in e.value.error["details"]
    with pytest.raises(ClientError) as e:
        api.call("CreateZone", name=5)
    assert e.value.code == "SYS.1007"
    with pytest.raises(ClientError) as e:
        api.call("org.zstack.header.zone.APINoSuchMsg", name="x")
    assert e.value.code == "SYS.1008"
    status, body = api.rest("GET", "/no-such-resources")
    assert status == 404 and body["success"] is False and body["error"]["code"] == "SYS.1008"
    status, body = api.rest("PUT", f"/zones/{'0' * 32}/actions", {"explodeZone": {}})
    assert status == 400 and "changeZoneState" in body["error"]["details"]
    status, body = api.rest("POST", "/zones", {"params": {}})
    assert status == 400 and body["error"]["code"] == "SYS.1007"


def test_rpc_transport_rejects_malformed_bodies(mn):
    http = urllib3.PoolManager()
    for body in (b"not json", b"[]", b'{"a": 1, "b": 2}', b'{"org.zstack.header.zone.APICreateZoneMsg": 3}'):
        r = http.request("POST", f"{mn.url}/zstack/api", body=body, headers={"Content-Type": "application/json"})
        assert r.status == 400
        reply = json.loads(r.data)
        (_, result), = json.loads(reply["result"]).items()
        assert result["success"] is False and result["error"]["code"] == "SYS.1007"


def test_sessions(mn):
    c = ZStackClient(mn.url)
    with pytest.raises(ClientError) as e:
        c.call("QueryZone", conditions=[])
    assert e.value.code == "ID.1001"
    with pytest.raises(ClientError) as e:
        c.login("admin", "wrong")
    assert e.value.code == "ID.1000"
    with pytest.raises(ClientError):
        c.call("LogInByAccount", accountName="nobody", password=hashlib.sha512(b"x").hexdigest())
    session = c.login()
    assert c.call("ValidateSession", sessionUuid=session)["validSession"] is True
    status, body = c.rest("GET", f"/accounts/sessions/{session}/valid")
    assert status == 200 and body == {"valid": True}
    assert c.query("QueryAccount", "name=admin")[0]["type"] == "SystemAdmin"
    c.call("LogOut", sessionUuid=session)
    assert c.call("ValidateSession", sessionUuid=session)["validSession"] is False
    with pytest.raises(ClientError) as e:
        c.call("QueryZone", conditions=[])
    assert e.value.code == "ID.1001"


def test_deleting_a_zone_deletes_everything_under_it(api, sim):
    from simulator.client import SimulatorAdmin, SimulatorAdminError

    env = build_env(api, hosts=2)
    vm = api.call("CreateVmInstance", name=unique("doomed"), instanceOfferingUuid=env.offering,
                  imageUuid=env.image, l3NetworkUuids=[env.l3], dataDiskSizes=[1 << 30])["inventory"]
    with pytest.raises(ClientError) as e:
        api.call("DeleteZone", uuid=env.zone, deleteMode="Enforcing")
    assert e.value.code == "SYS.1004" and "ClusterVO" in e.value.error["details"]
    assert api.query("QueryVmInstance", f"uuid={vm['uuid']}")[0]["state"] == "Running"

    api.call("DeleteZone", uuid=env.zone, deleteMode="Permissive")
    for query, cond in (("QueryZone", f"uuid={env.zone}"), ("QueryCluster", f"uuid={env.cluster}"),
                        ("QueryHost", f"clusterUuid={env.cluster}"), ("QueryPrimaryStorage", f"uuid={env.ps}"),
                        ("QueryL2Network", f"uuid={env.l2}"), ("QueryL3Network", f"uuid={env.l3}"),
                        ("QueryIpRange", f"uuid={env.ip_range}"), ("QueryVmInstance", f"uuid={vm['uuid']}"),
                        ("QueryVolume", f"vmInstanceUuid={vm['uuid']}"), ("QueryVmNic", f"vmInstanceUuid={vm['uuid']}"),
                        ("QueryIpAddress", f"l3NetworkUuid={env.l3}")):
        assert api.query(query, cond) == [], query
    admin = SimulatorAdmin(sim.url)
    for h in env.hosts:
        with pytest.raises(SimulatorAdminError):
            admin.host(h)
    # The backup storage is not in the zone: it survives, detached.
    bs = api.query("QueryBackupStorage", f"uuid={env.bs}")[0]
    assert env.zone not in bs["attachedZoneUuids"]
