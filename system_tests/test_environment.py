"""The host prerequisites of the system tier (KVM hosts managed over SSH by Ansible).

Required now (asserted): Python >= 3.11, root, iproute2 (`ip`, `bridge`), `iptables`, working
loopback TCP, SQLite with WAL. Needed by later system tests (reported, not asserted yet): /dev/kvm,
QEMU, libvirt, sshd, Ansible.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys

LATER = ("/dev/kvm", "qemu-system-x86_64", "qemu-img", "virsh", "libvirtd", "sshd", "ansible-playbook")


def _run(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}"
    return (r.stdout or r.stderr).strip()


def _which(name: str) -> str:
    """`name` on PATH or in the sbin directories (not on a non-root PATH)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    assert path, f"'{name}' is not installed (run .ci/run, or apt-get install the package providing it)"
    return path


def test_python_version(report):
    report["python"] = f"{platform.python_version()} ({sys.executable})"
    assert sys.version_info >= (3, 11), "the project needs Python 3.11 or newer"


def test_runs_as_root(report):
    report["user"] = f"uid {os.geteuid()}"
    assert os.geteuid() == 0, "the system tier manages bridges, iptables and VMs: run it as root"


def test_iproute2(report):
    ip = _which("ip")
    report["ip"] = _run(ip, "-V")
    links = _run(ip, "-o", "link", "show", "lo")
    assert "lo" in links and "LOOPBACK" in links
    report["bridge"] = _run(_which("bridge"), "-V")


def test_iptables(report):
    version = _run(_which("iptables"), "--version")
    report["iptables"] = version
    assert version.startswith("iptables v")


def test_ip_forwarding_is_readable(report):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        value = f.read().strip()
    report["ip_forward"] = value
    assert value in ("0", "1")


def test_loopback_tcp():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"


def test_sqlite_supports_wal(tmp_path, report):
    report["sqlite"] = sqlite3.sqlite_version
    assert sqlite3.sqlite_version_info >= (3, 35), "SQLite 3.35+ is needed (RETURNING, DROP COLUMN)"
    con = sqlite3.connect(tmp_path / "wal.db")
    try:
        assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    finally:
        con.close()


def test_capacity(report):
    cpus = os.cpu_count() or 0
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    free = shutil.disk_usage("/tmp").free
    report["capacity"] = f"{cpus} cpus, {mem_kb // 1024} MiB memory, {free // 2**30} GiB free in /tmp"
    assert cpus >= 1 and mem_kb >= 1024 * 1024 and free >= 2 * 2**30, "at least 1 GiB RAM, 2 GiB disk"


def test_report_later_prerequisites(report):
    """Reported only (the KVM tests needing these are not written yet); /dev/kvm, if any, is a device."""
    for name in sorted(LATER):
        if name.startswith("/"):
            found = os.path.exists(name)
        else:
            found = bool(shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin"))
        report[f"later: {name}"] = "present" if found else "missing"
    if os.path.exists("/dev/kvm"):
        assert stat.S_ISCHR(os.stat("/dev/kvm").st_mode), "/dev/kvm exists but is not a character device"
