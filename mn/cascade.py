"""Cascade deletion, declared once per parent → child relation.

Each service module registers, for a parent model, how to find its dependents and how to delete
(or detach) one. delete_mode "Enforcing" refuses to delete a parent that still has dependents
and names them; "Permissive" deletes the dependents first, each through its own delete path
(agents included), then the parent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mn.context import ApiContext
from mn.errors import DELETE_RESOURCE_ERROR, ApiError

Finder = Callable[[Session, str], list[str]]          # (session, parent uuid) -> child uuids
Deleter = Callable[[ApiContext, str, str], None]       # (ctx, child uuid, delete mode)


@dataclass(frozen=True)
class Dependent:
    name: str      # e.g. "ClusterVO"
    find: Finder
    delete: Deleter


_DEPENDENTS: dict[type, list[Dependent]] = {}


def dependent(parent: type, name: str, find: Finder, delete: Deleter) -> None:
    _DEPENDENTS.setdefault(parent, []).append(Dependent(name, find, delete))


def dependents(parent: type) -> list[Dependent]:
    return list(_DEPENDENTS.get(parent, []))


def cascade(ctx: ApiContext, parent: type, uuid: str, mode: str) -> None:
    """Delete (Permissive) or refuse on (Enforcing) everything that depends on parent `uuid`."""
    deps = dependents(parent)
    found: list[tuple[Dependent, list[str]]] = []
    with ctx.db.ro() as s:
        for d in deps:
            children = d.find(s, uuid)
            if children:
                found.append((d, children))
    if not found:
        return
    if mode == "Enforcing":
        what = "; ".join(f"{d.name}{children[:5]}{'...' if len(children) > 5 else ''}"
                         for d, children in found)
        pname = (getattr(parent, "__inventory__", None) or parent.__name__).replace("Inventory", "VO")
        raise ApiError(DELETE_RESOURCE_ERROR,
                       f"cannot delete {pname}[uuid:{uuid}] with deleteMode Enforcing: it still has {what}")
    for d, children in found:
        for c in children:
            d.delete(ctx, c, mode)
