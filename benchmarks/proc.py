"""The CPU time and resident memory of a process and its descendants (an MN of several
processes is a supervisor and its workers), read from /proc."""

from __future__ import annotations

import os
from pathlib import Path


def tree(pid: int) -> list[int]:
    """A process and its descendants (an MN of several processes is a supervisor and workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) so far of a process and its descendants; this process when pid
    is None. (A descendant that exited meanwhile is not counted.)"""
    if pid is None:
        t = os.times()
        return t.user + t.system
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, MiB."""
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024
