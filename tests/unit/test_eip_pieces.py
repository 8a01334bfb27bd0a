"""Pure pieces of the flat network EIP: the simulator's EIP table (driven through
simulator.dispatch.run_command, no HTTP), its persistence, and the real agent's iptables rule
spelling and parsing of `iptables -S` output (the rules themselves run in system_tests)."""

from __future__ import annotations

import subprocess
from typing import Any

from kvmagent import protocol as p
from simulator import persist
from simulator.dispatch import HOSTS, run_command
from simulator.state import SimState
from zstack_plugins.eip import agent as agent_eip
from zstack_plugins.eip.protocol import ApplyEipCmd, DeleteEipCmd, EipTO

H = "h1"


def _state() -> SimState:
    state = SimState()
    state.put_host(H, 8, 16 << 30, None, None, None)
    for br in ("br_guest", "br_pub"):
        reply = run_command(state, HOSTS, H, p.CreateBridgeCmd.PATH, p.to_wire(p.CreateBridgeCmd(
            physicalInterfaceName="eth0", bridgeName=br, l2NetworkUuid=br)))
        assert reply["success"], reply
    return state


def _eip(uuid: str = "e1", vip: str = "192.0.2.10", guest: str = "10.0.0.5", **kw: Any) -> EipTO:
    fields: dict[str, Any] = {"nicMac": "fa:16:3e:00:00:01", "guestBridgeName": "br_guest",
                              "vipBridgeName": "br_pub", **kw}
    return EipTO(eipUuid=uuid, vip=vip, guestIp=guest, **fields)


def _run(state: SimState, cmd: Any) -> dict[str, Any]:
    return run_command(state, HOSTS, H, cmd.PATH, p.to_wire(cmd))


def test_simulator_applies_all_or_nothing_and_deletes_idempotently() -> None:
    state = _state()
    assert _run(state, ApplyEipCmd(eips=[_eip()]))["success"]
    assert _run(state, ApplyEipCmd(eips=[_eip()]))["success"]
    bad = _run(state, ApplyEipCmd(eips=[_eip("e2", vip="192.0.2.11"), _eip("e3", guest="not-an-ip")]))
    assert not bad["success"] and "not an IPv4 address" in bad["error"]
    assert list(state.hosts[H].extras.get("eips", {})) == ["192.0.2.10"]  # e2 was not recorded either
    taken = _run(state, ApplyEipCmd(eips=[_eip("e4")]))
    assert not taken["success"] and "already applied" in taken["error"]
    same_vip_twice = _run(state, ApplyEipCmd(eips=[_eip("e5", vip="192.0.2.12"), _eip("e6", vip="192.0.2.12")]))
    assert not same_vip_twice["success"] and "same VIP" in same_vip_twice["error"]
    no_bridge = _run(state, ApplyEipCmd(eips=[_eip("e7", vip="192.0.2.13", vipBridgeName=None,
                                                     nicMac="fa:16:3e:00:00:02")]))
    assert no_bridge["success"]  # no public bridge named: nothing to check there
    assert _run(state, DeleteEipCmd(eips=[_eip(), _eip("e7", vip="192.0.2.13")]))["success"]
    assert _run(state, DeleteEipCmd(eips=[_eip()]))["success"]
    assert state.hosts[H].extras.get("eips", {}) == {}


def test_simulator_eips_outlive_a_restart() -> None:
    state = _state()
    assert _run(state, ApplyEipCmd(eips=[_eip()]))["success"]
    again = SimState()
    persist.load(again, persist.dump(state))
    assert again.hosts[H].extras["eips"] == {"192.0.2.10": p.to_wire(_eip())}
    assert again.hosts[H].view()["eips"] == {"192.0.2.10": p.to_wire(_eip())}


def test_rules_are_spelled_as_iptables_prints_them() -> None:
    rules = agent_eip.wanted_rules(_eip())
    assert rules[0] == ("nat", agent_eip.PRE, ("-d", "192.0.2.10/32", "-m", "comment", "--comment", "eip:e1",
                                               "-j", "DNAT", "--to-destination", "10.0.0.5"))
    assert rules[1] == ("nat", agent_eip.POST, ("-s", "10.0.0.5/32", "-m", "comment", "--comment", "eip:e1",
                                                "-j", "SNAT", "--to-source", "192.0.2.10"))
    assert {r[1] for r in rules[2:]} == {agent_eip.FWD}


def test_tagged_rules_parse_iptables_s_output() -> None:
    """`iptables -S <chain>` output (as iptables 1.8 prints it, comments quoted) → rules of one EIP."""
    listing = {
        agent_eip.PRE: '-N ZS-EIP-PRE\n-A ZS-EIP-PRE -d 192.0.2.10/32 -m comment --comment "eip:e1" -j DNAT '
                       '--to-destination 10.0.0.5\n-A ZS-EIP-PRE -d 192.0.2.11/32 -m comment --comment "eip:e2" '
                       '-j DNAT --to-destination 10.0.0.6\n',
        agent_eip.POST: "-N ZS-EIP-POST\n",
    }

    def runner(argv: Any) -> subprocess.CompletedProcess:
        chain = argv[-1]
        if chain in listing:
            return subprocess.CompletedProcess(argv, 0, listing[chain], "")
        return subprocess.CompletedProcess(argv, 1, "", "iptables: No chain/target/match by that name.")

    assert agent_eip.tagged_rules(runner, "e1") == [agent_eip.wanted_rules(_eip())[0]]
    assert agent_eip.tagged_rules(runner, "e3") == []
