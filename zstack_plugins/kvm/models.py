"""KVM hosts: a kvm_host row extends a host row (joined-table inheritance: the same uuid, deleted with
its host by ON DELETE CASCADE), so generic code keeps working on Host while KVMHostInventory adds
the SSH fields. The password is stored, as ZStack does, to redeploy the agent, sealed with the MN's key
(mn/secretbox.py); it is never in an inventory.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mn.models import Host


class KVMHost(Host):
    __tablename__ = "kvm_host"
    __table_args__ = ()
    __inventory__ = "KVMHostInventory"
    uuid: Mapped[str] = mapped_column(String(32), ForeignKey("host.uuid", ondelete="CASCADE"), primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    # Sealed (mn.secretbox, `zs1:...`); None: key-based SSH with the MN's key.
    password: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    sshPort: Mapped[int] = mapped_column(Integer, default=22)
    osDistribution: Mapped[str | None] = mapped_column(String(64), nullable=True)
    osRelease: Mapped[str | None] = mapped_column(String(64), nullable=True)
    osVersion: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The agent version (kvmagent code + settings hash) the last deploy installed.
    agentVersion: Mapped[str | None] = mapped_column(String(64), nullable=True)
