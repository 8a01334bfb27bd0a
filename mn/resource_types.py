"""The kinds of hosts and storages this MN serves, as plugins register them: hypervisor types,
primary-storage types and backup-storage types (GetHypervisorTypes and its siblings list them).

A backup-storage type says how a host fetches an image from a storage of that type: the fields of
CreateVolumeFromImageCmd that name where (`fetch_fields`: read inside a database session, no secret,
since flow data holding them is journaled) and the credential for that one transfer, added only
while the command is sent (`fetch_credentials`: a context manager, which revokes it on exit,
whatever happened), so the VM flows never branch on the type.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

FetchFields = Callable[[Session, str], dict[str, Any]]          # (session, backup storage uuid) -> fields
# (ApiContext, fields) -> a context manager of the fields plus the transfer's credential
FetchCredentials = Callable[[Any, dict[str, Any]], AbstractContextManager[dict[str, Any]]]


@dataclass(frozen=True)
class HypervisorType:
    name: str  # the hosts' and clusters' hypervisorType, e.g. "KVM"


HostFilters = Callable[[Any, Any], list[Any]]  # (storage uuid, VM uuid or None) -> SQL terms on Host


@dataclass(frozen=True)
class PrimaryStorageType:
    name: str  # PrimaryStorage.type, e.g. "LocalStorage"
    # Host allocator filters for volumes already on a storage (both arguments may be bind
    # parameters); each term must hold for storages of other types (guard it on the type).
    host_filters: HostFilters | None = None


@dataclass(frozen=True)
class BackupStorageType:
    name: str  # BackupStorage.type, e.g. "SftpBackupStorage"
    fetch_fields: FetchFields | None = None
    fetch_credentials: FetchCredentials | None = None


T = TypeVar("T", HypervisorType, PrimaryStorageType, BackupStorageType)


class TypeRegistry(Generic[T]):
    """Types by name, in registration order; registering one name twice is an error."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._types: dict[str, T] = {}
        self.version = 0  # bumped by every registration (statements built from the types follow it)

    def register(self, t: T) -> T:
        old = self._types.get(t.name)
        if old is not None and old != t:
            raise ValueError(f"{self.what} {t.name} is registered twice")
        if old is None:
            self._types[t.name] = t
            self.version += 1
        return self._types[t.name]

    def get(self, name: str | None) -> T | None:
        return self._types.get(name) if name is not None else None

    def names(self) -> list[str]:
        return list(self._types)

    def types(self) -> list[T]:
        return list(self._types.values())


HYPERVISORS: TypeRegistry[HypervisorType] = TypeRegistry("hypervisor type")
PRIMARY_STORAGES: TypeRegistry[PrimaryStorageType] = TypeRegistry("primary storage type")
BACKUP_STORAGES: TypeRegistry[BackupStorageType] = TypeRegistry("backup storage type")


def image_fetch_fields(s: Session, bs_type: str, bs_uuid: str) -> dict[str, Any]:
    """The CreateVolumeFromImageCmd fields telling a host how to fetch from this storage (none
    when its type needs none: the simulator's)."""
    t = BACKUP_STORAGES.get(bs_type)
    return t.fetch_fields(s, bs_uuid) if t is not None and t.fetch_fields is not None else {}


def fetch_credentials(ctx: Any, fields: dict[str, Any]) -> AbstractContextManager[dict[str, Any]]:
    """`with fetch_credentials(ctx, fields) as sent:` the fields plus the credential the storage's
    type issues for this transfer (e.g. a one-time SSH key), revoked when the block ends."""
    t = BACKUP_STORAGES.get(fields.get("backupStorageType"))
    if t is None or t.fetch_credentials is None:
        return nullcontext(fields)
    return t.fetch_credentials(ctx, fields)
