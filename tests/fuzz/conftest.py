"""Prints how many fuzz cases ran, and how many of them were accepted and rejected."""

from __future__ import annotations

from tests.fuzz.common import TALLY


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if TALLY.counts:
        for line in TALLY.summary().splitlines():
            terminalreporter.write_line(line)
