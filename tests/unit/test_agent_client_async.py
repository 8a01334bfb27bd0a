"""The MN's AgentClient in the async form, against a real HTTP agent on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kvmagent.protocol import EchoCmd, StartVmCmd
from mn.agent import AgentClient
from mn.errors import AGENT_ERROR, TIMEOUT, ApiError


class _Agent(BaseHTTPRequestHandler):
    """Answers async requests at once, then POSTs `reply` to the callback (unless `silent`)."""

    reply: dict = {"success": True, "vncPort": 5901}
    silent = False
    seen: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        task, callback = self.headers.get("taskuuid"), self.headers.get("callbackurl")
        type(self).seen.append((self.path, task, json.loads(body)))
        out = json.dumps({"success": True, "async": True} if task else {"success": True}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        if task and not self.silent:
            threading.Thread(target=self._deliver, args=(callback, task), daemon=True).start()

    def _deliver(self, callback: str, task: str) -> None:
        import urllib.request

        req = urllib.request.Request(callback, data=json.dumps(self.reply).encode(), method="POST",
                                     headers={"taskuuid": task})
        urllib.request.urlopen(req, timeout=5).read()


@pytest.fixture
def agent_and_client():
    client_box: list[AgentClient] = []

    class Callback(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            ok = client_box[0].complete(self.headers["taskuuid"], body)
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    agent = ThreadingHTTPServer(("127.0.0.1", 0), _Agent)
    mn = ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    for srv in (agent, mn):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    client = AgentClient(timeout=2, callback_url=lambda: f"http://127.0.0.1:{mn.server_port}/agent/callback")
    client_box.append(client)
    _Agent.seen, _Agent.silent, _Agent.reply = [], False, {"success": True, "vncPort": 5901}
    yield f"http://127.0.0.1:{agent.server_port}", client
    agent.shutdown()
    mn.shutdown()


def _start_cmd() -> dict:
    return {"vmInstanceUuid": "v", "vmName": "n", "cpuNum": 1, "memory": 1,
            "rootVolume": {"volumeUuid": "r", "installPath": "/x"}}


def test_long_command_goes_async_and_gets_the_callback_reply(agent_and_client):
    url, client = agent_and_client
    reply = client.call(url, StartVmCmd.PATH, _start_cmd())
    assert reply["vncPort"] == 5901
    path, task, _ = _Agent.seen[-1]
    assert path == StartVmCmd.PATH and task
    assert client._waiters == {}


def test_short_command_stays_synchronous(agent_and_client):
    url, client = agent_and_client
    client.call(url, EchoCmd.PATH, {})
    assert _Agent.seen[-1][1] is None


def test_async_failure_reply_is_an_agent_error(agent_and_client):
    url, client = agent_and_client
    _Agent.reply = {"success": False, "error": "libvirt: domain exists"}
    with pytest.raises(ApiError) as e:
        client.call(url, StartVmCmd.PATH, _start_cmd())
    assert e.value.code == AGENT_ERROR and "domain exists" in str(e.value)


def test_missing_callback_times_out_and_forgets_the_task(agent_and_client):
    url, client = agent_and_client
    _Agent.silent = True
    with pytest.raises(ApiError) as e:
        client.call(url, StartVmCmd.PATH, _start_cmd(), timeout=0.5)
    assert e.value.code == TIMEOUT
    assert client._waiters == {}
    assert client.complete(_Agent.seen[-1][1], {"success": True}) is False


def test_abort_waiting_fails_the_waiting_call_at_once(agent_and_client):
    url, client = agent_and_client
    _Agent.silent = True
    out: list = []

    def call():
        try:
            client.call(url, StartVmCmd.PATH, _start_cmd(), timeout=30)
        except ApiError as exc:
            out.append(exc)

    t = threading.Thread(target=call)
    t.start()
    while not client._waiters:
        threading.Event().wait(0.01)
    assert client.abort_waiting("the management node is stopping") == 1
    t.join(5)
    assert not t.is_alive() and "stopping" in str(out[0])
