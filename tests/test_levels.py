"""Log levels and the log-tail filter, on real output of logging libraries (app_logs.log)."""

import json
from pathlib import Path

import pytest

from gpu_magic.parsers import LevelTracker, classify, filter_lines, split_prefix, terminal_lines
from gpu_magic.parsers.levels import StreamLevels

LOGS = Path(__file__).parent / "fixtures" / "logs"


@pytest.fixture(scope="module")
def lines():
    return terminal_lines((LOGS / "app_logs.log").read_bytes().decode())


@pytest.fixture(scope="module")
def levels(lines):
    tracker = LevelTracker()
    return [tracker.level(line) for line in lines]


def level_of(lines, levels, needle):
    found = [lv for line, lv in zip(lines, levels, strict=True) if needle in line]
    assert found, needle
    return found


def test_every_logged_message_gets_its_level(lines, levels):
    logged = json.loads((LOGS / "app_logs.truth.json").read_text())
    for want, text in logged:
        if text in ("[W", "[E"):  # PyTorch C++ lines: see the next test
            continue
        assert set(level_of(lines, levels, text)) == {want}, text


def test_pytorch_cpp_lines_and_their_stack_dumps(lines, levels):
    cpp = [(line, lv) for line, lv in zip(lines, levels, strict=True) if line[:2] in ("[W", "[E")]
    assert {line[:2] for line, _ in cpp} == {"[W", "[E"}
    for line, lv in cpp:
        assert lv == ("WARNING" if line.startswith("[W") else "ERROR"), line
    dump = level_of(lines, levels, "frame #0: c10::Error::Error")
    assert set(dump) <= {"WARNING", "ERROR"}  # the level of the [W]/[E] line above it
    assert set(level_of(lines, levels, "<omitting python frames>")) <= {"WARNING", "ERROR"}


def test_tracebacks_are_error_from_first_to_last_line(lines, levels):
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    assert len(starts) == 4  # logging.exception, a chained pair, the uncaught one
    for start in starts:
        end = next(i for i in range(start + 1, len(lines)) if not lines[i][:1].isspace())
        assert set(levels[start : end + 1]) == {"ERROR"}, lines[start : end + 1]
    assert levels[lines.index("KeyError: 'momentum'")] == "ERROR"
    assert levels[lines.index("ValueError: could not normalise: std is 0")] == "ERROR"
    cause = "The above exception was the direct cause of the following exception:"
    assert levels[lines.index(cause)] == "ERROR"
    assert lines[-2].startswith("RuntimeError: mat1 and mat2") and levels[-2] == "ERROR"


def test_warnings_and_their_source_lines(lines, levels):
    i = next(i for i, line in enumerate(lines) if ": UserWarning: batch size 7" in line)
    assert levels[i] == levels[i + 1] == "WARNING"
    assert lines[i + 1].lstrip().startswith("warnings.warn(")
    assert "WARNING" in level_of(lines, levels, "FutureWarning: arg 'lr'")
    assert level_of(lines, levels, "Logging before flag parsing") == ["WARNING"]


def test_ordinary_output_has_no_level(lines, levels):
    for needle in (
        "Using device: cpu",
        "tensor([[0.0000",
        "Elapsed: 0:01:23",
        "| test  |",
        "{'lr'",
    ):
        assert level_of(lines, levels, needle) == [None], needle


@pytest.mark.parametrize(
    "line, level",
    [
        ("INFO:root:loaded", "INFO"),
        ("WARNING:py.warnings:deprecated", "WARNING"),
        ("2024-01-01 12:00:00,123 - trainer - WARNING - slow", "WARNING"),
        ("2024-01-01T12:00:00Z DEBUG collate", "DEBUG"),
        ("[2024-01-01 12:00:00,123 WARNING] careful", "WARNING"),
        ("[ERROR] it broke", "ERROR"),
        ("2024-01-01 12:00:00.123 | CRITICAL | mod:fn:3 - down", "ERROR"),
        ("W1126 12:00:00.123 123 file.cc:12] glog", "WARNING"),
        ("E1126 12:00:00.123456 140 train.py:9] absl", "ERROR"),
        ("[W socket.cpp:663] [c10d] The client socket has failed to connect", "WARNING"),
        ("[rank1]:[E1126 12:00:00.123 ProcessGroupNCCL.cpp:616] [Rank 1] Watchdog", "ERROR"),
        ("2024-01-01 12:00:00.123456: W tensorflow/core/x.cc:1] tf", "WARNING"),
        ("UserWarning: this is deprecated", "WARNING"),
        ("/x/y.py:3: FutureWarning: soon", "WARNING"),
        ("Traceback (most recent call last):", "ERROR"),
        ("torch.OutOfMemoryError: CUDA out of memory.", "ERROR"),
        ("ValueError: bad", "ERROR"),
        ("step 5 loss=0.3", None),
        ("Error rate 0.1", None),
        ("Information: 3 files", None),
        ("", None),
    ],
)
def test_classify(line, level):
    assert classify(line) == level


def test_split_prefix_gives_the_message():
    assert split_prefix("2024-01-01 12:00:00,123 - t - INFO - step 3 loss=1") == (
        "INFO",
        "step 3 loss=1",
    )
    assert split_prefix("INFO:root:hello") == ("INFO", "hello")
    assert split_prefix("plain") == (None, "plain")


def test_filter_by_level(lines):
    kept = filter_lines(lines, min_level="warning")
    assert kept and {ln.level for ln in kept} == {"WARNING", "ERROR"}
    assert all(lines[ln.index] == ln.text for ln in kept)
    errors = filter_lines(lines, min_level="ERROR")
    assert {ln.level for ln in errors} == {"ERROR"}
    assert len(filter_lines(lines)) == len(lines)


def test_filter_by_search(lines):
    kept = filter_lines(lines, grep=r"absl: \w+")
    assert [ln.text.split("] ")[-1] for ln in kept] == [
        "absl: restored 12 variables from step 3000",
        "absl: 2 of 10 shards missing",
        "absl: failed to write summary 0.5",
    ]
    assert filter_lines(lines, grep="ABSL:", ignore_case=False) == []
    both = filter_lines(lines, min_level="ERROR", grep="absl|loguru")
    assert [ln.level for ln in both] == ["ERROR", "ERROR"]


def test_filter_rejects_bad_input(lines):
    with pytest.raises(ValueError, match=r"invalid search pattern '\(unclosed'"):
        filter_lines(lines, grep="(unclosed")
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        filter_lines(lines, min_level="LOUD")


def test_a_tools_own_tag_with_a_lowercase_level():
    assert classify("[gpu_magic] warning: only 0 of the 1 requested GPU(s) are idle") == "WARNING"
    assert classify("[gpu_magic] CUDA_VISIBLE_DEVICES=0") is None


def test_stream_levels_classify_each_line_once_whatever_the_chunks():
    text = (
        'INFO:root:a\nTraceback (most recent call last):\n  File "x", line 1\nValueError: v\nok\n'
    )
    whole = StreamLevels().feed(text)
    assert whole == ["INFO", "ERROR", "ERROR", "ERROR", None]
    for cut in range(1, len(text)):
        stream = StreamLevels()
        assert stream.feed(text[:cut]) + stream.feed(text[cut:]) == whole, cut


def test_stream_levels_wait_for_the_end_of_a_line_and_read_its_last_frame():
    stream = StreamLevels()
    assert stream.feed("WARNING:root:slo") == []
    assert stream.feed("w\n 10%|#\r") == ["WARNING"]
    assert stream.feed("ERROR:root:oom\n") == ["ERROR"]  # the frame a terminal shows last
