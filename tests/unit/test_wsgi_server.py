"""kvmagent.wsgi_server: HTTP/1.1 on loopback, and stops that are prompt with clients connected."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from kvmagent.wsgi_server import WSGIServer


def _echo(environ, start_response):
    """Answers the request as JSON; /sleep waits for the `release` event first."""
    body = environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/sleep":
        environ["test.release"].wait(5)
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("boom")
    out = json.dumps({"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
                      "query": environ["QUERY_STRING"], "body": body.decode(),
                      "length": environ.get("CONTENT_LENGTH"), "task": environ.get("HTTP_TASKUUID"),
                      "under": environ.get("HTTP_X_A")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [out[:5], out[5:]]  # no Content-Length from the app: the server adds it


@pytest.fixture
def server() -> Iterator[tuple[WSGIServer, threading.Event]]:
    release = threading.Event()

    def app(environ, start_response):
        environ["test.release"] = release
        return _echo(environ, start_response)

    s = WSGIServer(app, threads=4, idle_timeout=30)
    s.start()
    yield s, release
    release.set()
    s.stop()


def _conn(s: WSGIServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)


def test_keep_alive_requests_with_bodies_queries_and_headers(server) -> None:
    s, _ = server
    c = _conn(s)
    for i in range(3):  # one connection, three requests
        c.request("POST", f"/hosts/h{i}/ping?x=1&y=%20", body=json.dumps({"i": i}), headers={"taskuuid": "t"})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Length") is not None
        assert json.loads(r.read()) == {"method": "POST", "path": f"/hosts/h{i}/ping", "query": "x=1&y=%20",
                                        "body": f'{{"i": {i}}}', "length": str(len(f'{{"i": {i}}}')),
                                        "task": "t", "under": None}
    c.request("GET", "/a%2Fb%20c")
    assert json.loads(c.getresponse().read())["path"] == "/a/b c"
    c.close()


def test_chunked_body_head_and_underscored_headers(server) -> None:
    s, _ = server
    c = _conn(s)
    c.request("PUT", "/x", body=iter([b"ab", b"cd"]), headers={"Transfer-Encoding": "chunked", "X_A": "spoof"},
              encode_chunked=True)
    got = json.loads(c.getresponse().read())
    assert (got["body"], got["length"], got["under"]) == ("abcd", "4", None)
    c.request("HEAD", "/x")
    r = c.getresponse()
    assert r.status == 200 and int(r.getheader("Content-Length")) > 0 and r.read() == b""
    c.close()


def test_app_failure_is_a_500_and_a_too_large_body_a_413(server) -> None:
    s, _ = server
    c = _conn(s)
    c.request("GET", "/boom")
    r = c.getresponse()
    assert r.status == 500 and r.getheader("Connection") == "close"
    r.read()
    c.close()
    small = WSGIServer(_echo, max_body=10)
    small.start()
    try:
        c = http.client.HTTPConnection("127.0.0.1", small.port, timeout=5)
        c.request("POST", "/x", body=b"x" * 11)
        assert c.getresponse().status == 413
        c.close()
    finally:
        small.stop()


def test_stop_is_prompt_with_idle_keep_alive_connections(server) -> None:
    s, _ = server
    idle = []
    for _ in range(5):
        c = _conn(s)
        c.request("GET", "/x")
        c.getresponse().read()
        idle.append(c)  # kept open, as a client's connection pool does
    t0 = time.monotonic()
    s.stop(timeout=5)
    assert time.monotonic() - t0 < 1.5
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
    for c in idle:
        with pytest.raises((http.client.HTTPException, OSError)):
            c.request("GET", "/x")
            c.getresponse().read()


def test_stop_lets_a_request_being_served_send_its_reply(server) -> None:
    s, release = server
    c = _conn(s)
    c.request("GET", "/sleep")
    time.sleep(0.2)  # the request is in the app
    stopper = threading.Thread(target=s.stop, kwargs={"timeout": 5})
    stopper.start()
    time.sleep(0.2)
    release.set()
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Connection") == "close"
    assert json.loads(r.read())["path"] == "/sleep"
    stopper.join(5)
    assert not stopper.is_alive()


def test_several_listening_sockets_and_the_connection_limit() -> None:
    socks = []
    for _ in range(2):
        sock = socket.create_server(("127.0.0.1", 0))
        socks.append(sock)
    s = WSGIServer(_echo, sockets=socks, connection_limit=1)
    s.start()
    try:
        first = http.client.HTTPConnection("127.0.0.1", socks[0].getsockname()[1], timeout=5)
        first.request("GET", "/one")
        assert json.loads(first.getresponse().read())["path"] == "/one"
        second = http.client.HTTPConnection("127.0.0.1", socks[1].getsockname()[1], timeout=0.5)
        with pytest.raises(TimeoutError):  # the only connection slot is taken: not accepted yet
            second.request("GET", "/two")
            second.getresponse()
        first.close()
        second = http.client.HTTPConnection("127.0.0.1", socks[1].getsockname()[1], timeout=5)
        second.request("GET", "/two")
        assert json.loads(second.getresponse().read())["path"] == "/two"
        second.close()
    finally:
        s.stop()
