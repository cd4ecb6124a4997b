"""kubectl-like tables from printer columns."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from shardwise.api.common import Resource


def _path(doc: dict[str, Any], path: str) -> Any:
    cur: Any = doc
    for part in path.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    t = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    s = int((datetime.now(timezone.utc) - t).total_seconds())
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit}"
    return f"{max(s, 0)}s"


def render_table(cls: type[Resource], items: list[Resource]) -> str:
    headers = ["NAME"] + [c[0].upper() for c in cls.PRINTER_COLUMNS]
    rows = []
    for r in items:
        doc = r.to_doc()
        row = [r.name]
        for _, typ, path, _ in cls.PRINTER_COLUMNS:
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
