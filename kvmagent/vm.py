"""VM commands of the real agent, on libvirt: transient domains built by kvmagent.domain.

Behaviour follows the simulator (simulator/hosts.py), the protocol's reference:
- start defines and starts a transient domain in one libvirt call (a failure leaves nothing); its
  volumes' files and its NICs' bridges must exist; a VM already Running here is refused, one in
  another state (Paused...) is replaced;
- stop is graceful (ACPI power button, then force after `timeout` s) or `cold` (force at once);
  stop and destroy of an absent VM succeed; a stopped VM's domain is gone (transient);
- reboot is a stop (graceful, with the same timeout and fallback) then a start of the same
  definition; pause needs Running, resume needs Paused;
- device changes apply to the running domain (AFFECT_LIVE); a detach waits until the guest has
  released the device (DETACH_WAIT s), else it fails saying so;
- migrate is libvirt's peer-to-peer live migration to qemu+tcp://<destHostIp>/system; the storage
  is shared (both hosts see the volume files: no copy) unless storageMigrationPolicy is FullCopy or
  IncCopy (the disks are copied into files of the same paths the destination already has); the
  destination's copy carries the destination host uuid in its metadata.
Every state change the agent makes runs inside `events.monitor(agent).caused(vm)`, so it is not
reported back to the MN as an out-of-band event.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kvmagent import domain, events
from kvmagent import protocol as p
from kvmagent.libvirt_conn import is_error, lv
from kvmagent.registry import AgentError, command

log = logging.getLogger(__name__)

DETACH_WAIT = 20.0
POLL = 0.2
MIGRATION_URI = "qemu+tcp://{ip}/system"
COPY_POLICIES = ("FullCopy", "IncCopy")  # storageMigrationPolicy values that copy the disks
_RUNNING_STATES = (1, 2, 4)  # VIR_DOMAIN_RUNNING, BLOCKED, SHUTDOWN (shutting down: still running)
_PAUSED_STATES = (3, 7)  # VIR_DOMAIN_PAUSED, PMSUSPENDED


def state_name(libvirt_state: int) -> str:
    """A libvirt domain state as the protocol's VM state."""
    if libvirt_state in _RUNNING_STATES:
        return p.VM_RUNNING
    if libvirt_state in _PAUSED_STATES:
        return p.VM_PAUSED
    if libvirt_state == 5:  # VIR_DOMAIN_SHUTOFF
        return p.VM_STOPPED
    return p.VM_UNKNOWN


def _where(agent: Any) -> str:
    return f"host {agent.host_uuid}" if agent.host_uuid else "this host"


def _lookup(conn: Any, vm_uuid: str) -> Any | None:
    try:
        return conn.lookupByName(vm_uuid)
    except lv().libvirtError as exc:
        if is_error(exc, lv().VIR_ERR_NO_DOMAIN):
            return None
        raise


def _state(dom: Any) -> str | None:
    """The domain's VM state; None if it vanished meanwhile."""
    try:
        return state_name(dom.state()[0])
    except lv().libvirtError as exc:
        if is_error(exc, lv().VIR_ERR_NO_DOMAIN):
            return None
        raise


def _call(agent: Any, fn: Callable[[Any], Any], what: str, retry: bool = True) -> Any:
    return agent.libvirt.call(fn, what, retry=retry)


def _existing(agent: Any, conn: Any, vm_uuid: str) -> Any:
    dom = _lookup(conn, vm_uuid)
    if dom is None:
        raise AgentError(f"no VM {vm_uuid} on {_where(agent)}")
    return dom


def _need_state(agent: Any, dom: Any, vm_uuid: str, action: str, *states: str) -> str:
    st = _state(dom)
    if st is None:
        raise AgentError(f"no VM {vm_uuid} on {_where(agent)}")
    if st not in states:
        raise AgentError(f"cannot {action} VM {vm_uuid} on {_where(agent)}: it is {st}, not {' or '.join(states)}")
    return st


def _need_bridge(agent: Any, bridge: str, who: str) -> None:
    if not bridge or "/" in bridge or not Path(f"/sys/class/net/{bridge}/bridge").is_dir():
        raise AgentError(f"{who}: bridge {bridge} does not exist on {_where(agent)}")


def _need_file(agent: Any, vol: p.VolumeTO, who: str) -> None:
    if not vol.installPath or not Path(vol.installPath).exists():
        raise AgentError(f"{who}: volume {vol.volumeUuid} file {vol.installPath} does not exist on {_where(agent)}")


def _live(dom: Any) -> ET.Element:
    return domain.parse(dom.XMLDesc(0))


# ---- lifecycle ------------------------------------------------------------------------------------

@command(p.StartVmCmd)
def start(agent: Any, cmd: p.StartVmCmd) -> p.StartVmRsp:
    mon = events.monitor(agent)
    vm = cmd.vmInstanceUuid
    if cmd.hostUuid is None:
        cmd = dataclasses.replace(cmd, hostUuid=agent.host_uuid)
    xml = domain.build(cmd, agent.config)
    for vol in (cmd.rootVolume, *cmd.dataVolumes):
        _need_file(agent, vol, f"VM {vm}")
    for nic in cmd.nics:
        _need_bridge(agent, nic.bridgeName, f"NIC {nic.uuid} of VM {vm}")
    Path(agent.config.console_log_dir).mkdir(parents=True, exist_ok=True)

    def run(conn: Any) -> int | None:
        old = _lookup(conn, vm)
        if old is not None:
            if _state(old) == p.VM_RUNNING:
                raise AgentError(f"VM {vm} is already running on {_where(agent)}")
            _force_off(old)
        return domain.vnc_port(_live(conn.createXML(xml, 0)))

    with mon.caused(vm, p.VM_RUNNING, p.VM_STOPPED):  # a replaced domain stops first
        port = _call(agent, run, f"starting VM {vm}")
    mon.remember(vm, cmd.hostUuid)
    log.info("VM %s started (VNC port %s)", vm, port)
    return p.StartVmRsp(vncPort=port)


def _force_off(dom: Any) -> None:
    """Destroy (and undefine, if persistent) a domain; absent or already off is fine."""
    libvirt = lv()
    try:
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefine()
    except libvirt.libvirtError as exc:
        if not is_error(exc, libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
            raise


def _gone(agent: Any, vm_uuid: str) -> bool:
    def check(conn: Any) -> bool:
        dom = _lookup(conn, vm_uuid)
        return dom is None or _state(dom) in (None, p.VM_STOPPED)  # a transient domain vanishes as it stops

    return _call(agent, check, f"watching VM {vm_uuid}")


def _stop(agent: Any, vm_uuid: str, graceful: bool, timeout: float) -> bool:
    """Stop the VM; True if it went down gracefully, False if forced (or absent)."""
    libvirt = lv()

    def ask(conn: Any) -> bool:
        """Press the power button; False when there is no point waiting (absent, paused, refused)."""
        dom = _lookup(conn, vm_uuid)
        if dom is None or _state(dom) != p.VM_RUNNING:
            return False  # absent, or paused: a paused guest cannot hear the button
        try:
            dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        except libvirt.libvirtError as exc:
            log.warning("ACPI shutdown of VM %s failed (%s): forcing it off", vm_uuid, exc)
            return False
        return True

    if graceful and _call(agent, ask, f"shutting VM {vm_uuid} down"):
        deadline = time.monotonic() + max(0.0, timeout)
        while time.monotonic() < deadline:
            if _gone(agent, vm_uuid):
                log.info("VM %s shut down gracefully", vm_uuid)
                return True
            time.sleep(POLL)
        log.info("VM %s did not shut down within %ss: forcing it off", vm_uuid, timeout)

    def force(conn: Any) -> None:
        dom = _lookup(conn, vm_uuid)
        if dom is not None:
            _force_off(dom)

    _call(agent, force, f"destroying VM {vm_uuid}")
    return False


def _stop_type(cmd: p.VmCmd) -> bool:
    """True for a graceful stop."""
    if cmd.type not in ("grace", "cold", "force"):
        raise AgentError(f"stop type {cmd.type!r} is not grace, cold or force")
    return cmd.type == "grace"


@command(p.StopVmCmd)
def stop(agent: Any, cmd: p.StopVmCmd) -> p.Reply:
    mon = events.monitor(agent)
    graceful = _stop_type(cmd)
    with mon.caused(cmd.uuid, p.VM_STOPPED):
        _stop(agent, cmd.uuid, graceful, cmd.timeout)
    mon.forget(cmd.uuid)
    return p.Reply()


@command(p.DestroyVmCmd)
def destroy(agent: Any, cmd: p.DestroyVmCmd) -> p.Reply:
    mon = events.monitor(agent)
    with mon.caused(cmd.uuid, p.VM_STOPPED):
        _stop(agent, cmd.uuid, False, 0)
    mon.forget(cmd.uuid)
    return p.Reply()


@command(p.RebootVmCmd)
def reboot(agent: Any, cmd: p.RebootVmCmd) -> p.Reply:
    mon = events.monitor(agent)
    vm = cmd.uuid
    libvirt = lv()

    def definition(conn: Any) -> str:
        dom = _existing(agent, conn, vm)
        _need_state(agent, dom, vm, "reboot", p.VM_RUNNING)
        return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)

    with mon.caused(vm, p.VM_STOPPED, p.VM_RUNNING):
        xml = _call(agent, definition, f"reading VM {vm}")
        _stop(agent, vm, _stop_type(cmd), cmd.timeout)
        _call(agent, lambda c: c.createXML(xml, 0), f"starting VM {vm} again")
    return p.Reply()


def _pause_or_resume(agent: Any, vm: str, verb: str, need: str, becomes: str) -> p.Reply:
    """Suspend (verb "pause") or resume a domain that must be in state `need`."""
    def run(conn: Any) -> None:
        dom = _existing(agent, conn, vm)
        _need_state(agent, dom, vm, verb, need)
        dom.suspend() if verb == "pause" else dom.resume()

    with events.monitor(agent).caused(vm, becomes):
        _call(agent, run, f"{verb[:-1]}ing VM {vm}")
    return p.Reply()


@command(p.PauseVmCmd)
def pause(agent: Any, cmd: p.PauseVmCmd) -> p.Reply:
    return _pause_or_resume(agent, cmd.uuid, "pause", p.VM_RUNNING, p.VM_PAUSED)


@command(p.ResumeVmCmd)
def resume(agent: Any, cmd: p.ResumeVmCmd) -> p.Reply:
    return _pause_or_resume(agent, cmd.uuid, "resume", p.VM_PAUSED, p.VM_RUNNING)


@command(p.VmSyncCmd)
def vm_sync(agent: Any, cmd: p.VmSyncCmd) -> p.VmSyncRsp:
    """The states of this host's VMs: our domains whose metadata names cmd.hostUuid (or no host)."""
    mon = events.monitor(agent)

    def run(conn: Any) -> dict[str, str]:
        out = {}
        for dom in conn.listAllDomains(0):
            try:
                meta = domain.meta_of(_live(dom))
                st = _state(dom)
            except lv().libvirtError:
                continue  # gone while listing
            if meta is not None and st is not None and meta.host_uuid in (cmd.hostUuid, None):
                out[meta.vm_uuid] = st
                mon.remember(meta.vm_uuid, meta.host_uuid)
        return out

    return p.VmSyncRsp(states=_call(agent, run, "listing VMs"))


@command(p.GetVncPortCmd)
def vnc_port(agent: Any, cmd: p.GetVncPortCmd) -> p.GetVncPortRsp:
    def run(conn: Any) -> int | None:
        return domain.vnc_port(_live(_existing(agent, conn, cmd.vmUuid)))

    port = _call(agent, run, f"reading VM {cmd.vmUuid}")
    if port is None:
        raise AgentError(f"VM {cmd.vmUuid} on {_where(agent)} has no VNC port (it is not running)")
    return p.GetVncPortRsp(port=port)


# ---- migration ------------------------------------------------------------------------------------

def destination_xml(xml: str, dest_host_uuid: str) -> str:
    """The migratable definition with our metadata naming the destination host."""
    root = domain.parse(xml)
    e = root.find(f"metadata/{{{domain.META_NS}}}vm")
    if e is not None:
        e.set("hostUuid", dest_host_uuid)
    return domain.to_string(root)


@command(p.MigrateVmCmd)
def migrate(agent: Any, cmd: p.MigrateVmCmd) -> p.Reply:
    vm = cmd.vmUuid
    if agent.host_uuid and cmd.srcHostUuid != agent.host_uuid:
        raise AgentError(f"migration source {cmd.srcHostUuid} is not this host {agent.host_uuid}")
    if cmd.destHostUuid == cmd.srcHostUuid:
        raise AgentError(f"cannot migrate VM {vm} to its own host {cmd.srcHostUuid}")
    if cmd.storageMigrationPolicy not in (None, "Shared", *COPY_POLICIES):
        raise AgentError(f"storageMigrationPolicy {cmd.storageMigrationPolicy!r} is not Shared, "
                         f"{' or '.join(COPY_POLICIES)}")
    libvirt = lv()
    mon = events.monitor(agent)
    dest_uri = MIGRATION_URI.format(ip=cmd.destHostIp)

    def run(conn: Any) -> None:
        dom = _existing(agent, conn, vm)
        _need_state(agent, dom, vm, "migrate", p.VM_RUNNING)
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE)
        params: dict[str, Any] = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: destination_xml(xml, cmd.destHostUuid),
                                  libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{cmd.destHostIp}"}
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_AUTO_CONVERGE
                 | libvirt.VIR_MIGRATE_ABORT_ON_ERROR)
        if cmd.storageMigrationPolicy in COPY_POLICIES:
            flags |= (libvirt.VIR_MIGRATE_NON_SHARED_INC if cmd.storageMigrationPolicy == "IncCopy"
                      else libvirt.VIR_MIGRATE_NON_SHARED_DISK)
        else:  # the MN says the storage is shared: libvirt need not recognise the file system as such
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        dom.migrateToURI3(dest_uri, params, flags)

    with mon.caused(vm, p.VM_STOPPED, p.VM_RUNNING, p.VM_PAUSED):
        _call(agent, run, f"migrating VM {vm} to {dest_uri}", retry=False)
    mon.forget(vm)
    log.info("VM %s migrated to %s", vm, dest_uri)
    return p.Reply()


# ---- devices --------------------------------------------------------------------------------------

def _detach(agent: Any, vm_uuid: str, element: ET.Element, still_there: Callable[[ET.Element], bool],
            what: str) -> None:
    """Unplug a device from the running domain and wait until the guest released it."""
    libvirt = lv()
    _call(agent, lambda c: _existing(agent, c, vm_uuid).detachDeviceFlags(
        domain.to_string(element), libvirt.VIR_DOMAIN_AFFECT_LIVE), f"detaching {what} from VM {vm_uuid}")
    deadline = time.monotonic() + DETACH_WAIT
    while True:
        root = _call(agent, lambda c: _live(_existing(agent, c, vm_uuid)), f"reading VM {vm_uuid}")
        if not still_there(root):
            return
        if time.monotonic() >= deadline:
            raise AgentError(f"VM {vm_uuid} did not release {what} within {DETACH_WAIT:.0f}s: the guest must "
                             "support hot-unplug (the device goes when the guest acknowledges it)")
        time.sleep(POLL)


def _device(root: ET.Element, kind: str, alias: str) -> ET.Element | None:
    for e in root.findall(f"devices/{kind}"):
        a = e.find("alias")
        if a is not None and a.get("name") == alias:
            return e
    return None


@command(p.AttachDataVolumeCmd)
def attach_volume(agent: Any, cmd: p.AttachDataVolumeCmd) -> p.Reply:
    vol, vm = cmd.volume, cmd.vmUuid
    libvirt = lv()

    def run(conn: Any) -> None:
        dom = _existing(agent, conn, vm)
        _need_state(agent, dom, vm, "attach a volume to", p.VM_RUNNING, p.VM_PAUSED)
        disks = domain.disks_of(_live(dom))
        if any(d.volume_uuid == vol.volumeUuid or d.path == vol.installPath for d in disks):
            raise AgentError(f"volume {vol.volumeUuid} ({vol.installPath}) is already attached to VM {vm}")
        _need_file(agent, vol, f"VM {vm}")
        disk = domain.disk_element(vol, domain.free_dev({d.dev for d in disks}, vol.deviceId))
        dom.attachDeviceFlags(domain.to_string(disk), libvirt.VIR_DOMAIN_AFFECT_LIVE)

    _call(agent, run, f"attaching volume {vol.volumeUuid} to VM {vm}")
    return p.Reply()


@command(p.DetachDataVolumeCmd)
def detach_volume(agent: Any, cmd: p.DetachDataVolumeCmd) -> p.Reply:
    vol, vm = cmd.volume, cmd.vmUuid

    def find(root: ET.Element) -> ET.Element | None:
        for e, d in zip(root.findall("devices/disk"), domain.disks_of(root), strict=True):
            if d.volume_uuid == vol.volumeUuid or (d.volume_uuid is None and d.path == vol.installPath):
                return e
        return None

    root = _call(agent, lambda c: _live(_existing(agent, c, vm)), f"reading VM {vm}")
    element = find(root)
    if element is None:
        raise AgentError(f"volume {vol.volumeUuid} is not attached to VM {vm}")
    target = element.find("target")
    if target is not None and target.get("dev") == domain.dev_name(0):
        raise AgentError(f"volume {vol.volumeUuid} is the root volume of VM {vm}; it cannot be detached")
    _detach(agent, vm, element, lambda r: find(r) is not None, f"volume {vol.volumeUuid}")
    return p.Reply()


@command(p.AttachNicCmd)
def attach_nic(agent: Any, cmd: p.AttachNicCmd) -> p.Reply:
    nic, vm = cmd.nic, cmd.vmUuid
    libvirt = lv()
    element = domain.nic_element(nic)

    def run(conn: Any) -> None:
        dom = _existing(agent, conn, vm)
        _need_state(agent, dom, vm, "attach a NIC to", p.VM_RUNNING, p.VM_PAUSED)
        _need_bridge(agent, nic.bridgeName, f"NIC {nic.uuid} of VM {vm}")
        if any(n.nic_uuid == nic.uuid or n.mac == nic.mac.lower() for n in domain.nics_of(_live(dom))):
            raise AgentError(f"NIC {nic.uuid} (MAC {nic.mac}) is already attached to VM {vm}")
        dom.attachDeviceFlags(domain.to_string(element), libvirt.VIR_DOMAIN_AFFECT_LIVE)

    _call(agent, run, f"attaching NIC {nic.uuid} to VM {vm}")
    return p.Reply()


@command(p.DetachNicCmd)
def detach_nic(agent: Any, cmd: p.DetachNicCmd) -> p.Reply:
    nic, vm = cmd.nic, cmd.vmUuid
    alias = domain.NIC_ALIAS + nic.uuid
    root = _call(agent, lambda c: _live(_existing(agent, c, vm)), f"reading VM {vm}")
    element = _device(root, "interface", alias)
    if element is None:
        raise AgentError(f"NIC {nic.uuid} is not attached to VM {vm}")
    _detach(agent, vm, element, lambda r: _device(r, "interface", alias) is not None, f"NIC {nic.uuid}")
    return p.Reply()
