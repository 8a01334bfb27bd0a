"""libvirt lifecycle events → `VmStateChanged` HostEvents for the MN, for changes the agent did not cause.

One Monitor per Agent (`monitor(agent)`, started on the agent's first host or VM command). It
registers a lifecycle callback on every libvirt connection (re-registered by the on-connect hook
after a reconnect) and a watchdog that reopens a lost connection within WATCH_INTERVAL seconds.
Invariants:
- only our domains (known from start/vmsync/listing, or by our metadata) of this agent's host are
  reported; a domain with another host uuid in its metadata belongs to another agent;
- a change happening while the agent works on that VM (`with monitor.caused(vm, *states):`), or
  to one of the `states` the agent put it in within GRACE seconds after (events trail the call),
  is the agent's own doing and is not reported; migration events neither;
- callbacks only queue; a worker thread looks domains up and POSTs, so the libvirt event loop
  never blocks on the MN;
- after a reconnect, a known VM that vanished meanwhile is reported Stopped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kvmagent import domain
from kvmagent import protocol as p
from kvmagent.libvirt_conn import is_error, lv
from kvmagent.registry import AgentError

log = logging.getLogger(__name__)

GRACE = 2.0
WATCH_INTERVAL = 5.0

# libvirt's virDomainEventType and detail numbers (stable ABI), to a state and a reason.
_STARTED, _SUSPENDED, _RESUMED, _STOPPED, _PMSUSPENDED = 2, 3, 4, 5, 7
_MIGRATED_DETAIL = {_STARTED: 1, _SUSPENDED: 1, _RESUMED: 1, _STOPPED: 3}
_STOP_REASONS = {0: "the guest shut down", 1: "destroyed outside the agent", 2: "the guest crashed",
                 4: "saved", 5: "the hypervisor failed", 6: "restored from a snapshot"}
_SUSPEND_REASONS = {0: "paused outside the agent", 2: "paused on a disk I/O error", 3: "paused by the watchdog",
                    6: "paused on an API error"}


def translate(event: int, detail: int) -> tuple[str, str] | None:
    """(state, reason) for a lifecycle event worth reporting, None for the others (migration
    phases, defined/undefined, shutdown-in-progress: a STOPPED follows)."""
    if _MIGRATED_DETAIL.get(event) == detail:
        return None
    if event == _STOPPED:
        return p.VM_STOPPED, _STOP_REASONS.get(detail, f"stopped (libvirt detail {detail})")
    if event == _STARTED:
        return p.VM_RUNNING, "started outside the agent"
    if event == _RESUMED:
        return p.VM_RUNNING, "resumed outside the agent"
    if event == _SUSPENDED:
        return p.VM_PAUSED, _SUSPEND_REASONS.get(detail, f"paused (libvirt detail {detail})")
    if event == _PMSUSPENDED:
        return p.VM_PAUSED, "the guest suspended itself"
    return None


class Monitor:
    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}
        self._quiet: dict[str, tuple[float, tuple[str, ...]]] = {}  # vm -> (until, states the agent set)
        self.known: dict[str, str | None] = {}  # our VM uuid -> host uuid in its metadata
        self._queue: queue.Queue[tuple[str, int, int]] = queue.Queue()
        self._started = False

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        self.agent.libvirt.on_connect(self._register)
        threading.Thread(target=self._work, name="vm-events", daemon=True).start()
        threading.Thread(target=self._watch, name="libvirt-watchdog", daemon=True).start()

    # ---- what the agent does itself ----------------------------------------------------------------
    @contextmanager
    def caused(self, vm_uuid: str, *states: str) -> Iterator[None]:
        """State changes of `vm_uuid` inside this block, and changes to `states` GRACE seconds after,
        are the agent's."""
        with self._lock:
            self._busy[vm_uuid] = self._busy.get(vm_uuid, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                n = self._busy.pop(vm_uuid, 1) - 1
                if n > 0:
                    self._busy[vm_uuid] = n
                self._quiet[vm_uuid] = (time.monotonic() + GRACE, states)

    def _expected(self, vm_uuid: str, state: str | None = None) -> bool:
        """Whether a change of `vm_uuid` to `state` (None: any change) is the agent's doing."""
        with self._lock:
            if vm_uuid in self._busy:
                return True
            until, states = self._quiet.get(vm_uuid, (0.0, ()))
            if until < time.monotonic():
                self._quiet.pop(vm_uuid, None)
                return False
            return state is None or state in states

    def remember(self, vm_uuid: str, host_uuid: str | None) -> None:
        with self._lock:
            self.known[vm_uuid] = host_uuid

    def forget(self, vm_uuid: str) -> None:
        with self._lock:
            self.known.pop(vm_uuid, None)

    # ---- libvirt side --------------------------------------------------------------------------------
    def _register(self, conn: Any) -> None:
        libvirt = lv()
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)
        with self._lock:
            before = dict(self.known)
        present: set[str] = set()
        for dom in conn.listAllDomains(0):
            try:
                meta = domain.meta_of(domain.parse(dom.XMLDesc(0)))
            except libvirt.libvirtError:
                continue  # gone while listing
            if meta is not None:
                present.add(meta.vm_uuid)
                self.remember(meta.vm_uuid, meta.host_uuid)
        vanished = [(u, h) for u, h in before.items() if u not in present and not self._expected(u)]
        for vm_uuid, _ in vanished:
            self.forget(vm_uuid)
        if vanished:  # not from this thread: it may be a command's, and the MN may be slow
            threading.Thread(target=lambda: [self._report(u, h, p.VM_STOPPED, "gone while the agent was "
                                                          "disconnected from libvirt") for u, h in vanished],
                             daemon=True).start()
        log.info("lifecycle events registered on %s (%d VMs of ours)", self.agent.libvirt.uri, len(present))

    def _on_lifecycle(self, conn: Any, dom: Any, event: int, detail: int, opaque: Any) -> None:
        log.debug("lifecycle event %s/%s of domain %s", event, detail, dom.name())
        self._queue.put((dom.name(), event, detail))

    def _work(self) -> None:
        while True:
            name, event, detail = self._queue.get()
            try:
                self._handle(name, event, detail)
            except Exception:
                log.exception("handling lifecycle event %s/%s of %s failed", event, detail, name)

    def _handle(self, name: str, event: int, detail: int) -> None:
        change = translate(event, detail)
        if change is None or self._expected(name, change[0]):
            return
        with self._lock:
            ours, host = name in self.known, self.known.get(name)
        if not ours:  # started outside the agent, or before it knew: look at the metadata
            meta = self._meta(name)
            if meta is None:
                return
            ours, host = True, meta.host_uuid
            self.remember(name, host)
        if change[0] == p.VM_STOPPED:
            self.forget(name)
        self._report(name, host, *change)

    def _meta(self, name: str) -> domain.VmMeta | None:
        def look(conn: Any) -> domain.VmMeta | None:
            try:
                return domain.meta_of(domain.parse(conn.lookupByName(name).XMLDesc(0)))
            except lv().libvirtError as exc:
                if is_error(exc, lv().VIR_ERR_NO_DOMAIN):
                    return None
                raise

        try:
            return self.agent.libvirt.call(look, f"looking up domain {name}")
        except AgentError:
            return None

    def _report(self, vm_uuid: str, host: str | None, state: str, reason: str) -> None:
        me = self.agent.host_uuid
        if me is None or (host is not None and host != me):
            return  # not connected to an MN yet, or another agent's VM on a shared libvirt
        log.info("VM %s is %s: %s", vm_uuid, state, reason)
        self.agent.report(p.HostEvent(hostUuid=me, type="VmStateChanged", vmUuid=vm_uuid, state=state,
                                      reason=reason))

    def _watch(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL)
            try:
                self.agent.libvirt.get()  # reopens (and re-registers) a lost connection
            except AgentError as exc:
                log.warning("libvirt is unreachable: %s", exc)


_MONITORS: weakref.WeakKeyDictionary[Any, Monitor] = weakref.WeakKeyDictionary()
_MONITORS_LOCK = threading.Lock()


def monitor(agent: Any) -> Monitor:
    """The agent's Monitor, started on first use."""
    with _MONITORS_LOCK:
        m = _MONITORS.get(agent)
        if m is None:
            m = _MONITORS[agent] = Monitor(agent)
    m.start()
    return m
