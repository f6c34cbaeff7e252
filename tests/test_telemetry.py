"""What the panel and ``job.metrics()`` make of real captured training output: the main bar's
progress, the rows, and the hint when a log cannot say how far a job is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpu_magic.monitoring.telemetry import Record, Telemetry
from gpu_magic.results.series import metric_rows

LOGS = Path(__file__).parent / "fixtures" / "logs"


def truth(name: str):
    return json.loads((LOGS / f"{name}.truth.json").read_text())


def replayed(name: str, *, log: bool = True, metrics: bool = False) -> Telemetry:
    """A Telemetry fed the captured log as the monitor's tail saw it (timing.json's chunks)."""
    telemetry = Telemetry()
    data = (LOGS / f"{name}.log").read_bytes()
    marks = json.loads((LOGS / f"{name}.timing.json").read_text())["marks"]
    start = 0
    for at, end in marks if log else []:
        telemetry.feed_log(data[start:end].decode("utf-8", "replace"), 1000.0 + at)
        start = end
    if metrics:
        lines = (LOGS / f"{name}.metrics.jsonl").read_text().splitlines()
        telemetry.feed_metric_lines(lines, 2000.0)
    return telemetry


def shown(telemetry: Telemetry) -> tuple:
    view = telemetry.progress(5000.0)
    return view.step, view.total, view.fraction


def test_evaluate_after_training_does_not_replace_the_training_progress():
    """``trainer.evaluate()`` draws a bar of its own (32/32) after the 48 training steps; the
    training bar, drawn far more often, stays the job's progress."""
    assert shown(replayed("hf_trainer_eval")) == (48, 48, 1.0)


@pytest.mark.parametrize(
    "name", ["lightning_tqdm", "lightning_tqdm_tty", "lightning_rich", "keras_fit_v2"]
)
def test_a_finished_fit_reads_one_hundred_percent(name):
    assert shown(replayed(name)) == (96, 96, 1.0)


def test_a_tqdm_bar_per_epoch_without_a_title_adds_up_and_says_the_total_is_unknown():
    telemetry = replayed("tqdm_print_plain")
    view = telemetry.progress(5000.0)
    assert (view.step, view.total, view.fraction, view.epoch) == (60, None, None, 3)
    assert "report(step=..., total=...)" in view.hint


def test_lightnings_tqdm_bar_mid_run_points_to_the_callback():
    data = (LOGS / "lightning_tqdm.log").read_bytes().decode()
    telemetry = Telemetry()
    telemetry.feed_log(data[: data.index("Epoch 1:")], 1.0)  # the first epoch only
    view = telemetry.progress(2.0)
    assert view.total is None and view.epoch == 1
    assert "lightning_callback()" in view.hint


def test_lightnings_rich_bar_shows_nothing_live_and_the_hint_says_what_does():
    data = (LOGS / "lightning_rich.log").read_bytes().decode()
    telemetry = Telemetry()
    telemetry.feed_log(data[: data.index("`Trainer.fit` stopped")], 1.0)  # while it runs
    view = telemetry.progress(2.0)
    assert not view.known and view.step is None  # nothing to show yet, and it says why
    assert "lightning_callback()" in view.hint


@pytest.mark.parametrize(
    "name, callback",
    [
        ("lightning_rich_callback", "lightning"),
        ("keras_fit_v2", "keras"),
        ("hf_trainer_eval", "hf"),
    ],
)
def test_the_callbacks_metrics_give_every_step_and_the_total(name, callback):
    """The captured ``metrics.jsonl`` our callbacks wrote in a real fit: exact steps of the
    whole run, and the explicit progress wins over what the log shows."""
    telemetry = replayed(name, log=False, metrics=True)
    t = truth(name)
    total = t.get("max_steps") or t["steps_per_epoch"] * (t.get("max_epochs") or t["epochs"])
    assert shown(telemetry) == (total, total, 1.0)
    assert telemetry.hint() is None
    both = replayed(name, metrics=True)
    assert shown(both) == (total, total, 1.0)


def test_the_lightning_callback_records_each_steps_loss():
    telemetry = replayed("lightning_rich_callback", log=False, metrics=True)
    t = truth("lightning_rich_callback")
    losses = dict(telemetry.series["train_loss"])
    for step, _epoch, loss in t["train_loss"]:
        assert losses[step + 1] == pytest.approx(loss)
    vals = [v for _, v in telemetry.series["val_loss"]]
    assert vals == pytest.approx([v for _, v in t["val_loss"][1:]])  # [0]: the sanity check


def test_hf_rows_have_global_steps_an_epoch_column_and_separate_end_rows():
    rows = metric_rows(replayed("hf_trainer_eval").records)
    t = truth("hf_trainer_eval")
    train = [h for h in t["log_history"] if "loss" in h]
    assert [r["step"] for r in rows if "loss" in r] == [h["step"] for h in train]
    epochs = [h["epoch"] for h in train]
    assert [r["epoch"] for r in rows if "loss" in r] == pytest.approx(epochs, abs=1e-4)  # printed
    last = [r for r in rows if r["step"] == 48]
    assert len(last) == 2 and "train_runtime" in last[1] and "loss" not in last[1]


def test_a_name_seen_again_at_one_step_starts_a_new_row():
    records = [
        Record(48, 1.0, {"loss": 0.7}),
        Record(48, 1.0, {"eval_loss": 0.6}),
        Record(48, 1.0, {"eval_loss": 0.5}),  # trainer.evaluate() again
        Record(8, 0.17, {"loss": 0.9}),
    ]
    assert metric_rows(records) == [
        {"step": 8, "epoch": 0.17, "loss": 0.9},
        {"step": 48, "epoch": 1.0, "loss": 0.7, "eval_loss": 0.6},
        {"step": 48, "epoch": 1.0, "eval_loss": 0.5},
    ]
