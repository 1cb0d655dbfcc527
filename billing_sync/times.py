"""Moments written for people: one format, in UTC, whatever the server's zone.

A moment within the hours a run lasts is written as its time of day ("14:32:05 UTC"); one that
may fall on another day carries its date before it ("2026-12-02 14:32:05 UTC").
"""

from __future__ import annotations

from datetime import UTC, datetime

TIME_OF_DAY = "%H:%M:%S"
DATE = "%Y-%m-%d"


def in_utc(moment: datetime, *, with_date: bool = False) -> str:
    """`moment` in UTC, to the second; with its date first when `with_date`."""
    shape = f"{DATE} {TIME_OF_DAY}" if with_date else TIME_OF_DAY
    return f"{moment.astimezone(UTC).strftime(shape)} UTC"
