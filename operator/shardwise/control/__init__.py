"""Carry out the brain's decisions on the store, for either body.

Both the local body (processes) and the kube body (Jobs, API server) observe
and act on the store the same way; only how they list resources, run jobs and
persist status differs. Nothing here decides: the decisions are in brain/.

One module per concern, each a class on top of the one below it:
base (the store, layout and views) <- datasets (curation, report redaction)
<- models (observe, jobs, publish, purge) <- experiments <- forgets (and the ledger).
A layer calls only the layers below it: forgets purge models and redact reports,
never the other way round.
"""

from __future__ import annotations

from shardwise.brain.versions import JobLiveness
from shardwise.control.base import VIEW_CACHE, Log
from shardwise.control.datasets import CLI_FIELDS, CORRECTION_FIELDS
from shardwise.control.forgets import ForgetControl

__all__ = ["CLI_FIELDS", "CORRECTION_FIELDS", "VIEW_CACHE", "JobLiveness", "Log", "StoreControl"]


class StoreControl(ForgetControl):
    """Everything the bodies do to the store: every layer, in one object."""
