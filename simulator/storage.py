"""Primary and backup storage commands of the simulator.

Handlers take the SimState, the target storage and the typed command, hold that storage's lock
while they change it, return the typed reply and raise SimError to fail.

Primary storage: a volume lives at /sim/ps/<psUuid>/<volumeUuid>.<format>; creating one takes
its virtual size from availableCapacity and fails when that is short; deleting frees it and is
idempotent, but fails while a domain uses the volume or when the path belongs to another storage.
A snapshot of an unused volume lives at /sim/ps/<psUuid>/snapshots/<volumeUuid>/<snapshotUuid>.qcow2
and goes when its volume is deleted. CreateVolumeFromImageCmd's SFTP fields are accepted and unused.
Backup storage: a download accepts the URLs the command's policy accepts (kvmagent.urlcheck,
names unresolved); the image's size is the URL's `size=<bytes>` query
parameter or DEFAULT_IMAGE_SIZE; md5Sum is the md5 of the URL; it lives at
/sim/bs/<bsUuid>/<imageUuid>.<format>.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kvmagent import protocol as p
from kvmagent.urlcheck import UrlPolicy, UrlRefused, check_url
from simulator.model import SimBackupStorage, SimError, SimImage, SimPrimaryStorage, SimVolume
from simulator.state import DELETING, SimState

DEFAULT_IMAGE_SIZE = 64 * 2**20
EMPTY_QCOW2_SIZE = 196_608  # what a freshly created thin qcow2 occupies


def _size(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SimError(f"{name} must be an integer of at least {minimum}, not {value!r}")
    return value


def _format(value: Any) -> str:
    if not isinstance(value, str) or not value.isalnum():
        raise SimError(f"invalid format {value!r}")
    return value


# ---- primary storage --------------------------------------------------------------------------

def _ps_capacity(ps: SimPrimaryStorage) -> p.CapacityRsp:
    return p.CapacityRsp(totalCapacity=ps.total, availableCapacity=ps.available)


def init_ps(state: SimState, ps: SimPrimaryStorage, cmd: p.InitPrimaryStorageCmd) -> p.CapacityRsp:
    with ps.lock:
        if cmd.url is not None:
            ps.url = cmd.url
        return _ps_capacity(ps)


def ps_capacity(state: SimState, ps: SimPrimaryStorage, cmd: p.PrimaryStorageCapacityCmd) -> p.CapacityRsp:
    with ps.lock:
        return _ps_capacity(ps)


def _allocate(state: SimState, ps: SimPrimaryStorage, volume_uuid: str, fmt: str, size: int,
              actual_size: int, install_path: str | None = None) -> p.VolumeRsp:
    """Record a new volume at `install_path` (or a path of our own); the caller has checked its
    arguments. Takes the storage's lock."""
    if not isinstance(volume_uuid, str) or not volume_uuid:
        raise SimError(f"invalid volumeUuid {volume_uuid!r}")
    if install_path is not None and (not install_path.startswith("/") or volume_uuid not in install_path):
        raise SimError(f"installPath {install_path!r} must be absolute and name volume {volume_uuid}")
    path = install_path or f"/sim/ps/{ps.uuid}/{volume_uuid}.{fmt}"
    with ps.lock:
        if path in ps.volumes:
            raise SimError(f"volume {volume_uuid} already exists at {path} on primary storage {ps.uuid}")
        if size > ps.available:
            raise SimError(f"insufficient capacity on simulated primary storage {ps.uuid}: "
                           f"volume {volume_uuid} needs {size} bytes, {ps.available} available")
        ps.available -= size
        ps.volumes[path] = SimVolume(volume_uuid, size, actual_size)
        state.volume_ps[path] = ps.uuid
    return p.VolumeRsp(installPath=path, size=size, actualSize=actual_size)


def create_empty(state: SimState, ps: SimPrimaryStorage, cmd: p.CreateEmptyVolumeCmd) -> p.VolumeRsp:
    size = _size(cmd.size, "size", 1)
    return _allocate(state, ps, cmd.volumeUuid, _format(cmd.format), size, min(size, EMPTY_QCOW2_SIZE),
                     cmd.installPath)


def create_from_image(state: SimState, ps: SimPrimaryStorage,
                      cmd: p.CreateVolumeFromImageCmd) -> p.VolumeRsp:
    """The image must be on the named simulated backup storage; size = max(cmd.size, image)."""
    requested = _size(cmd.size, "size")
    bs = state.backup_storage(cmd.backupStorageUuid)
    with bs.lock:
        image = bs.images.get(cmd.imageInstallPath)
        if image is None:
            raise SimError(f"image {cmd.imageUuid} not found at {cmd.imageInstallPath} on simulated "
                           f"backup storage {bs.uuid}")
        if image.image_uuid != cmd.imageUuid:
            raise SimError(f"{cmd.imageInstallPath} on backup storage {bs.uuid} holds image "
                           f"{image.image_uuid}, not {cmd.imageUuid}")
        size, actual = max(requested, image.size), image.actual_size
    return _allocate(state, ps, cmd.volumeUuid, "qcow2", size, actual, cmd.installPath)


def delete_volume(state: SimState, ps: SimPrimaryStorage, cmd: p.DeleteVolumeCmd) -> p.Reply:
    path = cmd.installPath
    owner = state.volume_ps.get(path)
    if owner is not None and owner != ps.uuid:
        raise SimError(f"volume {path} lives on primary storage {owner}, not {ps.uuid}")
    with ps.lock:
        user = state.volume_users.setdefault(path, DELETING)
        if user != DELETING:
            raise SimError(f"volume {path} on primary storage {ps.uuid} is in use by VM {user}")
        try:
            vol = ps.volumes.pop(path, None)
            if vol is not None:
                ps.available += vol.size
                state.volume_ps.pop(path, None)
                prefix = snapshot_prefix(ps, vol.volume_uuid)
                cascade = not path.startswith(prefix)  # a volume, not one of its snapshots
                for snap in [x for x in ps.volumes if cascade and x.startswith(prefix)]:
                    del ps.volumes[snap]
                    state.volume_ps.pop(snap, None)
        finally:
            state.volume_users.pop(path, None)
    return p.Reply()


def snapshot_prefix(ps: SimPrimaryStorage, volume_uuid: str) -> str:
    return f"/sim/ps/{ps.uuid}/snapshots/{volume_uuid}/"


def create_snapshot(state: SimState, ps: SimPrimaryStorage, cmd: p.CreateVolumeSnapshotCmd) -> p.VolumeSnapshotRsp:
    """As the real agent: only a volume no domain uses; the snapshot holds the volume's data so far
    (its actualSize) and the volume continues as an empty overlay at the same path."""
    path = cmd.installPath
    if not isinstance(cmd.snapshotUuid, str) or not cmd.snapshotUuid.isalnum():
        raise SimError(f"invalid snapshotUuid {cmd.snapshotUuid!r}")
    snap = f"{snapshot_prefix(ps, cmd.volumeUuid)}{cmd.snapshotUuid}.qcow2"
    with ps.lock:
        vol = ps.volumes.get(path)
        if vol is None or vol.volume_uuid != cmd.volumeUuid:
            raise SimError(f"volume {cmd.volumeUuid} not found at {path} on primary storage {ps.uuid}")
        user = state.volume_users.get(path)
        if user is not None:
            raise SimError(f"volume {path} on primary storage {ps.uuid} is in use by VM {user}; "
                           f"snapshot it while the VM is stopped")
        if snap in ps.volumes:
            raise SimError(f"snapshot {cmd.snapshotUuid} of volume {cmd.volumeUuid} already exists")
        taken = vol.actual_size
        ps.volumes[snap] = SimVolume(cmd.volumeUuid, 0, taken)
        state.volume_ps[snap] = ps.uuid
        vol.actual_size = min(vol.size, EMPTY_QCOW2_SIZE)
    return p.VolumeSnapshotRsp(installPath=snap, volumeInstallPath=path, size=vol.size, actualSize=taken)


# ---- backup storage ---------------------------------------------------------------------------

def _bs_capacity(bs: SimBackupStorage) -> p.CapacityRsp:
    return p.CapacityRsp(totalCapacity=bs.total, availableCapacity=bs.available)


def connect_bs(state: SimState, bs: SimBackupStorage, cmd: p.ConnectBackupStorageCmd) -> p.CapacityRsp:
    with bs.lock:
        if cmd.url is not None:
            bs.url = cmd.url
        return _bs_capacity(bs)


def bs_capacity(state: SimState, bs: SimBackupStorage, cmd: p.BackupStorageCapacityCmd) -> p.CapacityRsp:
    with bs.lock:
        return _bs_capacity(bs)


def image_size(url: str) -> int:
    """The size a simulated download of `url` yields: its `size` query parameter, else the default."""
    values = parse_qs(urlsplit(url).query).get("size")
    if not values:
        return DEFAULT_IMAGE_SIZE
    try:
        size = int(values[-1])
    except ValueError:
        raise SimError(f"image URL {url}: size={values[-1]!r} is not a number of bytes") from None
    if size <= 0:
        raise SimError(f"image URL {url}: size must be positive")
    return size


def download_image(state: SimState, bs: SimBackupStorage, cmd: p.DownloadImageCmd) -> p.DownloadImageRsp:
    if not isinstance(cmd.url, str) or not cmd.url:
        raise SimError("image URL is required")
    try:  # as an agent would, without fetching: names are not resolved (nothing is fetched)
        check_url(cmd.url, UrlPolicy.of(cmd.allowedUrlHosts, cmd.allowedFileDirectories), resolve_names=False)
    except UrlRefused as exc:
        raise SimError(f"cannot download {cmd.url}: {exc}") from None
    if not isinstance(cmd.imageUuid, str) or not cmd.imageUuid:
        raise SimError(f"invalid imageUuid {cmd.imageUuid!r}")
    fmt = _format(cmd.format)
    size = image_size(cmd.url)
    md5 = hashlib.md5(cmd.url.encode()).hexdigest()
    path = f"/sim/bs/{bs.uuid}/{cmd.imageUuid}.{fmt}"
    with bs.lock:
        if path in bs.images:
            raise SimError(f"image {cmd.imageUuid} already exists at {path} on backup storage {bs.uuid}")
        if size > bs.available:
            raise SimError(f"insufficient capacity on simulated backup storage {bs.uuid}: image "
                           f"{cmd.imageUuid} needs {size} bytes, {bs.available} available")
        bs.available -= size
        bs.images[path] = SimImage(cmd.imageUuid, cmd.url, size, size, md5, fmt)
    return p.DownloadImageRsp(installPath=path, size=size, actualSize=size, md5Sum=md5, format=fmt)


def delete_image(state: SimState, bs: SimBackupStorage, cmd: p.DeleteImageCmd) -> p.Reply:
    """Frees the image's space; deleting an absent image succeeds."""
    with bs.lock:
        image = bs.images.pop(cmd.installPath, None)
        if image is not None:
            bs.available += image.actual_size
    return p.Reply()


PS_HANDLERS: dict[str, Callable[[SimState, SimPrimaryStorage, Any], p.Reply]] = {
    p.InitPrimaryStorageCmd.PATH: init_ps,
    p.PrimaryStorageCapacityCmd.PATH: ps_capacity,
    p.CreateEmptyVolumeCmd.PATH: create_empty,
    p.CreateVolumeFromImageCmd.PATH: create_from_image,
    p.DeleteVolumeCmd.PATH: delete_volume,
    p.CreateVolumeSnapshotCmd.PATH: create_snapshot,
}

BS_HANDLERS: dict[str, Callable[[SimState, SimBackupStorage, Any], p.Reply]] = {
    p.ConnectBackupStorageCmd.PATH: connect_bs,
    p.BackupStorageCapacityCmd.PATH: bs_capacity,
    p.DownloadImageCmd.PATH: download_image,
    p.DeleteImageCmd.PATH: delete_image,
}
