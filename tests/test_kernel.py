"""The magics in a real kernel, and a job that outlives the kernel that submitted it."""

from __future__ import annotations

import re

import pytest
from harness.kernel import Kernel, kernel_env

from gpu_magic import Client
from gpu_magic.parsers.events import strip_ansi

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]


@pytest.fixture
def ssh_kernel_env(ssh_env, tmp_path):
    Client(ssh_env.settings).clusters.add(ssh_env.cluster)
    return kernel_env(ssh_env.settings), ssh_env.cluster.name


def test_magic_round_trip_in_a_real_kernel(ssh_kernel_env, tmp_path):
    env, cluster = ssh_kernel_env
    kernel = Kernel(env, str(tmp_path))
    try:
        assert kernel.run("%load_ext gpu_magic").error is None
        kernel.run("x = 21")
        out = kernel.run(
            f"%%gpu_submit --cluster {cluster} --inputs x --outputs y --wait\ny = x * 2"
        )
        assert out.error is None, out.text
        assert re.search(r"gpu_magic: job \S+ → ssh \| inputs: x \(\d+ B\)", out.stdout)
        assert "loaded y (int)" in out.stdout
        handle = kernel.run("_").results[0]  # the cell's value: the job handle
        assert "completed on ssh" in handle
        assert kernel.run("y").results == ["42"]
    finally:
        kernel.shutdown()


def test_magic_errors_are_usage_errors_and_remote_errors_keep_the_traceback(
    ssh_kernel_env, tmp_path
):
    env, cluster = ssh_kernel_env
    kernel = Kernel(env, str(tmp_path))
    try:
        kernel.run("%load_ext gpu_magic")
        bad = kernel.run("%%gpu_submit --env NOEQUALS\npass")
        assert bad.error == "UsageError: --env expects KEY=VALUE, got 'NOEQUALS'"
        missing = kernel.run("%%gpu_submit --inputs ghost\npass")
        assert missing.error == "UsageError: --inputs: 'ghost' is not defined in the kernel"
        unknown = kernel.run("%%gpu_submit --cluster nowhere\npass")
        assert unknown.error.startswith("UsageError: unknown cluster 'nowhere'")
        remote = kernel.run(f"%%gpu_submit --cluster {cluster} --wait\nnumbers = []\nnumbers[3]")
        assert remote.error.startswith("RemoteJobError: job ")
        assert "IndexError: list index out of range" in remote.error
        assert "numbers[3]" in remote.error
        shown = strip_ansi("\n".join(remote.traceback))
        assert "numbers[3]" in shown and "main.py" in shown  # the cell's own frame, from the host
        assert "gpu_magic/" not in shown and "site-packages" not in shown  # none of ours
        help_text = kernel.run("%%gpu_submit --help\npass")
        assert help_text.error is None and "--inputs A,B" in help_text.stdout
        for magic in ("gpu_status", "gpu_logs", "gpu_cancel", "gpu_fetch", "gpu_cluster"):
            shown = kernel.run(f"%{magic} --help")
            assert shown.error is None and f"%{magic}" in shown.stdout, shown.text
    finally:
        kernel.shutdown()


def test_a_new_kernel_sees_and_fetches_a_job_of_a_dead_kernel(ssh_kernel_env, tmp_path):
    env, cluster = ssh_kernel_env
    first = Kernel(env, str(tmp_path))
    try:
        first.run("%load_ext gpu_magic")
        first.run("base = 5")
        submitted = first.run(
            f"%%gpu_submit --cluster {cluster} --name survivor --inputs base --outputs result\n"
            "import time\ntime.sleep(2)\nresult = base ** 3"
        )
        assert submitted.error is None, submitted.text
        job_id = re.search(r"<JobHandle (\S+) name=survivor", submitted.results[0]).group(1)
    finally:
        first.shutdown()  # the kernel dies while the job is still running

    second = Kernel(env, str(tmp_path))
    try:
        second.run("%load_ext gpu_magic")
        table = second.run("%gpu_status").text
        assert job_id in table and "survivor" in table
        fetched = second.run("%gpu_fetch survivor --wait --timeout 60")
        assert fetched.error is None, fetched.text
        assert second.run("result").results == ["125"]
        details = second.run(f"%gpu_status {job_id} --details").stdout
        assert "completed" in details and "running" in details  # the recorded history
    finally:
        second.shutdown()


@pytest.fixture
def magic_kernel(ssh_kernel_env, tmp_path):
    """A real kernel with ``%load_ext gpu_magic`` done, and the ssh cluster's name."""
    env, cluster = ssh_kernel_env
    kernel = Kernel(env, str(tmp_path))
    try:
        assert kernel.run("%load_ext gpu_magic").error is None
        yield kernel, cluster
    finally:
        kernel.shutdown()


def test_a_mistyped_output_is_warned_about_and_loses_no_other(magic_kernel):
    kernel, cluster = magic_kernel
    cell = f"%%gpu_submit --cluster {cluster} --outputs model,histroy --wait\n"
    out = kernel.run(cell + "model = [1, 2]\nhistory = {'loss': [0.5]}")
    assert (
        "gpu_magic: warning: --outputs 'histroy' (did you mean 'history'?) is never "
        "assigned in the cell" in out.stdout
    )
    assert out.stdout.index("→ " + cluster) < out.stdout.index("warning: --outputs")
    assert "loaded model (list)" in out.stdout  # kept
    assert out.error.startswith("RemoteJobError: ") and "'histroy' was not defined" in out.error
    assert "saved: model" in out.error
    assert kernel.run("model").results == ["[1, 2]"]


def test_a_second_job_with_the_same_name_is_announced(magic_kernel):
    kernel, cluster = magic_kernel
    first = kernel.run(f"%%gpu_submit --cluster {cluster} --name exp --wait\nx = 1")
    assert "also named" not in first.stdout
    first_id = re.search(r"gpu_magic: job (\S+) →", first.stdout).group(1)
    second = kernel.run(f"%%gpu_submit --cluster {cluster} --name exp --wait\nx = 2")
    assert f"note: job {first_id} (completed) is also named 'exp'" in second.stdout
    second_id = re.search(r"gpu_magic: job (\S+) →", second.stdout).group(1)
    assert second_id in kernel.run("%gpu_status exp --details").stdout  # the newest


def test_pandas_is_imported_once_on_the_kernels_thread_with_the_panel(magic_kernel):
    """plotly imports pandas on the chart thread while ``job.metrics()`` imports it on the
    kernel's: two threads importing it at once see a half-initialised module. The UI imports it
    first, on the kernel's thread; a metrics call right after a submit prints no traceback."""
    kernel, cluster = magic_kernel
    assert kernel.run("import sys; 'pandas' in sys.modules").results == ["False"]
    code = "for i in range(1, 6):\n    print(f'step {i}/5 loss={1/i}')"
    out = kernel.run(f"%%gpu_submit --cluster {cluster} --name m\n{code}")
    assert out.error is None, out.text
    assert kernel.run("job = _\nsys.modules['pandas'].Series.__name__").results == ["'Series'"]
    rows = kernel.run("job.wait(60)\nlen(job.metrics())")
    assert rows.error is None and rows.results == ["5"], rows.text
    assert "updating a widget failed" not in rows.text + out.text


def test_the_first_submit_returns_before_its_charts_are_built(magic_kernel):
    """A kernel's first FigureWidget takes seconds; the submit does not wait for it: here the
    chart thread is held until the cell has returned, and the charts appear afterwards."""
    kernel, cluster = magic_kernel
    hold = (
        "import threading\nfrom gpu_magic.ui import charts\nrelease = threading.Event()\n"
        "build = charts._both\ncharts._both = lambda: (release.wait(60), build())[1]"
    )
    assert kernel.run(hold).error is None
    out = kernel.run(f"%%gpu_submit --cluster {cluster}\nx = 1")
    assert out.error is None and "→ " + cluster in out.stdout, out.text
    find = "import gc\nfrom gpu_magic.ui import JobPanel\n"
    find += "panel = [o for o in gc.get_objects() if isinstance(o, JobPanel)][0]\n"
    assert kernel.run(find + "panel.loss_chart is None").results == ["True"]
    ready = (
        "release.set()\nimport time\nt = time.monotonic()\n"
        "while panel.loss_chart is None and time.monotonic() - t < 30:\n    time.sleep(0.05)\n"
        "panel.chart_boxes[0].children == (panel.loss_chart,)"
    )
    assert kernel.run(ready).results == ["True"]


def test_a_sweep_cell_runs_once_per_combination_and_shows_one_grouped_panel(magic_kernel):
    """``--sweep`` with a literal list and an expression over a kernel variable: one handle
    back, the grouped panel displayed, the results table printed with ``--wait``."""
    kernel, cluster = magic_kernel
    assert kernel.run("factors = [10, 20]").error is None
    cell = (
        f"%%gpu_submit --cluster {cluster} --name sw --sweep lr=0.5,0.25 "
        "--sweep 'k:=[f + 1 for f in factors]' --wait\n"
        "print(f'epoch 1 loss={lr * k}')"
    )
    out = kernel.run(cell)
    assert out.error is None, out.text
    assert "4 members, 2x2 grid (lr, k)" in out.stdout
    table = out.stdout[out.stdout.index("member  lr") :].splitlines()
    assert [line.split()[:4] for line in table[2:]] == [
        ["0", "0.5", "11", "completed"], ["1", "0.5", "21", "completed"],
        ["2", "0.25", "11", "completed"], ["3", "0.25", "21", "completed"],
    ], out.stdout  # fmt: skip
    best = kernel.run("sweep = _\nsweep.best('loss').job.sweep.params")
    assert best.results == ["{'lr': 0.25, 'k': 11}"], best.text
    shown = "from gpu_magic.ui import SweepPanel\nimport gc\n"
    shown += "any(isinstance(o, SweepPanel) for o in gc.get_objects())"
    assert kernel.run(shown).results == ["True"]
    refused = kernel.run(f"%%gpu_submit --cluster {cluster} --sweep lr\nx = 1")
    assert refused.error.startswith("UsageError") and "expected NAME=V1,V2" in refused.error
