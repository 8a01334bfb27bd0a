"""The garbage collector: a cleanup the agent fails during a rollback is recorded, visible in
QueryGCJob, retried with backoff, and done once the agent recovers (issue 13, finding 6)."""

from __future__ import annotations

import time

import pytest

from integration.envs import build_env, unique
from mn.client import ClientError
from mn.services import gc

DELETE_VOLUME, START = "/primarystorage/volume/delete", "/vm/start"


@pytest.fixture(scope="module")
def env(api):
    return build_env(api, hosts=1)


@pytest.fixture(scope="module")
def admin(sim):
    from simulator.client import SimulatorAdmin

    a = SimulatorAdmin(sim.url)
    yield a
    a.clear_faults()


def _volumes_on(admin, ps: str) -> dict[str, str]:
    """volume uuid -> path of every volume the simulated primary storage holds."""
    return {v["volumeUuid"]: p for p, v in admin.primary_storage(ps)["volumes"].items()}


def _failed_create(api, env, admin) -> tuple[str, list[dict], set[str]]:
    """CreateVmInstance with /vm/start and the volume deletes of its rollback failing: the VM
    uuid, the GC jobs it left and the volumes it leaked on the storage."""
    before = set(_volumes_on(admin, env.ps))
    admin.inject(START, mode="fail", count=1)
    admin.inject(DELETE_VOLUME, mode="fail", count=-1, message="disk controller gone")
    vm = gc_new_uuid()
    with pytest.raises(ClientError, match="failed"):
        api.call("CreateVmInstance", name=unique("gc"), instanceOfferingUuid=env.offering, imageUuid=env.image,
                 l3NetworkUuids=[env.l3], dataDiskSizes=[1 << 30], resourceUuid=vm)
    assert api.query("QueryVmInstance", f"uuid={vm}") == []  # rolled back: the MN forgot the VM and volumes
    leaked = set(_volumes_on(admin, env.ps)) - before
    assert len(leaked) == 2  # root and data volume still on the storage
    jobs = [j for j in api.query("QueryGCJob", "status=Idle") if vm in j["name"]]
    return vm, jobs, leaked


def gc_new_uuid() -> str:
    import uuid

    return uuid.uuid4().hex


def test_failed_rollback_delete_becomes_gc_job_done_once_agent_recovers(api, env, admin):
    vm, jobs, leaked = _failed_create(api, env, admin)
    try:
        assert len(jobs) == 2, jobs
        assert all("resourceUuid" not in j and "lastError" not in j for j in jobs)  # ZStack's inventory fields only
        assert {j["runnerClass"] for j in jobs} == {"DeleteVolumeCmd"}
        assert all(j["type"] == "TimeBased" and j["managementNodeUuid"] for j in jobs)
        assert all("disk controller gone" in j["context"] for j in api.query("QueryGCJob", f"name~=%{vm}%"))
        # Still failing: the trigger says so, and the job stays Idle with its attempts counted.
        with pytest.raises(ClientError, match="failed again.*disk controller gone"):
            api.call("TriggerGCJob", uuid=jobs[0]["uuid"])
        assert api.query("QueryGCJob", f"uuid={jobs[0]['uuid']}")[0]["status"] == "Idle"
    finally:
        admin.clear_faults()
    assert leaked <= set(_volumes_on(admin, env.ps))  # retried and failed: still there
    for j in jobs:
        api.call("TriggerGCJob", uuid=j["uuid"])
    done = api.query("QueryGCJob", f"name~=%{vm}%")
    assert {j["status"] for j in done} == {"Done"}
    assert not leaked & set(_volumes_on(admin, env.ps))  # the leaked volumes are deleted now
    with pytest.raises(ClientError, match="Done"):
        api.call("TriggerGCJob", uuid=jobs[0]["uuid"])
    api.call("DeleteGCJob", uuid=jobs[0]["uuid"])
    assert api.query("QueryGCJob", f"uuid={jobs[0]['uuid']}") == []
    status, body = api.rest("GET", f"/gc-jobs/{jobs[1]['uuid']}")  # REST too
    assert status == 200 and body["inventories"][0]["status"] == "Done"
    status, body = api.rest("PUT", f"/gc-jobs/{jobs[1]['uuid']}/actions", {"triggerGCJob": {}})
    assert status >= 400 and "Done" in body["error"]["details"]


def test_periodic_collector_retries_with_backoff(api, mn, env, admin):
    """The periodic scan runs due jobs; a failure pushes the next run out (doubling, capped)."""
    vm, jobs, leaked = _failed_create(api, env, admin)
    try:
        assert len(jobs) == 2
        svc = mn.services
        assert gc.backoff(svc, 1) == 60 and gc.backoff(svc, 3) == 240 and gc.backoff(svc, 30) == 3600
        api.call("UpdateGlobalConfig", category="gc", name="retryInterval", value="1")
        assert set(gc.due(svc)) >= {j["uuid"] for j in jobs}  # recorded due at once
        gc.collect(svc)  # the fault is still there: both fail again, next run ~1 s later
        assert svc.job_runner().wait_idle(30)
        again = {j["uuid"]: j for j in api.query("QueryGCJob", f"name~=%{vm}%")}
        assert {j["status"] for j in again.values()} == {"Idle"}
        assert not set(gc.due(svc)) & set(again)
    finally:
        admin.clear_faults()
        api.call("UpdateGlobalConfig", category="gc", name="retryInterval", value="60")
    time.sleep(3)
    gc.collect(svc)
    assert svc.job_runner().wait_idle(30)
    assert {j["status"] for j in api.query("QueryGCJob", f"name~=%{vm}%")} == {"Done"}
    assert not leaked & set(_volumes_on(admin, env.ps))
    assert not leaked & set(_volumes_on(admin, env.ps))


def test_two_claims_of_one_job_one_wins(api, mn, env, admin):
    """The claim is a compare-and-swap: a second MN process cannot run a job that is Processing."""
    vm, jobs, leaked = _failed_create(api, env, admin)
    admin.clear_faults()
    svc = mn.services
    assert gc.claim(svc, jobs[0]["uuid"]) is True
    assert gc.claim(svc, jobs[0]["uuid"]) is False
    assert gc.run_job(svc, jobs[0]["uuid"]) is None  # held: not run again
    with pytest.raises(ClientError, match="running"):
        api.call("DeleteGCJob", uuid=jobs[0]["uuid"])
    gc._end(svc, jobs[0]["uuid"], status=gc.IDLE)
    for j in jobs:
        api.call("TriggerGCJob", uuid=j["uuid"])
    assert {j["status"] for j in api.query("QueryGCJob", f"name~=%{vm}%")} == {"Done"}
    assert not leaked & set(_volumes_on(admin, env.ps))


def test_add_image_rollback_leaves_a_gc_job_for_the_downloaded_copy(api, mn, env, admin):
    """AddImage fails after the download and the backup storage cannot delete its copy: the image is
    forgotten, the copy is collected once the storage recovers."""
    images = lambda: {i["imageUuid"]: p for p, i in admin.backup_storage(env.bs)["images"].items()}  # noqa: E731
    image = gc_new_uuid()
    mn.services.flow_faults = {"add-image:download"}
    admin.inject("/backupstorage/image/delete", target=env.bs, mode="fail", count=-1)
    try:
        with pytest.raises(ClientError, match="injected failure after step download"):
            api.call("AddImage", name=unique("gc-img"), url="http://images.test/gc.qcow2", resourceUuid=image,
                     backupStorageUuids=[env.bs], format="qcow2")
    finally:
        mn.services.flow_faults = set()
        admin.clear_faults()
    assert api.query("QueryImage", f"uuid={image}") == [] and image in images()
    [job] = [j for j in api.query("QueryGCJob", "runnerClass=DeleteImageCmd") if image in j["name"]]
    api.call("TriggerGCJob", uuid=job["uuid"])
    assert api.query("QueryGCJob", f"uuid={job['uuid']}")[0]["status"] == "Done"
    assert image not in images()
