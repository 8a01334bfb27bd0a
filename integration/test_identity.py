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
    img = c.call("AddImage", name=unique("img"), url=f"http://images.test/{unique('t')}.qcow2?size={GB}",
                 backupStorageUuids=[env.bs], format="qcow2")["inventory"]
    l3 = c.call("CreateL3Network", name=unique("l3"), l2NetworkUuid=env.l2)["inventory"]
    c.call("AddIpRange", l3NetworkUuid=l3["uuid"], name=unique("r"), startIp="10.250.0.10", endIp="10.250.0.20",
           netmask="255.255.255.0", gateway="10.250.0.1")
    user = c.call("CreateUser", name=unique("u"), password=sha("p"))["inventory"]
    policy = c.call("CreatePolicy", name=unique("p"), statements=[{"effect": "Allow", "actions": ["*"]}])["inventory"]
    c.call("AttachPolicyToUser", userUuid=user["uuid"], policyUuid=policy["uuid"])
    c.call("ShareResource", resourceUuids=[off["uuid"]], toPublic=True)
    owned = [vm["uuid"], vol["uuid"], off["uuid"], vip["uuid"], eip["uuid"], img["uuid"], l3["uuid"]] + [
        v["uuid"] for v in vm["allVolumes"]]
    refs = api.query("QueryAccountResourceRef", f"accountUuid={acc['uuid']}")
    assert set(owned) <= {r["resourceUuid"] for r in refs}

    refused("SYS.1004", api.call, "DeleteAccount", uuid=acc["uuid"], deleteMode="Enforcing")
    assert api.query("QueryVmInstance", f"uuid={vm['uuid']}")[0]["state"] == "Running"
    api.call("DeleteAccount", uuid=acc["uuid"])
    for query, uuid in (("QueryVmInstance", vm["uuid"]), ("QueryVolume", vol["uuid"]),
                        ("QueryInstanceOffering", off["uuid"]), ("QueryVip", vip["uuid"]), ("QueryEip", eip["uuid"]),
                        ("QueryUser", user["uuid"]), ("QueryPolicy", policy["uuid"]), ("QueryImage", img["uuid"]),
                        ("QueryL3Network", l3["uuid"])):
        assert api.query(query, f"uuid={uuid}") == [], query
    assert api.query("QueryVolume", f"vmInstanceUuid={vm['uuid']}") == []
    assert api.query("QueryIpRange", f"l3NetworkUuid={l3['uuid']}") == []
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
    refused("SYS.1003", call, api, transport, "ShareResource", resourceUuids=[env.zone], toPublic=True)
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
    api.call("UpdateQuota", identityUuid=b["uuid"], name="vm.num", value=0)  # the new owner's quota counts
    refused("ID.1003", call, api, transport, "ChangeResourceOwner", accountUuid=b["uuid"], resourceUuid=vm["uuid"])
    assert [r["accountUuid"] for r in api.query("QueryAccountResourceRef", f"resourceUuid={vm['uuid']}")] == [a["uuid"]]
    api.call("UpdateQuota", identityUuid=b["uuid"], name="vm.num", value=1)
    ref = call(api, transport, "ChangeResourceOwner", accountUuid=b["uuid"], resourceUuid=vm["uuid"])["inventory"]
    assert ref["accountUuid"] == b["uuid"] and ref["resourceUuid"] == vm["uuid"] and ref["resourceType"] == "VmInstanceVO"
    refs = {r["resourceUuid"]: r["accountUuid"] for r in api.query("QueryAccountResourceRef", f"accountUuid={b['uuid']}")}
    assert {vm["uuid"], *vols} <= set(refs)
    assert api.query("QuerySharedResource", f"resourceUuid={vm['uuid']}") == []  # the old owner's shares
    assert ca.query("QueryVmInstance", f"uuid={vm['uuid']}") == []
    assert [v["uuid"] for v in cb.query("QueryVmInstance", f"uuid={vm['uuid']}")] == [vm["uuid"]]
    assert sorted(v["uuid"] for v in cb.query("QueryVolume", f"vmInstanceUuid={vm['uuid']}")) == sorted(vols)
    refused("SYS.1003", call, api, transport, "ChangeResourceOwner", accountUuid=b["uuid"], resourceUuid=env.zone)
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
    # The identity queries answer through expansions, each account its own rows only.
    assert [x["uuid"] for x in ca.query("QueryAccount", f"user.name={name}")] == [a["uuid"]]
    assert sorted(x["uuid"] for x in api.query("QueryAccount", f"user.name={name}")) == sorted([a["uuid"], b["uuid"]])
    assert [x["uuid"] for x in ca.query("QueryUserGroup", f"userRef.userUuid={u['uuid']}")] == [g["uuid"]]
    assert [x["uuid"] for x in ca.query("QueryUser", f"account.name={a['name']}")] == [u["uuid"]]
    assert cb.query("QueryUser", f"account.name={a['name']}") == []
    assert cb.query("QueryAccount", f"uuid={a['uuid']}") == []
    assert ca.call("QueryUser", conditions=[], count=True)["total"] == 1
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
    assert ca.query("QueryPolicy", f"uuid={read['uuid']}") == [read]
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


# ---- zstack-cli: passwords asked for, never in the history ----------------------------------------

def _cli(mn: Any) -> list[str]:
    import sys
    from pathlib import Path
    from urllib.parse import urlsplit

    script = Path(sys.executable).parent / "zstack-cli"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "mn.ops.cli"]
    url = urlsplit(mn.url)
    return [*base, "--json-compact", "-H", url.hostname, "-p", str(url.port)]


def _cli_env(tmp_path: Any) -> dict[str, str]:
    import os

    e = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_")}
    e["HOME"] = str(tmp_path / "home")
    e["TERM"] = "dumb"
    return e


def test_cli_asks_for_a_left_out_password(api: ZStackClient, mn: Any, tmp_path: Any) -> None:
    """One command at a time, the password read from stdin (no terminal): LogInByAccount,
    CreateUser (asked twice), LogInByUser; the sessions are the CLI's."""
    import json
    import subprocess

    acc, _ = new_account(api, mn)
    cli, env = _cli(mn), _cli_env(tmp_path)

    def run(*args: str, stdin: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], input=stdin, env=env, capture_output=True, text=True, timeout=120)

    r = run("LogInByAccount", f"accountName={acc['name']}", stdin="wrong\n")
    assert r.returncode == 1 and "ID.1000" in r.stderr
    r = run("LogInByAccount", f"accountName={acc['name']}", stdin="secret\n")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["inventory"]["accountUuid"] == acc["uuid"]
    name = unique("u")
    r = run("CreateUser", f"name={name}", stdin="userpw\nother\n")
    assert r.returncode == 1 and "differ" in r.stderr
    r = run("CreateUser", f"name={name}", stdin="userpw\nuserpw\n")
    assert r.returncode == 0, r.stderr
    user = json.loads(r.stdout)["inventory"]
    assert user["accountUuid"] == acc["uuid"]
    r = run("LogInByUser", f"accountName={acc['name']}", f"userName={name}", stdin="userpw\n")
    assert r.returncode == 0, r.stderr
    session = json.loads(r.stdout)["inventory"]
    assert session["userType"] == "UserVO" and session["userUuid"] == user["uuid"]
    r = run("QueryVmInstance", stdin="")  # the user's session, without a policy
    assert r.returncode == 1 and "ID.1002" in r.stderr
    r = run("LogInByUser", f"accountName={acc['name']}", f"userName={name}", stdin="")
    assert r.returncode == 1 and "needs a password" in r.stderr
    api.call("DeleteAccount", uuid=acc["uuid"])


def test_cli_shell_keeps_no_password_in_its_history(api: ZStackClient, mn: Any, tmp_path: Any) -> None:
    """The interactive shell on a terminal (a pty): a left-out password is asked for without echo;
    no password reaches the history file, neither typed in a line nor left by an older history."""
    import os
    import select
    import subprocess
    import time

    acc, _ = new_account(api, mn)
    env = _cli_env(tmp_path)
    history = tmp_path / "home" / ".zstack" / "cli" / "history"
    history.parent.mkdir(parents=True)
    history.write_text("QueryZone name=z1\nLogInByAccount accountName=admin password=oldsecret\n")
    master, slave = os.openpty()
    proc = subprocess.Popen(_cli(mn), stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    seen = b""

    def expect(text: str, timeout: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text.encode() not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} in {seen[-2000:]!r}"
            if select.select([master], [], [], left)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                assert chunk, f"the CLI ended before {text!r}: {seen[-2000:]!r}"
                seen += chunk

    def send(line: str) -> None:
        os.write(master, line.encode() + b"\r")

    try:
        expect(">>> ")
        send(f"LogInByAccount accountName={acc['name']}")
        expect("LogInByAccount password: ")
        send("secret")
        expect(f"{acc['name']} >>> ")
        name = unique("u")
        send(f"CreateUser name={name}")
        expect("CreateUser password: ")
        send("hiddenpw1")
        expect("Retype the password: ")
        send("hiddenpw1")
        expect(f'"name":"{name}"')
        send(f"UpdateUser uuid={api.query('QueryUser', f'name={name}')[0]['uuid']} password=typedpw2 description=d")
        expect('"description":"d"')
        send(f"LogInByUser accountName={acc['name']} userName={name} password=typedpw2")
        expect(f"{name} >>> ")
        send("exit")
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    transcript = seen.decode(errors="replace")
    assert "secret" not in transcript and "hiddenpw1" not in transcript  # no echo of asked passwords
    lines = history.read_text().splitlines()
    assert "QueryZone name=z1" in lines and "LogInByAccount accountName=admin" in lines
    assert f"LogInByAccount accountName={acc['name']}" in lines and f"CreateUser name={name}" in lines
    assert f"LogInByUser accountName={acc['name']} userName={name}" in lines
    text = history.read_text()
    for secret in ("oldsecret", "typedpw2", "hiddenpw1", "password="):
        assert secret not in text, secret
    assert oct(history.stat().st_mode & 0o777) == "0o600"
    api.call("DeleteAccount", uuid=acc["uuid"])


def test_a_user_of_admin_is_held_to_its_policies(api: ZStackClient, mn: Any) -> None:
    name = unique("ops")
    u = api.call("CreateUser", name=name, password=sha("pw"))["inventory"]
    p = api.call("CreatePolicy", name=unique("zone-reads"),
                 statements=[{"effect": "Allow", "actions": ["zone:read"]}])["inventory"]
    api.call("AttachPolicyToUser", userUuid=u["uuid"], policyUuid=p["uuid"])
    cu = user_client(mn, "admin", name, "pw")
    cu.query("QueryZone")
    refused("ID.1002", cu.call, "CreateZone", name=unique("z"))
    refused("ID.1002", cu.call, "CreateAccount", name=unique("a"), password=sha("x"))
    assert cu.call("CheckApiPermission", apiNames=["QueryZone", "CreateZone"])["inventory"] == {
        "QueryZone": "Allow", "CreateZone": "Deny"}
    api.call("DeleteUser", uuid=u["uuid"])
    api.call("DeletePolicy", uuid=p["uuid"])


def test_unique_names_hold_across_mn_processes(mn_proc: Any) -> None:
    """Concurrent CreateAccount (and CreateUser) calls of one name, spread over two MN processes:
    exactly one of each succeeds, the others are SYS.1007."""
    from concurrent.futures import ThreadPoolExecutor

    spawn, _, _ = mn_proc
    url = spawn(processes=2)
    admin = ZStackClient(url)
    admin.login()
    name = unique("acc")

    def create(api_name: str, client_session: str, **params: Any) -> str:
        c = ZStackClient(url, client_session)
        try:
            c.call(api_name, **params)
            return "ok"
        except ClientError as exc:
            return exc.code or "?"

    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda _: create("CreateAccount", admin.session, name=name, password=sha("x")),
                            range(12)))
    assert sorted(got) == sorted(["ok"] + ["SYS.1007"] * 11), got
    assert len(admin.query("QueryAccount", f"name={name}")) == 1
    acc = ZStackClient(url)
    acc.login(name, "x")
    user = unique("u")
    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda _: create("CreateUser", acc.session, name=user, password=sha("x")), range(12)))
    assert sorted(got) == sorted(["ok"] + ["SYS.1007"] * 11), got
    assert len(acc.query("QueryUser", f"name={user}")) == 1
