"""Storage on a host, shared by the plugins that keep volumes or images in a directory of it.

What they share: safe file names, images read with qemu-img (format, sizes, backing file) and
checked before they are accepted, files that appear under their final name only when complete
(`partial`), one lock per image, and each storage's directory learnt from its init/connect
command and kept in `<state_dir>/storage.json`, so later commands (which carry only the storage's
uuid) and a restarted agent know it. And the image fetchers: how a host fetches an image from a
backup storage of a given type (CreateVolumeFromImageCmd.backupStorageType), registered by the
plugin of that type (`@image_fetcher("SftpBackupStorage")`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from kvmagent import protocol as p
from kvmagent.registry import AgentError
from kvmagent.shell import capacity, run

PRIMARY, BACKUP = "primaryStorage", "backupStorage"
VOLUME_FORMATS = ("qcow2", "raw")
_UUID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]{0,63}$")

_state_lock = threading.Lock()
_image_locks: dict[str, threading.Lock] = {}

Fetcher = Callable[[p.CreateVolumeFromImageCmd, Path], None]  # (command, file to write) -> None
FETCHERS: dict[str, Fetcher] = {}


def image_fetcher(bs_type: str) -> Callable[[Fetcher], Fetcher]:
    """Register how a host fetches an image from a backup storage of `bs_type` into a file."""

    def deco(fn: Fetcher) -> Fetcher:
        if FETCHERS.get(bs_type, fn) is not fn:
            raise RuntimeError(f"two image fetchers for backup storage type {bs_type}")
        FETCHERS[bs_type] = fn
        return fn

    return deco


def fetch_image(cmd: p.CreateVolumeFromImageCmd, dest: Path, where: str) -> None:
    """Fetch the command's image into `dest` with the fetcher of its backup storage's type."""
    fetch = FETCHERS.get(cmd.backupStorageType)
    if fetch is None:
        raise AgentError(f"image {cmd.imageUuid} not found in {where} on host {socket.gethostname()}, and this "
                         f"host cannot fetch it from backup storage {cmd.backupStorageUuid} of type "
                         f"{cmd.backupStorageType} (it fetches from {sorted(FETCHERS) or 'no type'})")
    fetch(cmd, dest)


class ImageInfo(NamedTuple):
    format: str
    virtual_size: int
    actual_size: int
    backing: str | None


def check_uuid(value: Any, what: str) -> str:
    """A uuid that is safe as a file name (letters, digits and dashes)."""
    if not isinstance(value, str) or not _UUID.match(value):
        raise AgentError(f"invalid {what} {value!r}: letters, digits and dashes only")
    return value


def parse_image_info(text: str) -> ImageInfo:
    """`qemu-img info --output=json` -> ImageInfo."""
    d = json.loads(text)
    return ImageInfo(d["format"], int(d["virtual-size"]), int(d.get("actual-size") or 0),
                     d.get("full-backing-filename") or d.get("backing-filename"))


def image_info(path: str | Path) -> ImageInfo:
    out = run(["qemu-img", "info", "--output=json", "-U", str(path)], f"reading image {path}")
    try:
        return parse_image_info(out)
    except (ValueError, KeyError) as exc:
        raise AgentError(f"qemu-img info {path}: unexpected output ({exc}): {out[:200]}") from None


def md5_of(path: str | Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _state_file(agent: Any) -> Path:
    return Path(agent.config.state_path) / "storage.json"


def remember(agent: Any, kind: str, uuid: str, url: str) -> None:
    """Record the directory of storage `uuid` (kind PRIMARY or BACKUP) in the agent's state."""
    with _state_lock:
        f = _state_file(agent)
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            data = {}
        data.setdefault(kind, {})[uuid] = url
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(f)


def known_url(agent: Any, kind: str, uuid: str) -> str | None:
    with _state_lock:
        try:
            return json.loads(_state_file(agent).read_text()).get(kind, {}).get(uuid)
        except (OSError, ValueError):
            return None


def storage_dir(agent: Any, kind: str, uuid: str, url: str | None = None) -> Path:
    """The directory of a connected storage: `url` if given, else the one remembered."""
    url = url or known_url(agent, kind, uuid)
    noun, verb = ("primary storage", "InitPrimaryStorageCmd") if kind == PRIMARY else \
        ("backup storage", "ConnectBackupStorageCmd")
    if not url:
        raise AgentError(f"{noun} {uuid} is not initialized on host {socket.gethostname()}: "
                         f"reconnect it (the agent learns its directory from {verb})")
    return Path(url)


def prepare_dir(url: Any, what: str, subdirs: tuple[str, ...]) -> Path:
    """Create (or check) a storage directory and its subdirectories; it must be absolute and writable."""
    if not isinstance(url, str) or not url.startswith("/") or "\0" in url or ".." in url.split("/"):
        raise AgentError(f"{what}: url must be an absolute directory path without '..', not {url!r}")
    root = Path(url)
    try:
        for d in (root, *(root / s for s in subdirs)):
            d.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise AgentError(f"{what}: cannot create {url}: {exc.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise AgentError(f"{what}: {url} is not writable by the agent")
    return root


def need_space(root: Path, size: int, what: str) -> None:
    total, available = capacity(root)
    if size > available:
        raise AgentError(f"insufficient capacity on {root} of host {socket.gethostname()}: {what} needs "
                         f"{size} bytes, {available} available")


@contextlib.contextmanager
def partial(final: Path) -> Iterator[Path]:
    """A temporary name next to `final` that the body writes; removed unless the body renamed it."""
    tmp = final.with_name(f".{final.name}.{uuidlib.uuid4().hex[:8]}.part")
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def image_lock(key: str) -> threading.Lock:
    with _state_lock:
        return _image_locks.setdefault(key, threading.Lock())


def verify_image(path: Path, what: str, md5: str | None = None) -> ImageInfo:
    """What a cache or a backup storage accepts: a readable qcow2/raw without a backing file (a backing
    file could point anywhere on the host), with the given md5 if any."""
    info = image_info(path)
    if info.backing:
        raise AgentError(f"{what} has a backing file ({info.backing}); only standalone images are accepted")
    if info.format == "qcow2":
        run(["qemu-img", "check", "-q", str(path)], f"checking {what}")
    if md5 is not None:
        got = md5_of(path)
        if got != md5:
            raise AgentError(f"{what} is corrupt: md5 {got}, expected {md5}")
    return info
