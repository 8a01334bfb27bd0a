"""Global configuration APIs: UpdateGlobalConfig, ResetGlobalConfig, GetGlobalConfigOptions
(QueryGlobalConfig is derived).

Invariants: only configs declared with mn.globalconfig.define exist; a stored value always parses
with its ConfigDef; a change bumps the config generation in its own transaction
(GlobalConfigStore.bump), so every process of every MN reloads before its next call.
"""

from __future__ import annotations

from sqlalchemy import select

from mn.api.registry import Msg, apis
from mn.context import ApiContext
from mn.errors import invalid
from mn.globalconfig import DEFS, ConfigDef
from mn.inventory import to_inventory
from mn.models import GlobalConfig


def config_def(category: str, name: str) -> ConfigDef:
    """The definition of category/name, or an error listing what the category (or MN) defines."""
    d = DEFS.get((category, name))
    if d is not None:
        return d
    names = sorted(n for c, n in DEFS if c == category)
    if not names:
        cats = sorted({c for c, _ in DEFS})
        raise invalid(f"there is no global config category {category!r}; categories: {', '.join(cats)}")
    raise invalid(f"there is no global config {name!r} in category {category!r}; its configs: {', '.join(names)}")


def _normalise(d: ConfigDef, raw: str) -> str:
    raw = raw.strip()
    d.parse(raw)
    return raw.lower() if d.type is bool else raw


def _check_update(ctx: ApiContext, msg: Msg) -> None:
    d = config_def(msg.category, msg.name)
    if msg.get("value") is None:
        raise invalid(f"UpdateGlobalConfig of {msg.category}.{msg.name} needs a value")
    _normalise(d, msg.value)


@apis.handler("UpdateGlobalConfig", check=_check_update,
              sync_key=lambda msg: f"global-config-{msg.get('category')}.{msg.get('name')}")
def update_global_config(ctx: ApiContext, msg: Msg) -> dict:
    d = config_def(msg.category, msg.name)
    value = _normalise(d, msg.value)
    with ctx.db.tx() as s:
        row = s.scalars(select(GlobalConfig).where(GlobalConfig.category == d.category,
                                                   GlobalConfig.name == d.name)).first()
        if row is None:
            row = GlobalConfig(category=d.category, name=d.name, description=d.description,
                               defaultValue=d.default, value=value)
            s.add(row)
        else:
            row.value = value
        ctx.gconf.bump(s)
        s.flush()
        inv = to_inventory(s, row)
    ctx.gconf.sync()
    return {"inventory": inv}


@apis.handler("ResetGlobalConfig", sync_key=lambda msg: "global-config-reset")
def reset_global_config(ctx: ApiContext, msg: Msg) -> dict:
    """Every defined config back to its default value."""
    with ctx.db.tx() as s:
        for row in s.scalars(select(GlobalConfig)):
            d = DEFS.get((row.category, row.name))
            if d is not None:
                row.value = d.default
        ctx.gconf.bump(s)
    ctx.gconf.sync()
    return {}


def _bounds(d: ConfigDef) -> dict[str, int | None]:
    """Numeric bounds as ZStack reports them; a positive-only config is greater than 0."""
    out: dict[str, int | None] = {"numberGreaterThan": None, "numberLessThan": None,
                                  "numberGreaterThanOrEqual": None, "numberLessThanOrEqual": None}
    if d.type in (int, float) and d.check is not None:
        try:
            if not d.check(d.type(0)) and d.check(d.type(1)) and d.check(d.type(10**9)):
                out["numberGreaterThan"] = 0
        except (TypeError, ValueError):
            pass
    return out


@apis.handler("GetGlobalConfigOptions")
def get_global_config_options(ctx: ApiContext, msg: Msg) -> dict:
    d = config_def(msg.category, msg.name)
    valid = list(d.valid_values) if d.valid_values else (["true", "false"] if d.type is bool else [])
    return {"options": {"validValue": valid, **_bounds(d)}}
