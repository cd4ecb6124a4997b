"""Diagnosis of a model version from its predictions: metrics, label issues, reports. Pure numpy."""
