"""VM creation as admin and as a normal account, back to back (issue 14: within 10%).

    python -m benchmarks.tenant_vm_create [--n 200] [--rounds 2] [--hosts 20] [--clients 50] [--db-url URL]

Starts a simulator and a fresh MN process (as benchmarks.vm_create does), builds a simulator zone
as admin, makes a normal account whose quotas do not bind, and shares admin's image, L3 network and
instance offering with it. Then, --rounds times, --n CreateVmInstance as admin and --n as the
normal account (--clients concurrent clients each, over RPC), alternately, so both meet the same
database size. Prints each run's rate and MN CPU per VM, their means and ratios (rate normal/admin;
CPU admin/normal, which a shared machine disturbs less); then checks every VM Running in the
database and on its simulated host, and the account owning its own.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.proc import cpu_seconds
from benchmarks.vm_create import _port, _wait, build_zone, run_size, verify
from mn.client import ZStackClient


def tenant(api: ZStackClient, url: str, env: dict[str, str]) -> tuple[str, str]:
    """(account uuid, session) of a normal account with admin's image, L3 and offering shared."""
    password = hashlib.sha512(b"bench").hexdigest()
    acc = api.call("CreateAccount", name="bench-tenant", password=password)["inventory"]["uuid"]
    for u in api.call("GetAccountQuotaUsage", uuid=acc)["usages"]:
        api.call("UpdateQuota", identityUuid=acc, name=u["name"], value=1 << 60)
    api.call("ShareResource", resourceUuids=[env["image"], env["l3"], env["offering"]], accountUuids=[acc])
    c = ZStackClient(url)
    return acc, c.login("bench-tenant", "bench")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--db-url")
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="zstack-bench-"))
    sim_port, mn_port = _port(), _port()
    sim = subprocess.Popen([sys.executable, "-m", "simulator.server", "--port", str(sim_port),
                            "--log-level", "WARNING", "--key-file", str(home / "agent.key")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sim_url = f"http://127.0.0.1:{sim_port}"
    mn = subprocess.Popen([sys.executable, "-m", "mn.server", "--home", str(home), "--port", str(mn_port),
                           "--simulator-url", sim_url, "--log-level", "WARNING",
                           *(["--db-url", args.db_url] if args.db_url else [])],
                          stdout=open(home / "mn.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        _wait(sim_url, sim, "/simulator/stats")
        url = f"http://127.0.0.1:{mn_port}"
        _wait(url, mn)
        api = ZStackClient(url)
        api.login()
        env = build_zone(api, args.hosts)
        _, session = tenant(api, url, env)
        print(f"zone with {args.hosts} simulated hosts (db: {args.db_url or 'sqlite'}, {args.clients} clients); "
              f"{args.rounds} rounds of {args.n} VMs as admin then as a normal account")
        rates: dict[str, list[float]] = {"admin": [], "normal": []}
        cpu: dict[str, list[float]] = {"admin": [], "normal": []}
        errors = 0
        for rnd in range(args.rounds):
            for who, sess in (("admin", api.session), ("normal", session)):
                cpu0 = cpu_seconds(mn.pid)
                r = run_size(url, sess, env, args.n, args.clients)
                cpu_ms = 1000 * (cpu_seconds(mn.pid) - cpu0) / args.n
                rates[who].append(r["rate"])
                cpu[who].append(cpu_ms)
                errors += len(r["errors"])
                print(f"round {rnd + 1} {who:>6}: {r['n']} VMs in {r['wall']:6.2f} s = {r['rate']:6.1f} VMs/s, "
                      f"p50 {r['p50']:.2f} s, p99 {r['p99']:.2f} s, MN CPU {cpu_ms:5.1f} ms/VM, {len(r['errors'])} errors",
                      flush=True)
                for e in r["errors"][:3]:
                    print(f"       error: {e}")
        admin, normal = (sum(rates[k]) / len(rates[k]) for k in ("admin", "normal"))
        print(f"mean: admin {admin:.1f} VMs/s, normal {normal:.1f} VMs/s, ratio normal/admin {normal / admin:.3f}")
        ca, cn = (sum(cpu[k]) / len(cpu[k]) for k in ("admin", "normal"))
        print(f"MN CPU per VM: admin {ca:.1f} ms, normal {cn:.1f} ms, ratio admin/normal {ca / cn:.3f}")
        total = 2 * args.rounds * args.n - errors
        running, on_hosts = verify(api, sim_url, env["zone"])
        owned = ZStackClient(url, session).call("QueryVmInstance", conditions=[], count=True)["total"]
        print(f"verified: {running} VMs Running (expected {total}), {on_hosts} on their simulated hosts, "
              f"{owned} owned by the normal account (expected {args.rounds * args.n})")
        return 0 if running == total == on_hosts and owned == args.rounds * args.n else 1
    finally:
        for p in (mn, sim):
            p.send_signal(signal.SIGTERM)
        for p in (mn, sim):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
