"""Hostile strings for property tests: shell metacharacters, injections that would create
``CANARY``, newlines, quotes, unicode, leading ``-`` and very long values, mixed with
hypothesis's own text. ``examples(n)``: CI runs ``n`` examples; ``bench/fuzz_hostile.py``
sets ``GPU_MAGIC_HOSTILE_SCALE`` to run many more."""

from __future__ import annotations

import os

from hypothesis import strategies as st

SCALE = int(os.environ.get("GPU_MAGIC_HOSTILE_SCALE", "1"))


def examples(n: int) -> int:
    return n * SCALE


CANARY = "/tmp/gpu_magic-injection-canary"
ATTACKS = [
    f"; touch {CANARY}", f"$(touch {CANARY})", f"`touch {CANARY}`", f"&& touch {CANARY}",
    f"| touch {CANARY}", f"'; touch {CANARY}; '", f'"; touch {CANARY}; "', "\n", "\r\n",
    "-rf", "--help", "$HOME", "${PATH}", "'", '"', "\\", "*", "~", "%s%n", "é✓🚀", "\t",
    "' \"$(id)\" '", "x" * 5000,
]  # fmt: skip
hostile = st.lists(
    st.one_of(st.sampled_from(ATTACKS), st.text(min_size=1, max_size=40)),
    min_size=1,
    max_size=4,
).map("".join)
