"""Loaded by the operator tests only: point kopf at the kmock server (stands in for a kubeconfig)."""

import os

import kopf


@kopf.on.login()
def login(**_):
    return kopf.ConnectionInfo(server=os.environ["SHARDWISE_KUBE_HOST"], insecure=True)
