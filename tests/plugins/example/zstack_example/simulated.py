"""The simulator's side of the example command: the same acceptance rule as the KVM agent, and
a fixed libvirt version; a script containing `fail` is refused (for tests of the rollback)."""

from __future__ import annotations

from simulator import registry
from simulator.model import SimError, SimHost
from simulator.state import SimState
from zstack_example.protocol import ValidateXmlHookCmd, ValidateXmlHookRsp

SIMULATED_LIBVIRT = "8.0.0-simulated"


@registry.handles(registry.HOSTS, ValidateXmlHookCmd)
def validate(state: SimState, host: SimHost, cmd: ValidateXmlHookCmd) -> ValidateXmlHookRsp:
    if not cmd.hookScript.strip() or "\0" in cmd.hookScript:
        raise SimError("the XML hook script is empty or not text")
    if "fail" in cmd.hookScript:
        raise SimError(f"simulated host {host.uuid} refuses this XML hook script")
    return ValidateXmlHookRsp(libvirtVersion=SIMULATED_LIBVIRT)
