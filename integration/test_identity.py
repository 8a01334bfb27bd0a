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


# ---- users, groups, policies ----------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_users_and_groups(api: ZStackClient, mn: Any, transport: str) -> None:
    a, ca = new_account(api, mn)
    b, cb = new_account(api, mn)
    name = unique("u")
    u = call(ca, transport, "CreateUser", name=name, password=sha("one"))["inventory"]
    refused("SYS.1007", call, ca, transport, "CreateUser", name=name, password=sha("x"))
    other = call(cb, transport, "CreateUser", name=name, password=sha("x"))["inventory"]  # names are per account
    assert other["accountUuid"] == b["uuid"]
    assert [x["uuid"] for x in ca.query("QueryUser")] == [u["uuid"]]

    # The account changes its user's password without the old one; the user needs its current one.
    inv = call(ca, transport, "UpdateUser", uuid=u["uuid"], description="first user", password=sha("two"))["inventory"]
    assert inv["description"] == "first user"
    cu = user_client(mn, a["name"], name, "two")
    refused("ID.1002", call, cu, transport, "UpdateUser", password=sha("three"))
    refused("ID.1002", call, cu, transport, "UpdateUser", uuid=u["uuid"], password=sha("three"),
            oldPassword=sha("wrong"))
    call(cu, transport, "UpdateUser", password=sha("three"), oldPassword=sha("two"))
    user_client(mn, a["name"], name, "three")
    # Another account touches none of them.
    for api_name, params in (("UpdateUser", {"uuid": u["uuid"], "description": "mine"}),
                             ("DeleteUser", {"uuid": u["uuid"]})):
        e = refused("ID.1002", call, cb, transport, api_name, **params)
        assert u["uuid"] in e.error["details"]

    g = call(ca, transport, "CreateUserGroup", name=unique("g"), description="ops")["inventory"]
    assert g["accountUuid"] == a["uuid"] and g["description"] == "ops"
    refused("SYS.1007", call, ca, transport, "CreateUserGroup", name=g["name"])
    g = call(ca, transport, "UpdateUserGroup", uuid=g["uuid"], name=g["name"] + "-2")["inventory"]
    assert g["name"].endswith("-2")
    for _ in range(2):
        call(ca, transport, "AddUserToGroup", userUuid=u["uuid"], groupUuid=g["uuid"])
    assert [x["uuid"] for x in ca.query("QueryUser", f"groupRef.groupUuid={g['uuid']}")] == [u["uuid"]]
    bg = cb.call("CreateUserGroup", name=unique("g"))["inventory"]
    refused("ID.1002", call, cb, transport, "AddUserToGroup", userUuid=u["uuid"], groupUuid=bg["uuid"])
    refused("ID.1002", call, cb, transport, "UpdateUserGroup", uuid=g["uuid"], name="mine")
    refused("ID.1002", call, cb, transport, "DeleteUserGroup", uuid=g["uuid"])
    refused("SYS.1007", api.call, "AddUserToGroup", userUuid=u["uuid"], groupUuid=bg["uuid"])  # two accounts
    call(ca, transport, "RemoveUserFromGroup", userUuid=u["uuid"], groupUuid=g["uuid"])
    assert ca.query("QueryUser", f"groupRef.groupUuid={g['uuid']}") == []
    call(ca, transport, "AddUserToGroup", userUuid=u["uuid"], groupUuid=g["uuid"])
    call(ca, transport, "DeleteUserGroup", uuid=g["uuid"])
    assert ca.query("QueryUserGroup") == []

    call(ca, transport, "DeleteUser", uuid=u["uuid"])
    assert ca.query("QueryUser") == []
    refused("ID.1001", cu.query, "QueryVmInstance")  # the user's sessions end with it
    for acc in (a, b):
        api.call("DeleteAccount", uuid=acc["uuid"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_policies(api: ZStackClient, mn: Any, env: Env, transport: str) -> None:
    a, ca = new_account(api, mn)
    b, cb = new_account(api, mn)
    share_env(api, env, a["uuid"])
    vm = ca.call("CreateVmInstance", name=unique("vm"), instanceOfferingUuid=env.offering, imageUuid=env.image,
                 l3NetworkUuids=[env.l3])["inventory"]
    name = unique("u")
    u = ca.call("CreateUser", name=name, password=sha("pw"))["inventory"]
    cu = user_client(mn, a["name"], name, "pw")
    create = {"name": unique("vm"), "instanceOfferingUuid": env.offering, "imageUuid": env.image,
              "l3NetworkUuids": [env.l3]}
    # A user without a policy may do nothing (but its own session's APIs).
    refused("ID.1002", cu.query, "QueryVmInstance")
    assert cu.call("ValidateSession", sessionUuid=cu.session)["validSession"] is True

    for bad in ([{"effect": "Maybe", "actions": ["*"]}], [{"effect": "Allow", "actions": []}],
                [{"effect": "Allow", "actions": "instance:*"}], [{"effect": "Allow"}], ["Allow *"],
                [{"effect": "Allow", "actions": ["*"], "resources": "x"}],
                [{"effect": "Allow", "actions": ["*"], "verbs": ["x"]}], []):
        e = refused("SYS.1007", call, ca, transport, "CreatePolicy", name=unique("bad"), statements=bad)
        assert "statement" in e.error["details"]
    read = call(ca, transport, "CreatePolicy", name=unique("read"), description="vm reads",
                statements=[{"name": "r", "effect": "Allow", "actions": ["instance:read"]}])["inventory"]
    assert read["statements"] == [{"name": "r", "effect": "Allow", "actions": ["instance:read"]}]
    assert read["accountUuid"] == a["uuid"] and set(read) == {"statements", "name", "uuid", "accountUuid"}
    refused("SYS.1007", call, ca, transport, "CreatePolicy", name=read["name"],
            statements=[{"effect": "Allow", "actions": ["*"]}])
    by_name = ca.call("CreatePolicy", name=unique("q"),
                      statements=[{"effect": "Allow", "actions": ["QueryVmInstance"]}])["inventory"]

    call(ca, transport, "AttachPolicyToUser", userUuid=u["uuid"], policyUuid=read["uuid"])
    call(ca, transport, "AttachPolicyToUser", userUuid=u["uuid"], policyUuid=read["uuid"])  # no second ref
    assert [x["uuid"] for x in cu.query("QueryVmInstance")] == [vm["uuid"]]
    e = refused("ID.1002", cu.call, "CreateVmInstance", **create)
    assert "CreateVmInstance" in e.error["details"]
    refused("ID.1002", cu.query, "QueryVolume")
    perms = call(cu, transport, "CheckApiPermission", apiNames=["QueryVmInstance", "CreateVmInstance",
                                                              "org.zstack.header.zone.APICreateZoneMsg"])
    assert perms["inventory"] == {"QueryVmInstance": "Allow", "CreateVmInstance": "Deny",
                                  "org.zstack.header.zone.APICreateZoneMsg": "Deny"}
    call(ca, transport, "DetachPolicyFromUser", userUuid=u["uuid"], policyUuid=read["uuid"])
    refused("ID.1002", cu.query, "QueryVmInstance")
    call(ca, transport, "AttachPoliciesToUser", userUuid=u["uuid"], policyUuids=[read["uuid"], by_name["uuid"]])
    assert [x["uuid"] for x in cu.query("QueryVmInstance")] == [vm["uuid"]]
    call(ca, transport, "DetachPoliciesFromUser", userUuid=u["uuid"], policyUuids=[read["uuid"], by_name["uuid"]])
    refused("ID.1002", cu.query, "QueryVmInstance")

    # Through a group: VM reads and creation allowed, its destruction denied.
    g = ca.call("CreateUserGroup", name=unique("g"))["inventory"]
    ca.call("AddUserToGroup", userUuid=u["uuid"], groupUuid=g["uuid"])
    ops = ca.call("CreatePolicy", name=unique("ops"), statements=[
        {"effect": "Allow", "actions": ["instance:*"]},
        {"effect": "Deny", "actions": ["org.zstack.header.vm.APIDestroyVmInstanceMsg"]}])["inventory"]
    call(ca, transport, "AttachPolicyToUserGroup", groupUuid=g["uuid"], policyUuid=ops["uuid"])
    assert ca.call("CheckApiPermission", userUuid=u["uuid"], apiNames=["CreateVmInstance", "DestroyVmInstance"])[
        "inventory"] == {"CreateVmInstance": "Allow", "DestroyVmInstance": "Deny"}
    mine = cu.call("CreateVmInstance", **create)["inventory"]
    refs = api.query("QueryAccountResourceRef", f"resourceUuid={mine['uuid']}")
    assert [r["accountUuid"] for r in refs] == [a["uuid"]]  # a user's resources are its account's
    refused("ID.1002", cu.call, "DestroyVmInstance", uuid=mine["uuid"])
    call(ca, transport, "DetachPolicyFromUserGroup", groupUuid=g["uuid"], policyUuid=ops["uuid"])
    refused("ID.1002", cu.query, "QueryVmInstance")
    # The account itself: what its account type may call.
    assert ca.call("CheckApiPermission", apiNames=["CreateVmInstance", "CreateZone"])["inventory"] == {
        "CreateVmInstance": "Allow", "CreateZone": "Deny"}
    refused("SYS.1007", ca.call, "CheckApiPermission", apiNames=["NoSuchApi"])

    # Another account's policies and users are out of reach.
    bu = cb.call("CreateUser", name=unique("u"), password=sha("x"))["inventory"]
    refused("ID.1002", call, cb, transport, "AttachPolicyToUser", userUuid=bu["uuid"], policyUuid=read["uuid"])
    refused("ID.1002", call, cb, transport, "DeletePolicy", uuid=read["uuid"])
    refused("ID.1002", call, cb, transport, "CheckApiPermission", userUuid=u["uuid"], apiNames=["QueryVmInstance"])
    refused("SYS.1007", api.call, "AttachPolicyToUser", userUuid=bu["uuid"], policyUuid=read["uuid"])

    ca.call("AttachPolicyToUser", userUuid=u["uuid"], policyUuid=read["uuid"])
    call(ca, transport, "DeletePolicy", uuid=read["uuid"])
    assert ca.query("QueryPolicy", f"uuid={read['uuid']}") == []
    refused("ID.1002", cu.query, "QueryVmInstance")  # its attachments went with it
    for acc in (a, b):
        api.call("DeleteAccount", uuid=acc["uuid"])


def test_no_account_touches_another_accounts_identities(api: ZStackClient, mn: Any) -> None:
    """Every identity API naming a user, group or policy, called by another account: ID.1002, and
    nothing changed."""
    a, ca = new_account(api, mn)
    b, cb = new_account(api, mn)
    u = ca.call("CreateUser", name=unique("u"), password=sha("x"))["inventory"]["uuid"]
    g = ca.call("CreateUserGroup", name=unique("g"))["inventory"]["uuid"]
    p = ca.call("CreatePolicy", name=unique("p"), statements=[{"effect": "Allow", "actions": ["*"]}])["inventory"]["uuid"]
    ca.call("AddUserToGroup", userUuid=u, groupUuid=g)
    ca.call("AttachPolicyToUser", userUuid=u, policyUuid=p)
    ca.call("AttachPolicyToUserGroup", groupUuid=g, policyUuid=p)
    bu = cb.call("CreateUser", name=unique("u"), password=sha("x"))["inventory"]["uuid"]
    bg = cb.call("CreateUserGroup", name=unique("g"))["inventory"]["uuid"]
    bp = cb.call("CreatePolicy", name=unique("p"), statements=[{"effect": "Allow", "actions": ["*"]}])["inventory"]["uuid"]
    cases = [
        ("UpdateUser", {"uuid": u, "password": sha("y")}), ("DeleteUser", {"uuid": u}),
        ("UpdateUserGroup", {"uuid": g, "name": "x"}), ("DeleteUserGroup", {"uuid": g}),
        ("AddUserToGroup", {"userUuid": u, "groupUuid": bg}), ("AddUserToGroup", {"userUuid": bu, "groupUuid": g}),
        ("RemoveUserFromGroup", {"userUuid": u, "groupUuid": g}), ("DeletePolicy", {"uuid": p}),
        ("AttachPolicyToUser", {"userUuid": bu, "policyUuid": p}), ("AttachPolicyToUser", {"userUuid": u, "policyUuid": bp}),
        ("AttachPoliciesToUser", {"userUuid": bu, "policyUuids": [bp, p]}),
        ("DetachPolicyFromUser", {"userUuid": u, "policyUuid": p}),
        ("DetachPoliciesFromUser", {"userUuid": u, "policyUuids": [p]}),
        ("AttachPolicyToUserGroup", {"groupUuid": bg, "policyUuid": p}),
        ("DetachPolicyFromUserGroup", {"groupUuid": g, "policyUuid": p}),
        ("CheckApiPermission", {"userUuid": u, "apiNames": ["QueryVmInstance"]}),
        ("UpdateAccount", {"uuid": a["uuid"], "description": "x"}), ("GetAccountQuotaUsage", {"uuid": a["uuid"]}),
        ("CreateAccount", {"name": unique("x"), "password": sha("x")}), ("DeleteAccount", {"uuid": a["uuid"]}),
        ("UpdateQuota", {"identityUuid": b["uuid"], "name": "vm.num", "value": 100}),
    ]
    for transport in TRANSPORTS:
        for api_name, params in cases:
            e = refused("ID.1002", call, cb, transport, api_name, **params)
            if transport == "rest":
                assert e.status == 403, api_name
    assert [x["uuid"] for x in ca.query("QueryUser", f"groupRef.groupUuid={g}", f"policyRef.policyUuid={p}")] == [u]
    assert [x["uuid"] for x in ca.query("QueryUserGroup", f"policyRef.policyUuid={p}")] == [g]
    user_client(mn, a["name"], ca.query("QueryUser")[0]["name"], "x")  # the password is unchanged
    assert cb.query("QueryUser", f"uuid={u}") == [] and cb.query("QueryPolicy", f"uuid={p}") == []
    for acc in (a, b):
        api.call("DeleteAccount", uuid=acc["uuid"])
