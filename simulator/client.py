"""SimulatorAdmin: a small client of the simulator's admin API (simulator.admin)."""

from __future__ import annotations

import json
from typing import Any

import urllib3

GiB = 2**30


class SimulatorAdminError(RuntimeError):
    """The admin API refused a request; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"simulator admin error {status}: {message}")
        self.status = status
        self.message = message


class SimulatorAdmin:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = urllib3.PoolManager(maxsize=4, retries=False,
                                         timeout=urllib3.Timeout(connect=10, read=timeout))

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        r = self._http.request(method, f"{self.url}/simulator{path}", body=data,
                               headers={"Content-Type": "application/json"})
        try:
            reply = json.loads(r.data or b"{}")
        except ValueError:
            raise SimulatorAdminError(r.status, r.data[:200].decode(errors="replace")) from None
        if r.status >= 400:
            raise SimulatorAdminError(r.status, reply.get("error", "") if isinstance(reply, dict) else str(reply))
        return reply

    # ---- URLs the MN uses to reach simulated agents -----------------------------------------

    def host_url(self, uuid: str) -> str:
        return f"{self.url}/hosts/{uuid}"

    def primary_storage_url(self, uuid: str) -> str:
        return f"{self.url}/primary-storage/{uuid}"

    def backup_storage_url(self, uuid: str) -> str:
        return f"{self.url}/backup-storage/{uuid}"

    # ---- hosts --------------------------------------------------------------------------------

    def add_host(self, uuid: str, cpu_num: int = 8, memory: int = 32 * GiB, cpu_speed: int | None = None,
                 cpu_sockets: int | None = None, management_ip: str | None = None) -> dict[str, Any]:
        """Create (or update) a simulated host; returns its view."""
        body: dict[str, Any] = {"cpuNum": cpu_num, "memory": memory}
        for key, value in (("cpuSpeed", cpu_speed), ("cpuSockets", cpu_sockets),
                           ("managementIp", management_ip)):
            if value is not None:
                body[key] = value
        return self._request("PUT", f"/hosts/{uuid}", body)

    def remove_host(self, uuid: str) -> bool:
        return self._request("DELETE", f"/hosts/{uuid}")["deleted"]

    def host(self, uuid: str) -> dict[str, Any]:
        return self._request("GET", f"/hosts/{uuid}")

    def host_count(self) -> int:
        return self._request("GET", "/hosts")["count"]

    def restart_agent(self, uuid: str) -> None:
        """Make the host forget its connection, as an agent restart would."""
        self._request("POST", f"/hosts/{uuid}/restart-agent", {})

    def set_vm_state(self, host_uuid: str, vm_uuid: str, state: str, cpu_num: int | None = None,
                     memory: int | None = None) -> bool:
        """Change a VM's state out of band; returns whether a HostEvent was queued for the MN."""
        body: dict[str, Any] = {"state": state}
        if cpu_num is not None:
            body["cpuNum"] = cpu_num
        if memory is not None:
            body["memory"] = memory
        return self._request("POST", f"/hosts/{host_uuid}/vms/{vm_uuid}/state", body)["eventSent"]

    # ---- storages -----------------------------------------------------------------------------

    @staticmethod
    def _capacity(total: int | None, available: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if total is not None:
            body["totalCapacity"] = total
        if available is not None:
            body["availableCapacity"] = available
        return body

    def add_primary_storage(self, uuid: str, total: int | None = None,
                            available: int | None = None) -> dict[str, Any]:
        return self._request("PUT", f"/primary-storage/{uuid}", self._capacity(total, available))

    def remove_primary_storage(self, uuid: str) -> bool:
        return self._request("DELETE", f"/primary-storage/{uuid}")["deleted"]

    def primary_storage(self, uuid: str) -> dict[str, Any]:
        return self._request("GET", f"/primary-storage/{uuid}")

    def add_backup_storage(self, uuid: str, total: int | None = None,
                           available: int | None = None) -> dict[str, Any]:
        return self._request("PUT", f"/backup-storage/{uuid}", self._capacity(total, available))

    def remove_backup_storage(self, uuid: str) -> bool:
        return self._request("DELETE", f"/backup-storage/{uuid}")["deleted"]

    def backup_storage(self, uuid: str) -> dict[str, Any]:
        return self._request("GET", f"/backup-storage/{uuid}")

    # ---- faults and figures -------------------------------------------------------------------

    def inject(self, path: str, target: str | None = None, mode: str = "fail", count: int = 1,
               delay: float = 0.0, message: str | None = None) -> str:
        """Add a fault rule; returns its id. delay 0 means the mode's default (timeout: 30 s,
        slow: 1 s)."""
        body: dict[str, Any] = {"path": path, "target": target, "mode": mode, "count": count}
        if delay:
            body["delay"] = delay
        if message is not None:
            body["message"] = message
        return self._request("POST", "/faults", body)["id"]

    def faults(self) -> list[dict[str, Any]]:
        return self._request("GET", "/faults")["faults"]

    def remove_fault(self, fault_id: str) -> None:
        self._request("DELETE", f"/faults/{fault_id}")

    def clear_faults(self) -> int:
        return self._request("DELETE", "/faults")["deleted"]

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/stats")
