"""The log tail widget: last N lines, a minimum-level filter, a regex search, the full log."""

from __future__ import annotations

import html
import threading

import ipywidgets as widgets

from ..parsers import levels

TAIL_LINES = 50
FULL_LOG_MAX = 8 * 1024 * 1024  # characters sent to the browser for "full log"
PRE = "margin:0;white-space:pre-wrap;font-family:monospace;font-size:12px;"
LEVEL_COLORS = {"WARNING": "#b06000", "ERROR": "#c5221f", "DEBUG": "#80868b"}


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
            shown = kept[-self.tail_lines :]
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


def _dropdown() -> widgets.Dropdown:
    options = [("all levels", None), *((f"≥ {lvl}", lvl) for lvl in levels.LEVELS)]
    dropdown = widgets.Dropdown(options=options, value=None, layout={"width": "140px"})
    dropdown.add_class("gpu-magic-log-level")
    return dropdown
