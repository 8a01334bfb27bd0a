"""kvmagent/auth.py: signatures over method, path, body and protocol headers; the clock window;
the nonce cache against replay; key derivation and key files."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from kvmagent import auth

KEY = bytes(range(32))
BODY = b'{"uuid": "vm-1"}'


def headers_of(signed: dict[str, str], extra: dict[str, str] | None = None):
    h = {k.lower(): v for k, v in {**signed, **(extra or {})}.items()}
    return lambda name: h.get(name.lower())


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_signed_request_passes_once() -> None:
    clock = Clock()
    v = auth.Verifier(clock=clock)
    signed = auth.sign(KEY, "POST", "/vm/destroy", BODY, now=clock.now)
    v.verify(KEY, "POST", "/vm/destroy", BODY, headers_of(signed))
    with pytest.raises(auth.AuthError, match="replayed"):
        v.verify(KEY, "POST", "/vm/destroy", BODY, headers_of(signed))


@pytest.mark.parametrize("method, path, body, key", [
    ("POST", "/vm/destroy", b'{"uuid": "vm-2"}', KEY),        # tampered body
    ("POST", "/vm/start", BODY, KEY),                          # another path
    ("GET", "/vm/destroy", BODY, KEY),                         # another method
    ("POST", "/vm/destroy", BODY, bytes(32)),                  # another agent's key
])
def test_anything_changed_breaks_the_signature(method: str, path: str, body: bytes, key: bytes) -> None:
    clock = Clock()
    signed = auth.sign(KEY, "POST", "/vm/destroy", BODY, now=clock.now)
    with pytest.raises(auth.AuthError, match="signature does not match"):
        auth.Verifier(clock=clock).verify(key, method, path, body, headers_of(signed))


def test_signed_protocol_headers_cannot_be_changed() -> None:
    clock = Clock()
    sent = {"taskuuid": "t1", "callbackurl": "http://mn:8080/agent/callback"}
    signed = auth.sign(KEY, "POST", "/vm/start", BODY, sent, now=clock.now)
    v = auth.Verifier(clock=clock)
    with pytest.raises(auth.AuthError, match="signature"):
        v.verify(KEY, "POST", "/vm/start", BODY, headers_of(signed, {**sent, "callbackurl": "http://evil/x"}))
    with pytest.raises(auth.AuthError, match="signature"):
        v.verify(KEY, "POST", "/vm/start", BODY, headers_of(signed))  # headers dropped
    v.verify(KEY, "POST", "/vm/start", BODY, headers_of(signed, sent))


def test_the_clock_window() -> None:
    clock = Clock()
    v = auth.Verifier(window=300, clock=clock)
    for offset in (-299, 299):
        v.verify(KEY, "POST", "/p", b"", headers_of(auth.sign(KEY, "POST", "/p", b"", now=clock.now + offset)))
    for offset in (-301, 301):
        with pytest.raises(auth.AuthError, match="timestamp"):
            v.verify(KEY, "POST", "/p", b"", headers_of(auth.sign(KEY, "POST", "/p", b"", now=clock.now + offset)))


def test_unsigned_and_keyless_requests_are_refused() -> None:
    v = auth.Verifier()
    with pytest.raises(auth.AuthError, match="not signed"):
        v.verify(KEY, "POST", "/p", b"", lambda name: None)
    with pytest.raises(auth.AuthError, match="no key"):
        v.verify(None, "POST", "/p", b"", headers_of(auth.sign(KEY, "POST", "/p", b"")))
    bad_ts = {**auth.sign(KEY, "POST", "/p", b""), auth.TIMESTAMP_HEADER: "soon"}
    with pytest.raises(auth.AuthError, match="not a number"):
        v.verify(KEY, "POST", "/p", b"", headers_of(bad_ts))


def test_the_nonce_cache_is_bounded_and_forgets_only_what_the_window_refuses_anyway() -> None:
    clock = Clock()
    v = auth.Verifier(window=10, max_nonces=3, clock=clock)
    first = auth.sign(KEY, "POST", "/p", b"", now=clock.now)
    v.verify(KEY, "POST", "/p", b"", headers_of(first))
    clock.now += 25  # past 2 windows: its nonce is dropped, and its timestamp is refused
    with pytest.raises(auth.AuthError, match="timestamp"):
        v.verify(KEY, "POST", "/p", b"", headers_of(first))
    for _ in range(10):
        v.verify(KEY, "POST", "/p", b"", headers_of(auth.sign(KEY, "POST", "/p", b"", now=clock.now)))
    assert len(v._seen) <= 3


def test_concurrent_replays_pass_once() -> None:
    v = auth.Verifier()
    signed = auth.sign(KEY, "POST", "/p", BODY)
    ok: list[bool] = []

    def attempt() -> None:
        try:
            v.verify(KEY, "POST", "/p", BODY, headers_of(signed))
            ok.append(True)
        except auth.AuthError:
            pass

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ok == [True]


def test_keys_derive_from_the_canonical_agent_url() -> None:
    master = os.urandom(32)
    a = auth.derive_key(master, "http://10.0.0.5:7070")
    assert a == auth.derive_key(master, "HTTP://10.0.0.5:7070/") == auth.DerivedKeys(master).key_for("http://10.0.0.5:7070")
    assert a != auth.derive_key(master, "http://10.0.0.6:7070")
    assert auth.derive_key(master, "http://sim:80/hosts/h1") == auth.derive_key(master, "http://sim/hosts/h1")
    assert auth.derive_key(master, "http://sim/hosts/h1") != auth.derive_key(master, "http://sim/hosts/h2")
    assert auth.derive_key(os.urandom(32), "http://10.0.0.5:7070") != a
    assert len(auth.key_id(a)) == 16 and auth.key_id(a) not in a.hex()


def test_key_files_are_private_and_made_once(tmp_path) -> None:
    path = tmp_path / "home" / "agent.key"
    key = auth.create_key_file(path)
    assert len(key) == 32 and auth.create_key_file(path) == key == auth.read_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["agent.key"]  # no temporary file left
    auth.write_key_file(tmp_path / "k2", b"\x01" * 32)
    assert stat.S_IMODE((tmp_path / "k2").stat().st_mode) == 0o600
    (tmp_path / "bad").write_text("not hex")
    with pytest.raises(ValueError, match="not a hex key"):
        auth.read_key_file(tmp_path / "bad")


def test_racing_processes_share_one_key(tmp_path) -> None:
    path = tmp_path / "agent.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(auth.create_key_file(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys) == 8
