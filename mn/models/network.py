"""L2 networks, L3 networks, IP ranges and used IPs.

Invariant: an IP is used at most once per L3 network (unique constraint on UsedIp), so two
concurrent allocations of the same address cannot both commit.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, Resource, Timestamps, uuid_fk


class L2Network(Resource, Base):
    """NoVlan and Vlan networks share one table; `vlan` is set for L2VlanNetwork."""

    __tablename__ = "l2_network"
    __inventory__ = "L2NetworkInventory"
    zoneUuid: Mapped[str] = uuid_fk("zone.uuid")
    physicalInterface: Mapped[str] = mapped_column(String(1024))
    type: Mapped[str] = mapped_column(String(64), index=True)
    vSwitchType: Mapped[str] = mapped_column(String(32), default="LinuxBridge")
    virtualNetworkId: Mapped[int] = mapped_column(Integer, default=0)
    isolated: Mapped[bool] = mapped_column(default=False)
    pvlan: Mapped[str | None] = mapped_column(String(255), nullable=True)
    vlan: Mapped[int | None] = mapped_column(Integer, nullable=True)


class L2NetworkClusterRef(Timestamps, Base):
    __tablename__ = "l2_network_cluster_ref"
    __inventory__ = "L2NetworkClusterRefInventory"
    __table_args__ = (UniqueConstraint("l2NetworkUuid", "clusterUuid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clusterUuid: Mapped[str] = uuid_fk("cluster.uuid", ondelete="CASCADE")
    l2NetworkUuid: Mapped[str] = uuid_fk("l2_network.uuid", ondelete="CASCADE")
    l2ProviderType: Mapped[str] = mapped_column(String(64), default="LinuxBridge")


class L3Network(Resource, Base):
    __tablename__ = "l3_network"
    __inventory__ = "L3NetworkInventory"
    type: Mapped[str] = mapped_column(String(64), default="L3BasicNetwork", index=True)
    zoneUuid: Mapped[str] = uuid_fk("zone.uuid")
    l2NetworkUuid: Mapped[str] = uuid_fk("l2_network.uuid")
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)
    dnsDomain: Mapped[str | None] = mapped_column(String(255), nullable=True)
    system: Mapped[bool] = mapped_column(default=False)
    category: Mapped[str] = mapped_column(String(32), default="Private")
    ipVersion: Mapped[int] = mapped_column(Integer, default=4)
    enableIPAM: Mapped[bool] = mapped_column(default=True)
    isolated: Mapped[bool] = mapped_column(default=False)


class L3NetworkDns(Timestamps, Base):
    __tablename__ = "l3_network_dns"
    __inventory__ = "L3NetworkDnsInventory"
    __table_args__ = (UniqueConstraint("l3NetworkUuid", "dns"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    l3NetworkUuid: Mapped[str] = uuid_fk("l3_network.uuid", ondelete="CASCADE")
    dns: Mapped[str] = mapped_column(String(255))


class IpRange(Resource, Base):
    __tablename__ = "ip_range"
    __inventory__ = "IpRangeInventory"
    l3NetworkUuid: Mapped[str] = uuid_fk("l3_network.uuid")
    startIp: Mapped[str] = mapped_column(String(64))
    endIp: Mapped[str] = mapped_column(String(64))
    netmask: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str | None] = mapped_column(String(64), nullable=True)
    networkCidr: Mapped[str] = mapped_column(String(64))
    ipVersion: Mapped[int] = mapped_column(Integer, default=4)
    addressMode: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prefixLen: Mapped[int] = mapped_column(Integer)
    ipRangeType: Mapped[str] = mapped_column(String(32), default="Normal")
    startIpInLong: Mapped[int] = mapped_column(BigInteger)
    endIpInLong: Mapped[int] = mapped_column(BigInteger)


class UsedIp(Timestamps, Base):
    __tablename__ = "used_ip"
    __inventory__ = "UsedIpInventory"
    __table_args__ = (UniqueConstraint("l3NetworkUuid", "ipInLong"),)
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    ipRangeUuid: Mapped[str] = uuid_fk("ip_range.uuid", ondelete="CASCADE")
    l3NetworkUuid: Mapped[str] = uuid_fk("l3_network.uuid", ondelete="CASCADE")
    ipVersion: Mapped[int] = mapped_column(Integer, default=4)
    ip: Mapped[str] = mapped_column(String(64), index=True)
    netmask: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str | None] = mapped_column(String(64), nullable=True)
    usedFor: Mapped[str] = mapped_column(String(64), default="Vip")
    ipInLong: Mapped[int] = mapped_column(BigInteger)
    vmNicUuid: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("vm_nic.uuid", ondelete="SET NULL"), nullable=True, index=True)
