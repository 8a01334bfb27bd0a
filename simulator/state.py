"""The simulator's whole world: registries of hosts and storages plus cross-object indexes.

Locking: the registries change under one registry lock (admin calls only, never a protocol
command); lookups read the dicts without it. A protocol command locks only the host or storage it
targets (migration locks its two hosts in uuid order). The cross-object indexes below are plain
dicts changed only with single atomic operations (setdefault, pop), so claims never race:

- vm_hosts: VM uuid -> the host whose domain it is. A VM exists on at most one host.
- volume_ps: install path -> the primary storage holding that volume.
- volume_users: install path -> the VM whose domain uses it (or DELETING while a delete runs).
  A volume is used by at most one domain, as QEMU's image locking would enforce.
"""

from __future__ import annotations

import threading
from typing import Any

from kvmagent.auth import DerivedKeys
from kvmagent.protocol import VM_PAUSED, VM_RUNNING, VM_STOPPED, VM_UNKNOWN, HostEvent, to_wire
from simulator.events import EventSender
from simulator.faults import FaultTable
from simulator.model import SimBackupStorage, SimError, SimHost, SimPrimaryStorage, SimVm

DELETING = "<being deleted>"
DEFAULT_STORAGE_CAPACITY = 100 * 2**40  # 100 TiB: generous unless a test says otherwise
VM_CRASHED = "Crashed"
OUT_OF_BAND_STATES = (VM_RUNNING, VM_PAUSED, VM_STOPPED, VM_CRASHED, VM_UNKNOWN)


class CallCounter:
    """Commands served and failed, by path. Each server thread counts into its own dict, so the
    hot path takes no lock; totals() sums them."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[dict[str, list[int]]] = []
        self._lock = threading.Lock()

    def count(self, path: str, ok: bool) -> None:
        mine = getattr(self._local, "counts", None)
        if mine is None:
            mine = self._local.counts = {}
            with self._lock:
                self._all.append(mine)
        c = mine.get(path)
        if c is None:
            c = mine[path] = [0, 0]
        c[0] += 1
        if not ok:
            c[1] += 1

    def totals(self) -> tuple[dict[str, int], dict[str, int]]:
        calls: dict[str, int] = {}
        failures: dict[str, int] = {}
        with self._lock:
            dicts = list(self._all)
        for d in dicts:
            for path, (n, failed) in list(d.items()):
                calls[path] = calls.get(path, 0) + n
                if failed:
                    failures[path] = failures.get(path, 0) + failed
        return calls, failures


class SimState:
    def __init__(self) -> None:
        self.hosts: dict[str, SimHost] = {}
        self.primary_storages: dict[str, SimPrimaryStorage] = {}
        self.backup_storages: dict[str, SimBackupStorage] = {}
        self.vm_hosts: dict[str, str] = {}
        self.volume_ps: dict[str, str] = {}
        self.volume_users: dict[str, str] = {}
        self.faults = FaultTable()
        self.events = EventSender()
        self.calls = CallCounter()
        self.stopping = threading.Event()  # set on shutdown: wakes commands sleeping in a fault
        self._registry = threading.Lock()
        self.keys: DerivedKeys | None = None  # from the MN's master key: every target's key
        self.key_file: str | None = None  # where that master key is
        self.agent_urls: dict[str, str] = {}  # target uuid -> the agent URL its last signed command came to

    def signing_key(self, uuid: str) -> bytes | None:
        """The key a target signs its events and replies with: that of the URL the MN reaches it at."""
        url = self.agent_urls.get(uuid)
        return self.keys.key_for(url) if self.keys is not None and url else None

    # ---- lookups (raise SimError, which a command turns into a failure reply) ----------------

    def host(self, uuid: str) -> SimHost:
        h = self.hosts.get(uuid)
        if h is None:
            raise SimError(f"no simulated host {uuid}")
        return h

    def primary_storage(self, uuid: str) -> SimPrimaryStorage:
        ps = self.primary_storages.get(uuid)
        if ps is None:
            raise SimError(f"no simulated primary storage {uuid}")
        return ps

    def backup_storage(self, uuid: str) -> SimBackupStorage:
        bs = self.backup_storages.get(uuid)
        if bs is None:
            raise SimError(f"no simulated backup storage {uuid}")
        return bs

    # ---- admin: create, update, remove ------------------------------------------------------

    def put_host(self, uuid: str, cpu_num: int | None = None, memory: int | None = None,
                 cpu_speed: int | None = None, cpu_sockets: int | None = None,
                 management_ip: str | None = None) -> SimHost:
        """Create a host, or update the given fields of an existing one (its VMs stay)."""
        with self._registry:
            h = self.hosts.get(uuid)
            if h is None:
                h = SimHost(uuid, cpu_num if cpu_num is not None else 8,
                            memory if memory is not None else 32 * 2**30)
                self.hosts[uuid] = h
                created = True
            else:
                created = False
        with h.lock:
            if not created:
                if cpu_num is not None:
                    h.cpu_num = cpu_num
                if memory is not None:
                    h.memory = memory
            if cpu_speed is not None:
                h.cpu_speed = cpu_speed
            if cpu_sockets is not None:
                h.cpu_sockets = cpu_sockets
            if management_ip is not None:
                h.management_ip = management_ip
        return h

    def remove_host(self, uuid: str) -> bool:
        """Remove a host and every domain on it (their volumes become free)."""
        with self._registry:
            h = self.hosts.pop(uuid, None)
        if h is None:
            return False
        with h.lock:
            for vm in h.vms.values():
                self.forget_vm(vm, h.uuid)
            h.vms.clear()
        return True

    def restart_agent(self, uuid: str) -> None:
        """Simulate an agent restart: the host forgets its connection (pings answer no hostUuid
        until the MN reconnects); domains keep running, as QEMU processes outlive the agent."""
        h = self.host(uuid)
        with h.lock:
            h.connected = False
            h.send_command_url = None

    def put_primary_storage(self, uuid: str, total: int | None = None,
                            available: int | None = None) -> SimPrimaryStorage:
        with self._registry:
            ps = self.primary_storages.get(uuid)
            if ps is None:
                t = total if total is not None else DEFAULT_STORAGE_CAPACITY
                ps = SimPrimaryStorage(uuid, t, available if available is not None else t)
                self.primary_storages[uuid] = ps
                return ps
        with ps.lock:
            if total is not None:
                ps.total = total
            if available is not None:
                ps.available = available
        return ps

    def remove_primary_storage(self, uuid: str) -> bool:
        with self._registry:
            ps = self.primary_storages.pop(uuid, None)
        if ps is None:
            return False
        with ps.lock:
            for path in ps.volumes:
                self.volume_ps.pop(path, None)
            ps.volumes.clear()
        return True

    def put_backup_storage(self, uuid: str, total: int | None = None,
                           available: int | None = None) -> SimBackupStorage:
        with self._registry:
            bs = self.backup_storages.get(uuid)
            if bs is None:
                t = total if total is not None else DEFAULT_STORAGE_CAPACITY
                bs = SimBackupStorage(uuid, t, available if available is not None else t)
                self.backup_storages[uuid] = bs
                return bs
        with bs.lock:
            if total is not None:
                bs.total = total
            if available is not None:
                bs.available = available
        return bs

    def remove_backup_storage(self, uuid: str) -> bool:
        with self._registry:
            bs = self.backup_storages.pop(uuid, None)
        if bs is None:
            return False
        with bs.lock:
            bs.images.clear()
        return True

    # ---- admin: out-of-band VM state changes -------------------------------------------------

    def set_vm_state(self, host_uuid: str, vm_uuid: str, state: str, cpu_num: int = 1,
                     memory: int = 0) -> bool:
        """Change a VM's state as if it happened on the host by itself, then report a
        VmStateChanged HostEvent to the host's sendCommandUrl (in the background).

        "Stopped" removes the domain (it must exist). Any other state on an unknown VM creates a
        stray domain with cpu_num/memory, so tests can plant drift for the MN to find.
        Returns whether an event was queued. Raises SimError (unknown host), LookupError
        (unknown VM) or ValueError (bad state, or the VM lives on another host).
        """
        if state not in OUT_OF_BAND_STATES:
            raise ValueError(f"state must be one of {', '.join(OUT_OF_BAND_STATES)}, not {state!r}")
        h = self.host(host_uuid)
        with h.lock:
            vm = h.vms.get(vm_uuid)
            if state == VM_STOPPED:
                if vm is None:
                    raise LookupError(f"no VM {vm_uuid} on simulated host {host_uuid}")
                del h.vms[vm_uuid]
                self.forget_vm(vm, h.uuid)
            elif vm is None:
                try:
                    self.claim_vm(vm_uuid, h.uuid)
                except SimError as exc:
                    raise ValueError(str(exc)) from None
                h.vms[vm_uuid] = SimVm(vm_uuid, vm_uuid, state, cpu_num, memory)
            else:
                vm.state = state
            url = h.send_command_url
        if not url:
            return False
        event = HostEvent(hostUuid=h.uuid, type="VmStateChanged", vmUuid=vm_uuid, state=state,
                          reason="changed out of band by the simulator")
        return self.events.post(url, to_wire(event), self.signing_key(h.uuid), h.uuid)

    # ---- indexes (callers hold the lock of the host concerned) -------------------------------

    def claim_vm(self, vm_uuid: str, host_uuid: str) -> None:
        owner = self.vm_hosts.setdefault(vm_uuid, host_uuid)
        if owner != host_uuid:
            raise SimError(f"VM {vm_uuid} already exists on simulated host {owner}")

    def claim_volumes(self, vm_uuid: str, paths: list[str]) -> None:
        """Mark `paths` as used by vm_uuid; all or nothing. Each must exist on some simulated
        primary storage and be used by no other domain."""
        if len(set(paths)) != len(paths):
            raise SimError(f"VM {vm_uuid} names one volume twice: {paths}")
        new: list[str] = []
        try:
            for p in paths:
                if self.volume_users.get(p) == vm_uuid:
                    continue
                owner = self.volume_users.setdefault(p, vm_uuid)
                if owner != vm_uuid:
                    what = "being deleted" if owner == DELETING else f"in use by VM {owner}"
                    raise SimError(f"volume {p} is {what}")
                new.append(p)
            for p in paths:
                if p not in self.volume_ps:
                    raise SimError(f"volume {p} does not exist on any simulated primary storage")
        except SimError:
            for p in new:
                self.volume_users.pop(p, None)
            raise

    def release_volumes(self, vm_uuid: str, paths: list[str]) -> None:
        for p in paths:
            if self.volume_users.get(p) == vm_uuid:
                self.volume_users.pop(p, None)

    def forget_vm(self, vm: SimVm, host_uuid: str) -> None:
        """Drop a removed domain from the indexes."""
        self.release_volumes(vm.uuid, vm.volume_paths())
        if self.vm_hosts.get(vm.uuid) == host_uuid:
            self.vm_hosts.pop(vm.uuid, None)

    # ---- figures -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        calls, failures = self.calls.totals()
        hosts = list(self.hosts.values())
        return {
            "hosts": len(hosts), "connectedHosts": sum(1 for h in hosts if h.connected),
            "vms": len(self.vm_hosts), "primaryStorages": len(self.primary_storages),
            "backupStorages": len(self.backup_storages), "volumes": len(self.volume_ps),
            "images": sum(len(bs.images) for bs in list(self.backup_storages.values())),
            "faults": len(self.faults), "totalCalls": sum(calls.values()),
            "calls": calls, "failures": failures, "events": self.events.stats(),
        }
