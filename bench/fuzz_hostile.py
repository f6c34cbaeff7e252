"""More hostile examples than CI runs: the property tests of ``test_hostile_input.py`` (real
jobs on the local host and the real sshd) and ``test_hostile_fields.py`` (every checked field
and every magic's line) with ``GPU_MAGIC_HOSTILE_SCALE`` times their CI examples.

    .venv/bin/python bench/fuzz_hostile.py [SCALE]     (default 10; make fuzz)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    scale = sys.argv[1] if len(sys.argv) > 1 else "10"
    env = {**os.environ, "GPU_MAGIC_HOSTILE_SCALE": scale}
    tests = ["tests/test_hostile_input.py", "tests/test_hostile_fields.py"]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider",
         "--hypothesis-show-statistics", "--timeout", "0"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    print(f"hostile inputs at {scale}x the CI examples: {time.monotonic() - start:.0f} s, "
          f"{'no finding' if done.returncode == 0 else 'FINDINGS above'}")  # fmt: skip
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
