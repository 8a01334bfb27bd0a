"""The example plugin's management-node side: its APIs, flow, cascade relation, hook and global config.

- CreateVmUserDefinedXmlHookScript is a flow: insert the row, check the script on its host (the
  plugin's agent command), record the host's libvirt version. A failure at any step deletes the row.
- UpdateVmUserDefinedXmlHookScript changes the fields given; a new script is checked again first.
- ExpungeVmUserDefinedXmlHookScript deletes the row; QueryVmUserDefinedXmlHookScript is derived from
  the model (its __inventory__), as every query is.
- Deleting a host deletes its scripts (Permissive) or is refused while it has some (Enforcing).
- A host that connects checks its scripts again (HOST_CONNECTED), keeping libvirtVersion current.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mn import extensions
from mn.api.registry import Msg, apis, key_of
from mn.cascade import dependent
from mn.connection import CONNECTED
from mn.context import ApiContext
from mn.errors import invalid
from mn.flow import Flow, Step, register_flow
from mn.globalconfig import define
from mn.models import Host
from mn.services.common import (
    add_tags,
    forget_resource,
    get_or_404,
    inventory,
    new_resource_uuid,
    system_tag_value,
)
from mn.services.host import agent_url
from zstack_example.models import XmlHook
from zstack_example.protocol import ValidateXmlHookCmd, ValidateXmlHookRsp

MAX_LENGTH = define("example", "xmlHook.maxLength", 65536, "the longest XML hook script accepted, in characters",
                    int, lambda v: v > 0)
SYNC = key_of("uuid", "xml-hook")


def _check_script(ctx: ApiContext, script: str) -> None:
    if not script.strip():
        raise invalid("hookScript cannot be empty")
    if len(script) > ctx.gconf.get(MAX_LENGTH):
        raise invalid(f"hookScript has {len(script)} characters; example/xmlHook.maxLength allows "
                      f"{ctx.gconf.get(MAX_LENGTH)}")


def _host_of(s: Session, host_uuid: str | None) -> Host:
    if not host_uuid:
        raise invalid("CreateVmUserDefinedXmlHookScript needs the system tag hostUuid::<uuid> (the host the "
                      "script is checked on)")
    host = get_or_404(s, Host, host_uuid)
    if host.status != CONNECTED:
        raise invalid(f"host[uuid:{host.uuid}] is {host.status}; a script is checked on a Connected host")
    return host


def _validate(ctx: ApiContext, host_uuid: str, script: str) -> str | None:
    with ctx.db.ro() as s:
        url = agent_url(_host_of(s, host_uuid))
    rsp = ctx.agents.send(url, ValidateXmlHookCmd(hostUuid=host_uuid, hookScript=script), ValidateXmlHookRsp)
    return rsp.libvirtVersion


# ---- create -------------------------------------------------------------------------------------

def _check_create(ctx: ApiContext, msg: Msg) -> None:
    msg["resourceUuid"] = new_resource_uuid(msg)
    _check_script(ctx, msg.hookScript)
    with ctx.db.ro() as s:
        _host_of(s, system_tag_value(msg.system_tags, "hostUuid"))
        if s.get(XmlHook, msg.resourceUuid) is not None:
            raise invalid(f"resourceUuid {msg.resourceUuid} is already used by another XML hook script")


def _insert(ctx: ApiContext, d: dict) -> None:
    msg = Msg(d["msg"])
    with ctx.db.tx() as s:
        s.add(XmlHook(uuid=d["uuid"], name=msg.name, description=msg.get("description"), hookScript=msg.hookScript,
                      hostUuid=d["host"]))
        add_tags(s, d["uuid"], "XmlHookVO", msg)


def _delete(ctx: ApiContext, d: dict) -> None:
    with ctx.db.tx() as s:
        row = s.get(XmlHook, d["uuid"])
        if row is not None:
            forget_resource(s, row.uuid)
            s.delete(row)


def _check_on_host(ctx: ApiContext, d: dict) -> None:
    d["libvirtVersion"] = _validate(ctx, d["host"], d["msg"]["hookScript"])


def _record(ctx: ApiContext, d: dict) -> None:
    with ctx.db.tx() as s:
        s.execute(update(XmlHook).where(XmlHook.uuid == d["uuid"]).values(libvirtVersion=d["libvirtVersion"]))


@register_flow("example-create-xml-hook")
def create_flow() -> Flow:
    return Flow("example-create-xml-hook", [
        Step("insert", _insert, _delete),
        Step("check-on-host", _check_on_host),
        Step("record", _record),
    ])


@apis.handler("CreateVmUserDefinedXmlHookScript", check=_check_create, sync_key=key_of("resourceUuid", "xml-hook"))
def create_xml_hook(ctx: ApiContext, msg: Msg) -> dict:
    d = {"uuid": msg.resourceUuid, "host": system_tag_value(msg.system_tags, "hostUuid"), "msg": dict(msg)}
    ctx.run_flow(create_flow(), d)
    return {"inventory": inventory(ctx, XmlHook, msg.resourceUuid)}


# ---- update, expunge ----------------------------------------------------------------------------

def _check_exists(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        get_or_404(s, XmlHook, msg.uuid)
    if msg.get("hookScript") is not None:
        _check_script(ctx, msg.hookScript)


@apis.handler("UpdateVmUserDefinedXmlHookScript", check=_check_exists, sync_key=SYNC)
def update_xml_hook(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        host_uuid = get_or_404(s, XmlHook, msg.uuid).hostUuid
    values = {f: msg[f] for f in ("name", "description", "hookScript") if msg.get(f) is not None}
    if "hookScript" in values:  # checked before anything changes
        values["libvirtVersion"] = _validate(ctx, host_uuid, values["hookScript"])
    if values:
        with ctx.db.tx() as s:
            s.execute(update(XmlHook).where(XmlHook.uuid == msg.uuid).values(**values))
    return {"inventory": inventory(ctx, XmlHook, msg.uuid)}


def expunge(ctx: ApiContext, uuid: str, mode: str = "Permissive") -> None:
    _delete(ctx, {"uuid": uuid})


@apis.handler("ExpungeVmUserDefinedXmlHookScript", check=_check_exists, sync_key=SYNC)
def expunge_xml_hook(ctx: ApiContext, msg: Msg) -> dict:
    expunge(ctx, msg.uuid)
    return {}


# ---- the cascade relation and the hook ----------------------------------------------------------

def _scripts_of_host(s: Session, host_uuid: str) -> list[str]:
    return list(s.scalars(select(XmlHook.uuid).where(XmlHook.hostUuid == host_uuid).order_by(XmlHook.uuid)))


dependent(Host, "XmlHookVO", _scripts_of_host, expunge)


@extensions.HOST_CONNECTED.register
def recheck_scripts(ctx: ApiContext, host_uuid: str) -> None:
    """A host that (re)connects checks its scripts again; one it now refuses fails the connect."""
    with ctx.db.ro() as s:
        scripts = [(r.uuid, r.hookScript) for r in s.scalars(select(XmlHook).where(XmlHook.hostUuid == host_uuid))]
    for uuid, script in scripts:
        version = ctx.agents.send(_url(ctx, host_uuid), ValidateXmlHookCmd(hostUuid=host_uuid, hookScript=script),
                                  ValidateXmlHookRsp).libvirtVersion
        with ctx.db.tx() as s:
            s.execute(update(XmlHook).where(XmlHook.uuid == uuid).values(libvirtVersion=version))


def _url(ctx: ApiContext, host_uuid: str) -> str:
    with ctx.db.ro() as s:
        return agent_url(get_or_404(s, Host, host_uuid))
