"""mn.secretbox: sealed passwords, the key file, and the SSH login a stored row gives (mn.deploy)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from mn import secretbox
from mn.config import MNConfig
from mn.context import Services
from mn.deploy import ssh_target
from mn.ssh import ssh_options


def test_seal_and_open_round_trip_and_legacy_clear_text_is_recognised(tmp_path: Path) -> None:
    box = secretbox.load(tmp_path)
    sealed = box.seal("s3cret-pw")
    assert sealed is not None and sealed.startswith("zs1:") and "s3cret-pw" not in sealed
    assert box.seal("s3cret-pw") != sealed  # a fresh IV each time
    assert box.open(sealed) == "s3cret-pw"
    assert box.open("legacy-clear") == "legacy-clear"  # a row from before sealing
    assert box.seal(sealed) == sealed and box.seal(None) is None and box.seal("") == ""
    assert len(box.seal("\u00e9" * 255) or "") < 2048  # fits the widened column


def test_a_value_sealed_with_another_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    sealed = secretbox.load(tmp_path / "a").seal("top-secret")
    with pytest.raises(secretbox.SecretError) as e:
        secretbox.load(tmp_path / "b").open(sealed)
    assert "top-secret" not in str(e.value) and str(sealed) not in str(e.value)
    assert "secret.key" in str(e.value)


def test_the_key_file_is_private_made_once_and_shared(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:  # concurrent first starts agree on one key
        boxes = list(pool.map(lambda _: secretbox.load(tmp_path), range(8)))
    key = secretbox.key_path(tmp_path)
    assert key.stat().st_mode & 0o777 == 0o600
    assert list(tmp_path.iterdir()) == [key]  # no temp file left
    sealed = boxes[0].seal("x")
    assert all(b.open(sealed) == "x" for b in boxes)
    with pytest.raises(secretbox.SecretError, match="no key file"):
        secretbox.load(tmp_path / "none", create=False)


def _svc(home: Path) -> Services:
    return Services(config=MNConfig(home=home, db_url="sqlite://"), db=None, agents=None,  # type: ignore[arg-type]
                    gconf=None, mn_uuid="m" * 32, secrets=secretbox.load(home))  # type: ignore[arg-type]


def test_a_stored_row_gives_the_opened_password_or_the_mn_key(tmp_path: Path) -> None:
    svc = _svc(tmp_path)
    row = SimpleNamespace(sshPort=2222, username="root", password=svc.secret_box().seal("pw-4711"))
    t = ssh_target(svc, row, "10.0.0.1")
    assert (t.host, t.port, t.username, t.password) == ("10.0.0.1", 2222, "root", "pw-4711")
    assert "pw-4711" not in repr(t) and "pw-4711" not in str(t)  # a logged target shows no password
    keyless = ssh_target(svc, SimpleNamespace(sshPort=22, username="root", password=None), "10.0.0.1")
    assert keyless.password is None and keyless.key_file == tmp_path / "ssh" / "id_ed25519"
    assert keyless.key_file.exists()
    assert ["-i", str(keyless.key_file)] == ssh_options(keyless.key_file)[-2:]  # ssh logs in with the key
