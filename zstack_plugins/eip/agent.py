"""Flat network EIP on a real host: iptables NAT in our own chains, the VIP on the public bridge.

Chains, created on first use and hooked into the built-in ones once:
  nat    ZS-EIP-PRE   (from PREROUTING and OUTPUT)  -d <vip>/32 -j DNAT --to-destination <guestIp>
  nat    ZS-EIP-POST  (from POSTROUTING)            -s <guestIp>/32 -j SNAT --to-source <vip>
  filter ZS-EIP-FWD   (from FORWARD)                -d <guestIp>/32 -j ACCEPT, -s <guestIp>/32 -j ACCEPT
Every rule carries the comment `eip:<eipUuid>`. Applying an EIP converges the rules with its
comment to the wanted ones (idempotent: applying twice changes nothing; a changed guest IP replaces
the old rules) and puts <vip>/32 on the public bridge so the host answers ARP for it; deleting
removes every rule with its comment and the address. Commands run through a `Run` callable
(subprocess by default), so tests can run the same code inside a network namespace.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any

from kvmagent import protocol as p
from kvmagent.registry import AgentError, command
from zstack_plugins.eip.protocol import ApplyEipCmd, DeleteEipCmd, EipTO

Run = Callable[[Sequence[str]], subprocess.CompletedProcess]

PRE, POST, FWD = "ZS-EIP-PRE", "ZS-EIP-POST", "ZS-EIP-FWD"
# (table, chain, built-in chains that jump to it)
CHAINS = (("nat", PRE, ("PREROUTING", "OUTPUT")), ("nat", POST, ("POSTROUTING",)), ("filter", FWD, ("FORWARD",)))
_lock = threading.Lock()  # one iptables transaction at a time in this agent


def run(argv: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


def _must(runner: Run, argv: Sequence[str]) -> str:
    r = runner(argv)
    if r.returncode != 0:
        raise AgentError(f"{shlex.join(argv)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")
    return r.stdout


def _ipt(table: str, *args: str) -> list[str]:
    return ["iptables", "-w", "-t", table, *args]


def comment(eip_uuid: str) -> str:
    return f"eip:{eip_uuid}"


def wanted_rules(e: EipTO) -> list[tuple[str, str, tuple[str, ...]]]:
    """(table, chain, rule arguments) for one EIP, spelled as `iptables -S` prints them."""
    tag = ("-m", "comment", "--comment", comment(e.eipUuid))
    return [
        ("nat", PRE, ("-d", f"{e.vip}/32", *tag, "-j", "DNAT", "--to-destination", e.guestIp)),
        ("nat", POST, ("-s", f"{e.guestIp}/32", *tag, "-j", "SNAT", "--to-source", e.vip)),
        ("filter", FWD, ("-d", f"{e.guestIp}/32", *tag, "-j", "ACCEPT")),
        ("filter", FWD, ("-s", f"{e.guestIp}/32", *tag, "-j", "ACCEPT")),
    ]


def ensure_chains(runner: Run) -> None:
    """Create our chains and their jumps from the built-in chains, once (idempotent)."""
    for table, chain, parents in CHAINS:
        if runner(_ipt(table, "-S", chain)).returncode != 0:
            _must(runner, _ipt(table, "-N", chain))
        for parent in parents:
            if runner(_ipt(table, "-C", parent, "-j", chain)).returncode != 0:
                _must(runner, _ipt(table, "-I", parent, "1", "-j", chain))


def tagged_rules(runner: Run, eip_uuid: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """The rules in our chains that carry the EIP's comment, as (table, chain, arguments)."""
    out = []
    for table, chain, _ in CHAINS:
        r = runner(_ipt(table, "-S", chain))
        if r.returncode != 0:
            continue  # the chain does not exist yet: nothing of this EIP is there
        for line in r.stdout.splitlines():
            words = shlex.split(line)
            if len(words) > 2 and words[0] == "-A" and comment(eip_uuid) in words:
                out.append((table, chain, tuple(words[2:])))
    return out


def _link_exists(runner: Run, dev: str) -> bool:
    return runner(["ip", "link", "show", "dev", dev]).returncode == 0


def _has_address(runner: Run, dev: str, cidr: str) -> bool:
    r = runner(["ip", "-o", "-4", "addr", "show", "dev", dev])
    return r.returncode == 0 and cidr in r.stdout.split()


def apply_eip(runner: Run, e: EipTO) -> None:
    for dev in filter(None, (e.guestBridgeName, e.vipBridgeName)):
        if not _link_exists(runner, dev):
            raise AgentError(f"EIP {e.eipUuid}: bridge {dev} does not exist on this host")
    ensure_chains(runner)
    wanted = wanted_rules(e)
    for rule in tagged_rules(runner, e.eipUuid):
        if rule not in wanted:
            table, chain, args = rule
            _must(runner, _ipt(table, "-D", chain, *args))
    for table, chain, args in wanted:
        if runner(_ipt(table, "-C", chain, *args)).returncode != 0:
            _must(runner, _ipt(table, "-A", chain, *args))
    if e.vipBridgeName:
        _must(runner, ["ip", "addr", "replace", f"{e.vip}/32", "dev", e.vipBridgeName])
    _must(runner, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])


def delete_eip(runner: Run, e: EipTO) -> None:
    for table, chain, args in tagged_rules(runner, e.eipUuid):
        _must(runner, _ipt(table, "-D", chain, *args))
    if e.vipBridgeName and _has_address(runner, e.vipBridgeName, f"{e.vip}/32"):
        _must(runner, ["ip", "addr", "del", f"{e.vip}/32", "dev", e.vipBridgeName])


def apply_all(runner: Run, eips: list[EipTO]) -> None:
    """Apply every EIP; when one fails, those this call newly applied are deleted again (an EIP
    that was already there before the call stays)."""
    with _lock:
        done: list[EipTO] = []
        try:
            for e in eips:
                fresh = not tagged_rules(runner, e.eipUuid)
                apply_eip(runner, e)
                if fresh:
                    done.append(e)
        except AgentError:
            for e in reversed(done):
                try:
                    delete_eip(runner, e)
                except AgentError:
                    pass  # the original failure is what the MN must see
            raise


def delete_all(runner: Run, eips: list[EipTO]) -> None:
    with _lock:
        for e in eips:
            delete_eip(runner, e)


@command(ApplyEipCmd)
def apply_cmd(agent: Any, cmd: ApplyEipCmd) -> p.Reply:
    apply_all(run, cmd.eips)
    return p.Reply()


@command(DeleteEipCmd)
def delete_cmd(agent: Any, cmd: DeleteEipCmd) -> p.Reply:
    delete_all(run, cmd.eips)
    return p.Reply()
