"""Fault rules: validation, matching, counting, and how serve_command applies them (no HTTP)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from simulator.dispatch import HOSTS, serve_command
from simulator.faults import FaultTable
from simulator.state import SimState


@pytest.mark.parametrize("kwargs, message", [
    ({"path": "/vm/starts"}, "not a protocol command path"),
    ({"path": "/nothing/*"}, "matches no protocol command"),
    ({"path": ""}, "protocol path"),
    ({"path": None}, "protocol path"),
    ({"path": "/vm/start", "mode": "explode"}, "mode must be one of"),
    ({"path": "/vm/start", "count": 0}, "count must be"),
    ({"path": "/vm/start", "count": -2}, "count must be"),
    ({"path": "/vm/start", "count": True}, "count must be"),
    ({"path": "/vm/start", "count": "1"}, "count must be"),
    ({"path": "/vm/start", "delay": -1}, "delay must be"),
    ({"path": "/vm/start", "target": 5}, "target must be"),
    ({"path": "/vm/start", "message": 5}, "message must be"),
])
def test_invalid_rules_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultTable().add(**kwargs)


def test_default_delays() -> None:
    t = FaultTable()
    assert t.add("/vm/start", mode="timeout").delay == 30.0
    assert t.add("/vm/start", mode="slow").delay == 1.0
    assert t.add("/vm/start", mode="slow", delay=0.25).delay == 0.25
    assert t.add("/vm/start").delay == 0.0


def test_matching_exact_prefix_all_and_target() -> None:
    t = FaultTable()
    t.add("/vm/start", target="h1", count=-1)
    t.add("/network/*", count=-1)
    t.add("*", target="h9", count=-1)
    assert t.take("/vm/start", "h1") is not None
    assert t.take("/vm/start", "h2") is None
    assert t.take("/vm/stop", "h1") is None
    assert t.take("/network/l2/checkbridge", "h5") is not None
    assert t.take("/host/ping", "h9") is not None
    assert t.take("/host/ping", "h8") is None


def test_count_consumes_and_removes() -> None:
    t = FaultTable()
    f = t.add("/host/ping", count=2)
    assert t.take("/host/ping", "h") is f and f.count == 1
    assert t.take("/host/ping", "h") is f and f.count == 0
    assert t.take("/host/ping", "h") is None and len(t) == 0 and f.hits == 2
    forever = t.add("/host/ping", count=-1)
    for _ in range(5):
        assert t.take("/host/ping", "h") is forever
    assert forever.count == -1 and forever.hits == 5 and len(t) == 1


def test_first_added_rule_wins() -> None:
    t = FaultTable()
    first = t.add("/vm/*", mode="slow")
    second = t.add("/vm/start", mode="fail")
    assert t.take("/vm/start", "h") is first
    assert t.take("/vm/start", "h") is second


def test_list_remove_clear() -> None:
    t = FaultTable()
    a = t.add("/vm/start", target="h1", message="boom")
    b = t.add("/vm/stop", mode="error", count=3)
    assert [f["id"] for f in t.list()] == [a.id, b.id]
    assert t.list()[0] == {"id": a.id, "path": "/vm/start", "target": "h1", "mode": "fail", "count": 1,
                           "delay": 0.0, "message": "boom", "hits": 0}
    assert t.remove(a.id) is True and t.remove(a.id) is False
    assert t.clear() == 1 and t.list() == []


def test_count_is_exact_under_concurrency() -> None:
    t = FaultTable()
    t.add("/host/ping", count=100)
    taken: list[int] = []

    def worker() -> None:
        n = sum(1 for _ in range(200) if t.take("/host/ping", "h") is not None)
        taken.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(taken) == 100 and len(t) == 0


# ---- as serve_command applies them ------------------------------------------------------------

@pytest.fixture
def state() -> SimState:
    s = SimState()
    s.put_host("h1")
    return s


def echo(state: SimState) -> tuple[str, object, str]:
    status, body, ctype = serve_command(state, HOSTS, "h1", "/host/echo", b"{}")
    return status, (json.loads(body) if ctype.startswith("application/json") else body), ctype


def test_fail_mode_answers_failure_with_the_message(state: SimState) -> None:
    state.faults.add("/host/echo", message="disk on fire")
    assert echo(state)[:2] == ("200 OK", {"success": False, "error": "disk on fire"})
    assert echo(state)[1] == {"success": True, "error": None}
    state.faults.add("/host/echo")
    assert echo(state)[1]["error"] == "simulated failure of /host/echo on h1"
    assert state.stats()["failures"] == {"/host/echo": 2}


def test_error_mode_answers_500_not_json(state: SimState) -> None:
    state.faults.add("/host/echo", mode="error")
    status, body, ctype = echo(state)
    assert status.startswith("500") and ctype.startswith("text/plain") and b"simulated internal error" in body


def test_timeout_and_slow_modes_wait(state: SimState) -> None:
    state.faults.add("/host/echo", mode="timeout", delay=0.2)
    t0 = time.monotonic()
    _, reply, _ = echo(state)
    assert time.monotonic() - t0 >= 0.2 and reply["success"] is False and "simulated timeout" in reply["error"]
    state.faults.add("/host/echo", mode="slow", delay=0.2)
    t0 = time.monotonic()
    _, reply, _ = echo(state)
    assert time.monotonic() - t0 >= 0.2 and reply["success"] is True


def test_shutdown_wakes_a_sleeping_fault(state: SimState) -> None:
    state.faults.add("/host/echo", mode="timeout", delay=60)
    threading.Timer(0.1, state.stopping.set).start()
    t0 = time.monotonic()
    echo(state)
    assert time.monotonic() - t0 < 5


def test_faults_apply_even_to_unknown_targets_and_before_validation(state: SimState) -> None:
    state.faults.add("/host/ping", message="injected")
    status, body, _ = serve_command(state, HOSTS, "ghost", "/host/ping", b"not json")
    assert json.loads(body)["error"] == "injected"
    status, body, _ = serve_command(state, HOSTS, "ghost", "/host/ping", b"not json")
    assert status.startswith("400")
    status, body, _ = serve_command(state, HOSTS, "ghost", "/host/ping", b'{"hostUuid": "ghost"}')
    assert json.loads(body)["error"] == "no simulated host ghost"
