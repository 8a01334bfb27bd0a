"""A real guest through the MN's public API, as a user would run one: this machine added as a KVM
host over SSH, local primary storage, SFTP backup storage, the tier's image (system_tests/image.py)
added from a local path, a flat L2/L3 on a Linux bridge over a veth pair the test makes. The VM is
created, stopped, started, rebooted, given a data volume, destroyed and expunged; the guest's serial
console log (`<agent console_log_dir>/<vmUuid>.log`) proves each boot, the graceful stop and the hot
attach; at the end nothing of ours is left in libvirt, on the primary storage or as a bridge.
Uses the fixtures of system_tests/cloud.py (the MN, the host, the storages), via conftest.py.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmagent import config as agent_config
from kvmagent.protocol import bridge_name
from mn.client import ClientError, ZStackClient
from system_tests import image
from system_tests.cloud import BS_DIR, PS_DIR, uniq
from system_tests.harness import LIBVIRT_URI, _sbin

MiB = 1 << 20
AGENT_CONFIG = "/etc/zstack/kvmagent.properties"  # where the kvmhost role writes the agent's settings
BOOT_TIMEOUT = 240.0  # TCG on 2 busy cores: a boot takes 10-60 s


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh(_sbin("virsh"), "-c", LIBVIRT_URI, *args, check=check)


def domain_state(vm_uuid: str) -> str | None:
    """libvirt's state of the VM's domain ('running', 'shut off', ...), None if there is none."""
    r = virsh("domstate", vm_uuid, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def link_exists(name: str) -> bool:
    return sh("ip", "link", "show", "dev", name, check=False).returncode == 0


def bridge_ports(bridge: str) -> list[str]:
    return [d["ifname"] for d in json.loads(sh("ip", "-j", "link", "show", "master", bridge).stdout)]


def console_for(vm_uuid: str) -> image.Console:
    """The guest's console log, where the host's agent writes it."""
    conf = agent_config.load(AGENT_CONFIG, env={})
    return image.Console(Path(conf.console_log_dir) / f"{vm_uuid}.log")


def files_of(root: Path, uuids: list[str]) -> list[Path]:
    """Files or directories below `root` whose name contains one of `uuids`."""
    return [p for p in root.rglob("*") if any(u in p.name for u in uuids)] if root.exists() else []


@pytest.fixture(scope="module")
def veth() -> Iterator[str]:
    """A veth pair standing in for the host's physical NIC of the L2 (the dummy module may be absent)."""
    name = f"ztg{uuidlib.uuid4().hex[:6]}"
    sh("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    sh("ip", "link", "set", name, "up")
    sh("ip", "link", "set", f"{name}p", "up")
    yield name
    if link_exists(name):
        sh("ip", "link", "del", name, check=False)


@pytest.fixture(scope="module")
def guest_image(cloud_api: ZStackClient, sftp_bs: dict) -> Iterator[dict]:
    """The tier's image added to the SFTP backup storage from its local path."""
    path = image.build()
    inv = cloud_api.call("AddImage", name=uniq("guest"), url=str(path), format="qcow2",
                         mediaType="RootVolumeTemplate", platform="Linux",
                         backupStorageUuids=[sftp_bs["uuid"]])["inventory"]
    yield inv
    if cloud_api.query("QueryImage", f"uuid={inv['uuid']}"):
        for api, params in (("DeleteImage", {"uuid": inv["uuid"]}),
                            ("ExpungeImage", {"imageUuid": inv["uuid"]})):
            try:
                cloud_api.call(api, **params)
            except ClientError:
                pass


@pytest.fixture(scope="module")
def offering(cloud_api: ZStackClient) -> Iterator[dict]:
    inv = cloud_api.call("CreateInstanceOffering", name=uniq("tiny"), cpuNum=1,
                         memorySize=256 * MiB)["inventory"]
    yield inv
    cloud_api.call("DeleteInstanceOffering", uuid=inv["uuid"])


def test_image_reaches_the_backup_storage(cloud_api, guest_image, sftp_bs):
    assert guest_image["status"] == "Ready" and guest_image["format"] == "qcow2"
    refs = guest_image["backupStorageRefs"]
    assert [r["backupStorageUuid"] for r in refs] == [sftp_bs["uuid"]]
    assert Path(refs[0]["installPath"]).is_file() and Path(refs[0]["installPath"]).is_relative_to(BS_DIR)
    assert guest_image["size"] == image.DISK_MIB * MiB


def _record_agent_bodies(cloud_mn, monkeypatch) -> list[bytes]:
    """Every command body the MN's AgentClient sends from now on (observed, then sent as is)."""
    agents = cloud_mn.services.agents
    sent: list[bytes] = []
    real = agents._post

    def post(base_url, path, cmd, timeout, headers):  # noqa: ANN001, ANN202
        sent.append(json.dumps(cmd or {}).encode())
        return real(base_url, path, cmd, timeout, headers)

    monkeypatch.setattr(agents, "_post", post)
    return sent


def _forgeries_are_refused(cloud_mn, kvm_host: dict, vm: dict) -> None:
    """An unsigned destroy to the real agent and a forged VmStateChanged to the MN change nothing."""
    import urllib3

    from kvmagent import auth

    http = urllib3.PoolManager(retries=False, timeout=30)
    body = json.dumps({"uuid": vm["uuid"], "hostUuid": kvm_host["uuid"]}).encode()
    r = http.request("POST", f"{kvm_host_agent_url(cloud_mn, kvm_host)}/vm/destroy", body=body,
                     headers={"Content-Type": "application/json"})
    assert r.status == 401 and json.loads(r.data)["success"] is False, r.data
    event = json.dumps({"hostUuid": kvm_host["uuid"], "type": "VmStateChanged", "vmUuid": vm["uuid"],
                        "state": "Stopped"}).encode()
    forged = auth.sign(bytes(32), "POST", "/agent/events", event, {auth.AGENT_HEADER: kvm_host["uuid"]})
    for headers in ({}, {auth.AGENT_HEADER: kvm_host["uuid"], **forged}):
        r = http.request("POST", f"{cloud_mn.url}/agent/events", body=event,
                         headers={"Content-Type": "application/json", **headers})
        assert r.status == 401 and json.loads(r.data)["code"] == "ID.1000", r.data
    time.sleep(1)
    assert domain_state(vm["uuid"]) == "running"
    with cloud_mn.services.db.ro() as s:
        from mn.models import VmInstance

        assert s.get(VmInstance, vm["uuid"]).state == "Running"


def kvm_host_agent_url(cloud_mn, kvm_host: dict) -> str:
    with cloud_mn.services.db.ro() as s:
        from mn.models import Host

        return s.get(Host, kvm_host["uuid"]).agentUrl


def test_a_real_guest_through_its_whole_life(cloud_api, cloud_mn, kvm_zone, kvm_cluster, kvm_host, local_ps,
                                             guest_image, offering, veth, report, monkeypatch):
    api = cloud_api
    l2 = api.call("CreateL2NoVlanNetwork", name=uniq("flat-l2"), zoneUuid=kvm_zone["uuid"],
                  physicalInterface=veth)["inventory"]
    bridge = bridge_name(l2["uuid"])
    made: dict[str, str | None] = {"vm": None, "vol": None, "l2": l2["uuid"]}
    try:
        api.call("AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=kvm_cluster["uuid"])
        assert link_exists(bridge) and veth in bridge_ports(bridge), f"no bridge {bridge} with port {veth}"
        l3 = api.call("CreateL3Network", name=uniq("flat-l3"), l2NetworkUuid=l2["uuid"])["inventory"]
        api.call("AddIpRange", l3NetworkUuid=l3["uuid"], name=uniq("range"), startIp="10.251.0.10",
                 endIp="10.251.0.20", netmask="255.255.255.0", gateway="10.251.0.1")

        # create: a Running VM whose guest really boots under TCG, on our bridge, from the SFTP
        # image fetched with a key issued for that transfer (never the MN's own key)
        sent = _record_agent_bodies(cloud_mn, monkeypatch)
        t0 = time.monotonic()
        vm = api.call("CreateVmInstance", name=uniq("guest"), instanceOfferingUuid=offering["uuid"],
                      imageUuid=guest_image["uuid"], l3NetworkUuids=[l3["uuid"]])["inventory"]
        created = time.monotonic() - t0
        made["vm"] = vm["uuid"]
        assert vm["state"] == "Running" and vm["hostUuid"] == kvm_host["uuid"]
        from mn.ssh import mn_key_pair

        mn_private = mn_key_pair(cloud_mn.services.config.home)[0].read_text().strip()
        fetches = [json.loads(b) for b in sent if b'"backupStorageType": "SftpBackupStorage"' in b]
        assert fetches and all(f["sshKey"] and f["sshKey"].strip() != mn_private for f in fetches)
        secret_lines = mn_private.splitlines()[2:-1]  # the key material (line 1 is the same for every key)
        assert secret_lines and not any(x.encode() in b for x in secret_lines for b in sent)
        _forgeries_are_refused(cloud_mn, kvm_host, vm)
        assert vm["vmNics"][0]["ip"].startswith("10.251.0.")
        assert domain_state(vm["uuid"]) == "running"
        assert "type='qemu'" in virsh("dumpxml", vm["uuid"]).stdout, "the domain must be TCG (type qemu)"
        assert [p for p in bridge_ports(bridge) if p != veth], f"the VM's tap is not on {bridge}"
        console = console_for(vm["uuid"])
        boot = console.wait_boot(BOOT_TIMEOUT)
        console.wait_line(f"{image.DISK_MARKER} vda", boot)
        report["guest: CreateVmInstance"] = f"{created:.1f}s, marker after {time.monotonic() - t0:.1f}s"
        root = next(v for v in vm["allVolumes"] if v["type"] == "Root")
        assert Path(root["installPath"]).is_file() and Path(root["installPath"]).is_relative_to(PS_DIR)

        # stop: graceful (the guest powers off on the ACPI button), the domain no longer runs
        t0 = time.monotonic()
        vm = api.call("StopVmInstance", uuid=vm["uuid"])["inventory"]
        report["guest: StopVmInstance"] = f"{time.monotonic() - t0:.1f}s"
        assert vm["state"] == "Stopped"
        assert domain_state(vm["uuid"]) in (None, "shut off")
        assert console.has_line(image.POWEROFF_MARKER, boot), "the stop was not graceful (no ACPI poweroff)"

        # start and reboot: each time a new boot of the guest
        t0 = time.monotonic()
        vm = api.call("StartVmInstance", uuid=vm["uuid"])["inventory"]
        assert vm["state"] == "Running" and domain_state(vm["uuid"]) == "running"
        boot = console.wait_boot(BOOT_TIMEOUT)
        report["guest: StartVmInstance"] = f"marker after {time.monotonic() - t0:.1f}s"
        t0 = time.monotonic()
        vm = api.call("RebootVmInstance", uuid=vm["uuid"])["inventory"]
        rebooted = time.monotonic() - t0
        assert vm["state"] == "Running" and domain_state(vm["uuid"]) == "running"
        boot = console.wait_boot(BOOT_TIMEOUT)
        report["guest: RebootVmInstance"] = f"{rebooted:.1f}s, marker after {time.monotonic() - t0:.1f}s"
        assert len(console.seen) == 3

        # a data volume, hot-attached: the guest sees a new virtio disk
        vol = api.call("CreateDataVolume", name=uniq("data"), diskSize=64 * MiB)["inventory"]
        made["vol"] = vol["uuid"]
        vol = api.call("AttachDataVolumeToVm", vmInstanceUuid=vm["uuid"], volumeUuid=vol["uuid"])["inventory"]
        assert vol["vmInstanceUuid"] == vm["uuid"] and vol["status"] == "Ready"
        assert Path(vol["installPath"]).is_file() and Path(vol["installPath"]).is_relative_to(PS_DIR)
        console.wait_line(f"{image.DISK_MARKER} vdb", boot)
        assert "vdb" in virsh("domblklist", vm["uuid"]).stdout

        # destroy and expunge: no domain, no volume files, and the data volume goes too
        vm_uuid, volume_uuids = vm["uuid"], [v["uuid"] for v in vm["allVolumes"]] + [vol["uuid"]]
        api.call("DestroyVmInstance", uuid=vm["uuid"])
        assert domain_state(vm["uuid"]) is None
        api.call("ExpungeVmInstance", uuid=vm["uuid"])
        assert api.query("QueryVmInstance", f"uuid={vm['uuid']}") == []
        api.call("DeleteDataVolume", uuid=vol["uuid"])
        if api.query("QueryVolume", f"uuid={vol['uuid']}"):
            api.call("ExpungeDataVolume", uuid=vol["uuid"])
        assert api.query("QueryVolume", f"uuid={vol['uuid']}") == []
        made["vm"] = made["vol"] = None
        assert vm_uuid not in virsh("list", "--all", "--name").stdout.split(), "the domain is left in libvirt"
        assert files_of(Path(PS_DIR), volume_uuids) == [], "volume files left on the primary storage"

        # the L2 deleted: its bridge goes, the veth is back on its own
        api.call("DeleteL2Network", uuid=l2["uuid"])
        made["l2"] = None
        assert not link_exists(bridge), f"bridge {bridge} is left after DeleteL2Network"
        assert link_exists(veth)
    finally:
        _cleanup(api, made["vm"], made["vol"], made["l2"])


def _cleanup(api: ZStackClient, vm_uuid: str | None, vol_uuid: str | None, l2_uuid: str | None) -> None:
    """After a failure half-way: best-effort removal of what the test made, through the API first;
    a domain the API could not remove (its agent unreachable) is destroyed with virsh."""
    steps = (("DestroyVmInstance", {"uuid": vm_uuid}), ("ExpungeVmInstance", {"uuid": vm_uuid}),
             ("DeleteDataVolume", {"uuid": vol_uuid}), ("ExpungeDataVolume", {"uuid": vol_uuid}),
             ("DeleteL2Network", {"uuid": l2_uuid}))
    for name, params in steps:
        if params["uuid"]:
            try:
                api.call(name, **params)
            except ClientError:
                pass
    if vm_uuid and domain_state(vm_uuid) is not None:
        virsh("destroy", vm_uuid, check=False)
        virsh("undefine", vm_uuid, check=False)
