"""Pure parts of the SFTP backup storage agent (zstack_plugins.sftp.agent): URL kinds, the layout, copying with md5 and a capacity limit,
and deleting only what lies in the images directory."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kvmagent import protocol as p
from kvmagent.registry import AgentError
from kvmagent.storage import BACKUP, remember
from kvmagent.urlcheck import UrlPolicy
from zstack_plugins.sftp.agent import _copy, delete, existing_image, image_path, local_source

ALLOW = UrlPolicy(file_dirs=("/srv",))


def test_local_sources() -> None:
    assert local_source("/srv/images/a.qcow2", ALLOW) == Path("/srv/images/a.qcow2")
    assert local_source("file:///srv/images/a%20b.qcow2", ALLOW) == Path("/srv/images/a b.qcow2")
    assert local_source("file://localhost/srv/a.qcow2", ALLOW) == Path("/srv/a.qcow2")
    assert local_source("http://example.org/a.qcow2", ALLOW) is None
    assert local_source("https://example.org/a.qcow2?x=1", ALLOW) is None


@pytest.mark.parametrize("url", ["ftp://example.org/a.qcow2", "relative/a.qcow2", "s3://bucket/a",
                                 "gopher://x/a", "data:,abc"])
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(AgentError, match="http://, https://, or file://"):
        local_source(url, ALLOW)


def test_file_url_of_another_host() -> None:
    with pytest.raises(AgentError, match="names another host"):
        local_source("file://nas/a.qcow2", ALLOW)


def test_local_files_only_below_an_allowed_directory(tmp_path: Path) -> None:
    """By default no local file is read; with a directory allowed, only what really lies below it
    (a symlink out of it, or `..`, is refused)."""
    allowed = tmp_path / "images"
    allowed.mkdir()
    (allowed / "ok.qcow2").write_bytes(b"x")
    (allowed / "shadow.qcow2").symlink_to("/etc/shadow")
    with pytest.raises(AgentError, match="no directory is allowed"):
        local_source("file:///etc/shadow", UrlPolicy())
    policy = UrlPolicy(file_dirs=(str(allowed),))
    assert local_source(str(allowed / "ok.qcow2"), policy) == allowed / "ok.qcow2"
    for bad in ("/etc/shadow", f"file://{allowed}/shadow.qcow2", f"{allowed}/../../etc/shadow"):
        with pytest.raises(AgentError, match="not below an allowed directory|'..' components"):
            local_source(bad, policy)


def test_layout_and_lookup(tmp_path: Path) -> None:
    assert image_path("/bs", "i1", "qcow2") == Path("/bs/images/i1.qcow2")
    assert existing_image(tmp_path, "i1") is None
    (tmp_path / "images").mkdir()
    image_path(tmp_path, "i1", "iso").write_bytes(b"x")
    image_path(tmp_path, "i2", "download").write_bytes(b"x")  # a staging name is not an image
    assert existing_image(tmp_path, "i1") == image_path(tmp_path, "i1", "iso")
    assert existing_image(tmp_path, "i2") is None


def test_copy_computes_md5_and_stops_at_the_limit(tmp_path: Path) -> None:
    data = b"0123456789" * 300_000
    dest = tmp_path / "out"
    assert _copy(io.BytesIO(data), dest, len(data), "img") == hashlib.md5(data).hexdigest()
    assert dest.read_bytes() == data
    with pytest.raises(AgentError, match="insufficient capacity"):
        _copy(io.BytesIO(data), dest, len(data) - 1, "img")


def test_delete_is_idempotent_and_confined(tmp_path: Path) -> None:
    agent: Any = SimpleNamespace(config=SimpleNamespace(state_path=tmp_path / "state"))
    root = tmp_path / "bs"
    (root / "images").mkdir(parents=True)
    remember(agent, BACKUP, "bs1", str(root))
    img = image_path(root, "i1", "qcow2")
    img.write_bytes(b"x")
    keep = tmp_path / "keep.qcow2"
    keep.write_bytes(b"x")
    for _ in range(2):
        assert delete(agent, p.DeleteImageCmd(bsUuid="bs1", installPath=str(img))).success
    assert not img.exists()
    for bad in (keep, root / "images" / ".." / ".." / "keep.qcow2", root / "images"):
        with pytest.raises(AgentError, match="not inside"):
            delete(agent, p.DeleteImageCmd(bsUuid="bs1", installPath=str(bad)))
    assert keep.exists()
