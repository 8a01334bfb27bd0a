"""zstack-ctl show_configuration, configure and deploydb: the settings of a home and its schema.

configure validates every key=value before writing any (a bad one changes nothing); deploydb saves
--db-url only after the migration to it succeeded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mn.ops.ctl.process import running_pid
from mn.ops.ctl.settings import (
    CONFIG_FIELDS,
    CtlError,
    check_key,
    load_config,
    mask_url,
    normalise_value,
    paths_of,
    persist,
    read_properties,
    write_properties,
)

if TYPE_CHECKING:
    from mn.ops.ctl.parser import Commands


def cmd_show_configuration(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    if args.all:
        config = load_config(paths)
        for name in CONFIG_FIELDS:
            print(f"{name}={normalise_value(name, getattr(config, name))}")
        return 0
    props = read_properties(paths.properties)
    print(f"# {paths.properties}" + ("" if paths.properties.exists() else " (absent: defaults apply)"))
    for k, v in props.items():
        print(f"{k}={v}")
    return 0


def cmd_configure(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    updates: dict[str, str | None] = {}
    for item in args.settings:
        key, eq, value = item.partition("=")
        if not eq:
            raise CtlError(f"expected key=value, got {item!r} (key= removes a setting)", 2)
        key = key.strip()
        check_key(key)
        updates[key] = normalise_value(key, value) if value.strip() else None
    write_properties(paths.properties, updates)
    for k, v in updates.items():
        print(f"{k}={v}" if v is not None else f"{k} removed (default applies)")
    if running_pid(paths) is not None:
        print("the management node is running: 'zstack-ctl restart' applies the new settings")
    return 0


def cmd_deploydb(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    if args.db_url:
        normalise_value("db_url", args.db_url)
    config = load_config(paths, **({"db_url": args.db_url} if args.db_url else {}))
    url = config.db_url
    paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    print(f"migrating {mask_url(url)} ...", flush=True)
    try:
        from mn.db.migrate import current_revision, upgrade
        from mn.secretbox import key_path

        upgrade(url, secret_key=key_path(paths.home))  # made if missing when passwords need sealing
        revision = current_revision(url)
    except Exception as exc:
        raise CtlError(f"deploydb failed on {mask_url(url)}: {type(exc).__name__}: {exc}") from None
    if args.db_url:
        persist(paths, {"db_url": args.db_url})
        print(f"db_url saved in {paths.properties}")
    print(f"database ready at revision {revision}")
    return 0


def register(commands: Commands) -> None:
    p = commands.add("show_configuration", cmd_show_configuration, "print zstack.properties", [])
    p.add_argument("--all", action="store_true", help="print every effective setting (file + ZSTACK_* env)")
    p = commands.add("configure", cmd_configure, "set settings in zstack.properties (key= removes one)", [])
    p.add_argument("settings", nargs="+", metavar="key=value")
    p = commands.add("deploydb", cmd_deploydb, "create or upgrade the database schema", [])
    p.add_argument("--db-url", help="database URL (saved as db_url); default: the configured one")
