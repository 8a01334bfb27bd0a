"""Agent conformance against the real agent: the shared suite (integration/agent_conformance.py) sent
to a `zstack-kvmagent` process on this machine's libvirt, guests under TCG.

One agent process serves the module; each test gets a fresh host uuid, a local primary storage and
an SFTP backup storage in their own directories, veth pairs as physical interfaces (this kernel
has no dummy links) and the tiny guest image of system_tests/image.py as its bootable image, fetched
over SCP as the `zstack-test` login with a key made for the run. After each test every VM of its
host is destroyed through the agent and checked gone from libvirt, and its bridges, links and
directories are removed. The second host of test_migrate is a second libvirtd with its own agent
in network and mount namespaces (harness.second_libvirt_host): a real live migration, over shared
storage (it sees this machine's files).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.agent_conformance import (  # noqa: F401 - the shared tests and fixtures, collected here
    AgentUnderTest,
    MiB,
    client_fixture,
    new_uuid,
    send,
    test_async_form_with_reply_within_answers_inline,
    test_backup_storage,
    test_backup_storage_refuses_hostile_urls,
    test_bridges,
    test_connect_echo_ping,
    test_data_volumes,
    test_facts_and_capacity,
    test_migrate,
    test_nics,
    test_out_of_band_stop_is_reported_to_the_mn,
    test_primary_storage,
    test_start_needs_real_volumes_and_bridges,
    test_vm_lifecycle,
    test_volume_snapshot,
)
from kvmagent import protocol as p
from mn.agent import AgentClient
from system_tests import harness, image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="libvirt, bridges and the test login need root")
GUEST_BOOT_TIMEOUT = 180


def sh(*args: str) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{' '.join(args)}: {r.stderr}"
    return r.stdout


def links() -> set[str]:
    return {d["ifname"] for d in json.loads(sh("ip", "-j", "link", "show"))}


def kernel_has_vlan(iface: str) -> bool:
    r = subprocess.run(["ip", "link", "add", "link", iface, "name", f"{iface}.9", "type", "vlan", "id", "9"],
                       capture_output=True)
    if r.returncode == 0:
        sh("ip", "link", "del", f"{iface}.9")
    return r.returncode == 0


def our_domains(vm_uuids: set[str]) -> set[str]:
    names = sh("virsh", "-c", harness.LIBVIRT_URI, "list", "--all", "--name").split()
    return vm_uuids & set(names)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="zstack-conf-", dir="/var/tmp"))
    d.chmod(0o755)  # QEMU (libvirt-qemu) and the SCP login must reach the volumes and images
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def real_agent(workdir: Path) -> Iterator[harness.AgentProcess]:
    harness.ensure_libvirt()
    with harness.agent_process(workdir / "agent") as proc:
        yield proc


@pytest.fixture(scope="module")
def host2(workdir: Path, real_agent: harness.AgentProcess) -> Iterator[harness.SecondHost]:
    """A second libvirt host in namespaces (shared storage: it sees this machine's files)."""
    with harness.second_libvirt_host(workdir) as h:
        yield h


@pytest.fixture(scope="module")
def sftp_login(workdir: Path) -> Iterator[dict[str, object]]:
    """CreateVolumeFromImageCmd's fields for fetching images over SCP from this machine."""
    harness.ensure_sshd()
    user, _ = harness.ensure_test_login()
    with harness.authorized_key(user, workdir) as key:
        yield {"backupStorageType": "SftpBackupStorage", "backupStorageHostname": "127.0.0.1",
               "backupStorageSshPort": 22, "backupStorageUsername": user, "sshKey": key}


@pytest.fixture(scope="module")
def guest_image() -> Path:
    return image.build()


@pytest.fixture
def agent(client: AgentClient, real_agent: harness.AgentProcess, host2: harness.SecondHost,
          sftp_login: dict[str, object], guest_image: Path, workdir: Path) -> Iterator[AgentUnderTest]:
    """The real agent as the agent under test, with a fresh host uuid, storages and interfaces."""
    url, console = real_agent.url, real_agent.console_dir
    tag = new_uuid()[:6]
    root = workdir / tag
    (root / "src").mkdir(parents=True)
    # Images are 0640 in the group of <bs>/images: the (non-root) login reads them through it.
    images = root / "bs" / "images"
    images.mkdir(mode=0o750, parents=True)
    os.chown(images, 0, pwd.getpwnam(str(sftp_login["backupStorageUsername"])).pw_gid)
    made_links: list[str] = []
    made_links2: list[str] = []  # on host2
    on2 = ("ip", "netns", "exec", host2.netns)

    def make_interface(on_host2: bool = False) -> str:
        name = f"zsc{tag}{len(made_links) + len(made_links2)}"
        prefix = on2 if on_host2 else ()
        sh(*prefix, "ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
        sh(*prefix, "ip", "link", "set", name, "up")
        (made_links2 if on_host2 else made_links).append(name)
        return name

    def make_image_url(size: int) -> str:
        """The guest image for the default size; a raw file of `size` bytes if small; a qcow2 of that
        virtual size if large; a sparse raw file if larger than the disk (refused before copying)."""
        if size == 64 * MiB:
            return str(guest_image)
        f = root / "src" / new_uuid()
        if 64 * MiB < size < shutil.disk_usage(root).total:
            sh("qemu-img", "create", "-q", "-f", "qcow2", str(f), str(size))
            return str(f)
        with open(f, "wb") as out:
            if size <= 64 * MiB:
                out.write(b"\x5a" * size)
            else:
                out.truncate(size)
        return str(f)

    def wait_guest(vm: str) -> None:
        log = console / f"{vm}.log"
        deadline = time.monotonic() + GUEST_BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if log.exists() and image.BOOT_MARKER in log.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise AssertionError(f"guest {vm} did not print {image.BOOT_MARKER} within {GUEST_BOOT_TIMEOUT}s")

    def stop_out_of_band(host: str, vm: str) -> None:
        sh("virsh", "-c", harness.LIBVIRT_URI, "destroy", vm)

    first = make_interface()
    a = AgentUnderTest("real", new_uuid(), url, new_uuid(), url, new_uuid(), url, vlan=kernel_has_vlan(first),
                       host2_uuid=new_uuid(), host2_url=host2.url, host2_ip=host2.ip, physical_interface=first, ps_dir=str(root / "ps"), bs_dir=str(root / "bs"),
                       exact_capacity=False, image_fetch=dict(sftp_login), make_image_url=make_image_url,
                       url_policy={"allowedFileDirectories": ["/"]},
                       make_interface=make_interface, wait_guest=wait_guest, stop_out_of_band=stop_out_of_band)
    send(client, url, p.ConnectCmd(hostUuid=a.host_uuid))  # the agent serves this test's host
    send(client, host2.url, p.ConnectCmd(hostUuid=a.host2_uuid))
    send(client, url, p.InitPrimaryStorageCmd(psUuid=a.ps_uuid, url=a.ps_dir))
    send(client, url, p.ConnectBackupStorageCmd(bsUuid=a.bs_uuid, url=a.bs_dir))
    yield a
    vms: set[str] = set()
    for host_url, host in ((url, a.host_uuid), (host2.url, a.host2_uuid)):
        mine = set(send(client, host_url, p.VmSyncCmd(hostUuid=host), p.VmSyncRsp).states)
        for vm in mine:
            send(client, host_url, p.DestroyVmCmd(uuid=vm, hostUuid=host))
        vms |= mine
    assert our_domains(vms) == set()
    for prefix, devs in (((), made_links), (on2, made_links2)):
        for dev in devs:  # the bridges our interfaces are ports of, then the interfaces
            master = json.loads(sh(*prefix, "ip", "-j", "link", "show", "dev", dev))[0].get("master")
            if master:
                subprocess.run([*prefix, "ip", "link", "del", master], capture_output=True)
            subprocess.run([*prefix, "ip", "link", "del", dev], capture_output=True)
    assert not [d for d in links() if d.startswith(f"zsc{tag}")]
    shutil.rmtree(root, ignore_errors=True)
