"""A real cloud on this machine for the system tier: an MN (in-process, temp home, SQLite) that
deploys zstack-kvmagent over SSH with Ansible to 127.0.0.1 as a KVM host, local primary storage
and an SFTP backup storage on the same machine.

Reusable fixtures (import them in a test module or conftest: `from system_tests.cloud import *`
is not needed; `pytest_plugins = ["system_tests.cloud"]` or plain imports work):
- `cloud_mn`: the running MN (RunningMN); `cloud_api`: a logged-in admin client of it.
- `kvm_login`: (user, password) of the test login (passwordless sudo); sshd and libvirt running.
- `kvm_zone`, `kvm_cluster`, `kvm_host`: a zone, a KVM cluster and 127.0.0.1 added as a KVM host.
- `local_ps`: a LocalStorage primary storage attached to the cluster.
- `sftp_bs`: an SFTP backup storage on 127.0.0.1, attached to the zone.
The agent listens on AGENT_PORT (ZSTACK_TEST_AGENT_PORT, default 17171) and runs TCG guests.
"""

from __future__ import annotations

import os
import pwd
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mn.client import ZStackClient
from mn.config import MNConfig
from mn.server import RunningMN, start
from system_tests.harness import ensure_libvirt, ensure_sshd, ensure_test_login

AGENT_PORT = int(os.environ.get("ZSTACK_TEST_AGENT_PORT", "17171"))
HOST_IP = "127.0.0.1"
PS_DIR = "/var/lib/zstack-test/local-ps"
BS_DIR = "/var/lib/zstack-test/sftp-bs"


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuidlib.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def kvm_login() -> tuple[str, str]:
    ensure_sshd()
    ensure_libvirt()
    return ensure_test_login()


@pytest.fixture(scope="session")
def cloud_mn() -> Iterator[RunningMN]:
    home = Path(tempfile.mkdtemp(prefix="zstack-sys-"))
    running = start(MNConfig(home=home, db_url=f"sqlite:///{home / 'zstack.db'}", host="127.0.0.1", port=0))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def cloud_api(cloud_mn: RunningMN) -> ZStackClient:
    c = ZStackClient(cloud_mn.url)
    c.login()
    c.call("UpdateGlobalConfig", category="kvm", name="agent.port", value=str(AGENT_PORT))
    c.call("UpdateGlobalConfig", category="kvm", name="vm.acceleration", value="tcg")
    # The explicit opt-in of this single-machine cloud: images are added from local files.
    c.call("UpdateGlobalConfig", category="image", name="allowedFileDirectories", value="/")
    return c


@pytest.fixture(scope="session")
def kvm_zone(cloud_api: ZStackClient) -> dict:
    return cloud_api.call("CreateZone", name=uniq("sys-zone"))["inventory"]


@pytest.fixture(scope="session")
def kvm_cluster(cloud_api: ZStackClient, kvm_zone: dict) -> dict:
    return cloud_api.call("CreateCluster", zoneUuid=kvm_zone["uuid"], name=uniq("sys-kvm"),
                          hypervisorType="KVM")["inventory"]


@pytest.fixture(scope="session")
def kvm_host(cloud_api: ZStackClient, kvm_cluster: dict, kvm_login: tuple[str, str]) -> dict:
    user, password = kvm_login
    return cloud_api.call("AddKVMHost", name=uniq("sys-host"), managementIp=HOST_IP, clusterUuid=kvm_cluster["uuid"],
                          username=user, password=password)["inventory"]


@pytest.fixture(scope="session")
def local_ps(cloud_api: ZStackClient, kvm_zone: dict, kvm_cluster: dict, kvm_host: dict) -> dict:
    ps = cloud_api.call("AddLocalPrimaryStorage", name=uniq("sys-local"), url=PS_DIR,
                        zoneUuid=kvm_zone["uuid"])["inventory"]
    return cloud_api.call("AttachPrimaryStorageToCluster", primaryStorageUuid=ps["uuid"],
                          clusterUuid=kvm_cluster["uuid"])["inventory"]


@pytest.fixture(scope="session")
def sftp_bs(cloud_api: ZStackClient, kvm_zone: dict, kvm_login: tuple[str, str]) -> dict:
    user, password = kvm_login
    # Images are 0640 in the group of <url>/images: the (non-root) login reads them through it.
    images = Path(BS_DIR) / "images"
    images.mkdir(mode=0o750, parents=True, exist_ok=True)
    os.chown(images, 0, pwd.getpwnam(user).pw_gid)
    bs = cloud_api.call("AddSftpBackupStorage", name=uniq("sys-sftp"), hostname=HOST_IP, username=user,
                        password=password, url=BS_DIR)["inventory"]
    cloud_api.call("AttachBackupStorageToZone", backupStorageUuid=bs["uuid"], zoneUuid=kvm_zone["uuid"])
    return bs
