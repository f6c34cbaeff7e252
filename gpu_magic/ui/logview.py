"""The log tail widget: last N lines, a minimum-level filter, a regex search, the full log.

Lines are classified once, as they arrive: the view keeps its own ``LevelTracker`` and the last
``max_lines`` lines with their levels, and is fed only new text (``append_text``). A render with
no filter takes the last lines as they are; a filter walks the kept (level, text) pairs, running
only the search regex. The unfinished last line is shown too; it is classified (on a copy of the
tracker) until its line break arrives, and only then for good.
"""

from __future__ import annotations

import copy
import html
import itertools
import threading
from collections import deque

import ipywidgets as widgets

from ..parsers import levels

TAIL_LINES = 12  # fits the 240 px box: the newest line is always in view, no scrolling
MAX_LINES = 5000  # lines kept (and classified) for the level filter and the search
MAX_CHARS = 1024 * 1024  # ... and at most this many characters of them
FULL_LOG_MAX = 8 * 1024 * 1024  # characters sent to the browser for "full log"
PRE = "margin:0;white-space:pre-wrap;font-family:monospace;font-size:12px;"
LEVEL_COLORS = {"WARNING": "#b06000", "ERROR": "#c5221f", "DEBUG": "#80868b"}
RANK = {name: i for i, name in enumerate(levels.LEVELS)}
BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # where str.splitlines breaks a line


# -- the adapter to gpu_magic.parsers.levels --------------------------------------------------
def filter_lines(lines: list[str], min_level: str | None = None, grep: str | None = None):
    """``LogLine``s (index, level, text) at ``min_level`` or above matching regex ``grep``;
    unlevelled lines drop out once a level is asked for; an invalid regex raises ValueError."""
    return levels.filter_lines(lines, min_level=min_level, grep=grep)


# -- the widget -------------------------------------------------------------------------------
def pre(body: str, max_height: str, escaped: bool = False) -> str:
    style = f"{PRE}max-height:{max_height};overflow:auto;"
    return f'<pre style="{style}">{body if escaped else html.escape(body)}</pre>'


def colored(line: levels.LogLine) -> str:
    color = LEVEL_COLORS.get(line.level or "")
    text = html.escape(line.text)
    return f'<span style="color:{color}">{text}</span>' if color else text


class LogView(widgets.VBox):
    """Feed it the log's new text with ``append_text`` (``set_text``/``set_lines`` start over);
    the filters re-render on their own."""

    tracker_class = levels.LevelTracker  # our seam: the tests count the lines it classifies

    def __init__(
        self,
        tail_lines: int = TAIL_LINES,
        lock: threading.RLock | None = None,
        *,
        max_lines: int = MAX_LINES,
        max_chars: int = MAX_CHARS,
    ):
        self.tail_lines, self.max_chars = tail_lines, max_chars
        self.lock = lock or threading.RLock()
        self.lines: deque[str] = deque(maxlen=max_lines)  # complete lines, oldest first
        self.levels: deque[str | None] = deque(maxlen=max_lines)  # their levels
        self._chars = 0  # characters in self.lines
        self._partial = ""  # the unfinished last line (a trailing "\r" may still become "\r\n")
        self._partial_level: tuple[str, str | None] | None = None  # (text, level) cached
        self.tracker = self.tracker_class()
        self.text = ""  # what the tail shows now (plain text)
        self.level = _dropdown()
        self.search = widgets.Text(placeholder="search (regex)", layout={"width": "220px"})
        self.search.add_class("gpu-magic-log-search")
        self.note = widgets.HTML()
        self.note.add_class("gpu-magic-log-note")
        self.tail = widgets.HTML(value=pre("", "240px"))
        self.tail.add_class("gpu-magic-log-tail")
        self.full = widgets.HTML(layout={"display": "none"})
        self.full.add_class("gpu-magic-full-log")
        controls = widgets.HBox([self.level, self.search, self.note])
        super().__init__([controls, self.tail, self.full])
        self.add_class("gpu-magic-log-view")
        self.level.observe(self._refilter, names="value")
        self.search.observe(self._refilter, names="value")

    # -- feeding ------------------------------------------------------------------------------
    def append_text(self, text: str) -> None:
        """Add the log's next text (any cut: a line may end in a later call) and re-render."""
        with self.lock:
            if len(text) > 2 * self.max_chars:  # only its end can be kept: start over from a
                self.clear()  # line boundary near that end
                text = drop_first_line(text[-self.max_chars :])
            self._add(self._split(text))
            self.render()

    def set_text(self, text: str) -> None:
        """Start over with ``text`` (the tail of a log that already exists: a new panel, or the
        log was replaced)."""
        with self.lock:
            self.clear()
            self.append_text(text)

    def set_lines(self, lines: list[str]) -> None:
        """Start over with these complete lines."""
        with self.lock:
            self.clear()
            self._add(list(lines))
            self.render()

    def clear(self) -> None:
        with self.lock:
            self.lines.clear()
            self.levels.clear()
            self._chars = 0
            self._partial, self._partial_level = "", None
            self.tracker = self.tracker_class()

    def _split(self, text: str) -> list[str]:
        """The complete lines of the held unfinished line + ``text``, as ``str.splitlines``
        splits; what follows the last line break is held back for the next call."""
        buffer = self._partial + text
        if not buffer:
            return []
        lines = buffer.splitlines()
        if buffer[-1] == "\r":  # "\r" then maybe "\n": one line break, decided by the next text
            self._partial = lines.pop() + "\r"
        elif buffer[-1] not in BREAKS:
            self._partial = lines.pop()[-self.max_chars :]
        else:
            self._partial = ""
        return lines

    def _add(self, lines: list[str]) -> None:
        """Classify ``lines`` (once each) and keep them; only the ones that fit are looked at."""
        if lines:
            self._partial_level = None  # the tracker moves on: the unfinished line's level too
        room = self.lines.maxlen or len(lines)
        if len(lines) > room:
            lines = lines[-room:]
        track, kept, kept_levels = self.tracker.level, self.lines, self.levels
        for line in lines:
            if len(kept) == room:
                self._chars -= len(kept[0])  # the deques drop their oldest line on append
            kept.append(line)
            kept_levels.append(track(line))
            self._chars += len(line)
        while self._chars > self.max_chars and len(kept) > 1:
            self._chars -= len(kept.popleft())
            kept_levels.popleft()

    def _unfinished(self) -> levels.LogLine | None:
        """The unfinished last line, levelled as if it ended here (the tracker not moved)."""
        if not self._partial:
            return None
        text = self._partial[:-1] if self._partial.endswith("\r") else self._partial
        if self._partial_level is None or self._partial_level[0] != text:
            self._partial_level = (text, copy.copy(self.tracker).level(text))
        return levels.LogLine(len(self.lines), self._partial_level[1], text)

    # -- reading ------------------------------------------------------------------------------
    def line_count(self) -> int:
        return len(self.lines) + (1 if self._partial else 0)

    def last(self, count: int) -> list[levels.LogLine]:
        """The last ``count`` lines, no filter."""
        with self.lock:
            if count <= 0:
                return []
            partial = self._unfinished()
            count -= partial is not None
            pairs = zip(reversed(self.lines), reversed(self.levels), strict=True)
            newest = list(itertools.islice(pairs, count))[::-1]
            start = len(self.lines) - len(newest)
            shown = [levels.LogLine(start + i, lvl, text) for i, (text, lvl) in enumerate(newest)]
            return [*shown, partial] if partial is not None else shown

    def filter(self, min_level: str | None = None, grep: str | None = None) -> list:
        """The kept lines (``LogLine``s, numbered from the oldest kept one) at ``min_level`` or
        above matching ``grep``, as ``levels.filter_lines`` keeps them; a bad level or pattern
        raises ValueError."""
        floor = levels.check_level(min_level)
        pattern = levels.compile_search(grep)
        lowest = -1 if floor is None else RANK[floor]
        with self.lock:
            pairs = zip(self.levels, self.lines, strict=True)
            partial = self._unfinished()
            if partial is not None:
                pairs = itertools.chain(pairs, [(partial.level, partial.text)])
            search = pattern.search if pattern is not None else None
            return [
                levels.LogLine(i, level, text)
                for i, (level, text) in enumerate(pairs)
                if (lowest < 0 or (level is not None and RANK[level] >= lowest))
                and (search is None or search(text))
            ]

    def render(self) -> None:
        with self.lock:
            level = self.level.value or None  # "" (all levels) or None: no level filter
            grep = self.search.value or None
            total = self.line_count()
            try:
                if level is None and grep is None:
                    shown = self.last(self.tail_lines)
                    kept = total
                else:
                    found = self.filter(level, grep)
                    kept = len(found)
                    shown = found[-self.tail_lines :] if self.tail_lines > 0 else []
                self.note.value = f"{kept} of {total} lines"
            except ValueError as exc:
                shown = []
                self.note.value = f'<span style="color:#b00">{html.escape(str(exc))}</span>'
            text = "\n".join(line.text for line in shown)
            if text != self.text:
                self.text = text
                self.tail.value = pre("\n".join(map(colored, shown)), "240px", escaped=True)

    def _refilter(self, _change=None) -> None:
        self.render()

    # -- the full log -------------------------------------------------------------------------
    @property
    def full_shown(self) -> bool:
        return self.full.layout.display != "none"

    def show_full(self, text: str) -> None:
        with self.lock:
            head = ""
            if len(text) > FULL_LOG_MAX:
                head = f"[first {len(text) - FULL_LOG_MAX} characters left out: %gpu_logs JOB]\n"
                text = text[-FULL_LOG_MAX:]
            self.full.value = pre(head + text, "480px")
            self.full.layout.display = None

    def hide_full(self) -> None:
        with self.lock:
            self.full.layout.display = "none"
            self.full.value = ""


def drop_first_line(text: str) -> str:
    """``text`` without its first line (cut by whoever took the end of a longer text)."""
    first = text.splitlines(keepends=True)[:1]
    return text[len(first[0]) :] if first else text


def _dropdown() -> widgets.Dropdown:
    # "all levels" is "", not None: a Dropdown whose value is None has no selected option, and
    # the browser then shows an empty box instead of "all levels"
    options = [("all levels", ""), *((f"≥ {lvl}", lvl) for lvl in levels.LEVELS)]
    dropdown = widgets.Dropdown(options=options, value="", layout={"width": "140px"})
    dropdown.add_class("gpu-magic-log-level")
    return dropdown
