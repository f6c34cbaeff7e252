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
