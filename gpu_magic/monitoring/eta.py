"""ETA of a running job from its progress events: pure and deterministic (time is passed in).

The pace is the mean time per step over the current *regime*: all intervals between observed
advances since the run settled, each weighted by the steps it covers, so a short hiccup (a
noisy neighbour, a slow batch) moves it by its share of the run and no more. What would mislead
a plain average is handled:

- warm-up: the first ``warmup_intervals`` intervals (compilation, data-loader start) are left out
  as soon as later ones exist;
- pauses (evaluation, checkpointing): an interval more than ``pause_factor`` times slower than
  the pace counts as pause time, not as steps; the pause time seen so far is spread over the
  steps done and assumed to go on at that rate (periodic evaluations), so one pause moves the
  ETA by a bounded amount instead of to "hours";
- a new pace (the end of a long warm-up, a lasting slowdown): ``regime_intervals`` or more
  intervals in a row that are all over twice as slow, or all under half as slow, as the pace,
  and that together last at least ``regime_fraction`` of the run so far, start a new regime
  whose pace is their own;
- stalls: while no step advances, the finish cannot be earlier than now plus the steps left at
  the current pace.

A slow drift of the pace (steps growing longer all run long) is followed only as fast as the
regime's mean moves.

The total is steps, or ``steps_per_epoch * epochs`` when only per-epoch totals are printed, or
epochs when only ``epoch i/n`` lines are seen. With no total the estimate is unknown
(``remaining_s is None``), though a rate may be known.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..parsers.events import Progress


@dataclass(frozen=True)
class Estimate:
    fraction: float | None = None  # of the total, 0..1
    rate: float | None = None  # steps (or epochs) per second at the current pace
    remaining_s: float | None = None
    finish_at: float | None = None  # same clock as the observations

    @property
    def known(self) -> bool:
        return self.remaining_s is not None


UNKNOWN = Estimate()


@dataclass(frozen=True)
class _Point:
    at: float
    pos: float


@dataclass(frozen=True)
class _Run:
    """Consecutive intervals that all disagree with the pace in the same direction."""

    kind: str = ""  # "slow" | "fast"
    count: int = 0
    dt: float = 0.0
    du: float = 0.0
    pause_s: float = 0.0


@dataclass(frozen=True)
class _Rate:
    pace_dt: float = 0.0  # seconds and steps of the current regime's non-pause intervals
    pace_du: float = 0.0
    warm_sec_per_unit: float | None = None
    intervals: int = 0
    run: _Run = _Run()
    pause_s: float = 0.0
    active_s: float = 0.0
    units: float = 0.0  # steps covered by the intervals that count

    @property
    def sec_per_unit(self) -> float | None:
        return self.pace_dt / self.pace_du if self.pace_du else self.warm_sec_per_unit


class EtaEstimator:
    def __init__(
        self,
        *,
        warmup_intervals: int = 1,
        pause_factor: float = 4.0,
        regime_intervals: int = 3,
        regime_fraction: float = 0.1,
    ):
        self.warmup_intervals = warmup_intervals
        self.pause_factor = pause_factor
        self.regime_intervals = regime_intervals
        self.regime_fraction = regime_fraction
        self._key: tuple | None = None
        self.reset()

    def reset(self) -> None:
        self.total: float | None = None
        self._rate = _Rate()
        self._prev: _Point | None = None  # last point whose interval is final
        self._cur: _Point | None = None  # latest point (may still move within its tick)
        self._latest_at: float | None = None

    def observe(self, event) -> bool:
        """Feed a parser event; returns whether it was used. Nested bars are ignored, a new bar
        (another label or unit: a download, then training) starts over, ``epoch i/n`` lines do not
        displace a step counter, and explicit ``report()`` progress wins over parsed output."""
        if not isinstance(event, Progress) or event.inner or event.at is None:
            return False
        kind = "steps" if event.step is not None else "epochs"
        key = (event.source, event.label, event.unit, kind)
        if self._key is not None and key != self._key:
            if self._key[0] == "report" and event.source != "report":
                return False
            if kind == "epochs" and self._key[3] == "steps":
                return False
            self.reset()
        self._key = key
        return self.update(event.at, event.step, event.total, event.epoch, event.epochs)

    def update(self, at: float, step=None, total=None, epoch=None, epochs=None) -> bool:
        position = Progress(step, total, epoch=epoch, epochs=epochs).run_position
        if position is None or (self._latest_at is not None and at < self._latest_at):
            return False
        pos, tot = position
        if self._cur is not None and pos < self._cur.pos:
            self.reset()  # the counter went back: a new run or a new phase
        if tot:
            self.total = float(tot)
        self._latest_at = at
        point = _Point(at, float(pos))
        if self._cur is None:
            self._cur = point
        elif point.pos > self._cur.pos:
            if point.at == self._cur.at:  # same tick: the point moves, its interval is not final
                self._cur = point
            else:
                if self._prev is not None:
                    self._rate = self._apply(self._rate, self._prev, self._cur)
                self._prev, self._cur = self._cur, point
        return True

    def _apply(self, rate: _Rate, a: _Point, b: _Point) -> _Rate:
        dt, du = b.at - a.at, b.pos - a.pos
        x = dt / du
        rate = replace(rate, intervals=rate.intervals + 1)
        if rate.intervals <= self.warmup_intervals:
            return replace(rate, warm_sec_per_unit=x)
        rate = replace(rate, active_s=rate.active_s + dt, units=rate.units + du)
        if not rate.pace_du:
            return replace(rate, pace_dt=dt, pace_du=du)
        pace = rate.pace_dt / rate.pace_du
        pause = dt - pace * du if x > self.pause_factor * pace else 0.0
        run = self._extend(rate.run, x, pace, dt, du, pause)
        if run.count >= self.regime_intervals and run.dt >= self.regime_fraction * rate.active_s:
            return replace(  # a new pace: the run's own, pauses and all
                rate, pace_dt=run.dt, pace_du=run.du, pause_s=rate.pause_s - run.pause_s, run=_Run()
            )
        if pause:
            return replace(rate, pause_s=rate.pause_s + pause, run=run)
        return replace(rate, pace_dt=rate.pace_dt + dt, pace_du=rate.pace_du + du, run=run)

    @staticmethod
    def _extend(run: _Run, x: float, pace: float, dt: float, du: float, pause: float) -> _Run:
        kind = "slow" if x > 2 * pace else "fast" if 2 * x < pace else ""
        if not kind:
            return _Run()
        if run.kind != kind:
            run = _Run(kind)
        return _Run(kind, run.count + 1, run.dt + dt, run.du + du, run.pause_s + pause)

    def estimate(self, now: float | None = None) -> Estimate:
        cur = self._cur
        if cur is None:
            return UNKNOWN
        now = self._latest_at if now is None else now
        rate = self._rate
        if self._prev is not None:
            rate = self._apply(rate, self._prev, cur)
        per_unit = rate.sec_per_unit
        fraction = min(1.0, cur.pos / self.total) if self.total else None
        speed = 1.0 / per_unit if per_unit else None
        if self.total is None or per_unit is None:
            return Estimate(fraction, speed, None, None)
        left = max(0.0, self.total - cur.pos)
        if left == 0:
            return Estimate(fraction, speed, 0.0, cur.at)
        pause_per_unit = rate.pause_s / rate.units if rate.units else 0.0
        finish = max(cur.at + left * (per_unit + pause_per_unit), now + left * per_unit)
        return Estimate(fraction, speed, max(0.0, finish - now), finish)
