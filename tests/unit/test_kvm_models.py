"""KVMHost and SftpBackupStorage extend the host and backup_storage rows: their inventories add the
SSH fields (never the password), and deleting the parent row removes the extension and the local
storage refs (ON DELETE CASCADE)."""

from __future__ import annotations

from sqlalchemy import func, select

from mn.inventory import to_inventory
from mn.models import (
    BackupStorage,
    BackupStorageZoneRef,
    Cluster,
    Host,
    PrimaryStorage,
    Zone,
)
from zstack_plugins.kvm.models import KVMHost
from zstack_plugins.local_storage.models import LocalStorageHostRef
from zstack_plugins.sftp.models import SftpBackupStorage


def _count(s, model) -> int:  # noqa: ANN001
    return s.scalar(select(func.count()).select_from(model))


def test_kvm_host_inventory_and_cascade(db):
    with db.tx() as s:
        s.add(Zone(uuid="z".ljust(32, "0"), name="z"))
        s.flush()
        s.add(Cluster(uuid="c".ljust(32, "0"), name="c", zoneUuid="z".ljust(32, "0"), hypervisorType="KVM"))
        s.add(PrimaryStorage(uuid="p".ljust(32, "0"), name="p", zoneUuid="z".ljust(32, "0"), url="/l",
                             type="LocalStorage"))
        s.flush()
        s.add(KVMHost(uuid="h".ljust(32, "0"), name="h", zoneUuid="z".ljust(32, "0"), clusterUuid="c".ljust(32, "0"),
                      managementIp="10.0.0.1", hypervisorType="KVM", username="admin", password="secret", sshPort=2222,
                      osDistribution="debian"))
        s.flush()
        s.add(LocalStorageHostRef(primaryStorageUuid="p".ljust(32, "0"), hostUuid="h".ljust(32, "0"),
                                  totalCapacity=10, availableCapacity=5))
    with db.ro() as s:
        inv = to_inventory(s, s.get(KVMHost, "h".ljust(32, "0")))
        assert inv["username"] == "admin" and inv["sshPort"] == 2222 and inv["osDistribution"] == "debian"
        assert inv["managementIp"] == "10.0.0.1" and "password" not in inv
        assert "username" not in to_inventory(s, s.get(Host, "h".ljust(32, "0")))  # a HostInventory
    with db.tx() as s:
        s.delete(s.get(Host, "h".ljust(32, "0")))
    with db.ro() as s:
        assert _count(s, KVMHost) == 0 and _count(s, LocalStorageHostRef) == 0
        assert s.scalar(select(func.count()).select_from(KVMHost.__table__)) == 0


def test_sftp_backup_storage_inventory_has_its_zones_and_goes_with_its_row(db):
    with db.tx() as s:
        s.add(Zone(uuid="z".ljust(32, "0"), name="z"))
        s.add(SftpBackupStorage(uuid="b".ljust(32, "0"), name="b", url="/bs", type="SftpBackupStorage",
                                hostname="10.0.0.2", username="root", password="pw", sshPort=22))
        s.flush()
        s.add(BackupStorageZoneRef(backupStorageUuid="b".ljust(32, "0"), zoneUuid="z".ljust(32, "0")))
    with db.ro() as s:
        inv = to_inventory(s, s.get(SftpBackupStorage, "b".ljust(32, "0")))
        assert inv["hostname"] == "10.0.0.2" and inv["attachedZoneUuids"] == ["z".ljust(32, "0")]
        assert "password" not in inv
    with db.tx() as s:
        s.delete(s.get(BackupStorage, "b".ljust(32, "0")))
    with db.ro() as s:
        assert s.scalar(select(func.count()).select_from(SftpBackupStorage.__table__)) == 0
