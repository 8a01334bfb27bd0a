"""Releases and the virtualenv they are installed in: what a wheel or release tarball holds, which
migrations an upgrade will run, and installing a wheel offline.

Layout (install root R, default /usr/local/zstack): R/venv the virtualenv, R/releases/<version>/
the unpacked releases (install.sh, installer/, wheels/*.whl, VERSION), R/mn the MN home,
R/backups the backups. A development install has no R: backups go to <home>/backups.
A release tarball is `zstack-<version>.tar.gz` holding `zstack-<version>/wheels/zstack-<version>-
py3-none-any.whl` (and install.sh, installer/, VERSION).
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import email.parser
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

DIST = "zstack"
MIGRATIONS_IN_WHEEL = "mn/migrations/versions/"
PLUGIN_MIGRATIONS_IN_WHEEL = re.compile(r"^zstack_plugins/(?P<plugin>\w+)/migrations/(?P<file>[^/]+\.py)$")
_WHEEL_NAME = re.compile(r"^zstack-(?P<version>[^-]+)-(?P<tag>.+)\.whl$")


class ReleaseError(Exception):
    """A release, wheel or virtualenv that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class Migration:
    revision: str
    down_revision: str | None
    title: str  # the first line of the migration's docstring


@dataclasses.dataclass(frozen=True)
class Wheel:
    """A zstack wheel file: its version, requirements and schema migrations (the core's, and each
    in-tree plugin's chain by plugin name)."""

    path: Path
    version: str
    requires: tuple[str, ...]
    migrations: dict[str, Migration]
    plugin_migrations: dict[str, dict[str, Migration]] = dataclasses.field(default_factory=dict)

    @property
    def head(self) -> str | None:
        return head_of(self.migrations)


# ---- migrations ---------------------------------------------------------------------------------


def parse_migration(source: str) -> Migration | None:
    """The revision, down_revision and title of an Alembic migration script (None if not one)."""
    tree = ast.parse(source)
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("revision", "down_revision"):
                values[name] = ast.literal_eval(node.value)
    if not isinstance(values.get("revision"), str):
        return None
    down = values.get("down_revision")
    if isinstance(down, (tuple, list)):
        raise ReleaseError(f"migration {values['revision']} merges branches ({down}): not supported")
    doc = (ast.get_docstring(tree) or "").strip().splitlines()
    return Migration(str(values["revision"]), down if isinstance(down, str) else None, doc[0] if doc else "")


def migrations_in(directory: Path) -> dict[str, Migration]:
    """The migrations of an installed tree (mn/migrations/versions)."""
    out: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.py")):
        m = parse_migration(path.read_text())
        if m is not None:
            out[m.revision] = m
    return out


def head_of(migrations: dict[str, Migration]) -> str | None:
    """The single head revision; ReleaseError when the history has several heads."""
    downs = {m.down_revision for m in migrations.values()}
    heads = sorted(r for r in migrations if r not in downs)
    if len(heads) > 1:
        raise ReleaseError(f"the migrations have several heads ({', '.join(heads)}): merge them first")
    return heads[0] if heads else None


def pending(migrations: dict[str, Migration], current: str | None) -> list[Migration]:
    """The migrations an upgrade from revision `current` runs, oldest first.

    ReleaseError when `current` is not in the history (a database newer than the code, or of
    another product): migrating it would be a downgrade or a guess.
    """
    if current is not None and current not in migrations:
        raise ReleaseError(f"the database is at revision {current}, which this release does not know "
                           f"(known: {', '.join(sorted(migrations)) or 'none'}); is the database newer "
                           f"than this release?")
    chain: list[Migration] = []
    rev = head_of(migrations)
    while rev is not None and rev != current:
        m = migrations[rev]
        chain.append(m)
        rev = m.down_revision
    return list(reversed(chain))


# ---- wheels and tarballs ------------------------------------------------------------------------


def read_wheel(path: Path) -> Wheel:
    """Inspect a zstack wheel; ReleaseError when it is not one."""
    match = _WHEEL_NAME.match(path.name)
    if not match:
        raise ReleaseError(f"{path.name} is not a zstack wheel (zstack-<version>-py3-none-any.whl)")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            meta_name = f"zstack-{match['version']}.dist-info/METADATA"
            if meta_name not in names:
                raise ReleaseError(f"{path} has no {meta_name}")
            meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
            migrations: dict[str, Migration] = {}
            plugins: dict[str, dict[str, Migration]] = {}
            for name in names:
                if name.startswith(MIGRATIONS_IN_WHEEL) and name.endswith(".py") and "/" not in name[len(
                        MIGRATIONS_IN_WHEEL):]:
                    m = parse_migration(zf.read(name).decode())
                    if m is not None:
                        migrations[m.revision] = m
                elif (match := PLUGIN_MIGRATIONS_IN_WHEEL.match(name)) is not None:
                    m = parse_migration(zf.read(name).decode())
                    if m is not None:
                        plugins.setdefault(match["plugin"], {})[m.revision] = m
    except (zipfile.BadZipFile, OSError) as exc:
        raise ReleaseError(f"cannot read the wheel {path}: {exc}") from None
    return Wheel(path, str(meta["Version"]), tuple(meta.get_all("Requires-Dist") or ()), migrations, plugins)


def unpack_release(tarball: Path, dest_root: Path) -> Path:
    """Unpack a release tarball into dest_root/<version>/ and return the zstack wheel in it.

    An already unpacked release of that version is replaced (it may be a failed earlier try).
    """
    try:
        with tarfile.open(tarball) as tf:
            tops = {m.name.split("/", 1)[0] for m in tf.getmembers()}
            if len(tops) != 1 or not next(iter(tops)).startswith("zstack-"):
                raise ReleaseError(f"{tarball} is not a zstack release (one zstack-<version>/ directory)")
            top = tops.pop()
            version = top[len("zstack-"):]
            dest = dest_root / version
            staging = dest_root / f".{version}.unpacking"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            tf.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ReleaseError(f"cannot read the release tarball {tarball}: {exc}") from None
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(staging / top, dest)
    shutil.rmtree(staging, ignore_errors=True)
    wheels = sorted((dest / "wheels").glob("zstack-*.whl"))
    if len(wheels) != 1:
        raise ReleaseError(f"{tarball} should hold exactly one wheels/zstack-*.whl, found {len(wheels)}")
    return wheels[0]


# ---- the virtualenv -----------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise ReleaseError(f"{venv} is not a virtualenv (no lib/python3*/site-packages)")
    return found[-1]


def installed_dist_info(venv: Path) -> Path:
    """The zstack-<version>.dist-info of the venv; ReleaseError when zstack is not installed."""
    found = sorted(site_packages(venv).glob("zstack-*.dist-info"))
    if len(found) != 1:
        raise ReleaseError(f"zstack is not installed in {venv}" if not found else
                           f"{venv} holds several zstack installs: {', '.join(p.name for p in found)}")
    return found[0]


def installed_version(venv: Path) -> str:
    meta = email.parser.Parser().parsestr((installed_dist_info(venv) / "METADATA").read_text())
    return str(meta["Version"])


def installed_requires(venv: Path) -> tuple[str, ...]:
    meta = email.parser.Parser().parsestr((installed_dist_info(venv) / "METADATA").read_text())
    return tuple(meta.get_all("Requires-Dist") or ())


def repack_installed(venv: Path, dest_dir: Path) -> Path:
    """Rebuild the wheel of the venv's installed zstack from its files, as listed in RECORD.

    Files outside site-packages (console scripts, regenerated by pip from entry_points.txt),
    byte-code and the installer's own files (INSTALLER, REQUESTED, direct_url.json) are left out;
    a fresh RECORD with sha256 hashes is written. Installing the result gives back the same code.
    """
    site = site_packages(venv)
    info = installed_dist_info(venv)
    version = installed_version(venv)
    skip = {f"{info.name}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    files: list[str] = []
    for line in (info / "RECORD").read_text().splitlines():
        name = line.rsplit(",", 2)[0]
        if not name or name.startswith("..") or name.startswith("/") or name.endswith(".pyc") or name in skip:
            continue
        if (site / name).is_file():
            files.append(name)
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / f"zstack-{version}-py3-none-any.whl"
    record: list[str] = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in files:
            data = (site / name).read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            zf.writestr(name, data)
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append(f"{info.name}/RECORD,,")
        zf.writestr(f"{info.name}/RECORD", "\n".join(record) + "\n")
    return out


_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_REQUIREMENT_EXTRA = re.compile(r"""\bextra\s*==\s*["']([^"']+)["']""")


def normal_name(name: str) -> str:
    """A distribution name as pip compares them (PEP 503: case and -_. runs do not count)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions(venv: Path) -> frozenset[str]:
    """The normalized names of the distributions the venv's Python sees (its .pth paths included)."""
    code = "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'] or '')"
    proc = subprocess.run([str(venv_python(venv)), "-I", "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReleaseError(f"cannot list the distributions of {venv}: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return frozenset(normal_name(n) for n in proc.stdout.split() if n)


def extras_in_use(requires: tuple[str, ...], installed: frozenset[str]) -> tuple[str, ...]:
    """The extras of a wheel (its Requires-Dist `requires`) whose every requirement is among the
    `installed` distributions, sorted. Installing the wheel with them keeps what the venv had (the
    `installer` extra's Ansible, a database driver) and applies the new wheel's ranges to it."""
    needs: dict[str, set[str]] = {}
    for req in requires:
        extra, name = _REQUIREMENT_EXTRA.search(req), _REQUIREMENT_NAME.match(req)
        if extra and name:
            needs.setdefault(extra.group(1), set()).add(normal_name(name.group(1)))
    return tuple(sorted(e for e, names in needs.items() if names <= installed))


def release_constraints(wheel: Path) -> Path | None:
    """The constraints.txt of the release `wheel` is part of (<release>/wheels/<wheel>), if any."""
    if wheel.parent.name != "wheels":
        return None
    path = wheel.parent.parent / "constraints.txt"
    return path if path.is_file() else None


def pip_install(venv: Path, wheel: Path, *, with_deps: bool = False, cwd: Path | None = None) -> None:
    """Install `wheel` into the venv, replacing the installed zstack (same version included).

    Without deps it is offline (--no-index --no-deps); with deps pip may use the configured index
    and the wheel's directory (--find-links) for the new requirements, of the wheel and of the
    extras the venv has installed (extras_in_use), pinned by its release's constraints.txt.
    """
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    commands = [[*pip, "--force-reinstall", "--no-deps", "--no-index", str(wheel)]]
    if with_deps:  # zstack itself is now satisfied: this adds or changes only the requirements
        extras = extras_in_use(read_wheel(wheel).requires, installed_distributions(venv))
        constraints = release_constraints(wheel)
        commands.append([*pip, "--find-links", str(wheel.parent),
                         *(["--constraint", str(constraints)] if constraints else []),
                         f"{wheel}[{','.join(extras)}]" if extras else str(wheel)])
    for cmd in commands:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
        if proc.returncode != 0:
            raise ReleaseError(f"pip install {wheel.name} into {venv} failed: "
                               f"{(proc.stderr or proc.stdout).strip()[-2000:]}")


def install_root(venv: Path) -> Path | None:
    """R when the venv is R/venv of an installed layout (R/releases exists), else None (dev)."""
    root = venv.parent
    return root if venv.name == "venv" and (root / "releases").is_dir() else None
