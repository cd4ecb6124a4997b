"""The reconcile pass, once for both bodies: `NamespaceReconciler` over a body's `Resources` and
`Executor` (ports.py)."""
