"""Regenerate mn/catalogue/catalog.json from ZStack's API reference (names and shapes only).

Usage: python tools/gen_catalog.py [path/to/zstack-oss-api.json]

The catalogue is the wire specification: API names, message classes, REST paths,
parameters, reply classes, inventories and query expansions. Handlers live in mn/services.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = ROOT.parent / "shared" / "reference" / "zstack-oss-api.json"
PARAM_KEYS = (
    "name", "type", "required", "validValues", "default", "maxLength", "minLength",
    "numberRange", "elementType", "resourceType", "nonempty", "emptyString", "validRegex",
    "sensitive", "enumValues",
)


def trim_api(api: dict) -> dict:
    out = {k: api[k] for k in ("name", "message", "kind", "response") if k in api}
    rest = api.get("rest")
    if rest:
        out["rest"] = {k: rest[k] for k in ("path", "optionalPaths", "method", "isAction", "parameterName")}
    out["params"] = [{k: p[k] for k in PARAM_KEYS if k in p} for p in api.get("params", [])]
    for k in ("inventory", "queryable", "noSession", "tagResourceType"):
        if k in api:
            out[k] = api[k]
    action = api.get("action")
    if action:  # ZStack's @Action: the RBAC category (and "read"); an API without one is admin-only
        out["action"] = {k: action[k] for k in ("category", "names", "adminOnly") if k in action}
    if "expanded" in api:
        out["expanded"] = [
            {k: e[k] for k in ("field", "inventory", "foreignKey", "expandedInventoryKey") if k in e}
            for e in api["expanded"]
        ]
    return out


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SRC
    data = json.loads(src.read_text())
    catalog = {
        "source": data.get("source"),
        "apis": [trim_api(a) for a in data["apis"]],
        "responses": {
            n: {"class": r["class"], "restResponse": r.get("restResponse", {}),
                "fields": [f["name"] for f in r.get("fields", [])]}
            for n, r in data["responses"].items()
        },
        "inventories": {
            n: {"class": i["class"], "fields": [{"name": f["name"], "type": f["type"]} for f in i["fields"]],
                "expanded": [
                    {k: e[k] for k in ("field", "inventory", "foreignKey", "expandedInventoryKey") if k in e}
                    for e in i.get("expanded", [])
                ]}
            for n, i in data["inventories"].items()
        },
    }
    out = ROOT / "mn" / "catalogue" / "catalog.json"
    out.write_text(json.dumps(catalog, separators=(",", ":"), sort_keys=True))
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(catalog['apis'])} APIs)")


if __name__ == "__main__":
    main()
