"""Real captured training output (tests/fixtures/logs/), replayed by a job on the real sshd: what
``job.metrics()`` and ``job.progress()`` give a user for HF Trainer, Lightning, Keras and tqdm
loops with prints, and for the metrics.jsonl our callbacks wrote in a real fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness.clients import metric_rows

from gpu_magic import GPUJobRequest, JobStatus

pytestmark = [pytest.mark.timeout(90), pytest.mark.parametrize("env", ["ssh"], indirect=True)]

LOGS = Path(__file__).parent / "fixtures" / "logs"
REPLAY = """
import os, shutil, sys
sys.stdout.buffer.write(open('replay.log', 'rb').read())
if os.path.exists('replay.jsonl'):
    shutil.copy('replay.jsonl', os.path.join(os.environ['GPU_MAGIC_JOB_DIR'], 'metrics.jsonl'))
"""


def truth(name: str):
    return json.loads((LOGS / f"{name}.truth.json").read_text())


def replay(env, name: str, *, callback: bool = False):
    (env.cwd / "replay.log").write_bytes((LOGS / f"{name}.log").read_bytes())
    files = ["replay.log"]
    if callback:
        (env.cwd / "replay.jsonl").write_bytes((LOGS / f"{name}.metrics.jsonl").read_bytes())
        files.append("replay.jsonl")
    request = GPUJobRequest.create(code=REPLAY, cluster=env.cluster_name, files=tuple(files))
    job = env.client.submit(request, {}, cwd=env.cwd)
    assert job.wait(timeout=60).status == JobStatus.COMPLETED, job.logs()
    return job


def test_keras_verbose_2(env):
    job, t = replay(env, "keras_fit_v2"), truth("keras_fit_v2")
    rows = metric_rows(job)
    assert [(r["step"], r["epoch"]) for r in rows] == [(32, 1), (64, 2), (96, 3)]
    assert [r["val_loss"] for r in rows] == pytest.approx(t["history"]["val_loss"], abs=5e-5)
    p = job.progress()
    assert (p.step, p.total, p.epoch, p.epochs, p.fraction) == (96, 96, 3, 3, 1.0)


def test_prints_inside_a_tqdm_loop(env):
    job, t = replay(env, "tqdm_print"), truth("tqdm_print")
    steps = [(e - 1) * t["steps_per_epoch"] + s for e, s, _ in t["printed"]]
    assert [(r["step"], r["loss"]) for r in metric_rows(job)] == [
        (s, loss) for s, (_, _, loss) in zip(steps, t["printed"], strict=True)
    ]
    assert job.progress().total == 60


def test_hf_trainer_then_evaluate(env):
    job, t = replay(env, "hf_trainer_eval"), truth("hf_trainer_eval")
    rows = [r for r in metric_rows(job) if "loss" in r]
    assert [r["step"] for r in rows] == [h["step"] for h in t["log_history"] if "loss" in h]
    assert all("epoch" in r for r in rows)
    p = job.progress()
    assert (p.step, p.total) == (48, 48)  # not evaluate()'s 32/32


def test_lightnings_tqdm_bar_ends_at_one_hundred_percent(env):
    p = replay(env, "lightning_tqdm").progress()
    assert (p.step, p.total, p.epoch, p.epochs, p.fraction) == (96, 96, 3, 3, 1.0)


def test_the_lightning_callback_gives_every_step_of_a_rich_bar_run(env):
    """The rich bar prints one frame off a terminal: the callback's records give each step."""
    job, t = replay(env, "lightning_rich_callback", callback=True), truth("lightning_rich_callback")
    losses = {r["step"]: r["train_loss"] for r in metric_rows(job) if "train_loss" in r}
    assert len(losses) == len(t["train_loss"]) == 96
    p = job.progress()
    assert (p.step, p.total, p.hint) == (96, 96, None)


def test_progress_before_any_line_is_empty_not_none(env):
    request = GPUJobRequest.create(code="print('loading data')", cluster=env.cluster_name)
    job = env.client.submit(request, {})
    job.wait(timeout=60)
    p = job.progress()
    assert p is not None and not p.known and p.step is None and p.hint is None
