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
