"""The state every layer of StoreControl shares: the store, its key layout and the Datasets in it."""

from __future__ import annotations

from collections.abc import Callable

from shardwise.api import ShardedModel
from shardwise.datasets import DatasetStore, DatasetView
from shardwise.store.base import Store
from shardwise.store.layout import Layout

Log = Callable[[str], None]
VIEW_CACHE = 4  # dataset revisions kept loaded (a pass needs the current one and the one it purges)


def _uid(m: ShardedModel) -> str:
    return m.metadata.uid or "nouid"


class ControlBase:
    """The store of one namespace, its key layout, its Datasets and a few of their views, loaded."""

    def __init__(self, store: Store, namespace: str, log: Log = lambda m: None):
        self.store, self.namespace, self.log = store, namespace, log
        self.layout = Layout(namespace)
        self.datasets = DatasetStore(store, self.layout)
        self._views: dict[tuple[str, int, int], DatasetView] = {}
