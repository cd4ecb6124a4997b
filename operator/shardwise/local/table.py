"""kubectl-like tables from printer columns."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from shardwise.api.common import Resource

_FILTER = re.compile(r'^(\w+)\[\?\(@\.(\w+)=="([^"]*)"\)\]$')  # name[?(@.key=="value")]


def _path(doc: dict[str, Any], path: str) -> Any:
    """A printer column's JSONPath: dotted names, and a list filtered by one field (as kubectl reads them)."""
    cur: Any = doc
    for part in re.split(r'\.(?![^\[]*\])', path.strip(".")):
        if not isinstance(cur, dict):
            return None
        m = _FILTER.match(part)
        if m is None:
            cur = cur.get(part)
            continue
        items = cur.get(m.group(1)) or []
        cur = next((x for x in items if isinstance(x, dict) and str(x.get(m.group(2))) == m.group(3)), None)
    return cur


def age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    t = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    s = int((datetime.now(UTC) - t).total_seconds())
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit}"
    return f"{max(s, 0)}s"


def render_table(cls: type[Resource], items: list[Resource]) -> str:
    headers = ["NAME"] + [c[0].upper() for c in cls.columns()]
    rows = []
    for r in items:
        doc = r.to_doc()
        row = [r.name]
        for _, typ, path, _ in cls.columns():
            v = _path(doc, path)
            if typ == "date":
                row.append(age(v))
            elif v is None:
                row.append("<none>")
            elif typ == "number":
                row.append(f"{v:.4f}")
            else:
                row.append(str(v))
        rows.append(row)
    widths = [max(len(x) for x in col) for col in zip(headers, *rows)]
    return "\n".join("   ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [headers, *rows])
