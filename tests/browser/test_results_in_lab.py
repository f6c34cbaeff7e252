"""The panel's Results section in a real JupyterLab, in headless Chromium.

A ``--fetch manual`` job on the built-in ``local`` cluster writes a 5 MB file and a numpy model
under ``outputs/``. Once it has ended, the panel's Results section offers Collect; the test
clicks it, then Fetch on the big file (a ✓ and its local path appear) and Load on the model (the
section says which variable it filled). Screenshot: ``build/test-artifacts/results.png``.
"""

from __future__ import annotations

import pytest
from test_panel_in_lab import ARTIFACTS, PANEL, open_notebook, run_all_cells, write_notebook

RESULTS = f"{PANEL} .gpu-magic-results"
JOB_CELL = """\
%%gpu_submit --name browser-results --fetch manual --outputs y
import os
import numpy as np
os.makedirs("../outputs", exist_ok=True)
np.save("../outputs/model.npy", np.arange(12.0).reshape(3, 4))
with open("../outputs/weights.bin", "wb") as f:
    f.write(os.urandom(5_000_000))
y = 1
"""


def row(page, name: str):
    return page.locator(f"{RESULTS} .gpu-magic-results-row", has_text=name)


@pytest.mark.timeout(300)
def test_results_section_collects_fetches_and_loads_in_jupyterlab(fresh_lab, page, page_errors):
    lab = fresh_lab
    open_notebook(page, lab, write_notebook(lab.root_dir, "results.ipynb", JOB_CELL))
    run_all_cells(page)

    collect = page.locator(f"{RESULTS} button.gpu-magic-results-retry", has_text="Collect")
    collect.wait_for(state="visible", timeout=60_000)  # the job ended; nothing collected yet
    note = page.locator(f"{RESULTS} .gpu-magic-results-note")
    assert "not collected yet" in note.inner_text()
    collect.click()

    weights = row(page, "outputs/weights.bin")
    weights.wait_for(state="visible", timeout=30_000)
    assert "5.0 MB" in weights.inner_text() and "✓" not in weights.inner_text()
    assert row(page, "outputs/y.pkl").inner_text().count("✓") == 1  # collected eagerly
    weights.locator("button.gpu-magic-results-fetch").click()
    page.wait_for_function(
        f"""() => Array.from(document.querySelectorAll('{RESULTS} .gpu-magic-results-row'))
          .some(r => r.innerText.includes('outputs/weights.bin') && r.innerText.includes('✓')
                     && r.innerText.includes('/results/'))""",
        timeout=30_000,
    )
    bar = page.locator(f"{RESULTS} .gpu-magic-transfer-text")
    page.wait_for_function(
        f"() => /^done: 5\\.0 MB in /.test(document.querySelector('{RESULTS} "
        ".gpu-magic-transfer-text')?.innerText || '')",
        timeout=10_000,
    )

    row(page, "outputs/model.npy").locator("button.gpu-magic-results-load").click()
    message = page.locator(f"{RESULTS} .gpu-magic-results-message")
    message.filter(has_text="as model (ndarray)").wait_for(state="visible", timeout=30_000)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    results = page.locator(RESULTS)
    results.scroll_into_view_if_needed()
    results.screenshot(path=str(ARTIFACTS / "results.png"))
    assert not page_errors, page_errors
    print(f"bar: {bar.inner_text()}\nmessage: {message.inner_text()}")
