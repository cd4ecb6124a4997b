"""Shardwise trainer: the data plane. The only package that imports torch."""
