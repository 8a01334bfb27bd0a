"""What only the real agent has: a real guest's graceful stop and reboot, hot-plug the guest sees,
an agent restart that finds its VMs, a lost libvirt connection survived (events included), and the
error path of live migration.

One real `zstack-kvmagent` process (restarted by one test) with a local primary storage, an SFTP
backup storage (this machine over SCP), a bridge on a veth pair, and an MN stand-in that records
the events the agent posts. Guests run under TCG. Here migration's error paths (a successful live
migration to a second libvirt host is in the conformance run, test_agent_conformance_real.py).
Everything made is removed at the end, and no domain of the tests is left in libvirt.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from integration.agent_conformance import mac, new_uuid, refused, send
from integration.agent_keys import signed_client
from kvmagent import events
from kvmagent import protocol as p
from mn.agent import AgentClient
from system_tests import harness, image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="libvirt, bridges and the test login need root")
GiB, MiB = 2**30, 2**20
BOOT_TIMEOUT = 240


def sh(*args: str) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{' '.join(args)}: {r.stderr}"
    return r.stdout


class _Sink(http.server.BaseHTTPRequestHandler):
    received: queue.Queue[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        type(self).received.put(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Env:
    root: Path
    client: AgentClient
    host_uuid: str
    ps_uuid: str
    bs_uuid: str
    bridge: str
    events_url: str
    events: queue.Queue[dict[str, Any]]
    fetch: dict[str, Any]
    image_uuid: str = ""
    image_path: str = ""
    agent: harness.AgentProcess | None = None
    vms: set[str] = field(default_factory=set)
    _agent_stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start_agent(self) -> harness.AgentProcess:
        self.agent = self._agent_stack.enter_context(harness.agent_process(self.root / "agent"))
        return self.agent

    def stop_agent(self) -> None:
        self._agent_stack.close()
        self.agent = None

    @property
    def url(self) -> str:
        assert self.agent is not None
        return self.agent.url

    def console(self, vm: str) -> str:
        assert self.agent is not None
        f = self.agent.console_dir / f"{vm}.log"
        return f.read_text(errors="replace") if f.exists() else ""

    def wait_console(self, vm: str, text: str, count: int = 1, timeout: float = BOOT_TIMEOUT) -> float:
        """Seconds until the console log shows `text` `count` times."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.console(vm).count(text) >= count:
                return time.monotonic() - t0
            time.sleep(0.3)
        raise AssertionError(f"VM {vm}: {text!r} x{count} not on the console within {timeout}s:\n{self.console(vm)}")

    def volume(self, size: int = GiB) -> p.VolumeTO:
        vol = new_uuid()
        r = send(self.client, self.url, p.CreateEmptyVolumeCmd(psUuid=self.ps_uuid, volumeUuid=vol, size=size),
                 p.VolumeRsp)
        return p.VolumeTO(volumeUuid=vol, installPath=r.installPath, size=r.size)

    def guest_root(self) -> p.VolumeTO:
        vol = new_uuid()
        r = send(self.client, self.url, p.CreateVolumeFromImageCmd(
            psUuid=self.ps_uuid, volumeUuid=vol, imageUuid=self.image_uuid, imageInstallPath=self.image_path,
            backupStorageUuid=self.bs_uuid, size=GiB, **self.fetch), p.VolumeRsp)
        return p.VolumeTO(volumeUuid=vol, installPath=r.installPath, size=r.size)

    def start(self, root: p.VolumeTO, memory: int = 256 * MiB) -> p.StartVmCmd:
        cmd = p.StartVmCmd(vmInstanceUuid=new_uuid(), vmName="st-agent", cpuNum=1, memory=memory, rootVolume=root,
                           hostUuid=self.host_uuid, nics=[p.NicTO(uuid=new_uuid(), mac=mac(), bridgeName=self.bridge)])
        self.vms.add(cmd.vmInstanceUuid)
        send(self.client, self.url, cmd, p.StartVmRsp)
        return cmd

    def states(self) -> dict[str, str]:
        return send(self.client, self.url, p.VmSyncCmd(hostUuid=self.host_uuid), p.VmSyncRsp).states


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    harness.ensure_libvirt()
    harness.ensure_sshd()
    user, _ = harness.ensure_test_login()
    root = Path(tempfile.mkdtemp(prefix="zstack-kvm-agent-", dir="/var/tmp"))
    root.chmod(0o755)
    iface = f"zsa{new_uuid()[:6]}"
    sink = type("Sink", (_Sink,), {"received": queue.Queue()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, True)
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        key = stack.enter_context(harness.authorized_key(user, root))
        sh("ip", "link", "add", iface, "type", "veth", "peer", "name", f"{iface}p")
        stack.callback(subprocess.run, ["ip", "link", "del", iface], capture_output=True)
        sh("ip", "link", "set", iface, "up")
        e = Env(root, signed_client(timeout=180), new_uuid(), new_uuid(), new_uuid(), p.bridge_name(new_uuid()),
                f"http://127.0.0.1:{server.server_address[1]}/events", sink.received,
                {"backupStorageType": "SftpBackupStorage", "backupStorageHostname": "127.0.0.1",
                 "backupStorageUsername": user, "sshKey": key})
        e.start_agent()
        stack.callback(e.stop_agent)
        send(e.client, e.url, p.ConnectCmd(hostUuid=e.host_uuid, sendCommandUrl=e.events_url))
        send(e.client, e.url, p.InitPrimaryStorageCmd(psUuid=e.ps_uuid, url=str(root / "ps")))
        harness.images_group_of(root / "bs" / "images", user)
        send(e.client, e.url, p.ConnectBackupStorageCmd(bsUuid=e.bs_uuid, url=str(root / "bs")))
        e.image_uuid = new_uuid()
        e.image_path = send(e.client, e.url, p.DownloadImageCmd(bsUuid=e.bs_uuid, imageUuid=e.image_uuid, allowedFileDirectories=["/"],
                                                                url=str(image.build())), p.DownloadImageRsp).installPath
        send(e.client, e.url, p.CreateBridgeCmd(physicalInterfaceName=iface, bridgeName=e.bridge,
                                                l2NetworkUuid=new_uuid(), hostUuid=e.host_uuid))
        stack.callback(subprocess.run, ["ip", "link", "del", e.bridge], capture_output=True)
        yield e
        for vm in e.states():
            send(e.client, e.url, p.DestroyVmCmd(uuid=vm, hostUuid=e.host_uuid))
        names = set(sh("virsh", "-c", harness.LIBVIRT_URI, "list", "--all", "--name").split())
        assert not names & e.vms, "domains of the tests are left in libvirt"
        send(e.client, e.url, p.DeleteBridgeCmd(physicalInterfaceName=iface, bridgeName=e.bridge,
                                                l2NetworkUuid=new_uuid(), hostUuid=e.host_uuid))


def drain(q: queue.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def test_a_real_guest_stops_gracefully_reboots_and_sees_hotplug(env: Env, report: dict[str, str]) -> None:
    cmd = env.start(env.guest_root())
    vm = cmd.vmInstanceUuid
    booted = env.wait_console(vm, image.BOOT_MARKER)
    env.wait_console(vm, f"{image.DISK_MARKER} vda")

    data = env.volume()
    send(env.client, env.url, p.AttachDataVolumeCmd(vmUuid=vm, volume=data, hostUuid=env.host_uuid))
    env.wait_console(vm, f"{image.DISK_MARKER} vdb", timeout=60)
    send(env.client, env.url, p.DetachDataVolumeCmd(vmUuid=vm, volume=data, hostUuid=env.host_uuid))
    env.wait_console(vm, f"{image.DISK_MARKER}-GONE vdb", timeout=60)

    t0 = time.monotonic()
    send(env.client, env.url, p.RebootVmCmd(uuid=vm, hostUuid=env.host_uuid, timeout=120))
    rebooted = time.monotonic() - t0
    assert env.states()[vm] == p.VM_RUNNING
    env.wait_console(vm, image.BOOT_MARKER)  # the log restarts with the new boot

    t0 = time.monotonic()
    send(env.client, env.url, p.StopVmCmd(uuid=vm, hostUuid=env.host_uuid, timeout=120))
    stopped = time.monotonic() - t0
    assert stopped < 90, f"the guest did not power off on ACPI (forced after the timeout): {stopped:.0f}s"
    assert vm not in env.states()
    time.sleep(1)
    assert [e for e in drain(env.events) if e.get("vmUuid") == vm] == []  # all of it was the agent's doing
    report["guest boot (TCG)"] = f"{booted:.1f} s to {image.BOOT_MARKER}"
    report["graceful reboot / stop"] = f"{rebooted:.1f} s / {stopped:.1f} s"


def test_a_restarted_agent_finds_its_vms(env: Env) -> None:
    vm = env.start(env.volume()).vmInstanceUuid
    env.stop_agent()
    assert vm in sh("virsh", "-c", harness.LIBVIRT_URI, "list", "--name")  # VMs outlive their agent
    again = env.start_agent()  # same state directory, new process and port
    assert send(env.client, again.url, p.PingCmd(hostUuid=env.host_uuid), p.PingRsp).hostUuid is None  # reconnect me
    assert env.states()[vm] == p.VM_RUNNING  # found again by its metadata
    send(env.client, again.url, p.ConnectCmd(hostUuid=env.host_uuid, sendCommandUrl=env.events_url))
    assert send(env.client, again.url, p.PingCmd(hostUuid=env.host_uuid), p.PingRsp).hostUuid == env.host_uuid
    sh("virsh", "-c", harness.LIBVIRT_URI, "destroy", vm)  # and events of old VMs still reach the MN
    event = env.events.get(timeout=30)
    assert (event["vmUuid"], event["state"], event["hostUuid"]) == (vm, p.VM_STOPPED, env.host_uuid)
    assert vm not in env.states()


def _libvirt_client_ids(pid: int) -> list[str]:
    """libvirtd's ids of the client connections opened by process `pid` (virt-admin)."""
    ids = []
    for line in sh("virt-admin", "srv-clients-list", "libvirtd").splitlines()[2:]:
        cid = line.split()[0] if line.strip() else ""
        if not cid.isdigit():
            continue
        info = dict(x.split(":", 1) for x in sh("virt-admin", "client-info", "libvirtd", cid).splitlines() if ":" in x)
        if info.get("unix_process_id", "").strip() == str(pid):
            ids.append(cid)
    return ids


def test_a_lost_libvirt_connection_is_survived(env: Env) -> None:
    assert env.agent is not None
    vm = env.start(env.volume()).vmInstanceUuid
    started = time.monotonic()
    ids = _libvirt_client_ids(env.agent.pid)
    assert ids, "the agent holds no libvirt connection"
    for cid in ids:
        sh("virt-admin", "client-disconnect", "libvirtd", cid)
    assert env.states()[vm] == p.VM_RUNNING  # reconnected, transparently
    assert _libvirt_client_ids(env.agent.pid) and not set(ids) & set(_libvirt_client_ids(env.agent.pid))
    drain(env.events)
    time.sleep(max(0.0, started + events.GRACE - time.monotonic()))  # stops right after a start are its own
    sh("virsh", "-c", harness.LIBVIRT_URI, "destroy", vm)  # the event callback was registered again
    try:
        event = env.events.get(timeout=30)
    except queue.Empty:
        raise AssertionError("no event; the agent's log ends:\n" + env.agent.log.read_text()[-3000:]) from None
    assert (event["vmUuid"], event["state"], event["reason"]) == (vm, p.VM_STOPPED, "destroyed outside the agent")


def test_migration_errors_are_clear_and_leave_the_vm_running(env: Env) -> None:
    vm = env.start(env.volume()).vmInstanceUuid
    other = new_uuid()
    cmd = p.MigrateVmCmd(vmUuid=vm, srcHostUuid=env.host_uuid, destHostUuid=other, destHostIp="127.0.0.1",
                         destAgentUrl="http://127.0.0.1:9")
    # no libvirtd listens on TCP here: libvirt's own message comes back
    refused(env.client, env.url, cmd, f"migrating VM {vm} to qemu+tcp://127.0.0.1/system failed", "127.0.0.1")
    assert env.states()[vm] == p.VM_RUNNING
    refused(env.client, env.url, p.MigrateVmCmd(vmUuid=vm, srcHostUuid=other, destHostUuid=env.host_uuid,
                                                destHostIp="127.0.0.1", destAgentUrl=""), "is not this host")
    refused(env.client, env.url, p.MigrateVmCmd(vmUuid=vm, srcHostUuid=env.host_uuid, destHostUuid=env.host_uuid,
                                                destHostIp="127.0.0.1", destAgentUrl=""), "to its own host")
    refused(env.client, env.url, p.MigrateVmCmd(vmUuid=new_uuid(), srcHostUuid=env.host_uuid, destHostUuid=other,
                                                destHostIp="127.0.0.1", destAgentUrl=""), "no VM")
    refused(env.client, env.url, p.MigrateVmCmd(**{**p.to_wire(cmd), "storageMigrationPolicy": "Teleport"}),
            "storageMigrationPolicy 'Teleport'")
    send(env.client, env.url, p.PauseVmCmd(uuid=vm))
    refused(env.client, env.url, cmd, "it is Paused, not Running")
    send(env.client, env.url, p.DestroyVmCmd(uuid=vm))
