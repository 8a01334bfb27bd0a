"""The KVM agent's side of the example command: a script is accepted when it is non-empty text
without NUL bytes, and the reply names this host's libvirt version."""

from __future__ import annotations

from typing import Any

from kvmagent.registry import AgentError, command
from zstack_example.protocol import ValidateXmlHookCmd, ValidateXmlHookRsp


def _version(n: int) -> str:
    return f"{n // 1_000_000}.{n // 1000 % 1000}.{n % 1000}"


@command(ValidateXmlHookCmd)
def validate(agent: Any, cmd: ValidateXmlHookCmd) -> ValidateXmlHookRsp:
    if not cmd.hookScript.strip() or "\0" in cmd.hookScript:
        raise AgentError("the XML hook script is empty or not text")
    lib = agent.libvirt.call(lambda c: c.getLibVersion(), "reading the libvirt version")
    return ValidateXmlHookRsp(libvirtVersion=_version(lib))
