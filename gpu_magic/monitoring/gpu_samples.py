"""``gpu.csv`` lines (a timestamp, then ``nvidia-smi --query-gpu`` fields) as samples (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPUSample:
    at: float
    index: int
    uuid: str
    utilization: float | None  # %
    memory_used: float | None  # MiB
    memory_total: float | None  # MiB
    temperature: float | None  # °C
    power: float | None  # W


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def parse_gpu_line(line: str) -> GPUSample | None:
    """One ``gpu.csv`` line, or None for anything else (a header, a driver message)."""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != 8 or not fields[1].isdigit():
        return None
    at = _number(fields[0])
    if at is None:
        return None
    values = [_number(f) for f in fields[3:]]
    return GPUSample(at, int(fields[1]), fields[2], *values)


def parse_gpu_csv(text: str) -> list[GPUSample]:
    return [s for s in map(parse_gpu_line, text.splitlines()) if s is not None]


def mean_utilization(samples: list[GPUSample], last: int) -> list[float]:
    """The mean utilisation over a job's GPUs at each of the ``last`` sample times (oldest
    first; times at which no GPU reported utilisation are left out): a sparkline's points."""
    by_time: dict[float, list[float]] = {}
    for s in samples:
        if s.utilization is not None:
            by_time.setdefault(s.at, []).append(s.utilization)
    times = sorted(by_time)[-last:] if last > 0 else []
    return [sum(by_time[t]) / len(by_time[t]) for t in times]
