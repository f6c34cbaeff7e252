"""Hostile strings for property tests: shell metacharacters, injections that would create
``CANARY``, newlines, quotes, unicode, leading ``-`` and very long values, mixed with
hypothesis's own text."""

from __future__ import annotations

from hypothesis import strategies as st

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
