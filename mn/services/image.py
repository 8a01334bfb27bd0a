"""Images: AddImage, UpdateImage, ChangeImageState, DeleteImage, ExpungeImage, RecoverImage
(QueryImage is derived).

Invariants:
- An image has one ImageBackupStorageRef per backup storage holding it. AddImage is a flow:
  insert the image (Downloading) and its refs, download to each storage (DownloadImageCmd), then
  the image is Ready with the refs that succeeded; the refs that failed are removed. When every
  storage fails, nothing is left behind.
- image/deletionPolicy: Direct expunges at once (DeleteImageCmd on each storage, rows removed);
  Delay and Never move the refs, and the image once all its refs are, to status Deleted, from
  which RecoverImage brings them back and ExpungeImage removes them.
- A storage's availableCapacity goes down by the image's actualSize on download and back up
  (capped at its total) on expunge.
- No database transaction is held across an HTTP call to an agent.
"""

from __future__ import annotations

import logging

from sqlalchemy import case, delete, select, update
from sqlalchemy.orm import Session

from kvmagent.protocol import DeleteImageCmd, DownloadImageCmd, DownloadImageRsp
from kvmagent.urlcheck import UrlPolicy, UrlRefused, check_setting_dirs, check_setting_hosts, check_url
from mn import ownership, quota
from mn.api.registry import Msg, apis, key_of
from mn.cascade import cascade
from mn.connection import CONNECTED
from mn.context import ApiContext
from mn.errors import OPERATION_ERROR, ApiError, invalid, operr
from mn.flow import Flow, Step, register_flow
from mn.globalconfig import define
from mn.models import BackupStorage, Image, ImageBackupStorageRef
from mn.services import gc
from mn.services.common import (
    add_tags,
    apply_update,
    cas,
    change_state,
    check_exists,
    forget_resource,
    get_or_404,
    inventory,
    new_resource_uuid,
)
from mn.services.primary_storage import check_delete_mode

log = logging.getLogger(__name__)

IMAGE_DELETION_POLICY = define("image", "deletionPolicy", "Delay",
                               "Direct expunges a deleted image at once; Delay and Never keep it recoverable",
                               valid_values=("Direct", "Delay", "Never"))

ALLOWED_URL_HOSTS = define("image", "allowedUrlHosts", "",
                           "comma-separated host names, addresses or networks (127.0.0.0/8) image URLs may name "
                           "although they are loopback or link-local: the explicit opt-in of tests and "
                           "single-machine POCs serving images from this machine; empty refuses them all",
                           check=check_setting_hosts)
ALLOWED_FILE_DIRS = define("image", "allowedFileDirectories", "",
                           "comma-separated absolute directories of the backup storage's host below which "
                           "file:// URLs and absolute paths may be read (real paths); empty refuses local files",
                           check=check_setting_dirs)

DOWNLOADING, READY, DELETED = "Downloading", "Ready", "Deleted"
FORMATS = ("qcow2", "raw", "iso", "vmdk")


def sync_key(uuid: str | None) -> str:
    return f"image-{uuid}"


def default_format(url: str, media_type: str | None) -> str:
    """ZStack's defaults: an ISO is iso; else the URL's suffix (.iso, .raw) or qcow2."""
    if media_type == "ISO":
        return "iso"
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    for suffix, fmt in ((".iso", "iso"), (".raw", "raw"), (".img", "raw"), (".vmdk", "vmdk")):
        if path.endswith(suffix):
            return fmt
    return "qcow2"


def image_fields(msg: Msg) -> dict:
    """The image's columns from an AddImage message, with ZStack's defaults."""
    fmt = msg.get("format") or default_format(msg.url, msg.get("mediaType"))
    media = msg.get("mediaType") or ("ISO" if fmt == "iso" else "RootVolumeTemplate")
    return {"name": msg.name, "description": msg.get("description"), "url": msg.url, "mediaType": media,
            "guestOsType": msg.get("guestOsType"), "type": msg.get("type") or "zstack",
            "platform": msg.get("platform") or "Linux", "architecture": msg.get("architecture") or "x86_64",
            "format": fmt, "system": bool(msg.get("system")),
            "virtio": True if msg.get("virtio") is None else bool(msg.virtio)}


# ---- add ----------------------------------------------------------------------------------------

def _check_add(ctx: ApiContext, msg: Msg) -> None:
    uuid = msg["resourceUuid"] = new_resource_uuid(msg)  # fixed now, so the job's sync key names it
    try:
        check_url(msg.url, url_policy(ctx))
    except UrlRefused as exc:
        raise invalid(f"parameter 'url' of AddImage is refused: {exc}") from None
    fields = image_fields(msg)
    if fields["format"] not in FORMATS:
        raise invalid(f"parameter 'format' of AddImage must be one of {list(FORMATS)}, got {fields['format']!r}")
    if (fields["mediaType"] == "ISO") != (fields["format"] == "iso"):
        raise invalid(f"an image of mediaType {fields['mediaType']} cannot have format {fields['format']}: "
                      "ISO images, and only they, are of format iso")
    msg["backupStorageUuids"] = list(dict.fromkeys(msg.backupStorageUuids))
    with ctx.db.ro() as s:
        if s.get(Image, uuid) is not None:
            raise invalid(f"resourceUuid {uuid} is already used by another image")
        _usable_storages(s, msg.backupStorageUuids)


def url_policy(ctx: ApiContext) -> UrlPolicy:
    """The image URL policy of the global configs (kvmagent.urlcheck), also sent to the agents."""
    return UrlPolicy.of(ctx.gconf.get(ALLOWED_URL_HOSTS), ctx.gconf.get(ALLOWED_FILE_DIRS))


def _usable_storages(s: Session, uuids: list[str]) -> dict[str, str]:
    """bs uuid -> agent URL; each must exist and be Enabled and Connected."""
    out: dict[str, str] = {}
    for u in uuids:
        bs = get_or_404(s, BackupStorage, u)
        if bs.state != "Enabled" or bs.status != CONNECTED:
            raise operr(f"backup storage[uuid:{u}] is {bs.state} and {bs.status}; images can be added only to "
                        "an Enabled and Connected backup storage")
        out[u] = bs.agentUrl or ""
    return out


def _insert_rows(ctx: ApiContext, d: dict) -> None:
    msg = Msg(d["msg"])
    with ctx.db.tx() as s:
        d["agents"] = _usable_storages(s, msg.backupStorageUuids)
        s.add(Image(uuid=d["uuid"], status=DOWNLOADING, state="Enabled", size=0, actualSize=0,
                    **image_fields(msg)))
        s.flush()
        for bs in msg.backupStorageUuids:
            s.add(ImageBackupStorageRef(imageUuid=d["uuid"], backupStorageUuid=bs, status=DOWNLOADING))
        add_tags(s, d["uuid"], "ImageVO", msg)
        quota.check(s.connection(), ctx.caller, {"image.num": 1})
        ownership.own(s, ctx.account_uuid, "ImageVO", [d["uuid"]])


def _delete_rows(ctx: ApiContext, d: dict) -> None:
    with ctx.db.tx() as s:
        _drop_image(s, d["uuid"])


def _drop_image(s: Session, uuid: str) -> None:
    s.execute(delete(ImageBackupStorageRef).where(ImageBackupStorageRef.imageUuid == uuid))
    forget_resource(s, uuid)
    s.execute(delete(Image).where(Image.uuid == uuid))


def _download(ctx: ApiContext, d: dict) -> None:
    msg = Msg(d["msg"])
    fmt = image_fields(msg)["format"]
    done: dict[str, dict] = d.setdefault("downloaded", {})
    failed: dict[str, str] = {}
    policy = url_policy(ctx)
    for bs, agent in d["agents"].items():
        try:
            if not agent:
                raise operr(f"backup storage[uuid:{bs}] has no agent URL")
            rsp: DownloadImageRsp = ctx.agents.send(
                agent, DownloadImageCmd(bsUuid=bs, imageUuid=d["uuid"], url=msg.url, format=fmt,
                                        allowedUrlHosts=list(policy.allowed_hosts),
                                        allowedFileDirectories=list(policy.file_dirs)), DownloadImageRsp)
            if not rsp.installPath:
                raise operr(f"backup storage[uuid:{bs}] reported no installPath for the image")
            done[bs] = {"installPath": rsp.installPath, "size": rsp.size, "actualSize": rsp.actualSize or rsp.size,
                        "md5Sum": rsp.md5Sum, "format": rsp.format or fmt, "agent": agent}
        except ApiError as exc:
            failed[bs] = exc.details
    d["failed"] = failed
    if not done:
        reasons = "; ".join(f"backup storage[uuid:{bs}]: {why}" for bs, why in failed.items())
        raise ApiError(OPERATION_ERROR, f"failed to download image {msg.url} to every backup storage: {reasons}")


def _undo_download(ctx: ApiContext, d: dict) -> None:
    """Remove the downloaded copies; a storage that fails gets a garbage-collector job (the
    insert step's rollback forgets the image next)."""
    for bs, r in (d.get("downloaded") or {}).items():
        gc.cleanup(ctx, r["agent"], DeleteImageCmd(bsUuid=bs, installPath=r["installPath"]),
                   gc.target("BackupStorage", bs), f"delete image {d['uuid']} from backup storage {bs} "
                   "(AddImage was rolled back)", d["uuid"])


def _ready(ctx: ApiContext, d: dict) -> None:
    uuid, done = d["uuid"], d["downloaded"]
    first = next(iter(done.values()))
    with ctx.db.tx() as s:
        if not cas(s, Image, uuid, [DOWNLOADING], READY, field="status", size=first["size"],
                   actualSize=first["actualSize"], md5Sum=first["md5Sum"], format=first["format"]):
            raise operr(f"image[uuid:{uuid}] was deleted or changed while it was downloading")
        quota.grew_owners(s.connection(), [uuid])  # image.size: its size is known now
        for bs, r in done.items():
            s.execute(update(ImageBackupStorageRef)
                      .where(ImageBackupStorageRef.imageUuid == uuid, ImageBackupStorageRef.backupStorageUuid == bs)
                      .values(installPath=r["installPath"], status=READY))
            _take_capacity(s, bs, r["actualSize"])
        if d.get("failed"):
            s.execute(delete(ImageBackupStorageRef).where(
                ImageBackupStorageRef.imageUuid == uuid,
                ImageBackupStorageRef.backupStorageUuid.in_(list(d["failed"]))))


def _take_capacity(s: Session, bs_uuid: str, size: int) -> None:
    col = BackupStorage.availableCapacity
    s.execute(update(BackupStorage).where(BackupStorage.uuid == bs_uuid)
              .values(availableCapacity=case((col < size, 0), else_=col - size))
              .execution_options(synchronize_session=False))


def _give_capacity(s: Session, bs_uuid: str, size: int) -> None:
    col = BackupStorage.availableCapacity
    s.execute(update(BackupStorage).where(BackupStorage.uuid == bs_uuid)
              .values(availableCapacity=case((col + size > BackupStorage.totalCapacity, BackupStorage.totalCapacity),
                                             else_=col + size))
              .execution_options(synchronize_session=False))


@register_flow("add-image")
def add_flow() -> Flow:
    return Flow("add-image", [
        Step("insert-rows", _insert_rows, _delete_rows),
        Step("download", _download, _undo_download),
        Step("ready", _ready),
    ])


@apis.handler("AddImage", check=_check_add, sync_key=key_of("resourceUuid", "image"))
def add_image(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    ctx.run_flow(add_flow(), {"uuid": uuid, "msg": dict(msg)})
    return {"inventory": inventory(ctx, Image, uuid)}


# ---- update and state ---------------------------------------------------------------------------

def _check(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, Image, msg.uuid)


def _check_update(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        img = get_or_404(s, Image, msg.uuid)
        media, fmt = msg.get("mediaType") or img.mediaType, msg.get("format") or img.format
    if (media == "ISO") != (fmt == "iso"):
        raise invalid(f"an image of mediaType {media} cannot have format {fmt}: ISO images, and only they, "
                      "are of format iso")


@apis.handler("UpdateImage", check=_check_update, sync_key=key_of("uuid", "image"))
def update_image(ctx: ApiContext, msg: Msg) -> dict:
    return apply_update(ctx, Image, msg, ("name", "description", "guestOsType", "mediaType", "format", "system",
                                          "platform", "architecture", "virtio"))


@apis.handler("ChangeImageState", check=_check, sync_key=key_of("uuid", "image"))
def change_image_state(ctx: ApiContext, msg: Msg) -> dict:
    return change_state(ctx, Image, msg)


# ---- delete, expunge, recover -------------------------------------------------------------------

def _refs(s: Session, image_uuid: str, bs_uuids: list[str] | None) -> list[ImageBackupStorageRef]:
    """The image's refs on `bs_uuids` (all when None); every named storage must hold the image."""
    refs = list(s.scalars(select(ImageBackupStorageRef).where(ImageBackupStorageRef.imageUuid == image_uuid)
                          .order_by(ImageBackupStorageRef.backupStorageUuid)))
    if bs_uuids is None:
        return refs
    held = {r.backupStorageUuid for r in refs}
    missing = [b for b in bs_uuids if b not in held]
    if missing:
        raise invalid(f"image[uuid:{image_uuid}] is not on backup storage {missing}")
    return [r for r in refs if r.backupStorageUuid in set(bs_uuids)]


def _settle_status(s: Session, image_uuid: str) -> None:
    """The image is Deleted when all its refs are, Ready when any is Ready; gone when it has none."""
    statuses = list(s.scalars(select(ImageBackupStorageRef.status)
                              .where(ImageBackupStorageRef.imageUuid == image_uuid)))
    if not statuses:
        _drop_image(s, image_uuid)
    elif all(st == DELETED for st in statuses):
        s.execute(update(Image).where(Image.uuid == image_uuid).values(status=DELETED))
    elif READY in statuses:
        s.execute(update(Image).where(Image.uuid == image_uuid).values(status=READY))


def expunge(ctx: ApiContext, image_uuid: str, bs_uuids: list[str] | None, only_deleted: bool) -> None:
    """DeleteImageCmd on each chosen storage, then drop its ref; the image goes with its last ref.

    A storage whose agent fails keeps its ref; the error names every failure after the others
    were expunged.
    """
    with ctx.db.ro() as s:
        refs = [r for r in _refs(s, image_uuid, bs_uuids) if not only_deleted or r.status == DELETED]
        size = get_or_404(s, Image, image_uuid).actualSize
        agents = dict(s.execute(select(BackupStorage.uuid, BackupStorage.agentUrl)
                                .where(BackupStorage.uuid.in_([r.backupStorageUuid for r in refs]))).all())
        targets = [(r.backupStorageUuid, r.installPath, agents.get(r.backupStorageUuid)) for r in refs]
    failed: list[str] = []
    for bs, path, agent in targets:
        if path and agent:
            try:
                ctx.agents.send(agent, DeleteImageCmd(bsUuid=bs, installPath=path))
            except ApiError as exc:
                failed.append(f"backup storage[uuid:{bs}]: {exc.details}")
                continue
        with ctx.db.tx() as s:
            s.execute(delete(ImageBackupStorageRef).where(ImageBackupStorageRef.imageUuid == image_uuid,
                                                          ImageBackupStorageRef.backupStorageUuid == bs))
            if path:
                _give_capacity(s, bs, size)
            _settle_status(s, image_uuid)
    if failed:
        raise operr(f"failed to expunge image[uuid:{image_uuid}] from " + "; ".join(failed))


def _check_delete(ctx: ApiContext, msg: Msg) -> None:
    check_delete_mode(msg)
    with ctx.db.ro() as s:
        img = get_or_404(s, Image, msg.uuid)
        if img.status == DOWNLOADING:
            raise operr(f"image[uuid:{img.uuid}] is still downloading; delete it when AddImage has ended")
        _refs(s, msg.uuid, msg.get("backupStorageUuids"))


@apis.handler("DeleteImage", check=_check_delete, sync_key=key_of("uuid", "image"))
def delete_image(ctx: ApiContext, msg: Msg) -> dict:
    uuid, bs_uuids = msg.uuid, msg.get("backupStorageUuids")
    with ctx.db.ro() as s:
        get_or_404(s, Image, uuid)
        every = bs_uuids is None or {r.backupStorageUuid for r in _refs(s, uuid, None)} <= set(bs_uuids)
    if every:
        cascade(ctx, Image, uuid, msg.deleteMode)
    if ctx.gconf.get(IMAGE_DELETION_POLICY) == "Direct":
        expunge(ctx, uuid, bs_uuids, only_deleted=False)
        return {}
    with ctx.db.tx() as s:
        for r in _refs(s, uuid, bs_uuids):
            r.status = DELETED
        s.flush()
        _settle_status(s, uuid)
    return {}


def _check_image_uuid(ctx: ApiContext, msg: Msg) -> None:
    if msg.get("uuid") is not None and msg.uuid != msg.imageUuid:
        raise invalid(f"uuid {msg.uuid} and imageUuid {msg.imageUuid} name different images; give imageUuid only")
    with ctx.db.ro() as s:
        img = get_or_404(s, Image, msg.imageUuid)
        refs = _refs(s, img.uuid, msg.get("backupStorageUuids"))
        if not any(r.status == DELETED for r in refs):
            raise operr(f"image[uuid:{img.uuid}] is not deleted on "
                        f"{'those backup storages' if msg.get('backupStorageUuids') else 'any backup storage'}; "
                        "only a deleted image can be expunged or recovered")


@apis.handler("ExpungeImage", check=_check_image_uuid, sync_key=key_of("imageUuid", "image"))
def expunge_image(ctx: ApiContext, msg: Msg) -> dict:
    expunge(ctx, msg.imageUuid, msg.get("backupStorageUuids"), only_deleted=True)
    return {}


@apis.handler("RecoverImage", check=_check_image_uuid, sync_key=key_of("imageUuid", "image"))
def recover_image(ctx: ApiContext, msg: Msg) -> dict:
    uuid = msg.imageUuid
    with ctx.db.tx() as s:
        refs = [r for r in _refs(s, uuid, msg.get("backupStorageUuids")) if r.status == DELETED]
        if not refs:
            raise operr(f"image[uuid:{uuid}] has nothing deleted to recover")
        for r in refs:
            r.status = READY
        s.flush()
        quota.grew_owners(s.connection(), [uuid])
        _settle_status(s, uuid)
    return {"inventory": inventory(ctx, Image, uuid)}

