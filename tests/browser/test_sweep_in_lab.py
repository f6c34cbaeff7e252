"""A sweep's grouped panel in a real JupyterLab, in headless Chromium: one cell runs a 2x2
sweep on the built-in ``local`` cluster; the test checks what a person sees: one row per member
with its parameters and final loss, the best one marked ★, one chart with a line per member,
and a click on a row opening that member's own panel. Screenshot: ``build/test-artifacts/
sweep.png``."""

from __future__ import annotations

import pytest
from test_panel_in_lab import ARTIFACTS, JS_CHART, open_notebook, run_all_cells, write_notebook

SWEEP_CELL = """\
%%gpu_submit --name browser-sweep --sweep lr=0.1,0.2 --sweep bs=1,2
import time
for epoch in range(1, 4):
    print(f"epoch {epoch} loss={lr * bs / epoch:.4f}", flush=True)
    time.sleep(0.2)
"""
SWEEP = ".gpu-magic-sweep"
GRID = f"{SWEEP} .gpu-magic-jobs-grid"

JS_GRID = """(grid) => {
  const table = document.querySelector(grid);
  if (!table) return null;
  const cells = tr => Array.from(tr.cells, c => c.innerText.trim());
  return {
    head: cells(table.tHead.rows[0]),
    rows: Array.from(table.tBodies[0].rows, cells),
    best: Array.from(table.querySelectorAll('.gpu-magic-job-row-best'), cells),
  };
}"""


@pytest.mark.timeout(300)
def test_a_sweep_shows_its_members_best_and_one_chart_in_jupyterlab(lab, page, page_errors):
    name = write_notebook(lab.root_dir, "sweep.ipynb", SWEEP_CELL)
    open_notebook(page, lab, name)
    run_all_cells(page)

    widget_error = page.get_by_text("Error displaying widget")
    page.locator(GRID).or_(widget_error).first.wait_for(state="visible", timeout=60_000)
    assert not widget_error.count(), widget_error.first.inner_text()
    page.wait_for_function(
        f"() => {{ const g = ({JS_GRID})({GRID!r}); return !!g && g.rows.length === 4"
        " && g.rows.every(r => r.includes('completed')) && g.best.length === 1; }",
        timeout=90_000,
    )
    grid = page.evaluate(JS_GRID, GRID)
    assert grid["head"][:3] == ["member", "lr", "bs"] and "loss" in grid["head"], grid
    loss = grid["head"].index("loss")
    assert [row[1:3] for row in grid["rows"]] == [["0.1", "1"], ["0.1", "2"], ["0.2", "1"],
                                                  ["0.2", "2"]]  # fmt: skip
    assert [row[loss] for row in grid["rows"]] == ["0.0333", "0.0667", "0.0667", "0.1333"]
    assert grid["best"][0][0].startswith("0") and grid["best"][0][1:3] == ["0.1", "1"]
    header = page.locator(f"{SWEEP} .gpu-magic-sweep-header").inner_text()
    assert "4 members (4 completed); ★ best min loss" in header

    chart = f"{SWEEP} .js-plotly-plot.gpu-magic-loss-chart"
    page.wait_for_function(
        f"(s) => {{ const c = ({JS_CHART})(s); return !!c && c.traces.length === 4"
        " && c.traces.every(t => t.points === 3) && c.lines.length === 4; }",
        arg=chart,
        timeout=30_000,
    )
    traces = [t["name"] for t in page.evaluate(JS_CHART, chart)["traces"]]
    assert traces == ["0: lr=0.1, bs=1", "1: lr=0.1, bs=2", "2: lr=0.2, bs=1", "3: lr=0.2, bs=2"]

    page.locator(f"{GRID} .gpu-magic-job-row").nth(2).click()
    member = page.locator(f"{SWEEP} .gpu-magic-job-detail .gpu-magic-panel")
    member.wait_for(state="visible", timeout=30_000)
    page.wait_for_function(
        "(s) => (document.querySelector(s)?.innerText || '').includes('completed')",
        arg=f"{SWEEP} .gpu-magic-job-detail .gpu-magic-status",
        timeout=30_000,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(SWEEP).screenshot(path=str(ARTIFACTS / "sweep.png"))
    assert not page_errors, page_errors
