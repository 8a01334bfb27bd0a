"""SFTP backup storage, as in ZStack: images are files in a directory (`url`) of the backup-storage
host, whose agent (this same zstack-kvmagent) serves these commands; KVM hosts then fetch an image
over SSH with a key this agent issued for that one transfer (zstack_plugins/sftp/protocol.py):
the fetcher of type SftpBackupStorage registered here (kvmagent.storage.image_fetcher), used by
the hosts' primary storage.

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
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
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
from zstack_plugins.sftp.protocol import IssueTransferKeyCmd, IssueTransferKeyRsp, RevokeTransferKeyCmd

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


# ---- per-transfer keys: what lets a host read one image ------------------------------------------

KEY_MARK = "zstack-transfer-"
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9/._+-]+$")  # what may stand unquoted in a forced command
_keys_lock = threading.Lock()


def _authorized_keys(username: str) -> tuple[Path, int, int]:
    """The login's authorized_keys, with the uid and gid that must own it."""
    try:
        pw = pwd.getpwnam(username)
    except KeyError:
        raise AgentError(f"the backup storage's login {username!r} is not a user of {socket.gethostname()}") from None
    return Path(pw.pw_dir) / ".ssh" / "authorized_keys", pw.pw_uid, pw.pw_gid


def _expired(line: str, now: str) -> bool:
    m = re.search(r'expiry-time="(\d+)"', line)
    return KEY_MARK in line and m is not None and m.group(1) < now


def _rewrite_keys(username: str, edit: Any) -> None:
    """Rewrite the login's authorized_keys through `edit(lines) -> lines`, dropping expired
    transfer keys; atomic (a temporary file renamed), owned by the login, mode 0600."""
    path, uid, gid = _authorized_keys(username)
    now = time.strftime("%Y%m%d%H%M%S")
    with _keys_lock:
        lines = path.read_text().splitlines() if path.exists() else []
        lines = [x for x in edit(lines) if not _expired(x, now)]
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700)
            if os.geteuid() == 0:
                os.chown(path.parent, uid, gid)
        tmp = path.with_name(f".authorized_keys.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(x + "\n" for x in lines))
        if os.geteuid() == 0:
            os.chown(tmp, uid, gid)
        os.replace(tmp, path)


def _grant_read(username: str, images: Path, image: Path) -> None:
    """Let the login read `image` through the group of `images` and of the image (0750/0640):
    an agent run as root gives both the login's primary group when they have another one (a
    storage has one login; a root login reads everything anyway)."""
    _, uid, gid = _authorized_keys(username)
    if uid == 0 or os.geteuid() != 0:
        return
    for path in (images, image):
        if path.stat().st_gid != gid:
            os.chown(path, -1, gid)


def issue_key(agent: Any, cmd: IssueTransferKeyCmd) -> IssueTransferKeyRsp:
    """A fresh key pair whose public half the login accepts only to `cat` this one image, until
    it is revoked or `seconds` pass (sshd's expiry-time)."""
    root = storage_dir(agent, BACKUP, cmd.bsUuid)
    image = inside(root / IMAGES_DIR, cmd.installPath, f"a transfer key of backup storage {cmd.bsUuid}")
    if not image.is_file():
        raise AgentError(f"no image {cmd.installPath} on backup storage {cmd.bsUuid}")
    if not _SAFE_PATH.match(str(image)):
        raise AgentError(f"image path {image} has characters a transfer key cannot name")
    _grant_read(cmd.username, root / IMAGES_DIR, image)
    seconds = min(max(int(cmd.seconds), 30), int(FETCH_TIMEOUT))
    key_id = secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="zstack-transfer-") as d:
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", KEY_MARK + key_id, "-f", f"{d}/key"],
            f"making a transfer key for image {cmd.installPath}")
        private, public = Path(f"{d}/key").read_text(), Path(f"{d}/key.pub").read_text().strip()
    expiry = time.strftime("%Y%m%d%H%M%S", time.localtime(time.time() + seconds))
    line = f'restrict,command="cat -- {image}",expiry-time="{expiry}" {public}'
    _rewrite_keys(cmd.username, lambda lines: [*lines, line])
    return IssueTransferKeyRsp(keyId=key_id, privateKey=private)


def revoke_key(agent: Any, cmd: RevokeTransferKeyCmd) -> p.Reply:
    """Remove a transfer key (idempotent: a key already gone or expired is fine)."""
    if not re.fullmatch(r"[0-9a-f]{1,64}", cmd.keyId or ""):
        raise AgentError(f"{cmd.keyId!r} is not a transfer key id")
    mark = f" {KEY_MARK}{cmd.keyId}"
    _rewrite_keys(cmd.username, lambda lines: [x for x in lines if not x.endswith(mark)])
    return p.Reply()


@command(IssueTransferKeyCmd)
def _issue_key(agent: Any, cmd: IssueTransferKeyCmd) -> IssueTransferKeyRsp:
    return issue_key(agent, cmd)


@command(RevokeTransferKeyCmd)
def _revoke_key(agent: Any, cmd: RevokeTransferKeyCmd) -> p.Reply:
    return revoke_key(agent, cmd)


# ---- hosts fetching images from here ------------------------------------------------------------

def ssh_address(username: str, hostname: str) -> str:
    """`user@host` for ssh."""
    return f"{username}@{hostname}"


@image_fetcher(SFTP)
def fetch_sftp(cmd: p.CreateVolumeFromImageCmd, dest: Path) -> None:
    """Read the image over SSH with the transfer key in `sshKey` (whose forced command on the
    storage is `cat` of that image) into `dest`."""
    missing = [n for n in ("backupStorageHostname", "backupStorageUsername", "sshKey") if not getattr(cmd, n)]
    if missing:
        raise AgentError(f"cannot fetch image {cmd.imageUuid} from SFTP backup storage {cmd.backupStorageUuid}: "
                         f"the command lacks {missing}")
    what = f"fetching image {cmd.imageUuid} from SFTP backup storage {cmd.backupStorageUuid}"
    with tempfile.TemporaryDirectory(prefix="zstack-ssh-") as d:
        key = Path(d) / "key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cmd.sshKey.strip() + "\n")
        args = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "IdentitiesOnly=yes",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR",
                "-i", str(key), "-p", str(cmd.backupStorageSshPort),
                ssh_address(cmd.backupStorageUsername, cmd.backupStorageHostname),
                f"cat -- {shlex.quote(cmd.imageInstallPath)}"]  # a transfer key's forced command wins
        try:
            with open(dest, "wb") as out:
                r = subprocess.run(args, stdout=out, stderr=subprocess.PIPE, timeout=FETCH_TIMEOUT,
                                   stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AgentError(f"{what}: no end within {FETCH_TIMEOUT:.0f} s") from None
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip()
            if "No such file" in err:
                raise AgentError(f"image {cmd.imageUuid} not found at {cmd.imageInstallPath} on backup storage "
                                 f"{cmd.backupStorageUuid}: {err}")
            raise AgentError(f"{what} failed (ssh exit {r.returncode}): {err}")
