"""simulator.http_server (cheroot): HTTP/1.1 on loopback, a port shared by two servers, and stops
that are prompt with clients connected and let a request in the app send its reply."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from simulator.http_server import WSGIServer


def _app(release: threading.Event, tag: str = ""):
    """Answers the request as JSON; /sleep waits for `release` first, /boom raises."""

    def app(environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if environ["PATH_INFO"] == "/sleep":
            release.wait(5)
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        out = json.dumps({"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
                          "query": environ["QUERY_STRING"], "body": body.decode(),
                          "task": environ.get("HTTP_TASKUUID"), "tag": tag}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
        return [out]

    return app


@pytest.fixture
def server() -> Iterator[tuple[WSGIServer, threading.Event]]:
    release = threading.Event()
    s = WSGIServer(threads=4, idle_timeout=30, ident="zstack-test")
    s.start(_app(release))
    yield s, release
    release.set()
    s.stop()


def _conn(port: int, timeout: float = 5) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def _get(c: http.client.HTTPConnection, path: str = "/x") -> dict:
    c.request("GET", path)
    return json.loads(c.getresponse().read())


def test_keep_alive_requests_with_bodies_queries_and_headers(server) -> None:
    s, _ = server
    c = _conn(s.port)
    for i in range(3):  # one connection, three requests
        c.request("POST", f"/hosts/h{i}/ping?x=1&y=%20", body=json.dumps({"i": i}), headers={"taskuuid": "t"})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Server") == "zstack-test" and r.getheader("Connection") is None
        assert json.loads(r.read()) == {"method": "POST", "path": f"/hosts/h{i}/ping", "query": "x=1&y=%20",
                                        "body": f'{{"i": {i}}}', "task": "t", "tag": ""}
    assert _get(c, "/a%20b")["path"] == "/a b"
    c.close()


def test_app_failure_is_a_500_and_a_too_large_body_a_413() -> None:
    s = WSGIServer(max_body=10)
    s.start(_app(threading.Event()))
    try:
        c = _conn(s.port)
        c.request("GET", "/boom")
        r = c.getresponse()
        assert r.status == 500
        r.read()
        c.close()
        c = _conn(s.port)
        c.request("POST", "/x", body=b"x" * 11)
        assert c.getresponse().status == 413
        c.close()
    finally:
        s.stop()


def test_stop_is_prompt_with_idle_keep_alive_connections(server) -> None:
    s, _ = server
    idle = []
    for _ in range(5):
        c = _conn(s.port)
        _get(c)
        idle.append(c)  # kept open, as a client's connection pool does
    t0 = time.monotonic()
    s.stop(timeout=5)
    assert time.monotonic() - t0 < 1.5
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
    for c in idle:
        with pytest.raises((http.client.HTTPException, OSError)):
            _get(c)


def test_stop_lets_a_request_in_the_app_send_its_reply(server) -> None:
    s, release = server
    c = _conn(s.port)
    c.request("GET", "/sleep")
    time.sleep(0.2)  # the request is in the app
    stopper = threading.Thread(target=s.stop, kwargs={"timeout": 5})
    stopper.start()
    time.sleep(0.3)
    assert stopper.is_alive()  # waiting for the request
    release.set()
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Connection") == "close"
    assert json.loads(r.read())["path"] == "/sleep"
    stopper.join(5)
    assert not stopper.is_alive()


def test_stop_from_several_threads_more_than_once_and_before_start() -> None:
    before = set(threading.enumerate())
    s = WSGIServer()
    s.start(_app(threading.Event()))
    assert all(t.daemon for t in set(threading.enumerate()) - before)  # none holds the process up
    assert _get(_conn(s.port))["path"] == "/x"
    stoppers = [threading.Thread(target=s.stop, kwargs={"timeout": 2}) for _ in range(3)]
    t0 = time.monotonic()
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join(5)
    s.stop()
    assert time.monotonic() - t0 < 2 and not any(t.is_alive() for t in stoppers)
    never = WSGIServer()  # bound, never started
    never.stop()
    never.stop()
    with pytest.raises(RuntimeError):
        never.start(_app(threading.Event()))


def test_a_stop_bounded_while_a_request_stays_in_the_app(server) -> None:
    s, release = server
    c = _conn(s.port)
    c.request("GET", "/sleep")
    time.sleep(0.2)
    t0 = time.monotonic()
    s.stop(timeout=0.5)  # the request holds on (until `release`): the stop gives up waiting
    assert time.monotonic() - t0 < 3
    release.set()
    c.close()


def test_two_servers_share_a_port_with_reuse_port() -> None:
    first = WSGIServer(threads=2)
    port = first.port
    first.stop()  # a free port known to be bindable
    a = WSGIServer(port=port, reuse_port=True)
    b = WSGIServer(port=port, reuse_port=True)  # SO_REUSEPORT: a second listener on the port
    own = WSGIServer()
    for s, tag in ((a, "a"), (b, "b"), (own, "own")):
        s.start(_app(threading.Event(), tag))
    try:
        assert b.port == port and own.port != port
        seen = set()
        for _ in range(50):  # the kernel spreads new connections over both
            c = _conn(port)
            seen.add(_get(c)["tag"])
            c.close()
            if seen == {"a", "b"}:
                break
        assert seen == {"a", "b"}
        assert _get(_conn(own.port))["tag"] == "own"
        with pytest.raises(OSError):
            WSGIServer(port=port)  # without SO_REUSEPORT the port is taken
    finally:
        for s in (a, b, own):
            s.stop()
