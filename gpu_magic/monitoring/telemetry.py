"""A job's parsed telemetry: metric series, latest progress and ETA, from its log and metrics.jsonl.

Not thread-safe on its own: ``JobFeed`` calls it under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from ..parsers import LogParser, Metrics, MetricsFileParser, Progress, is_secondary_axis
from .eta import EtaEstimator

Point = tuple[str, float, float]  # (series name, x, y)


@dataclass(frozen=True)
class Record:
    """One metrics event as it came: where (x: the chart's step axis; the epoch when printed)
    and its values. ``job.metrics()`` makes a row of each, so two evaluations at one step stay
    two rows."""

    x: float
    epoch: float | None
    values: dict[str, float]
    whole: bool = False  # a complete log entry (a Trainer dict): a row of its own


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
    hint: str | None = None  # why the total is unknown and what gives it

    @property
    def known(self) -> bool:
        """Whether the job has shown any progress yet (``job.progress()`` before it: empty)."""
        return self.step is not None or self.epoch is not None or self.fraction is not None


NO_PROGRESS = ProgressView(None, None, None, None, None, None, None, None, "step")


CALLBACKS = {
    "lightning": "lightning_callback() to the Trainer's callbacks",
    "hf": "hf_callback() to the Trainer's callbacks",
    "keras": "keras_callback() to fit()'s callbacks",
}
"""``gpu_magic.remote.callbacks``, per library the log shows."""


class Telemetry:
    """Progress comes from one bar, the job's *main* one: explicit ``report()`` progress when
    there is any, else the bar drawn most often (a bar is redrawn as long as it runs, so that
    is the training loop, not the tokenizer before it or ``trainer.evaluate()`` after it,
    also when a whole log is read at once); ties go to the latest."""

    def __init__(self):
        self._log_parser = LogParser()
        self._metrics_parser = MetricsFileParser()
        self._eta = EtaEstimator()
        self._bars: dict[tuple, _Bar] = {}
        self._main: tuple | None = None
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.records: list[Record] = []

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
            if isinstance(event, Progress) and not event.inner:
                if self._count(event) == self._main:
                    self._eta.observe(event)
            elif isinstance(event, Metrics):
                points.extend(self._add(event))
        return points

    def _count(self, event: Progress) -> tuple:
        """Count the frame for its bar and choose the main bar; returns the frame's bar."""
        key = _bar_of(event)
        bar = self._bars.setdefault(key, _Bar(event))
        bar.see(event)
        main = self._bars.get(self._main) if self._main is not None else None
        reported = self._main is not None and self._main[0] == "report"
        if main is None or key[0] == "report" or (not reported and bar.frames >= main.frames):
            self._main = key
        return key

    def _add(self, event: Metrics) -> list[Point]:
        points = []
        x = None
        for name, value in event.values.items():
            series = self.series.setdefault(name, [])
            x = _x_of(event, len(series))
            series.append((x, value))
            points.append((name, x, value))
        if x is not None:
            self.records.append(Record(x, event.epoch, dict(event.values), event.source == "hf"))
        return points

    def progress(self, now: float) -> ProgressView:
        """The main bar as the progress bar shows it; before any, ``NO_PROGRESS`` (with a hint
        when the log already shows a library whose bar prints nothing here)."""
        main = self._bars.get(self._main) if self._main is not None else None
        if main is None:
            return replace(NO_PROGRESS, hint=self.hint() if self._log_parser.library else None)
        latest = main.position
        estimate = self._eta.estimate(now)
        position = latest.run_position
        done, total = position if position else (latest.step, latest.total)
        if not total:  # the estimator knows one run of a restarting bar at most: no fraction
            estimate = replace(estimate, fraction=None, remaining_s=None, finish_at=None)
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
            hint=None if total else self.hint(),
        )

    def hint(self) -> str | None:
        """What to add when the log cannot tell how far the job is (None when it can)."""
        library = self._log_parser.library
        if self._main is not None and self._main[0] == "report":
            return None
        what = CALLBACKS.get(library or "")
        if what is None:
            what = "gpu_magic.remote.report(step=..., total=...) to the loop"
        else:
            what = f"gpu_magic.remote.callbacks.{what}"
        return f"the log does not say how many steps there are in all: add {what}"

    @staticmethod
    def secondary_axis(name: str) -> bool:
        return is_secondary_axis(name)


class _Bar:
    """One bar's frames: how many, the latest, and how often its counter started over."""

    def __init__(self, first: Progress):
        self.frames, self.latest, self.runs = 0, first, 1

    def see(self, event: Progress) -> None:
        last = self.latest
        if self.frames and event.epoch is None and (event.step or 0) < (last.step or 0):
            self.runs += 1  # a tqdm loop per epoch with no epoch in its title
        self.frames, self.latest = self.frames + 1, event

    @property
    def position(self) -> Progress:
        """The latest frame; after restarts, numbered as epochs of unknown count (the steps
        add up; the total is unknown, and the panel says so)."""
        if self.runs == 1 or self.latest.epoch is not None:
            return self.latest
        return replace(self.latest, epoch=self.runs, epochs=None)


def _bar_of(event: Progress) -> tuple:
    """Frames of one bar share this: a new epoch's bar of the same loop is the same bar."""
    if event.source == "report":
        return ("report",)
    return (event.source, event.label, event.unit, event.total, event.step is None)


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
