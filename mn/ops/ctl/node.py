"""What the upgrade and backup commands share: the MN's venv, the backup directory, and the
mn.ops.upgrade.Node of a home (how an upgrade stops, starts and asks its MN).

An installed layout R (R/venv, R/releases, R/backups) keeps backups in R/backups; a development
install keeps them in <home>/backups. mn.client and the API catalogue it reads (catalog.json,
cached once read) are loaded before anything is installed: an upgrade or rollback of the very venv
running zstack-ctl replaces those files, and a previous release may not have them where this code
looks (before mn/catalogue, the catalogue was mn/api/catalog.json).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from mn.ops.ctl.daemon import start_daemon, stop_daemon
from mn.ops.ctl.probe import get_version
from mn.ops.ctl.process import running_pid
from mn.ops.ctl.settings import CtlError, Paths, client_url, load_config


def backup_dir_flag() -> argparse.ArgumentParser:
    """The parent parser of --backup-dir, which backup_dir reads."""
    backups = argparse.ArgumentParser(add_help=False)
    backups.add_argument("--backup-dir", help="where backups go (default: R/backups of an installed layout, "
                         "else <home>/backups)")
    return backups


def code_venv(args: argparse.Namespace) -> Path:
    """The venv whose code is upgraded: --venv, else $ZSTACK_VENV, else the one running this."""
    given = getattr(args, "venv", None) or os.environ.get("ZSTACK_VENV")
    if given:
        venv = Path(given).expanduser().resolve()
        if not (venv / "bin" / "python").exists():
            raise CtlError(f"{venv} is not a virtualenv (no bin/python)", 2)
        return venv
    if sys.prefix == sys.base_prefix:
        raise CtlError("zstack-ctl does not run from a virtualenv: give the MN's with --venv DIR", 2)
    return Path(sys.prefix)


def backup_dir(args: argparse.Namespace, paths: Paths) -> Path:
    """--backup-dir, else R/backups of an installed layout, else <home>/backups."""
    from mn.ops.release import install_root

    if getattr(args, "backup_dir", None):
        return Path(args.backup_dir).expanduser().resolve()
    venv = getattr(args, "venv", None) or os.environ.get("ZSTACK_VENV") or sys.prefix
    root = install_root(Path(venv).expanduser().resolve())
    return root / "backups" if root else paths.home / "backups"


def upgrade_node(args: argparse.Namespace, paths: Paths, venv: Path | None = None) -> Any:
    """The upgrade.Node of this home: how an upgrade stops, starts and asks the MN."""
    import mn.client  # noqa: F401 (imported now: an upgrade of this very venv replaces the files)
    from mn.catalogue.catalog import load_catalog
    from mn.ops import release, upgrade

    load_catalog()  # read now, for the same reason: the client reads it when running_version asks
    venv = venv or code_venv(args)
    python = str(release.venv_python(venv))
    start_args = argparse.Namespace(foreground=False, timeout=getattr(args, "timeout", 120.0), demo=False,
                                    host=None, port=None, db_url=None, simulator=None)
    root = release.install_root(venv)
    return upgrade.Node(
        home=paths.home, venv=venv, db_url=load_config(paths).db_url, backups=backup_dir(args, paths),
        is_running=lambda: running_pid(paths) is not None,
        stop=lambda: stop_daemon(paths, 30.0), start=lambda: start_daemon(paths, start_args, python=python),
        running_version=lambda: get_version(client_url(load_config(paths))),
        releases=root / "releases" if root else None, say=lambda m: print(m, flush=True))
