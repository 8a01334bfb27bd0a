"""Running host tools (ip, qemu-img, scp) as subprocesses, and small file-system helpers.

run() never raises anything but AgentError for a tool that fails or is missing, and the message
carries the command line and the tool's own output, so the MN sees what the OS said.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from kvmagent.registry import AgentError

DEFAULT_TIMEOUT = 120.0


def run(args: list[str], what: str, timeout: float = DEFAULT_TIMEOUT, input_text: str | None = None) -> str:
    """Run `args` and return its stdout; AgentError naming `what` if it fails, times out or is absent."""
    line = shlex.join(args)
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input_text)
    except FileNotFoundError:
        raise AgentError(f"{what}: {args[0]} is not installed on this host") from None
    except subprocess.TimeoutExpired:
        raise AgentError(f"{what}: `{line}` did not finish within {timeout:.0f}s") from None
    if r.returncode != 0:
        out = (r.stderr.strip() or r.stdout.strip() or "no output")
        raise AgentError(f"{what}: `{line}` failed (exit {r.returncode}): {out}")
    return r.stdout


def allocated_size(path: str | Path) -> int:
    """Bytes the file really occupies on disk (thin files occupy less than their length)."""
    return os.stat(path).st_blocks * 512


def capacity(path: str | Path) -> tuple[int, int]:
    """(total, available) bytes of the file system holding `path`, as an unprivileged user sees them."""
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def inside(root: str | Path, path: str | Path, what: str) -> Path:
    """`path` resolved, checked to lie strictly below `root`: AgentError otherwise (the agent never
    touches a file outside the storage it was asked about)."""
    base = Path(root).resolve()
    target = Path(path).resolve()
    if target == base or base not in target.parents:
        raise AgentError(f"{what}: {path} is not inside {root}")
    return target


def users_of(path: str | Path) -> list[int]:
    """Pids of the processes holding `path` open (a running VM's QEMU holds its disks)."""
    target = str(Path(path).resolve())
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    pids.append(int(proc.name))
                    break
            except OSError:
                continue
    return pids


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
