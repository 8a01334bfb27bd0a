"""Local primary storage: volumes as qcow2 files in a directory (`url`) of the host.

Layout below `url` (every path the agent makes or deletes is checked to lie below it):
  imagecache/<imageUuid>.<qcow2|raw>            images fetched from backup storage, read-only backing files
  rootVolumes/vol-<volumeUuid>/<volumeUuid>.qcow2   root volumes: qcow2 overlays on the cached image
  dataVolumes/vol-<volumeUuid>/<volumeUuid>.qcow2   empty (data) volumes (.raw when asked for raw)
The MN may choose a new volume's installPath (so its crash recovery knows what to delete); the agent
takes it when it fits this layout (an ISO VM's empty root volume goes under rootVolumes/) and
refuses any other.
  <root|data>Volumes/vol-<volumeUuid>/snapshots/<snapshotUuid>.qcow2   a volume's snapshots

Invariants: a file appears under its final name only when complete (written under a `.part` name,
then renamed); a cached image has been verified (qemu-img info readable, a supported format, no
backing file of its own, the md5 the MN gave if any) before it is renamed into the cache; a volume
in use by a process (a running VM's QEMU) is neither deleted nor snapshotted; deleting a volume
deletes its directory, snapshots included; the cache is kept (it serves the next volume).
The url of each storage is learnt from InitPrimaryStorageCmd and kept in `<state_dir>/storage.json`,
so later commands (which carry only psUuid) and a restarted agent know it (kvmagent.storage). An
image missing from the cache is fetched by the fetcher of its backup storage's type.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from kvmagent import protocol as p
from kvmagent.registry import AgentError, command
from kvmagent.shell import allocated_size, capacity, inside, process_name, run, users_of
from kvmagent.storage import (
    PRIMARY,
    VOLUME_FORMATS,
    ImageInfo,
    check_uuid,
    fetch_image,
    image_info,
    image_lock,
    need_space,
    partial,
    prepare_dir,
    remember,
    storage_dir,
    verify_image,
)

CACHE_DIR, ROOT_DIR, DATA_DIR, SNAPSHOT_DIR = "imagecache", "rootVolumes", "dataVolumes", "snapshots"


def volume_path(url: str | Path, volume_uuid: str, root: bool) -> Path:
    return Path(url) / (ROOT_DIR if root else DATA_DIR) / f"vol-{volume_uuid}" / f"{volume_uuid}.qcow2"


def snapshot_path(volume: str | Path, snapshot_uuid: str) -> Path:
    return Path(volume).parent / SNAPSHOT_DIR / f"{snapshot_uuid}.qcow2"


def cache_path(url: str | Path, image_uuid: str, fmt: str) -> Path:
    return Path(url) / CACHE_DIR / f"{image_uuid}.{fmt}"


def volume_dir(url: str | Path, path: str | Path) -> Path:
    """The `vol-<uuid>` directory of a volume file of this storage; AgentError for any other path."""
    target = inside(url, path, "volume path")
    d = target.parent
    if not (d.name.startswith("vol-") and d.parent.name in (ROOT_DIR, DATA_DIR)
            and d.parent.parent == Path(url).resolve() and target.stem == d.name[4:]
            and target.suffix in (".qcow2", ".raw")):
        raise AgentError(f"{path} is not a volume of the local primary storage at {url} "
                         f"(volumes are {url}/{ROOT_DIR}|{DATA_DIR}/vol-<uuid>/<uuid>.qcow2)")
    return d


def _in_use(path: Path) -> str | None:
    pids = users_of(path)
    return ", ".join(f"{process_name(x)} (pid {x})" for x in pids) if pids else None


def cached_image(url: Path, image_uuid: str) -> Path | None:
    for fmt in VOLUME_FORMATS:
        c = cache_path(url, image_uuid, fmt)
        if c.exists():
            return c
    return None


def ensure_cached(url: Path, cmd: p.CreateVolumeFromImageCmd) -> tuple[Path, ImageInfo]:
    """The image in this storage's cache, fetched and verified first if absent (one fetch per image)."""
    image = check_uuid(cmd.imageUuid, "imageUuid")
    with image_lock(f"{url}/{image}"):
        found = cached_image(url, image)
        if found is not None:
            return found, image_info(found)
        staging = cache_path(url, image, "fetch")
        with partial(staging) as tmp:
            fetch_image(cmd, tmp, f"the image cache of {url}")
            what = f"image {image} fetched from backup storage {cmd.backupStorageUuid} ({cmd.imageInstallPath})"
            info = verify_image(tmp, what, cmd.imageMd5Sum)
            if info.format not in VOLUME_FORMATS:
                raise AgentError(f"{what} is {info.format}; the image cache takes {list(VOLUME_FORMATS)}")
            final = cache_path(url, image, info.format)
            os.chmod(tmp, 0o644)
            tmp.rename(final)
        return final, info


def _new_volume(target: Path, args: list[str], what: str, size: int) -> p.VolumeRsp:
    """Run `qemu-img create ... <tmp> <size>` and move the result to `target` (never half there)."""
    if target.exists():
        raise AgentError(f"{what}: {target} already exists")
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        with partial(target) as tmp:
            run([*args, str(tmp), str(size)], what)
            try:
                os.link(tmp, target)  # unlike rename, never replaces a volume made meanwhile
            except FileExistsError:
                raise AgentError(f"{what}: {target} already exists") from None
    except BaseException:
        with contextlib.suppress(OSError):
            target.parent.rmdir()  # only when empty: nothing of ours is left, nothing of another is lost
        raise
    return p.VolumeRsp(installPath=str(target), size=size, actualSize=allocated_size(target))


def _target(url: Path, install_path: str | None, vol: str, root: bool) -> Path:
    """Where a new volume goes: the MN's installPath (checked against the layout), else our own choice."""
    if install_path is None:
        return volume_path(url, vol, root)
    volume_dir(url, install_path)
    path = Path(install_path)
    if path.stem != vol:
        raise AgentError(f"installPath {install_path} does not name volume {vol}")
    return path


def create_empty(agent: Any, cmd: p.CreateEmptyVolumeCmd) -> p.VolumeRsp:
    vol = check_uuid(cmd.volumeUuid, "volumeUuid")
    if isinstance(cmd.size, bool) or not isinstance(cmd.size, int) or cmd.size < 1:
        raise AgentError(f"volume {vol}: size must be a positive number of bytes, not {cmd.size!r}")
    if cmd.format not in VOLUME_FORMATS:
        raise AgentError(f"volume {vol}: format must be one of {list(VOLUME_FORMATS)}, not {cmd.format!r}")
    url = storage_dir(agent, PRIMARY, cmd.psUuid)
    need_space(url, cmd.size, f"volume {vol}")
    target = _target(url, cmd.installPath, vol, root=False)
    if cmd.format == "raw" and cmd.installPath is None:
        target = target.with_suffix(".raw")
    return _new_volume(target, ["qemu-img", "create", "-q", "-f", cmd.format], f"creating volume {vol}", cmd.size)


def create_from_image(agent: Any, cmd: p.CreateVolumeFromImageCmd) -> p.VolumeRsp:
    """A qcow2 overlay on the cached image; its size is max(cmd.size, the image's virtual size)."""
    vol = check_uuid(cmd.volumeUuid, "volumeUuid")
    if isinstance(cmd.size, bool) or not isinstance(cmd.size, int) or cmd.size < 0:
        raise AgentError(f"volume {vol}: size must be a number of bytes, not {cmd.size!r}")
    url = storage_dir(agent, PRIMARY, cmd.psUuid)
    target = _target(url, cmd.installPath, vol, root=True)
    if target.exists():
        raise AgentError(f"creating root volume {vol}: {target} already exists")
    cache, info = ensure_cached(url, cmd)
    size = max(cmd.size, info.virtual_size)
    need_space(url, size, f"root volume {vol}")
    return _new_volume(target, ["qemu-img", "create", "-q", "-f", "qcow2", "-F", info.format, "-b", str(cache)],
                       f"creating root volume {vol} from image {cmd.imageUuid}", size)


def delete_volume(agent: Any, cmd: p.DeleteVolumeCmd) -> p.Reply:
    """Idempotent: an absent volume is already deleted."""
    url = storage_dir(agent, PRIMARY, cmd.psUuid)
    d = volume_dir(url, cmd.installPath)
    path = Path(cmd.installPath)
    if path.exists():
        user = _in_use(path)
        if user:
            raise AgentError(f"volume {path} on host {socket.gethostname()} is in use by {user}")
    if d.exists():
        shutil.rmtree(d)
    return p.Reply()


def create_snapshot(agent: Any, cmd: p.CreateVolumeSnapshotCmd) -> p.VolumeSnapshotRsp:
    """The current file becomes the snapshot; a new qcow2 backed by it takes the volume's path."""
    vol = check_uuid(cmd.volumeUuid, "volumeUuid")
    snap_uuid = check_uuid(cmd.snapshotUuid, "snapshotUuid")
    url = storage_dir(agent, PRIMARY, cmd.psUuid)
    volume_dir(url, cmd.installPath)
    path = Path(cmd.installPath)
    if path.stem != vol or not path.exists():
        raise AgentError(f"volume {vol} not found at {path} on host {socket.gethostname()}")
    user = _in_use(path)
    if user:
        raise AgentError(f"volume {path} is in use by {user}; snapshot it while its VM is stopped")
    snap = snapshot_path(path, snap_uuid)
    if snap.exists():
        raise AgentError(f"snapshot {snap_uuid} of volume {vol} already exists at {snap}")
    info = image_info(path)
    snap.parent.mkdir(mode=0o755, exist_ok=True)
    path.rename(snap)
    try:
        with partial(path) as tmp:
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", info.format, "-b", str(snap), str(tmp),
                 str(info.virtual_size)], f"creating the new top of volume {vol} on snapshot {snap_uuid}")
            tmp.rename(path)
    except BaseException:
        snap.rename(path)
        raise
    return p.VolumeSnapshotRsp(installPath=str(snap), volumeInstallPath=str(path), size=info.virtual_size,
                               actualSize=allocated_size(snap))


def _capacity_rsp(root: Path) -> p.CapacityRsp:
    total, available = capacity(root)
    return p.CapacityRsp(totalCapacity=total, availableCapacity=available)


@command(p.InitPrimaryStorageCmd)
def _init(agent: Any, cmd: p.InitPrimaryStorageCmd) -> p.CapacityRsp:
    url = str(storage_dir(agent, PRIMARY, check_uuid(cmd.psUuid, "psUuid"), cmd.url))
    root = prepare_dir(url, f"local primary storage {cmd.psUuid}", (CACHE_DIR, ROOT_DIR, DATA_DIR))
    remember(agent, PRIMARY, cmd.psUuid, url)
    return _capacity_rsp(root)


@command(p.PrimaryStorageCapacityCmd)
def _capacity(agent: Any, cmd: p.PrimaryStorageCapacityCmd) -> p.CapacityRsp:
    root = storage_dir(agent, PRIMARY, cmd.psUuid, cmd.url)
    if not root.is_dir():
        raise AgentError(f"local primary storage {cmd.psUuid}: {root} does not exist on host {socket.gethostname()}")
    return _capacity_rsp(root)


@command(p.CreateEmptyVolumeCmd)
def _create_empty(agent: Any, cmd: p.CreateEmptyVolumeCmd) -> p.VolumeRsp:
    return create_empty(agent, cmd)


@command(p.CreateVolumeFromImageCmd)
def _create_from_image(agent: Any, cmd: p.CreateVolumeFromImageCmd) -> p.VolumeRsp:
    return create_from_image(agent, cmd)


@command(p.DeleteVolumeCmd)
def _delete_volume(agent: Any, cmd: p.DeleteVolumeCmd) -> p.Reply:
    return delete_volume(agent, cmd)


@command(p.CreateVolumeSnapshotCmd)
def _create_snapshot(agent: Any, cmd: p.CreateVolumeSnapshotCmd) -> p.VolumeSnapshotRsp:
    return create_snapshot(agent, cmd)
