"""The "GPU Jobs" sidebar in a real JupyterLab, in headless Chromium: a job submitted over the
REST API shows up as running, and its Cancel button (after the confirmation dialog) cancels it.

Needs the lab extension in the virtualenv (``gpu_magic/labextension`` installed as
``share/jupyter/labextensions/gpu-magic-labextension``). Screenshots go to
``build/test-artifacts/`` (``sidebar.png``: the running job; ``sidebar-cancelled.png``: after).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
SIDEBAR = ".gpu-magic-sidebar"
TAB = '.jp-SideBar .lm-TabBar-tab[data-id="gpu-magic-jobs"]'
EXTENSION = "gpu-magic-labextension"
JS_FEDERATED = """() => JSON.parse(document.getElementById('jupyter-config-data').textContent)
  .federated_extensions.map(e => e.name)"""
JOB = {"code": "import time\ntime.sleep(20)", "cluster": "local", "name": "sidebar-test"}


@pytest.mark.timeout(180)
def test_sidebar_lists_and_cancels_a_running_job(lab, page, page_errors):
    page.goto(f"{lab.url}/lab")
    federated = page.evaluate(JS_FEDERATED)
    assert EXTENSION in federated, (
        f"{EXTENSION} is not installed in this virtualenv (Lab has {federated}): "
        "pip install -e . builds and installs it"
    )
    # the launcher shows once Lab has restored its layout: the tab then tells open from closed
    page.locator(".jp-LauncherCard").first.wait_for(state="visible", timeout=60_000)
    tab = page.locator(TAB)
    tab.wait_for(state="visible")
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()  # a click on the open panel's tab would close it
    sidebar = page.locator(SIDEBAR)
    sidebar.wait_for(state="visible")
    assert sidebar.locator(".gpu-magic-title").inner_text().strip().lower() == "gpu jobs"

    # submitted while the sidebar is open: the sidebar's polling finds it
    job_id = lab.api("/gpu-jobs/submit", method="POST", body=JOB)["id"]
    row = sidebar.locator(f'.gpu-magic-job-row[data-job-id="{job_id}"]')
    running = sidebar.locator(
        f'.gpu-magic-job-row[data-job-id="{job_id}"][data-status="running"]',
        has_text="sidebar-test",
    )
    running.wait_for(state="visible", timeout=30_000)
    assert row.locator(".gpu-magic-job-status").inner_text().strip() == "running"
    assert "local" in row.locator(".gpu-magic-job-cluster").inner_text()
    page.wait_for_function(  # the elapsed time counts up while it runs
        """(sel) => /^[1-9]\\d*s$/.test(document.querySelector(sel)?.innerText.trim() || '')""",
        arg=f'.gpu-magic-job-row[data-job-id="{job_id}"] .gpu-magic-job-elapsed',
        timeout=10_000,
    )
    sidebar.locator(".gpu-magic-refresh").click()  # a refresh keeps the row (and its buttons)
    running.wait_for(state="visible")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sidebar.screenshot(path=str(ARTIFACTS / "sidebar.png"))

    # Cancel asks first; the dialog's accept button then cancels the job
    cancel = row.locator(".gpu-magic-cancel")
    cancel.wait_for(state="visible")
    cancel.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(state="visible")
    assert "sidebar-test" in dialog.inner_text()
    accept = dialog.locator(".jp-Dialog-button.jp-mod-accept")
    accept.wait_for(state="visible")
    accept.click()
    dialog.wait_for(state="hidden")
    sidebar.locator(
        f'.gpu-magic-job-row[data-job-id="{job_id}"][data-status="cancelled"]'
    ).wait_for(state="visible", timeout=30_000)

    status = row.locator(".gpu-magic-job-status").inner_text().strip()
    assert status == "cancelled", status
    assert cancel.is_hidden(), "a cancelled job still offers Cancel"
    assert lab.api(f"/gpu-jobs/{job_id}/status")["status"] == "cancelled"
    assert re.fullmatch(r"\d+s", row.locator(".gpu-magic-job-elapsed").inner_text().strip())
    sidebar.screenshot(path=str(ARTIFACTS / "sidebar-cancelled.png"))
    page.screenshot(path=str(ARTIFACTS / "sidebar-page.png"), full_page=True)
    assert not page_errors, page_errors
