"""collect_log: one tarball with what a bug report needs from this machine's MN.

Contents (under `zstack-collect-<host>-<timestamp>/`): the MN's logs (home/logs and /var/log/zstack,
at most the last `log_bytes` of each), zstack.properties with every password masked, the effective
settings (masked), versions (zstack, Python, the installed distributions), the output of `status`
and `version`, the database's migration state (current revision, the code's migrations, the last
upgrade backups) and the list of backups. Nothing is read from the database but its revision.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import platform
import re
import socket
import sys
import tarfile
import time
from importlib import metadata
from pathlib import Path

from mn.config import MNConfig

SYSTEM_LOGS = Path("/var/log/zstack")
_SECRET_KEY = re.compile(r"pass(word)?|secret|token", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]*@")


def mask(key: str, value: str) -> str:
    """A setting's value safe to share: passwords in URLs and secret-named keys become ***."""
    if _SECRET_KEY.search(key) and value:
        return "***"
    return _URL_PASSWORD.sub(r"\1***@", value)


def masked_properties(text: str) -> str:
    """A properties file with every secret masked; comments and order kept."""
    out = []
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            line = f"{key}={mask(key.strip(), value.strip())}"
        out.append(line)
    return "\n".join(out) + "\n"


def collect(home: Path, config: MNConfig, status: str, out: Path, backups: Path,
            log_bytes: int = 20 << 20) -> Path:
    """Write the tarball (into directory `out`, or to `out` when it ends in .tar.gz); its path."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    top = f"zstack-collect-{socket.gethostname()}-{stamp}"
    if out.name.endswith(".tar.gz"):
        path = out
    else:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{top}.tar.gz"
    settings = {f.name: mask(f.name, str(getattr(config, f.name))) for f in dataclasses.fields(config)}
    with tarfile.open(path, "w:gz") as tf:
        def add_text(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tf.addfile(info, io.BytesIO(data))

        add_text("status.txt", status)
        add_text("settings.json", json.dumps(settings, indent=2) + "\n")
        props = home / "zstack.properties"
        add_text("zstack.properties", masked_properties(props.read_text()) if props.exists()
                 else "# no zstack.properties: defaults and ZSTACK_* environment only\n")
        add_text("versions.txt", _versions())
        add_text("migrations.txt", _migrations(config.db_url))
        add_text("backups.txt", _backups(backups))
        for directory, prefix in ((home / "logs", "logs"), (SYSTEM_LOGS, "var-log-zstack")):
            if not directory.is_dir():
                continue
            for f in sorted(p for p in directory.rglob("*") if p.is_file()):
                add_text(f"{prefix}/{f.relative_to(directory)}", _tail(f, log_bytes))
    path.chmod(0o600)
    return path


def _tail(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError as exc:
        return f"(unreadable: {exc})\n"
    head = f"(first {size - limit} bytes left out)\n" if size > limit else ""
    return head + data.decode(errors="replace")


def _versions() -> str:
    from mn import __version__

    lines = [f"zstack {__version__}", f"python {sys.version.split()[0]} ({sys.executable})",
             f"platform {platform.platform()}", "", "installed distributions:"]
    dists = sorted({(d.metadata["Name"] or "?", d.version) for d in metadata.distributions()},
                   key=lambda x: x[0].lower())
    lines += [f"  {name}=={version}" for name, version in dists]
    return "\n".join(lines) + "\n"


def _migrations(url: str) -> str:
    lines = [f"database: {mask('db_url', url)}"]
    try:
        from mn.db.migrate import MIGRATIONS, current_revision, head_revision
        from mn.ops.release import migrations_in

        lines.append(f"current revision: {current_revision(url)}")
        lines.append(f"head of this code: {head_revision()}")
        known = migrations_in(MIGRATIONS / "versions")
        lines.append("last migrations of this code:")
        lines += [f"  {m.revision} (after {m.down_revision})  {m.title}" for m in list(known.values())[-10:]]
    except Exception as exc:  # noqa: BLE001 (a report says what it could not read)
        lines.append(f"not readable: {type(exc).__name__}: {exc}")
    return "\n".join(lines) + "\n"


def _backups(directory: Path) -> str:
    if not directory.is_dir():
        return f"no backups in {directory}\n"
    lines = [f"backups in {directory}:"]
    for d in sorted(directory.iterdir()):
        manifest = d / "manifest.json"
        if manifest.is_file():
            try:
                m = json.loads(manifest.read_text())
                lines.append(f"  {d.name}: {m.get('kind')} version {m.get('version')} revision {m.get('revision')}")
            except ValueError:
                lines.append(f"  {d.name}: unreadable manifest")
        elif d.is_file():
            lines.append(f"  {d.name}")
    return "\n".join(lines) + "\n"
