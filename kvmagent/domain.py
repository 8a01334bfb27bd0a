"""libvirt domain XML for a VM, built from the typed StartVmCmd, and read back.

Invariants of every domain this agent creates:
- the domain name is the VM uuid (and the libvirt uuid is the VM uuid when it is 32 hex digits);
- `<metadata>` holds `<zs:vm uuid= name= hostUuid=/>` in namespace META_NS: a domain without it is
  not ours, so a restarted agent tells its VMs from anything else libvirt runs;
- every disk and NIC carries the user alias `ua-vol-<volumeUuid>` / `ua-nic-<nicUuid>`, so a
  device is found again by the uuid the MN knows it by; disks are virtio (`vda` is the root
  volume), NICs sit on the Linux bridge NicTO.bridgeName with NicTO.mac;
- the first serial port is logged to `<console_log_dir>/<vmUuid>.log` (truncated at each start);
- VNC graphics with an automatic port; domain type from the agent's acceleration (kvm or qemu).
"""

from __future__ import annotations

import string
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from kvmagent import protocol as p
from kvmagent.config import AgentConfig
from kvmagent.registry import AgentError

META_NS = "http://zstack.org/kvmagent/vm/1"
META_PREFIX = "zs"
VOL_ALIAS, NIC_ALIAS = "ua-vol-", "ua-nic-"
DISK_FORMATS = ("qcow2", "raw")
NIC_MODELS = ("virtio", "e1000", "rtl8139")
BOOT_DEVS = ("hd", "cdrom", "network")
MAX_DISKS = 26

ET.register_namespace(META_PREFIX, META_NS)


@dataclass(frozen=True)
class VmMeta:
    """What our <metadata> says about a domain."""

    vm_uuid: str
    name: str
    host_uuid: str | None


@dataclass(frozen=True)
class Disk:
    volume_uuid: str | None  # None: a disk without our alias
    path: str | None
    dev: str


@dataclass(frozen=True)
class Nic:
    nic_uuid: str | None
    mac: str
    bridge: str | None


def console_log_path(config: AgentConfig, vm_uuid: str) -> Path:
    return Path(config.console_log_dir) / f"{vm_uuid}.log"


def dev_name(index: int) -> str:
    """virtio target name of disk slot `index` (0 → vda, 25 → vdz)."""
    if not 0 <= index < MAX_DISKS:
        raise AgentError(f"disk slot {index} is out of range: a VM has at most {MAX_DISKS} virtio disks")
    return "vd" + string.ascii_lowercase[index]


def free_dev(used: set[str], device_id: int = 0) -> str:
    """The target for a new data disk: `dev_name(device_id)` if free, else the first free one after vda."""
    if 0 < device_id < MAX_DISKS and dev_name(device_id) not in used:
        return dev_name(device_id)
    for i in range(1, MAX_DISKS):
        if dev_name(i) not in used:
            return dev_name(i)
    raise AgentError(f"no free virtio disk slot: {len(used)} disks attached")


def _libvirt_uuid(vm_uuid: str) -> str | None:
    try:
        return str(uuidlib.UUID(hex=vm_uuid))
    except ValueError:
        return None


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    e = ET.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        e.text = text
    return e


def _positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise AgentError(f"{what} must be a positive integer, not {value!r}")
    return value


def disk_element(vol: p.VolumeTO, dev: str) -> ET.Element:
    fmt = vol.format or "qcow2"
    if fmt not in DISK_FORMATS:
        raise AgentError(f"volume {vol.volumeUuid}: format {fmt!r} is not one of {list(DISK_FORMATS)}")
    if vol.deviceType not in ("file", "block"):
        raise AgentError(f"volume {vol.volumeUuid}: deviceType {vol.deviceType!r} is not file or block")
    if not vol.installPath or not vol.installPath.startswith("/"):
        raise AgentError(f"volume {vol.volumeUuid}: installPath must be an absolute path, not {vol.installPath!r}")
    disk = ET.Element("disk", type=vol.deviceType, device="disk")
    _sub(disk, "driver", name="qemu", type=fmt)
    _sub(disk, "source", **({"file": vol.installPath} if vol.deviceType == "file" else {"dev": vol.installPath}))
    _sub(disk, "target", dev=dev, bus="virtio")
    _sub(disk, "serial", vol.volumeUuid[:20])
    _sub(disk, "alias", name=VOL_ALIAS + vol.volumeUuid)
    return disk


def nic_element(nic: p.NicTO) -> ET.Element:
    model = nic.driverType or "virtio"
    if model not in NIC_MODELS:
        raise AgentError(f"NIC {nic.uuid}: driverType {model!r} is not one of {list(NIC_MODELS)}")
    iface = ET.Element("interface", type="bridge")
    _sub(iface, "mac", address=nic.mac)
    _sub(iface, "source", bridge=nic.bridgeName)
    _sub(iface, "model", type=model)
    _sub(iface, "alias", name=NIC_ALIAS + nic.uuid)
    return iface


def to_string(e: ET.Element) -> str:
    return ET.tostring(e, encoding="unicode")


def build(cmd: p.StartVmCmd, config: AgentConfig) -> str:
    """The transient domain XML of `cmd` on this host (AgentError on input libvirt would refuse)."""
    cpus = _positive(cmd.cpuNum, "cpuNum")
    memory_kib = -(-_positive(cmd.memory, "memory") // 1024)
    if cmd.bootDev not in BOOT_DEVS:
        raise AgentError(f"bootDev {cmd.bootDev!r} is not one of {list(BOOT_DEVS)}")
    volumes = [cmd.rootVolume, *cmd.dataVolumes]
    if len({v.volumeUuid for v in volumes}) != len(volumes) or len({v.installPath for v in volumes}) != len(volumes):
        raise AgentError(f"VM {cmd.vmInstanceUuid} has the same volume twice")
    if len({n.uuid for n in cmd.nics}) != len(cmd.nics) or len({n.mac for n in cmd.nics}) != len(cmd.nics):
        raise AgentError(f"VM {cmd.vmInstanceUuid} has two NICs with the same uuid or MAC")

    dom = ET.Element("domain", type=config.domain_type)
    _sub(dom, "name", cmd.vmInstanceUuid)
    lv_uuid = _libvirt_uuid(cmd.vmInstanceUuid)
    if lv_uuid:
        _sub(dom, "uuid", lv_uuid)
    _sub(dom, "title", cmd.vmName)
    meta = _sub(dom, "metadata")
    _sub(meta, f"{{{META_NS}}}vm", uuid=cmd.vmInstanceUuid, name=cmd.vmName, hostUuid=cmd.hostUuid)
    _sub(dom, "memory", str(memory_kib), unit="KiB")
    _sub(dom, "currentMemory", str(memory_kib), unit="KiB")
    _sub(dom, "vcpu", str(cpus), placement="static")
    os_ = _sub(dom, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_, "boot", dev=cmd.bootDev)
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if config.domain_type == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")

    devices = _sub(dom, "devices")
    devices.append(disk_element(cmd.rootVolume, dev_name(0)))
    used = {dev_name(0)}
    for vol in cmd.dataVolumes:
        dev = free_dev(used, vol.deviceId)
        used.add(dev)
        devices.append(disk_element(vol, dev))
    for nic in sorted(cmd.nics, key=lambda n: n.deviceId):
        devices.append(nic_element(nic))
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=str(console_log_path(config, cmd.vmInstanceUuid)), append="off")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    _sub(devices, "graphics", type="vnc", autoport="yes", listen="0.0.0.0", passwd=cmd.consolePassword or None)
    _sub(_sub(devices, "video"), "model", type="vga")
    _sub(devices, "controller", type="usb", model="none")
    _sub(devices, "memballoon", model="none")
    return to_string(dom)


# ---- reading a domain's XML back -----------------------------------------------------------------

def parse(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def meta_of(root: ET.Element) -> VmMeta | None:
    """Our metadata, or None if the domain is not one of ours."""
    e = root.find(f"metadata/{{{META_NS}}}vm")
    if e is None or not e.get("uuid"):
        return None
    return VmMeta(e.get("uuid", ""), e.get("name", ""), e.get("hostUuid"))


def _alias(e: ET.Element, prefix: str) -> str | None:
    a = e.find("alias")
    name = a.get("name", "") if a is not None else ""
    return name[len(prefix):] if name.startswith(prefix) else None


def disks_of(root: ET.Element) -> list[Disk]:
    out = []
    for d in root.findall("devices/disk"):
        src, tgt = d.find("source"), d.find("target")
        path = (src.get("file") or src.get("dev")) if src is not None else None
        out.append(Disk(_alias(d, VOL_ALIAS), path, tgt.get("dev", "") if tgt is not None else ""))
    return out


def nics_of(root: ET.Element) -> list[Nic]:
    out = []
    for i in root.findall("devices/interface"):
        mac, src = i.find("mac"), i.find("source")
        out.append(Nic(_alias(i, NIC_ALIAS), mac.get("address", "").lower() if mac is not None else "",
                       src.get("bridge") if src is not None else None))
    return out


def vnc_port(root: ET.Element) -> int | None:
    g = root.find("devices/graphics[@type='vnc']")
    port = int(g.get("port", "-1")) if g is not None else -1
    return port if port > 0 else None


def memory_bytes(root: ET.Element) -> int:
    m = root.find("memory")
    if m is None or not m.text:
        return 0
    factor = {"b": 1, "bytes": 1, "KiB": 1024, "k": 1024, "MiB": 2**20, "M": 2**20, "GiB": 2**30, "G": 2**30}
    return int(m.text) * factor.get(m.get("unit", "KiB"), 1024)
