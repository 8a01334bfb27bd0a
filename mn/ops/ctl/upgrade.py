"""zstack-ctl upgrade, rollback and upgrade_db: moving a home to other code or another schema.

The work is mn.ops.upgrade's (plan, backup, install, migrate, check, and undo on failure); these
commands check their arguments, hold the ctl lock and report. upgrade_db refuses while the MN runs
and restores the database from its backup when a migration fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mn.ops.ctl.node import backup_dir_flag, upgrade_node
from mn.ops.ctl.process import ctl_lock, running_pid
from mn.ops.ctl.settings import CtlError, load_config, mask_url, paths_of

if TYPE_CHECKING:
    from mn.ops.ctl.parser import Commands


def cmd_upgrade(args: argparse.Namespace) -> int:
    import tempfile

    from mn.ops import release, upgrade

    paths = paths_of(args)
    target = Path(args.target).expanduser().resolve()
    if not target.is_file():
        raise CtlError(f"no such file: {target}", 2)
    is_wheel = target.name.endswith(".whl")
    if not is_wheel and not target.name.endswith((".tar.gz", ".tgz")):
        raise CtlError(f"{target.name}: expected a release tarball (zstack-<version>.tar.gz) or a wheel "
                       f"(zstack-<version>-py3-none-any.whl)", 2)
    with ctl_lock(paths), tempfile.TemporaryDirectory(prefix="zstack-upgrade-") as tmp:
        node = upgrade_node(args, paths)
        try:
            if is_wheel:
                wheel = target
            else:
                unpack_to = Path(tmp) if args.dry_run else (node.releases or paths.home / "releases")
                wheel = release.unpack_release(target, unpack_to)
            plan = upgrade.plan_upgrade(node, wheel)
        except (release.ReleaseError, upgrade.UpgradeError) as exc:
            raise CtlError(str(exc)) from None
        print(plan.describe(), flush=True)
        if args.dry_run:
            print("dry run: nothing changed")
            return 0
        try:
            upgrade.run_upgrade(node, plan)
        except upgrade.UpgradeError as exc:
            raise CtlError(str(exc)) from None
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from mn.ops import upgrade

    paths = paths_of(args)
    with ctl_lock(paths):
        node = upgrade_node(args, paths)
        try:
            directory = Path(args.backup).expanduser().resolve() if args.backup else upgrade.last_upgrade(node.backups)
            manifest = upgrade.read_manifest(directory)
            print(f"rolling back to {directory} (version {manifest['version']}, database revision "
                  f"{manifest['revision']}, taken {manifest['created']})", flush=True)
            upgrade.rollback(node, directory)
        except upgrade.UpgradeError as exc:
            raise CtlError(str(exc)) from None
    return 0


def cmd_upgrade_db(args: argparse.Namespace) -> int:
    from mn.db.migrate import CORE, MIGRATIONS, current_revision, revisions
    from mn.db.migrate import upgrade as migrate
    from mn.ops import backup, release, upgrade

    paths = paths_of(args)
    url = load_config(paths).db_url
    try:
        backup.check_reachable(url)
        revision = current_revision(url)
        migrations = release.migrations_in(MIGRATIONS / "versions")
        todo = release.pending(migrations, revision)
        behind = {name: rev for name, rev in revisions(url).items() if name != CORE and rev[0] != rev[1]}
    except (backup.BackupError, release.ReleaseError) as exc:
        raise CtlError(str(exc)) from None
    print(f"database {mask_url(url)}: revision {revision or 'none (empty)'}; "
          f"this code's head: {release.head_of(migrations)}")
    for m in todo:
        print(f"  pending {m.revision}  {m.title}")
    for name, (current, head) in sorted(behind.items()):
        print(f"  pending plugin {name}: {current or 'none'} -> {head}")
    if not todo and not behind:
        print("the database is up to date: nothing to migrate")
        return 0
    if args.dry_run:
        print(f"dry run: {len(todo)} migration(s) and {len(behind)} plugin chain(s) pending, nothing changed")
        return 0
    with ctl_lock(paths):
        pid = running_pid(paths)
        if pid is not None:
            raise CtlError(f"the management node is running (pid {pid}): stop it first ('zstack-ctl stop'); "
                           f"'zstack-ctl upgrade' does stop, migrate and start in one go")
        saved = None
        if revision is not None:  # an empty database has nothing to lose
            try:
                backup.check_tools(url)
                saved = upgrade.take_backup(upgrade_node(args, paths, venv=Path(sys.prefix)), "upgrade_db",
                                            with_code=False)
            except (backup.BackupError, release.ReleaseError) as exc:
                raise CtlError(f"backup failed, nothing migrated: {exc}") from None
            print(f"backup: {saved}")
        print(f"migrating to {release.head_of(migrations)} ...", flush=True)
        try:
            migrate(url)
        except Exception as exc:  # noqa: BLE001 (any migration error: restore, then report)
            why = f"{type(exc).__name__}: {exc}"
            if saved is None:
                raise CtlError(f"the migration failed: {why}") from None
            backup.restore(url, saved / upgrade.read_manifest(saved)["database"])
            raise CtlError(f"the migration failed: {why}\nthe database was restored from {saved} "
                           f"(revision {revision})") from None
    print(f"database at revision {current_revision(url)}")
    return 0


def register(commands: Commands) -> None:
    code = argparse.ArgumentParser(add_help=False)
    code.add_argument("--venv", help="the virtualenv of the MN's code (default: $ZSTACK_VENV, else the one "
                      "running zstack-ctl)")
    code.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the MN to start")
    backups = backup_dir_flag()
    p = commands.add("upgrade", cmd_upgrade, "upgrade to a release tarball or wheel: stop, back up, install, "
                     "migrate, start, check; on any failure restore the previous version and database",
                     [code, backups])
    p.add_argument("target", metavar="RELEASE", help="zstack-<version>.tar.gz or zstack-<version>-py3-none-any.whl")
    p.add_argument("--dry-run", action="store_true", help="only check and print the plan")
    p = commands.add("rollback", cmd_rollback, "return to the backup of the last upgrade (code and database)",
                     [code, backups])
    p.add_argument("backup", nargs="?", help="a backup directory (default: the last upgrade's)")
    p = commands.add("upgrade_db", cmd_upgrade_db, "migrate the database to this code's schema: dry run, "
                     "backup, migrate (restored from the backup if a migration fails)", [backups])
    p.add_argument("--dry-run", action="store_true", help="only show the pending migrations")
