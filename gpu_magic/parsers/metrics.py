"""Client side of ``metrics.jsonl`` (written by :func:`gpu_magic.remote.report`): events out.

Lines arrive through a byte-offset tail, so the last one may be partial: it waits for the rest.
A malformed complete line is skipped and counted, never fatal. ``at`` is the record's own time
(the GPU host's clock).
"""

from __future__ import annotations

import json
import math

from .events import Event, Metrics, Progress


def parse_metrics_record(line: str, at: float | None = None) -> list[Event]:
    """Events of one complete line; ValueError if it is not a metrics record."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not a metrics record: {line[:80]!r}: {e}") from None
    if not isinstance(record, dict):
        raise ValueError(f"not a metrics record: {line[:80]!r}")
    when = _float(record.get("t"))
    when = when if when is not None else at
    source = str(record.get("source", "report"))
    step, total = _int(record.get("step")), _int(record.get("total"))
    epoch, epochs = _int(record.get("epoch")), _int(record.get("epochs"))
    raw = record.get("values") or {}
    if not isinstance(raw, dict):
        raise ValueError(f"not a metrics record (values is not an object): {line[:80]!r}")
    values = {str(k): v for k, v in ((k, _float(v)) for k, v in raw.items()) if v is not None}
    events: list[Event] = []
    if step is not None or epoch is not None:
        events.append(Progress(step, total, "step", None, epoch, epochs, when, source))
    if values:
        global_step = step
        if step is not None and epoch is not None and total is not None:
            global_step = (epoch - 1) * total + step
        events.append(Metrics(global_step, epoch, values, when, source))
    return events


class MetricsFileParser:
    """Feed text (or lines) of metrics.jsonl as it grows."""

    def __init__(self):
        self._rest = ""
        self.skipped = 0  # complete lines that were not records

    def feed(self, text: str, at: float | None = None) -> list[Event]:
        lines = (self._rest + text).split("\n")
        self._rest = lines.pop()
        return self.feed_lines(lines, at)

    def feed_lines(self, lines, at: float | None = None) -> list[Event]:
        events: list[Event] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                events += parse_metrics_record(line, at)
            except ValueError:
                self.skipped += 1
        return events


def _float(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None
