"""Progress and metrics parsers, on output captured from real runs (tests/fixtures/logs/)."""

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

from gpu_magic.parsers import (
    LogParser,
    Metrics,
    Progress,
    is_secondary_axis,
    parse_log,
    split_axes,
    terminal_lines,
)

LOGS = Path(__file__).parent / "fixtures" / "logs"
FIXTURES = [
    "tqdm_bars",
    "tqdm_print",
    "tqdm_print_plain",
    "hf_trainer",
    "hf_trainer_eval",
    "lightning_tqdm",
    "lightning_tqdm_tty",
    "lightning_rich",
    "lightning_rich_tty",
    "keras_fit",
    "keras_fit_v2",
    "generic_loop",
    "app_logs",
]


def log(name: str) -> str:
    return (LOGS / f"{name}.log").read_bytes().decode("utf-8")


def truth(name: str):
    return json.loads((LOGS / f"{name}.truth.json").read_text())


def events(name: str):
    return parse_log(log(name))


def progress(evs, **match):
    return [
        e
        for e in evs
        if isinstance(e, Progress) and all(getattr(e, k) == v for k, v in match.items())
    ]


def metrics(evs, source=None):
    return [e for e in evs if isinstance(e, Metrics) and source in (None, e.source)]


def series(evs, name):
    return [(m.step, m.values[name]) for m in metrics(evs) if name in m.values]


def sig3(x: float) -> float:
    """tqdm's postfix shows floats with 3 significant digits."""
    return float(f"{x:.3g}")


def test_fixtures_are_small_and_have_truth():
    for name in FIXTURES:
        assert (LOGS / f"{name}.log").stat().st_size < 50_000, name
        assert (LOGS / f"{name}.truth.json").exists(), name


# -- tqdm ------------------------------------------------------------------------------------


def test_tqdm_bar_with_postfix():
    evs, t = events("tqdm_bars"), truth("tqdm_bars")["bars"]
    train = progress(evs, label="train")
    assert [p.total for p in train] == [120] * len(train)
    steps = [p.step for p in train]
    assert steps == sorted(steps) and steps[-1] == t[0]["final_step"] == 120
    assert all(p.rate and 150 < p.rate < 300 for p in train if p.step)
    losses = [v for _, v in series(evs, "loss")]
    printed = {sig3(x) for x in t[0]["losses"]}
    assert len(losses) > 100 and set(losses) <= printed
    assert losses[-1] == sig3(t[0]["losses"][-1])
    assert series(evs, "lr") == [(0, 1e-4)]  # unchanged postfix values are not repeated


def test_tqdm_seconds_per_iteration_unknown_total_and_scaled_units():
    evs = events("tqdm_bars")
    slow = progress(evs, label="slow")
    assert slow[-1].step == slow[-1].total == 3
    assert all(p.rate == pytest.approx(1 / 1.10) for p in slow if p.step)
    open_ended = progress(evs, label=None, source="tqdm")
    assert {p.total for p in open_ended} == {None}
    assert open_ended[-1].step == 250
    download = progress(evs, label="download")
    assert download[-1].step == download[-1].total == 3_000_000
    assert download[-1].unit == "B" and download[-1].rate == pytest.approx(19.4e6)


# -- Hugging Face Trainer --------------------------------------------------------------------


def test_hf_trainer_log_dicts_match_log_history():
    evs, t = events("hf_trainer"), truth("hf_trainer")
    parsed = metrics(evs, source="hf")
    history = t["log_history"]
    assert len(parsed) == len(history)
    for got, want in zip(parsed, history, strict=True):
        assert got.epoch == pytest.approx(want["epoch"], abs=1e-3)
        assert got.step == want["step"]  # the global step, from the bar redrawn after the dict
        assert set(got.values) == set(want) - {"epoch", "step", "total_flos"}  # not printed
        for key, value in got.values.items():
            assert value == pytest.approx(want[key], rel=1e-3), key  # printed with 4 digits
    assert "eval_loss" in parsed[-2].values and "train_runtime" in parsed[-1].values


def test_hf_trainer_main_bar_and_nested_eval_bars():
    evs, t = events("hf_trainer"), truth("hf_trainer")
    main = progress(evs, inner=False)
    assert {p.total for p in main} == {t["max_steps"]} == {600}
    assert main[-1].step == 600
    assert [p.step for p in main] == sorted(p.step for p in main)
    inner = progress(evs, inner=True)
    assert inner and {p.total for p in inner} == {50}  # 400 eval samples / batch 8


def test_hf_dict_with_float_values():
    # hand-written: the float-valued dicts of transformers < 5 (the fixture has 5.x strings)
    line = "{'loss': 0.6931, 'grad_norm': 1.234, 'learning_rate': 5e-05, 'epoch': 0.5}\n"
    (m,) = parse_log(line)
    assert m == Metrics(
        None, 0.5, {"loss": 0.6931, "grad_norm": 1.234, "learning_rate": 5e-05}, None, "hf"
    )


def test_hf_trainer_then_evaluate_steps_and_epochs():
    """One epoch of 48 steps logged every 8, then ``trainer.evaluate()``: the x axis is the
    global step (8, 16, ...), not the fractional epoch (0.1667, ...), which stays the epoch."""
    evs, t = events("hf_trainer_eval"), truth("hf_trainer_eval")
    parsed = metrics(evs, source="hf")
    printed = [h for h in t["log_history"] if "eval_loss" not in h]  # evaluate() prints nothing
    assert [m.step for m in parsed] == [h["step"] for h in printed] == [8, 16, 24, 32, 40, 48, 48]
    assert [m.epoch for m in parsed] == pytest.approx([h["epoch"] for h in printed], abs=1e-3)
    eval_bar = [p for p in progress(evs, inner=False) if p.total == 32]
    assert eval_bar and eval_bar[-1].step == 32  # evaluate()'s own bar, after training


# -- PyTorch Lightning -----------------------------------------------------------------------


def test_lightning_tqdm_epochs_steps_and_losses():
    evs, t = events("lightning_tqdm"), truth("lightning_tqdm")
    bar = progress(evs, label="Epoch")
    assert {p.total for p in bar} == {t["steps_per_epoch"]}
    assert {p.epoch for p in bar} == {1, 2, 3}  # Lightning prints "Epoch 0" .. "Epoch 2"
    # the tqdm bar never shows max_epochs; Lightning's last line does: "max_epochs=3 reached"
    assert {p.epochs for p in bar} == {None, t["max_epochs"]}
    assert (bar[-1].epoch, bar[-1].epochs, bar[-1].step) == (3, 3, 32)
    assert bar[-1].run_position == (96, 96)  # a finished fit reads 100%
    by_step = {g + 1: loss for g, _, loss in t["train_loss"]}  # postfix after step g+1
    train = series(evs, "train_loss")
    assert len(train) > 80
    for step, value in train:
        assert value == sig3(by_step[step]), step
    shown_val = [sig3(v) for epoch, v in t["val_loss"][1:]]  # [0] is the sanity check
    assert [v for _, v in series(evs, "val_loss")] == shown_val
    assert "v_num" not in {k for m in metrics(evs) for k in m.values}


def test_lightning_validation_bars_are_nested():
    evs = events("lightning_tqdm")
    val = progress(evs, label="Validation DataLoader 0")
    assert val and all(p.inner for p in val) and {p.total for p in val} == {8}


def test_lightning_rich_bar_final_state():
    evs, t = events("lightning_rich"), truth("lightning_rich")
    (p,) = progress(evs)
    assert (p.epoch, p.epochs, p.step, p.total, p.source) == (3, 3, 32, 32, "lightning")
    assert series(evs, "train_loss") == [(96, round(t["train_loss"][-1][2], 3))]
    assert series(evs, "val_loss") == [(96, round(t["val_loss"][-1][1], 3))]  # wrapped line


@pytest.mark.parametrize("name", ["lightning_tqdm_tty", "lightning_rich_tty"])
def test_lightning_on_a_terminal_draws_every_step(name):
    """On a terminal both bars redraw live (tqdm cuts its frame at 80 columns, rich moves the
    cursor): every step's loss is there, and the end reads epoch 3 of 3."""
    evs, t = events(name), truth(name)
    by_step = {g + 1: loss for g, _, loss in t["train_loss"]}
    train = [(x, v) for x, v in series(evs, "train_loss") if x in by_step]
    assert len({x for x, _ in train}) > 80
    digits = 3 if name.endswith("rich_tty") else None
    for x, value in train:
        want = round(by_step[x], 3) if digits else sig3(by_step[x])
        assert value == pytest.approx(want, abs=1e-3 if digits else 0), x
    last = progress(evs, inner=False)[-1]
    assert (last.epoch, last.epochs, last.run_position) == (3, 3, (96, 96))


# -- Keras -----------------------------------------------------------------------------------


def test_keras_epochs_steps_and_history():
    evs, t = events("keras_fit"), truth("keras_fit")
    bar = progress(evs, source="keras")
    assert {(p.epochs, p.total) for p in bar} == {(t["epochs"], t["steps_per_epoch"])}
    assert [p.epoch for p in bar] == sorted(p.epoch for p in bar)
    ends = [m for m in metrics(evs, "keras") if "val_loss" in m.values]
    assert [m.step for m in ends] == [32, 64, 96]
    for m, epoch in zip(ends, range(3), strict=True):
        for key, values in t["history"].items():
            assert m.values[key] == pytest.approx(values[epoch], abs=5e-5), key


def test_keras2_progbar_line():
    # hand-written: the Keras 2 bar (the fixture's Keras 3 draws ━ instead)
    text = (
        "Epoch 2/10\n"
        "32/32 [==============================] - 1s 3ms/step - loss: 0.5300 - accuracy: 0.8000\n"
    )
    p_epoch, p, m = parse_log(text)
    assert (p_epoch.epoch, p_epoch.epochs, p_epoch.step) == (2, 10, None)
    assert (p.step, p.total, p.epoch, p.epochs, p.rate) == (32, 32, 2, 10, pytest.approx(1000 / 3))
    assert m.values == {"loss": 0.53, "accuracy": 0.8} and m.step == 64


def test_keras_verbose_2_one_line_per_epoch():
    """``fit(verbose=2)`` writes ``32/32 - 0s - 4ms/step - accuracy: ... - val_loss: ...``
    after each ``Epoch i/N`` line: that is the epoch's progress and every metric."""
    evs, t = events("keras_fit_v2"), truth("keras_fit_v2")
    assert t["verbose"] == 2
    bar = progress(evs, source="keras")
    assert [(p.epoch, p.epochs, p.step, p.total) for p in bar] == [
        (e, 3, 32, 32) for e in (1, 2, 3)
    ]
    assert bar[-1].run_position == (96, 96)
    ends = metrics(evs, "keras")
    assert [m.step for m in ends] == [32, 64, 96]
    for m, epoch in zip(ends, range(3), strict=True):
        assert set(m.values) == set(t["history"])
        for key, values in t["history"].items():
            assert m.values[key] == pytest.approx(values[epoch], abs=5e-5), key


# -- hand-written loops ----------------------------------------------------------------------


def test_generic_lines_match_what_the_loop_printed():
    records = truth("generic_loop")
    lines = [line for line in log("generic_loop").splitlines() if line != "done"]
    assert len(lines) == len(records)
    for line, want in zip(lines, records, strict=True):
        evs = parse_log(line + "\n")
        p = progress(evs)[0]
        assert (p.step, p.total, p.epoch, p.epochs) == (
            want["step"],
            want["total"],
            want["epoch"],
            want["epochs"],
        ), line
        got = metrics(evs)[0].values if want["metrics"] else {}
        assert got == pytest.approx(want["metrics"]), line


@pytest.mark.parametrize(
    "line, step, total, values",
    [
        ("step 120/1000 loss=0.53", 120, 1000, {"loss": 0.53}),
        ("Step 5 | loss 0.12 | lr 1e-4", 5, None, {"loss": 0.12, "lr": 1e-4}),
        ("iter 300: loss 0.41", 300, None, {"loss": 0.41}),
        ("Iteration 7 of 50, loss: nan", 7, 50, {"loss": math.nan}),
        ("2024-01-01 12:00:00,123 - train - INFO - step 3/9 loss=0.5", 3, 9, {"loss": 0.5}),
        (
            "INFO:root:global_step 42 train/loss 1.5 train/lr 3e-4",
            42,
            None,
            {"train/loss": 1.5, "train/lr": 3e-4},
        ),
    ],
)
def test_generic_formats(line, step, total, values):
    p, m = parse_log(line + "\n")
    assert (p.step, p.total) == (step, total)
    assert m.values.keys() == values.keys()
    for k, v in values.items():
        assert m.values[k] == pytest.approx(v, nan_ok=True)


@pytest.mark.parametrize(
    "line",
    [
        "Saved checkpoint at step 1000 (loss 0.5)",
        "epochs: 10, lr: 0.001",
        "Step size 3 with lr 0.1",
        "{'lr': 0.001, 'batch_size': 32, 'epochs': 10}",
        "steps=100 loss=0.5",
        "Loaded 60000 images in 2.5s",
        "| epoch | loss |",
    ],
)
def test_ordinary_lines_are_not_progress(line):
    assert parse_log(line + "\n") == []


def test_noise_fixture_yields_nothing():
    assert events("app_logs") == []


@pytest.mark.parametrize("name", ["tqdm_print", "tqdm_print_plain"])
def test_a_print_inside_a_tqdm_loop_is_parsed_with_its_bar(name):
    """The print continues tqdm's line (``...| 8/20 [..]epoch 1 step 10 loss 0.761``): its
    loss counts, at the step it names, and the bar stays the progress."""
    evs, t = events(name), truth(name)
    printed = [((e - 1) * t["steps_per_epoch"] + s, loss) for e, s, loss in t["printed"]]
    assert len(printed) == 6
    assert series(evs, "loss") == printed
    assert not progress(evs, source="generic")  # the glued text adds no progress of its own
    bars = progress(evs, source="tqdm")
    assert {p.total for p in bars} == {t["steps_per_epoch"]}
    if t["titled"]:  # "Epoch 3/3": the whole run's position is known
        assert bars[-1].run_position == (60, 60)


# -- streaming -------------------------------------------------------------------------------


def timeless(evs):
    return [replace(e, at=None) for e in evs]


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("seed, largest", [(0, 7), (1, 300), (2, 4000)])
def test_any_chunking_gives_the_same_events(name, seed, largest):
    text = log(name)
    whole = parse_log(text)
    rng = random.Random(seed)
    parser, got, i = LogParser(), [], 0
    while i < len(text):
        n = rng.randint(1, largest)
        got += parser.feed(text[i : i + n], at=float(i))
        i += n
    got += parser.flush()
    assert timeless(got) == timeless(whole)


def test_nan_postfix_values_are_not_repeated_across_chunks():
    frames = "".join(
        f"\rtrain:  {i}0%|█ | {i}/10 [00:0{i}<00:01,  1.00it/s, loss=nan]" for i in range(1, 6)
    )
    parser, got = LogParser(), []
    for i in range(0, len(frames), 7):
        got += parser.feed(frames[i : i + 7])
    got += parser.flush()
    assert [type(e).__name__ for e in got] == ["Progress", "Metrics"] + ["Progress"] * 4
    assert math.isnan(got[1].values["loss"])


def test_an_endless_line_is_skipped_without_slowing_down():
    text = "x: " * 100_000 + "\nstep 1/2 loss=1\n"
    whole = parse_log(text)
    parser, got = LogParser(), []
    for i in range(0, len(text), 1000):
        got += parser.feed(text[i : i + 1000])
    assert got == whole and [type(e).__name__ for e in got] == ["Progress", "Metrics"]


def test_windows_line_endings():
    p, m = parse_log("step 1/2 loss=1\r\nstep 2/2 loss=0.5\r\n")[2:]
    assert (p.step, m.values) == (2, {"loss": 0.5})


def test_a_bar_redraw_is_reported_without_waiting_for_the_next():
    parser = LogParser()
    first = parser.feed("\rtrain:  10%|█         | 1/10 [00:05<00:45,  5.00s/it]", at=5.0)
    assert first == []  # the first frame of a line waits for its end (it could be a nested bar)
    second = parser.feed("\rtrain:  20%|██        | 2/10 [00:10<00:40,  5.00s/it]", at=10.0)
    assert [(e.step, e.at) for e in second] == [(1, 10.0), (2, 10.0)]
    third = parser.feed("\rtrain:  30%|███       | 3/10 [00:15<00:35,  5.00s/it]", at=15.0)
    assert [(e.step, e.rate) for e in third] == [(3, 0.2)]
    assert parser.flush() == []


def test_at_is_the_time_of_the_chunk_that_completed_the_event():
    parser = LogParser()
    assert parser.feed("step 1/2 loss=0.", at=1.0) == []
    (p, m) = parser.feed("5\n", at=2.0)
    assert (p.at, m.at, m.values) == (2.0, 2.0, {"loss": 0.5})


def test_terminal_lines_show_the_last_redraw():
    lines = terminal_lines(log("tqdm_bars"))
    assert any(line.startswith("train: 100%") and "120/120" in line for line in lines)
    assert "\r" not in "".join(lines) and "\x1b" not in "".join(lines)


# -- chart axes ------------------------------------------------------------------------------


def test_learning_rate_goes_on_a_secondary_axis():
    for name in ("lr", "learning_rate", "learning rate", "lr-Adam", "train/lr", "pg0_lr"):
        assert is_secondary_axis(name), name
    for name in ("loss", "val_loss", "eval_loss", "accuracy", "flr", "lrn_loss", "grad_norm"):
        assert not is_secondary_axis(name), name
    assert split_axes(["loss", "learning_rate", "eval_loss", "lr"]) == (
        ["loss", "eval_loss"],
        ["learning_rate", "lr"],
    )
