"""The image URL policy (kvmagent.urlcheck): what the MN, the simulator and the agent refuse, and the
agent's fetch checking every connection and redirect against a real HTTP server on loopback."""

from __future__ import annotations

import http.server
import ipaddress
import threading
from collections.abc import Iterator

import pytest

from kvmagent.urlcheck import (
    UrlPolicy,
    UrlRefused,
    check_setting_dirs,
    check_setting_hosts,
    check_url,
    open_url,
)

NONE = UrlPolicy()


@pytest.mark.parametrize("url, why", [
    ("file:///etc/shadow", "no directory is allowed"),
    ("/etc/shadow", "no directory is allowed"),
    ("gopher://example.org/x", "scheme"),
    ("ftp://example.org/a.qcow2", "scheme"),
    ("data:text/plain,abc", "scheme"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://100.100.100.200/latest/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://169.254.10.1/a.qcow2", "link-local"),
    ("http://[fe80::1]/a.qcow2", "link-local"),
    ("http://127.0.0.1:8080/a.qcow2", "loopback"),
    ("http://127.1/a.qcow2", "loopback"),
    ("http://2130706433/a.qcow2", "loopback"),  # 127.0.0.1 as one number
    ("http://[::1]/a.qcow2", "loopback"),
    ("http://[::ffff:127.0.0.1]/a.qcow2", "loopback"),
    ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),  # NAT64 of 169.254.169.254
    ("http://0.0.0.0/a.qcow2", "unspecified"),
    ("http://localhost/a.qcow2", "loopback"),
    ("http://224.0.0.1/a", "multicast"),
    ("http:///a.qcow2", "no host"),
    ("http://x/a b", "spaces or control"),
])
def test_refused(url: str, why: str) -> None:
    with pytest.raises(UrlRefused, match=why):
        check_url(url, NONE)


@pytest.mark.parametrize("url", ["http://10.0.0.5/a.qcow2", "https://192.168.1.2:8443/a.qcow2",
                                 "http://images.invalid/a.qcow2",  # does not resolve here: the agent checks
                                 "HTTP://8.8.8.8/a"])
def test_accepted(url: str) -> None:
    check_url(url, NONE)


def test_explicit_opt_in_for_loopback() -> None:
    check_url("http://127.0.0.1:8080/a.qcow2", UrlPolicy(allowed_hosts=("127.0.0.0/8",)))
    check_url("http://localhost/a.qcow2", UrlPolicy(allowed_hosts=("localhost",)))
    with pytest.raises(UrlRefused, match="metadata"):  # another address is not opened by it
        check_url("http://169.254.169.254/", UrlPolicy(allowed_hosts=("127.0.0.0/8",)))


def test_file_dirs(tmp_path) -> None:
    d = tmp_path / "img"
    d.mkdir()
    policy = UrlPolicy(file_dirs=(str(d),))
    check_url(f"file://{d}/a.qcow2", policy)
    check_url(f"{d}/sub/a.qcow2", policy)
    for bad in (f"{d}/../x", f"{d}x/a.qcow2", "/etc/shadow", f"file://other{d}/a"):
        with pytest.raises(UrlRefused):
            check_url(bad, policy)


def test_settings_are_validated() -> None:
    assert check_setting_hosts("") and check_setting_hosts("127.0.0.1, localhost,10.0.0.0/8,::1")
    assert not check_setting_hosts("10.0.0.0/99") and not check_setting_hosts("a b")
    assert check_setting_dirs("") and check_setting_dirs("/srv/images,/data")
    assert not check_setting_dirs("relative") and not check_setting_dirs("/a/../b")


# ---- the agent's fetch over real HTTP ----------------------------------------------------------

@pytest.fixture
def server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", self.path.split("to=", 1)[1])
                self.end_headers()
                return
            body = b"image bytes"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_fetch_connects_only_to_checked_addresses(server: str) -> None:
    port = server.split(":")[1]
    with pytest.raises(UrlRefused, match="loopback"):
        open_url(f"http://{server}/a", NONE, 5)
    # A name is checked where it is resolved, at connection (what DNS rebinding would change).
    with pytest.raises(UrlRefused, match=r"localhost \(127.0.0.1\) is a loopback"):
        open_url(f"http://localhost:{port}/a", NONE, 5)
    with open_url(f"http://{server}/a", UrlPolicy(allowed_hosts=("127.0.0.1",)), 5) as r:
        assert r.read() == b"image bytes"


def test_fetch_checks_redirects(server: str) -> None:
    port = server.split(":")[1]
    allowed = UrlPolicy(allowed_hosts=("localhost",))
    with open_url(f"http://localhost:{port}/redirect?to=http://localhost:{port}/b", allowed, 5) as r:
        assert r.read() == b"image bytes"
    with pytest.raises(UrlRefused, match="127.0.0.1 is a loopback"):  # the redirect target is not allowed
        open_url(f"http://localhost:{port}/redirect?to=http://127.0.0.1:{port}/b", allowed, 5)
    for target in ("file:///etc/shadow", "ftp://x/y", "gopher://x/"):
        with pytest.raises(UrlRefused, match="only http"):
            open_url(f"http://localhost:{port}/redirect?to={target}", allowed, 5)


def test_address_literals() -> None:
    assert ipaddress.ip_address("::ffff:127.0.0.1").ipv4_mapped is not None
