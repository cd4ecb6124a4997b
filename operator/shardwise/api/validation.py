"""Specs checked as a user reads the result: a document to a resource, errors naming the field."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from shardwise.api import KINDS
from shardwise.api.common import API, Resource
from shardwise.errors import InvalidInput


def _printable(text: str) -> str:
    """As written when printable, else quoted with escapes: no control character from a manifest reaches a terminal."""
    return text if text.isprintable() else repr(text)


def describe_validation(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(_printable(str(x)) for x in err["loc"] if not str(x).startswith("function-"))
        parts.append(f"{loc or '(document)'}: {err['msg']}")
    return "; ".join(parts)


def parse_doc(doc: Any, where: str) -> Resource[Any, Any]:
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where}: a manifest must be a mapping, not {type(doc).__name__}")
    if doc.get("apiVersion") != API:
        raise InvalidInput(f"{where}: apiVersion must be {API!r}, not {doc.get('apiVersion')!r}")
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:  # a list or mapping here is unhashable
        raise InvalidInput(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), dict) else "?"
    name = _printable(str(name))
    try:
        return KINDS[kind].model_validate(doc)
    except ValidationError as e:
        raise InvalidInput(f"{where} ({kind} {name}): {describe_validation(e)}") from None
