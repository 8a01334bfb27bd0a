"""Host tracking: every host/ping.interval seconds, ping each Connected or Disconnected host.

Invariants and costs (sized for 10,000 hosts per MN at 60 s intervals):
- One SELECT of (uuid, status, agent URL) per round; pings run on a bounded thread pool, never a
  thread per host; nothing is written when nothing changed.
- A Connected host that misses host/ping.maxFailure consecutive pings becomes Disconnected by a
  bulk compare-and-swap (one transaction per batch of hosts), then HOST_DISCONNECTED hooks run.
- A Disconnected host that answers, and a host whose agent answers without knowing it (restarted
  agent: no or another hostUuid in the reply), is claimed by a bulk CAS to Connecting and
  reconnected by the connect flow on a separate bounded pool (facts, capacity and
  HOST_CONNECTED hooks re-run, the agent learns the MN's event URL again).
- Hosts left Connecting far longer than any connect can take (an MN died mid-connect) are put
  back to Disconnected, so the next round can reconnect them.
- The interval and the failure threshold are read from the global config every round; the
  first round runs right after the MN starts.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import select, update

from kvmagent.protocol import PingCmd
from mn import extensions
from mn.background import periodic
from mn.connection import CONNECTED, CONNECTING, DISCONNECTED
from mn.context import ApiContext, Services
from mn.db.base import utcnow
from mn.globalconfig import HOST_PING_FAILURES, HOST_PING_INTERVAL
from mn.models import Host
from mn.services.host import agent_url, reconnect_host

log = logging.getLogger(__name__)

DISCONNECT, RECONNECT = "disconnect", "reconnect"
# What a ping found: the agent answered as the host; answered but was not connected as this host
# (an agent restart); or did not answer (unreachable, error, timeout).
OK, NOT_CONNECTED, MISSED = "ok", "not-connected", "missed"
BATCH = 500
PING_WORKERS = 32
RECONNECT_WORKERS = 8
TICK = 1.0  # seconds between checks whether a round is due, so a new interval applies at once


def decide(status: str, ping: str, failures: int, max_failures: int) -> tuple[str | None, int]:
    """What one ping result means: (action or None, the host's new consecutive-failure count)."""
    if ping == MISSED:
        if status != CONNECTED:
            return None, 0
        failures += 1
        return (DISCONNECT, 0) if failures >= max_failures else (None, failures)
    if ping == NOT_CONNECTED or status == DISCONNECTED:
        return RECONNECT, 0
    return None, 0


def chunks(items: list[str], size: int = BATCH) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


@dataclass
class RoundResult:
    pinged: int = 0
    disconnected: list[str] = field(default_factory=list)
    reconnecting: list[str] = field(default_factory=list)


class HostTracker:
    """Pings hosts and acts on status changes; one per MN process (Services.component)."""

    def __init__(self, svc: Services, ping_workers: int = PING_WORKERS,
                 reconnect_workers: int = RECONNECT_WORKERS):
        self.svc = svc
        self.failures: dict[str, int] = {}
        self._pings = ThreadPoolExecutor(ping_workers, thread_name_prefix="host-ping")
        self._reconnects = ThreadPoolExecutor(reconnect_workers, thread_name_prefix="host-reconnect")
        self._round_lock = threading.Lock()
        # No round yet: the first tick after start runs one, so a restarted MN checks its hosts
        # (and reconnects those whose agents forgot it) at once, not one interval later.
        self.last_round = -math.inf

    def due(self) -> bool:
        return time.monotonic() - self.last_round >= float(self.svc.gconf.get(HOST_PING_INTERVAL))

    def ping(self, uuid: str, url: str, timeout: float) -> str:
        """OK, NOT_CONNECTED (the agent does not know itself as this host) or MISSED."""
        try:
            reply = self.svc.agents.call(url, PingCmd.PATH, {"hostUuid": uuid}, timeout=timeout)
        except Exception as exc:  # noqa: BLE001
            log.debug("ping of host %s failed: %s", uuid, exc)
            return MISSED
        return OK if reply.get("hostUuid") == uuid else NOT_CONNECTED

    def bulk_cas(self, uuids: list[str], expected: str, new: str) -> list[str]:
        """Move the hosts still in status `expected` to `new`; return those that moved."""
        moved: list[str] = []
        for part in chunks(uuids):
            with self.svc.db.tx() as s:
                got = list(s.scalars(select(Host.uuid).where(Host.uuid.in_(part), Host.status == expected)
                                     .with_for_update()))
                if got:
                    s.execute(update(Host).where(Host.uuid.in_(got), Host.status == expected)
                              .values(status=new))
            moved += got
        return moved

    def release_stale_connecting(self) -> list[str]:
        """Hosts Connecting for longer than a connect can last go back to Disconnected.

        Read first, so a round where no host is stale writes nothing.
        """
        cutoff = utcnow() - dt.timedelta(seconds=3 * self.svc.config.agent_timeout + 60)
        stale = (Host.status == CONNECTING, Host.lastOpDate < cutoff)
        with self.svc.db.ro() as s:
            uuids = list(s.scalars(select(Host.uuid).where(*stale)))
        for part in chunks(uuids):
            with self.svc.db.tx() as s:
                s.execute(update(Host).where(Host.uuid.in_(part), *stale).values(status=DISCONNECTED))
        return uuids

    def run_round(self, wait_reconnects: bool = False) -> RoundResult | None:
        """One round; None if another round is running now (rounds never overlap)."""
        if not self._round_lock.acquire(blocking=False):
            return None
        try:
            self.last_round = time.monotonic()
            return self._round(wait_reconnects)
        finally:
            self._round_lock.release()

    def _round(self, wait_reconnects: bool) -> RoundResult:
        gconf = self.svc.gconf
        interval = float(gconf.get(HOST_PING_INTERVAL))
        max_failures = int(gconf.get(HOST_PING_FAILURES))
        timeout = max(1.0, min(interval, 10.0))
        with self.svc.db.ro() as s:
            rows = s.execute(select(Host.uuid, Host.status, Host.agentUrl, Host.managementIp)
                             .where(Host.status.in_([CONNECTED, DISCONNECTED]))).all()
        answers = self._pings.map(lambda r: self.ping(r[0], agent_url(r), timeout), rows)
        result = RoundResult(pinged=len(rows))
        to_disconnect: list[str] = []
        to_reconnect: dict[str, list[str]] = {CONNECTED: [], DISCONNECTED: []}
        failures: dict[str, int] = {}
        for r, ping in zip(rows, answers, strict=True):
            action, n = decide(r[1], ping, self.failures.get(r[0], 0), max_failures)
            if n:
                failures[r[0]] = n
            if action == DISCONNECT:
                to_disconnect.append(r[0])
            elif action == RECONNECT:
                to_reconnect[r[1]].append(r[0])
        self.failures = failures  # hosts gone or answering are forgotten
        result.disconnected = self.bulk_cas(to_disconnect, CONNECTED, DISCONNECTED)
        for uuid in result.disconnected:
            log.warning("host %s missed %d ping(s); it is now Disconnected", uuid, max_failures)
            try:
                extensions.HOST_DISCONNECTED.run(ApiContext(self.svc), uuid)
            except Exception:
                log.exception("a HOST_DISCONNECTED hook failed for host %s", uuid)
        for status, uuids in to_reconnect.items():
            result.reconnecting += self.bulk_cas(uuids, status, CONNECTING)
        futures = [self._reconnects.submit(self._reconnect, u) for u in result.reconnecting]
        if wait_reconnects:
            for f in futures:
                f.result()
        stale = self.release_stale_connecting()
        if stale:
            log.warning("hosts %s were left Connecting by a stopped connect; Disconnected again", stale[:10])
        return result

    def _reconnect(self, uuid: str) -> None:
        try:
            reconnect_host(ApiContext(self.svc), uuid, claimed=True)
            log.info("host %s answered pings again and is reconnected", uuid)
        except Exception as exc:  # noqa: BLE001
            log.warning("reconnecting host %s failed: %s", uuid, exc)

    def close(self) -> None:
        self._pings.shutdown(wait=False, cancel_futures=True)
        self._reconnects.shutdown(wait=False, cancel_futures=True)


def tracker_of(svc: Services) -> HostTracker:
    return svc.component(HostTracker, lambda: HostTracker(svc))


@periodic("host-tracker", lambda svc: min(float(svc.gconf.get(HOST_PING_INTERVAL)), TICK))
def track_hosts(svc: Services) -> None:
    tracker = tracker_of(svc)
    if tracker.due():
        tracker.run_round()
