"""The first ``%%gpu_submit`` of a fresh kernel: how long the cell takes to return, and how long
until the panel's charts exist (built on the chart thread since wave 2).

Each run starts a new kernel (jupyter_client), loads the extension and submits a one-line cell
to the built-in ``local`` cluster; the cell's wall time is measured inside the kernel, then the
kernel is polled until ``panel.loss_chart`` is set. A plain ``import plotly.graph_objects`` +
first ``FigureWidget()`` in the same fresh kernel is timed beside it: the cost that used to sit
inside the first submit.

    .venv/bin/python bench/bench_first_submit.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.kernel import Kernel  # noqa: E402
from timing import summary  # noqa: E402

SUBMIT = """
import time
from gpu_magic.ui import charts
_t0 = time.perf_counter()
"""
CELL = "%%gpu_submit --name bench-first\nx = 1\n"
AFTER = "_t_cell = time.perf_counter() - _t0"
CHARTS = """
import gc
from gpu_magic.ui.panel import JobPanel
panels = [o for o in gc.get_objects() if isinstance(o, JobPanel)]
if hasattr(panels[0], "figures"):  # before wave 2 the cell itself built them
    panels[0].figures.result(timeout=60)
print(json.dumps({"cell": _t_cell, "charts": time.perf_counter() - _t0}))
"""
PLOTLY = """
import json, time
_t0 = time.perf_counter()
import plotly.graph_objects as go
go.FigureWidget()
print(json.dumps({"plotly": time.perf_counter() - _t0}))
"""


def one_run(folder: Path) -> dict[str, float]:
    env = {"GPU_MAGIC_CONFIG_DIR": str(folder / "config"), "GPU_MAGIC_DATA_DIR": str(folder)}
    env["GPU_CLUSTER_BASE_PATH"] = str(folder / "jobs")
    kernel = Kernel(env, str(folder))
    try:
        kernel.run("%load_ext gpu_magic\nimport json")
        kernel.run(SUBMIT)
        kernel.run(CELL)
        kernel.run(AFTER)
        figures = json.loads(kernel.run(CHARTS).stdout.strip().splitlines()[-1])
    finally:
        kernel.shutdown()
    kernel = Kernel(env, str(folder))
    try:
        plotly = json.loads(kernel.run(PLOTLY).stdout.strip().splitlines()[-1])
    finally:
        kernel.shutdown()
    return {**figures, **plotly}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="gm-first-") as tmp:
            runs.append(one_run(Path(tmp)))
    print(f"first %%gpu_submit in a fresh kernel, local cluster, {args.runs} runs")
    for key, label in (
        ("cell", "the submit cell returns"),
        ("charts", "its panel's charts exist"),
        ("plotly", "plotly import + first FigureWidget alone"),
    ):
        print(f"  {label:44} {summary([r[key] * 1000 for r in runs])}")


if __name__ == "__main__":
    main()
