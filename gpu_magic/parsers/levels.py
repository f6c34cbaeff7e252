"""Log levels of output lines, and the level/search filter of the log tail.

Recognised: Python ``logging`` (``INFO:root:...``, ``2024-01-01 12:00:00,123 - name - WARNING -
...``, ``[2024-01-01 12:00:00,123 WARNING] ...``, loguru's ``... | ERROR    | ...``, rich's
``[12:00:00] INFO     ...``), glog / PyTorch C++ / absl (``W1126 12:00:00.123 ...``,
``[W1126 12:00:00.123 socket.cpp:1028] ...``, ``[W socket.cpp:663] ...``), ``warnings`` output
(``file.py:3: UserWarning: ...``) and Python tracebacks, which are ERROR from the ``Traceback``
line to the exception line. Tracebacks and continuation lines need state: :class:`LevelTracker`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from .events import terminal_lines

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_RANK = {name: i for i, name in enumerate(LEVELS)}
_WORDS = {
    "TRACE": "DEBUG", "DEBUG": "DEBUG", "INFO": "INFO", "NOTICE": "INFO", "SUCCESS": "INFO",
    "WARN": "WARNING", "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "ERROR",
    "FATAL": "ERROR",
}  # fmt: skip
_GLOG = {"I": "INFO", "W": "WARNING", "E": "ERROR", "F": "ERROR"}
_L = r"(?P<level>TRACE|DEBUG|INFO|NOTICE|SUCCESS|WARN|WARNING|ERROR|CRITICAL|FATAL)"
_TS = r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
_PREFIXES = [
    # INFO:root:message   WARNING: message
    re.compile(rf"^{_L}(?::[\w.<>\-]*)?:\s?(?P<msg>.*)$"),
    # 2024-01-01 12:00:00,123 - name - LEVEL - msg;  loguru: ts | LEVEL    | where - msg;
    # ts LEVEL msg
    re.compile(
        rf"^{_TS}\s*(?:[-|]\s*)?(?:[\w.<>\[\]\-]+\s+[-|]\s+)?{_L}\s*(?:[-|:]\s*)?"
        r"(?:[\w.<>]+:[\w.<>]+:\d+\s+-\s+)?(?P<msg>.*)$"
    ),
    # [2024-01-01 12:00:00,123 LEVEL] msg   [LEVEL] msg   [LEVEL 12:00:00] msg
    # (the bracket's text is bounded: unbounded, a long line with no "]" backtracks for ages)
    re.compile(rf"^\[(?:[^\]]{{0,200}}?[\s|])?{_L}(?:[\s|][^\]]{{0,200}})?\]\s*:?\s*(?P<msg>.*)$"),
    # a tool's own tag, any case: [gpu_magic] warning: msg
    re.compile(rf"^\[[\w.\-]+\]\s+(?i:{_L}):\s?(?P<msg>.*)$"),
    # rich's handler: [time] LEVEL    msg   (and the time column blank on following records)
    re.compile(rf"^(?:\[[^\]]{{1,200}}\]\s+|\s+){_L}\s+(?P<msg>.*\S)?\s*$"),
]
_GLOG_LINE = [
    # W1126 12:00:00.123456 1234 file.cc:12] msg  (optionally [rank0]: and [ ] around it)
    re.compile(
        r"^(?:\[rank\d+\]:)?\[?(?P<g>[IWEF])\d{4} \d\d:\d\d:\d\d\.\d+(?:\s+\d+)?\s+"
        r"[^\]\s]+\]\s?(?P<msg>.*)$"
    ),
    # [W socket.cpp:663] msg (older PyTorch)
    re.compile(r"^(?:\[rank\d+\]:)?\[(?P<g>[IWEF]) [^\]\s]+:\d+\]\s?(?P<msg>.*)$"),
    # TensorFlow: 2024-01-01 12:00:00.123456: W tensorflow/core/...] msg
    re.compile(rf"^{_TS}: (?P<g>[IWEF]) [^\]\s]+\]\s?(?P<msg>.*)$"),
]
_WARNINGS = re.compile(r"^(?:.*?:\d+: )?(?P<cat>[A-Z]\w*Warning): (?P<msg>.*)$")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception)(?::\s.*)?$")
_TRACEBACK = re.compile(
    r"^(?:\s*\| )*\s*(?:\+ )?(?:Exception Group )?Traceback \(most recent call last\):"
)
_CHAINED = re.compile(
    r"^(?:The above exception was the direct cause of the following exception|"
    r"During handling of the above exception, another exception occurred):$"
)
_CPP_CONTINUATION = re.compile(r"^(?:Exception raised from |frame #\d+: |<omitting python frames>)")


def split_prefix(line: str) -> tuple[str | None, str]:
    """``(level, message)``: the logging prefix recognised and removed, or ``(None, line)``."""
    for pattern in _GLOG_LINE:
        if m := pattern.match(line):
            return _GLOG[m["g"]], m["msg"]
    for pattern in _PREFIXES:
        if m := pattern.match(line):
            return _WORDS[m["level"].upper()], m["msg"] or ""
    return None, line


def classify(line: str) -> str | None:
    """The level one line says it has, on its own (see :class:`LevelTracker` for context)."""
    line = line.rstrip("\r\n")
    level, _ = split_prefix(line)
    if level:
        return level
    if _TRACEBACK.match(line) or _EXCEPTION.match(line) or _CHAINED.match(line):
        return "ERROR"
    if _WARNINGS.match(line):
        return "WARNING"
    return None


class LevelTracker:
    """Levels of consecutive lines: traceback frames, ``warnings`` source lines and C++ stack
    dumps take the level of the line that started them."""

    def __init__(self):
        self._in_traceback = False
        self._after: str | None = None  # level of a record whose continuation lines may follow
        self._warning_source = False

    def level(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if self._in_traceback:
            if not line.strip() or line[:1].isspace():
                return "ERROR"
            self._in_traceback = False
            self._after = "ERROR"
            return "ERROR"  # the exception line
        if _TRACEBACK.match(line):
            self._in_traceback = True
            return "ERROR"
        if self._warning_source and line[:1].isspace() and line.strip():
            self._warning_source = False
            return "WARNING"
        self._warning_source = False
        if self._after and _CPP_CONTINUATION.match(line):
            return self._after
        if self._after == "ERROR" and _CHAINED.match(line):
            return "ERROR"
        level = classify(line)
        self._warning_source = bool(_WARNINGS.match(line)) and level == "WARNING"
        if level is not None:
            self._after = level
        elif line.strip():
            self._after = None
        return level


class StreamLevels:
    r"""Levels of the lines a growing log completes, chunk by chunk, for a client that shows the
    stream itself: it splits the text at ``\n`` as this does, and an unfinished last line waits
    for its end. A line holding ``\r`` frames (tqdm) is classified as a terminal shows it
    (``terminal_lines``)."""

    def __init__(self):
        self._tracker = LevelTracker()
        self._partial = ""

    def feed(self, text: str) -> list[str | None]:
        *done, self._partial = (self._partial + text).split("\n")
        return [self._tracker.level(terminal_lines(line)[0]) for line in done]


class LogLine(NamedTuple):
    index: int  # 0-based line number in the input
    level: str | None
    text: str


def check_level(level: str | None) -> str | None:
    if level is None:
        return None
    name = _WORDS.get(str(level).upper())
    if name is None:
        raise ValueError(f"unknown log level {level!r}: expected one of {', '.join(LEVELS)}")
    return name


def compile_search(grep: str | None, ignore_case: bool = True) -> re.Pattern[str] | None:
    if grep is None or grep == "":
        return None
    try:
        return re.compile(grep, re.IGNORECASE if ignore_case else 0)
    except re.error as e:
        raise ValueError(f"invalid search pattern {grep!r}: {e}") from None


class LineFilter:
    """Keeps the lines at ``min_level`` or above (unlevelled lines drop out once a level is
    asked for) that match the regular expression ``grep``; stateful across calls, so a log can
    be filtered as it streams. A bad level or pattern raises ValueError."""

    def __init__(self, min_level: str | None = None, grep: str | None = None, ignore_case=True):
        self.floor = check_level(min_level)
        self.pattern = compile_search(grep, ignore_case)
        self.tracker = LevelTracker()

    def level_if_kept(self, text: str) -> tuple[bool, str | None]:
        level = self.tracker.level(text)
        if self.floor is not None and (level is None or _RANK[level] < _RANK[self.floor]):
            return False, level
        if self.pattern is not None and not self.pattern.search(text):
            return False, level
        return True, level

    def keep(self, text: str) -> bool:
        return self.level_if_kept(text)[0]


def filter_lines(
    lines: Iterable[str],
    min_level: str | None = None,
    grep: str | None = None,
    ignore_case: bool = True,
) -> list[LogLine]:
    """``LineFilter`` over a whole text's lines, keeping their numbers and levels."""
    keeper = LineFilter(min_level, grep, ignore_case)
    out = []
    for index, text in enumerate(lines):
        kept, level = keeper.level_if_kept(text)
        if kept:
            out.append(LogLine(index, level, text))
    return out
