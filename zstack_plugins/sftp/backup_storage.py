"""SFTP backup storage: AddSftpBackupStorage, UpdateSftpBackupStorage, ReconnectSftpBackupStorage.

Images live in a directory (`url`) of an SSH host that runs zstack-kvmagent (deployed by the
same Ansible role as on KVM hosts, without libvirt). Images are added with AddImage from an
http(s):// URL, a file:// URL or an absolute path on that host, as the image URL policy allows
(kvmagent/urlcheck.py; the agent fetches them); KVM hosts fetch them over SSH with a key the
storage's agent issues for that one transfer (`transfer_key`), never the MN's own.

Invariants:
- Adding is a flow: insert the rows (Connecting, with the SSH login), check the login, deploy
  the agent, connect (the agent prepares `url` and reports its capacity), Connected. A failure at
  any step deletes the rows; nothing is left behind but the agent installed on the host.
- Generic operations (attach, delete, state, ReconnectBackupStorage) are mn/services/backup_storage.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from mn.api.registry import Msg, apis, key_of
from mn.connection import CONNECTING, DISCONNECTED
from mn.context import ApiContext
from mn.deploy import agent_settings, agent_url, deploy_agent, ssh_target
from mn.errors import ApiError, invalid, wrap
from mn.flow import Flow, Step, register_flow
from mn.models import BackupStorage
from mn.resource_types import BACKUP_STORAGES, BackupStorageType
from mn.services import backup_storage as bss
from mn.services.common import add_tags, check_storage_path, get_or_404, inventory, new_resource_uuid
from mn.ssh import check_login
from zstack_plugins.sftp.models import SftpBackupStorage
from zstack_plugins.sftp.protocol import IssueTransferKeyCmd, IssueTransferKeyRsp, RevokeTransferKeyCmd

log = logging.getLogger(__name__)
SFTP = "SftpBackupStorage"
TRANSFER_KEY_SECONDS = 600  # a transfer key sshd still accepts this long after it was issued


def _check_add(ctx: ApiContext, msg: Msg) -> None:
    uuid = msg["resourceUuid"] = new_resource_uuid(msg)
    check_storage_path(msg.url, "AddSftpBackupStorage", "directory path on its host")
    if not msg.username.strip():
        raise invalid("parameter 'username' of AddSftpBackupStorage cannot be empty")
    with ctx.db.ro() as s:
        if s.get(BackupStorage, uuid) is not None:
            raise invalid(f"resourceUuid {uuid} is already used by another backup storage")


def _insert(ctx: ApiContext, d: dict, password: str | None) -> None:
    msg = Msg(d["msg"])
    with ctx.db.tx() as s:
        s.add(SftpBackupStorage(uuid=d["uuid"], name=msg.name, description=msg.get("description"), url=msg.url,
                                type=SFTP, state="Enabled", status=CONNECTING, agentUrl=d["agentUrl"],
                                hostname=msg.hostname, username=msg.username,
                                password=ctx.svc.secret_box().seal(password) or None,
                                sshPort=msg.get("sshPort") or 22))
        add_tags(s, d["uuid"], "BackupStorageVO", msg)


def _target(ctx: ApiContext, uuid: str) -> Any:
    with ctx.db.ro() as s:
        bs = get_or_404(s, SftpBackupStorage, uuid)
        return ssh_target(ctx.svc, bs, bs.hostname)


def _check_ssh(ctx: ApiContext, d: dict) -> None:
    check_login(_target(ctx, d["uuid"]))


def deploy(ctx: ApiContext, uuid: str) -> None:
    """Deploy (or skip, when current) the agent on the storage's host; the agent URL follows the port."""
    settings = agent_settings(ctx.gconf, libvirt=False)
    with ctx.db.ro() as s:
        bs = get_or_404(s, SftpBackupStorage, uuid)
        target, url = ssh_target(ctx.svc, bs, bs.hostname), agent_url(bs.hostname, settings.port)
    deploy_agent(target, settings, ctx.config.home, ctx.agents.key_for(url), agent_url=url)
    with ctx.db.tx() as s:
        s.execute(update(BackupStorage).where(BackupStorage.uuid == uuid).values(agentUrl=url))


def _deploy(ctx: ApiContext, d: dict) -> None:
    deploy(ctx, d["uuid"])


@register_flow("add-sftp-backup-storage")
def add_flow(password: str | None = None) -> Flow:
    """The password is bound to the insert step, never put in the (journaled) flow data; it is
    stored sealed (mn.secretbox); an empty one means key-based SSH only (nothing stored)."""
    return Flow("add-sftp-backup-storage", [
        Step("insert-row", lambda ctx, d: _insert(ctx, d, password), bss.delete_row),
        Step("check-ssh", _check_ssh),
        Step("deploy-agent", _deploy),
        *bss.CONNECT_STEPS,
    ])


@apis.handler("AddSftpBackupStorage", check=_check_add, sync_key=key_of("resourceUuid", "backup-storage"))
def add_sftp_backup_storage(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    port = int(agent_settings(ctx.gconf).port)
    d = {"uuid": uuid, "agentUrl": agent_url(msg.hostname, port),
         "msg": {k: v for k, v in msg.items() if k != "password"}}
    try:
        ctx.run_flow(add_flow(msg.password), d)
    except Exception as exc:  # noqa: BLE001
        err = wrap(exc)
        raise ApiError(err.code, f"unable to add SFTP backup storage {msg.name} ({msg.username}@{msg.hostname}:"
                                 f"{msg.get('sshPort') or 22}): {err.details}", cause=err.cause,
                       http_status=err.http_status) from None
    return {"inventory": inventory(ctx, SftpBackupStorage, uuid)}


def _check(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        get_or_404(s, SftpBackupStorage, msg.uuid)
    if msg.get("username") is not None and not msg.username.strip():
        raise invalid("parameter 'username' of UpdateSftpBackupStorage cannot be empty")


@apis.handler("UpdateSftpBackupStorage", check=_check, sync_key=key_of("uuid", "backup-storage"))
def update_sftp_backup_storage(ctx: ApiContext, msg: Msg) -> dict:
    """Name, description and the SSH login (hostname, port, user, password); the agent URL follows."""
    with ctx.db.tx() as s:
        bs = get_or_404(s, SftpBackupStorage, msg.uuid)
        for f in ("name", "description", "hostname", "username", "sshPort"):
            if msg.get(f) is not None:
                setattr(bs, f, msg[f])
        if msg.get("password") is not None:  # "": key-based login from now on, no password kept
            bs.password = ctx.svc.secret_box().seal(msg.password) or None
        bs.agentUrl = agent_url(bs.hostname, int(agent_settings(ctx.gconf).port))
    return {"inventory": inventory(ctx, SftpBackupStorage, msg.uuid)}


@apis.handler("ReconnectSftpBackupStorage", check=_check, sync_key=key_of("uuid", "backup-storage"))
def reconnect_sftp_backup_storage(ctx: ApiContext, msg: Msg) -> dict:
    """Redeploy the agent when it is not current, then reconnect (capacity from the agent)."""
    try:
        deploy(ctx, msg.uuid)
    except ApiError:
        with ctx.db.tx() as s:
            s.execute(update(BackupStorage).where(BackupStorage.uuid == msg.uuid).values(status=DISCONNECTED))
        raise
    bss.reconnect(ctx, msg.uuid)
    return {"inventory": inventory(ctx, SftpBackupStorage, msg.uuid)}


def image_fetch_fields(s: Session, bs_uuid: str) -> dict[str, Any]:
    """The CreateVolumeFromImageCmd fields telling a host where to fetch an image from this
    storage: its SSH address and login. No secret: transfer_key adds the key when the command
    is sent."""
    bs = s.get(SftpBackupStorage, bs_uuid)
    if bs is None:
        return {}
    return {"backupStorageType": SFTP, "backupStorageHostname": bs.hostname,
            "backupStorageSshPort": int(bs.sshPort or 22), "backupStorageUsername": bs.username}


@contextmanager
def transfer_key(ctx: ApiContext, fields: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The fields plus a key the storage's agent issues for this one transfer (read-only, that one
    image, expiring by itself: zstack_plugins/sftp/protocol.py), revoked when the block ends,
    whatever happened. Never the MN's own key; flow data, which is journaled, never holds it."""
    if fields.get("backupStorageType") != SFTP:
        yield fields
        return
    bs_uuid, username = fields["backupStorageUuid"], fields["backupStorageUsername"]
    with ctx.db.ro() as s:
        agent = get_or_404(s, SftpBackupStorage, bs_uuid).agentUrl
    rsp: IssueTransferKeyRsp = ctx.agents.send(agent, IssueTransferKeyCmd(
        bsUuid=bs_uuid, username=username, installPath=fields["imageInstallPath"],
        seconds=TRANSFER_KEY_SECONDS), IssueTransferKeyRsp)
    try:
        yield {**fields, "sshKey": rsp.privateKey}
    finally:
        try:
            ctx.agents.send(agent, RevokeTransferKeyCmd(bsUuid=bs_uuid, username=username, keyId=rsp.keyId))
        except ApiError as exc:
            log.warning("could not revoke transfer key %s on backup storage %s (it expires within %d s): %s",
                        rsp.keyId, bs_uuid, TRANSFER_KEY_SECONDS, exc.details)


BACKUP_STORAGES.register(BackupStorageType(SFTP, fetch_fields=image_fetch_fields, fetch_credentials=transfer_key))
