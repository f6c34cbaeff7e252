"""A real training-style job (tqdm bar with a loss postfix, fake nvidia-smi replaying a real H100
capture) watched by the monitor: parsed series, progress, ETA and GPU samples match the script."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from harness.procs import wait_until

from gpu_magic import GPUJobRequest, JobStatus

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent
STEPS = 40
TRAIN = f"""
import time
from tqdm import tqdm
bar = tqdm(range({STEPS}), mininterval=0)
for step in bar:
    time.sleep(0.1)
    bar.set_postfix(loss=1 / (step + 2))
"""


def test_monitor_parses_progress_metrics_eta_and_gpu(env):
    fake_env = {
        "PATH": f"{ROOT / 'fakes'}:{os.environ['PATH']}",
        "FAKE_NVIDIA_SMI_DIR": str(ROOT / "fixtures" / "nvidia_smi" / "h100x1-real-busy"),
        "GPU_MAGIC_GPU_SAMPLE_INTERVAL": "0.2",
    }
    request = GPUJobRequest.create(code=TRAIN, cluster=env.cluster_name, gpus=1, env=fake_env)
    job = env.client.submit(request, {})
    feed = env.client.monitor.feed(job.id)
    env.client.monitor.on_screen(job.id)
    midway = []

    def watch(update):
        view = update.progress
        if view and view.total and 0.4 <= (view.fraction or 0) <= 0.6 and not midway:
            midway.append((time.time(), view))

    feed.subscribe(watch)
    assert wait_until(lambda: feed.done, timeout=90)
    finished_at = time.time()
    assert feed.job.status == JobStatus.COMPLETED, feed.log_text()

    losses = feed.metric_series()["loss"]
    assert len(losses) >= STEPS // 2  # tqdm redraws every step with mininterval=0
    for step, loss in losses:  # set_postfix redraws at position n = step; tqdm prints 3 digits
        assert loss == float(f"{1 / (step + 2):.3g}"), (step, loss)

    final = feed.progress()
    assert (final.step, final.total, final.fraction) == (STEPS, STEPS, 1.0)
    assert final.rate == pytest.approx(10, rel=0.5)  # 0.1 s per step, give or take load

    seen_at, view = midway[0]
    actual_left = finished_at - seen_at
    assert view.remaining_s == pytest.approx(actual_left, rel=0.6, abs=1.5)

    samples = feed.gpu_samples()
    assert samples, "the sampler wrote no gpu.csv lines"
    assert {s.index for s in samples} == {0}
    assert {(s.utilization, s.memory_used, s.memory_total) for s in samples} == {
        (100.0, 1513.0, 81559.0)
    }
