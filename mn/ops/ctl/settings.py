"""The files of an MN home and its settings in zstack.properties, as zstack-ctl reads and writes them.

A setting is an MNConfig field other than `home` (the directory holding zstack.properties); its
properties-file spelling is the one normalise_value gives. write_properties keeps the file's
comments and order and replaces it atomically, readable by its owner only (it may hold a DB password).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import os
import re
from pathlib import Path

from mn.config import MNConfig, default_home

PROPERTIES = "zstack.properties"
PID_FILE = "mn.pid"
LOG_FILE = "logs/management-server.log"
# Every MNConfig field but `home`, which is where the properties file itself lives.
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(MNConfig) if f.name != "home"}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class CtlError(Exception):
    """A failure reported to the user as one clear message and a non-zero exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where one MN home keeps its files."""

    home: Path

    @property
    def properties(self) -> Path:
        return self.home / PROPERTIES

    @property
    def pid(self) -> Path:
        return self.home / PID_FILE

    @property
    def log(self) -> Path:
        return self.home / LOG_FILE

    @property
    def lock(self) -> Path:
        return self.home / ".ctl.lock"

    @property
    def mn_uuid(self) -> Path:
        return self.home / "mn.uuid"


def paths_of(args: argparse.Namespace) -> Paths:
    """The Paths of the home a command names: --home, else $ZSTACK_HOME, else ~/.zstack."""
    home = getattr(args, "home", None)
    return Paths(Path(home or default_home()).expanduser().resolve())


def read_properties(path: Path) -> dict[str, str]:
    """key=value lines of a properties file, in file order; blank lines and # comments skipped."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = (x.strip() for x in line.split("=", 1))
        out[k] = v
    return out


def write_properties(path: Path, updates: dict[str, str | None]) -> None:
    """Set (or, for None, delete) keys in place, keeping comments and order; atomic replace."""
    lines = path.read_text().splitlines() if path.exists() else []
    pending = dict(updates)
    out: list[str] = []
    for line in lines:
        stripped = line.strip()
        key = stripped.split("=", 1)[0].strip() if "=" in stripped and not stripped.startswith("#") else None
        if key is not None and key in pending:
            value = pending.pop(key)
            if value is not None:
                out.append(f"{key}={value}")
            continue
        out.append(line)
    out.extend(f"{k}={v}" for k, v in pending.items() if v is not None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold a DB password
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{x}\n" for x in out))
    os.replace(tmp, path)


def _field_type(key: str) -> str:
    t = CONFIG_FIELDS[key].type
    return t if isinstance(t, str) else t.__name__


def check_key(key: str) -> None:
    """CtlError (usage) unless `key` is a setting: an MNConfig field other than home."""
    if key == "home":
        raise CtlError("'home' is not a setting: it is the directory holding zstack.properties "
                       "(choose it with --home or ZSTACK_HOME)", 2)
    if key not in CONFIG_FIELDS:
        close = difflib.get_close_matches(key, CONFIG_FIELDS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CtlError(f"unknown setting '{key}'{hint}; valid settings: {', '.join(sorted(CONFIG_FIELDS))}", 2)


def normalise_value(key: str, value: object) -> str:
    """The properties-file spelling of a setting; CtlError when the key or the value is invalid."""
    check_key(key)
    t = _field_type(key)
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = str(value).strip()
    try:
        if t == "int":
            return str(int(text))
        if t == "float":
            return str(float(text))
    except ValueError:
        raise CtlError(f"setting '{key}' must be {'an integer' if t == 'int' else 'a number'}, "
                       f"got {text!r}", 2) from None
    if t == "bool":
        if text.lower() in _TRUE:
            return "true"
        if text.lower() in _FALSE:
            return "false"
        raise CtlError(f"setting '{key}' must be true or false, got {text!r}", 2)
    if key == "log_level" and logging.getLevelName(text.upper()) == f"Level {text.upper()}":
        raise CtlError(f"setting 'log_level' must be one of DEBUG, INFO, WARNING, ERROR, got {text!r}", 2)
    return text


def persist(paths: Paths, settings: dict[str, object]) -> None:
    """Write `settings` to the home's zstack.properties in their normalised spelling."""
    if settings:
        write_properties(paths.properties, {k: normalise_value(k, v) for k, v in settings.items()})


def load_config(paths: Paths, **overrides: object) -> MNConfig:
    """The effective settings of this home: file < environment < overrides."""
    try:
        return MNConfig.load(paths.properties, home=paths.home, **overrides)
    except (TypeError, ValueError) as exc:
        raise CtlError(f"invalid settings in {paths.properties} or ZSTACK_* environment: {exc}") from None


def mask_url(url: str) -> str:
    """A database URL with its password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def client_url(config: MNConfig) -> str:
    """The URL a local client uses to reach an MN listening on config.host:config.port."""
    host = config.host or "127.0.0.1"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.port}"
