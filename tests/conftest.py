# Imported up front: CPython 3.11 can fail an import that compiles code while another
# thread (the kopf runner of the operator tests) is still shutting down.
import hypothesis.internal.reflection  # noqa: F401

pytest_plugins = ["tests.fixtures_s3"]
