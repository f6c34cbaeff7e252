"""Progress-bar frames: tqdm (and everything built on it), Keras' progbar, Lightning's rich bar.

Each function takes one frame (one ``\\r``/``\\n``-delimited piece of output, escapes removed)
and returns a plain record or None; the stateful parts (epoch context, repeated postfixes) live
in :mod:`.stream`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .events import NUMBER
from .lines import parse_pairs

_SCALED = r"\d+(?:\.\d+)?[kMGTPEZY]?"
_SCALE = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24}
_TIME = r"\d+(?::\d\d)+"

# {desc}: {pct}%|{bar}| {n}/{total} [{elapsed}<{remaining}, {rate}{, postfix}]
_TQDM = re.compile(
    rf"^(?:(?P<desc>.*?):)?\s*(?:(?P<pct>\d{{1,3}})%)?\|[^|]*\|\s*"
    rf"(?P<n>{_SCALED})/(?P<total>{_SCALED}|\?)\s*"
    rf"\[(?P<elapsed>{_TIME}|\?)<(?P<remaining>{_TIME}|\?),\s*(?P<rate>[^,\]]*)"
    r"(?:,\s*(?P<postfix>[^\]]*))?(?:\]|(?P<cut>$))"
)
"""On a terminal tqdm cuts the frame at its width: the ``]`` and the end of the postfix go, so
a frame that ends without it drops its last (maybe cut) postfix value."""
# {desc}: {n}{unit} [{elapsed}, {rate}{, postfix}]   (no total known)
_TQDM_OPEN = re.compile(
    rf"^(?:(?P<desc>.*?):)?\s*(?P<n>{_SCALED})(?P<unit>[A-Za-z]*) "
    rf"\[(?P<elapsed>{_TIME}),\s*(?P<rate>[^,\]]*)(?:,\s*(?P<postfix>[^\]]*))?\]"
)
_RATE = re.compile(
    r"^(?:(?P<q>\?)|(?P<v>\d+(?:\.\d+)?)(?P<scale>[kMGTPEZY])?)(?P<unit>[A-Za-z]+)/s$"
)
_RATE_INV = re.compile(r"^(?P<v>\d+(?:\.\d+)?)s/(?P<unit>[A-Za-z]+)$")
_EPOCH_DESC = re.compile(r"^(?P<label>.*?\bepoch)\s*(?P<i>\d+)(?:\s*/\s*(?P<n>-?\d+))?$", re.I)

# Keras 3:  32/32 ━━━━━━━━━━━━━━━━━━━━ 1s 3ms/step - accuracy: 0.8 - loss: 0.53
# Keras 2:  32/32 [==============================] - 1s 3ms/step - loss: 0.53
_KERAS = re.compile(
    r"^\s*(?P<n>\d+)/(?P<total>\d+|Unknown)\s+(?:[━─]+|\[[=>.]*\])\s*(?:-\s*)?"
    r"(?:ETA:\s*)?(?:\d+(?::\d\d)*(?:us|ms|s)?\s+)?"
    r"(?P<per>\d+(?:\.\d+)?)(?P<per_unit>us|ms|s)/(?:step|sample)(?P<rest>.*)$"
)
# Keras 3 verbose=2 (one line per epoch, what Keras writes to a file or a pipe):
#   32/32 - 0s - 4ms/step - accuracy: 0.49 - loss: 0.76 - val_accuracy: 0.58 - val_loss: 0.69
# Keras 2 verbose=2:  1875/1875 - 3s - loss: 0.29 - accuracy: 0.91 - 3s/epoch - 2ms/step
_KERAS_LINE = re.compile(
    r"^\s*(?P<n>\d+)/(?P<total>\d+)\s+-\s+\d+(?:\.\d+)?(?:us|ms|s|m|h)\s+-\s+(?P<rest>.*)$"
)
_KERAS_PER = re.compile(r"(?<![\w.])(?P<per>\d+(?:\.\d+)?)(?P<per_unit>us|ms|s)/step\b")
_PER = {"us": 1e-6, "ms": 1e-3, "s": 1.0}

# Lightning's RichProgressBar:
#   Epoch 2/9  ━━━━━━━━ 32/32 0:00:01 • 0:00:03 25.17it/s v_num: 0 loss: 0.3
# Parsed in two linear steps (the bar's first glyph splits the line), never one pattern with
# a lazy description before a run of spaces: that backtracks quadratically on a long line.
_RICH_GLYPHS = re.compile(r"[━╸╺─]+")
_RICH_TAIL = re.compile(
    r"[━╸╺─ ]*\s(?P<n>\d+)/(?P<total>\d+|\?)\s+"
    rf"(?P<elapsed>{_TIME}|-:--:--)\s*•\s*(?P<remaining>{_TIME}|-:--:--)\s*"
    r"(?:(?P<rate>\d+(?:\.\d+)?)(?P<rate_unit>it/s|s/it))?\s*(?P<rest>.*)$"
)
_RICH_PAIRS_ONLY = re.compile(rf"^\s+(?:[\w./-]+: (?:{NUMBER})\s*)+$")
NOT_METRICS = frozenset({"v_num"})


@dataclass
class Bar:
    """One progress-bar frame, as printed."""

    n: int
    total: int | None
    unit: str = "it"
    rate: float | None = None
    desc: str | None = None
    pairs: dict[str, float] = field(default_factory=dict)
    rest: str = ""  # what follows the frame on the same line (a print inside a tqdm loop)


def _scaled(text: str) -> float:
    if text[-1] in _SCALE:
        return float(text[:-1]) * _SCALE[text[-1]]
    return float(text)


def _rate(text: str) -> tuple[float | None, str | None]:
    text = text.strip()
    if m := _RATE.match(text):
        if m["q"]:
            return None, m["unit"]
        return float(m["v"]) * _SCALE.get(m["scale"] or "", 1.0), m["unit"]
    if m := _RATE_INV.match(text):
        value = float(m["v"])
        return (1.0 / value if value else None), m["unit"]
    return None, None


def _postfix(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    values = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        number = _number(value) if sep else None
        if number is not None and name.strip() and name.strip() not in NOT_METRICS:
            values[name.strip()] = number
    return values


def _number(text: str) -> float | None:
    if re.fullmatch(NUMBER, text.strip(), re.I):
        return float(text)
    return None


def parse_tqdm(frame: str) -> Bar | None:
    """A tqdm frame at the start of ``frame``; text after its closing ``]`` is ``Bar.rest``
    (tqdm draws without a newline, so a ``print`` in the loop continues the frame's line)."""
    if m := _TQDM.match(frame):
        rate, unit = _rate(m["rate"])
        total = None if m["total"] == "?" else round(_scaled(m["total"]))
        postfix = m["postfix"] or ""
        if m["cut"] is not None:
            postfix = postfix.rsplit(",", 1)[0] if "," in postfix else ""
        n, postfix = round(_scaled(m["n"])), _postfix(postfix)
        return Bar(n, total, unit or "it", rate, m["desc"], postfix, frame[m.end() :])
    if m := _TQDM_OPEN.match(frame):
        rate, unit = _rate(m["rate"])
        n, postfix = round(_scaled(m["n"])), _postfix(m["postfix"])
        unit = m["unit"] or unit or "it"
        return Bar(n, None, unit, rate, m["desc"], postfix, frame[m.end() :])
    return None


def split_epoch(desc: str | None) -> tuple[str | None, int | None, int | None]:
    """``"Epoch 3/10"`` -> ``("Epoch", 3, 10)``; the numbers as printed (maybe 0-based)."""
    if desc is None:
        return None, None, None
    desc = desc.strip()
    if m := _EPOCH_DESC.match(desc):
        n = int(m["n"]) if m["n"] is not None else None
        return m["label"], int(m["i"]), n
    return desc or None, None, None


def parse_keras(frame: str) -> Bar | None:
    """A Keras progbar frame (``verbose=1``) or its one-line-per-epoch form (``verbose=2``)."""
    if m := _KERAS.match(frame):
        total = None if m["total"] == "Unknown" else int(m["total"])
        n, rate, rest = int(m["n"]), _steps_per_second(m), m["rest"]
    elif m := _KERAS_LINE.match(frame):
        n, total, rest = int(m["n"]), int(m["total"]), m["rest"]
        rate = _steps_per_second(_KERAS_PER.search(rest))
    else:
        return None
    pairs = parse_pairs(rest.lstrip(" -")) if rest.strip() else {}
    return Bar(n, total, "step", rate, None, pairs)


def _steps_per_second(m: re.Match | None) -> float | None:
    """From Keras' ``3ms/step``."""
    if m is None:
        return None
    seconds = float(m["per"]) * _PER[m["per_unit"]]
    return 1.0 / seconds if seconds else None


def parse_rich(frame: str) -> Bar | None:
    if "•" not in frame:
        return None
    glyphs = _RICH_GLYPHS.search(frame)
    desc = frame[: glyphs.start()] if glyphs else ""
    if not desc[:1].strip() or desc == desc.rstrip():  # "DESC  ━━━": text, spaces, the bar
        return None
    m = _RICH_TAIL.match(frame, glyphs.start())
    if not m:
        return None
    rate = float(m["rate"]) if m["rate"] else None
    if rate and m["rate_unit"] == "s/it":
        rate = 1.0 / rate
    total = None if m["total"] == "?" else int(m["total"])
    pairs = {k: v for k, v in parse_pairs(m["rest"]).items() if k not in NOT_METRICS}
    return Bar(int(m["n"]), total, "it", rate, desc.rstrip(), pairs)


def rich_continuation(frame: str) -> dict[str, float]:
    """The wrapped second line of a rich bar holds only ``name: value`` pairs."""
    if _RICH_PAIRS_ONLY.match(frame):
        return {k: v for k, v in parse_pairs(frame).items() if k not in NOT_METRICS}
    return {}
