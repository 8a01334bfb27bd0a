"""The agent's settings: defaults, then /etc/zstack/kvmagent.properties, then ZSTACK_AGENT_* env,
then command-line flags. `acceleration` is `kvm` or `tcg` (the libvirt domain type `kvm` or
`qemu`); hosts where hardware guests do not work run `tcg`. `host` is the address the agent
listens on (loopback by default; the MN's deploy writes the host's management address, or the
`kvm/agent.listenAddress` override); `key_file` holds the agent's key (kvmagent/auth.py)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONFIG_FILE = "/etc/zstack/kvmagent.properties"
ACCELERATIONS = ("kvm", "tcg")


@dataclass
class AgentConfig:
    host: str = "127.0.0.1"
    port: int = 7070
    acceleration: str = "kvm"
    libvirt_uri: str = "qemu:///system"
    state_dir: str = "/var/lib/zstack/kvmagent"
    console_log_dir: str = "/var/log/zstack/vm-console"
    log_file: str = ""
    threads: int = 64
    plugins: str = ""  # module:attribute references of the plugins to load; empty: every one installed
    key_file: str = "/etc/zstack/kvmagent.key"  # written by the MN's deploy (mode 0600)

    def __post_init__(self) -> None:
        self.port = int(self.port)
        self.threads = int(self.threads)
        if self.acceleration not in ACCELERATIONS:
            raise ValueError(f"acceleration must be one of {list(ACCELERATIONS)}, not {self.acceleration!r}")

    @property
    def domain_type(self) -> str:
        """The libvirt domain type for this acceleration."""
        return "kvm" if self.acceleration == "kvm" else "qemu"

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)


def _parse_properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        out[k.strip()] = v.strip()
    return out


def load(path: str | None = None, env: dict[str, str] | None = None, **overrides: object) -> AgentConfig:
    """Build the config; unknown keys in the file are an error naming them."""
    env = os.environ if env is None else env
    names = {f.name for f in dataclasses.fields(AgentConfig)}
    values: dict[str, object] = {}
    file = Path(path or env.get("ZSTACK_AGENT_CONFIG") or DEFAULT_CONFIG_FILE)
    if file.exists():
        props = _parse_properties(file.read_text())
        unknown = sorted(set(props) - names)
        if unknown:
            raise ValueError(f"{file}: unknown settings {unknown}; valid ones are {sorted(names)}")
        values.update(props)
    for n in names:
        v = env.get(f"ZSTACK_AGENT_{n.upper()}")
        if v is not None:
            values[n] = v
    values.update({k: v for k, v in overrides.items() if v is not None})
    return AgentConfig(**values)  # type: ignore[arg-type]
