"""The real agent's bridges, local primary storage and SFTP backup storage, command by command.

A real `zstack-kvmagent` process (Debian's /usr/bin/python3, stdlib only) is sent protocol commands
over HTTP by the MN's own AgentClient. Bridges are made on veth pairs (the kernel's dummy and 802.1Q
modules may be missing: VLAN bridges are tested where the kernel has VLAN support, and otherwise must
fail clearly leaving nothing behind). Root volumes are fetched from the backup storage over SCP as the
`zstack-test` login with a key made for the test, as a KVM host fetches them from an SFTP backup
storage. Everything made (links, directories, the authorized key, the agent) is removed at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.agent_keys import signed_client
from kvmagent import protocol as p
from mn.agent import AgentClient
from mn.errors import AGENT_ERROR, ApiError
from system_tests import harness

MiB, GiB = 2**20, 2**30

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bridges and the test login need root")


def new_uuid() -> str:
    return uuidlib.uuid4().hex


def sh(*args: str) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{' '.join(args)}: {r.stderr}"
    return r.stdout


def link_names() -> set[str]:
    return {d["ifname"] for d in json.loads(sh("ip", "-j", "link", "show"))}


def addresses(dev: str) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for d in json.loads(sh("ip", "-j", "addr", "show", "dev", dev))
            for a in d["addr_info"] if a.get("scope") == "global"]


def world_readable_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="zstack-st-", dir="/var/tmp"))
    d.chmod(0o755)
    return d


def parts_left(root: Path) -> list[Path]:
    return [x for x in root.rglob("*") if x.name.endswith(".part")]


class Agent:
    """A real agent process (harness.agent_process) that can be restarted on the same state."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = ""
        self._stack: contextlib.ExitStack | None = None

    def start(self) -> None:
        self._stack = contextlib.ExitStack()
        self.url = self._stack.enter_context(harness.agent_process(self.workdir)).url

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


@pytest.fixture(scope="module")
def agent() -> Iterator[Agent]:
    if not Path(harness.AGENT_PYTHON).exists() or not shutil.which("qemu-img"):
        pytest.fail("the system tier needs /usr/bin/python3 and qemu-img: run .ci/run")
    workdir = Path(tempfile.mkdtemp(prefix="zstack-agent-"))
    a = Agent(workdir)
    a.start()
    yield a
    a.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def client() -> AgentClient:
    return signed_client(timeout=120)


def send(client: AgentClient, agent: Agent, cmd: Any, reply_cls: type | None = None) -> Any:
    return client.send(agent.url, cmd, reply_cls)


def refused(client: AgentClient, agent: Agent, cmd: Any, *fragments: str) -> str:
    with pytest.raises(ApiError) as info:
        client.send(agent.url, cmd)
    assert info.value.code == AGENT_ERROR, info.value.details
    for f in fragments:
        assert f in info.value.details, info.value.details
    return info.value.details


# ---- bridges --------------------------------------------------------------------------------------

@pytest.fixture
def nic() -> Iterator[str]:
    """A veth pair standing in for a physical interface, with an address and a gateway route."""
    name = f"zst{new_uuid()[:6]}"
    sh("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    sh("ip", "addr", "add", "10.253.7.5/24", "dev", name)
    sh("ip", "link", "set", name, "up")
    sh("ip", "link", "set", f"{name}p", "up")
    sh("ip", "route", "add", "10.253.8.0/24", "via", "10.253.7.1", "dev", name)
    yield name
    for dev in sorted(link_names()):  # whatever a failed test left: bridges br_<6 of name>..., veths <name>...
        if dev.startswith((name, f"br_{name[3:9]}")):
            subprocess.run(["ip", "link", "del", dev], capture_output=True)


def bridge(cls: type, iface: str, l2: str, vlan: int | None = None) -> Any:
    return cls(physicalInterfaceName=iface, bridgeName=p.bridge_name(l2, vlan), l2NetworkUuid=l2, vlan=vlan)


def kernel_has_vlan(iface: str) -> bool:
    r = subprocess.run(["ip", "link", "add", "link", iface, "name", f"{iface[:10]}.9", "type", "vlan", "id", "9"],
                       capture_output=True, text=True)
    if r.returncode == 0:
        sh("ip", "link", "del", f"{iface[:10]}.9")
    return r.returncode == 0


def test_novlan_bridge(client: AgentClient, agent: Agent, nic: str) -> None:
    l2 = nic[3:9] + new_uuid()[:6]
    name = p.bridge_name(l2)
    create = bridge(p.CreateBridgeCmd, nic, l2)
    send(client, agent, create)
    send(client, agent, create)  # idempotent
    send(client, agent, bridge(p.CheckBridgeCmd, nic, l2))
    master = json.loads(sh("ip", "-j", "link", "show", "dev", nic))[0].get("master")
    assert master == name
    assert addresses(name) == ["10.253.7.5/24"] and addresses(nic) == []  # the host stays reachable
    assert "10.253.8.0/24 via 10.253.7.1" in sh("ip", "route", "show", "dev", name)

    refused(client, agent, bridge(p.CreateBridgeCmd, nic, new_uuid()), "already a port of", name)
    refused(client, agent, bridge(p.CreateBridgeCmd, "zstnosuch0", l2), "no such interface zstnosuch0")
    refused(client, agent, bridge(p.CreateBridgeCmd, nic, l2, vlan=5), "takes no vlan")
    refused(client, agent, bridge(p.CheckBridgeCmd, nic, new_uuid()), "does not exist")

    tap = f"{nic}t"  # a VM's tap stand-in makes the bridge busy
    sh("ip", "link", "add", tap, "type", "veth", "peer", "name", f"{nic}u")
    sh("ip", "link", "set", tap, "master", name)
    refused(client, agent, bridge(p.DeleteBridgeCmd, nic, l2), "in use", tap)
    sh("ip", "link", "del", tap)

    send(client, agent, bridge(p.DeleteBridgeCmd, nic, l2))
    send(client, agent, bridge(p.DeleteBridgeCmd, nic, l2))  # idempotent
    assert name not in link_names()
    assert addresses(nic) == ["10.253.7.5/24"]
    assert "10.253.8.0/24 via 10.253.7.1" in sh("ip", "route", "show", "dev", nic)
    refused(client, agent, bridge(p.CheckBridgeCmd, nic, l2), "does not exist")


def test_vlan_bridge(client: AgentClient, agent: Agent, nic: str) -> None:
    l2 = nic[3:9] + new_uuid()[:6]
    name, vdev = p.bridge_name(l2, 100), f"{nic}.100"
    create = bridge(p.CreateVlanBridgeCmd, nic, l2, vlan=100)
    before = link_names()
    if not kernel_has_vlan(nic):
        refused(client, agent, create, "802.1Q", "8021q")
        assert link_names() == before  # nothing half-made
        pytest.skip("this kernel has no 802.1Q support; checked that the agent says so and leaves nothing")
    send(client, agent, create)
    send(client, agent, create)  # idempotent
    send(client, agent, bridge(p.CheckBridgeCmd, nic, l2, vlan=100))
    vlan_link = json.loads(sh("ip", "-j", "-d", "link", "show", "dev", vdev))[0]
    assert vlan_link["master"] == name and vlan_link["linkinfo"]["info_data"]["id"] == 100
    refused(client, agent, bridge(p.CheckBridgeCmd, nic, l2, vlan=101), "does not exist")
    refused(client, agent, bridge(p.CreateVlanBridgeCmd, nic, l2, vlan=None), "vlan")
    send(client, agent, bridge(p.DeleteBridgeCmd, nic, l2, vlan=100))
    send(client, agent, bridge(p.DeleteBridgeCmd, nic, l2, vlan=100))
    assert name not in link_names() and vdev not in link_names()
    refused(client, agent, bridge(p.CheckBridgeCmd, nic, l2, vlan=100), "does not exist")


# ---- backup storage --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    d = world_readable_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


# The URL policy these direct agent commands carry (the MN sends its global configs'): local files
# anywhere, the loopback HTTP server.
OPEN = {"allowedFileDirectories": ["/"], "allowedUrlHosts": ["127.0.0.1"]}


@pytest.fixture(scope="module")
def source_image(workdir: Path) -> Path:
    """A 64 MiB qcow2 with a little data in it."""
    raw = workdir / "src.raw"
    with open(raw, "wb") as f:
        f.truncate(64 * MiB)
        f.seek(MiB)
        f.write(b"zstack system test image\n" * 1000)
    img = workdir / "src.qcow2"
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(img))
    raw.unlink()
    return img


@pytest.fixture(scope="module")
def http_images(source_image: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving the source image's directory."""
    handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(source_image.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def bs(client: AgentClient, agent: Agent, workdir: Path) -> tuple[str, Path]:
    uuid, root = new_uuid(), workdir / "bs"
    harness.images_group_of(root / "images")
    cap = send(client, agent, p.ConnectBackupStorageCmd(bsUuid=uuid, url=str(root)), p.CapacityRsp)
    assert 0 < cap.availableCapacity <= cap.totalCapacity and (root / "images").is_dir()
    return uuid, root


def test_backup_storage(client: AgentClient, agent: Agent, bs: tuple[str, Path], source_image: Path,
                        http_images: str, workdir: Path) -> None:
    uuid, root = bs
    md5 = hashlib.md5(source_image.read_bytes()).hexdigest()
    cap = send(client, agent, p.BackupStorageCapacityCmd(bsUuid=uuid), p.CapacityRsp)
    assert cap.totalCapacity > 0
    paths = []
    for url in (str(source_image), f"file://{source_image}", f"{http_images}/{source_image.name}"):
        image = new_uuid()
        r = send(client, agent, p.DownloadImageCmd(**OPEN, bsUuid=uuid, imageUuid=image, url=url), p.DownloadImageRsp)
        assert r.installPath == str(root / "images" / f"{image}.qcow2"), url
        assert (r.format, r.size, r.md5Sum) == ("qcow2", 64 * MiB, md5), url
        assert 0 < r.actualSize < 64 * MiB and Path(r.installPath).read_bytes() == source_image.read_bytes()
        assert Path(r.installPath).stat().st_mode & 0o777 == 0o640, url  # never world-readable
        paths.append(r.installPath)
    # Without the MN's opt-in (the command's policy) local files and loopback are refused.
    refused(client, agent, p.DownloadImageCmd(bsUuid=uuid, imageUuid=new_uuid(), url="file:///etc/shadow"),
            "no directory is allowed")
    refused(client, agent, p.DownloadImageCmd(bsUuid=uuid, imageUuid=new_uuid(),
                                              url=f"{http_images}/{source_image.name}"), "loopback")
    again = p.DownloadImageCmd(**OPEN, bsUuid=uuid, imageUuid=Path(paths[0]).stem, url=str(source_image))
    refused(client, agent, again, "already exists")

    refused(client, agent, p.DownloadImageCmd(**OPEN, bsUuid=uuid, imageUuid=new_uuid(), url="/no/such/file.qcow2"),
            "not found")
    refused(client, agent, p.DownloadImageCmd(**OPEN, bsUuid=uuid, imageUuid=new_uuid(), url=f"{http_images}/missing"),
            "HTTP 404")
    refused(client, agent, p.DownloadImageCmd(**OPEN, bsUuid=uuid, imageUuid=new_uuid(), url="ftp://x/y"), "http://")
    refused(client, agent, p.DownloadImageCmd(**OPEN, bsUuid=uuid, imageUuid="../etc", url=str(source_image)), "imageUuid")
    overlay = workdir / "overlay.qcow2"
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(source_image), str(overlay))
    refused(client, agent, p.DownloadImageCmd(**OPEN, bsUuid=uuid, imageUuid=new_uuid(), url=str(overlay)), "backing file")
    refused(client, agent, p.DownloadImageCmd(**OPEN, bsUuid=new_uuid(), imageUuid=new_uuid(), url=str(source_image)),
            "not initialized")
    assert parts_left(root) == []

    for path in paths[1:]:
        send(client, agent, p.DeleteImageCmd(bsUuid=uuid, installPath=path))
        send(client, agent, p.DeleteImageCmd(bsUuid=uuid, installPath=path))  # idempotent
        assert not Path(path).exists()
    refused(client, agent, p.DeleteImageCmd(bsUuid=uuid, installPath=str(source_image)), "not inside")
    assert source_image.exists()


# ---- local primary storage with SCP from the backup storage -----------------------------------------

@pytest.fixture(scope="module")
def ssh_login(workdir: Path) -> Iterator[tuple[str, str]]:
    """(user, private key text) of the test login, with a key made here and authorized for the test only."""
    harness.ensure_sshd()
    user, _ = harness.ensure_test_login()
    with harness.authorized_key(user, workdir) as key:
        yield user, key


@pytest.fixture(scope="module")
def ps(client: AgentClient, agent: Agent, workdir: Path) -> tuple[str, Path]:
    uuid, root = new_uuid(), workdir / "ps"
    cap = send(client, agent, p.InitPrimaryStorageCmd(psUuid=uuid, url=str(root)), p.CapacityRsp)
    assert 0 < cap.availableCapacity <= cap.totalCapacity
    assert {x.name for x in root.iterdir()} == {"imagecache", "rootVolumes", "dataVolumes"}
    return uuid, root


def from_image(ps_uuid: str, bs_uuid: str, image: str, path: str, user: str, key: str, **kw: Any) -> Any:
    return p.CreateVolumeFromImageCmd(
        psUuid=ps_uuid, volumeUuid=kw.pop("volumeUuid", new_uuid()), imageUuid=image, imageInstallPath=path,
        backupStorageUuid=bs_uuid, backupStorageType="SftpBackupStorage", backupStorageHostname="127.0.0.1",
        backupStorageSshPort=22, backupStorageUsername=user, sshKey=key, **kw)


def qemu_info(path: str | Path) -> dict[str, Any]:
    return json.loads(sh("qemu-img", "info", "-U", "--output=json", str(path)))


def test_primary_storage(client: AgentClient, agent: Agent, ps: tuple[str, Path], bs: tuple[str, Path],
                         source_image: Path, ssh_login: tuple[str, str]) -> None:
    ps_uuid, root = ps
    bs_uuid, _ = bs
    user, key = ssh_login
    md5 = hashlib.md5(source_image.read_bytes()).hexdigest()
    image = new_uuid()
    img = send(client, agent, p.DownloadImageCmd(**OPEN, bsUuid=bs_uuid, imageUuid=image, url=str(source_image)),
               p.DownloadImageRsp)

    # empty data volume
    vol = new_uuid()
    empty = send(client, agent, p.CreateEmptyVolumeCmd(psUuid=ps_uuid, volumeUuid=vol, size=2 * GiB), p.VolumeRsp)
    assert empty.installPath == str(root / "dataVolumes" / f"vol-{vol}" / f"{vol}.qcow2")
    info = qemu_info(empty.installPath)
    assert (info["format"], info["virtual-size"], empty.size) == ("qcow2", 2 * GiB, 2 * GiB)
    refused(client, agent, p.CreateEmptyVolumeCmd(psUuid=ps_uuid, volumeUuid=vol, size=GiB), "already exists")
    iso_root = new_uuid()  # the MN chooses the path: an ISO VM's empty root volume
    chosen = root / "rootVolumes" / f"vol-{iso_root}" / f"{iso_root}.qcow2"
    r_iso = send(client, agent, p.CreateEmptyVolumeCmd(psUuid=ps_uuid, volumeUuid=iso_root, size=GiB,
                                                       installPath=str(chosen)), p.VolumeRsp)
    assert r_iso.installPath == str(chosen) and chosen.is_file()
    for bad, why in ((root.parent / "elsewhere" / f"vol-{vol}" / f"{vol}.qcow2", "not inside"),
                     (root / "rootVolumes" / f"vol-{vol}" / "other.qcow2", "not a volume"),
                     (root / "rootVolumes" / "vol-x" / "x.qcow2", "does not name volume")):
        refused(client, agent, p.CreateEmptyVolumeCmd(psUuid=ps_uuid, volumeUuid=vol, size=GiB, installPath=str(bad)),
                why)
    assert not (root.parent / "elsewhere").exists() and not (root / "rootVolumes" / "vol-x").exists()
    send(client, agent, p.DeleteVolumeCmd(psUuid=ps_uuid, installPath=str(chosen)))
    cap = send(client, agent, p.PrimaryStorageCapacityCmd(psUuid=ps_uuid), p.CapacityRsp)
    refused(client, agent, p.CreateEmptyVolumeCmd(psUuid=ps_uuid, volumeUuid=new_uuid(),
                                                 size=cap.availableCapacity + GiB), "insufficient capacity")

    # root volume: the image comes over SCP into the cache, the volume is a qcow2 on it
    root_vol = new_uuid()
    r = send(client, agent, from_image(ps_uuid, bs_uuid, image, img.installPath, user, key, volumeUuid=root_vol,
                                       size=GiB, imageMd5Sum=md5), p.VolumeRsp)
    cache = root / "imagecache" / f"{image}.qcow2"
    assert r.installPath == str(root / "rootVolumes" / f"vol-{root_vol}" / f"{root_vol}.qcow2") and r.size == GiB
    info = qemu_info(r.installPath)
    assert info["full-backing-filename"] == str(cache) and info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == GiB and cache.read_bytes() == source_image.read_bytes()
    cached_at = cache.stat().st_mtime_ns
    small = send(client, agent, from_image(ps_uuid, bs_uuid, image, "/not/fetched/again", user, key),
                 p.VolumeRsp)  # the cache serves it: no second fetch
    assert small.size == 64 * MiB and cache.stat().st_mtime_ns == cached_at

    # fetch failures leave nothing in the cache
    other = new_uuid()
    refused(client, agent, from_image(ps_uuid, bs_uuid, other, img.installPath, user, key, imageMd5Sum="0" * 32),
            "corrupt", "md5")
    refused(client, agent, from_image(ps_uuid, bs_uuid, other, "/no/such/image", user, key), "not found")
    wrong = root.parent / "not-authorized-key"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong))
    refused(client, agent, from_image(ps_uuid, bs_uuid, other, img.installPath, user, wrong.read_text()),
            "ssh", "Permission denied")
    refused(client, agent, from_image(ps_uuid, bs_uuid, other, img.installPath, user, None), "sshKey")
    simulated = p.CreateVolumeFromImageCmd(psUuid=ps_uuid, volumeUuid=new_uuid(), imageUuid=other,
                                           imageInstallPath=img.installPath, backupStorageUuid=bs_uuid)
    refused(client, agent, simulated, "not found", "Simulator")
    assert sorted(x.name for x in (root / "imagecache").iterdir()) == [f"{image}.qcow2"]
    assert parts_left(root) == []
    assert not any(other in x.name for x in root.rglob("*"))
    made = {f"vol-{root_vol}", Path(small.installPath).parent.name}
    assert {x.name for x in (root / "rootVolumes").iterdir()} == made  # failed creations left no directory

    # snapshot: the volume keeps its path, its old content becomes the snapshot
    snap = new_uuid()
    s = send(client, agent, p.CreateVolumeSnapshotCmd(psUuid=ps_uuid, volumeUuid=root_vol, installPath=r.installPath,
                                                      snapshotUuid=snap), p.VolumeSnapshotRsp)
    assert s.volumeInstallPath == r.installPath and s.size == GiB
    assert s.installPath == str(Path(r.installPath).parent / "snapshots" / f"{snap}.qcow2")
    assert qemu_info(r.installPath)["full-backing-filename"] == s.installPath
    assert qemu_info(s.installPath)["full-backing-filename"] == str(cache)
    refused(client, agent, p.CreateVolumeSnapshotCmd(psUuid=ps_uuid, volumeUuid=root_vol, installPath=r.installPath,
                                                     snapshotUuid=snap), "already exists")

    # a volume a process holds open (a running VM's QEMU) is neither snapshotted nor deleted
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1]); time.sleep(120)",
                               empty.installPath])
    try:
        deadline = time.monotonic() + 10
        while not any(os.path.exists(f"/proc/{holder.pid}/fd/{n}") and
                      os.readlink(f"/proc/{holder.pid}/fd/{n}") == empty.installPath for n in range(3, 8)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        refused(client, agent, p.DeleteVolumeCmd(psUuid=ps_uuid, installPath=empty.installPath), "in use", "pid")
        refused(client, agent, p.CreateVolumeSnapshotCmd(psUuid=ps_uuid, volumeUuid=vol, installPath=empty.installPath,
                                                         snapshotUuid=new_uuid()), "in use")
    finally:
        holder.kill()
        holder.wait()
    refused(client, agent, p.DeleteVolumeCmd(psUuid=ps_uuid, installPath=str(source_image)), "not inside")
    refused(client, agent, p.DeleteVolumeCmd(psUuid=ps_uuid, installPath=str(cache)), "not a volume")

    # a restarted agent still knows the storage's directory
    agent.stop()
    agent.start()
    again = send(client, agent, p.CreateEmptyVolumeCmd(psUuid=ps_uuid, volumeUuid=new_uuid(), size=MiB), p.VolumeRsp)
    assert Path(again.installPath).parent.parent == root / "dataVolumes"

    for path in (empty.installPath, r.installPath, small.installPath, again.installPath, empty.installPath):
        send(client, agent, p.DeleteVolumeCmd(psUuid=ps_uuid, installPath=path))  # idempotent
    assert list((root / "rootVolumes").iterdir()) == [] and list((root / "dataVolumes").iterdir()) == []
    assert cache.exists()  # the cache outlives the volumes


def test_a_transfer_key_reads_one_image_until_revoked(client: AgentClient, agent: Agent, ps: tuple[str, Path],
                                                      bs: tuple[str, Path], source_image: Path,
                                                      ssh_login: tuple[str, str]) -> None:
    """What the MN does for an SFTP fetch (zstack_plugins/sftp/protocol.py): the storage's agent
    issues a key for one image, the host fetches with it, the key is revoked and then refused."""
    from zstack_plugins.sftp.protocol import IssueTransferKeyCmd, IssueTransferKeyRsp, RevokeTransferKeyCmd

    ps_uuid, root = ps
    bs_uuid, _ = bs
    user, _ = ssh_login
    image = new_uuid()
    img = send(client, agent, p.DownloadImageCmd(**OPEN, bsUuid=bs_uuid, imageUuid=image, url=str(source_image)),
               p.DownloadImageRsp)
    refused(client, agent, IssueTransferKeyCmd(bsUuid=bs_uuid, username=user, installPath="/etc/shadow"),
            "not inside")
    key = send(client, agent, IssueTransferKeyCmd(bsUuid=bs_uuid, username=user, installPath=img.installPath),
               IssueTransferKeyRsp)
    assert key.keyId and "PRIVATE KEY" in key.privateKey
    send(client, agent, from_image(ps_uuid, bs_uuid, image, img.installPath, user, key.privateKey, size=GiB),
         p.VolumeRsp)
    assert (root / "imagecache" / f"{image}.qcow2").read_bytes() == source_image.read_bytes()
    send(client, agent, RevokeTransferKeyCmd(bsUuid=bs_uuid, username=user, keyId=key.keyId))
    send(client, agent, RevokeTransferKeyCmd(bsUuid=bs_uuid, username=user, keyId=key.keyId))  # idempotent
    refused(client, agent, from_image(ps_uuid, bs_uuid, new_uuid(), img.installPath, user, key.privateKey),
            "Permission denied")
    home = Path(os.path.expanduser(f"~{user}"))
    assert key.keyId not in (home / ".ssh" / "authorized_keys").read_text()
