"""``LogParser``: output.log text in (any chunking), Progress and Metrics events out.

Output is cut into frames at ``\\n`` and at ``\\r`` (tqdm and Keras redraw a line with carriage
returns; a file keeps every redraw). A frame is parsed once it is terminated, except the last
frame of a line that already had frames: when it already reads as a complete tqdm bar it is
parsed at once, so a slow bar is not shown one redraw late (its events are not repeated when the
terminator arrives). Feeding the same text in different chunks yields the same events.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, replace

from . import progress as bars
from .events import Event, Metrics, Progress, moves_up, strip_ansi
from .levels import split_prefix
from .lines import parse_counted, parse_hf_dict

_TERMINATOR = re.compile(r"[\r\n]")
MAX_FRAME = 64 * 1024  # longer unterminated text is no progress bar: it is skipped
_LIGHTNING_START = re.compile(r"^GPU available: (?:True|False)\b.*\bused: ")
_LIGHTNING_STOP = re.compile(r"`Trainer\.fit` stopped: `max_epochs=(?P<n>\d+)` reached")


@dataclass
class _State:
    keras_epoch: tuple[int, int | None] | None = None  # from the last "Epoch i/n" line
    zero_based: set[str] = field(default_factory=set)  # bar labels seen with "Epoch 0"
    last_pairs: dict[str, dict[str, float]] = field(default_factory=dict)  # per bar
    rich_step: tuple[int | None, int | None] | None = None  # a rich bar may wrap its metrics
    last_bar: Progress | None = None  # the last outer bar frame
    hf_pending: Metrics | None = None  # a Trainer log dict waiting for the bar's step
    library: str | None = None  # "lightning" | "hf" | "keras", once the log shows which
    epochs: dict[str, int] = field(default_factory=dict)  # per bar label, learnt elsewhere


class LogParser:
    def __init__(self):
        self._pending = ""  # text after the last terminator
        self._skipping = False  # the pending frame grew past MAX_FRAME: drop it up to its end
        self._line_has_frames = False
        self._state = _State()
        self._guess: tuple[list[Event], _State] | None = None  # (events, state before)

    def feed(self, text: str, at: float | None = None) -> list[Event]:
        data = self._pending + text
        events: list[Event] = []
        start = 0
        for m in _TERMINATOR.finditer(data):
            if self._skipping or m.start() - start > MAX_FRAME:
                self._skipping = False
                self._drop_guess()
            else:
                events += self._complete(data[start : m.start()], at)
            if m.group() == "\n":
                self._line_has_frames = False
            start = m.end()
        self._pending = data[start:]
        if len(self._pending) > MAX_FRAME:
            self._pending, self._skipping = "", True
            self._drop_guess()
        if self._pending and self._line_has_frames and self._guess is None:
            events += self._speculate(self._pending, at)
        return events

    @property
    def library(self) -> str | None:
        """The training library the log shows (``lightning``, ``hf``, ``keras``), if any."""
        return self._state.library

    def flush(self, at: float | None = None) -> list[Event]:
        """The stream ended: parse what is left unterminated."""
        rest, self._pending = self._pending, ""
        skipping, self._skipping = self._skipping, False
        events = self._complete(rest, at) if rest and not skipping else []
        return events + self._release_hf(self._last_step())

    def _drop_guess(self) -> None:
        if self._guess is not None:
            self._state, self._guess = self._guess[1], None

    def _complete(self, frame: str, at: float | None) -> list[Event]:
        if frame.strip():
            self._line_has_frames = True
        guess, self._guess = self._guess, None
        if guess is None:
            return self._parse(frame, at)
        guessed, before = guess
        self._state = before  # parse the finished frame as if there had been no guess
        events = self._parse(frame, at)
        seen = [_comparable(e) for e in guessed]
        if [_comparable(e) for e in events[: len(guessed)]] == seen:
            return events[len(guessed) :]  # already emitted (the rest: text glued to the bar)
        return events

    def _speculate(self, frame: str, at: float | None) -> list[Event]:
        clean = strip_ansi(frame).rstrip()
        if not clean.endswith("]") or moves_up(frame) or bars.parse_tqdm(clean) is None:
            return []
        before = copy.deepcopy(self._state)
        events = self._parse(frame, at)
        self._guess = (events, before)
        return events

    def _parse(self, frame: str, at: float | None) -> list[Event]:
        inner = moves_up(frame)
        text = strip_ansi(frame).rstrip()
        if not text.strip():
            return []
        if m := _LIGHTNING_STOP.search(text):  # maybe glued to a bar frame: both count
            before = self._frame(text[: m.start()], inner, at) if m.start() else []
            return before + self._lightning_stopped(int(m["n"]), at)
        return self._frame(text, inner, at)

    def _frame(self, text: str, inner: bool, at: float | None) -> list[Event]:
        rich_step, self._state.rich_step = self._state.rich_step, None
        if bar := bars.parse_tqdm(text):
            return self._tqdm(bar, inner, at)
        if bar := bars.parse_keras(text):
            return self._keras(bar, at)
        if bar := bars.parse_rich(text):
            return self._rich(bar, at)
        if rich_step is not None and (pairs := bars.rich_continuation(text)):
            step, epoch = rich_step
            return [Metrics(step, epoch, pairs, at, "lightning")]
        if found := parse_hf_dict(text):
            return self._hf(found, at)
        if _LIGHTNING_START.match(text):
            self._state.library = "lightning"
        return self._counted(text, at)

    def _hf(self, found: tuple[float | None, dict[str, float]], at: float | None) -> list[Event]:
        """A Trainer log dict has only a fractional epoch: it waits for the train bar's next
        frame (the Trainer redraws it right after printing) to learn its global step."""
        self._state.library = "hf"
        events = self._release_hf(self._last_step())
        self._state.hf_pending = Metrics(None, found[0], found[1], at, "hf")
        return events

    def _last_step(self) -> int | None:
        last = self._state.last_bar
        return last.global_step if last is not None else None

    def _release_hf(self, step: int | None) -> list[Event]:
        pending, self._state.hf_pending = self._state.hf_pending, None
        return [replace(pending, step=step)] if pending is not None else []

    def _lightning_stopped(self, epochs: int, at: float | None) -> list[Event]:
        """``max_epochs=N reached``: the last bar's epoch count, which Lightning's tqdm bar
        never shows (``Epoch 2: 32/32``), so a finished fit reads 100%."""
        self._state.library = "lightning"
        last = self._state.last_bar
        if last is None or last.epoch is None or last.epochs is not None:
            return []
        self._state.epochs[last.label or ""] = epochs
        self._state.last_bar = replace(last, epochs=epochs, at=at)
        return [self._state.last_bar]

    def _epoch(
        self, label: str | None, i: int | None, n: int | None
    ) -> tuple[int | None, int | None]:
        """Bars count epochs from 0 (Lightning) or 1 (hand-written descs): ``Epoch 0`` tells."""
        if i is None:
            return None, None
        key = label or ""
        if i == 0:
            self._state.zero_based.add(key)
        if key in self._state.zero_based:
            i, n = i + 1, (n + 1 if n is not None and n >= 0 else None)
        return i, n if n is not None else self._state.epochs.get(key)

    def _changed(self, bar_key: str, pairs: dict[str, float]) -> dict[str, float]:
        last = self._state.last_pairs.get(bar_key, {})
        self._state.last_pairs[bar_key] = dict(pairs)
        return {k: v for k, v in pairs.items() if k not in last or not _same(last[k], v)}

    def _tqdm(self, bar: bars.Bar, inner: bool, at: float | None) -> list[Event]:
        label, i, n = bars.split_epoch(bar.desc)
        epoch, epochs = self._epoch(label, i, n)
        p = Progress(bar.n, bar.total, bar.unit, bar.rate, epoch, epochs, at, "tqdm", label, inner)
        released = [] if inner else self._outer(p)
        events = [*released, p, *self._metrics(f"tqdm:{label}:{inner}", bar.pairs, p, "tqdm")]
        return events + self._glued(bar.rest, p, at)

    def _outer(self, p: Progress) -> list[Event]:
        """An outer bar frame: remembered; a waiting Trainer dict gets its step."""
        self._state.last_bar = p
        return self._release_hf(p.global_step)

    def _glued(self, text: str, bar: Progress, at: float | None) -> list[Event]:
        """A line printed inside a tqdm loop lands after the bar's frame: its numbers, placed
        by its own counters where it has them (``epoch 1 step 10 loss 0.66``), else by the
        bar's; no Progress of its own (the bar is the progress)."""
        found = parse_counted(split_prefix(text)[1]) if text.strip() else None
        if found is None or not found.values:
            return []
        epoch = found.epoch if found.epoch is not None else bar.epoch
        step = found.step if found.step is not None else bar.step
        within = found.epoch is not None or (bar.total is not None and (step or 0) <= bar.total)
        position = Progress(step, bar.total if within else None, epoch=epoch)
        return [Metrics(position.global_step, epoch, found.values, at, "tqdm")]

    def _keras(self, bar: bars.Bar, at: float | None) -> list[Event]:
        self._state.library = "keras"
        epoch, epochs = self._state.keras_epoch or (None, None)
        p = Progress(bar.n, bar.total, "step", bar.rate, epoch, epochs, at, "keras")
        self._state.last_bar = p
        return [p, *self._metrics("keras", bar.pairs, p, "keras")]

    def _rich(self, bar: bars.Bar, at: float | None) -> list[Event]:
        label, i, n = bars.split_epoch(bar.desc)
        if i is not None:  # Lightning's rich bar shows "Epoch {index}/{max_epochs - 1}"
            self._state.zero_based.add(label or "")
        epoch, epochs = self._epoch(label, i, n)
        p = Progress(bar.n, bar.total, bar.unit, bar.rate, epoch, epochs, at, "lightning", label)
        self._state.rich_step = (p.global_step, epoch)
        self._state.library, self._state.last_bar = "lightning", p
        return [p, *self._metrics(f"rich:{label}", bar.pairs, p, "lightning")]

    def _metrics(self, key: str, pairs: dict, p: Progress, source: str) -> list[Event]:
        changed = self._changed(key, pairs)
        return [Metrics(p.global_step, p.epoch, changed, p.at, source)] if changed else []

    def _counted(self, text: str, at: float | None) -> list[Event]:
        _, message = split_prefix(text)
        found = parse_counted(message)
        if found is None:
            return []
        if found.epoch_only and found.epochs is not None:
            self._state.keras_epoch = (found.epoch, found.epochs)
        p = Progress(found.step, found.total, "step", None, found.epoch, found.epochs, at)
        events: list[Event] = [p]
        if found.values:
            events.append(Metrics(p.global_step, found.epoch, found.values, at))
        return events


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)  # NaN equals NaN here


def _comparable(event: Event) -> Event:
    """The event without its time, NaN values made equal to each other."""
    if isinstance(event, Metrics):
        values = {k: "nan" if v != v else v for k, v in event.values.items()}
        return replace(event, at=None, values=values)
    return replace(event, at=None)


def parse_log(text: str, at: float | None = None) -> list[Event]:
    """All events of a complete log."""
    parser = LogParser()
    return parser.feed(text, at) + parser.flush(at)
