"""The SFTP backup storage's commands of the agent protocol: per-transfer SSH keys.

A host never gets the MN's own SSH key. To let a host fetch one image, the MN asks the storage's
agent to issue a key for that transfer (`IssueTransferKeyCmd`): the agent makes a fresh key
pair, authorizes its public key for the storage's login restricted to reading that one image
(`restrict,command="cat -- <image>",expiry-time=...` in the login's authorized_keys) and answers
the private key, which the MN puts in that one CreateVolumeFromImageCmd; then, whatever happened,
the MN revokes it (`RevokeTransferKeyCmd`). A key the MN could not revoke expires by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kvmagent import protocol as p


@dataclass
class IssueTransferKeyCmd:
    PATH: ClassVar[str] = "/sftpbackupstorage/transferkey/issue"
    bsUuid: str
    username: str        # the storage's SSH login, whose authorized_keys gets the key
    installPath: str     # the one image the key may read (under the storage's images/)
    seconds: int = 600   # the key is refused by sshd this long after it was issued


@dataclass
class IssueTransferKeyRsp(p.Reply):
    keyId: str = ""
    privateKey: str = ""


@dataclass
class RevokeTransferKeyCmd:
    PATH: ClassVar[str] = "/sftpbackupstorage/transferkey/revoke"
    bsUuid: str
    username: str
    keyId: str


p.register(IssueTransferKeyCmd, RevokeTransferKeyCmd)
