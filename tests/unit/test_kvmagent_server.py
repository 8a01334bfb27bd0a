"""The agent's HTTP server (sync and async forms, over real loopback HTTP), its config, the host
facts parsers and the event filter. No libvirt here: commands that need it are the system tier's."""

from __future__ import annotations

import http.server
import json
import queue
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvmagent import auth, events, host
from kvmagent import config as agent_config
from kvmagent import protocol as p
from kvmagent.server import AgentServer, serve

KEY = bytes(range(32))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AgentServer]:
    auth.write_key_file(tmp_path / "agent.key", KEY)
    cfg = agent_config.AgentConfig(host="127.0.0.1", port=0, acceleration="tcg", state_dir=str(tmp_path / "state"),
                                   console_log_dir=str(tmp_path / "console"), key_file=str(tmp_path / "agent.key"))
    s = serve(cfg)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield s
    s.shutdown()
    s.server_close()


def url(s: AgentServer, path: str) -> str:
    return f"http://127.0.0.1:{s.server_address[1]}{path}"


def post(s: AgentServer, path: str, body: Any, headers: dict[str, str] | None = None,
         key: bytes | None = KEY) -> tuple[int, dict[str, Any]]:
    """POST, signed with `key` as the MN does (None: unsigned)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = dict(headers or {})
    if key is not None:
        headers.update(auth.sign(key, "POST", path, data, headers))
    return raw_post(s, path, data, headers)


def raw_post(s: AgentServer, path: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url(s, path), data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class _Callback(http.server.BaseHTTPRequestHandler):
    """An MN stand-in: records the replies it gets, each only if signed with the agent's key."""

    got: queue.Queue[tuple[str | None, dict[str, Any]]]
    verifier = auth.Verifier()

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.verifier.verify(KEY, "POST", self.path, raw, self.headers.get)  # raises (no reply) when forged
        type(self).got.put((self.headers.get("taskuuid"), json.loads(raw)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def callback() -> Iterator[tuple[str, queue.Queue[tuple[str | None, dict[str, Any]]]]]:
    handler = type("Cb", (_Callback,), {"got": queue.Queue()})
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{s.server_address[1]}/callback", handler.got
    s.shutdown()
    s.server_close()


def test_every_protocol_command_has_a_handler(server: AgentServer) -> None:
    from kvmagent.registry import COMMANDS

    assert set(p.COMMANDS) <= set(COMMANDS)


def test_sync_commands_and_errors(server: AgentServer) -> None:
    assert post(server, p.EchoCmd.PATH, {}) == (200, {"success": True, "error": None})
    status, r = post(server, p.PingCmd.PATH, {"hostUuid": "h"})
    assert status == 200 and r == {"success": True, "error": None, "hostUuid": None}  # not connected yet
    status, r = post(server, p.PingCmd.PATH, {})
    assert not r["success"] and "missing required field hostUuid" in r["error"]
    status, r = post(server, p.StartVmCmd.PATH, {"vmInstanceUuid": "v", "vmName": "n", "cpuNum": "2",
                                                 "memory": 1, "rootVolume": {"volumeUuid": "r", "installPath": "/r"}})
    assert not r["success"] and "cpuNum must be int" in r["error"]
    status, r = post(server, "/no/such", {})
    assert status == 404 and "not a command" in r["error"]
    status, r = post(server, p.EchoCmd.PATH, b"{not json")
    assert status == 400 and "not JSON" in r["error"]


def test_a_start_with_bad_input_fails_before_libvirt(server: AgentServer) -> None:
    status, r = post(server, p.StartVmCmd.PATH, {"vmInstanceUuid": "v", "vmName": "n", "cpuNum": 0, "memory": 1,
                                                 "rootVolume": {"volumeUuid": "r", "installPath": "/r"}})
    assert status == 200 and r["success"] is False and "cpuNum must be a positive integer" in r["error"]


def test_async_form_posts_the_reply_to_the_callback(server: AgentServer, callback: Any) -> None:
    cb_url, got = callback
    status, r = post(server, p.EchoCmd.PATH, {}, {"taskuuid": "t-1", "callbackurl": cb_url})
    assert status == 200 and r == {"success": True, "async": True, "taskUuid": "t-1"}
    assert got.get(timeout=10) == ("t-1", {"success": True, "error": None})
    # a failing command: the failure goes to the callback too, with the agent's message
    status, r = post(server, p.StopVmCmd.PATH, {"uuid": "v", "type": "sideways"},
                     {"taskuuid": "t-2", "callbackurl": cb_url})
    assert r["async"] is True
    task, reply = got.get(timeout=10)
    assert task == "t-2" and reply["success"] is False and "stop type 'sideways'" in reply["error"]


def test_unsigned_forged_stale_and_replayed_commands_are_refused_before_they_run(server: AgentServer) -> None:
    body = json.dumps({"uuid": "vm-1", "hostUuid": "h"}).encode()
    status, r = raw_post(server, p.DestroyVmCmd.PATH, body, {})
    assert status == 401 and r["success"] is False and r["code"] == "ID.1000" and "not signed" in r["error"]
    status, r = post(server, p.DestroyVmCmd.PATH, {"uuid": "vm-1"}, key=bytes(32))  # another agent's key
    assert status == 401 and "signature does not match" in r["error"]
    old = auth.sign(KEY, "POST", p.EchoCmd.PATH, b"{}", now=1_000_000.0)
    status, r = raw_post(server, p.EchoCmd.PATH, b"{}", old)
    assert status == 401 and "timestamp" in r["error"]
    signed = auth.sign(KEY, "POST", p.EchoCmd.PATH, b"{}")
    assert raw_post(server, p.EchoCmd.PATH, b"{}", signed) == (200, {"success": True, "error": None})
    status, r = raw_post(server, p.EchoCmd.PATH, b"{}", signed)
    assert status == 401 and "replayed" in r["error"]
    tampered = auth.sign(KEY, "POST", p.EchoCmd.PATH, b"{}")
    status, r = raw_post(server, p.PingCmd.PATH, b"{}", tampered)  # signed for another path
    assert status == 401 and "signature" in r["error"]


def test_health_reports_the_key_fingerprint_only(server: AgentServer) -> None:
    with urllib.request.urlopen(url(server, "/health"), timeout=5) as r:
        health = json.loads(r.read())
    assert health["keyId"] == auth.key_id(KEY) and KEY.hex() not in json.dumps(health)


def test_an_agent_without_a_key_refuses_every_command(tmp_path: Path) -> None:
    cfg = agent_config.AgentConfig(host="127.0.0.1", port=0, state_dir=str(tmp_path), key_file=str(tmp_path / "none"))
    s = serve(cfg)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        status, r = post(s, p.EchoCmd.PATH, {})
        assert status == 401 and "has no key" in r["error"]
    finally:
        s.shutdown()
        s.server_close()


def test_connect_is_remembered_across_restarts(tmp_path: Path) -> None:
    cfg = agent_config.AgentConfig(port=0, host="127.0.0.1", state_dir=str(tmp_path))
    first = serve(cfg)
    first.server_close()
    first.agent.remember("h1", "http://mn/events")  # type: ignore[attr-defined]
    again = serve(cfg)
    again.server_close()
    assert (again.agent.host_uuid, again.agent.mn_url) == ("h1", "http://mn/events")  # type: ignore[attr-defined]


def test_config_file_env_and_flags(tmp_path: Path) -> None:
    f = tmp_path / "kvmagent.properties"
    f.write_text("# comment\nport = 7171\nacceleration=tcg\n")
    cfg = agent_config.load(str(f), env={"ZSTACK_AGENT_CONSOLE_LOG_DIR": "/c"}, state_dir="/s")
    assert (cfg.port, cfg.acceleration, cfg.domain_type, cfg.console_log_dir, cfg.state_dir) == (
        7171, "tcg", "qemu", "/c", "/s")
    assert agent_config.load(str(tmp_path / "absent"), env={}).domain_type == "kvm"
    assert agent_config.load(str(tmp_path / "absent"), env={}).host == "127.0.0.1"  # not every address
    f.write_text("colour = blue\n")
    with pytest.raises(ValueError, match="unknown settings"):
        agent_config.load(str(f), env={})
    with pytest.raises(ValueError, match="acceleration"):
        agent_config.AgentConfig(acceleration="hvf")


# ---- host facts parsers --------------------------------------------------------------------------

def test_cpuinfo_and_meminfo_parsers() -> None:
    text = ("processor\t: 0\nmodel name\t: Xeon X\ncpu MHz\t\t: 2793.436\nphysical id\t: 0\n\n"
            "processor\t: 1\nmodel name\t: Xeon X\ncpu MHz\t\t: 2800.000\nphysical id\t: 1\n")
    assert host.cpuinfo(text) == ("Xeon X", 2, 2793)
    assert host.cpuinfo("processor : 0\n") == (None, 1, 0)
    assert host.total_memory("MemTotal:       24684100 kB\nMemFree: 1 kB\n") == 24684100 * 1024
    with pytest.raises(ValueError):
        host.total_memory("MemFree: 1 kB\n")


def test_os_release(tmp_path: Path) -> None:
    f = tmp_path / "os-release"
    f.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')
    assert host.os_release(str(f))["VERSION_ID"] == "12" and host.os_release(str(f))["ID"] == "debian"
    assert host.os_release(str(tmp_path / "none")) == {}


# ---- lifecycle events ----------------------------------------------------------------------------

def test_event_translation() -> None:
    assert events.translate(5, 0) == (p.VM_STOPPED, "the guest shut down")
    assert events.translate(5, 2) == (p.VM_STOPPED, "the guest crashed")
    assert events.translate(5, 3) is None  # migrated away: the MN moved it
    assert events.translate(2, 1) is None  # migrated in
    assert events.translate(3, 2) == (p.VM_PAUSED, "paused on a disk I/O error")
    assert events.translate(4, 0)[0] == p.VM_RUNNING
    assert events.translate(6, 1) is None  # shutting down: STOPPED follows
    assert events.translate(0, 0) is None  # defined


class _RecordingAgent:
    """Just enough of an Agent for the event filter: a host uuid and a report() that records."""

    def __init__(self, host_uuid: str | None) -> None:
        self.host_uuid = host_uuid
        self.reported: list[p.HostEvent] = []

    def report(self, event: p.HostEvent) -> bool:
        self.reported.append(event)
        return True


def test_only_changes_the_agent_did_not_cause_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    a = _RecordingAgent("h1")
    m = events.Monitor(a)
    m.remember("vm1", "h1")
    m.remember("other", "h2")  # another agent's VM on a shared libvirt
    with m.caused("vm1", p.VM_PAUSED):
        m._handle("vm1", 3, 0)  # during the agent's own pause
    m._handle("vm1", 3, 0)  # trailing event of that pause, within the grace period
    assert a.reported == []
    m._handle("vm1", 5, 1)  # destroyed behind the agent's back, just after its pause
    m._handle("other", 5, 0)
    assert [(e.hostUuid, e.vmUuid, e.state, e.reason) for e in a.reported] == [
        ("h1", "vm1", p.VM_STOPPED, "destroyed outside the agent")]
    assert "vm1" not in m.known  # a stopped VM is forgotten
    monkeypatch.setattr(events, "GRACE", 0.0)
    m.remember("vm1", "h1")
    with m.caused("vm1", p.VM_PAUSED):
        pass
    m._handle("vm1", 3, 0)  # the grace period is over: a new pause is someone else's
    assert a.reported[-1].state == p.VM_PAUSED


def test_nothing_is_reported_before_the_agent_is_connected() -> None:
    a = _RecordingAgent(None)
    m = events.Monitor(a)
    m.remember("vm1", None)
    m._handle("vm1", 5, 0)
    assert a.reported == []


def test_reply_within_answers_a_quick_command_inline(server: AgentServer, callback: Any) -> None:
    cb_url, got = callback
    status, r = post(server, p.EchoCmd.PATH, {}, {"taskuuid": "t-3", "callbackurl": cb_url, "replywithin": "5"})
    assert status == 200 and r == {"success": True, "error": None}  # inline: no callback follows
    status, r = post(server, p.StopVmCmd.PATH, {"uuid": "v", "type": "sideways"},
                     {"taskuuid": "t-4", "callbackurl": cb_url, "replywithin": "5"})
    assert r["success"] is False and "stop type 'sideways'" in r["error"]
    status, r = post(server, p.EchoCmd.PATH, {}, {"taskuuid": "t-5", "callbackurl": cb_url, "replywithin": "x"})
    assert r["async"] is True and got.get(timeout=10)[0] == "t-5"  # not a number: the async form
    assert got.empty()
