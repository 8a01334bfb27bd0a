"""Saving and restoring the simulated world, so simulated hosts and storages outlive a restart
of the process that serves them (as real hosts outlive a restart of the management node).

The file is JSON written atomically (temp file + rename). Restored hosts come back with
`connected` False, like agents that restarted: the MN notices on its next ping and reconnects.
Faults, call counters and pending events are not saved.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from kvmagent.protocol import NicTO, VolumeTO, from_wire, to_wire
from simulator.model import SimBackupStorage, SimHost, SimImage, SimPrimaryStorage, SimVm, SimVolume
from simulator.state import SimState

log = logging.getLogger(__name__)
VERSION = 1


def dump(state: SimState) -> dict[str, Any]:
    hosts = []
    for h in list(state.hosts.values()):
        with h.lock:
            hosts.append({
                "uuid": h.uuid, "cpuNum": h.cpu_num, "memory": h.memory, "cpuSpeed": h.cpu_speed,
                "cpuSockets": h.cpu_sockets, "managementIp": h.management_ip, "bridges": dict(h.bridges),
                "vms": [{"uuid": vm.uuid, "name": vm.name, "state": vm.state, "cpuNum": vm.cpu_num,
                         "memory": vm.memory, "cpuSpeed": vm.cpu_speed,
                         "rootVolume": to_wire(vm.root_volume) if vm.root_volume else None,
                         "dataVolumes": [to_wire(v) for v in vm.data_volumes],
                         "nics": [to_wire(n) for n in vm.nics]} for vm in h.vms.values()],
                "extras": dict(h.extras),
            })
    pss = []
    for ps in list(state.primary_storages.values()):
        with ps.lock:
            pss.append({"uuid": ps.uuid, "total": ps.total, "available": ps.available, "url": ps.url,
                        "volumes": {p: [v.volume_uuid, v.size, v.actual_size] for p, v in ps.volumes.items()}})
    bss = []
    for bs in list(state.backup_storages.values()):
        with bs.lock:
            bss.append({"uuid": bs.uuid, "total": bs.total, "available": bs.available, "url": bs.url,
                        "images": {p: [i.image_uuid, i.url, i.size, i.actual_size, i.md5, i.format]
                                   for p, i in bs.images.items()}})
    return {"version": VERSION, "hosts": hosts, "primaryStorages": pss, "backupStorages": bss}


def load(state: SimState, data: dict[str, Any]) -> None:
    """Fill an empty state from dump() output, rebuilding the cross-object indexes."""
    if data.get("version") != VERSION:
        raise ValueError(f"unsupported simulator state version {data.get('version')!r}")
    for d in data["primaryStorages"]:
        ps = SimPrimaryStorage(d["uuid"], d["total"], d["available"], d.get("url"))
        for path, (vol, size, actual) in d["volumes"].items():
            ps.volumes[path] = SimVolume(vol, size, actual)
            state.volume_ps[path] = ps.uuid
        state.primary_storages[ps.uuid] = ps
    for d in data["backupStorages"]:
        bs = SimBackupStorage(d["uuid"], d["total"], d["available"], d.get("url"))
        for path, (img, url, size, actual, md5, fmt) in d["images"].items():
            bs.images[path] = SimImage(img, url, size, actual, md5, fmt)
        state.backup_storages[bs.uuid] = bs
    for d in data["hosts"]:
        h = SimHost(d["uuid"], d["cpuNum"], d["memory"], d["cpuSpeed"], d["cpuSockets"], d.get("managementIp"))
        h.bridges = dict(d["bridges"])
        h.extras = dict(d.get("extras") or {})
        if d.get("eips"):  # saved before EIP was a plugin
            h.extras["eips"] = {e["vip"]: e for e in d["eips"]}
        for v in d["vms"]:
            vm = SimVm(v["uuid"], v["name"], v["state"], v["cpuNum"], v["memory"], v["cpuSpeed"],
                       from_wire(VolumeTO, v["rootVolume"]) if v["rootVolume"] else None,
                       [from_wire(VolumeTO, x) for x in v["dataVolumes"]], [from_wire(NicTO, x) for x in v["nics"]])
            h.vms[vm.uuid] = vm
            state.vm_hosts[vm.uuid] = h.uuid
            for path in vm.volume_paths():
                state.volume_users[path] = vm.uuid
        state.hosts[h.uuid] = h


def save(state: SimState, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dump(state), separators=(",", ":")))
    os.replace(tmp, path)


def restore(state: SimState, path: Path) -> bool:
    """Load `path` into `state` if it exists; an unreadable file is kept aside and skipped."""
    if not path.exists():
        return False
    try:
        load(state, json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        aside = path.with_name(path.name + ".bad")
        os.replace(path, aside)
        log.error("simulator state %s is unreadable (%s); starting empty, the file is kept as %s",
                  path, exc, aside)
        return False
    log.info("restored %d simulated hosts, %d primary and %d backup storages from %s", len(state.hosts),
             len(state.primary_storages), len(state.backup_storages), path)
    return True


class Saver:
    """Saves the state every `interval` seconds in a daemon thread, and once more on stop()."""

    def __init__(self, state: SimState, path: Path, interval: float = 5.0) -> None:
        self.state, self.path, self.interval = state, path, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="simulator-saver", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._save()

    def _save(self) -> None:
        try:
            save(self.state, self.path)
        except OSError as exc:
            log.warning("saving the simulator state to %s failed: %s", self.path, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._save()
