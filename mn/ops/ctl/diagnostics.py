"""zstack-ctl collect_log: one tarball for a bug report (mn.ops.collect_log makes it).

The status and version reports go in as text; a status that fails is recorded, not raised.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

from mn.ops.ctl.node import backup_dir
from mn.ops.ctl.settings import CtlError, load_config, paths_of
from mn.ops.ctl.status import cmd_status, cmd_version

if TYPE_CHECKING:
    from mn.ops.ctl.parser import Commands


def cmd_collect_log(args: argparse.Namespace) -> int:
    from mn.ops import collect_log

    paths = paths_of(args)
    status = io.StringIO()
    with contextlib.redirect_stdout(status):
        try:
            cmd_status(args)
            cmd_version(args)
        except CtlError as exc:
            print(f"status failed: {exc}")
    out = Path(args.output).expanduser().resolve() if args.output else Path.cwd()
    path = collect_log.collect(paths.home, load_config(paths), status.getvalue(), out, backup_dir(args, paths),
                               log_bytes=args.max_log_mb * 1024 * 1024)
    print(path)
    return 0


def register(commands: Commands) -> None:
    p = commands.add("collect_log", cmd_collect_log, "make a tarball of logs, config (passwords masked), "
                     "versions, status and migration state for a bug report", [])
    p.add_argument("--output", "-o", help="directory (or .tar.gz path) for the tarball (default: here)")
    p.add_argument("--max-log-mb", type=int, default=20, help="keep at most the last N MiB of each log")
