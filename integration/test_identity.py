"""The identity APIs end to end, through RPC and REST: accounts (create, update, delete with
everything they own), user logins, sharing, owner changes, quotas, users, groups, policies and
what a user's policies allow; each refusal with ZStack's error."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from integration.envs import Env, add_public_network, build_env, unique
from mn.catalogue.catalog import load_catalog
from mn.client import ClientError, ZStackClient

TRANSPORTS = ("rpc", "rest")
GB = 1 << 30


def sha(password: str) -> str:
    return hashlib.sha512(password.encode()).hexdigest()


def call(api: ZStackClient, transport: str, api_name: str, /, **params: Any) -> dict[str, Any]:
    """One API call through RPC, or through REST built from the catalogue's path and method."""
    if transport == "rpc":
        return api.call(api_name, **params)
    spec = load_catalog().api(api_name)
    path = spec.rest.path
    for key in [k for k in params if "{" + k + "}" in path]:
        path = path.replace("{" + key + "}", str(params.pop(key)))
    method = spec.rest.method
    if method == "POST":
        status, body = api.rest("POST", path, {"params": params})
    elif method == "PUT":
        status, body = api.rest("PUT", path, {spec.action_key: params})
    else:
        fields = [(k, str(x).lower() if isinstance(x, bool) else str(x))
                  for k, v in params.items() for x in (v if isinstance(v, list) else [v])]
        status, body = api.rest(method, path, fields=fields)
    if status != 200:
        raise ClientError(api_name, body.get("error") or body, status)
    return body


def refused(code: str, fn: Any, *args: Any, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as e:
        fn(*args, **kwargs)
    assert e.value.code == code, e.value.error
    return e.value


def new_account(api: ZStackClient, mn: Any, transport: str = "rpc", **extra: Any) -> tuple[dict, ZStackClient]:
    """A normal account made by admin, and a client logged in as it."""
    name = unique("acc")
    acc = call(api, transport, "CreateAccount", name=name, password=sha("secret"), **extra)["inventory"]
    c = ZStackClient(mn.url)
    c.login(name, "secret")
    return acc, c


def user_client(mn: Any, account_name: str, user_name: str, password: str) -> ZStackClient:
    c = ZStackClient(mn.url)
    reply = c.call("LogInByUser", accountName=account_name, userName=user_name, password=sha(password))
    c.session = reply["inventory"]["uuid"]
    return c


@pytest.fixture(scope="module")
def env(api: ZStackClient) -> Env:
    e = build_env(api, hosts=1, cpu=64, memory=256 * GB)
    e.extra["pub_l2"], e.extra["pub_l3"] = add_public_network(api, e, int(e.prefix[-2:], 16) % 200 + 20)
    return e


def share_env(api: ZStackClient, env: Env, account_uuid: str) -> None:
    """What a tenant needs from admin to create a VM: the image, the L3s, the offering."""
    api.call("ShareResource", resourceUuids=[env.image, env.l3, env.offering, env.extra["pub_l3"]],
             accountUuids=[account_uuid])


# ---- accounts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_account_create_update_delete(api: ZStackClient, mn: Any, transport: str) -> None:
    from mn import quota

    acc, c = new_account(api, mn, transport, description="a tenant")
    assert acc["type"] == "Normal" and acc["description"] == "a tenant" and set(acc) == {
        "uuid", "name", "description", "type", "createDate", "lastOpDate"}
    quotas = {q["name"]: q["value"] for q in api.query("QueryQuota", f"identityUuid={acc['uuid']}")}
    assert quotas == {q.name: q.default for q in quota.QUOTAS.values()}
    # The new account sees itself only.
    assert [a["uuid"] for a in c.query("QueryAccount")] == [acc["uuid"]]
    assert {q["name"] for q in c.query("QueryQuota")} == set(quotas)

    e = refused("SYS.1007", call, api, transport, "CreateAccount", name=acc["name"], password=sha("x"))
    assert acc["name"] in e.error["details"]
    refused("SYS.1007", call, api, transport, "CreateAccount", name=unique("acc"), password=sha("x"), type="Root")
    # A normal account creates no account, of any type.
    e = refused("ID.1002", call, c, transport, "CreateAccount", name=unique("acc"), password=sha("x"))
    if transport == "rest":
        assert e.status == 403
    refused("ID.1002", call, c, transport, "CreateAccount", name=unique("acc"), password=sha("x"), type="SystemAdmin")
    admin2 = call(api, transport, "CreateAccount", name=unique("adm"), password=sha("x"), type="SystemAdmin")
    assert admin2["inventory"]["type"] == "SystemAdmin"
    api.call("DeleteAccount", uuid=admin2["inventory"]["uuid"])

    # Wrong passwords.
    refused("ID.1000", ZStackClient(mn.url).login, acc["name"], "wrong")

    # UpdateAccount: itself only, a password change needs the current one.
    inv = call(c, transport, "UpdateAccount", uuid=acc["uuid"], description="mine")["inventory"]
    assert inv["description"] == "mine"
    refused("ID.1002", call, c, transport, "UpdateAccount", uuid=acc["uuid"], password=sha("new"))
    refused("ID.1002", call, c, transport, "UpdateAccount", uuid=acc["uuid"], password=sha("new"),
            oldPassword=sha("wrong"))
    call(c, transport, "UpdateAccount", uuid=acc["uuid"], password=sha("new"), oldPassword=sha("secret"))
    refused("ID.1000", ZStackClient(mn.url).login, acc["name"], "secret")
    ZStackClient(mn.url).login(acc["name"], "new")
    refused("ID.1002", call, c, transport, "UpdateAccount", uuid=mn_admin_uuid(), description="taken over")
    # Admin changes any account's password without the old one, and its name.
    renamed = unique("acc")
    call(api, transport, "UpdateAccount", uuid=acc["uuid"], password=sha("third"), name=renamed)
    ZStackClient(mn.url).login(renamed, "third")
    refused("SYS.1007", call, api, transport, "UpdateAccount", uuid=acc["uuid"], name="admin")

    # DeleteAccount: admin only; never the admin account.
    refused("ID.1002", call, c, transport, "DeleteAccount", uuid=acc["uuid"])
    refused("SYS.1007", call, api, transport, "DeleteAccount", uuid=mn_admin_uuid())
    call(api, transport, "DeleteAccount", uuid=acc["uuid"])
    assert api.query("QueryAccount", f"uuid={acc['uuid']}") == []
    assert api.query("QueryQuota", f"identityUuid={acc['uuid']}") == []
    refused("ID.1001", c.query, "QueryAccount")  # its sessions went with it


def mn_admin_uuid() -> str:
    from mn.context import ADMIN_ACCOUNT_UUID

    return ADMIN_ACCOUNT_UUID


def test_delete_account_deletes_what_it_owns(api: ZStackClient, mn: Any, env: Env) -> None:
    acc, c = new_account(api, mn)
    share_env(api, env, acc["uuid"])
    vm = c.call("CreateVmInstance", name=unique("vm"), instanceOfferingUuid=env.offering, imageUuid=env.image,
                l3NetworkUuids=[env.l3], dataDiskSizes=[GB])["inventory"]
    vol = c.call("CreateDataVolume", name=unique("vol"), diskSize=GB)["inventory"]
    off = c.call("CreateInstanceOffering", name=unique("off"), cpuNum=1, memorySize=GB)["inventory"]
    vip = c.call("CreateVip", name=unique("vip"), l3NetworkUuid=env.extra["pub_l3"])["inventory"]
    eip = c.call("CreateEip", name=unique("eip"), vipUuid=vip["uuid"],
                 vmNicUuid=vm["vmNics"][0]["uuid"])["inventory"]
    user = c.call("CreateUser", name=unique("u"), password=sha("p"))["inventory"]
    policy = c.call("CreatePolicy", name=unique("p"), statements=[{"effect": "Allow", "actions": ["*"]}])["inventory"]
    c.call("AttachPolicyToUser", userUuid=user["uuid"], policyUuid=policy["uuid"])
    c.call("ShareResource", resourceUuids=[off["uuid"]], toPublic=True)
    owned = [vm["uuid"], vol["uuid"], off["uuid"], vip["uuid"], eip["uuid"]] + [
        v["uuid"] for v in vm["allVolumes"]]
    refs = api.query("QueryAccountResourceRef", f"accountUuid={acc['uuid']}")
    assert set(owned) <= {r["resourceUuid"] for r in refs}

    refused("SYS.1004", api.call, "DeleteAccount", uuid=acc["uuid"], deleteMode="Enforcing")
    assert api.query("QueryVmInstance", f"uuid={vm['uuid']}")[0]["state"] == "Running"
    api.call("DeleteAccount", uuid=acc["uuid"])
    for query, uuid in (("QueryVmInstance", vm["uuid"]), ("QueryVolume", vol["uuid"]),
                        ("QueryInstanceOffering", off["uuid"]), ("QueryVip", vip["uuid"]), ("QueryEip", eip["uuid"]),
                        ("QueryUser", user["uuid"]), ("QueryPolicy", policy["uuid"])):
        assert api.query(query, f"uuid={uuid}") == [], query
    assert api.query("QueryVolume", f"vmInstanceUuid={vm['uuid']}") == []
    assert api.query("QueryAccountResourceRef", f"accountUuid={acc['uuid']}") == []
    assert api.query("QuerySharedResource", f"ownerAccountUuid={acc['uuid']}") == []
    assert api.query("QuerySharedResource", f"receiverAccountUuid={acc['uuid']}") == []
    # Admin's shared resources are still admin's.
    assert {r["accountUuid"] for r in api.query("QueryAccountResourceRef", f"resourceUuid={env.image}")} == {
        mn_admin_uuid()}


# ---- user logins ---------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_log_in_by_user(api: ZStackClient, mn: Any, transport: str) -> None:
    acc, c = new_account(api, mn)
    name = unique("u")
    user = call(c, transport, "CreateUser", name=name, password=sha("pw"), description="d")["inventory"]
    assert user["accountUuid"] == acc["uuid"] and user["name"] == name and "password" not in str(user).lower()
    anon = ZStackClient(mn.url)
    for by in ({"accountName": acc["name"]}, {"accountUuid": acc["uuid"]}):
        s = call(anon, transport, "LogInByUser", userName=name, password=sha("pw"), **by)["inventory"]
        assert s["userType"] == "UserVO" and s["userUuid"] == user["uuid"] and s["accountUuid"] == acc["uuid"]
        assert anon.call("ValidateSession", sessionUuid=s["uuid"])["validSession"] is True
    refused("ID.1000", call, anon, transport, "LogInByUser", accountName=acc["name"], userName=name,
            password=sha("wrong"))
    refused("ID.1000", call, anon, transport, "LogInByUser", accountName="admin", userName=name, password=sha("pw"))
    refused("ID.1000", call, anon, transport, "LogInByUser", accountName=acc["name"], userName="nobody",
            password=sha("pw"))
    refused("SYS.1007", call, anon, transport, "LogInByUser", userName=name, password=sha("pw"))


# ---- sharing, owners, quotas ----------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_share_and_revoke(api: ZStackClient, mn: Any, env: Env, transport: str) -> None:
    a, ca = new_account(api, mn)
    b, cb = new_account(api, mn)
    assert cb.query("QueryImage", f"uuid={env.image}") == []
    for _ in range(2):  # sharing twice changes nothing
        call(api, transport, "ShareResource", resourceUuids=[env.image, env.offering], accountUuids=[b["uuid"]])
    rows = api.query("QuerySharedResource", f"receiverAccountUuid={b['uuid']}")
    assert sorted((r["resourceUuid"], r["ownerAccountUuid"], r["toPublic"]) for r in rows) == sorted(
        [(env.image, mn_admin_uuid(), False), (env.offering, mn_admin_uuid(), False)])
    assert rows[0]["resourceType"] in ("ImageVO", "InstanceOfferingVO")
    assert [i["uuid"] for i in cb.query("QueryImage", f"uuid={env.image}")] == [env.image]
    assert ca.query("QueryImage", f"uuid={env.image}") == []
    # A receiver cannot share on what it does not own.
    refused("ID.1002", call, cb, transport, "ShareResource", resourceUuids=[env.image], accountUuids=[a["uuid"]])
    refused("SYS.1007", call, api, transport, "ShareResource", resourceUuids=[env.image])
    refused("SYS.1007", call, api, transport, "ShareResource", resourceUuids=[env.zone], toPublic=True)
    refused("SYS.1003", call, api, transport, "ShareResource", resourceUuids=[env.image], accountUuids=["0" * 32])

    # A normal account shares what it owns with another account, then with everyone.
    off = ca.call("CreateInstanceOffering", name=unique("off"), cpuNum=1, memorySize=GB)["inventory"]
    call(ca, transport, "ShareResource", resourceUuids=[off["uuid"]], accountUuids=[b["uuid"]])
    assert [o["uuid"] for o in cb.query("QueryInstanceOffering", f"uuid={off['uuid']}")] == [off["uuid"]]
    refused("ID.1002", cb.call, "UpdateInstanceOffering", uuid=off["uuid"], name="stolen")
    call(ca, transport, "RevokeResourceSharing", resourceUuids=[off["uuid"]], accountUuids=[b["uuid"]])
    assert cb.query("QueryInstanceOffering", f"uuid={off['uuid']}") == []
    call(ca, transport, "ShareResource", resourceUuids=[off["uuid"]], toPublic=True)
    call(ca, transport, "ShareResource", resourceUuids=[off["uuid"]], toPublic=True)
    assert len(api.query("QuerySharedResource", f"resourceUuid={off['uuid']}")) == 1
    assert [o["uuid"] for o in cb.query("QueryInstanceOffering", f"uuid={off['uuid']}")] == [off["uuid"]]
    call(ca, transport, "RevokeResourceSharing", resourceUuids=[off["uuid"]], toPublic=True)
    assert cb.query("QueryInstanceOffering", f"uuid={off['uuid']}") == []
    refused("SYS.1007", call, ca, transport, "RevokeResourceSharing", resourceUuids=[off["uuid"]])

    call(api, transport, "RevokeResourceSharing", resourceUuids=[env.image, env.offering], all=True)
    assert api.query("QuerySharedResource", f"receiverAccountUuid={b['uuid']}") == []
    assert cb.query("QueryImage", f"uuid={env.image}") == []
    for acc in (a, b):
        api.call("DeleteAccount", uuid=acc["uuid"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_change_owner_and_resource_account(api: ZStackClient, mn: Any, env: Env, transport: str) -> None:
    a, ca = new_account(api, mn)
    b, cb = new_account(api, mn)
    share_env(api, env, a["uuid"])
    vm = ca.call("CreateVmInstance", name=unique("vm"), instanceOfferingUuid=env.offering, imageUuid=env.image,
                 l3NetworkUuids=[env.l3], dataDiskSizes=[GB])["inventory"]
    vols = [v["uuid"] for v in vm["allVolumes"]]
    assert len(vols) == 2
    ca.call("ShareResource", resourceUuids=[vm["uuid"]], toPublic=True)
    got = call(ca, transport, "GetResourceAccount", resourceUuids=[vm["uuid"], env.image])["inventories"]
    assert got[vm["uuid"]]["uuid"] == a["uuid"] and got[env.image]["uuid"] == mn_admin_uuid()
    assert set(got[vm["uuid"]]) == {"uuid", "name", "description", "type", "createDate", "lastOpDate"}
    refused("ID.1002", call, cb, transport, "GetResourceAccount", resourceUuids=[env.offering])

    refused("ID.1002", call, ca, transport, "ChangeResourceOwner", accountUuid=b["uuid"], resourceUuid=vm["uuid"])
    ref = call(api, transport, "ChangeResourceOwner", accountUuid=b["uuid"], resourceUuid=vm["uuid"])["inventory"]
    assert ref["accountUuid"] == b["uuid"] and ref["resourceUuid"] == vm["uuid"] and ref["resourceType"] == "VmInstanceVO"
    refs = {r["resourceUuid"]: r["accountUuid"] for r in api.query("QueryAccountResourceRef", f"accountUuid={b['uuid']}")}
    assert {vm["uuid"], *vols} <= set(refs)
    assert api.query("QuerySharedResource", f"resourceUuid={vm['uuid']}") == []  # the old owner's shares
    assert ca.query("QueryVmInstance", f"uuid={vm['uuid']}") == []
    assert [v["uuid"] for v in cb.query("QueryVmInstance", f"uuid={vm['uuid']}")] == [vm["uuid"]]
    assert sorted(v["uuid"] for v in cb.query("QueryVolume", f"vmInstanceUuid={vm['uuid']}")) == sorted(vols)
    refused("SYS.1007", call, api, transport, "ChangeResourceOwner", accountUuid=b["uuid"], resourceUuid=env.zone)
    for acc in (a, b):
        api.call("DeleteAccount", uuid=acc["uuid"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_quotas(api: ZStackClient, mn: Any, env: Env, transport: str) -> None:
    a, ca = new_account(api, mn)
    share_env(api, env, a["uuid"])
    usage = {u["name"]: u for u in call(ca, transport, "GetAccountQuotaUsage", uuid=a["uuid"])["usages"]}
    assert usage["vm.num"] == {"name": "vm.num", "total": 20, "used": 0}
    q = call(api, transport, "UpdateQuota", identityUuid=a["uuid"], name="vm.num", value=1)["inventory"]
    assert q["name"] == "vm.num" and q["value"] == 1 and q["identityUuid"] == a["uuid"]
    assert q["identityType"] == "AccountVO"
    assert [x["value"] for x in api.query("QueryQuota", f"identityUuid={a['uuid']}", "name=vm.num")] == [1]
    ca.call("CreateVmInstance", name=unique("vm"), instanceOfferingUuid=env.offering, imageUuid=env.image,
            l3NetworkUuids=[env.l3])
    refused("ID.1003", ca.call, "CreateVmInstance", name=unique("vm"), instanceOfferingUuid=env.offering,
            imageUuid=env.image, l3NetworkUuids=[env.l3])
    usage = {u["name"]: u for u in call(ca, transport, "GetAccountQuotaUsage", uuid=a["uuid"])["usages"]}
    assert usage["vm.num"] == {"name": "vm.num", "total": 1, "used": 1}
    assert usage["vm.cpuNum"]["used"] == 1 and usage["vm.memorySize"]["used"] == GB

    refused("ID.1002", call, ca, transport, "UpdateQuota", identityUuid=a["uuid"], name="vm.num", value=100)
    refused("SYS.1007", call, api, transport, "UpdateQuota", identityUuid=a["uuid"], name="vm.nums", value=1)
    refused("ID.1002", call, ca, transport, "GetAccountQuotaUsage", uuid=mn_admin_uuid())
    api.call("DeleteAccount", uuid=a["uuid"])
