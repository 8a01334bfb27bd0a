"""Secrets at rest: host and storage passwords sealed with a key kept outside the database.

The key is a Fernet key (AES-128-CBC with HMAC-SHA256, `cryptography`) in `<home>/secret.key`,
mode 0600, made at the MN's first start if missing and shared by its processes (several MNs on
one database need the same file). A sealed value is `zs1:<Fernet token>`; the prefix names the
format's version, so a value without it is a legacy clear-text row (from before sealing), which
open() returns as it is and the plugins' migrations seal at upgrade.

Invariants: seal() never returns clear text; open() of a sealed value made with another key
raises SecretError (naming the key file, never the value); the key file is written whole or not at
all (a temp file linked into place, so concurrent first starts agree on one key).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "secret.key"
PREFIX = "zs1:"


class SecretError(Exception):
    """A sealed value that cannot be opened (another key, or a damaged value)."""


def key_path(home: Path | str) -> Path:
    return Path(home) / KEY_FILE


def is_sealed(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


class SecretBox:
    """seal/open with one key file's key."""

    def __init__(self, key: bytes, path: Path | None = None) -> None:
        self._fernet = Fernet(key)
        self.path = path

    def seal(self, plain: str | None) -> str | None:
        """The sealed form of `plain` (None and "" stay as they are: no secret)."""
        if not plain or is_sealed(plain):
            return plain
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def open(self, stored: str | None) -> str | None:
        """The clear text of a stored value: sealed ones decrypted, legacy clear text as it is."""
        if not is_sealed(stored):
            return stored
        assert stored is not None
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SecretError(f"a stored secret cannot be opened with the key {self.path or '(given)'}: "
                              f"it was sealed with another key (restore the key file that was backed up "
                              f"with this database)") from None


def load(home: Path | str, create: bool = True) -> SecretBox:
    """The box of `<home>/secret.key`, made (0600) first when missing and `create`."""
    path = key_path(home)
    if not path.exists():
        if not create:
            raise SecretError(f"no key file {path}: the stored host and storage passwords cannot be "
                              f"opened without it")
        _create(path)
    return SecretBox(path.read_bytes().strip(), path)


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(Fernet.generate_key() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails if another process made it first: its key wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
