"""Prints how many fuzz cases ran, and how many of them were accepted and rejected; the seeded store."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardwise.local.registry import Registry
from shardwise.store.local import LocalStore
from tests.fuzz.common import TALLY
from tests.helpers import dataset, model


@pytest.fixture(scope="session")
def seeded_store(tmp_path_factory) -> Path:
    """A store that already holds Dataset digits and ShardedModel m (3 x 3), so that names resolve and
    immutable fields can clash. Tests copy it before they write."""
    root = tmp_path_factory.mktemp("seeded-store")
    reg = Registry(LocalStore(root), "default")
    reg.apply(dataset("digits"))
    reg.apply(model("m", shards=3, slices=3))
    return root


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if TALLY.counts:
        for line in TALLY.summary().splitlines():
            terminalreporter.write_line(line)
