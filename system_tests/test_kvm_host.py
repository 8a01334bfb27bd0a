"""A real KVM host over SSH: AddKVMHost deploys zstack-kvmagent to 127.0.0.1 with Ansible and
connects it; local primary storage and an SFTP backup storage on the same machine; an image
added from a local file. Uses the fixtures of system_tests/cloud.py (a conftest plugin)."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from mn.client import ClientError
from system_tests.cloud import AGENT_PORT, uniq


def test_add_kvm_host_deploys_and_connects(cloud_api, kvm_host, kvm_login, report):
    assert kvm_host["status"] == "Connected" and kvm_host["state"] == "Enabled"
    assert kvm_host["hypervisorType"] == "KVM"
    assert kvm_host["username"] == kvm_login[0] and kvm_host["sshPort"] == 22
    assert "password" not in kvm_host
    assert kvm_host["cpuNum"] > 0 and kvm_host["totalMemoryCapacity"] > 0
    assert kvm_host["osDistribution"] == "debian"
    with urllib.request.urlopen(f"http://127.0.0.1:{AGENT_PORT}/health", timeout=5) as r:
        assert r.status == 200
    props = Path("/etc/zstack/kvmagent.properties").read_text()
    assert f"port = {AGENT_PORT}" in props and "acceleration = tcg" in props
    [h] = cloud_api.query("QueryHost", f"uuid={kvm_host['uuid']}")
    assert h["status"] == "Connected"
    report["kvm agent"] = Path("/opt/zstack/kvmagent/VERSION").read_text().strip()[:12]


def test_reconnect_of_a_current_agent_is_a_fast_no_op(cloud_api, kvm_host, report):
    started = time.monotonic()
    inv = cloud_api.call("ReconnectHost", uuid=kvm_host["uuid"])["inventory"]
    took = time.monotonic() - started
    assert inv["status"] == "Connected"
    report["no-op ReconnectHost (KVM)"] = f"{took:.2f} s"
    assert took < 15


def test_reconnect_redeploys_a_stopped_agent(cloud_api, kvm_host):
    subprocess.run(["/opt/zstack/kvmagent/zstack-kvmagent", "stop"], check=True, timeout=60)
    inv = cloud_api.call("ReconnectHost", uuid=kvm_host["uuid"])["inventory"]
    assert inv["status"] == "Connected"
    with urllib.request.urlopen(f"http://127.0.0.1:{AGENT_PORT}/health", timeout=5) as r:
        assert r.status == 200


def test_wrong_password_is_a_clear_error_and_leaves_no_host(cloud_api, kvm_cluster, kvm_login):
    with pytest.raises(ClientError) as e:
        cloud_api.call("AddKVMHost", name=uniq("bad-pw"), managementIp="127.0.0.2",
                       clusterUuid=kvm_cluster["uuid"], username=kvm_login[0], password="not-the-password")
    assert "wrong username or password" in str(e.value.error)
    assert cloud_api.query("QueryHost", "managementIp=127.0.0.2") == []


def test_local_primary_storage_takes_the_hosts_capacity(cloud_api, local_ps, kvm_host, kvm_cluster):
    assert local_ps["type"] == "LocalStorage" and local_ps["status"] == "Connected"
    assert local_ps["attachedClusterUuids"] == [kvm_cluster["uuid"]]
    assert local_ps["totalCapacity"] > 0 and local_ps["availableCapacity"] > 0
    refs = cloud_api.call("GetLocalStorageHostDiskCapacity", primaryStorageUuid=local_ps["uuid"])["inventories"]
    assert [r["hostUuid"] for r in refs] == [kvm_host["uuid"]]
    assert refs[0]["totalCapacity"] == local_ps["totalCapacity"]


def test_sftp_backup_storage_and_an_image_from_a_local_file(cloud_api, sftp_bs, kvm_zone, tmp_path, report):
    assert sftp_bs["type"] == "SftpBackupStorage" and sftp_bs["status"] == "Connected"
    assert sftp_bs["hostname"] == "127.0.0.1" and sftp_bs["totalCapacity"] > 0
    assert "password" not in sftp_bs
    [q] = cloud_api.query("QuerySftpBackupStorage", f"uuid={sftp_bs['uuid']}")
    assert q["hostname"] == "127.0.0.1" and q["attachedZoneUuids"] == [kvm_zone["uuid"]]
    src = tmp_path / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(src), "32M"], check=True, timeout=60)
    started = time.monotonic()
    img = cloud_api.call("AddImage", name=uniq("tiny"), url=f"file://{src}", format="qcow2",
                         backupStorageUuids=[sftp_bs["uuid"]])["inventory"]
    report["AddImage from a local file (32 MiB qcow2)"] = f"{time.monotonic() - started:.2f} s"
    assert img["status"] == "Ready" and img["size"] == 32 << 20
    [ref] = img["backupStorageRefs"]
    assert ref["installPath"].startswith("/var/lib/zstack-test/sftp-bs/")
    started = time.monotonic()
    inv = cloud_api.call("ReconnectSftpBackupStorage", uuid=sftp_bs["uuid"])["inventory"]
    report["no-op ReconnectSftpBackupStorage"] = f"{time.monotonic() - started:.2f} s"
    assert inv["status"] == "Connected"


def test_hosts_fetch_sftp_images_with_a_one_image_key_revoked_after(cloud_api, cloud_mn, sftp_bs, kvm_login,
                                                                     tmp_path):
    """The key a host gets reads that one image and nothing else, and no longer works once the
    transfer ended; it is never the MN's own key."""
    from mn.context import ApiContext
    from mn.ssh import mn_key_pair
    from zstack_plugins.sftp.backup_storage import image_fetch_fields, transfer_key

    src = tmp_path / "one.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(src), "16M"], check=True, timeout=60)
    img = cloud_api.call("AddImage", name=uniq("one"), url=f"file://{src}", format="qcow2",
                         backupStorageUuids=[sftp_bs["uuid"]])["inventory"]
    path = img["backupStorageRefs"][0]["installPath"]
    with cloud_mn.services.db.ro() as s:
        fields = image_fetch_fields(s, sftp_bs["uuid"])
    assert "sshKey" not in fields  # no secret in what flows keep; added when a command is sent
    fields.update(backupStorageUuid=sftp_bs["uuid"], imageInstallPath=path)
    mn_private = mn_key_pair(cloud_mn.services.config.home)[0].read_text()
    key = tmp_path / "key"

    def ssh(command: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                               "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-i", str(key),
                               f"{kvm_login[0]}@127.0.0.1", command], capture_output=True, timeout=60)

    with transfer_key(ApiContext(cloud_mn.services), fields) as f:
        assert f["sshKey"] and f["sshKey"].strip() != mn_private.strip() and mn_private not in str(f)
        assert f["backupStorageUsername"] == kvm_login[0] and f["backupStorageSshPort"] == 22
        key.write_text(f["sshKey"])
        key.chmod(0o600)
        assert ssh(f"cat -- {path}").stdout == Path(path).read_bytes()
        assert ssh("cat /etc/hostname; id").stdout == Path(path).read_bytes()  # the forced command only
    r = ssh(f"cat -- {path}")
    assert r.returncode != 0 and b"Permission denied" in r.stderr  # revoked
    home = Path(f"~{kvm_login[0]}").expanduser()
    assert "zstack-transfer-" not in (home / ".ssh" / "authorized_keys").read_text()
    cloud_api.call("DeleteImage", uuid=img["uuid"])


def test_the_agent_key_is_private_and_the_agent_listens_on_the_management_address(kvm_host):
    import stat

    key = Path("/etc/zstack/kvmagent.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_uid == 0
    props = Path("/etc/zstack/kvmagent.properties").read_text()
    assert f"host = {kvm_host['managementIp']}" in props and "key_file = /etc/zstack/kvmagent.key" in props


def test_local_storage_capacity_follows_detach_and_attach(cloud_api, local_ps, kvm_cluster, kvm_host):
    ps, cl = local_ps["uuid"], kvm_cluster["uuid"]
    inv = cloud_api.call("DetachPrimaryStorageFromCluster", primaryStorageUuid=ps, clusterUuid=cl)["inventory"]
    assert inv["totalCapacity"] == 0
    assert cloud_api.call("GetLocalStorageHostDiskCapacity", primaryStorageUuid=ps)["inventories"] == []
    inv = cloud_api.call("AttachPrimaryStorageToCluster", primaryStorageUuid=ps, clusterUuid=cl)["inventory"]
    assert inv["totalCapacity"] > 0
    [ref] = cloud_api.call("GetLocalStorageHostDiskCapacity", primaryStorageUuid=ps,
                           hostUuid=kvm_host["uuid"])["inventories"]
    assert ref["totalCapacity"] == inv["totalCapacity"]


def test_update_kvm_host_keeps_the_login_private(cloud_api, kvm_host):
    inv = cloud_api.call("UpdateKVMHost", uuid=kvm_host["uuid"], name="renamed-kvm", sshPort=22)["inventory"]
    assert inv["name"] == "renamed-kvm" and inv["username"] == kvm_host["username"] and "password" not in inv


def test_a_dead_agent_is_noticed_by_pings_and_redeployed(cloud_api, cloud_mn, kvm_host):
    from mn.services.host_tracker import tracker_of
    from zstack_plugins.kvm.host import recover_disconnected

    subprocess.run(["/opt/zstack/kvmagent/zstack-kvmagent", "stop"], check=True, timeout=60)
    svc = cloud_mn.services
    tracker_of(svc).run_round(wait_reconnects=True)  # host/ping.maxFailure is 1 by default
    [h] = cloud_api.query("QueryHost", f"uuid={kvm_host['uuid']}")
    assert h["status"] == "Disconnected"
    recover_disconnected(svc)
    [h] = cloud_api.query("QueryHost", f"uuid={kvm_host['uuid']}")
    assert h["status"] == "Connected"
