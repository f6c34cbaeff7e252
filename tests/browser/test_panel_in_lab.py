"""The live job panel in a real JupyterLab, in headless Chromium, for a job that is running.

A notebook loads the extension and submits a ~30 s job on the built-in ``local`` cluster with the
fake ``nvidia-smi`` first on the job's PATH (a real H100 capture, sampled every 0.5 s). Lab runs
all cells; then, while the job runs, the test checks what a person sees: the panel, an ETA, points
on the loss chart and on the GPU chart (the SVG plotly drew, fitting the panel), the log level
filter hiding INFO lines and the search narrowing the lines. Screenshots go to
``build/test-artifacts/`` (``panel.png``: the panel; ``panel-page.png``: the whole Lab page).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
FAKES = REPO / "tests" / "fakes"
GPU_SCENARIO = REPO / "tests" / "fixtures" / "nvidia_smi" / "h100x1-real-busy"
STEPS = 40
STEP_S = 0.75

JOB_CELL = f"""\
%%gpu_submit --name browser-panel --gpus 1 --env PATH={FAKES}:{os.environ["PATH"]} \
--env FAKE_NVIDIA_SMI_DIR={GPU_SCENARIO} --env GPU_MAGIC_GPU_SAMPLE_INTERVAL=0.5
import logging, time

logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
log = logging.getLogger("train")
log.info("loaded 60000 training examples")
for step in range(1, {STEPS} + 1):
    loss = 2.4 * 0.9 ** step + 0.05
    print(f"step {{step}}/{STEPS} loss={{loss:.4f}}", flush=True)
    if step % 4 == 0:
        log.info("checkpoint saved at step %d", step)
    if step % 6 == 3:
        log.warning("gradient norm above 10 at step %d", step)
    time.sleep({STEP_S})
log.info("done")
"""

PANEL = ".gpu-magic-panel"
TAIL = f"{PANEL} .gpu-magic-log-tail pre"
ETA = f"{PANEL} .gpu-magic-eta"

# What plotly has and drew in one chart. The panel's CSS class lands on plotly's own graph div
# (the anywidget element, ``.js-plotly-plot``): ``data`` are its traces; the drawn lines are the
# SVG ``path.js-line``s, counted in vertices (plotly drops collinear ones: a flat line has 2).
JS_CHART = """(selector) => {
  const gd = document.querySelector(selector);
  if (!gd || !gd.data) return null;
  return {
    traces: Array.from(gd.data, t => ({name: t.name, points: (t.x || []).length})),
    lines: Array.from(gd.querySelectorAll('.scatterlayer .trace path.js-line'),
      p => (p.getAttribute('d') || '').split(/[ML]/).filter(s => s.trim()).length),
  };
}"""


# Each chart's drawn width against its box's: plotly draws 700 px wide unless it sizes the figure
# from its element, and the half-width box would then cut off the right of the chart.
JS_CHART_FITS = """() => Array.from(document.querySelectorAll('.gpu-magic-panel .js-plotly-plot'),
  gd => ({drawn: gd._fullLayout && gd._fullLayout.width,
          box: Math.round(gd.parentElement.getBoundingClientRect().width)}))"""


def charts_fit(page) -> list[dict]:
    page.wait_for_function(
        f"() => {{ const f = ({JS_CHART_FITS})(); "
        "return f.length === 2 && f.every(c => c.drawn && c.drawn <= c.box + 1); }",
        timeout=10_000,
    )
    return page.evaluate(JS_CHART_FITS)


def chart_has_points(trace: str, points: int, vertices: int) -> str:
    """JS: the chart's ``trace`` has ``points`` points and some drawn line ``vertices``."""
    return f"""(selector) => {{
      const c = ({JS_CHART})(selector);
      return !!c && c.traces.some(t => t.name === {trace!r} && t.points >= {points})
        && c.lines.some(n => n >= {vertices});
    }}"""


def write_notebook(root: Path, name: str = "panel.ipynb", job_cell: str = JOB_CELL) -> str:
    """A notebook of two cells, ``%load_ext gpu_magic`` and ``job_cell``; returns its name."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext gpu_magic"),
        nbformat.v4.new_code_cell(job_cell),
    ]
    nbformat.write(nb, root / name)
    return name


def open_notebook(page, lab, name: str) -> None:
    """Lab first, then the notebook from the file browser, as a person does. The launcher's
    kernel card shows that Lab knows its kernelspecs: a notebook opened before that may find no
    kernel to start and ask for one (the "Select Kernel" dialog)."""
    page.goto(f"{lab.url}/lab")
    page.locator(".jp-LauncherCard", has_text="Python 3").first.wait_for(
        state="visible", timeout=60_000
    )
    if not page.locator(".jp-FileBrowser").is_visible():  # Lab restored another left panel
        page.locator('.lm-TabBar-tab[data-id="filebrowser"]').click()
    item = page.locator(".jp-DirListing-item", has_text=name)
    item.wait_for(state="visible")
    item.dblclick()
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible", timeout=60_000)
    wait_for_kernel(page, lab)


def wait_for_kernel(page, lab, timeout: float = 60, settle: int = 4, kernels: int = 1) -> None:
    """Until the status bar says the kernel is Idle and the server sees its ``kernels`` kernels
    idle with a client connected, ``settle`` polls (0.25 s apart) in a row. Lab's toolbar
    indicator reads idle before any kernel is connected, and the first kernel websocket may fail
    and reconnect: a cell run in between can lose its widget messages ("Error displaying widget:
    model not found")."""
    select = page.locator(".jp-Dialog .jp-mod-accept", has_text="Select")
    idle = page.locator(".jp-StatusBar-Item", has_text=re.compile(r"\|\s*Idle\b"))
    deadline, calm = time.monotonic() + timeout, 0
    while calm < settle:
        assert time.monotonic() < deadline, f"no idle, connected kernel in {timeout:.0f} s"
        if select.count() and select.is_visible():  # the kernel dialog, should Lab still ask
            select.click()
        running = lab.kernels()
        ready = len(running) == kernels and idle.count() > 0
        ready = ready and all(k["execution_state"] == "idle" for k in running)
        ready = ready and all(k["connections"] >= 1 for k in running)
        calm = calm + 1 if ready else 0
        page.wait_for_timeout(250)


def run_all_cells(page, tries: int = 3) -> None:
    """Menu Run → Run All Cells (each menu item waited for, visible and enabled, before it is
    clicked); clicked again only while no cell has started, then until every cell's prompt
    shows that it ran or is queued (``[n]`` or ``[*]``)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    run_menu = page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$"))
    item = page.locator(
        ".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
        has_text=re.compile(r"^Run All Cells$"),
    )
    started = """(all) => {
      const prompts = Array.from(document.querySelectorAll('.jp-Notebook .jp-InputPrompt'));
      const test = p => /\\[(\\*|\\d+)\\]/.test(p.innerText);
      return prompts.length > 0 && (all ? prompts.every(test) : prompts.some(test));
    }"""
    for attempt in range(1, tries + 1):
        run_menu.wait_for(state="visible")
        run_menu.click()
        item.wait_for(state="visible")
        item.click()
        try:
            page.wait_for_function(started, arg=False, timeout=5_000)
            break
        except PlaywrightTimeout:
            if attempt == tries:
                raise
    page.wait_for_function(started, arg=True, timeout=30_000)


def tail_lines(page) -> list[str]:
    text = page.locator(TAIL).inner_text()
    return [line for line in text.splitlines() if line.strip()]


def wait_for_lines(page, predicate: str, timeout: float = 30_000) -> None:
    """Wait until ``predicate(lines)`` (a JS arrow function) holds for the shown log tail."""
    page.wait_for_function(
        f"""() => {{
          const pre = document.querySelector({TAIL!r});
          if (!pre) return false;
          const lines = pre.innerText.split('\\n').filter(l => l.trim());
          return ({predicate})(lines);
        }}""",
        timeout=timeout,
    )


@pytest.mark.timeout(300)
def test_panel_of_a_running_job_in_jupyterlab(lab, page, page_errors):
    name = write_notebook(lab.root_dir)
    open_notebook(page, lab, name)
    run_all_cells(page)

    panel = page.locator(PANEL)
    widget_error = page.get_by_text("Error displaying widget")
    panel.or_(widget_error).first.wait_for(state="visible", timeout=60_000)
    assert not widget_error.count(), f"the panel did not render: {widget_error.first.inner_text()}"

    # an ETA while the job runs: "step 7/40 (18%) · 1.27 steps/s · ETA 0:25 left, finishes ..."
    page.wait_for_function(
        f"() => /ETA .+ left/.test(document.querySelector({ETA!r})?.innerText || '')",
        timeout=30_000,
    )
    eta_text = page.locator(ETA).inner_text()
    status = page.locator(f"{PANEL} .gpu-magic-status").inner_text()
    assert "unknown" not in eta_text and re.search(rf"step \d+/{STEPS}", eta_text), eta_text
    assert status.startswith("running"), status

    # points on both charts, as plotly drew them, each chart fitting its half of the panel
    loss_chart = f"{PANEL} .js-plotly-plot.gpu-magic-loss-chart"
    gpu_chart = f"{PANEL} .js-plotly-plot.gpu-magic-gpu-chart"
    page.wait_for_function(chart_has_points("loss", 3, 3), arg=loss_chart, timeout=30_000)
    page.wait_for_function(chart_has_points("GPU0", 3, 2), arg=gpu_chart, timeout=30_000)
    loss = page.evaluate(JS_CHART, loss_chart)
    gpu = page.evaluate(JS_CHART, gpu_chart)
    fits = charts_fit(page)
    assert "GPU0 100%" in page.locator(f"{PANEL} .gpu-magic-gpu-now").inner_text()

    # the level filter: INFO and WARNING lines shown, then only WARNING (and above) ones
    level = page.locator(f"{PANEL} .gpu-magic-log-level select")
    shown_level = level.evaluate("s => s.options[s.selectedIndex]?.text") or ""
    assert shown_level.replace("\xa0", " ") == "all levels", shown_level  # not an empty box
    wait_for_lines(
        page,
        "ls => ls.filter(l => l.startsWith('INFO:')).length >= 2"
        " && ls.filter(l => l.startsWith('WARNING:')).length >= 2",
    )
    before = tail_lines(page)
    level.select_option(label="≥ WARNING")
    # the job's WARNING: lines, and gpu_magic's own "[gpu_magic] warning: ..." about busy GPUs
    wait_for_lines(
        page,
        "ls => ls.length > 0 && ls.every(l => l.startsWith('WARNING:')"
        " || l.startsWith('[gpu_magic] warning:'))",
    )
    warnings = tail_lines(page)
    assert 2 <= len(warnings) < len(before), (before, warnings)
    note = page.locator(f"{PANEL} .gpu-magic-log-note").inner_text().strip()
    assert re.fullmatch(rf"{len(warnings)} of \d+ lines", note), note

    # the search narrows the lines (all levels again)
    level.select_option(label="all levels")
    wait_for_lines(page, "ls => ls.some(l => l.startsWith('step '))")
    everything = tail_lines(page)
    search = page.locator(f"{PANEL} .gpu-magic-log-search input")
    search.fill("checkpoint")
    wait_for_lines(page, "ls => ls.length > 0 && ls.every(l => l.includes('checkpoint'))")
    found = tail_lines(page)
    assert 2 <= len(found) < len(everything), (everything, found)
    search.fill("")
    wait_for_lines(page, "ls => ls.some(l => l.startsWith('step '))")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(ARTIFACTS / "panel.png"))
    page.screenshot(path=str(ARTIFACTS / "panel-page.png"), full_page=True)
    assert widget_error.count() == 0, "a widget failed to render: see panel-page.png"
    assert page.locator(".jp-OutputArea-output[data-mime-type*='stderr']").count() == 0
    assert not page_errors, page_errors

    # a narrower window: the charts follow their boxes
    page.set_viewport_size({"width": 1000, "height": page.viewport_size["height"]})
    page.wait_for_function(
        f"() => ({JS_CHART_FITS})().every(c => c.drawn && c.drawn < {fits[0]['drawn']})",
        timeout=10_000,
    )
    narrow = charts_fit(page)

    print(f"ETA: {eta_text}\nstatus: {status}\nloss chart: {loss}\nGPU chart: {gpu}")
    print(f"chart widths (drawn/box px): {fits}, narrower window: {narrow}")
    print(f"log lines: {len(before)} all, {len(warnings)} WARNING, {len(found)} 'checkpoint'")
