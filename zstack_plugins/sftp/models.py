"""SFTP backup storages: a sftp_backup_storage row extends a backup_storage row (joined-table
inheritance, deleted with it by ON DELETE CASCADE). The password is stored to redeploy the agent,
sealed with the MN's key (mn/secretbox.py); it is never in an inventory.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mn.models import BackupStorage


class SftpBackupStorage(BackupStorage):
    __tablename__ = "sftp_backup_storage"
    __table_args__ = ()
    __inventory__ = "SftpBackupStorageInventory"
    uuid: Mapped[str] = mapped_column(String(32), ForeignKey("backup_storage.uuid", ondelete="CASCADE"),
                                      primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), index=True)
    username: Mapped[str] = mapped_column(String(255))
    # Sealed (mn.secretbox, `zs1:...`); None: key-based SSH with the MN's key.
    password: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    sshPort: Mapped[int] = mapped_column(Integer, default=22)
