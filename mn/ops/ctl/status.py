"""zstack-ctl status and version: what runs on this home, and which code and schema it has.

Neither changes anything nor takes the ctl lock. status exits 0 only when the MN answers /health
(1 when it is stopped or alive but not answering); version always exits 0, reporting what it
cannot read instead of failing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mn import __version__
from mn.ops.ctl.probe import get_health, get_version
from mn.ops.ctl.process import is_mn_process, read_pid, running_pid
from mn.ops.ctl.settings import client_url, load_config, mask_url, paths_of

if TYPE_CHECKING:
    from mn.ops.ctl.parser import Commands


def cmd_status(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    config = load_config(paths)
    url = client_url(config)
    pid = read_pid(paths.pid)
    alive = pid is not None and is_mn_process(pid)
    health: dict[str, Any] | None = None
    problem = ""
    if alive:
        try:
            health = get_health(url, timeout=3.0)
        except (OSError, ValueError) as exc:
            problem = f"pid {pid} is alive but {url}/health does not answer ({exc})"
    state = "Running" if health else ("Unhealthy" if alive else "Stopped")
    rows = [("status", state)]
    if not alive and pid is not None:
        rows.append(("note", f"stale pid file {paths.pid} (pid {pid} is not running)"))
    if problem:
        rows.append(("problem", problem))
    rows += [("url", url), ("pid", str(pid) if alive else "-")]
    if health:
        rows.append(("version", get_version(url) or str(health.get("version"))))
        rows.append(("mn uuid", str(health.get("managementNodeUuid"))))
        if health.get("plugins") is not None:
            rows.append(("plugins", ", ".join(health["plugins"]) or "none"))
        if health.get("processes", 1) > 1:
            rows.append(("processes", f"{health['processes']} sharing the port (this answer: process "
                                      f"{health.get('process')})"))
    rows += [("database", mask_url(config.db_url)),
             ("simulator", ("embedded" if config.embedded_simulator else "off")
              + (f", {config.simulator_url}" if config.simulator_url else "")),
             ("home", str(paths.home)), ("log", str(paths.log))]
    print("\n".join(f"{k + ':':<11}{v}" for k, v in rows))
    return 0 if health else 1


def cmd_version(args: argparse.Namespace) -> int:
    print(f"zstack-ctl {__version__}")
    paths = paths_of(args)
    url = load_config(paths).db_url
    print(f"database: {_db_revision(url)}")
    chains = _plugin_revisions(url)
    if chains:
        print(f"plugin migrations: {chains}")
    if running_pid(paths) is not None:
        url = client_url(load_config(paths))
        try:
            version = get_version(url) or str(get_health(url).get("version"))
        except (OSError, ValueError):
            version = "not answering"
        print(f"management node at {url}: {version}")
    return 0


def _db_revision(url: str) -> str:
    """'<url> at revision R (head H)', or why the revision cannot be read."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return f"{mask_url(url)}: no database yet ('zstack-ctl deploydb' or 'start' creates it)"
    try:
        from mn.db.migrate import current_revision, head_revision

        revision, head = current_revision(url), head_revision()
    except Exception as exc:  # noqa: BLE001 (version reports, never fails)
        return f"{mask_url(url)}: not readable ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    note = "up to date" if revision == head else "run 'zstack-ctl upgrade_db'" if revision else "no schema"
    return f"{mask_url(url)} at revision {revision or 'none'} (this code's head: {head}; {note})"


def _plugin_revisions(url: str) -> str:
    """'eip eip_0001, kvm kvm_0001 (up to date)' for the plugins' migration chains ('' if unreadable)."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return ""
    try:
        from mn.db.migrate import CORE, revisions

        chains = {name: rev for name, rev in revisions(url).items() if name != CORE}
    except Exception:  # noqa: BLE001 (version reports, never fails)
        return ""
    behind = [name for name, (current, head) in chains.items() if current != head]
    listed = ", ".join(f"{name} {current or 'none'}" for name, (current, _) in chains.items())
    return f"{listed} ({'up to date' if not behind else 'behind: ' + ', '.join(behind) + ', run zstack-ctl upgrade_db'})"


def register(commands: Commands) -> None:
    commands.add("status", cmd_status, "show whether the management node runs (exit 0) or not (exit 1)", [])
    commands.add("version", cmd_version, "show the version", [])
