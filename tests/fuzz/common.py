"""Shared pieces of the fuzz properties: settings, the case tally, nasty inputs, store snapshots.

Every property records each case it tries as accepted or rejected (`TALLY.seen`);
its test then asserts that both happened where both are possible, so a property
cannot pass by never reaching one of its branches. conftest.py prints the totals.
"""

from __future__ import annotations

import hashlib
import math
import os
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from shardwise.errors import InvalidInput, NotFound


def fuzz(max_examples: int) -> settings:
    """Reproducible in CI: derandomized, no example database, no per-example deadline."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                               HealthCheck.large_base_example, HealthCheck.function_scoped_fixture],
    )


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {}

    def seen(self, prop: str, accepted: bool) -> None:
        self.counts.setdefault(prop, Counter())["accepted" if accepted else "rejected"] += 1

    def require(self, prop: str, *, accepted: bool = True, rejected: bool = True) -> None:
        """The property reached the branches it should have (it did not pass vacuously)."""
        c = self.counts.get(prop, Counter())
        if accepted:
            assert c["accepted"] > 0, f"{prop}: no case was accepted ({dict(c)})"
        if rejected:
            assert c["rejected"] > 0, f"{prop}: no case was rejected ({dict(c)})"

    def summary(self) -> str:
        acc = sum(c["accepted"] for c in self.counts.values())
        rej = sum(c["rejected"] for c in self.counts.values())
        head = f"fuzz: {acc + rej} cases tried across {len(self.counts)} properties (accepted {acc}, rejected {rej})"
        lines = [head]
        lines += [f"  {p}: accepted {c['accepted']}, rejected {c['rejected']}" for p, c in sorted(self.counts.items())]
        return "\n".join(lines)


TALLY = Tally()

# What a user may see when their input is refused: an error that names the field, nothing else.
USER_ERRORS = (InvalidInput, NotFound)

# ---------------------------------------------------------------------------
# nasty inputs
# ---------------------------------------------------------------------------

NASTY_STRINGS = [
    "", " ", ".", "..", "...", "../", "../../etc/passwd", "/", "/etc/passwd", "a/b", "a\\b", "C:\\x", "~", "~root",
    "\x00", "a\x00b", "\n", "a\nb", "\r\n", "\t", "\x1b[31mred", "\x7f", "\u0085", "\u2028", "\u202e", "\ufeff",
    "\u200b", "é", "e\u0301", "İ", "ß", "Ω", "日本語", "🦀", "a" * 63, "a" * 64, "x" * 5000, "-", "-rf", "--help",
    "NaN", "nan", "inf", "-inf", "1e309", "-0", "0x1f", "1_000", "null", "None", "true", "yes", "no", "on",
    "!!python/object:os.system", "%s%n", "{{x}}", "${HOME}", "$(id)", "'; DROP TABLE x; --", "CON", "NUL",
    "digits", "Digits", "default", "kube-system",
]
HUGE_NUMBERS = [2**31 - 1, 2**31, 2**63 - 1, 2**63, -2**63 - 1, 10**100, -(10**100), 10**4000]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, 1e-320, 3.4e38, 3.5e38]

nasty_text = st.one_of(st.sampled_from(NASTY_STRINGS), st.text(max_size=40))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5000), st.sampled_from(HUGE_NUMBERS), st.sampled_from(SPECIAL_FLOATS),
    st.floats(), nasty_text,
)
garbage = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=10,
)


def dns_label(s: str) -> bool:
    import re

    return len(s) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", s) is not None


# ---------------------------------------------------------------------------
# the store, byte for byte
# ---------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root: relative path -> sha256 of its bytes ('dir' for folders)."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def printable(msg: str) -> bool:
    """No control character (an escape sequence could rewrite the user's terminal); line breaks aside."""
    return not any(unicodedata.category(c) == "Cc" and c != "\n" for c in msg)


def names_field(msg: str, path: tuple[Any, ...]) -> bool:
    """msg names the field at path: its last two named (non-index) parts, dotted, e.g. 'training.learningRate',
    or the same stretch with the list index between them, e.g. 'relabel.0.id' (the item in a list)."""
    shown = [p if isinstance(p, int) else str(p) if str(p).isprintable() else repr(str(p)) for p in path]
    named = [i for i, p in enumerate(shown) if not isinstance(p, int)]
    if not named:
        return True
    plain = ".".join(str(shown[i]) for i in named[-2:])
    indexed = ".".join(str(p) for p in shown[named[-2] if len(named) > 1 else named[-1]:])
    return plain in msg or indexed in msg
