"""Simulated backup storages' side of the SFTP transfer-key commands: a simulated storage serves
images without SSH, so it issues no key (and revoking one is a no-op, as revoking is idempotent)."""

from __future__ import annotations

from kvmagent import protocol as p
from simulator import registry
from simulator.model import SimError
from simulator.state import SimState
from zstack_plugins.sftp.protocol import IssueTransferKeyCmd, RevokeTransferKeyCmd


@registry.handles(registry.BACKUP, IssueTransferKeyCmd)
def issue(state: SimState, bs: object, cmd: IssueTransferKeyCmd) -> p.Reply:
    raise SimError(f"simulated backup storage {cmd.bsUuid} is not an SFTP storage: it issues no transfer keys")


@registry.handles(registry.BACKUP, RevokeTransferKeyCmd)
def revoke(state: SimState, bs: object, cmd: RevokeTransferKeyCmd) -> p.Reply:
    return p.Reply()
