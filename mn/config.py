"""Management node settings (the zstack.properties of this project).

Read from a properties file (key=value lines) and ZSTACK_* environment variables; everything has
a default so the embedded POC needs no file at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("ZSTACK_HOME", Path.home() / ".zstack"))


@dataclass
class MNConfig:
    home: Path = field(default_factory=default_home)
    db_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 0           # job executor threads per process (0: job_threads() decides)
    http_threads: int = 0      # API server threads per process (0: api_threads() decides; a
                               # long-polling result request holds one)
    simulator_url: str = ""    # where simulated hosts and storages are served
    embedded_simulator: bool = False
    simulator_port: int = 8090
    agent_timeout: float = 300.0
    agent_reply_within: float = 1.0  # an async agent command ending this soon is answered inline
    ping_interval: float = 60.0
    session_timeout: int = 7200
    log_level: str = "INFO"
    management_ip: str = ""    # the address agents reach this MN at (default: `host`, or this
                               # machine's address when `host` is a wildcard)
    processes: int = 0         # MN processes sharing `port` (SO_REUSEPORT), 0: CPUs + 1, at most 8 (mn/workers.py)
    callback_port: int = 0     # set at start: where this process takes agents' async replies (0: `port`)
    api_max_body: int = 8 << 20  # bytes: a larger API request body is refused (413, SYS.1007)
    disabled_plugins: str = ""  # comma-separated names of installed plugins not to load (mn/plugins.py)
    agent_key_file: str = ""   # the master key agents' keys derive from (default <home>/agent.key;
                               # made at first start; every MN sharing the database needs the same)

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        if not self.db_url:
            self.db_url = f"sqlite:///{self.home / 'zstack.db'}"
        for name in ("workers", "http_threads", "processes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (automatic) or a positive number, got {getattr(self, name)}")

    @property
    def agent_key_path(self) -> Path:
        """Where the agent protocol's master key is (kvmagent/auth.py; docs/security.md)."""
        return Path(self.agent_key_file) if self.agent_key_file else self.home / "agent.key"

    @property
    def disabled(self) -> frozenset[str]:
        """The plugin names of `disabled_plugins`."""
        return frozenset(n.strip() for n in self.disabled_plugins.split(",") if n.strip())

    def job_threads(self, processes: int) -> int:
        """Job executor threads of each of `processes` MN processes: `workers`, or by default
        32 spread over the processes, at least 16 each (fewer threads per process, fewer GIL
        hand-overs; docs/performance.md)."""
        return self.workers or max(16, 32 // processes)

    def api_threads(self, processes: int) -> int:
        """API server threads of each of `processes` MN processes: `http_threads`, or by default
        128 spread over the processes, at least 64 each."""
        return self.http_threads or max(64, 128 // processes)

    @property
    def public_url(self) -> str:
        """The MN's base URL as agents reach it (events are POSTed there)."""
        return self.url_on(self.port)

    @property
    def callback_url_base(self) -> str:
        """Where agents reach this MN process with async replies (its own port among several)."""
        return self.url_on(self.callback_port or self.port)

    def url_on(self, port: int) -> str:
        ip = self.management_ip or self.host
        if ip in ("", "0.0.0.0", "::"):
            import socket

            try:
                ip = socket.gethostbyname(socket.gethostname())
            except OSError:
                ip = "127.0.0.1"
        return f"http://{ip}:{port}"

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: object) -> MNConfig:
        values: dict[str, object] = {}
        names = {f.name: f for f in fields(cls)}
        if path and Path(path).exists():
            for line in Path(path).read_text().splitlines():
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                k, v = (x.strip() for x in line.split("=", 1))
                if k in names:
                    values[k] = v
        for k in names:
            env = os.environ.get(f"ZSTACK_{k.upper()}")
            if env is not None:
                values[k] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        typed: dict[str, object] = {}
        for k, v in values.items():
            t = names[k].type
            if t in ("int", int):
                typed[k] = int(v)  # type: ignore[arg-type]
            elif t in ("float", float):
                typed[k] = float(v)  # type: ignore[arg-type]
            elif t in ("bool", bool):
                typed[k] = v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
            else:
                typed[k] = v
        return cls(**typed)  # type: ignore[arg-type]
