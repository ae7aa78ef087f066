"""A worker's timestamps on the parent's timeline: the clock mapping the ingest applies.

A worker on a clock of its own has a clock file (``<stem>.clock.csv``, columns
:data:`~orchestrator.results.logs.CLOCK_COLUMNS`), written by the parent: the measured offset
of the worker's clock at the start of the pass and at its end. :func:`clock_map` turns them into
a :class:`ClockMap`, the offset as a linear function of the worker's clock (a clock that drifts
between the two measurements is followed), and :meth:`ClockMap.sql` into the SQL expression the
ingest applies to every timestamp column. A worker without a clock file shares the parent's
clock: the identity map.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.results.logs import CLOCK_COLUMNS


@dataclass(frozen=True, slots=True)
class Measurement:
    """One line of a clock file."""

    stage: str
    worker_ns: int
    offset_ns: int
    uncertainty_ns: int
    round_trip_ns: int
    round_trips: int
    node: str
    host: str


@dataclass(frozen=True, slots=True)
class ClockMap:
    """parent time = t + ``offset_ns`` + (t - ``at_ns``) * ``slope``, for a worker time t."""

    offset_ns: int = 0
    at_ns: int = 0
    slope: float = 0.0

    @property
    def identity(self) -> bool:
        return self.offset_ns == 0 and self.slope == 0.0

    def __call__(self, t: int) -> int:
        return t + self.offset_ns + round((t - self.at_ns) * self.slope)

    def sql(self, expr: str) -> str:
        """``expr`` (a BIGINT worker timestamp) mapped, as SQL; NULL stays NULL."""
        if self.identity:
            return expr
        drift = (f" + CAST(round(({expr} - {self.at_ns}) * {self.slope!r}) AS BIGINT)"
                 if self.slope else "")
        return f"({expr} + {self.offset_ns}{drift})"


def read_clock(path: Path) -> list[Measurement]:
    """The measurements of a clock file; none when there is no file (a shared clock). A line
    cut short (a full disk) is skipped."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    found = []
    for row in csv.reader(text.splitlines()):
        if len(row) != len(CLOCK_COLUMNS):
            continue
        try:
            found.append(Measurement(row[0], int(row[1]), int(row[2]), int(row[3]),
                                     int(row[4]), int(row[5]), row[6], row[7]))
        except ValueError:
            continue
    return found


def clock_map(measurements: Sequence[Measurement]) -> ClockMap:
    """The map through the first measurement and the last one (a constant offset when there
    is one, or both were taken at the same worker time)."""
    if not measurements:
        return ClockMap()
    first, last = measurements[0], measurements[-1]
    span = last.worker_ns - first.worker_ns
    slope = (last.offset_ns - first.offset_ns) / span if span > 0 else 0.0
    return ClockMap(first.offset_ns, first.worker_ns, slope)
