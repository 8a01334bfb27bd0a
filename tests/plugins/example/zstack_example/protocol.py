"""The plugin's agent command: check an XML hook script on a host (imported by the MN, the agent
and the simulator, so all three know it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kvmagent import protocol as p


@dataclass
class ValidateXmlHookCmd:
    PATH: ClassVar[str] = "/example/xmlhook/validate"
    hostUuid: str
    hookScript: str


@dataclass
class ValidateXmlHookRsp(p.Reply):
    libvirtVersion: str | None = None


p.register(ValidateXmlHookCmd)
