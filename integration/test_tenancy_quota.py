"""Quotas under concurrency (issue 14): an account with vm.num 10 fires 50 CreateVmInstance at once;
exactly 10 succeed, the other 40 fail with ID.1003 and leave nothing behind (no VM, volume, NIC or
IP row, no host or primary-storage capacity held), and GetAccountQuotaUsage says 10. Run on each
database (ZSTACK_TEST_DB=sqlite|postgresql|mariadb): their locking differs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from integration.envs import build_env, snapshot, unique
from integration.test_identity import sha
from mn.client import ClientError, ZStackClient

GB = 1 << 30
QUOTA, CALLS = 10, 50


def test_concurrent_creations_never_exceed_the_vm_quota(api, mn):
    race(api, mn.url)


def test_concurrent_creations_across_mn_processes_never_exceed_the_vm_quota(mn_proc):
    """The same through two MN processes sharing the API port: their writes are not serialized by
    one process's group commit, so only the account-row lock (FOR UPDATE) keeps the count exact."""
    spawn, _, _ = mn_proc
    url = spawn(processes=2)
    api = ZStackClient(url)
    api.login()
    race(api, url)


def race(api: ZStackClient, url: str) -> None:
    env = build_env(api, hosts=2, cpu=64, memory=256 * GB)
    # One VM first, so the image is cached on the primary storage before the snapshot.
    warm = api.call("CreateVmInstance", name=unique("warm"), instanceOfferingUuid=env.offering,
                    imageUuid=env.image, l3NetworkUuids=[env.l3])["inventory"]
    name = unique("quota")
    acc = api.call("CreateAccount", name=name, password=sha("secret"))["inventory"]["uuid"]
    api.call("UpdateQuota", identityUuid=acc, name="vm.num", value=QUOTA)
    api.call("ShareResource", resourceUuids=[env.image, env.l3, env.offering], accountUuids=[acc])
    session = ZStackClient(url).login(name, "secret")
    before = snapshot(api, env)

    def create(i: int) -> dict | str:
        c = ZStackClient(url, session_uuid=session)
        try:
            return c.call("CreateVmInstance", name=f"{name}-{i}", instanceOfferingUuid=env.offering,
                          imageUuid=env.image, l3NetworkUuids=[env.l3])["inventory"]
        except ClientError as e:
            return e.code or "?"

    with ThreadPoolExecutor(CALLS) as pool:
        results = list(pool.map(create, range(CALLS)))
    made = [r for r in results if isinstance(r, dict)]
    errors = [r for r in results if not isinstance(r, dict)]
    assert len(made) == QUOTA, errors
    assert errors == ["ID.1003"] * (CALLS - QUOTA)

    c = ZStackClient(url, session_uuid=session)
    usage = {u["name"]: u for u in c.call("GetAccountQuotaUsage", uuid=acc)["usages"]}
    assert usage["vm.num"]["used"] == QUOTA and usage["vm.num"]["total"] == QUOTA
    mine = {v["uuid"] for v in made}
    assert {v["uuid"] for v in c.query("QueryVmInstance")} == mine
    assert all(v["state"] == "Running" for v in c.query("QueryVmInstance"))

    after = snapshot(api, env)
    # Exactly the 10 VMs' rows were added: nothing of the 40 refused ones is left.
    assert {u for u, _ in after["vms"]} - {u for u, _ in before["vms"]} == mine
    assert {u for u, _ in after["vms"]} == mine | {warm["uuid"]}
    vols = {v["uuid"] for v in api.query("QueryVolume", f"vmInstanceUuid?={','.join(mine)}")}
    assert len(vols) == QUOTA and set(after["volumes"]) - set(before["volumes"]) == {(u, "Ready") for u in vols}
    nics = api.query("QueryVmNic", f"vmInstanceUuid?={','.join(mine)}")
    assert len(nics) == QUOTA and set(after["nics"]) - set(before["nics"]) == {n["uuid"] for n in nics}
    assert len(after["ips"]) == len(before["ips"]) + QUOTA
    assert sorted(set(after["ips"]) - set(before["ips"])) == sorted(n["ip"] for n in nics)
    # Capacity: exactly what 10 VMs hold, nothing for the refused ones.
    cpu = sum(h[1] for h in before["hosts"]) - sum(h[1] for h in after["hosts"])
    mem = sum(h[2] for h in before["hosts"]) - sum(h[2] for h in after["hosts"])
    assert cpu == sum(v["cpuNum"] for v in made)
    assert mem == sum(v["memorySize"] for v in made)
    root = sum(v["size"] for v in api.query("QueryVolume", f"uuid?={','.join(vols)}"))
    assert before["ps"] - after["ps"] == root
    # Owner records: exactly the 10 VMs and their root volumes.
    refs = api.query("QueryAccountResourceRef", f"accountUuid={acc}")
    assert {r["resourceUuid"] for r in refs} == mine | vols
    # A destroyed VM releases its quota: one more creation fits.
    c.call("DestroyVmInstance", uuid=made[0]["uuid"])
    c.call("ExpungeVmInstance", uuid=made[0]["uuid"])
    assert {u["name"]: u["used"] for u in c.call("GetAccountQuotaUsage", uuid=acc)["usages"]}["vm.num"] == QUOTA - 1
    c.call("CreateVmInstance", name=f"{name}-again", instanceOfferingUuid=env.offering, imageUuid=env.image,
           l3NetworkUuids=[env.l3])
    try:
        c.call("CreateVmInstance", name=f"{name}-over", instanceOfferingUuid=env.offering, imageUuid=env.image,
               l3NetworkUuids=[env.l3])
        raise AssertionError("the 11th VM was created")
    except ClientError as e:
        assert e.code == "ID.1003"
