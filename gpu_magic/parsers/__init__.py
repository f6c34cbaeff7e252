"""Pure parsers of job output: training progress and metrics, log levels (no I/O).

parser = LogParser()
for event in parser.feed(chunk, at=time.time()):   # Progress | Metrics
    ...
"""

from .events import Event, Metrics, Progress, is_secondary_axis, split_axes, terminal_lines
from .levels import (
    LEVELS,
    LevelTracker,
    LineFilter,
    LogLine,
    classify,
    filter_lines,
    split_prefix,
)
from .metrics import MetricsFileParser, parse_metrics_record
from .stream import LogParser, parse_log

__all__ = [
    "LEVELS",
    "Event",
    "LevelTracker",
    "LineFilter",
    "LogLine",
    "LogParser",
    "Metrics",
    "MetricsFileParser",
    "Progress",
    "classify",
    "filter_lines",
    "is_secondary_axis",
    "parse_log",
    "parse_metrics_record",
    "split_axes",
    "split_prefix",
    "terminal_lines",
]
