"""The pieces of zstack-ctl upgrade/rollback that need no running MN: migration plans, wheels and
release tarballs, repacking an installed wheel, argument handling; dump_db, restore_db, upgrade_db
and collect_log on a real SQLite database (the upgrade flow itself: integration/test_upgrade*.py)."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from mn.db.migrate import current_revision, head_revision
from mn.db.migrate import upgrade as migrate
from mn.ops import ctl, release, upgrade
from mn.ops.ctl.process import write_pid
from mn.ops.release import Migration, ReleaseError


def _migration(rev: str, down: str | None, title: str = "t") -> str:
    return f'"""{title}\n\nmore\n"""\nrevision = "{rev}"\ndown_revision = {down!r}\n'


def _chain(*revs: str) -> dict[str, Migration]:
    out, down = {}, None
    for r in revs:
        out[r] = Migration(r, down, f"step {r}")
        down = r
    return out


def _wheel(path: Path, version: str = "1.2.0", migrations: dict[str, str] | None = None,
           requires: tuple[str, ...] = ("flask>=3.0",)) -> Path:
    whl = path / f"zstack-{version}-py3-none-any.whl"
    path.mkdir(parents=True, exist_ok=True)
    meta = f"Metadata-Version: 2.1\nName: zstack\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(f"zstack-{version}.dist-info/METADATA", meta)
        for name, text in (migrations or {}).items():
            zf.writestr(name if "/" in name else f"mn/migrations/versions/{name}", text)
    return whl


# ---- migrations and plans -----------------------------------------------------------------------


def test_parse_migration_reads_revision_down_revision_and_title():
    m = release.parse_migration(_migration("0002", "0001", "query indexes"))
    assert m == Migration("0002", "0001", "query indexes")
    assert release.parse_migration("x = 1\n") is None
    with pytest.raises(ReleaseError, match="merges branches"):
        release.parse_migration('revision = "m"\ndown_revision = ("a", "b")\n')


def test_pending_walks_from_the_current_revision_to_the_head():
    chain = _chain("0001", "0002", "0003")
    assert [m.revision for m in release.pending(chain, "0001")] == ["0002", "0003"]
    assert [m.revision for m in release.pending(chain, None)] == ["0001", "0002", "0003"]
    assert release.pending(chain, "0003") == []
    with pytest.raises(ReleaseError, match="revision 0009, which this release does not know"):
        release.pending(chain, "0009")
    forked = {**chain, "0003b": Migration("0003b", "0002", "other")}
    with pytest.raises(ReleaseError, match="several heads"):
        release.pending(forked, "0001")


def test_this_checkouts_migrations_have_one_head():
    from mn.db.migrate import MIGRATIONS

    assert release.head_of(release.migrations_in(MIGRATIONS / "versions")) == head_revision()


def test_read_wheel_finds_each_plugins_chain(tmp_path):
    whl = _wheel(tmp_path, "2.1.0", {"0001_a.py": _migration("0001", None),
                                     "zstack_plugins/eip/migrations/eip_0001_x.py": _migration("eip_0001", None),
                                     "zstack_plugins/eip/migrations/eip_0002_y.py": _migration("eip_0002", "eip_0001"),
                                     "zstack_plugins/eip/migrations/__init__.py": '"""doc"""',
                                     "zstack_plugins/eip/agent.py": "x = 1\n"})
    w = release.read_wheel(whl)
    assert sorted(w.migrations) == ["0001"] and sorted(w.plugin_migrations) == ["eip"]
    assert release.head_of(w.plugin_migrations["eip"]) == "eip_0002"


def test_this_checkouts_plugin_chains_are_what_a_plan_reads(tmp_path):
    from mn.db.migrate import revisions
    from mn.db.migrate import upgrade as migrate
    from mn.ops import upgrade

    url = f"sqlite:///{tmp_path / 'p.db'}"
    migrate(url)
    for name, (current, _) in revisions(url).items():
        if name != "core":
            assert upgrade.plugin_revision(url, name) == current
    assert upgrade.plugin_revision(url, "not_installed") is None


def test_read_wheel(tmp_path):
    whl = _wheel(tmp_path, "2.0.1", {"0001_a.py": _migration("0001", None), "0002_b.py": _migration("0002", "0001"),
                                     "__init__.py": ""})
    w = release.read_wheel(whl)
    assert (w.version, w.head, w.requires) == ("2.0.1", "0002", ("flask>=3.0",))
    assert sorted(w.migrations) == ["0001", "0002"]
    assert w.plugin_migrations == {}
    bad_name = tmp_path / "other-1.0-py3-none-any.whl"
    bad_name.write_bytes(whl.read_bytes())
    with pytest.raises(ReleaseError, match="not a zstack wheel"):
        release.read_wheel(bad_name)
    not_zip = tmp_path / "x" / "zstack-1.0-py3-none-any.whl"
    not_zip.parent.mkdir()
    not_zip.write_text("hello")
    with pytest.raises(ReleaseError, match="cannot read the wheel"):
        release.read_wheel(not_zip)


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_unpack_release(tmp_path):
    whl = _wheel(tmp_path / "w", "1.3.0").read_bytes()
    tb = _tarball(tmp_path / "zstack-1.3.0.tar.gz", {"zstack-1.3.0/wheels/zstack-1.3.0-py3-none-any.whl": whl,
                                                     "zstack-1.3.0/VERSION": b"1.3.0\n"})
    got = release.unpack_release(tb, tmp_path / "releases")
    assert got == tmp_path / "releases/1.3.0/wheels/zstack-1.3.0-py3-none-any.whl" and got.is_file()
    assert release.unpack_release(tb, tmp_path / "releases") == got  # again: replaced, same place
    two = _tarball(tmp_path / "two.tar.gz", {"zstack-1/VERSION": b"1", "other/VERSION": b"2"})
    with pytest.raises(ReleaseError, match="one zstack-<version>/ directory"):
        release.unpack_release(two, tmp_path / "r2")
    evil = _tarball(tmp_path / "evil.tar.gz", {"zstack-1/../../escape": b"x"})
    with pytest.raises(ReleaseError):
        release.unpack_release(evil, tmp_path / "r3")
    assert not (tmp_path / "escape").exists()
    no_wheel = _tarball(tmp_path / "nw.tar.gz", {"zstack-9/VERSION": b"9"})
    with pytest.raises(ReleaseError, match="exactly one wheels/zstack"):
        release.unpack_release(no_wheel, tmp_path / "r4")


def test_repack_installed_rebuilds_the_wheel_from_record(tmp_path):
    site = tmp_path / "venv/lib/python3.11/site-packages"
    info = site / "zstack-0.9.0.dist-info"
    (site / "mn").mkdir(parents=True)
    info.mkdir()
    (site / "mn/__init__.py").write_text('__version__ = "0.9.0"\n')
    (site / "mn/__pycache__").mkdir()
    (site / "mn/__pycache__/x.pyc").write_bytes(b"\0")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zstack\nVersion: 0.9.0\nRequires-Dist: flask\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("mn/__init__.py,sha256=x,20\nmn/__pycache__/x.pyc,,\n"
                                 "zstack-0.9.0.dist-info/METADATA,,\nzstack-0.9.0.dist-info/INSTALLER,,\n"
                                 "zstack-0.9.0.dist-info/RECORD,,\n../../../bin/zstack-ctl,sha256=y,10\n")
    venv = tmp_path / "venv"
    assert release.installed_version(venv) == "0.9.0" and release.installed_requires(venv) == ("flask",)
    whl = release.repack_installed(venv, tmp_path / "out")
    assert whl.name == "zstack-0.9.0-py3-none-any.whl"
    with zipfile.ZipFile(whl) as zf:
        names = set(zf.namelist())
        assert names == {"mn/__init__.py", "zstack-0.9.0.dist-info/METADATA", "zstack-0.9.0.dist-info/RECORD"}
        record = zf.read("zstack-0.9.0.dist-info/RECORD").decode()
        data = zf.read("mn/__init__.py")
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert f"mn/__init__.py,sha256={digest},{len(data)}" in record
    assert release.read_wheel(whl).version == "0.9.0"


def test_install_root_is_recognised_by_its_releases_directory(tmp_path):
    (tmp_path / "venv").mkdir()
    assert release.install_root(tmp_path / "venv") is None
    (tmp_path / "releases").mkdir()
    assert release.install_root(tmp_path / "venv") == tmp_path
    assert release.install_root(tmp_path / "other") is None


# ---- argument handling --------------------------------------------------------------------------


def test_upgrade_arguments(tmp_path, capsys):
    home = ["--home", str(tmp_path / "home")]
    with pytest.raises(SystemExit) as exc:
        ctl.main([*home, "upgrade"])
    assert exc.value.code == 2
    assert ctl.main([*home, "upgrade", str(tmp_path / "nope.whl")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("x")
    assert ctl.main([*home, "upgrade", str(tmp_path / "notes.txt")]) == 2
    assert "expected a release tarball" in capsys.readouterr().err
    whl = _wheel(tmp_path / "w")
    assert ctl.main([*home, "upgrade", "--venv", str(tmp_path), str(whl)]) == 2
    assert "is not a virtualenv" in capsys.readouterr().err
    assert ctl.main([*home, "restore_db", str(tmp_path / "nope.sqlite")]) == 2
    assert ctl.main([*home, "rollback", "--venv", sys.prefix]) == 1
    assert "no upgrade to roll back" in capsys.readouterr().err


def test_upgrade_refuses_an_uninstalled_database_and_an_unknown_revision(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    whl = _wheel(tmp_path / "w", "7.0", {"0001_a.py": _migration("0001", None)})
    args = ["--home", str(home), "upgrade", "--venv", sys.prefix, "--dry-run", str(whl)]
    assert ctl.main(args) == 1
    assert "has no schema yet" in capsys.readouterr().err
    migrate(f"sqlite:///{home / 'zstack.db'}")
    assert ctl.main(args) == 1
    assert f"at revision {head_revision()}, which this release does not know" in capsys.readouterr().err


def test_upgrade_dry_run_prints_the_plan_and_changes_nothing(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    url = f"sqlite:///{home / 'zstack.db'}"
    migrate(url, "0001")
    from mn.db.migrate import MIGRATIONS

    files = {p.name: p.read_text() for p in (MIGRATIONS / "versions").glob("*.py")}
    whl = _wheel(tmp_path / "w", "8.0", files)
    tb = _tarball(tmp_path / "zstack-8.0.tar.gz", {"zstack-8.0/wheels/" + whl.name: whl.read_bytes()})
    assert ctl.main(["--home", str(home), "upgrade", "--venv", sys.prefix, "--dry-run", str(tb)]) == 0
    out = capsys.readouterr().out
    assert f"database revision 0001 -> {head_revision()}" in out and "  0002  query indexes" in out
    assert "requirements changed" in out and "dry run: nothing changed" in out
    assert current_revision(url) == "0001" and not (home / "backups").exists() and not (home / "releases").exists()


# ---- dump, restore, upgrade_db, collect_log on SQLite -------------------------------------------


def _zone_count(url: str) -> int:
    from mn.ops import backup

    return backup.row_counts(url)["zone"]


def _add_zone(url: str, name: str) -> None:
    from sqlalchemy import create_engine, insert

    from mn.models.infra import Zone

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Zone.__table__).values(uuid=name.ljust(32, "0"), name=name, isDefault=False))
    engine.dispose()


def test_dump_and_restore_db(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    url = f"sqlite:///{home / 'zstack.db'}"
    migrate(url)
    _add_zone(url, "z1")
    dump = tmp_path / "d.sqlite"
    assert ctl.main(["--home", str(home), "dump_db", str(dump)]) == 0
    assert str(dump) in capsys.readouterr().out
    _add_zone(url, "z2")
    assert ctl.main(["--home", str(home), "restore_db", str(dump)]) == 0
    out = capsys.readouterr().out
    assert f"revision {head_revision()}" in out and "current database is saved in" in out
    assert _zone_count(url) == 1
    saved = next((home / "backups").iterdir())
    assert upgrade.read_manifest(saved)["rows"]["zone"] == 2  # the state before the restore
    pg = tmp_path / "x.pgdump"
    pg.write_bytes(b"PGDMP\x01\x0e\x00")
    assert ctl.main(["--home", str(home), "restore_db", str(pg)]) == 1
    assert "is a postgresql dump" in capsys.readouterr().err
    assert ctl.main(["--home", str(home), "dump_db"]) == 0
    assert len(list((home / "backups").glob("db-*.sqlite"))) == 1


def test_restore_db_refuses_while_the_mn_runs(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    migrate(f"sqlite:///{home / 'zstack.db'}")
    dump = tmp_path / "d.sqlite"
    assert ctl.main(["--home", str(home), "dump_db", str(dump)]) == 0
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mn.ctl", "run"])
    try:
        write_pid(home / "mn.pid", fake.pid)
        assert ctl.main(["--home", str(home), "restore_db", str(dump)]) == 1
        assert "is running" in capsys.readouterr().err
        assert ctl.main(["--home", str(home), "upgrade_db"]) == 0  # nothing pending: no refusal needed
    finally:
        fake.kill()
        fake.wait()


def test_upgrade_db_dry_run_backup_and_migrate(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    url = f"sqlite:///{home / 'zstack.db'}"
    migrate(url, "0001")
    _add_zone(url, "z1")
    assert ctl.main(["--home", str(home), "upgrade_db", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "revision 0001" in out and "pending 0002" in out and "nothing changed" in out
    assert "pending plugin eip: none -> eip_0002" in out  # the plugins' chains too
    assert current_revision(url) == "0001"
    assert ctl.main(["--home", str(home), "upgrade_db"]) == 0
    out = capsys.readouterr().out
    assert f"database at revision {head_revision()}" in out and "backup:" in out
    saved = next((home / "backups").iterdir())
    manifest = upgrade.read_manifest(saved)
    assert (manifest["kind"], manifest["revision"], manifest["wheel"]) == ("upgrade_db", "0001", None)
    assert _zone_count(url) == 1
    assert ctl.main(["--home", str(home), "upgrade_db"]) == 0
    assert "nothing to migrate" in capsys.readouterr().out


def test_version_shows_the_database_revision(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    assert ctl.main(["--home", str(home), "version"]) == 0
    assert "no database yet" in capsys.readouterr().out
    migrate(f"sqlite:///{home / 'zstack.db'}", "0001")
    assert ctl.main(["--home", str(home), "version"]) == 0
    out = capsys.readouterr().out
    assert "at revision 0001" in out and "run 'zstack-ctl upgrade_db'" in out


def test_collect_log_masks_passwords(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "logs").mkdir(parents=True)
    (home / "logs/management-server.log").write_text("line 1\nline 2\n")
    assert ctl.main(["--home", str(home), "configure", "db_url=postgresql://zs:s3cret@127.0.0.1:1/zstack"]) == 0
    capsys.readouterr()
    assert ctl.main(["--home", str(home), "collect_log", "-o", str(tmp_path / "out")]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.parent == tmp_path / "out" and path.name.endswith(".tar.gz")
    with tarfile.open(path) as tf:
        files = {m.name.split("/", 1)[1]: tf.extractfile(m).read().decode() for m in tf.getmembers() if m.isfile()}
    assert {"status.txt", "settings.json", "zstack.properties", "versions.txt", "migrations.txt",
            "backups.txt", "logs/management-server.log"} <= set(files)
    assert all("s3cret" not in text for text in files.values())
    assert "db_url=postgresql://zs:***@127.0.0.1:1/zstack" in files["zstack.properties"]
    assert "Stopped" in files["status.txt"] and "line 2" in files["logs/management-server.log"]
    assert "not readable" in files["migrations.txt"]  # the database is not there: said, not fatal


def test_dump_and_backup_keep_the_key_file_and_restore_puts_it_back(tmp_path, capsys):
    """The key sealing the stored passwords (mn/secretbox.py) travels with the database: dump_db
    writes it beside the dump, a backup directory holds it, restore_db puts it back (0600)."""
    from mn import secretbox

    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    url = f"sqlite:///{home / 'zstack.db'}"
    migrate(url)
    key = secretbox.key_path(home)
    sealed = secretbox.load(home).seal("host-pw")
    dump = tmp_path / "d.sqlite"
    assert ctl.main(["--home", str(home), "dump_db", str(dump)]) == 0
    assert "d.sqlite.key" in capsys.readouterr().out
    assert (tmp_path / "d.sqlite.key").read_bytes() == key.read_bytes()
    assert (tmp_path / "d.sqlite.key").stat().st_mode & 0o777 == 0o600
    key.unlink()  # a new machine, or a lost home
    secretbox.load(home)  # with another key
    assert ctl.main(["--home", str(home), "restore_db", str(dump)]) == 0
    saved = next((home / "backups").iterdir())  # the state before the restore, its key with it
    assert upgrade.read_manifest(saved)["secretKey"] == "secret.key" and (saved / "secret.key").is_file()
    assert secretbox.load(home, create=False).open(sealed) == "host-pw"
    assert key.stat().st_mode & 0o777 == 0o600
