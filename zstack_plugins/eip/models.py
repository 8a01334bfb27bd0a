"""Virtual IPs and elastic IPs (ZStack's flat network EIP).

Invariants:
- A VIP holds exactly one UsedIp of its L3 network (usedIpUuid) for as long as it exists; the
  address is released when the VIP is deleted.
- A VIP serves at most one EIP (unique Eip.vipUuid); while it does, the VIP carries useFor "Eip",
  serviceProvider "Flat", one VipNetworkServicesRef row (uuid = the EIP's uuid) and, while the EIP
  is attached, one VipPeerL3NetworkRef to the L3 network of the guest NIC.
- An attached EIP's guestIp is its NIC's IP (vmNicUuid and guestIp are both set or both NULL).
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, Resource, Timestamps, uuid_fk


class Vip(Resource, Base):
    __tablename__ = "vip"
    __inventory__ = "VipInventory"
    l3NetworkUuid: Mapped[str] = uuid_fk("l3_network.uuid")
    usedIpUuid: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("used_ip.uuid", ondelete="SET NULL"), nullable=True, index=True)
    ip: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)
    gateway: Mapped[str | None] = mapped_column(String(64), nullable=True)
    netmask: Mapped[str] = mapped_column(String(64))
    prefixLen: Mapped[int | None] = mapped_column(Integer, nullable=True)
    serviceProvider: Mapped[str | None] = mapped_column(String(64), nullable=True)
    useFor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    system: Mapped[bool] = mapped_column(default=False)


class VipPeerL3NetworkRef(Timestamps, Base):
    __tablename__ = "vip_peer_l3_network_ref"
    __inventory__ = "VipPeerL3NetworkRefInventory"
    __table_args__ = (UniqueConstraint("vipUuid", "l3NetworkUuid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vipUuid: Mapped[str] = uuid_fk("vip.uuid", ondelete="CASCADE")
    l3NetworkUuid: Mapped[str] = uuid_fk("l3_network.uuid", ondelete="CASCADE")


class VipNetworkServicesRef(Timestamps, Base):
    """A network service using a VIP; uuid is the service's own uuid (the EIP's)."""

    __tablename__ = "vip_network_services_ref"
    __inventory__ = "VipNetworkServicesRefInventory"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    serviceType: Mapped[str] = mapped_column(String(64))
    vipUuid: Mapped[str] = uuid_fk("vip.uuid", ondelete="CASCADE")


class Eip(Resource, Base):
    __tablename__ = "eip"
    __inventory__ = "EipInventory"
    vipUuid: Mapped[str] = mapped_column(String(32), ForeignKey("vip.uuid"), unique=True)
    vmNicUuid: Mapped[str | None] = uuid_fk("vm_nic.uuid", nullable=True, ondelete="SET NULL")
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)
    vipIp: Mapped[str] = mapped_column(String(64), index=True)
    guestIp: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
