"""The EIP commands of the agent protocol: /flatnetworkprovider/eip/apply and /delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kvmagent import protocol as p


@dataclass
class EipTO:
    """One EIP as a host applies it: traffic to `vip` goes to `guestIp` (DNAT) and the guest's
    traffic leaves as `vip` (SNAT). The VIP address is put on `vipBridgeName` (the public L2's
    bridge) when given; `guestBridgeName` is the bridge of the guest NIC with MAC `nicMac`."""

    eipUuid: str
    vip: str
    guestIp: str
    nicMac: str
    guestBridgeName: str
    vipBridgeName: str | None = None
    vmUuid: str | None = None


@dataclass
class EipCmd:
    """Apply or delete EIPs on a host; both are idempotent (a VIP applied for the same EIP and
    guest again is a no-op; deleting an EIP a host does not have succeeds)."""

    eips: list[EipTO]
    hostUuid: str | None = None


class ApplyEipCmd(EipCmd):
    PATH: ClassVar[str] = "/flatnetworkprovider/eip/apply"


class DeleteEipCmd(EipCmd):
    PATH: ClassVar[str] = "/flatnetworkprovider/eip/delete"


p.register(ApplyEipCmd, DeleteEipCmd, nested={"eips": EipTO})
