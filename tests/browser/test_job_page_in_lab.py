"""A job's page in the main area of a real JupyterLab, in headless Chromium.

- clicking a sidebar row opens the page: the log streams in over the WebSocket and the metric
  chart gains points while the job runs; the level filter and the search narrow the log;
  once the job completed, its results list a download link that serves the file; a dropped
  log socket (cut by Playwright's WebSocket route) resumes with every line once;
- the page reads in the dark theme: text and background keep their contrast (theme variables,
  no hard-coded colours);
- "GPU Jobs: Open Job…" in the command palette opens a failed job by name, and its page shows
  the remote traceback and the failure, classified, with its fix;
- jobs submitted from two notebooks (two kernels) show in the one sidebar, with moving progress
  and a GPU sparkline (the replayed H100), and the job page's GPU chart has its samples.

Screenshots go to ``build/test-artifacts/`` (``job-page.png``, ``job-page-dark.png``,
``job-page-failed.png``, ``sidebar-two-notebooks.png``, ``job-page-gpu.png``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_lab_notifications import open_lab, row_selector, wait_for_status
from test_panel_in_lab import (
    FAKES,
    GPU_SCENARIO,
    open_notebook,
    run_all_cells,
    wait_for_kernel,
    write_notebook,
)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
PAGE = ".gpu-magic-job-page"
TRAIN = """
import json, os, time
print('INFO:root:starting training', flush=True)
for step in range(1, 41):
    print(f'step {step}/40 loss={1 / step:.4f}', flush=True)
    if step % 10 == 0:
        print(f'WARNING:root:checkpoint {step} is slow', flush=True)
    time.sleep(0.3)
os.makedirs('outputs', exist_ok=True)
json.dump({'steps': 40}, open('outputs/summary.json', 'w'))
"""
FAILING = """
def train():
    raise RuntimeError('CUDA out of memory')
print('loading the model', flush=True)
train()
"""
JS_LINES = f"""() => document.querySelectorAll(
  '{PAGE} .gpu-magic-log-line:not(.gpu-magic-log-partial)').length"""
JS_LOSS_POINTS = f"""() => Number(document.querySelector(
  '{PAGE} .gpu-magic-metric-chart polyline[data-series="loss"]')?.dataset.count || 0)"""
JS_CONTRAST = """(sel) => {
  const luminance = (css) => {
    const [r, g, b] = css.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const opaque = (node) => {  // the first ancestor with a background of its own
    for (; node; node = node.parentElement) {
      const bg = getComputedStyle(node).backgroundColor;
      if (!/rgba\\(.*, 0\\)$/.test(bg) && bg !== 'transparent') return bg;
    }
    return 'rgb(255, 255, 255)';
  };
  return [...document.querySelectorAll(sel)].filter(n => n.offsetParent).map(n => {
    const [a, b] = [luminance(getComputedStyle(n).color), luminance(opaque(n))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    return {text: n.innerText.slice(0, 30), ratio};
  });
}"""
READABLE = 4.5  # WCAG AA for normal text


def visible_log(page) -> list[tuple[str, str | None]]:
    return page.locator(f"{PAGE} .gpu-magic-log-line:visible").evaluate_all(
        "(ns) => ns.map(n => [n.textContent, n.dataset.level || null])"
    )


def set_theme(page, name: str, light: bool) -> None:
    """Settings → Theme → ``name`` in Lab's menu bar; waits until the theme applies."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    theme = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$"))
    theme.wait_for(state="visible")
    theme.hover()
    item = page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(name)}$"))
    item.wait_for(state="visible")
    item.click()
    page.wait_for_function(
        "(light) => document.body.dataset.jpThemeLight === String(light)", arg=light
    )


@pytest.mark.timeout(240)
def test_job_page_streams_the_log_and_charts_and_offers_the_results(
    fresh_lab, page, page_errors, jobs
):
    lab = fresh_lab  # leaves no job page open: the next test starts on the launcher
    sidebar = open_lab(lab, page)
    submitted = time.monotonic()
    job_id = jobs(TRAIN, "page-train")
    row = sidebar.locator(row_selector(job_id))
    row.wait_for(state="visible", timeout=30_000)
    print(f"in the sidebar {time.monotonic() - submitted:.2f} s after submission")
    row.click()
    job_page = page.locator(f"{PAGE}[data-status]")
    job_page.wait_for(state="visible", timeout=30_000)
    assert job_page.locator(".gpu-magic-page-title").inner_text().strip() == "page-train"

    # lines stream in and the chart gains points while the job runs
    page.wait_for_function(f"() => ({JS_LINES})() >= 3", timeout=60_000)
    lines, points = page.evaluate(JS_LINES), page.evaluate(JS_LOSS_POINTS)
    assert wait_for_status(lab, job_id, {"running", "completed"}) == "running", "ended too soon"
    page.wait_for_function(f"() => ({JS_LINES})() > {lines}", timeout=30_000)
    page.wait_for_function(f"() => ({JS_LOSS_POINTS})() > {max(points, 1)}", timeout=30_000)
    assert job_page.locator(".gpu-magic-log-state").inner_text() == "live"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    job_page.screenshot(path=str(ARTIFACTS / "job-page.png"))

    # the level filter and the search narrow the log
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{PAGE} .gpu-magic-log-line')]"
        ".some(n => n.dataset.level === 'WARNING')",
        timeout=30_000,
    )
    job_page.locator(".gpu-magic-log-level").select_option("WARNING")
    shown = visible_log(page)
    assert shown and all(level == "WARNING" for _, level in shown), shown
    assert all("checkpoint" in text for text, _ in shown), shown
    job_page.locator(".gpu-magic-log-level").select_option("")
    job_page.locator(".gpu-magic-log-search").fill(r"loss=0\.1")
    shown = visible_log(page)
    assert shown and all(re.search(r"loss=0\.1", text) for text, _ in shown), shown
    job_page.locator(".gpu-magic-log-search").fill("")

    # once completed: the whole log, and a download link per result file
    job_page.locator('.gpu-magic-page-status:text-is("completed")').wait_for(timeout=90_000)
    job_page.locator('.gpu-magic-log-state[data-state="ended"]').wait_for(timeout=30_000)
    texts = [text for text, _ in visible_log(page)]
    assert texts[0] == "INFO:root:starting training" and len(texts) == 45, texts[-3:]
    assert texts.count("step 40/40 loss=0.0250") == 1  # every line once, none twice
    link = job_page.locator('.gpu-magic-result-row[data-path="outputs/summary.json"] a')
    link.wait_for(state="visible", timeout=60_000)
    served = page.request.get(link.get_attribute("href"))
    assert served.ok and json.loads(served.body()) == {"steps": 40}
    assert job_page.locator(".gpu-magic-traceback").is_hidden()
    assert job_page.locator(".gpu-magic-fact-exit-code").inner_text() == "0"
    job_page.screenshot(path=str(ARTIFACTS / "job-page-done.png"))

    # the dark theme: the page's text keeps its contrast
    set_theme(page, "JupyterLab Dark", light=False)
    try:
        checked = page.evaluate(
            JS_CONTRAST,
            f"{PAGE} .gpu-magic-page-title, {PAGE} .gpu-magic-page-facts dd, "
            f"{PAGE} .gpu-magic-log-line, {PAGE} .gpu-magic-chart-title, "
            f"{PAGE} .gpu-magic-result-path",
        )
        assert len(checked) > 10
        unreadable = [c for c in checked if c["ratio"] < READABLE]
        assert not unreadable, unreadable
        job_page.screenshot(path=str(ARTIFACTS / "job-page-dark.png"))
        sidebar.screenshot(path=str(ARTIFACTS / "sidebar-dark.png"))
    finally:
        set_theme(page, "JupyterLab Light", light=True)

    page.reload()  # Lab restores the open job page, with the finished job's whole log
    restored = page.locator(f'{PAGE}[data-status="completed"]')
    restored.wait_for(state="visible", timeout=60_000)
    restored.locator('.gpu-magic-log-state[data-state="ended"]').wait_for(timeout=30_000)
    assert len(visible_log(page)) == 45
    assert not page_errors, page_errors


@pytest.mark.timeout(180)
def test_open_job_command_shows_the_traceback_of_a_failed_job(fresh_lab, page, page_errors, jobs):
    lab = fresh_lab  # leaves no job page open: the next test starts on the launcher
    job_id = jobs(FAILING, "page-fails")
    assert wait_for_status(lab, job_id, {"failed", "completed"}) == "failed"
    page.goto(f"{lab.url}/lab")  # Lab may restore pages of earlier tests: no launcher then
    page.locator(".gpu-magic-statusbar").wait_for(state="visible", timeout=60_000)

    search = page.locator(".lm-CommandPalette-input:visible")
    for _ in range(3):  # the shortcut is lost while Lab still moves the focus about
        page.locator(".jp-LabShell").click(position={"x": 600, "y": 400})
        page.keyboard.press("Control+Shift+C")  # the command palette
        with contextlib.suppress(PlaywrightTimeout):
            search.wait_for(timeout=5_000)
            break
    search.wait_for()
    search.fill("Open Job")
    page.locator(".lm-CommandPalette-item", has_text="GPU Jobs: Open Job").first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("input").fill("page-fails")  # by name
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()

    job_page = page.locator(f'{PAGE}[data-status="failed"]')
    job_page.wait_for(state="visible", timeout=30_000)
    traceback = job_page.locator(".gpu-magic-traceback-text")
    traceback.wait_for(state="visible", timeout=60_000)
    text = traceback.inner_text()
    assert "Traceback (most recent call last)" in text and "in train" in text, text
    assert text.rstrip().endswith("RuntimeError: CUDA out of memory"), text
    assert job_page.locator(".gpu-magic-fact-job").inner_text() == job_id
    assert job_page.locator(".gpu-magic-fact-exit-code").inner_text() not in ("", "0")
    failure = job_page.locator(".gpu-magic-failure")  # classified: the kind and the fix
    failure.wait_for(state="visible", timeout=30_000)
    assert failure.locator(".gpu-magic-failure-kind").inner_text() == "cuda_oom"
    assert failure.locator(".gpu-magic-failure-fix").inner_text().startswith("Fix: ")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    job_page.screenshot(path=str(ARTIFACTS / "job-page-failed.png"))
    assert not page_errors, page_errors


HOLD_S = 240


def notebook_job(name: str, steps: int, gpu: bool, gate: Path | None = None) -> str:
    """A ``%%gpu_submit`` cell printing ``steps`` losses, one each 0.5 s, with the replayed H100
    when ``gpu``. With a ``gate`` it holds after step 5 until that file exists (at most
    ``HOLD_S``: a failed test leaves no job waiting for ever), so a test sees it running for
    as long as it needs, whatever the machine's pace."""
    flags = f"--name {name}"
    if gpu:
        flags += (
            f" --gpus 1 --env PATH={FAKES}:{os.environ['PATH']}"
            f" --env FAKE_NVIDIA_SMI_DIR={GPU_SCENARIO} --env GPU_MAGIC_GPU_SAMPLE_INTERVAL=0.5"
        )
    hold = (
        f"    while step > 5 and not os.path.exists({str(gate)!r}) and time.time() < until:\n"
        "        time.sleep(0.1)\n"
    )
    return (
        f"%%gpu_submit {flags}\nimport os, time\nuntil = time.time() + {HOLD_S}\n"
        f"for step in range(1, {steps} + 1):\n"
        + (hold if gate else "")
        + f"    print(f'step {{step}}/{steps} loss={{1 / step:.4f}}', flush=True)\n"
        "    time.sleep(0.5)\n"
    )


def progress_while_running(page, row, timeout: float = 60) -> list[str]:
    """The row's progress labels, read every 0.25 s until two differ or the job is no longer
    running (the sidebar polls every 2 s)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while row.get_attribute("data-status") == "running" and time.monotonic() < deadline:
        seen.append(row.locator(".gpu-magic-job-progress-label").inner_text().strip())
        if len(set(seen)) >= 2:
            break
        page.wait_for_timeout(250)
    return seen


def show_panel(page, tab_id: str, panel: str) -> None:
    """Click a left-area tab unless its panel is already the one shown."""
    tab = page.locator(f'.jp-SideBar .lm-TabBar-tab[data-id="{tab_id}"]')
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    page.locator(panel).wait_for(state="visible")


@pytest.mark.timeout(300)
def test_jobs_of_two_notebooks_share_the_sidebar_with_progress_and_gpu(
    fresh_lab, page, page_errors
):
    lab = fresh_lab
    gate = lab.root_dir.parent / "first.go"  # outside the notebooks' folder
    first = write_notebook(
        lab.root_dir, "first.ipynb", notebook_job("nb-first", 50, gpu=True, gate=gate)
    )
    second = write_notebook(lab.root_dir, "second.ipynb", notebook_job("nb-second", 12, gpu=False))
    open_notebook(page, lab, first)
    show_panel(page, "gpu-magic-jobs", ".gpu-magic-sidebar")
    run_all_cells(page)
    ran = time.monotonic()
    sidebar = page.locator(".gpu-magic-sidebar")
    row_one = sidebar.locator(".gpu-magic-job-row", has_text="nb-first")
    row_one.wait_for(state="visible", timeout=60_000)
    print(f"in the sidebar {time.monotonic() - ran:.2f} s after the cells started")

    # its progress moves, and its GPU sparkline draws the replayed utilisation
    label = row_one.locator(".gpu-magic-job-progress-label")
    label.wait_for(state="visible", timeout=60_000)
    print(f"its progress {time.monotonic() - ran:.2f} s after the cells started")
    gate.touch()  # the job goes on from step 5
    seen = progress_while_running(page, row_one)
    assert len(set(seen)) >= 2, f"the progress did not move while the job ran: {seen}"
    spark = row_one.locator(".gpu-magic-job-spark svg polyline")
    spark.wait_for(state="attached", timeout=30_000)
    assert row_one.locator(".gpu-magic-job-spark").get_attribute("title").endswith("(mean)")
    assert len(spark.get_attribute("points").split()) >= 2  # the replayed 100 % samples

    # a second notebook, its own kernel: its job joins the same list
    show_panel(page, "filebrowser", ".jp-FileBrowser")
    page.locator(".jp-DirListing-item", has_text=second).dblclick()
    page.locator(".jp-NotebookPanel:visible .jp-Cell").first.wait_for(timeout=60_000)
    wait_for_kernel(page, lab, kernels=2)
    run_all_cells(page)
    show_panel(page, "gpu-magic-jobs", ".gpu-magic-sidebar")
    sidebar.locator(".gpu-magic-job-row", has_text="nb-second").wait_for(timeout=60_000)
    assert row_one.is_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    top, rows = sidebar.bounding_box(), sidebar.locator(".gpu-magic-job-list").bounding_box()
    clip = {**top, "height": rows["y"] + rows["height"] - top["y"] + 8}  # no empty panel below
    page.screenshot(path=str(ARTIFACTS / "sidebar-two-notebooks.png"), clip=clip)

    # the first job's page: its GPU chart has the GPU's samples
    row_one.click()
    job_page = page.locator(f"{PAGE}[data-status]")
    job_page.wait_for(state="visible", timeout=30_000)
    page.wait_for_function(
        f"""() => Number(document.querySelector(
          '{PAGE} .gpu-magic-gpu-chart polyline[data-series="GPU 0"]')?.dataset.count || 0) > 2""",
        timeout=30_000,
    )
    job_page.screenshot(path=str(ARTIFACTS / "job-page-gpu.png"))
    assert not page_errors, page_errors


@pytest.mark.timeout(180)
def test_the_log_resumes_after_a_dropped_socket_with_every_line_once(
    fresh_lab, page, page_errors, jobs
):
    """The page's log socket is cut after its third message (Playwright routes it); the page
    reconnects from where its unfinished line starts, and the log ends with every line once."""
    lab = fresh_lab  # leaves no job page open: the next test starts on the launcher
    sockets: list[str] = []

    def cut_the_first(ws):
        sockets.append(ws.url)
        server = ws.connect_to_server()
        sent = [0]

        def forward(message):
            ws.send(message)
            sent[0] += 1
            if len(sockets) == 1 and sent[0] == 3:
                ws.close()  # the connection drops mid-job

        server.on_message(forward)

    page.route_web_socket(re.compile(r".*/logs/stream.*"), cut_the_first)
    sidebar = open_lab(lab, page)
    job_id = jobs(TRAIN, "page-resume")
    row = sidebar.locator(row_selector(job_id))
    row.wait_for(state="visible", timeout=30_000)
    row.click()
    job_page = page.locator(f'{PAGE}[data-status="completed"]')
    job_page.wait_for(state="visible", timeout=90_000)
    job_page.locator('.gpu-magic-log-state[data-state="ended"]').wait_for(timeout=30_000)
    assert len(sockets) >= 2, sockets
    offsets = [int(re.search(r"offset=(\d+)", url).group(1)) for url in sockets]
    assert offsets[0] == 0 and offsets[1] > 0, sockets  # resumed, not started again
    texts = [text for text, _ in visible_log(page)]
    assert len(texts) == 45 and len(set(texts)) == 45, texts  # every line, none twice
    assert texts[0] == "INFO:root:starting training" and texts[-2] == "step 40/40 loss=0.0250"
    assert not page_errors, page_errors
