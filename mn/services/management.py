"""The management node family: GetVersion, GetCurrentTime, GetManagementNodeArch,
GetManagementNodeOS, GetPlatformTimeZone, IsOpensourceVersion, IsReadyToGo, GetSupportAPIs
(QueryManagementNode is derived). All read-only; none touches an agent.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
from pathlib import Path

from mn import __version__
from mn.api.registry import Msg, apis
from mn.catalogue.catalog import load_catalog
from mn.context import ApiContext
from mn.errors import not_found
from mn.models import ManagementNode
from mn.query import TARGETS


@apis.handler("GetVersion")
def get_version(ctx: ApiContext, msg: Msg) -> dict:
    return {"version": __version__}


@apis.handler("GetCurrentTime")
def get_current_time(ctx: ApiContext, msg: Msg) -> dict:
    """ZStack's shape: {"currentTime": {"MillionSeconds": <epoch ms>, "Seconds": <epoch s>}}."""
    ms = time.time_ns() // 1_000_000
    return {"currentTime": {"MillionSeconds": ms, "Seconds": ms // 1000}}


@apis.handler("GetManagementNodeArch")
def get_management_node_arch(ctx: ApiContext, msg: Msg) -> dict:
    return {"architecture": platform.machine()}


def _os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for line in path.read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep:
                out[k.strip()] = v.strip().strip('"')
    except OSError:
        pass
    return out


@apis.handler("GetManagementNodeOS")
def get_management_node_os(ctx: ApiContext, msg: Msg) -> dict:
    rel = _os_release()
    return {"name": rel.get("ID") or platform.system().lower(),
            "version": rel.get("VERSION_ID") or platform.release()}


def _timezone_name() -> str:
    tz = os.environ.get("TZ")
    if tz:
        return tz.lstrip(":")
    try:
        return Path("/etc/timezone").read_text().strip()
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return time.tzname[0]


@apis.handler("GetPlatformTimeZone")
def get_platform_time_zone(ctx: ApiContext, msg: Msg) -> dict:
    offset = dt.datetime.now().astimezone().strftime("%z")  # e.g. +0800
    return {"timezone": _timezone_name(), "offset": f"{offset[:3]}:{offset[3:]}"}


@apis.handler("IsOpensourceVersion")
def is_opensource_version(ctx: ApiContext, msg: Msg) -> dict:
    return {"opensource": True}


@apis.handler("IsReadyToGo")
def is_ready_to_go(ctx: ApiContext, msg: Msg) -> dict:
    """This MN answers, so it is ready; another MN named by managementNodeId must be registered."""
    mn_id = msg.get("managementNodeId") or ctx.svc.mn_uuid
    if mn_id != ctx.svc.mn_uuid:
        with ctx.db.ro() as s:
            if s.get(ManagementNode, mn_id) is None:
                raise not_found("ManagementNodeVO", mn_id)
    return {"managementNodeId": mn_id}


@apis.handler("GetSupportAPIs")
def get_support_apis(ctx: ApiContext, msg: Msg) -> dict:
    """Message class names of every API this MN serves (handlers and derived queries)."""
    cat = load_catalog()
    names = [s.message for s in cat.apis.values()
             if apis.get(s.name) is not None or (s.kind == "query" and s.inventory in TARGETS)]
    return {"supportApis": sorted(names)}
