"""Shardwise: SISA training that can forget (control plane).

This package never imports torch; the data plane lives in `shardwise_trainer`.
"""

API_GROUP = "shardwise.io"
API_VERSION = "v1alpha1"
__version__ = "0.1.0"
