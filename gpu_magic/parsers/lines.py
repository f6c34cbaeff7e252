"""Whole-line formats: ``name=value`` pairs, Hugging Face Trainer log dicts, hand-written lines.

Conservative on purpose: a line yields numbers only when it starts with a step / iteration /
epoch counter (after any logging prefix) or is a Trainer log dict, so that ordinary log output
("Loaded 60000 images in 2.5s") never becomes a metric.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from .events import NUMBER

_PAIR = re.compile(
    r"(?<![\w.\-/])(?P<name>[A-Za-z_][\w./\-]*(?: [A-Za-z_][\w./\-]*)?)\s*(?:=|:)?\s*"
    rf"(?P<value>{NUMBER})(?P<unit>us|ms|s|%)?(?![\w./])",
    re.I,
)
_SEPARATORS = re.compile(r"[,|;•\t]|\s-\s")
"""No ``\\s*`` around it: split would rescan a long run of spaces at every position
(quadratic); the pairs' own pattern skips the spaces left at the parts' ends."""
_HF_DICT = re.compile(r"^\{'[A-Za-z_][\w/.]*': .*\}$")
_HF_KEYS = re.compile(r"^(?:loss|grad_norm|learning_rate|(?:eval|test|train)_\w+)$")
_ANCHOR = re.compile(
    r"^[\[(]?\s*(?P<kw>epoch|global[_ ]step|step|iteration|iter|batch)\s*[\[(:=#]?\s*"
    r"(?P<n>\d+)(?:\s*(?:/|\bof\b)\s*(?P<total>\d+))?\s*[\])]?(?:\s*[:,|\-]\s*|\s+|$)",
    re.I,
)


def parse_pairs(text: str) -> dict[str, float]:
    """``loss=0.53 lr=1e-4``, ``Loss: 0.53, acc 0.9``, ``- loss: 0.53 - val_loss: 0.6`` ..."""
    values: dict[str, float] = {}
    for part in _SEPARATORS.split(text):
        for m in _PAIR.finditer(part):
            values[m["name"]] = float(m["value"])
    return values


def parse_hf_dict(line: str) -> tuple[float | None, dict[str, float]] | None:
    """A Trainer log dict: ``{'loss': 0.53, ..., 'epoch': 0.5}`` -> ``(0.5, {'loss': 0.53, ...})``.

    transformers >= 5 prints the values as strings (``{'loss': '0.6972', ...}``); both work.
    """
    line = line.strip()
    if not _HF_DICT.match(line):
        return None
    try:
        data = ast.literal_eval(line)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(data, dict) or "epoch" not in data:
        return None
    values = {}
    for key, value in data.items():
        number = _as_number(value)
        if isinstance(key, str) and number is not None:
            values[key] = number
    epoch = values.pop("epoch", None)
    if not any(_HF_KEYS.match(k) for k in values):
        return None
    return epoch, values


def _as_number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and re.fullmatch(NUMBER, value.strip(), re.I):
        return float(value)
    return None


@dataclass
class Counted:
    """What a hand-written progress line said: its counters and its ``name value`` pairs."""

    step: int | None = None
    total: int | None = None
    epoch: int | None = None
    epochs: int | None = None
    values: dict[str, float] = field(default_factory=dict)

    @property
    def epoch_only(self) -> bool:
        return self.step is None and self.epoch is not None and not self.values


def parse_counted(message: str) -> Counted | None:
    """``step 120/1000 loss=0.53``, ``Epoch [1/2], Step [3/6], Loss: 0.04``, ``iter 3: loss 1``."""
    found = Counted()
    rest = message.strip()
    while m := _ANCHOR.match(rest):
        n, total = int(m["n"]), int(m["total"]) if m["total"] else None
        if m["kw"].lower() == "epoch":
            if found.epoch is not None:
                break
            found.epoch, found.epochs = n, total
        else:
            if found.step is not None:
                break
            found.step, found.total = n, total
        rest = rest[m.end() :]
    if found.step is None and found.epoch is None:
        return None
    found.values = parse_pairs(rest)
    return found
