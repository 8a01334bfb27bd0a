"""An MN of several processes (MNConfig.processes, mn/workers.py): real `python -m mn.server`
processes sharing one API port, on the test database."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3
from sqlalchemy import create_engine, text

from integration.envs import assert_consistent, build_env, slow_creation, unique
from mn.client import ClientError, ZStackClient


def _parse(date: str) -> dt.datetime:
    """An inventory date ("Nov 23, 2026 8:28:38 PM")."""
    return dt.datetime.strptime(date, "%b %d, %Y %I:%M:%S %p")


def _health(url: str) -> dict:
    """/health over a new connection (the kernel picks the process for each connection)."""
    http = urllib3.PoolManager(retries=False)
    r = http.request("GET", f"{url}/health", timeout=5, headers={"Connection": "close"})
    assert r.status == 200
    return r.json()


def _processes(url: str, want: int, timeout: float = 30) -> dict[int, str]:
    """process index -> MN uuid, as /health reports them, until `want` were seen."""
    seen: dict[int, str] = {}
    deadline = time.time() + timeout
    while len(seen) < want:
        assert time.time() < deadline, f"only processes {sorted(seen)} answered"
        h = _health(url)
        assert h["processes"] == want
        seen[h["process"]] = h["managementNodeUuid"]
    return seen


def _create(url: str, session: str, env, n: int, threads: int = 8) -> list[dict]:
    """n CreateVmInstance calls, each through a client of its own (a new connection, so the
    submissions and the result requests land on all processes); returns the replies."""
    def one(i: int) -> dict:
        return ZStackClient(url, session, maxsize=1).call(
            "CreateVmInstance", name=unique(f"mp{i}"), instanceOfferingUuid=env.offering,
            imageUuid=env.image, l3NetworkUuids=[env.l3])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


def _job_owners(db_url: str) -> dict[str, int]:
    eng = create_engine(db_url)
    try:
        with eng.connect() as c:
            rows = c.execute(text('SELECT "managementNodeUuid", count(*) FROM api_job '
                                  "WHERE \"apiName\" = 'CreateVmInstance' GROUP BY \"managementNodeUuid\""
                                  if not db_url.startswith("mysql") else
                                  "SELECT managementNodeUuid, count(*) FROM api_job "
                                  "WHERE apiName = 'CreateVmInstance' GROUP BY managementNodeUuid"))
            return {r[0]: r[1] for r in rows}
    finally:
        eng.dispose()


def test_processes_share_the_port_and_each_serves_calls_and_results(sim, mn_proc):
    from simulator.client import SimulatorAdmin

    spawn, _, db_url = mn_proc
    url = spawn(processes=2)
    uuids = _processes(url, 2)
    assert len(set(uuids.values())) == 2
    api = ZStackClient(url)
    api.login()
    listed = {m["uuid"] for m in api.query("QueryManagementNode")}
    assert set(uuids.values()) <= listed
    env = build_env(api, hosts=2, cpu=64)
    replies = _create(url, api.session, env, 16)
    assert all(r["inventory"]["state"] == "Running" for r in replies)
    owners = _job_owners(db_url)
    assert set(owners) == set(uuids.values()), owners  # both processes ran creations
    assert sum(owners.values()) == 16
    admin = SimulatorAdmin(sim.url)
    assert_consistent(api, admin, env)


def test_async_replies_reach_the_process_whose_call_waits(sim, mn_proc):
    """Starts slower than replywithin (1 s) are answered by callback, each to the address of the
    process that sent the command."""
    from simulator.client import SimulatorAdmin

    spawn, _, db_url = mn_proc
    url = spawn(processes=2)
    _processes(url, 2)  # both serve (the second starts once the first is ready)
    api = ZStackClient(url)
    api.login()
    env = build_env(api, hosts=2, cpu=64)
    admin = SimulatorAdmin(sim.url)
    delivered = sim.tasks.delivered
    admin.inject("/vm/start", mode="slow", delay=1.3, count=-1)
    try:
        replies = _create(url, api.session, env, 8)
    finally:
        admin.clear_faults()
    assert all(r["inventory"]["state"] == "Running" for r in replies)
    assert sim.tasks.delivered - delivered >= 8  # every start came back by callback
    assert len(_job_owners(db_url)) == 2
    assert_consistent(api, admin, env)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError):
            pass
    return out


def test_a_killed_worker_is_restarted_and_its_jobs_recovered(sim, mn_proc):
    """SIGKILL one worker mid-creation: the supervisor starts it again, it rolls back and fails
    the jobs it was running, and the other worker's jobs carry on; nothing is left mid-flow."""
    from simulator.client import SimulatorAdmin

    spawn, procs, _ = mn_proc
    url = spawn(workers=4, processes=2)
    _processes(url, 2)
    api = ZStackClient(url)
    api.login()
    env = build_env(api, hosts=3, cpu=64)
    admin = SimulatorAdmin(sim.url)
    slow_creation(admin)
    before = set(_children(procs[-1].pid))
    assert len(before) == 2
    try:
        def submit(i: int) -> str:
            return ZStackClient(url, api.session, maxsize=1).submit(
                "CreateVmInstance", name=unique(f"wk{i}"), instanceOfferingUuid=env.offering,
                imageUuid=env.image, l3NetworkUuids=[env.l3])["uuid"]

        with ThreadPoolExecutor(8) as pool:
            jobs = list(pool.map(submit, range(30)))
        deadline = time.time() + 60
        while len(api.query("QueryVmInstance", f"zoneUuid={env.zone}", "state=Running")) < 4:
            assert time.time() < deadline, "VM creation made no progress"
            time.sleep(0.05)
        victim = max(before)  # the worker started last: worker 1
        os.kill(victim, signal.SIGKILL)
        deadline = time.time() + 60
        while not (set(_children(procs[-1].pid)) - before):
            assert time.time() < deadline, "the killed worker was not restarted"
            time.sleep(0.1)
    finally:
        admin.clear_faults()
    _processes(url, 2)
    http = urllib3.PoolManager()
    interrupted = 0
    for j in jobs:  # every job ends: succeeded, or failed by the restarted worker's recovery
        r = http.request("GET", f"{url}/zstack/api/result/{j}?wait=30", headers={"Connection": "close"})
        assert r.status == 200 and b'"Processing"' not in r.data, r.data
        interrupted += b"restarted while" in r.data
    assert interrupted, "the kill should have interrupted some creations"
    assert procs[-1].poll() is None  # the MN itself kept running
    assert_consistent(api, admin, env)


def test_fewer_processes_after_a_restart_leave_no_stale_management_node(mn_proc):
    spawn, procs, _ = mn_proc
    url = spawn(processes=2)
    both = _processes(url, 2)
    procs[-1].send_signal(signal.SIGTERM)  # a clean stop of the supervisor stops both workers
    assert procs[-1].wait(60) == 0
    url = spawn(processes=1)
    api = ZStackClient(url)
    api.login()
    listed = {m["uuid"] for m in api.query("QueryManagementNode")}
    assert both[0] in listed and both[1] not in listed


def _fresh(url: str, session: str | None = None) -> ZStackClient:
    """A client of its own connection: the kernel may hand it to any process."""
    return ZStackClient(url, session, maxsize=1)


def test_log_out_takes_effect_at_once_in_every_process(mn_proc):
    """Issue 13, finding 3: no process keeps serving a session after LogOut (sessions were cached
    10 s per process: most calls after a LogOut still succeeded)."""
    spawn, _, _ = mn_proc
    url = spawn(processes=3)
    _processes(url, 3)
    api = ZStackClient(url)
    session = api.login()
    for _ in range(30):  # every process has served (and, before, cached) this session
        assert _fresh(url, session).query("QueryZone") is not None
    _fresh(url, session).call("LogOut", sessionUuid=session)
    codes = []
    for _ in range(30):
        try:
            _fresh(url, session).query("QueryZone")
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.code)
    assert codes == ["ID.1001"] * 30, codes


def test_a_global_config_change_reaches_every_process_at_once(mn_proc):
    """UpdateGlobalConfig through one process: the next calls on every process use the new value
    (here identity/session.timeout, which LogInByAccount reads from the process's cache; it was
    reloaded every 5 s)."""
    spawn, _, _ = mn_proc
    url = spawn(processes=3)
    _processes(url, 3)
    api = ZStackClient(url)
    api.login()
    for value in (1234, 4321):
        _fresh(url, api.session).call("UpdateGlobalConfig", category="identity", name="session.timeout",
                                      value=str(value))
        for _ in range(20):
            inv = _fresh(url).call("LogInByAccount", accountName="admin",
                                   password=hashlib.sha512(b"password").hexdigest())["inventory"]
            lives = _parse(inv["expiredDate"]) - _parse(inv["createDate"])
            assert abs(lives.total_seconds() - value) < 5, (value, inv)
