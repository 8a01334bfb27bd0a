"""Request signing of the agent protocol, both ways (MN → agent, agent → MN); stdlib only.

Every request carries three headers: `X-ZStack-Timestamp` (Unix seconds), `X-ZStack-Nonce` (random,
32 hex digits) and `X-ZStack-Signature`: hex HMAC-SHA256, under the key of the agent concerned, of
the method, the request path (with its query), the timestamp, the nonce, the SHA-256 of the body
and the values of the protocol headers that change what a request does (`SIGNED_HEADERS`: the
async form's task, callback and reply-within, and the agent's name on agent → MN requests).

Keys: the MN holds one master key (a file, `create_key_file`); the key of an agent is
HMAC-SHA256(master, canonical agent URL), the URL the MN stores for that host or storage (a KVM
agent: `http://<managementIp>:<port>`; a simulated one: `<simulator>/hosts/<uuid>`). So a host
holds only its own key, one agent machine serving a KVM host and an SFTP storage has one key,
and the simulator, given the master key file, derives the key of each target it serves.

Invariants of `Verifier.verify`: a request is accepted only if its signature matches, its
timestamp is within `window` seconds of the verifier's clock, and its nonce was not seen within
the window (a bounded cache; when full, the oldest nonces are dropped first, and a dropped nonce
is older than any request still acceptable unless more than `max_nonces` requests came within one
window).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

TIMESTAMP_HEADER = "X-ZStack-Timestamp"
NONCE_HEADER = "X-ZStack-Nonce"
SIGNATURE_HEADER = "X-ZStack-Signature"
AGENT_HEADER = "X-ZStack-Agent"
"""On agent → MN requests: the uuid of the host that signed (its key is that host's)."""
SIGNED_HEADERS = ("taskuuid", "callbackurl", "replywithin", AGENT_HEADER)
WINDOW = 300.0
"""Seconds a signed request stays acceptable either side of the receiver's clock."""
KEY_BYTES = 32


class AuthError(Exception):
    """A request that is not authentic; the message says why (never the expected signature)."""


def canonical_url(url: str) -> str:
    """`scheme://host:port/path` with scheme and host lower-cased, the port explicit and no
    trailing slash: the identity an agent key is derived from."""
    u = urlsplit(url.strip())
    scheme = (u.scheme or "http").lower()
    port = u.port or (443 if scheme == "https" else 80)
    host = (u.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{u.path.rstrip('/')}"


def derive_key(master: bytes, agent_url: str) -> bytes:
    """The key of the agent the MN reaches at `agent_url`."""
    return hmac.new(master, b"zstack-agent-key\0" + canonical_url(agent_url).encode(), hashlib.sha256).digest()


def key_id(key: bytes) -> str:
    """A public fingerprint of a key (agents report it in /health so a deploy can tell a stale key)."""
    return hashlib.sha256(b"zstack-agent-key-id\0" + key).hexdigest()[:16]


def _message(method: str, path: str, timestamp: str, nonce: str, body: bytes,
             headers: Callable[[str], str | None]) -> bytes:
    parts = [method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest()]
    parts += [f"{h.lower()}={headers(h) or ''}" for h in SIGNED_HEADERS]
    return "\n".join(parts).encode()


def _getter(headers: Mapping[str, str]) -> Callable[[str], str | None]:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lambda name: lowered.get(name.lower())


def sign(key: bytes, method: str, path: str, body: bytes, headers: Mapping[str, str] | None = None,
         now: float | None = None) -> dict[str, str]:
    """The authentication headers of a request (`headers`: the others it carries, of which
    SIGNED_HEADERS are covered)."""
    ts = f"{time.time() if now is None else now:.3f}"
    nonce = secrets.token_hex(16)
    mac = hmac.new(key, _message(method, path, ts, nonce, body, _getter(headers or {})), hashlib.sha256)
    return {TIMESTAMP_HEADER: ts, NONCE_HEADER: nonce, SIGNATURE_HEADER: mac.hexdigest()}


class Verifier:
    """Checks signed requests; one per receiving process (it holds the nonces seen)."""

    def __init__(self, window: float = WINDOW, max_nonces: int = 1_000_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.window = window
        self.max_nonces = max_nonces
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> when it stops mattering
        self._lock = threading.Lock()

    def verify(self, key: bytes | None, method: str, path: str, body: bytes,
               headers: Callable[[str], str | None]) -> None:
        """Accept the request or raise AuthError. `headers(name)`: a header's value or None."""
        if key is None:
            raise AuthError("no key is known for this agent")
        ts, nonce, sig = headers(TIMESTAMP_HEADER), headers(NONCE_HEADER), headers(SIGNATURE_HEADER)
        if not (ts and nonce and sig):
            raise AuthError(f"the request is not signed (headers {TIMESTAMP_HEADER}, {NONCE_HEADER}, "
                            f"{SIGNATURE_HEADER} are required)")
        try:
            when = float(ts)
        except ValueError:
            raise AuthError(f"{TIMESTAMP_HEADER} is not a number") from None
        now = self._clock()
        if not abs(now - when) <= self.window:
            raise AuthError(f"the request's timestamp is {when - now:+.0f} s from this clock "
                            f"(at most ±{self.window:.0f} s accepted)")
        if len(nonce) > 64:
            raise AuthError(f"{NONCE_HEADER} is too long")
        expected = hmac.new(key, _message(method, path, ts, nonce, body, headers), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig.strip().lower()):
            raise AuthError("the request's signature does not match")
        with self._lock:
            while self._seen and (len(self._seen) >= self.max_nonces or next(iter(self._seen.values())) < now):
                self._seen.popitem(last=False)
            if nonce in self._seen:
                raise AuthError("the request was replayed (its nonce was seen already)")
            self._seen[nonce] = now + 2 * self.window


class DerivedKeys:
    """Agent keys derived from a master key, cached by canonical URL (key_for is cheap)."""

    def __init__(self, master: bytes) -> None:
        self._master = master
        self._cache: dict[str, bytes] = {}

    def key_for(self, agent_url: str) -> bytes:
        key = self._cache.get(agent_url)
        if key is None:
            key = self._cache[agent_url] = derive_key(self._master, agent_url)
        return key


# ---- key files ----------------------------------------------------------------------------------

def read_key_file(path: str | Path) -> bytes:
    """A key file: its key as hex on one line. Raises OSError or ValueError (naming the file)."""
    text = Path(path).read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path}: not a hex key") from None
    if len(key) < 16:
        raise ValueError(f"{path}: the key is too short ({len(key)} bytes)")
    return key


def write_key_file(path: str | Path, key: bytes) -> None:
    """Write `key` to `path` (mode 0600, replacing it atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    os.replace(tmp, path)


def create_key_file(path: str | Path) -> bytes:
    """The key in `path`, made (random, mode 0600) if the file does not exist yet. Processes that
    race here all end with the one key that won (made aside, then linked: never a partial file)."""
    path = Path(path)
    if path.exists():
        return read_key_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return read_key_file(path)


def refusal(message: str) -> dict[str, object]:
    """The JSON body of a refused request (HTTP 401 or 403): the agent protocol's `success`/`error`
    and ZStack's error shape."""
    return {"success": False, "error": message, "code": "ID.1000", "description": "authentication failed",
            "details": message}
