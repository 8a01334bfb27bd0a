"""KVM hosts, local primary storage and SFTP backup storage: the validation and failure paths that
need no SSH login (the real deploys are in system_tests/test_kvm_host.py). Every failure is a
ZStack-shaped error and leaves no row behind."""

from __future__ import annotations

import uuid as uuidlib

import pytest

from mn.client import ClientError, ZStackClient


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuidlib.uuid4().hex[:8]}"


def expect_error(fn, code: str, *words: str) -> dict:  # noqa: ANN001
    with pytest.raises(ClientError) as e:
        fn()
    assert e.value.code == code, e.value.error
    details = e.value.error.get("details") or ""
    for w in words:
        assert w in details, details
    return e.value.error


@pytest.fixture(scope="module")
def zone(api: ZStackClient) -> dict:
    return api.call("CreateZone", name=uniq("zone-kvm"))["inventory"]


@pytest.fixture(scope="module")
def kvm_cluster(api: ZStackClient, zone: dict) -> dict:
    return api.call("CreateCluster", zoneUuid=zone["uuid"], name=uniq("cl-kvm"), hypervisorType="KVM")["inventory"]


@pytest.fixture(scope="module")
def sim_cluster(api: ZStackClient, zone: dict) -> dict:
    return api.call("CreateCluster", zoneUuid=zone["uuid"], name=uniq("cl-sim"),
                    hypervisorType="Simulator")["inventory"]


def add_kvm(api: ZStackClient, cluster_uuid: str, ip: str, **extra) -> dict:  # noqa: ANN003
    params = {"name": uniq("kvm"), "managementIp": ip, "clusterUuid": cluster_uuid, "username": "root",
              "password": "password", **extra}
    return api.call("AddKVMHost", **params)


def test_add_kvm_host_to_a_missing_cluster(api):
    expect_error(lambda: add_kvm(api, "0" * 32, "10.250.0.1"), "SYS.1003", "ClusterVO")


def test_add_kvm_host_to_a_simulator_cluster(api, sim_cluster):
    expect_error(lambda: add_kvm(api, sim_cluster["uuid"], "10.250.0.2"), "SYS.1007", "hypervisorType KVM")


def test_add_kvm_host_with_a_used_management_ip(api, sim_cluster, kvm_cluster):
    ip = f"10.250.1.{uuidlib.uuid4().int % 250 + 1}"
    api.call("AddSimulatorHost", name=uniq("sim"), managementIp=ip, clusterUuid=sim_cluster["uuid"],
             cpuCapacity=8, memoryCapacity=8 << 30)
    expect_error(lambda: add_kvm(api, kvm_cluster["uuid"], ip), "SYS.1007", f"managementIp {ip} is already used")


def test_unreachable_ssh_is_a_clear_error_and_leaves_no_host(api, kvm_cluster):
    name = uniq("kvm-nossh")
    err = expect_error(lambda: add_kvm(api, kvm_cluster["uuid"], "127.0.0.1", name=name, sshPort=1),
                       "SYS.1006", f"unable to add KVM host {name}", "cannot reach SSH on 127.0.0.1:1")
    assert "Connection refused" in err["details"]
    assert api.query("QueryHost", f"name={name}") == []


def test_update_kvm_host_refuses_a_simulator_host(api, sim_cluster):
    h = api.call("AddSimulatorHost", name=uniq("sim"), managementIp=f"10.250.2.{uuidlib.uuid4().int % 250 + 1}",
                 clusterUuid=sim_cluster["uuid"], cpuCapacity=8, memoryCapacity=8 << 30)["inventory"]
    expect_error(lambda: api.call("UpdateKVMHost", uuid=h["uuid"], username="x"), "SYS.1007", "not a KVM host")


def test_local_primary_storage_validation_and_add(api, zone, sim_cluster):
    expect_error(lambda: api.call("AddLocalPrimaryStorage", name="l", url="relative/dir", zoneUuid=zone["uuid"]),
                 "SYS.1007", "absolute directory path")
    expect_error(lambda: api.call("AddLocalPrimaryStorage", name="l", url="/x", zoneUuid="0" * 32),
                 "SYS.1003", "ZoneVO")
    ps = api.call("AddLocalPrimaryStorage", name=uniq("local"), url="/var/lib/zstack/local",
                  zoneUuid=zone["uuid"])["inventory"]
    assert ps["type"] == "LocalStorage" and ps["status"] == "Connected" and ps["totalCapacity"] == 0
    assert api.call("GetLocalStorageHostDiskCapacity", primaryStorageUuid=ps["uuid"])["inventories"] == []
    assert "LocalStorage" in api.call("GetPrimaryStorageTypes")["primaryStorageTypes"]
    sim_ps = api.call("AddSimulatorPrimaryStorage", name=uniq("sps"), url="/sim", zoneUuid=zone["uuid"],
                      totalCapacity=1 << 40, availableCapacity=1 << 40)["inventory"]
    expect_error(lambda: api.call("GetLocalStorageHostDiskCapacity", primaryStorageUuid=sim_ps["uuid"]),
                 "SYS.1007", "not LocalStorage")


def test_sftp_backup_storage_unreachable_ssh_leaves_nothing(api):
    name = uniq("sftp")
    expect_error(lambda: api.call("AddSftpBackupStorage", name=name, hostname="127.0.0.1", username="root",
                                  password="password", sshPort=1, url="/var/lib/zstack/sftp"),
                 "SYS.1006", f"unable to add SFTP backup storage {name}", "cannot reach SSH on 127.0.0.1:1")
    assert api.query("QueryBackupStorage", f"name={name}") == []
    expect_error(lambda: api.call("AddSftpBackupStorage", name=name, hostname="127.0.0.1", username="root",
                                  password="password", url="images"), "SYS.1007", "absolute directory path")


def _raw_database_bytes(db_url: str) -> bytes:
    """The SQLite database file and its -wal as they are on disk (what a copy of them would leak)."""
    from pathlib import Path

    path = Path(db_url[len("sqlite:///"):])
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_failed_adds_leave_no_clear_text_password_on_disk(mn, api, kvm_cluster):
    """Issue 13, finding 4: the password of an AddKVMHost / AddSftpBackupStorage that fails after
    its row was written (the SSH check) is in the database files only sealed, never in clear (it
    stayed in the SQLite WAL after the rollback)."""
    svc = mn.services
    if svc.db.dialect != "sqlite":
        pytest.skip("the raw file check is about SQLite's files")
    kvm_pw, sftp_pw = f"kvm-{uuidlib.uuid4().hex}", f"sftp-{uuidlib.uuid4().hex}"
    expect_error(lambda: add_kvm(api, kvm_cluster["uuid"], "127.0.0.1", sshPort=1, password=kvm_pw),
                 "SYS.1006", "cannot reach SSH")
    expect_error(lambda: api.call("AddSftpBackupStorage", name=uniq("sftp"), hostname="127.0.0.1", username="root",
                                  password=sftp_pw, sshPort=1, url="/var/lib/zstack/sftp"),
                 "SYS.1006", "cannot reach SSH")
    raw = _raw_database_bytes(svc.config.db_url)
    assert kvm_pw.encode() not in raw and sftp_pw.encode() not in raw
    assert b"zs1:" in raw  # the rows were written, sealed
    key = svc.secret_box().path
    assert key is not None and key.stat().st_mode & 0o777 == 0o600


def test_an_empty_password_means_key_based_ssh_with_the_mn_key(mn, api, kvm_cluster):
    """password "" asks for key-based SSH only: the login is tried with the MN's key (the error
    says key, not password) and no password is stored."""
    name = uniq("kvm-key")
    err = expect_error(lambda: add_kvm(api, kvm_cluster["uuid"], "127.0.0.1", name=name, sshPort=1, password=""),
                       "SYS.1006", f"unable to add KVM host {name}", "cannot reach SSH on 127.0.0.1:1")
    assert "password" not in err["details"]
