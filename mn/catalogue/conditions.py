"""Query conditions in ZStack's CLI/REST spelling: `<field><op><value>` → {name, op, value}.

Shared by the REST transport (`q=` arguments), mn.client and zstack-cli, so it depends on
nothing heavier than mn.errors. Operators: = != > >= < <= ?= (in) !?= (not in) ~= (like)
!~= (not like), plus the suffixes ` is null` / ` is not null` and the value `null` with = / !=.
"""

from __future__ import annotations

from typing import Any

from mn.errors import INVALID_ARGUMENT, ApiError

# Longest operators first, so "!=" is not read as "=".
QUERY_OPS = ["!?=", "?=", "!~=", "~=", ">=", "<=", "!=", "=", ">", "<"]
_OP_WORDS = {"?=": "in", "!?=": "not in", "~=": "like", "!~=": "not like"}


def parse_condition(q: str) -> dict[str, Any]:
    """Parse one condition; raises ApiError(SYS.1007, http_status=400) when it has no operator."""
    for word in (" is null", " is not null"):
        if q.endswith(word):
            return {"name": q[: -len(word)].strip(), "op": word.strip(), "value": None}
    # The earliest operator wins; at one position the longest ("!=" before "=").
    hits = [(q.find(o), -len(o), o) for o in QUERY_OPS if q.find(o) > 0]
    if not hits:
        raise ApiError(INVALID_ARGUMENT, f"cannot parse the query condition {q!r}: expected "
                                         f"<field><op><value>", http_status=400)
    pos, _, opw = min(hits)
    name, value = q[:pos], q[pos + len(opw):]
    word = _OP_WORDS.get(opw, opw)
    if value == "null" and word in ("=", "!="):
        return {"name": name, "op": "is null" if word == "=" else "is not null", "value": None}
    return {"name": name, "op": word, "value": value}
