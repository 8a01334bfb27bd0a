"""The MN daemon as a process: its pid file, whether a pid is a live MN, and the ctl lock of a home.

A pid counts as this home's MN only when it is alive, not a zombie, and (where /proc tells) runs
zstack-ctl: `mn.ctl` or `zstack-ctl` in its command line, so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from mn.ops.ctl.settings import Paths


def read_pid(path: Path) -> int | None:
    """The pid in a pid file, or None when the file is missing or does not hold a pid."""
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, IsADirectoryError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def remove_pid(path: Path, pid: int | None = None) -> None:
    """Remove the pid file; with `pid`, only when it still names that process."""
    if pid is not None and read_pid(path) != pid:
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie (an exited, unreaped daemon)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `pid` to exit; True when it did."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def is_mn_process(pid: int) -> bool:
    """True when `pid` is alive and, where /proc tells, runs zstack-ctl (not a recycled pid)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"mn.ctl" in cmdline or b"zstack-ctl" in cmdline


def running_pid(paths: Paths) -> int | None:
    """The pid of this home's running MN, or None."""
    pid = read_pid(paths.pid)
    return pid if pid is not None and is_mn_process(pid) else None


@contextlib.contextmanager
def ctl_lock(paths: Paths) -> Iterator[None]:
    """Serialise state-changing commands on one home (an flock, released when the process dies)."""
    paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(paths.lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another zstack-ctl command on {paths.home} ...", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield
