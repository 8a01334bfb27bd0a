"""Which image URLs may be fetched: checked by the MN when AddImage is called, by the simulator,
and by the agent again at every connection it opens (DNS rebinding, redirects).

Policy (`UrlPolicy`, the MN's global configs image.allowedUrlHosts and
image.allowedFileDirectories, sent with each DownloadImageCmd):
- http:// and https:// are accepted, unless the host is, or resolves to, a loopback, link-local
  (169.254.0.0/16, fe80::/10), unspecified, multicast, broadcast or reserved address or a cloud
  metadata address (169.254.169.254, fd00:ec2::254, 100.100.100.200); IPv4 addresses inside
  IPv6 (::ffff:a.b.c.d, 6to4, NAT64) are judged as the IPv4 address. A host named in
  `allowed_hosts` (a name, an address or a network such as 127.0.0.0/8) is accepted anyway: the
  explicit opt-in of tests and single-machine POCs that serve images from 127.0.0.1.
- file:// URLs (host empty or localhost) and absolute paths (a path on the backup storage's
  host) only below a directory of `file_dirs` (none by default), without `..` components; the
  agent compares real paths (symlinks resolved) before it opens the file.
- Every other scheme (ftp, gopher, data, ...) is refused.
`open_url` connects only to addresses it checked itself and follows at most 5 redirects, each
checked the same way; no proxy from the environment is used.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NETWORK_SCHEMES = ("http", "https")
METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
MAX_REDIRECTS = 5


class UrlRefused(ValueError):
    """An image URL the policy refuses; the message says why."""


@dataclass(frozen=True)
class UrlPolicy:
    allowed_hosts: tuple[str, ...] = ()
    file_dirs: tuple[str, ...] = ()

    @classmethod
    def of(cls, hosts: Any, dirs: Any) -> UrlPolicy:
        """From the wire (lists, or None) or a comma-separated setting."""
        def items(v: Any) -> tuple[str, ...]:
            if v is None:
                return ()
            parts = v.split(",") if isinstance(v, str) else list(v)
            return tuple(str(x).strip() for x in parts if str(x).strip())

        return cls(items(hosts), items(dirs))

    def host_allowed(self, host: str, addr: IpAddress | None) -> bool:
        for entry in self.allowed_hosts:
            if entry.lower() == host.lower().strip("[]"):
                return True
            if addr is not None:
                try:
                    if addr in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
        return False


def check_setting_hosts(value: str) -> bool:
    """A valid image.allowedUrlHosts: comma-separated names, addresses or networks."""
    for entry in UrlPolicy.of(value, None).allowed_hosts:
        if "/" in entry:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                return False
        elif not all(c.isalnum() or c in ".-:_" for c in entry):
            return False
    return True


def check_setting_dirs(value: str) -> bool:
    """A valid image.allowedFileDirectories: comma-separated absolute, normalised directories."""
    return all(_normalised(d) for d in UrlPolicy.of(None, value).file_dirs)


def _normalised(path: str) -> bool:
    return path.startswith("/") and "\0" not in path and ".." not in path.split("/") and \
        os.path.normpath(path) == path.rstrip("/") or path == "/"


def _embedded_v4(addr: IpAddress) -> IpAddress:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr.sixtofour is not None:
            return addr.sixtofour
        if addr in _NAT64:
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr


def forbidden(addr: IpAddress) -> str | None:
    """Why an address must not be fetched from (None: it may be)."""
    a = _embedded_v4(addr)
    if a in METADATA or addr in METADATA:
        return "a cloud metadata address"
    if a.is_loopback:
        return "a loopback address"
    if a.is_link_local:
        return "a link-local address"
    if a.is_unspecified or (isinstance(a, ipaddress.IPv4Address) and a in _THIS_NETWORK):
        return "an unspecified address"
    if a.is_multicast:
        return "a multicast address"
    if isinstance(a, ipaddress.IPv4Address) and a == ipaddress.IPv4Address("255.255.255.255"):
        return "the broadcast address"
    if a.is_reserved:
        return "a reserved address"
    return None


def check_address(policy: UrlPolicy, host: str, addr: IpAddress) -> None:
    why = forbidden(addr)
    if why is not None and not policy.host_allowed(host, addr):
        shown = host if host == str(addr) else f"{host} ({addr})"
        raise UrlRefused(f"{shown} is {why}; image URLs may not point there (an operator can allow it in "
                         "the global config image.allowedUrlHosts)")


def _literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[IpAddress]:
    """The addresses of a host name (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]


def check_file(path: str, policy: UrlPolicy, real: bool = False) -> Path:
    """A local path an image may be read from: below an allowed directory (real paths if `real`)."""
    if "\0" in path or ".." in path.split("/"):
        raise UrlRefused(f"{path} has '..' components; name the image file by its absolute path")
    if not policy.file_dirs:
        raise UrlRefused(f"local image files ({path}) are refused: no directory is allowed (an operator can "
                         "allow one in the global config image.allowedFileDirectories)")
    norm = os.path.realpath(path) if real else os.path.normpath(path)
    for d in policy.file_dirs:
        base = os.path.realpath(d) if real else os.path.normpath(d)
        if norm == base or norm.startswith(base.rstrip("/") + "/"):
            return Path(norm)
    raise UrlRefused(f"{path} is not below an allowed directory ({', '.join(policy.file_dirs)}; global config "
                     "image.allowedFileDirectories)")


def local_path(url: str) -> str | None:
    """The local path a file:// URL or an absolute path names; None for a network URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            raise UrlRefused(f"file URL {url} names another host ({parts.netloc}); use a path on the storage's host")
        return unquote(parts.path)
    if parts.scheme == "" and url.startswith("/"):
        return url
    return None


def check_url(url: str, policy: UrlPolicy, resolve_names: bool = True, real: bool = False) -> None:
    """Refuse (UrlRefused) a URL the policy does not accept. Names are resolved with
    `resolve_names`; one that does not resolve here is left to the fetching agent, which checks
    the addresses it connects to."""
    if not isinstance(url, str) or not url or url != url.strip() or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise UrlRefused(f"{url!r} is not a URL: it is empty or has spaces or control characters")
    path = local_path(url)
    if path is not None:
        check_file(path, policy, real)
        return
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in NETWORK_SCHEMES:
        raise UrlRefused(f"the scheme of {url} is not accepted: image URLs are http://, https://, or file:// "
                         "and absolute paths below an allowed directory")
    try:
        host, port = parts.hostname, parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise UrlRefused(f"{url} has an invalid port") from None
    if not host:
        raise UrlRefused(f"{url} names no host")
    literal = _literal(host)
    for addr in [literal] if literal is not None else (resolve(host, port) if resolve_names else []):
        check_address(policy, host, addr)


# ---- fetching -----------------------------------------------------------------------------------

def _connector(policy: UrlPolicy) -> Any:
    """socket.create_connection that connects only to addresses the policy accepts."""
    def create(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
               source_address: Any = None, **_: Any) -> socket.socket:
        host, port = address
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {host}: {exc.strerror}") from None
        for info in infos:
            check_address(policy, host, ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(f"cannot connect to {host}:{port}")

    return create


def opener(policy: UrlPolicy) -> urllib.request.OpenerDirector:
    """An opener of http(s) URLs whose every connection and redirect the policy checks."""
    connect = _connector(policy)

    class _Http(http.client.HTTPConnection):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self._create_connection = connect  # set per instance by HTTPConnection.__init__

    class _Https(http.client.HTTPSConnection):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self._create_connection = connect

    class _HttpHandler(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(_Http, req)

    class _HttpsHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(_Https, req, context=self._context)  # type: ignore[attr-defined]

    class _Redirect(urllib.request.HTTPRedirectHandler):
        max_redirections = MAX_REDIRECTS

        def http_error_302(self, req: Any, fp: Any, code: int, msg: str, headers: Any) -> Any:
            target = headers.get("location") or headers.get("uri")
            if target:
                newurl = urljoin(req.full_url, target)
                if urlsplit(newurl).scheme.lower() not in NETWORK_SCHEMES:
                    raise UrlRefused(f"{req.full_url} redirects to {newurl}: only http(s) redirects are followed")
                check_url(newurl, policy, resolve_names=False)  # its addresses: at connection
            return super().http_error_302(req, fp, code, msg, headers)

        http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    o = urllib.request.OpenerDirector()
    for h in (_HttpHandler(), _HttpsHandler(), _Redirect(), urllib.request.HTTPDefaultErrorHandler(),
              urllib.request.HTTPErrorProcessor()):
        o.add_handler(h)
    return o


def open_url(url: str, policy: UrlPolicy, timeout: float) -> Any:
    """Open an http(s) image URL under the policy (UrlRefused when it, or a redirect, is refused)."""
    check_url(url, policy, resolve_names=False)
    return opener(policy).open(url, timeout=timeout)
