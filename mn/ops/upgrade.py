"""Upgrades that roll back, and the backups they rely on.

`upgrade` is a flow (mn.flow): stop the MN, back up, install the new wheel, migrate, start, check
readiness. The backup is taken after the stop so no write of the old MN is lost; everything that
can be checked without changing anything (the wheel, the venv, the database's revision against the
new release's migrations, the dump tools) is checked before the stop. When a step fails, the
completed steps are undone in reverse: the new MN is stopped, the database restored from the dump,
the previous wheel reinstalled and the previous MN started again and checked ready.

A backup is a directory `<backups>/<YYYYmmdd-HHMMSS>-<version>/` holding manifest.json, the
database dump (mn.backup), the previous wheel (from R/releases, else rebuilt from the venv) and
zstack.properties. `<backups>/last-upgrade` names the backup of the last successful upgrade, which
`rollback` returns to.

Test hook: ZSTACK_UPGRADE_FAULT=<step> makes the upgrade fail right after that step
(stop, backup, install, migrate, start, check), to exercise the rollback of each step.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from mn.errors import ApiError
from mn.flow import Flow, Step
from mn.ops import backup, release

LAST_UPGRADE = "last-upgrade"
MANIFEST = "manifest.json"
FAULT_ENV = "ZSTACK_UPGRADE_FAULT"


class UpgradeError(Exception):
    """An upgrade, rollback or backup that failed; the message says what and what state is left."""


@dataclasses.dataclass
class Node:
    """The MN of one home and the venv its code runs from, as zstack-ctl drives it."""

    home: Path
    venv: Path
    db_url: str
    backups: Path
    is_running: Callable[[], bool]
    stop: Callable[[], None]
    start: Callable[[], None]              # start the venv's code, wait for /health
    running_version: Callable[[], str | None]
    releases: Path | None = None           # R/releases of an installed layout
    say: Callable[[str], None] = print


@dataclasses.dataclass(frozen=True)
class Plan:
    """What an upgrade will do, computed without changing anything."""

    wheel: release.Wheel
    from_version: str
    from_revision: str | None
    migrations: list[release.Migration]
    deps_changed: bool
    was_running: bool
    plugin_migrations: dict[str, list[release.Migration]] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"upgrade {self.from_version} -> {self.wheel.version} ({self.wheel.path.name})",
                 f"database revision {self.from_revision or 'none'} -> {self.wheel.head or 'none'}: "
                 + (f"{len(self.migrations)} migration(s)" if self.migrations else "no migration")]
        lines += [f"  {m.revision}  {m.title}" for m in self.migrations]
        for plugin, todo in sorted(self.plugin_migrations.items()):
            if todo:
                lines.append(f"plugin {plugin}: {len(todo)} migration(s)")
                lines += [f"  {m.revision}  {m.title}" for m in todo]
        lines.append("requirements changed: pip installs them (the index may be used)" if self.deps_changed
                     else "requirements unchanged: offline install of the wheel alone (--no-deps)")
        lines.append("the management node is " + ("running: it is stopped, upgraded and started again"
                                                  if self.was_running else "stopped: it is started after"))
        return "\n".join(lines)


# ---- backups ------------------------------------------------------------------------------------


def current_revision(url: str) -> str | None:
    from mn.db.migrate import current_revision as revision

    return revision(url)


def plugin_revision(url: str, plugin: str) -> str | None:
    """The revision of a plugin's migration chain in the database (None: not there yet)."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": f"alembic_version_{plugin}"}
                                              ).get_current_revision()
    finally:
        engine.dispose()


def take_backup(node: Node, kind: str, with_code: bool = True) -> Path:
    """Dump the database (and the installed wheel, and the config) into a new backup directory."""
    version = release.installed_version(node.venv) if with_code else _code_version(node)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = node.backups / f"{stamp}-{version}"
    n = 1
    while target.exists():
        n += 1
        target = node.backups / f"{stamp}-{version}.{n}"
    staging = target.with_name("." + target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        t0 = time.monotonic()
        database = "database" + backup.SUFFIX[backup.dialect_of(node.db_url)]
        backup.dump(node.db_url, staging / database)
        wheel_name = _save_wheel(node, version, staging).name if with_code else None
        props = node.home / "zstack.properties"
        if props.exists():
            shutil.copy2(props, staging / props.name)
            os.chmod(staging / props.name, 0o600)
        key = "secret.key" if backup.save_key(node.home, staging / "secret.key") else None
        manifest = {"kind": kind, "secretKey": key, "created": dt.datetime.now().isoformat(timespec="seconds"),
                    "version": version, "revision": current_revision(node.db_url),
                    "dialect": backup.dialect_of(node.db_url), "database": database, "wheel": wheel_name,
                    "home": str(node.home), "venv": str(node.venv), "rows": backup.row_counts(node.db_url),
                    "seconds": round(time.monotonic() - t0, 2)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(staging, target)  # a backup directory is complete or absent
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def read_manifest(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise UpgradeError(f"{directory} is not a backup (no readable {MANIFEST}: {exc})") from None


def last_upgrade(backups: Path) -> Path:
    """The backup of the last successful upgrade; UpgradeError when there is none."""
    marker = backups / LAST_UPGRADE
    if not marker.exists():
        raise UpgradeError(f"no upgrade to roll back: {marker} does not exist (no successful upgrade "
                           f"with backups in {backups})")
    directory = backups / marker.read_text().strip()
    read_manifest(directory)
    return directory


def _code_version(node: Node) -> str:
    try:
        return release.installed_version(node.venv)
    except release.ReleaseError:
        from mn import __version__

        return __version__


def _save_wheel(node: Node, version: str, dest: Path) -> Path:
    """The installed wheel, copied from R/releases/<version>/wheels when there, else rebuilt."""
    if node.releases is not None:
        found = sorted((node.releases / version / "wheels").glob(f"zstack-{version}-*.whl"))
        if found:
            return Path(shutil.copy2(found[0], dest / found[0].name))
    return release.repack_installed(node.venv, dest)


# ---- upgrade ------------------------------------------------------------------------------------


def plan_upgrade(node: Node, wheel_path: Path) -> Plan:
    """Check everything that can be checked without a change; the plan, or UpgradeError."""
    try:
        wheel = release.read_wheel(wheel_path)
        from_version = release.installed_version(node.venv)
        requires = release.installed_requires(node.venv)
        backup.check_tools(node.db_url)
        backup.check_reachable(node.db_url)
        revision = current_revision(node.db_url)
        if revision is None:
            raise UpgradeError(f"the database {make_url(node.db_url).render_as_string()} has no "
                               f"schema yet: run 'zstack-ctl deploydb' to create it (nothing to upgrade)")
        todo = release.pending(wheel.migrations, revision)
        plugin_todo = {name: release.pending(migrations, plugin_revision(node.db_url, name))
                       for name, migrations in wheel.plugin_migrations.items()}
    except (release.ReleaseError, backup.BackupError) as exc:
        raise UpgradeError(str(exc)) from None
    return Plan(wheel, from_version, revision, todo, set(requires) != set(wheel.requires), node.is_running(),
                plugin_todo)


def run_upgrade(node: Node, plan: Plan) -> Path:
    """Run the upgrade flow; the backup directory on success, UpgradeError after a rollback."""
    data: dict[str, Any] = {"rollback_errors": [], "timings": {}}
    steps = [
        _step(node, data, "stop", "stop the management node", node.stop,
              "start the previous version again", lambda: _ensure_running(node, plan.from_version)),
        _step(node, data, "backup", "back up the database, code and config",
              lambda: data.__setitem__("backup", take_backup(node, "upgrade"))),
        _step(node, data, "install", f"install {plan.wheel.path.name}",
              lambda: release.pip_install(node.venv, plan.wheel.path, with_deps=plan.deps_changed, cwd=node.home),
              "reinstall the previous code", lambda: _reinstall_previous(node, data, plan)),
        _step(node, data, "migrate", f"migrate the database to {plan.wheel.head}", lambda: _migrate(node),
              "restore the database from the backup", lambda: _restore_db(node, data)),
        _step(node, data, "start", "start the management node", node.start,
              "stop the new management node", node.stop),
        _step(node, data, "check", "check readiness", lambda: _check(node, plan)),
    ]
    fault = os.environ.get(FAULT_ENV)
    t0 = time.monotonic()
    try:
        Flow("upgrade", steps).run(None, data, fault=(lambda name: name == f"upgrade:{fault}") if fault else None)
    except Exception as exc:  # noqa: BLE001 (every failure is reported with what was rolled back)
        where = data.get("failed_step") or "the fault injected by " + FAULT_ENV
        what = exc.details if isinstance(exc, ApiError) else str(exc)
        msg = f"upgrade to {plan.wheel.version} failed at '{where}': {what}"
        if data["rollback_errors"]:
            msg += ("\nTHE ROLLBACK ALSO FAILED, the previous version may not be running:\n  "
                    + "\n  ".join(data["rollback_errors"]))
            if data.get("backup"):
                msg += f"\nthe backup is in {data['backup']}: 'zstack-ctl rollback {data['backup']}' returns to it"
        else:
            msg += f"\nrolled back: version {plan.from_version} is running again with its database as it was"
        raise UpgradeError(msg) from None
    target: Path = data["backup"]
    (node.backups / LAST_UPGRADE).write_text(target.name + "\n")
    node.say(f"upgraded {plan.from_version} -> {plan.wheel.version} in {time.monotonic() - t0:.1f} s; "
             f"backup: {target} ('zstack-ctl rollback' returns to it)")
    return target


def rollback(node: Node, directory: Path) -> None:
    """Return to a backup: its database and its code, started and ready; a safety backup first."""
    manifest = read_manifest(directory)
    if not manifest.get("wheel"):
        raise UpgradeError(f"{directory} holds no code ({manifest.get('kind')} backup): use 'zstack-ctl "
                           f"restore_db {directory / manifest['database']}' for its database")
    wheel = directory / manifest["wheel"]
    dump = directory / manifest["database"]
    for path in (wheel, dump):
        if not path.is_file():
            raise UpgradeError(f"the backup {directory} is incomplete: {path.name} is missing")
    if backup.dialect_of(node.db_url) != manifest["dialect"]:
        raise UpgradeError(f"the backup holds a {manifest['dialect']} database; the MN now uses "
                           f"{backup.dialect_of(node.db_url)}")
    try:
        backup.check_tools(node.db_url)
        target_requires = release.read_wheel(wheel).requires
    except (release.ReleaseError, backup.BackupError) as exc:
        raise UpgradeError(str(exc)) from None
    data: dict[str, Any] = {"rollback_errors": [], "timings": {}}
    try:
        _timed(node, data, "stop the management node", node.stop)(None, data)
        _timed(node, data, "back up the current state (undo with restore_db)",
               lambda: data.__setitem__("safety", take_backup(node, "before-rollback")))(None, data)
        _timed(node, data, f"restore the database of {directory.name}",
               lambda: _restore_db(node, {"backup": directory}))(None, data)
        _timed(node, data, f"reinstall {wheel.name}",
               lambda: release.pip_install(node.venv, wheel, cwd=node.home,
                                           with_deps=set(target_requires) != set(
                                               release.installed_requires(node.venv))))(None, data)
        _timed(node, data, "start the management node",
               lambda: _ensure_running(node, manifest["version"]))(None, data)
    except Exception as exc:  # noqa: BLE001
        raise UpgradeError(f"rollback failed at '{data.get('failed_step')}': {exc}"
                           + (f"\nthe state before the rollback is saved in {data['safety']}"
                              if data.get("safety") else "")) from None
    node.say(f"rolled back to {manifest['version']} (database revision {manifest['revision']}); the state "
             f"before the rollback is saved in {data['safety']}")


# ---- steps --------------------------------------------------------------------------------------


def _timed(node: Node, data: dict[str, Any], title: str, fn: Callable[[], object]) -> Callable[[Any, dict], None]:
    def run(_ctx: Any, _data: dict) -> None:
        node.say(f"==> {title} ...")
        t0 = time.monotonic()
        try:
            fn()
        except Exception:
            data["failed_step"] = title
            node.say(f"    FAILED after {time.monotonic() - t0:.1f} s")
            raise
        took = time.monotonic() - t0
        data["timings"][title] = round(took, 2)
        node.say(f"    done ({took:.1f} s)")

    return run


def _step(node: Node, data: dict[str, Any], name: str, title: str, fn: Callable[[], object],
          undo_title: str | None = None, undo: Callable[[], object] | None = None) -> Step:
    """A flow step whose undo also runs when the step itself fails half-way (a partly applied
    migration, a half-installed wheel): the flow only rolls back the steps that completed."""
    run = _timed(node, data, title, fn)
    if undo is None or undo_title is None:
        return Step(name, run)
    rollback = _undo(node, data, undo_title, undo)

    def run_or_undo(ctx: Any, d: dict) -> None:
        try:
            run(ctx, d)
        except BaseException:
            try:
                rollback(ctx, d)
            except Exception:  # noqa: BLE001 (recorded in rollback_errors; the step's error wins)
                pass
            raise

    return Step(name, run_or_undo, rollback)


def _undo(node: Node, data: dict[str, Any], title: str, fn: Callable[[], object]) -> Callable[[Any, dict], None]:
    """A rollback that says what it does and records its failure for the report."""
    def run(_ctx: Any, _data: dict) -> None:
        node.say(f"<== rollback: {title} ...")
        try:
            fn()
        except Exception as exc:
            data["rollback_errors"].append(f"{title}: {exc}")
            node.say(f"    rollback FAILED: {exc}")
            raise
        node.say("    done")

    return run


def _migrate(node: Node) -> None:
    """Migrate with the newly installed code, in its own process (the new migration scripts)."""
    proc = subprocess.run([str(release.venv_python(node.venv)), "-m", "mn.ctl", "--home", str(node.home),
                           "deploydb"], capture_output=True, text=True, cwd=node.home)
    if proc.returncode != 0:
        raise UpgradeError(f"the migration failed: {(proc.stderr or proc.stdout).strip()[-3000:]}")


def _restore_db(node: Node, data: dict[str, Any]) -> None:
    """The backup's database, and its key file (which seals its stored passwords) when it has one."""
    directory: Path = data["backup"]
    manifest = read_manifest(directory)
    backup.restore(node.db_url, directory / manifest["database"])
    if manifest.get("secretKey"):
        backup.put_key(directory / manifest["secretKey"], node.home)


def _reinstall_previous(node: Node, data: dict[str, Any], plan: Plan) -> None:
    directory: Path = data["backup"]
    wheel = directory / read_manifest(directory)["wheel"]
    release.pip_install(node.venv, wheel, with_deps=plan.deps_changed, cwd=node.home)


def _check(node: Node, plan: Plan) -> None:
    version = node.running_version()
    if version != plan.wheel.version:
        raise UpgradeError(f"the management node answers version {version}, expected {plan.wheel.version}")
    revision = current_revision(node.db_url)
    if revision != plan.wheel.head:
        raise UpgradeError(f"the database is at revision {revision}, expected {plan.wheel.head}")


def _ensure_running(node: Node, version: str) -> None:
    """Start the MN unless it runs (a stop that failed left it running), then check its version."""
    if not node.is_running():
        node.start()
    running = node.running_version()
    if running != version:
        raise UpgradeError(f"the management node answers version {running}, expected {version}")


