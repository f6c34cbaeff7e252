"""The events the parsers produce, and the small text helpers they share (pure, no I/O).

``Progress`` says how far a job is; ``Metrics`` carries named numbers as they were printed.
Epochs are counted from 1 (``epoch=2, epochs=10`` is the second of ten); when a Progress has
an ``epoch``, its ``step``/``total`` count within that epoch (Keras, Lightning), otherwise they
count over the whole run (Hugging Face Trainer, tqdm, ``step 120/1000``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b"
_CSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_CURSOR_UP = re.compile(r"\x1b\[\d*A\s*$")
# learning-rate series: lr, learning_rate, "learning rate", lr-Adam (Lightning's monitor), pg0_lr
_SECONDARY = re.compile(r"(?:^|[_\-/. ])(?:lr|learning[_ ]rate)(?:$|[_\-/. ])", re.I)


@dataclass(frozen=True)
class Progress:
    step: int | None = None
    total: int | None = None
    unit: str = "it"
    rate: float | None = None  # units per second, as the library printed it
    epoch: int | None = None  # 1-based
    epochs: int | None = None
    at: float | None = None
    source: str = "generic"  # tqdm | keras | lightning | generic | report
    label: str | None = None  # a bar's description without its epoch number
    inner: bool = False  # a nested bar (tqdm position > 0): HF evaluation, Lightning validation

    @property
    def global_step(self) -> int | None:
        """The step counted over the whole run, when the epoch makes that computable."""
        if self.step is None:
            return None
        if self.epoch is not None and self.total is not None:
            return (self.epoch - 1) * self.total + self.step
        return self.step

    @property
    def run_position(self) -> tuple[float, float | None] | None:
        """``(done, total)`` over the whole run, in steps or, lacking steps, in epochs."""
        if self.step is not None and self.epoch is not None:
            if self.total is None:
                return None
            done = (self.epoch - 1) * self.total + self.step
            return done, self.total * self.epochs if self.epochs else None
        if self.step is not None:
            return self.step, self.total
        if self.epoch is not None:
            return self.epoch - 1, self.epochs
        return None


@dataclass(frozen=True)
class Metrics:
    step: int | None = None  # global step when known
    epoch: float | None = None  # HF prints a fractional epoch (0.5 = half of the first)
    values: dict[str, float] = field(default_factory=dict)
    at: float | None = None
    source: str = "generic"  # tqdm | keras | lightning | hf | generic | report


Event = Progress | Metrics


def is_secondary_axis(name: str) -> bool:
    """True for series that belong on a secondary y axis: learning rates."""
    return bool(_SECONDARY.search(name))


def split_axes(names) -> tuple[list[str], list[str]]:
    """``(primary, secondary)`` series names, each in the given order."""
    names = list(names)
    secondary = [n for n in names if is_secondary_axis(n)]
    return [n for n in names if n not in secondary], secondary


_NOT_SGR = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-ln-~]|\x1b[@-Z\\-_]|[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]"
)


def terminal_safe(text: str) -> str:
    """``text`` as a job's log may be printed to a terminal or a notebook: colours (SGR) stay;
    every other escape (OSC titles and hyperlinks, cursor moves, screen clears) and control
    character but tab, newline and carriage return goes. A log comes from the host."""
    return _NOT_SGR.sub("", _OSC.sub("", text))


def strip_ansi(text: str) -> str:
    """Drop terminal escapes and backspaces (Keras overwrites its bar with ``\\b``)."""
    return _CSI.sub("", _OSC.sub("", text)).replace("\b", "")


def moves_up(segment: str) -> bool:
    """A frame that ends by moving the cursor up was drawn below the main bar (a nested bar)."""
    return bool(_CURSOR_UP.search(segment))


def terminal_lines(text: str) -> list[str]:
    """What a terminal would show: per line, the last non-blank ``\\r`` frame, escapes removed."""
    out = []
    for line in text.split("\n"):
        frames = [strip_ansi(f).rstrip() for f in line.split("\r")]
        shown = [f for f in frames if f.strip()]
        out.append(shown[-1] if shown else "")
    return out
