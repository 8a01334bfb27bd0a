"""Host tracker: the ping decision, bulk status changes and what a round writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from mn import extensions
from mn.config import MNConfig
from mn.context import Services
from mn.db.base import Base
from mn.db.engine import Database
from mn.errors import AGENT_UNREACHABLE, ApiError
from mn.globalconfig import HOST_PING_FAILURES, HOST_PING_INTERVAL, GlobalConfigStore
from mn.models import Cluster, Host, Zone
from mn.services import host_tracker
from mn.services.host_tracker import DISCONNECT, MISSED, NOT_CONNECTED, OK, RECONNECT, HostTracker, decide


@pytest.mark.parametrize(("status", "ping", "failures", "max_failures", "expected"), [
    ("Connected", OK, 0, 1, (None, 0)),
    ("Connected", OK, 2, 3, (None, 0)),              # an answer resets the count
    ("Connected", MISSED, 0, 1, (DISCONNECT, 0)),
    ("Connected", MISSED, 0, 3, (None, 1)),
    ("Connected", MISSED, 2, 3, (DISCONNECT, 0)),
    ("Connected", NOT_CONNECTED, 2, 3, (RECONNECT, 0)),  # a restarted agent: connect it again
    ("Disconnected", OK, 0, 1, (RECONNECT, 0)),
    ("Disconnected", NOT_CONNECTED, 0, 1, (RECONNECT, 0)),
    ("Disconnected", MISSED, 0, 1, (None, 0)),
    ("Connecting", OK, 0, 1, (None, 0)),
    ("Connecting", MISSED, 0, 1, (None, 0)),
])
def test_decide(status: str, ping: str, failures: int, max_failures: int, expected: tuple) -> None:
    assert decide(status, ping, failures, max_failures) == expected


class FakeAgents:
    """Answers pings for the hosts in `up` (as another host for those in `wrong_uuid`); counts calls."""

    def __init__(self) -> None:
        self.up: set[str] = set()
        self.calls = 0
        self.wrong_uuid: set[str] = set()

    def call(self, url: str, path: str, cmd: dict[str, Any] | None = None, timeout: float | None = None,
             ) -> dict[str, Any]:
        self.calls += 1
        uuid = url.rsplit("/", 1)[-1]
        if uuid in self.wrong_uuid:
            return {"success": True, "hostUuid": "f" * 32}
        if uuid not in self.up:
            raise ApiError(AGENT_UNREACHABLE, f"unable to reach {url}")
        return {"success": True, "hostUuid": uuid}


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    db = Database(f"sqlite:///{tmp_path / 't.db'}")
    Base.metadata.create_all(db.engine)
    gconf = GlobalConfigStore(db)
    gconf.init()
    services = Services(config=MNConfig(home=tmp_path, db_url=db.url), db=db, agents=FakeAgents(),  # type: ignore[arg-type]
                        gconf=gconf, mn_uuid="m" * 32)
    with db.tx() as s:
        s.add(Zone(uuid="z" * 32, name="z"))
        s.flush()
        s.add(Cluster(uuid="c" * 32, name="c", zoneUuid="z" * 32, hypervisorType="Simulator"))
    yield services
    db.dispose()


def _hosts(svc: Services, n: int, status: str = "Connected", prefix: str = "") -> list[str]:
    uuids = [f"{prefix}{i:0{32 - len(prefix)}x}" for i in range(n)]
    with svc.db.tx() as s:
        for u in uuids:
            s.add(Host(uuid=u, name=u, zoneUuid="z" * 32, clusterUuid="c" * 32, managementIp=u,
                       hypervisorType="Simulator", status=status, agentUrl=f"http://sim/hosts/{u}"))
    return uuids


def _status(svc: Services, uuid: str) -> str:
    with svc.db.ro() as s:
        return s.get(Host, uuid).status


@pytest.fixture
def writes(svc: Services) -> list[str]:
    seen: list[str] = []

    @event.listens_for(svc.db.engine, "before_cursor_execute")
    def _rec(conn, cursor, statement, params, context, executemany):  # noqa: ANN001, ARG001
        if statement.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE")):
            seen.append(statement)

    return seen


@pytest.fixture
def reconnects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(host_tracker, "reconnect_host",
                        lambda ctx, uuid, claimed=False: calls.append((uuid, claimed)))
    return calls


@pytest.fixture
def disconnected_hooks() -> Iterator[list[str]]:
    calls: list[str] = []

    def hook(ctx: Any, uuid: str) -> None:
        calls.append(uuid)

    extensions.HOST_DISCONNECTED.register(hook)
    yield calls
    extensions.HOST_DISCONNECTED.unregister(hook)


def test_healthy_round_writes_nothing(svc: Services, writes: list[str], reconnects: list) -> None:
    uuids = _hosts(svc, 50)
    svc.agents.up.update(uuids)
    writes.clear()
    t = HostTracker(svc, ping_workers=4)
    r = t.run_round(wait_reconnects=True)
    assert r.pinged == 50 and not r.disconnected and not r.reconnecting
    assert svc.agents.calls == 50
    assert writes == []
    t.close()


def test_missed_pings_disconnect_in_bulk(svc: Services, disconnected_hooks: list[str],
                                         reconnects: list) -> None:
    uuids = _hosts(svc, 1200)  # more than one CAS batch
    up = set(uuids[::2])
    svc.agents.up.update(up)
    t = HostTracker(svc, ping_workers=8)
    r = t.run_round(wait_reconnects=True)
    down = sorted(set(uuids) - up)
    assert sorted(r.disconnected) == down
    assert sorted(disconnected_hooks) == down
    assert _status(svc, down[0]) == "Disconnected" and _status(svc, uuids[0]) == "Connected"
    # Disconnected hosts that stay down: nothing more happens
    r = t.run_round(wait_reconnects=True)
    assert not r.disconnected and not r.reconnecting
    t.close()


def test_max_failure_counts_consecutive_misses(svc: Services, reconnects: list) -> None:
    [u] = _hosts(svc, 1)
    svc.gconf.set_cached(HOST_PING_FAILURES, "3")
    t = HostTracker(svc, ping_workers=2)
    assert not t.run_round().disconnected
    assert not t.run_round().disconnected
    svc.agents.up.add(u)                          # one answer resets the count
    assert not t.run_round().disconnected
    svc.agents.up.clear()
    assert not t.run_round().disconnected
    assert not t.run_round().disconnected
    assert t.run_round().disconnected == [u]
    assert _status(svc, u) == "Disconnected"
    t.close()


def test_answering_disconnected_host_is_claimed_and_reconnected(svc: Services, reconnects: list) -> None:
    down = _hosts(svc, 3, status="Disconnected")
    svc.agents.up.update(down[:2])
    t = HostTracker(svc, ping_workers=2)
    r = t.run_round(wait_reconnects=True)
    assert sorted(r.reconnecting) == sorted(down[:2])
    assert sorted(reconnects) == sorted((u, True) for u in down[:2])
    assert _status(svc, down[0]) == "Connecting"  # claimed; the (faked) flow would finish it
    assert _status(svc, down[2]) == "Disconnected"
    t.close()


def test_restarted_agent_of_connected_host_is_reconnected(svc: Services, reconnects: list) -> None:
    a, b = _hosts(svc, 2)
    svc.agents.up.update([a, b])
    svc.agents.wrong_uuid.add(a)       # answers, but not as host `a`: its agent was restarted
    t = HostTracker(svc, ping_workers=1)
    r = t.run_round(wait_reconnects=True)
    assert r.reconnecting == [a] and not r.disconnected
    assert reconnects == [(a, True)]
    assert _status(svc, a) == "Connecting" and _status(svc, b) == "Connected"
    t.close()


def test_connecting_hosts_are_not_pinged_and_stale_ones_released(svc: Services, reconnects: list) -> None:
    [u] = _hosts(svc, 1, status="Connecting")
    t = HostTracker(svc, ping_workers=1)
    assert t.run_round().pinged == 0
    assert _status(svc, u) == "Connecting"
    svc.config.agent_timeout = -100  # every Connecting host is now older than a connect can last
    t.run_round()
    assert _status(svc, u) == "Disconnected"
    t.close()


def test_bulk_cas_only_moves_rows_in_expected_status(svc: Services) -> None:
    a = _hosts(svc, 2, prefix="a")
    b = _hosts(svc, 2, status="Disconnected", prefix="b")
    t = HostTracker(svc, ping_workers=1)
    assert sorted(t.bulk_cas(a + b, "Connected", "Disconnected")) == sorted(a)
    assert t.bulk_cas(a, "Connected", "Disconnected") == []
    t.close()


def test_rounds_follow_the_interval_config(svc: Services) -> None:
    t = HostTracker(svc, ping_workers=1)
    svc.gconf.set_cached(HOST_PING_INTERVAL, "3600")
    assert t.due()  # the first round runs at once after a start, whatever the interval
    t.run_round()
    assert not t.due()
    svc.gconf.set_cached(HOST_PING_INTERVAL, "1")
    t.last_round -= 1
    assert t.due()
    t.close()
