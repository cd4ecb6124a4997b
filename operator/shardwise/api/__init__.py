"""The API: pydantic models of every resource, the single source of truth."""

from shardwise.api.correction import Correction
from shardwise.api.dataset import Dataset
from shardwise.api.experiment import Experiment
from shardwise.api.forget import ForgetRequest
from shardwise.api.model import ShardedModel

KINDS = {cls.KIND: cls for cls in (Dataset, ShardedModel, ForgetRequest, Experiment, Correction)}

__all__ = ["Dataset", "ShardedModel", "ForgetRequest", "Experiment", "Correction", "KINDS"]
