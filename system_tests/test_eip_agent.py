"""The real agent's EIP (zstack_plugins/eip/agent.py) on real iptables, in network namespaces made here.

Three namespaces: `host` (the agent's view: a guest bridge 10.0.0.1/24 and a public bridge
192.0.2.1/24), `guest` (10.0.0.5 behind the guest bridge) and `client` (192.0.2.50 on the public
bridge). The same code the agent runs applies the EIP 192.0.2.10 -> 10.0.0.5 inside `host`; then
real TCP shows the DNAT (the client reaches the guest at the VIP) and the SNAT (the guest reaches
the client from the VIP). Reapplying changes nothing; deleting leaves no rule and no address.
The namespaces (and with them every link and rule) are deleted at the end.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from kvmagent.registry import AgentError
from zstack_plugins.eip import agent as agent_eip
from zstack_plugins.eip import protocol as eipp

VIP, GUEST, GUEST2, CLIENT = "192.0.2.10", "10.0.0.5", "10.0.0.6", "192.0.2.50"


def sh(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr.strip()}"
    return r.stdout


@dataclass
class Net:
    host: str
    guest: str
    client: str

    def run_in(self, ns: str) -> agent_eip.Run:
        def run(argv: Sequence[str]) -> subprocess.CompletedProcess:
            return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=60)

        return run

    def dump(self) -> str:
        """Every rule of both tables in `host` (counters left out), for before/after comparisons."""
        return "".join(sh("ip", "netns", "exec", self.host, "iptables", "-w", "-t", t, "-S") for t in ("nat", "filter"))

    def addrs(self, dev: str) -> str:
        return sh("ip", "netns", "exec", self.host, "ip", "-o", "-4", "addr", "show", "dev", dev)


@pytest.fixture
def net() -> Iterator[Net]:
    tag = uuidlib.uuid4().hex[:6]
    n = Net(f"zeip-h-{tag}", f"zeip-g-{tag}", f"zeip-c-{tag}")
    try:
        for ns in (n.host, n.guest, n.client):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for br, addr in (("br-guest", "10.0.0.1/24"), ("br-pub", "192.0.2.1/24")):
            sh("ip", "-n", n.host, "link", "add", br, "type", "bridge")
            sh("ip", "-n", n.host, "addr", "add", addr, "dev", br)
            sh("ip", "-n", n.host, "link", "set", br, "up")
        for ns, br, addr, gw in ((n.guest, "br-guest", f"{GUEST}/24", "10.0.0.1"),
                                 (n.client, "br-pub", f"{CLIENT}/24", None)):
            peer = f"v{ns[-6:]}{ns[5]}"
            sh("ip", "-n", n.host, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", n.host, "link", "set", peer, "master", br, "up")
            sh("ip", "-n", ns, "addr", "add", addr, "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            if gw:
                sh("ip", "-n", ns, "route", "add", "default", "via", gw)
        yield n
    finally:
        for ns in (n.host, n.guest, n.client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def eip(guest: str = GUEST, uuid: str = "0123456789abcdef0123456789abcdef") -> eipp.EipTO:
    return eipp.EipTO(eipUuid=uuid, vip=VIP, guestIp=guest, nicMac="fa:16:3e:00:00:05", guestBridgeName="br-guest",
                   vipBridgeName="br-pub")


SERVE = ("import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
         "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(1); s.settimeout(20); c, a = s.accept(); "
         "c.sendall((sys.argv[2] + ' ' + a[0]).encode()); c.close()")
CONNECT = ("import socket,sys; c=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); "
           "print(c.recv(100).decode())")


def talk(net: Net, server_ns: str, client_ns: str, dest: str, port: int) -> tuple[str, str]:
    """A TCP connection from client_ns to dest:port, served in server_ns: (server's name, peer seen)."""
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c", SERVE, str(port), server_ns],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(50):  # until the server listens
            r = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, "-c", CONNECT, dest, str(port)],
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                name, peer = r.stdout.split()
                return name, peer
            time.sleep(0.1)
        raise AssertionError(f"no TCP connection to {dest}:{port}: {r.stderr}")
    finally:
        srv.kill()
        srv.wait()


def test_eip_rules_nat_real_traffic_and_clean_up(net: Net) -> None:
    run = net.run_in(net.host)
    pristine = net.dump()
    agent_eip.apply_all(run, [eip()])
    applied = net.dump()
    assert f"-A ZS-EIP-PRE -d {VIP}/32" in applied and f"--to-destination {GUEST}" in applied
    assert f"-A ZS-EIP-POST -s {GUEST}/32" in applied and f"--to-source {VIP}" in applied
    assert "-A PREROUTING -j ZS-EIP-PRE" in applied and "-A FORWARD -j ZS-EIP-FWD" in applied
    assert f"{VIP}/32" in net.addrs("br-pub")
    # DNAT: the client reaches the guest at the VIP; SNAT: the guest reaches the client as the VIP
    assert talk(net, net.guest, net.client, VIP, 8080) == (net.guest, CLIENT)
    assert talk(net, net.client, net.guest, CLIENT, 9090) == (net.client, VIP)
    agent_eip.apply_all(run, [eip()])  # idempotent
    assert net.dump() == applied
    agent_eip.apply_all(run, [eip(GUEST2)])  # the guest changed: its rules replace the old ones
    moved = net.dump()
    assert f"--to-destination {GUEST2}" in moved and f"--to-destination {GUEST}" not in moved
    agent_eip.delete_all(run, [eip(GUEST2)])
    cleaned = net.dump()
    assert "eip:" not in cleaned and f"{VIP}/32" not in net.addrs("br-pub")
    extra = set(cleaned.splitlines()) - set(pristine.splitlines())
    assert extra and all("ZS-EIP" in line for line in extra)  # only our (now empty) chains and their jumps
    assert set(pristine.splitlines()) <= set(cleaned.splitlines())
    agent_eip.delete_all(run, [eip(GUEST2)])  # deleting again succeeds
    assert net.dump() == cleaned


def test_a_failing_apply_leaves_no_rule(net: Net) -> None:
    run = net.run_in(net.host)
    agent_eip.apply_all(run, [eip()])
    before = net.dump()
    missing = eipp.EipTO(eipUuid="f" * 32, vip="192.0.2.11", guestIp="10.0.0.7", nicMac="fa:16:3e:00:00:07",
                      guestBridgeName="br-guest", vipBridgeName="br-nothere")
    second = eipp.EipTO(eipUuid="e" * 32, vip="192.0.2.12", guestIp="10.0.0.8", nicMac="fa:16:3e:00:00:08",
                     guestBridgeName="br-guest", vipBridgeName="br-pub")
    with pytest.raises(AgentError, match="br-nothere does not exist"):
        agent_eip.apply_all(run, [eip(), second, missing])
    assert net.dump() == before  # `second` was undone, the EIP applied before the call stayed
    assert "192.0.2.12" not in net.addrs("br-pub") and f"{VIP}/32" in net.addrs("br-pub")
