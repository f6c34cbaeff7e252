"""A job's parsed telemetry: metric series, latest progress and ETA, from its log and metrics.jsonl.

Not thread-safe on its own: ``JobFeed`` calls it under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..parsers import LogParser, Metrics, MetricsFileParser, Progress, is_secondary_axis
from .eta import EtaEstimator

Point = tuple[str, float, float]  # (series name, x, y)


@dataclass(frozen=True)
class ProgressView:
    """What the progress bar shows."""

    step: float | None
    total: float | None
    fraction: float | None
    rate: float | None  # units per second
    remaining_s: float | None  # None: unknown
    finish_at: datetime | None
    epoch: int | None
    epochs: int | None
    unit: str


class Telemetry:
    def __init__(self):
        self._log_parser = LogParser()
        self._metrics_parser = MetricsFileParser()
        self._eta = EtaEstimator()
        self._latest: Progress | None = None
        self.series: dict[str, list[tuple[float, float]]] = {}

    def feed_log(self, text: str, at: float) -> list[Point]:
        return self._take(self._log_parser.feed(text, at=at))

    def feed_metric_lines(self, lines: list[str], at: float) -> list[Point]:
        return self._take(self._metrics_parser.feed_lines(lines, at=at))

    def restart_log(self) -> None:
        """The log file was replaced (a new attempt): parse it from scratch."""
        self._log_parser = LogParser()

    def _take(self, events) -> list[Point]:
        points: list[Point] = []
        for event in events:
            self._eta.observe(event)
            if isinstance(event, Progress) and not event.inner:
                self._latest = event
            elif isinstance(event, Metrics):
                points.extend(self._add(event))
        return points

    def _add(self, event: Metrics) -> list[Point]:
        points = []
        for name, value in event.values.items():
            series = self.series.setdefault(name, [])
            x = _x_of(event, len(series))
            series.append((x, value))
            points.append((name, x, value))
        return points

    def progress(self, now: float) -> ProgressView | None:
        latest = self._latest
        if latest is None:
            return None
        estimate = self._eta.estimate(now)
        position = latest.run_position
        done, total = position if position else (latest.step, latest.total)
        finish = (
            datetime.fromtimestamp(estimate.finish_at, tz=timezone.utc)
            if estimate.finish_at is not None
            else None
        )
        return ProgressView(
            step=done,
            total=total,
            fraction=estimate.fraction if estimate.fraction is not None else _fraction(done, total),
            rate=estimate.rate if estimate.rate is not None else latest.rate,
            remaining_s=estimate.remaining_s,
            finish_at=finish,
            epoch=latest.epoch,
            epochs=latest.epochs,
            unit=latest.unit,
        )

    @staticmethod
    def secondary_axis(name: str) -> bool:
        return is_secondary_axis(name)


def _x_of(event: Metrics, index: int) -> float:
    if event.step is not None:
        return float(event.step)
    if event.epoch is not None:
        return float(event.epoch)
    return float(index)


def _fraction(done, total) -> float | None:
    if done is None or not total:
        return None
    return min(1.0, max(0.0, done / total))
