"""zstack-ctl dump_db and restore_db: a home's database to a file and back (mn.ops.backup does it).

restore_db holds the ctl lock, refuses while the MN runs or when the dump's engine is not the
configured database's, and (unless --no-backup) first saves the current database when it has a schema.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mn.ops.ctl.node import backup_dir, backup_dir_flag, upgrade_node
from mn.ops.ctl.process import ctl_lock, running_pid
from mn.ops.ctl.settings import CtlError, load_config, mask_url, paths_of

if TYPE_CHECKING:
    from mn.ops.ctl.parser import Commands


def cmd_dump_db(args: argparse.Namespace) -> int:
    from mn.db.migrate import current_revision
    from mn.ops import backup

    paths = paths_of(args)
    url = load_config(paths).db_url
    try:
        suffix = backup.SUFFIX[backup.dialect_of(url)]
        dest = Path(args.file).expanduser().resolve() if args.file else \
            backup_dir(args, paths) / f"db-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"
        backup.check_tools(url)
        backup.check_reachable(url)
        t0 = time.monotonic()
        backup.dump(url, dest)
        key = backup.save_key(paths.home, backup.key_beside(dest))
    except backup.BackupError as exc:
        raise CtlError(str(exc)) from None
    print(f"dumped {mask_url(url)} (revision {current_revision(url)}) to {dest} "
          f"({dest.stat().st_size} bytes, {time.monotonic() - t0:.1f} s)")
    if key:
        print(f"the key that seals its stored passwords is in {backup.key_beside(dest)}: keep both together")
    return 0


def cmd_restore_db(args: argparse.Namespace) -> int:
    from mn.db.migrate import current_revision
    from mn.ops import backup, upgrade

    paths = paths_of(args)
    url = load_config(paths).db_url
    src = Path(args.file).expanduser().resolve()
    if not src.is_file():
        raise CtlError(f"no such file: {src}", 2)
    with ctl_lock(paths):
        pid = running_pid(paths)
        if pid is not None:
            raise CtlError(f"the management node is running (pid {pid}): stop it before restoring its "
                           f"database ('zstack-ctl stop')")
        try:
            if backup.file_kind(src) != backup.dialect_of(url):
                raise backup.BackupError(f"{src} is a {backup.file_kind(src)} dump; the configured "
                                         f"database {mask_url(url)} is {backup.dialect_of(url)}")
            backup.check_tools(url)
            if args.backup and current_revision(url) is not None:
                saved = upgrade.take_backup(upgrade_node(args, paths, venv=Path(sys.prefix)), "before-restore",
                                            with_code=False)
                print(f"the current database is saved in {saved}")
            backup.restore(url, src)
            key = backup.key_beside(src)
            if key.is_file():
                backup.put_key(key, paths.home)
        except backup.BackupError as exc:
            raise CtlError(str(exc)) from None
    print(f"restored {mask_url(url)} from {src}: revision {current_revision(url)}")
    if key.is_file():
        print(f"and the key file from {key}")
    else:
        print(f"no key file beside the dump ({key.name}): the home's key is kept; stored host passwords "
              f"sealed with another key cannot be opened", file=sys.stderr)
    return 0


def register(commands: Commands) -> None:
    backups = backup_dir_flag()
    p = commands.add("dump_db", cmd_dump_db, "dump the database to a file (default: in the backup directory)",
                     [backups])
    p.add_argument("file", nargs="?", help="the dump file")
    p = commands.add("restore_db", cmd_restore_db, "replace the database by a dump (the MN must be stopped)",
                     [backups])
    p.add_argument("file", help="a dump made by dump_db or an upgrade backup")
    p.add_argument("--backup", action=argparse.BooleanOptionalAction, default=True,
                   help="dump the current database first (default: on)")
