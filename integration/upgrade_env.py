"""Releases, virtualenvs and database snapshots for the upgrade tests and benchmark.

- The previous release is the code as it was just before the newest migration was added (git
  archive of that commit; HEAD when the newest migration is not committed yet), so an upgrade to
  this checkout always runs at least one migration.
- A virtualenv is made without pip and sees the dependencies of the running venv through a .pth
  line (flask, SQLAlchemy, pip itself, ...): only the zstack wheel is installed into it, so making
  one takes a second and needs no network. pip never touches the running venv: it only uninstalls
  inside the environment it runs for.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parents[1]
TREE_PARTS = ("pyproject.toml", "README.md", "mn", "kvmagent", "simulator", "zstack_plugins")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "*.db-wal", "*.db-shm")

FAILING_MIGRATION = '''"""injected failure: creates a table and a column, then raises

Revision ID: zz_fail
Revises: {down}
"""
import sqlalchemy as sa
from alembic import op

revision = "zz_fail"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("upgrade_probe", sa.Column("id", sa.Integer, primary_key=True))
    op.add_column("zone", sa.Column("probe", sa.String(8), nullable=True))
    raise RuntimeError("injected failure: this migration fails on purpose")


def downgrade() -> None:
    pass
'''


def _git(*args: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False, **kw)


def head_migration_file() -> Path:
    from mn.db.migrate import MIGRATIONS
    from mn.ops.release import head_of, parse_migration

    files = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        m = parse_migration(path.read_text())
        if m is not None:
            files[m.revision] = (path, m)
    head = head_of({r: m for r, (_p, m) in files.items()})
    return files[head][0]


def previous_commit() -> str:
    """The commit just before the newest migration was added (HEAD if it is not committed yet)."""
    if _git("rev-parse", "--git-dir").returncode != 0:
        raise RuntimeError(f"{ROOT} is not a git checkout: the upgrade test needs its history for the "
                           f"previous release")
    newest = head_migration_file().relative_to(ROOT)
    if _git("ls-files", "--error-unmatch", str(newest)).returncode != 0:
        return "HEAD"
    added = _git("log", "--first-parent", "-m", "--diff-filter=A", "--format=%H", "-1", "--", str(newest),
                 text=True).stdout.strip()  # a migration a merge brings is added by the merge
    return f"{added}^"


def previous_tree(dest: Path) -> Path:
    """The previous release's source (see previous_commit) unpacked into dest."""
    rev = previous_commit()
    present = set(_git("ls-tree", "--name-only", rev, text=True).stdout.split())  # older trees have fewer parts
    proc = _git("archive", "--format=tar", rev, "--", *[p for p in TREE_PARTS if p in present])
    if proc.returncode != 0:
        raise RuntimeError(f"git archive {rev} failed: {proc.stderr.decode()}")
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tf:
        tf.extractall(dest, filter="data")
    return dest


def checkout_tree(dest: Path) -> Path:
    """A copy of this checkout's sources (what its wheel is built from)."""
    dest.mkdir(parents=True)
    for part in TREE_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=_IGNORE)
        else:
            shutil.copy2(src, dest / part)
    return dest


def set_version(tree: Path, version: str) -> None:
    """Give a tree another version (pyproject.toml and mn.__version__), as a release bump does."""
    for rel, pattern, repl in (("pyproject.toml", r'(?m)^version = ".*"$', f'version = "{version}"'),
                               ("mn/__init__.py", r'(?m)^__version__ = ".*"$', f'__version__ = "{version}"')):
        path = tree / rel
        text, n = re.subn(pattern, repl, path.read_text())
        assert n == 1, f"no version line in {path}"
        path.write_text(text)


def version_of(tree: Path) -> str:
    return re.search(r'(?m)^__version__ = "(.*)"$', (tree / "mn/__init__.py").read_text()).group(1)


def build_wheel(tree: Path, out: Path) -> Path:
    """`pip wheel` of a source tree (no deps); the wheel's path."""
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("*.whl"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(tree)],
                          capture_output=True, text=True, cwd=tree)
    assert proc.returncode == 0, proc.stderr
    shutil.rmtree(tree / "build", ignore_errors=True)
    made = sorted(set(out.glob("*.whl")) - before)
    assert len(made) == 1, made
    return made[0]


def derive_wheel(wheel: Path, out: Path, version: str, extra: dict[str, str]) -> Path:
    """A copy of a zstack wheel with another version and extra files (a fresh RECORD).

    Quicker than another `pip wheel` (which builds in an isolated env) for a variant of a release.
    """
    old = wheel.name.split("-")[1]
    out.mkdir(parents=True, exist_ok=True)
    dest = out / f"zstack-{version}-py3-none-any.whl"
    old_info, new_info = f"zstack-{old}.dist-info/", f"zstack-{version}.dist-info/"
    record = []
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        entries = {n.replace(old_info, new_info, 1): src.read(n) for n in src.namelist()
                   if not n.endswith(".dist-info/RECORD")}
        entries.update({k: v.encode() for k, v in extra.items()})
        entries[new_info + "METADATA"] = re.sub(rb"(?m)^Version: .*$", f"Version: {version}".encode(),
                                                entries[new_info + "METADATA"])
        entries["mn/__init__.py"] = re.sub(rb'(?m)^__version__ = ".*"$', f'__version__ = "{version}"'.encode(),
                                           entries["mn/__init__.py"])
        for name, data in entries.items():
            zf.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        zf.writestr(new_info + "RECORD", "\n".join([*record, new_info + "RECORD,,"]) + "\n")
    return dest


def failing_migration(down: str) -> dict[str, str]:
    """The extra file of a wheel whose migration after `down` changes the schema, then raises."""
    return {"mn/migrations/versions/zz_fail.py": FAILING_MIGRATION.format(down=down)}


def release_tarball(wheel: Path, out: Path) -> Path:
    """A release tarball around a wheel, laid out as tools/build_release.py makes them."""
    version = wheel.name.split("-")[1]
    top = f"zstack-{version}"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(wheel, arcname=f"{top}/wheels/{wheel.name}")
        tf.add(ROOT / "install.sh", arcname=f"{top}/install.sh")
        data = f"{version}\n".encode()
        info = tarfile.TarInfo(f"{top}/VERSION")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


def make_venv(path: Path, wheel: Path) -> Path:
    """A venv holding `wheel`, with the running venv's packages as its dependencies."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next(path.glob("lib/python3*/site-packages"))
    (site / "zz_deps_of_the_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proc = subprocess.run([str(path / "bin/python"), "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-index", str(wheel)], capture_output=True, text=True, cwd=path)
    assert proc.returncode == 0, proc.stderr
    return path


def clean_env(user_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_") and k != "VIRTUAL_ENV"}
    env["HOME"] = str(user_home)
    return env


def wait_hosts_settled(url: str, mn_url: str | None = None, timeout: float = 60.0) -> None:
    """Wait until every host is Connected again: a starting MN reconnects every host (through
    Connecting, or Disconnected while its simulator comes up), and a snapshot taken meanwhile would
    see that passing status as a changed row. With `mn_url`, first wait for the MN's first
    host-tracker round (its /health counts them; releases before that count are not waited for),
    since until that round hosts still read Connected from before the restart."""
    import json
    import time
    import urllib.request

    from sqlalchemy import text

    deadline = time.monotonic() + timeout
    while mn_url is not None:
        with urllib.request.urlopen(f"{mn_url}/health", timeout=5) as r:
            rounds = json.loads(r.read()).get("backgroundRounds")
        if rounds is None or rounds.get("host-tracker", 0) >= 1:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"no host-tracker round after {timeout:.0f}s")
        time.sleep(0.2)
    engine = create_engine(url, poolclass=NullPool)
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if not conn.execute(text("SELECT count(*) FROM host WHERE status != 'Connected'")).scalar():
                    return
            time.sleep(0.2)
        raise TimeoutError(f"hosts not all Connected after {timeout:.0f}s")
    finally:
        engine.dispose()


def snapshot(url: str, skip: tuple[str, ...] = (), skip_columns: tuple[str, ...] = ("lastOpDate",),
             ) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, sorted, as dicts (tables in `skip` and columns in `skip_columns` left
    out: by default lastOpDate, which a starting MN rewrites on the hosts it reconnects)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        meta = MetaData()
        meta.reflect(engine)
        out = {}
        with engine.connect() as conn:
            for name, table in sorted(meta.tables.items()):
                if name in skip:
                    continue
                rows = [{k: v for k, v in r._mapping.items() if k not in skip_columns}
                        for r in conn.execute(select(table))]
                out[name] = sorted(rows, key=lambda r: [str(v) for v in r.values()])
        return out
    finally:
        engine.dispose()
