"""Several MN processes on one machine (MNConfig.processes > 1): one Python process cannot use
more than one core (the GIL), so the MN runs as a supervisor and N worker processes.

Invariants:
- Every worker listens on the same API port with SO_REUSEPORT (the kernel spreads connections
  over them; mn/server.py asks cheroot for it) and on a port of its own, given to agents as its
  async-reply (callback) address, so a reply reaches the process whose call waits for it.
- Each worker is a management node of its own (a ManagementNode row, its own job runner and
  jobs); its uuid is derived from the home's uuid and its index, so a restarted worker recovers
  its own jobs. Worker 0 keeps the home's uuid.
- Worker 0 starts first and alone: it migrates the database, recovers the jobs of every worker
  of this home and reconciles resources, then answers /health; only then do the others start.
  A worker that dies is restarted and recovers its own jobs only (the others keep running, so
  nothing else may be reconciled under them).
- Background tasks (host pings, expunging, statistics) run in worker 0; every worker runs the
  per-process ones (heartbeat, global config reload).
- SQLite writers of all workers queue on one flock (mn.db.engine.WriterLock).
- The supervisor holds no database connection; SIGTERM/SIGINT stop every worker cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, fields
from urllib.request import urlopen

from mn.config import MNConfig

log = logging.getLogger(__name__)

MAX_PROCESSES = 64
AUTO_PROCESSES = 8  # the most processes=0 chooses (each worker is 85-140 MiB resident)
RESTART_LIMIT = 5  # restarts of one worker within RESTART_WINDOW before the MN gives up
RESTART_WINDOW = 60.0
READY_TIMEOUT = 600.0  # worker 0's start: migrations and crash recovery may take minutes
STOP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Worker:
    """Which process of the MN this is."""

    index: int = 0
    count: int = 1
    restarted: bool = False  # started again by the supervisor while the others kept running


def stop_with_supervisor(supervisor_pid: int) -> None:
    """In a worker: be sent SIGTERM when the supervisor dies, however it dies (Linux
    PR_SET_PDEATHSIG), so no worker outlives its MN; exit at once if it is already gone."""
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("cannot ask to be stopped with the supervisor (no prctl)")
    if os.getppid() != supervisor_pid:
        raise SystemExit("the MN supervisor is gone")


def process_count(config: MNConfig) -> int:
    """`processes`, or automatically (0) one per CPU plus one, at most AUTO_PROCESSES: a process
    waiting for the database's writer lock or for its GIL leaves its core to the extra one
    (measured on 2 cores: 3 processes create VMs about 20 % faster than 2; docs/performance.md)."""
    n = config.processes if config.processes > 0 else min((os.cpu_count() or 1) + 1, AUTO_PROCESSES)
    return max(1, min(n, MAX_PROCESSES))


def worker_uuid(base: str, index: int) -> str:
    """The MN uuid of worker `index` of the home whose uuid is `base` (worker 0: `base`)."""
    return base if index == 0 else uuid.uuid5(uuid.UUID(hex=base), f"worker-{index}").hex


def all_worker_uuids(base: str) -> list[str]:
    """Every uuid a worker of this home can have had, whatever the process count was."""
    return [worker_uuid(base, i) for i in range(MAX_PROCESSES)]


def _env(config: MNConfig) -> dict[str, str]:
    """The config as ZSTACK_* variables, as MNConfig.load reads them (not on the command line,
    where `ps` would show a database password)."""
    env = dict(os.environ)
    for f in fields(MNConfig):
        if f.name != "callback_port":
            env[f"ZSTACK_{f.name.upper()}"] = str(getattr(config, f.name))
    return env


def _healthy(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    """Whether `proc` answers /health on the shared port within `timeout` seconds. Its own answer
    counts, not one from another process on the port (SO_REUSEPORT: say a worker of a killed
    supervisor, still stopping, while a new MN starts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urlopen(url + "/health", timeout=5) as r:  # noqa: S310 - our own loopback URL
                if r.status == 200 and json.loads(r.read()).get("pid") == proc.pid:
                    return True
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    return False


class Supervisor:
    """Starts the workers, restarts one that dies, stops them all on SIGTERM/SIGINT."""

    def __init__(self, config: MNConfig):
        self.config = config
        self.count = process_count(config)
        self.procs: dict[int, subprocess.Popen] = {}
        self.starts: dict[int, list[float]] = {}
        self.stopping = threading.Event()

    def _spawn(self, index: int, restarted: bool) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "mn.server", "--worker-index", str(index), "--worker-count", str(self.count),
               "--worker-of", str(os.getpid())]
        if restarted:
            cmd.append("--worker-restarted")
        self.starts.setdefault(index, []).append(time.monotonic())
        proc = subprocess.Popen(cmd, env=_env(self.config))  # noqa: S603 - our own module
        self.procs[index] = proc
        log.info("started MN worker %d of %d (pid %d)", index, self.count, proc.pid)
        return proc

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        cfg = self.config
        if not cfg.port:  # every worker must bind the same port: choose it here
            with socket.socket() as s:
                s.bind((cfg.host, 0))
                cfg.port = s.getsockname()[1]
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        first = self._spawn(0, restarted=False)
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(cfg.host, cfg.host)
        if not _healthy(f"http://{host}:{cfg.port}", first, READY_TIMEOUT):
            log.error("MN worker 0 did not become ready (exit code %s)", first.poll())
            self._stop_all()
            return first.poll() or 1
        for i in range(1, self.count):
            self._spawn(i, restarted=False)
        code = 0
        while not self.stopping.wait(0.5):
            for i, p in list(self.procs.items()):
                if p.poll() is None:
                    continue
                recent = [t for t in self.starts[i] if time.monotonic() - t < RESTART_WINDOW]
                if len(recent) >= RESTART_LIMIT:
                    log.error("MN worker %d exited %d times within %g s: stopping the MN",
                              i, len(recent), RESTART_WINDOW)
                    self.stopping.set()
                    code = 1
                    break
                log.error("MN worker %d (pid %d) exited with %s: restarting it", i, p.pid, p.returncode)
                self._spawn(i, restarted=True)
        self._stop_all()
        return code

    def _stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for i, p in self.procs.items():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("MN worker %d (pid %d) did not stop: killing it", i, p.pid)
                p.kill()
                p.wait()
