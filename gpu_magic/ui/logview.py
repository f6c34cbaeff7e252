"""The log tail widget: last N lines, a minimum-level filter, a regex search, the full log."""

from __future__ import annotations

import html
import re
import threading

import ipywidgets as widgets

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TAIL_LINES = 50
FULL_LOG_MAX = 8 * 1024 * 1024  # characters sent to the browser for "full log"
PRE = "margin:0;white-space:pre-wrap;font-family:monospace;font-size:12px;"
LEVEL_WORD = re.compile(r"\b(DEBUG|INFO|WARN(?:ING)?|ERROR|CRITICAL|FATAL)\b")


# -- the adapter to gpu_magic.parsers.levels --------------------------------------------------
def filter_lines(lines: list[str], min_level: str | None = None, grep: str | None = None):
    """Lines at ``min_level`` or above matching regex ``grep`` (invalid regex: ValueError)."""
    try:
        from ..parsers.levels import filter_lines as real
    except ImportError:  # pragma: no cover - until the parser lands
        return _fallback_filter(lines, min_level, grep)
    return real(lines, min_level=min_level, grep=grep)


def _fallback_filter(lines, min_level, grep):
    try:
        pattern = re.compile(grep) if grep else None
    except re.error as exc:
        raise ValueError(f"invalid search pattern: {exc}") from None
    floor = LEVELS.index(min_level) if min_level else 0
    kept, in_traceback = [], False
    for line in lines:
        in_traceback = line.startswith("Traceback (") or (in_traceback and _continues(line))
        word = LEVEL_WORD.search(line)
        level = "ERROR" if in_traceback else _canonical(word.group(1)) if word else "INFO"
        if LEVELS.index(level) >= floor and (pattern is None or pattern.search(line)):
            kept.append(line)
    return kept


def _continues(line: str) -> bool:
    return line.startswith((" ", "\t")) or bool(re.match(r"^\w[\w.]*(Error|Exception)\b", line))


def _canonical(word: str) -> str:
    return {"WARN": "WARNING", "CRITICAL": "ERROR", "FATAL": "ERROR"}.get(word, word)


# -- the widget -------------------------------------------------------------------------------
def pre(text: str, max_height: str) -> str:
    style = f"{PRE}max-height:{max_height};overflow:auto;"
    return f'<pre style="{style}">{html.escape(text)}</pre>'


class LogView(widgets.VBox):
    """Call ``set_lines`` with the latest log lines; the filters re-render on their own."""

    def __init__(self, tail_lines: int = TAIL_LINES, lock: threading.RLock | None = None):
        self.tail_lines = tail_lines
        self.lock = lock or threading.RLock()
        self.lines: list[str] = []
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

    def set_lines(self, lines: list[str]) -> None:
        with self.lock:
            self.lines = list(lines)
            self.render()

    def render(self) -> None:
        with self.lock:
            try:
                kept = filter_lines(self.lines, self.level.value, self.search.value or None)
                self.note.value = f"{len(kept)} of {len(self.lines)} lines"
            except ValueError as exc:
                kept = []
                self.note.value = f'<span style="color:#b00">{html.escape(str(exc))}</span>'
            text = "\n".join(kept[-self.tail_lines :])
            if text != self.text:
                self.text = text
                self.tail.value = pre(text, "240px")

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


def _dropdown() -> widgets.Dropdown:
    options = [("all levels", None), *((f"≥ {lvl}", lvl) for lvl in LEVELS[1:])]
    dropdown = widgets.Dropdown(options=options, value=None, layout={"width": "140px"})
    dropdown.add_class("gpu-magic-log-level")
    return dropdown
