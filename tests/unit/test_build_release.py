"""tools/build_release.py: the published install.sh and the reproducible tarball (no wheel build here:
system_tests/test_install.py builds and installs a whole release)."""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("build_release", REPO / "tools" / "build_release.py")
assert _spec and _spec.loader
build_release = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_release)


def test_the_published_install_sh_carries_version_sha_and_url() -> None:
    script = (REPO / "install.sh").read_text()
    out = build_release.publish_script(script, "1.2.3", "ab" * 32, "http://h:1/r")
    assert 'RELEASE_VERSION="1.2.3"\n' in out
    assert f'RELEASE_SHA256="{"ab" * 32}"\n' in out
    assert 'RELEASE_BASE_URL="http://h:1/r"\n' in out
    # Only those three lines differ from the checkout's install.sh.
    changed = [a for a, b in zip(script.splitlines(), out.splitlines(), strict=True) if a != b]
    assert changed == ['RELEASE_VERSION=""', 'RELEASE_SHA256=""', 'RELEASE_BASE_URL=""']


def test_a_script_without_the_release_lines_is_refused() -> None:
    with pytest.raises(SystemExit, match='RELEASE_VERSION=""'):
        build_release.publish_script("#!/bin/bash\necho hi\n", "1", "x", "")


def test_the_version_is_the_packages(tmp_path: Path) -> None:
    (tmp_path / "mn").mkdir()
    (tmp_path / "mn" / "__init__.py").write_text('"""x"""\n\n__version__ = "9.8.7"\n')
    assert build_release.version(tmp_path) == "9.8.7"


def test_the_tarball_is_reproducible_and_has_one_top_directory(tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    (staged / "installer" / "roles").mkdir(parents=True)
    (staged / "install.sh").write_text("#!/bin/bash\n")
    (staged / "installer" / "site.yml").write_text("---\n")
    (staged / "VERSION").write_text("9.8.7\n")
    first = build_release.tarball(staged, tmp_path / "zstack-9.8.7.tar.gz").read_bytes()
    (staged / "VERSION").touch()  # a newer mtime must not change the bytes
    (tmp_path / "again").mkdir()
    second = build_release.tarball(staged, tmp_path / "again" / "zstack-9.8.7.tar.gz").read_bytes()
    assert first == second
    with tarfile.open(tmp_path / "zstack-9.8.7.tar.gz") as tar:
        names = tar.getnames()
        assert names[0] == "zstack-9.8.7"
        assert all(n == "zstack-9.8.7" or n.startswith("zstack-9.8.7/") for n in names)
        assert {m.mtime for m in tar.getmembers()} == {build_release.EPOCH}
        assert "zstack-9.8.7/installer/site.yml" in names
