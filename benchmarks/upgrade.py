"""`zstack-ctl upgrade` on a database with 10,000 VMs, timed end to end, rows counted before/after.

    python -m benchmarks.upgrade [--vms 10000] [--db sqlite|postgresql|mariadb]

The previous release (integration/upgrade_env.py: the code before the newest migration) runs with
the embedded simulator; its demo zone and one VM on a /16 network are made through its API, then
the VM's rows (vm_instance, volume, vm_nic, used_ip) are cloned by direct inserts into --vms
stopped VMs with their own uuids, IPs of the range, MACs and volume paths. The MN is stopped, every
table counted, and this checkout's wheel installed by `zstack-ctl upgrade` (stop, backup, install,
migrate, start, readiness). Prints the time and the rows lost (target: under 60 s, zero).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import MetaData, create_engine, insert, select
from sqlalchemy.pool import NullPool

from integration import upgrade_env as ue
from mn.client import ZStackClient
from mn.ops import backup

CLONED = ("vm_instance", "volume", "vm_nic", "used_ip")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _template_vm(api: ZStackClient) -> str:
    """A VM on a /16 network of the demo zone (room for the clones' IPs); its uuid."""
    from mn.ops import demo

    d = demo.describe(api)
    l2 = api.query("QueryL2Network")[0]
    l3 = api.call("CreateL3Network", name="bench-l3", l2NetworkUuid=l2["uuid"])["inventory"]
    api.call("AddIpRange", l3NetworkUuid=l3["uuid"], name="bench-range", startIp="10.0.0.2",
             endIp="10.0.255.250", netmask="255.255.0.0", gateway="10.0.0.1")
    vm = api.call("CreateVmInstance", name="bench-template", instanceOfferingUuid=d["instanceOfferingUuid"],
                  imageUuid=d["imageUuid"], l3NetworkUuids=[l3["uuid"]])["inventory"]
    api.call("StopVmInstance", uuid=vm["uuid"])
    return vm["uuid"]


def clone_vms(url: str, template: str, count: int) -> None:
    """Insert `count` copies of the template VM's rows, every uuid, IP, MAC and name made unique."""
    engine = create_engine(url, poolclass=NullPool)
    meta = MetaData()
    meta.reflect(engine, only=CLONED)
    t = meta.tables
    with engine.begin() as conn:
        vm = dict(conn.execute(select(t["vm_instance"]).where(t["vm_instance"].c.uuid == template)).one()._mapping)
        vols = [dict(r._mapping) for r in conn.execute(
            select(t["volume"]).where(t["volume"].c.vmInstanceUuid == template))]
        nics = [dict(r._mapping) for r in conn.execute(
            select(t["vm_nic"]).where(t["vm_nic"].c.vmInstanceUuid == template))]
        ips = [dict(r._mapping) for r in conn.execute(
            select(t["used_ip"]).where(t["used_ip"].c.uuid.in_([n["usedIpUuid"] for n in nics])))]
        taken = {ip["ipInLong"] for ip in conn.execute(select(t["used_ip"].c.ipInLong)).mappings()}
    first = (10 << 24) + 2  # 10.0.0.2, the range's start
    free = (n for n in range(first, first + 65000) if n not in taken)
    rows: dict[str, list[dict]] = {name: [] for name in CLONED}
    for i in range(count):
        ids = {old: uuidlib.uuid4().hex for old in [template] + [r["uuid"] for r in vols + nics + ips]}

        def copy(row: dict, ids: dict[str, str] = ids) -> dict:
            out = {}
            for k, v in row.items():
                if isinstance(v, str):
                    for old, new in ids.items():
                        v = v.replace(old, new)
                out[k] = v
            return out

        v = copy(vm)
        v.update(name=f"bench-vm-{i}", state="Stopped")
        if "internalId" in v:
            v["internalId"] = 1_000_000 + i
        rows["vm_instance"].append(v)
        rows["volume"] += [dict(copy(r), name=f"ROOT-for-bench-vm-{i}") for r in vols]
        for nic, ip in zip(nics, ips, strict=True):
            n = next(free)
            text = f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
            mac = f"fa:be:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}:{nic['deviceId'] & 255:02x}"
            rows["vm_nic"].append(dict(copy(nic), ip=text, mac=mac, internalName=f"vnic{1_000_000 + i}.{nic['deviceId']}"))
            rows["used_ip"].append(dict(copy(ip), ip=text, ipInLong=n))
    with engine.begin() as conn:
        for name in CLONED:
            for k in range(0, len(rows[name]), 2000):
                conn.execute(insert(t[name]), rows[name][k:k + 2000])
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vms", type=int, default=10_000)
    p.add_argument("--db", choices=("sqlite", "postgresql", "mariadb"), default="sqlite")
    args = p.parse_args(argv)
    os.environ["ZSTACK_TEST_DB"] = args.db
    from integration.conftest import make_db_url

    with tempfile.TemporaryDirectory(prefix="zstack-bench-upgrade-") as tmp:
        base = Path(tmp)
        t0 = time.monotonic()
        old_tree, new_tree = ue.previous_tree(base / "old-src"), ue.checkout_tree(base / "new-src")
        ue.set_version(new_tree, ue.version_of(new_tree) + "+bench")
        with ThreadPoolExecutor(2) as pool:
            old, new = pool.map(lambda x: ue.build_wheel(x[0], base / x[1]), [(old_tree, "old"), (new_tree, "new")])
        venv = ue.make_venv(base / "venv", old)
        print(f"previous release {ue.version_of(old_tree)} and {new.name} built ({time.monotonic() - t0:.0f} s)")
        home = base / "home"
        db_url, cleanup = make_db_url(home)
        env = ue.clean_env(base / "user")
        ctl = [str(venv / "bin/zstack-ctl"), "--home", str(home)]
        port = _free_port()
        try:
            for cmd in (["configure", f"simulator_port={_free_port()}"],
                        ["start", "--simulator", "--port", str(port), "--db-url", db_url]):
                subprocess.run([*ctl, *cmd], env=env, check=True, capture_output=True)
            api = ZStackClient(f"http://127.0.0.1:{port}")
            api.login()
            template = _template_vm(api)
            subprocess.run([*ctl, "stop", "--timeout", "10"], env=env, check=True, capture_output=True)
            t1 = time.monotonic()
            clone_vms(db_url, template, args.vms)
            before = backup.row_counts(db_url)
            print(f"{before['vm_instance']} VMs in {args.db} ({sum(before.values())} rows, "
                  f"inserted in {time.monotonic() - t1:.1f} s)")
            t2 = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "mn.ctl", "--home", str(home), "upgrade", "--venv", str(venv),
                                str(new)], env=env, capture_output=True, text=True, cwd=ue.ROOT)
            took = time.monotonic() - t2
            print("\n".join(line for line in r.stdout.splitlines() if line.startswith(("==>", "    done", "upgrade"))))
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return 1
            subprocess.run([*ctl, "stop"], env=env, capture_output=True)
            after = backup.row_counts(db_url)
            lost = {k: before[k] - after.get(k, 0) for k in before if after.get(k, 0) < before[k]}
            print(f"zstack-ctl upgrade with {before['vm_instance']} VMs ({args.db}): {took:.1f} s "
                  f"(target < 60 s); rows before {sum(before.values())}, after {sum(after.values())}, "
                  f"lost {sum(lost.values())}" + (f" {lost}" if lost else ""))
            return 0 if not lost and took < 60 else 1
        finally:
            subprocess.run([*ctl, "stop", "--timeout", "10"], env=env, capture_output=True)
            cleanup()


if __name__ == "__main__":
    sys.exit(main())
