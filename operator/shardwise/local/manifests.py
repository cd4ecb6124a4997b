"""Read resource manifests (the same YAML a cluster user applies) with clear errors."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import yaml

from shardwise.api.common import Resource
from shardwise.api.validation import describe_validation, parse_doc
from shardwise.errors import InvalidInput, reading

__all__ = ["describe_validation", "load_manifests", "parse_doc"]


def _controls_escaped(text: str) -> str:
    """Line breaks kept, every other control character escaped (a YAML error quotes the offending line)."""
    return "".join(c if c == "\n" or c.isprintable() or not unicodedata.category(c).startswith("C")
                   else repr(c)[1:-1] for c in text)


def load_manifests(paths: list[str | Path]) -> list[Resource]:
    """Every document of every file (folders: their *.yaml/*.yml, sorted). All or nothing.

    A file given by name must hold a resource, and so must a folder's files together (an empty
    file among others in a folder is fine): applying nothing would succeed and say nothing.
    """
    given: list[tuple[Path, list[Path]]] = []  # each -f and its files
    for p in map(Path, paths):
        if p.is_dir():
            given.append((p, sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml"))))
        elif p.exists():
            given.append((p, [p]))
        else:
            raise InvalidInput(f"-f {p}: no such file or folder")
    if not any(files for _, files in given):
        raise InvalidInput(f"-f {', '.join(map(str, paths))}: no .yaml or .yml files found")
    out: list[Resource] = []
    seen: dict[tuple[str, str, str], str] = {}
    for p, files in given:
        found = len(out)
        for f in files:
            text, docs = _documents(f)
            for i, d in enumerate(docs, 1):
                res = parse_doc(d, f"{f} document {i}")
                # one object twice would be applied twice: the second could clash with the first after it is written
                ident = (res.kind, res.metadata.namespace, res.name)
                if ident in seen:
                    raise InvalidInput(f"{f} document {i}: {res.kind} {res.name} appears twice "
                                       f"(first in {seen[ident]})")
                seen[ident] = f"{f} document {i}"
                out.append(res)
        if len(out) == found and files:  # applying it would do nothing, and say nothing
            if p.is_dir():
                raise InvalidInput(f"-f {p}: no resources in its .yaml or .yml files (only empty files or comments)")
            why = "it is empty" if not text.strip() else "only comments, '---' or empty documents"
            raise InvalidInput(f"{p}: no resources in the file ({why})")
    # Datasets first, then models, then the rest: the order a user means.
    order = {"Dataset": 0, "ShardedModel": 1, "Correction": 2, "ForgetRequest": 3, "Experiment": 4}
    return sorted(out, key=lambda r: order[r.kind])


def _documents(f: Path) -> tuple[str, list[Any]]:
    """A file's text and its non-empty YAML documents."""
    with reading(str(f)):
        text = f.read_text(encoding="utf-8")
    try:
        return text, [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise InvalidInput(f"{f}: not valid YAML: {_controls_escaped(str(e))}") from None
    except (ValueError, RecursionError) as e:  # a constructor's complaint, e.g. the date 2001-02-30
        raise InvalidInput(f"{f}: not valid YAML: {type(e).__name__}: {_controls_escaped(str(e))}") from None
