"""The agent protocol is authenticated both ways (docs/security.md): forged commands to a
simulated host and forged events to the MN are refused with a JSON error and change nothing;
an event signed by one host about another host's VM is refused or ignored; a replay is refused."""

from __future__ import annotations

import json
import time

import pytest
import urllib3

from integration.agent_keys import KEYS
from integration.envs import build_env, unique
from kvmagent import auth
from kvmagent import protocol as p
from simulator.client import SimulatorAdmin

http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))


@pytest.fixture(scope="module")
def env(api):
    return build_env(api, hosts=2)


@pytest.fixture(scope="module")
def admin(sim):
    return SimulatorAdmin(sim.url)


@pytest.fixture
def vm(api, env):
    v = api.call("CreateVmInstance", name=unique("vm"), instanceOfferingUuid=env.offering,
                 imageUuid=env.image, l3NetworkUuids=[env.l3])["inventory"]
    yield v
    api.call("DestroyVmInstance", uuid=v["uuid"])


def post(url: str, body: dict, key: bytes | None = None, headers: dict | None = None,
         signed: dict | None = None) -> tuple[int, dict, dict]:
    """POST `body` (signed with `key`, or with the given signature headers); (status, reply, headers sent)."""
    data = json.dumps(body).encode()
    h = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        h.update(auth.sign(key, "POST", urllib3.util.parse_url(url).path, data, h))
    h.update(signed or {})
    r = http.request("POST", url, body=data, headers=h)
    return r.status, json.loads(r.data), h


def host_state(api, host_uuid: str) -> tuple[int, int]:
    h = api.query("QueryHost", f"uuid={host_uuid}")[0]
    return h["availableCpuCapacity"], h["availableMemoryCapacity"]


def vm_row(api, vm_uuid: str) -> dict:
    return api.query("QueryVmInstance", f"uuid={vm_uuid}")[0]


def settle() -> None:
    time.sleep(1.0)  # an accepted event is applied by a job: give a wrong one time to show


def test_unsigned_and_forged_commands_to_a_simulated_host_are_refused(api, sim, admin, env, vm) -> None:
    host = vm["hostUuid"]
    other = next(h for h in env.hosts if h != host)
    url = f"{sim.host_url(host)}{p.DestroyVmCmd.PATH}"
    cmd = {"uuid": vm["uuid"], "hostUuid": host}
    calls = admin.stats()["calls"].get(p.DestroyVmCmd.PATH)
    for key in (None, bytes(32), KEYS.key_for(sim.host_url(other))):  # unsigned, any key, another host's
        status, reply, _ = post(url, cmd, key)
        assert status == 401, reply
        assert reply["success"] is False and reply["code"] == "ID.1000" and reply["error"]
    settle()
    assert admin.host(host)["vms"][vm["uuid"]]["state"] == "Running"
    assert vm_row(api, vm["uuid"])["state"] == "Running"
    assert admin.stats()["calls"].get(p.DestroyVmCmd.PATH) == calls  # refused before it ran or was counted


def test_a_replayed_command_is_refused(sim, vm) -> None:
    url = f"{sim.host_url(vm['hostUuid'])}{p.VmSyncCmd.PATH}"
    status, reply, sent = post(url, {"hostUuid": vm["hostUuid"]}, KEYS.key_for(sim.host_url(vm["hostUuid"])))
    assert status == 200 and reply["states"][vm["uuid"]] == "Running"
    replay = {k: sent[k] for k in (auth.TIMESTAMP_HEADER, auth.NONCE_HEADER, auth.SIGNATURE_HEADER)}
    status, reply, _ = post(url, {"hostUuid": vm["hostUuid"]}, signed=replay)
    assert status == 401 and "replayed" in reply["error"]


def event(host: str, vm_uuid: str) -> dict:
    return p.to_wire(p.HostEvent(hostUuid=host, type="VmStateChanged", vmUuid=vm_uuid, state="Stopped",
                                 reason="forged"))


def test_forged_events_are_refused_and_the_vm_keeps_running_with_its_capacity(api, mn, sim, vm) -> None:
    host = vm["hostUuid"]
    before = host_state(api, host)
    url = mn.url + "/agent/events"
    for key, headers in ((None, {}), (None, {auth.AGENT_HEADER: host}), (bytes(32), {auth.AGENT_HEADER: host}),
                         (KEYS.key_for(sim.host_url(host)), {})):  # signed, but naming no host
        status, reply, _ = post(url, event(host, vm["uuid"]), key, headers)
        assert status == 401, reply
        assert reply["success"] is False and reply["code"] == "ID.1000"
    settle()
    assert vm_row(api, vm["uuid"])["state"] == "Running"
    assert host_state(api, host) == before


def test_an_event_signed_by_one_host_about_another_hosts_vm_is_refused(api, mn, sim, env, vm) -> None:
    victim = vm["hostUuid"]
    attacker = next(h for h in env.hosts if h != victim)
    key = KEYS.key_for(sim.host_url(attacker))
    before = host_state(api, victim)
    # claims to speak for the victim host: refused outright
    status, reply, _ = post(mn.url + "/agent/events", event(victim, vm["uuid"]), key, {auth.AGENT_HEADER: attacker})
    assert status == 403 and "only about itself" in reply["error"]
    # speaks for itself about a VM that is not on it: taken, and ignored
    status, reply, _ = post(mn.url + "/agent/events", event(attacker, vm["uuid"]), key, {auth.AGENT_HEADER: attacker})
    assert status == 200
    settle()
    assert vm_row(api, vm["uuid"])["state"] == "Running" and vm_row(api, vm["uuid"])["hostUuid"] == victim
    assert host_state(api, victim) == before


def test_a_replayed_event_is_refused(api, mn, sim, admin, vm) -> None:
    """A host's genuine event, captured and sent again once the VM was started anew."""
    host = vm["hostUuid"]
    assert admin.set_vm_state(host, vm["uuid"], "Stopped") is True  # the simulator's own, signed, event
    deadline = time.time() + 10
    while vm_row(api, vm["uuid"])["state"] != "Stopped" and time.time() < deadline:
        time.sleep(0.1)
    assert vm_row(api, vm["uuid"])["state"] == "Stopped"
    key = KEYS.key_for(sim.host_url(host))
    status, _, sent = post(mn.url + "/agent/events", event(host, vm["uuid"]), key, {auth.AGENT_HEADER: host})
    assert status == 200  # what the attacker captured: accepted once (the VM is already Stopped)
    api.call("StartVmInstance", uuid=vm["uuid"])
    replay = {k: sent[k] for k in (auth.TIMESTAMP_HEADER, auth.NONCE_HEADER, auth.SIGNATURE_HEADER)}
    status, reply, _ = post(mn.url + "/agent/events", event(host, vm["uuid"]), headers={auth.AGENT_HEADER: host},
                            signed=replay)
    assert status == 401 and "replayed" in reply["error"]
    settle()
    assert vm_row(api, vm["uuid"])["state"] == "Running"


def test_a_forged_callback_is_refused(mn) -> None:
    status, reply, _ = post(mn.url + "/agent/callback", {"success": True}, headers={"taskuuid": "t-forged"})
    assert status == 404 and reply["success"] is False  # no command waits for it: nothing to complete


def test_a_callback_is_accepted_only_from_the_host_its_task_went_to(api, mn, sim, admin, env, vm) -> None:
    """While the MN waits for the async reply of a VM start on host A, a reply for that task
    signed by host B, or unsigned, is refused; host A's own reply then completes the start."""
    import threading

    api.call("StopVmInstance", uuid=vm["uuid"])
    fid = admin.inject(p.StartVmCmd.PATH, mode="slow", delay=4)  # on whichever host the start picks
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(api.call("StartVmInstance", uuid=vm["uuid"])["inventory"]))
    t.start()
    try:
        agents = mn.services.agents
        deadline = time.time() + 10
        waiting = None
        while waiting is None and time.time() < deadline:
            with agents._lock:
                waiting = next(((k, w.base_url) for k, w in agents._waiters.items()
                                if any(w.base_url == sim.host_url(h) for h in env.hosts)), None)
            time.sleep(0.05)
        assert waiting is not None, "the start never waited for an async reply"
        task, host_url = waiting
        other = next(h for h in env.hosts if sim.host_url(h) != host_url)
        forged = {"success": False, "error": "forged"}
        for key in (None, KEYS.key_for(sim.host_url(other))):
            status, reply, _ = post(mn.url + "/agent/callback", forged, key, {"taskuuid": task})
            assert status == 401 and reply["code"] == "ID.1000", reply
        t.join(30)
        assert result.get("state") == "Running"  # the real reply, not the forged failure
    finally:
        t.join(30)
        try:
            admin.remove_fault(fid)
        except Exception:  # noqa: BLE001 - consumed by the start
            pass
