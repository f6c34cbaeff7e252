"""The "GPU Jobs" extension's filters, ETA, status-bar item and notifications in a real
JupyterLab, in headless Chromium.

- the search box narrows the list by name, the status filter "active" hides a finished job;
- the ETA shows next to the progress bar (progress injected by routing the job list);
- the status bar reads "GPU: 1 running" while a job sleeps, and a click on it shows the sidebar;
- a job that ends while Lab watches gives a "completed" toast whose "Open" highlights its row;
- a tab in the background (and notifications allowed) gets a browser notification too, and a
  click on it opens the job page.

Screenshots go to ``build/test-artifacts/`` (``lab-filters.png``, ``lab-eta.png``,
``lab-statusbar.png``, ``lab-notification.png``, ``lab-notification-open.png``).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from conftest import ACTIVE

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
SIDEBAR = ".gpu-magic-sidebar"
TAB = '.jp-SideBar .lm-TabBar-tab[data-id="gpu-magic-jobs"]'
STATUS_ITEM = ".gpu-magic-statusbar"


def row_selector(job_id: str, status: str | None = None) -> str:
    selector = f'.gpu-magic-job-row[data-job-id="{job_id}"]'
    return selector + (f'[data-status="{status}"]' if status else "")


def wait_for_status(lab, job_id: str, wanted: set[str], timeout: float = 60.0) -> str:
    """Poll the REST API (bounded) until the job is in one of ``wanted``."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = lab.api(f"/gpu-jobs/{job_id}/status")["status"]
        if status in wanted:
            return status
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} is {status!r}, not one of {sorted(wanted)}")


def wait_until_idle(lab, timeout: float = 60.0) -> None:
    """No job of earlier tests is still active (the status-bar counts every job)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = lab.api("/gpu-jobs?limit=100")["jobs"]
        if not any(job["status"] in ACTIVE for job in listed):
            return
        time.sleep(0.25)
    raise AssertionError("jobs of earlier tests are still active")


def open_lab(lab, page, sidebar: bool = True):
    page.goto(f"{lab.url}/lab")
    page.locator(".jp-LauncherCard").first.wait_for(state="visible", timeout=60_000)
    tab = page.locator(TAB)
    tab.wait_for(state="visible")
    is_open = "lm-mod-current" in (tab.get_attribute("class") or "")
    if sidebar != is_open:
        tab.click()
    panel = page.locator(SIDEBAR)
    panel.wait_for(state="visible" if sidebar else "hidden")
    return panel


@pytest.mark.timeout(180)
def test_search_and_status_filter(lab, page, page_errors, jobs):
    tag = uuid.uuid4().hex[:6]
    done_id = jobs("print('done')", f"filter-done-{tag}")
    wait_for_status(lab, done_id, {"completed"})
    busy_id = jobs("import time\ntime.sleep(30)", f"filter-busy-{tag}")
    wait_for_status(lab, busy_id, {"running"})

    sidebar = open_lab(lab, page)
    done = sidebar.locator(row_selector(done_id, "completed"))
    busy = sidebar.locator(row_selector(busy_id, "running"))
    done.wait_for(state="visible")
    busy.wait_for(state="visible")

    search = sidebar.locator(".gpu-magic-search")
    search.fill(f"FILTER-BUSY-{tag}")  # substring, case-insensitive
    done.wait_for(state="hidden")
    busy.wait_for(state="visible")
    shown = sidebar.locator(".gpu-magic-job-row:visible")
    assert shown.count() == 1, shown.all_inner_texts()
    search.fill(tag)
    done.wait_for(state="visible")
    assert shown.count() == 2, shown.all_inner_texts()

    status = sidebar.locator(".gpu-magic-filter-status")
    values = status.locator("option").evaluate_all("(os) => os.map(o => o.value)")
    assert values[:2] == ["all", "active"] and {"completed", "running", "lost"} <= set(values)
    status.select_option("active")
    done.wait_for(state="hidden")
    busy.wait_for(state="visible")
    status.select_option("completed")
    busy.wait_for(state="hidden")
    done.wait_for(state="visible")
    status.select_option("all")

    cluster = sidebar.locator(".gpu-magic-filter-cluster")
    page.wait_for_function(
        """(sel) => [...document.querySelector(sel).options].some(o => o.value === 'local')""",
        arg=f"{SIDEBAR} .gpu-magic-filter-cluster",
    )
    cluster.select_option("local")
    busy.wait_for(state="visible")
    done.wait_for(state="visible")
    search.fill("no-such-job-name")
    busy.wait_for(state="hidden")
    message = sidebar.locator(".gpu-magic-message")
    message.wait_for(state="visible")
    assert "no job matches" in message.inner_text().lower()
    search.fill(tag)
    status.select_option("active")
    busy.wait_for(state="visible")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sidebar.screenshot(path=str(ARTIFACTS / "lab-filters.png"))
    assert not page_errors, page_errors


@pytest.mark.timeout(120)
def test_eta_next_to_the_progress_bar(lab, page):
    """Progress of a running job, as the server reports it, injected into the job list."""
    job = {
        "id": "eta-job-1",
        "name": "eta-job",
        "status": "running",
        "cluster": "local",
        "created_at": "2026-01-01T00:00:00+00:00",
        "started_at": "2026-01-01T00:00:00+00:00",
        "ended_at": None,
        "exit_code": None,
        "error": None,
        "gpus": 1,
        "progress": {
            "step": 40,
            "total": 100,
            "fraction": 0.4,
            "rate": 2.0,
            "remaining_s": 185.0,
            "epoch": None,
            "epochs": None,
            "unit": "it",
            "finish_at": "2026-01-01T00:05:00+00:00",
            "hint": "step 40/100",
        },
    }
    body = json.dumps({"jobs": [job], "cursor": None})
    page.route(
        lambda url: "/gpu-jobs?limit=" in url,
        lambda route: route.fulfill(status=200, content_type="application/json", body=body),
    )
    sidebar = open_lab(lab, page)
    row = sidebar.locator(row_selector("eta-job-1", "running"))
    row.wait_for(state="visible")
    eta = row.locator(".gpu-magic-job-eta")
    eta.wait_for(state="visible")
    assert eta.inner_text().strip() == "ETA 3m 05s"
    assert row.locator(".gpu-magic-job-progress-label").inner_text().strip() == "40%"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sidebar.screenshot(path=str(ARTIFACTS / "lab-eta.png"))


@pytest.mark.timeout(180)
def test_status_bar_counts_running_jobs_and_opens_the_sidebar(lab, page, page_errors, jobs):
    wait_until_idle(lab)
    open_lab(lab, page, sidebar=False)  # the status bar polls on its own
    item = page.locator(STATUS_ITEM)
    item.wait_for(state="visible")
    page.wait_for_function(
        """(sel) => document.querySelector(sel)?.innerText.trim() === 'GPU: idle'""",
        arg=STATUS_ITEM,
    )
    job_id = jobs("import time\ntime.sleep(30)", "statusbar-test")
    wait_for_status(lab, job_id, {"running"})
    page.wait_for_function(
        """(sel) => document.querySelector(sel)?.innerText.trim() === 'GPU: 1 running'""",
        arg=STATUS_ITEM,
        timeout=15_000,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(".jp-StatusBar-Widget, #jp-main-statusbar").first.screenshot(
        path=str(ARTIFACTS / "lab-statusbar.png")
    )
    item.click()
    sidebar = page.locator(SIDEBAR)
    sidebar.wait_for(state="visible")
    sidebar.locator(row_selector(job_id, "running")).wait_for(state="visible")
    lab.api(f"/gpu-jobs/{job_id}/cancel", method="POST")
    page.wait_for_function(
        """(sel) => document.querySelector(sel)?.innerText.trim() === 'GPU: idle'""",
        arg=STATUS_ITEM,
        timeout=30_000,
    )
    assert not page_errors, page_errors


@pytest.mark.timeout(180)
def test_job_that_ends_while_lab_watches_notifies(fresh_lab, page, page_errors, jobs):
    lab = fresh_lab  # leaves no job page open: the next test starts on the launcher
    finished_id = jobs("print('already done')", "notify-old")
    wait_for_status(lab, finished_id, {"completed"})

    sidebar = open_lab(lab, page, sidebar=False)  # the status bar's polling sees the job
    page.locator(STATUS_ITEM).wait_for(state="visible")
    job_id = jobs("import time\ntime.sleep(6)", "notify-test")
    page.wait_for_function(  # seen active before it ends
        """(sel) => /running|queued|pending/.test(document.querySelector(sel)?.innerText || '')""",
        arg=STATUS_ITEM,
        timeout=30_000,
    )
    toast = page.locator(".Toastify__toast", has_text="GPU job notify-test completed")
    toast.wait_for(state="visible", timeout=60_000)
    assert "completed" in toast.locator(".jp-toast-message").inner_text()
    # a job already finished when Lab first saw it never notifies
    assert page.locator(".Toastify__toast", has_text="notify-old").count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab-notification.png"))

    toast.locator(".jp-toast-button", has_text="Open").click()
    sidebar.wait_for(state="visible")
    row = sidebar.locator(row_selector(job_id, "completed") + ".gpu-magic-job-row--highlight")
    row.wait_for(state="visible", timeout=10_000)
    assert sidebar.locator(".gpu-magic-job-row--highlight").count() == 1
    sidebar.screenshot(path=str(ARTIFACTS / "lab-notification-open.png"))
    assert not page_errors, page_errors


@pytest.mark.timeout(120)
def test_settings_schema_and_palette_commands(lab, page):
    plugin = lab.api("/lab/api/settings/gpu-magic-labextension:plugin")
    properties = plugin["schema"]["properties"]
    assert properties["refreshInterval"]["default"] == 2000
    assert properties["refreshInterval"]["minimum"] == 500
    assert properties["notifications"]["default"] is True
    assert properties["notifyStates"]["default"] == [
        "completed",
        "failed",
        "cancelled",
        "timeout",
        "lost",
    ]

    open_lab(lab, page, sidebar=False)
    for label in ("GPU Jobs: Refresh", "GPU Jobs: Show"):
        page.keyboard.press("Control+Shift+C")
        palette = page.locator(".jp-ModalCommandPalette")
        palette.wait_for(state="visible")
        palette.locator("input").fill(label)
        item = palette.locator(".lm-CommandPalette-item", has_text=label).first
        item.wait_for(state="visible")
        item.click()
        palette.wait_for(state="hidden")
    page.locator(SIDEBAR).wait_for(state="visible")


@pytest.mark.timeout(180)
def test_notify_states_setting_limits_the_toasts(lab, page, jobs):
    """With ``notifyStates: ["failed"]`` a failed job notifies and a completed one does not."""
    url = "/lab/api/settings/gpu-magic-labextension:plugin"
    before = lab.api(url)["raw"]
    lab.api(url, method="PUT", body={"raw": json.dumps({"notifyStates": ["failed"]})})
    try:
        open_lab(lab, page, sidebar=False)
        item = page.locator(STATUS_ITEM)
        item.wait_for(state="visible")
        page.wait_for_function(
            """(sel) => /^GPU: /.test(document.querySelector(sel)?.innerText || '')
              && !document.querySelector(sel).innerText.includes('…')""",
            arg=STATUS_ITEM,
        )
        done_id = jobs("import time\ntime.sleep(6)", "quiet-done")
        failed_id = jobs("import time\ntime.sleep(9)\nraise SystemExit(3)", "loud-failed")
        page.wait_for_function(  # both seen running, so both would notify but for the setting
            """(sel) => document.querySelector(sel)?.innerText.trim() === 'GPU: 2 running'""",
            arg=STATUS_ITEM,
            timeout=30_000,
        )
        wait_for_status(lab, done_id, {"completed"})
        toast = page.locator(".Toastify__toast", has_text="GPU job loud-failed failed")
        toast.wait_for(state="visible", timeout=60_000)
        assert wait_for_status(lab, failed_id, {"failed"}) == "failed"
        assert page.locator(".Toastify__toast", has_text="quiet-done").count() == 0
    finally:
        lab.api(url, method="PUT", body={"raw": before or "{}"})


# The tab in the background, as the browser tells the page; every Notification the page makes
# is recorded, then made for real (the context granted the permission).
JS_BACKGROUND_TAB = """() => {
  Object.defineProperty(document, 'hidden', {get: () => true, configurable: true});
  const Real = window.Notification;
  window.__gpuMagicNotes = [];
  window.Notification = class extends Real {
    constructor(title, options) {
      super(title, options);
      window.__gpuMagicNotes.push({title, tag: options && options.tag, note: this});
    }
  };
}"""


@pytest.mark.timeout(180)
def test_a_background_tab_gets_a_browser_notification_that_opens_the_job(
    fresh_lab, page, page_errors, jobs
):
    lab = fresh_lab  # leaves no job page open: the next test starts on the launcher
    page.context.grant_permissions(["notifications"])
    open_lab(lab, page, sidebar=False)
    assert page.evaluate("() => Notification.permission") == "granted"
    job_id = jobs("import time\ntime.sleep(4)", "notify-background")
    page.wait_for_function(
        """(sel) => /running|queued|pending/.test(document.querySelector(sel)?.innerText || '')""",
        arg=STATUS_ITEM,
        timeout=30_000,
    )
    page.evaluate(JS_BACKGROUND_TAB)  # the person switched to another tab
    page.wait_for_function("() => window.__gpuMagicNotes.length > 0", timeout=60_000)
    notes = page.evaluate("() => window.__gpuMagicNotes.map(n => [n.title, n.tag])")
    assert notes == [["GPU job notify-background completed", f"gpu-magic-{job_id}"]]
    page.evaluate("() => window.__gpuMagicNotes[0].note.onclick()")  # the person clicks it
    opened = page.locator('.gpu-magic-job-page[data-status="completed"]')
    opened.wait_for(state="visible", timeout=30_000)
    assert opened.locator(".gpu-magic-fact-job").inner_text() == job_id
    assert not page_errors, page_errors
