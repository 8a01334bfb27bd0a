"""Host commands of the real agent: connect, echo, ping, facts and capacity.

Facts come from /proc, /etc/os-release and libvirt's node info. Capacity's usedMemory is the
memory of this host's VMs (our running domains whose metadata names this host), as the simulator
counts it. Ping answers the host uuid only once /host/connect was received by this process: a
restarted agent answers None, which tells the MN to reconnect (and so to resync its VMs).
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any

from kvmagent import domain, events
from kvmagent import protocol as p
from kvmagent.libvirt_conn import lv
from kvmagent.registry import command

VERSION_FILE = Path(__file__).resolve().parent.parent / "VERSION"  # written by the installer
_connected: dict[int, str] = {}  # id(agent) -> host uuid connected in this process


def agent_version() -> str | None:
    """The deployed agent's version (the installer's VERSION file next to the package), if any."""
    try:
        return VERSION_FILE.read_text().strip() or None
    except OSError:
        return None


def _version(n: int) -> str:
    return f"{n // 1_000_000}.{n // 1000 % 1000}.{n % 1000}"


def os_release(path: str = "/etc/os-release") -> dict[str, str]:
    out = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip().strip('"')
    return out


def cpuinfo(text: str) -> tuple[str | None, int, int]:
    """(model name, sockets, MHz) from /proc/cpuinfo text; sockets counts distinct physical ids (≥1)."""
    model, mhz, sockets = None, 0, set()
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if not sep:
            continue
        k, v = k.strip(), v.strip()
        if k == "model name" and model is None:
            model = v
        elif k == "cpu MHz" and not mhz:
            mhz = int(float(v))
        elif k == "physical id":
            sockets.add(v)
    return model, max(1, len(sockets)), mhz


def total_memory(meminfo: str) -> int:
    """MemTotal of /proc/meminfo text, in bytes."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no MemTotal in /proc/meminfo")


def _cpu() -> tuple[str | None, int, int, int]:
    model, sockets, mhz = cpuinfo(Path("/proc/cpuinfo").read_text())
    return model, os.cpu_count() or 1, sockets, mhz


def used_memory(agent: Any, host_uuid: str | None) -> int:
    """Memory of the running domains of ours that belong to `host_uuid` (or to no host)."""

    def count(conn: Any) -> int:
        total = 0
        for dom in conn.listAllDomains(lv().VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                root = domain.parse(dom.XMLDesc(0))
            except lv().libvirtError:
                continue  # gone meanwhile
            meta = domain.meta_of(root)
            if meta is not None and meta.host_uuid in (host_uuid, None):
                total += domain.memory_bytes(root)
        return total

    return agent.libvirt.call(count, "listing domains")


@command(p.ConnectCmd)
def connect(agent: Any, cmd: p.ConnectCmd) -> p.ConnectRsp:
    agent.remember(cmd.hostUuid, cmd.sendCommandUrl)
    _connected[id(agent)] = cmd.hostUuid
    events.monitor(agent)
    lib, qemu = agent.libvirt.call(lambda c: (c.getLibVersion(), c.getVersion()), "reading libvirt versions")
    return p.ConnectRsp(hostUuid=cmd.hostUuid, libvirtVersion=_version(lib), qemuVersion=_version(qemu),
                        agentVersion=agent_version())


@command(p.EchoCmd)
def echo(agent: Any, cmd: p.EchoCmd) -> p.Reply:
    return p.Reply()


@command(p.PingCmd)
def ping(agent: Any, cmd: p.PingCmd) -> p.PingRsp:
    events.monitor(agent)
    return p.PingRsp(hostUuid=_connected.get(id(agent)))


@command(p.HostFactCmd)
def facts(agent: Any, cmd: p.HostFactCmd) -> p.HostFactRsp:
    model, cpus, sockets, mhz = _cpu()
    info = agent.libvirt.call(lambda c: c.getInfo(), "reading the node info")  # [model, MiB, cpus, MHz, ...]
    rel = os_release()
    return p.HostFactRsp(
        hypervisorType="KVM", osDistribution=rel.get("ID"), osVersion=rel.get("VERSION_ID"),
        architecture=platform.machine(), cpuModelName=model, cpuNum=cpus, cpuSockets=sockets,
        cpuSpeed=mhz or int(info[3]), totalMemory=total_memory(Path("/proc/meminfo").read_text()),
        hostname=socket.gethostname())


@command(p.HostCapacityCmd)
def capacity(agent: Any, cmd: p.HostCapacityCmd) -> p.HostCapacityRsp:
    events.monitor(agent)
    _, cpus, sockets, mhz = _cpu()
    return p.HostCapacityRsp(cpuNum=cpus, cpuSockets=sockets, cpuSpeed=mhz,
                             totalMemory=total_memory(Path("/proc/meminfo").read_text()),
                             usedMemory=used_memory(agent, cmd.hostUuid))
