"""SFTP backup storage, as in ZStack: images are files in a directory (`url`) of the backup-storage
host, whose agent (this same zstack-kvmagent) serves these commands; KVM hosts then fetch an image
over SCP with the SSH login the MN passes them: the fetcher of type SftpBackupStorage registered
here (kvmagent.storage.image_fetcher), used by the hosts' primary storage.

Layout: `<url>/images/<imageUuid>.<qcow2|raw|iso>`. A download takes an http(s):// URL, a file://
URL or an absolute path on this host, as the MN's URL policy in the command allows
(kvmagent.urlcheck: addresses checked at each connection and redirect, local files only below an
allowed directory, by real path). Invariants: an image appears under its final name only once
complete and verified (written to a `.part` name, then renamed); the reply's format is what
`qemu-img info` found (iso when the command says iso), size its virtual size, actualSize the bytes
it occupies, md5Sum the md5 of its content; one image uuid is downloaded at most once at a time
and never twice; delete is idempotent and touches nothing outside `<url>/images`. Images are not
world-readable: 0640, group of `<url>/images` (made 0750), so the SSH login the hosts fetch with
must be root or a member of that group.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
import urllib.error
from pathlib import Path
from typing import Any, BinaryIO

from kvmagent import protocol as p
from kvmagent.registry import AgentError, command
from kvmagent.shell import allocated_size, capacity, inside, run
from kvmagent.storage import (
    BACKUP,
    VOLUME_FORMATS,
    check_uuid,
    image_fetcher,
    image_lock,
    need_space,
    partial,
    prepare_dir,
    remember,
    storage_dir,
    verify_image,
)
from kvmagent.urlcheck import UrlPolicy, UrlRefused, check_file, check_url, local_path, open_url

SFTP = "SftpBackupStorage"
FETCH_TIMEOUT = 3600.0

IMAGES_DIR = "images"
IMAGE_MODE = 0o640  # owner and the images directory's group: never world-readable
HTTP_TIMEOUT = 60.0
CHUNK = 1 << 20
IMAGE_FORMATS = (*VOLUME_FORMATS, "iso")


def image_path(url: str | Path, image_uuid: str, fmt: str) -> Path:
    return Path(url) / IMAGES_DIR / f"{image_uuid}.{fmt}"


def local_source(url: str, policy: UrlPolicy) -> Path | None:
    """The local file a file:// URL or an absolute path names, once the policy allowed its real
    path; None for a network URL (AgentError for a refused one)."""
    try:
        path = local_path(url)
        if path is None:
            check_url(url, policy, resolve_names=False)
            return None
        return check_file(path, policy, real=True)
    except UrlRefused as exc:
        raise AgentError(f"cannot download {url}: {exc}") from None


def _copy(src: BinaryIO, dest: Path, limit: int, what: str) -> str:
    """Copy src into dest; the md5 of what was copied. Stops with 'insufficient capacity' past `limit`."""
    h, n = hashlib.md5(), 0
    with open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            n += len(chunk)
            if n > limit:
                raise AgentError(f"insufficient capacity on backup storage for {what}: more than {limit} bytes")
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


def _fetch(url: str, dest: Path, root: Path, what: str, policy: UrlPolicy) -> str:
    _, available = capacity(root)
    src = local_source(url, policy)
    if src is not None:
        if not src.is_file():
            raise AgentError(f"cannot download {what}: {src} not found on backup storage host {socket.gethostname()}")
        need_space(root, src.stat().st_size, what)
        try:
            with open(src, "rb") as f:
                return _copy(f, dest, available, what)
        except PermissionError as exc:
            raise AgentError(f"cannot download {what}: {src}: {exc.strerror}") from None
    try:
        with open_url(url, policy, HTTP_TIMEOUT) as r:
            length = r.headers.get("Content-Length")
            if length and length.isdigit():
                need_space(root, int(length), what)
            return _copy(r, dest, available, what)
    except UrlRefused as exc:
        raise AgentError(f"cannot download {what}: {exc}") from None
    except urllib.error.HTTPError as exc:
        raise AgentError(f"cannot download {what}: {url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise AgentError(f"cannot download {what}: {url}: {reason}") from None


def existing_image(root: Path, image_uuid: str) -> Path | None:
    return next((x for x in (image_path(root, image_uuid, f) for f in IMAGE_FORMATS) if x.exists()), None)


def download(agent: Any, cmd: p.DownloadImageCmd) -> p.DownloadImageRsp:
    image = check_uuid(cmd.imageUuid, "imageUuid")
    if not isinstance(cmd.url, str) or not cmd.url:
        raise AgentError(f"image {image}: a URL to download is required")
    root = storage_dir(agent, BACKUP, cmd.bsUuid)
    images = root / IMAGES_DIR
    images.mkdir(mode=0o750, parents=True, exist_ok=True)
    what = f"image {image} from {cmd.url}"
    with image_lock(f"{root}/{image}"):
        found = existing_image(root, image)
        if found is not None:
            raise AgentError(f"image {image} already exists at {found} on backup storage {cmd.bsUuid}")
        with partial(image_path(root, image, "download")) as tmp:
            md5 = _fetch(cmd.url, tmp, root, what, UrlPolicy.of(cmd.allowedUrlHosts, cmd.allowedFileDirectories))
            info = verify_image(tmp, what)
            fmt = "iso" if cmd.format == "iso" else info.format
            if fmt not in IMAGE_FORMATS:
                raise AgentError(f"{what} is {info.format}; backup storage takes {list(IMAGE_FORMATS)}")
            final = image_path(root, image, fmt)
            os.chmod(tmp, IMAGE_MODE)
            with contextlib.suppress(PermissionError):  # an agent not run as root keeps its own group
                os.chown(tmp, -1, images.stat().st_gid)
            tmp.rename(final)
    return p.DownloadImageRsp(installPath=str(final), size=info.virtual_size, actualSize=allocated_size(final),
                              md5Sum=md5, format=fmt)


def delete(agent: Any, cmd: p.DeleteImageCmd) -> p.Reply:
    root = storage_dir(agent, BACKUP, cmd.bsUuid)
    path = inside(root / IMAGES_DIR, cmd.installPath, f"deleting an image of backup storage {cmd.bsUuid}")
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    return p.Reply()


def _capacity_rsp(root: Path) -> p.CapacityRsp:
    if not root.is_dir():
        raise AgentError(f"backup storage directory {root} does not exist on host {socket.gethostname()}")
    total, available = capacity(root)
    return p.CapacityRsp(totalCapacity=total, availableCapacity=available)


# ---- commands -----------------------------------------------------------------------------------

@command(p.ConnectBackupStorageCmd)
def _connect(agent: Any, cmd: p.ConnectBackupStorageCmd) -> p.CapacityRsp:
    url = str(storage_dir(agent, BACKUP, check_uuid(cmd.bsUuid, "bsUuid"), cmd.url))
    root = prepare_dir(url, f"SFTP backup storage {cmd.bsUuid}", (IMAGES_DIR,))
    remember(agent, BACKUP, cmd.bsUuid, url)
    return _capacity_rsp(root)


@command(p.BackupStorageCapacityCmd)
def _capacity(agent: Any, cmd: p.BackupStorageCapacityCmd) -> p.CapacityRsp:
    return _capacity_rsp(storage_dir(agent, BACKUP, cmd.bsUuid, cmd.url))


@command(p.DownloadImageCmd)
def _download(agent: Any, cmd: p.DownloadImageCmd) -> p.DownloadImageRsp:
    return download(agent, cmd)


@command(p.DeleteImageCmd)
def _delete(agent: Any, cmd: p.DeleteImageCmd) -> p.Reply:
    return delete(agent, cmd)


# ---- hosts fetching images from here ------------------------------------------------------------

def scp_source(username: str, hostname: str, path: str) -> str:
    """`user@host:path` for scp, with an IPv6 address in brackets."""
    host = f"[{hostname}]" if ":" in hostname else hostname
    return f"{username}@{host}:{path}"


@image_fetcher(SFTP)
def fetch_sftp(cmd: p.CreateVolumeFromImageCmd, dest: Path) -> None:
    missing = [n for n in ("backupStorageHostname", "backupStorageUsername", "sshKey") if not getattr(cmd, n)]
    if missing:
        raise AgentError(f"cannot fetch image {cmd.imageUuid} from SFTP backup storage {cmd.backupStorageUuid}: "
                         f"the command lacks {missing}")
    source = scp_source(cmd.backupStorageUsername, cmd.backupStorageHostname, cmd.imageInstallPath)
    with tempfile.TemporaryDirectory(prefix="zstack-scp-") as d:
        key = Path(d) / "key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cmd.sshKey.strip() + "\n")
        args = ["scp", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR",
                "-i", str(key), "-P", str(cmd.backupStorageSshPort), source, str(dest)]
        try:
            run(args, f"fetching image {cmd.imageUuid} from SFTP backup storage {cmd.backupStorageUuid}",
                timeout=FETCH_TIMEOUT)
        except AgentError as exc:
            if "No such file" in str(exc):
                raise AgentError(f"image {cmd.imageUuid} not found at {source} on backup storage "
                                 f"{cmd.backupStorageUuid}: {exc}") from None
            raise
