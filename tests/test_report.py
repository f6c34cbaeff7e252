"""report(): the explicit metrics channel (remote side) and its metrics.jsonl parser (client)."""

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from fractions import Fraction
from pathlib import Path

import pytest

import gpu_magic
from gpu_magic import jobdir
from gpu_magic.parsers import Metrics, MetricsFileParser, Progress, parse_metrics_record
from gpu_magic.remote import report

report_module = sys.modules["gpu_magic.remote.report"]


@pytest.fixture
def job_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_MAGIC_JOB_DIR", str(tmp_path))
    return tmp_path


def read(path: Path):
    return MetricsFileParser().feed(path.read_text())


def test_same_file_name_as_the_job_folder_contract():
    assert report_module.METRICS == jobdir.METRICS
    assert report is report_module.report


def test_round_trip(job_dir):
    report(step=120, total=1000, loss=0.53, lr=1e-4)
    report(epoch=2, epochs=10, val_loss=0.61)
    report(step=5, total=10, epoch=2, epochs=3)
    report(accuracy=0.9)
    evs = read(job_dir / "metrics.jsonl")
    assert [type(e) for e in evs] == [Progress, Metrics, Progress, Metrics, Progress, Metrics]
    p, m = evs[0], evs[1]
    assert (p.step, p.total, p.epoch, p.source) == (120, 1000, None, "report")
    assert (m.step, m.values, m.source) == (120, {"loss": 0.53, "lr": 1e-4}, "report")
    assert (evs[2].epoch, evs[2].epochs, evs[2].step, evs[3].values) == (
        2,
        10,
        None,
        {"val_loss": 0.61},
    )
    assert evs[4].global_step == 15
    assert evs[5].step is None and evs[5].values == {"accuracy": 0.9}
    assert abs(p.at - time.time()) < 60 and p.at == m.at


def test_numpy_scalars_and_non_finite_values(job_dir):
    np = pytest.importorskip("numpy")
    report(
        step=np.int64(3),
        total=np.int32(9),
        a=np.float32(0.5),
        b=np.array(2.0),
        d=float("nan"),
        e=float("-inf"),
        f=Fraction(1, 4),
        g=7,
    )
    line = (job_dir / "metrics.jsonl").read_text()
    assert "NaN" in line and "-Infinity" in line  # Python's json reads these back
    p, m = read(job_dir / "metrics.jsonl")
    assert (p.step, p.total) == (3, 9)
    assert m.values["a"] == 0.5 and m.values["b"] == 2.0
    assert math.isnan(m.values["d"]) and m.values["e"] == -math.inf
    assert m.values["f"] == 0.25 and m.values["g"] == 7.0


def test_torch_scalars(job_dir):
    torch = pytest.importorskip("torch")
    report(loss=torch.tensor(0.25), step=torch.tensor(4))
    _, m = read(job_dir / "metrics.jsonl")
    assert m.values == {"loss": 0.25} and m.step == 4


@pytest.mark.parametrize("value", ["0.5", b"1", None, [1.0], {"a": 1}, 1j, object()])
def test_non_numbers_are_rejected(job_dir, value):
    with pytest.raises(TypeError, match="metric 'loss' must be a"):
        report(loss=value)
    assert not (job_dir / "metrics.jsonl").exists() or (job_dir / "metrics.jsonl").read_text() == ""


def test_arrays_of_several_numbers_are_rejected(job_dir):
    np = pytest.importorskip("numpy")
    with pytest.raises(TypeError, match="metric 'acc' must be a single number"):
        report(acc=np.array([0.1, 0.2]))


@pytest.mark.parametrize("step", [1.5, "3", True, None.__class__])
def test_bad_counters_are_rejected(job_dir, step):
    with pytest.raises(TypeError, match="step must be an integer"):
        report(step=step)


def test_whole_floats_are_accepted_as_counters(job_dir):
    report(step=3.0, total=10)
    (p,) = read(job_dir / "metrics.jsonl")
    assert p.step == 3


def test_without_the_job_dir_variable_writes_here_and_warns_once(tmp_path, monkeypatch):
    monkeypatch.delenv("GPU_MAGIC_JOB_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(report_module, "_warned", False)
    with pytest.warns(RuntimeWarning, match="GPU_MAGIC_JOB_DIR is not set"):
        report(step=1, loss=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report(step=2, loss=0.5)
    assert len(read(tmp_path / "metrics.jsonl")) == 4


def test_an_unwritable_file_warns_once_and_does_not_raise(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_MAGIC_JOB_DIR", str(tmp_path / "missing"))
    monkeypatch.setattr(report_module, "_io_warned", False)
    with pytest.warns(RuntimeWarning, match="cannot write .*missing/metrics.jsonl"):
        report(loss=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report(loss=2.0)


def test_concurrent_threads_never_interleave(job_dir):
    def work(k):
        for i in range(300):
            report(step=i, total=300, **{f"worker_{k}": i / 7, "padding": 1.0 / (i + 1)})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (job_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8 * 300
    assert all(json.loads(line)["values"]["padding"] > 0 for line in lines)


def test_parser_waits_for_a_partial_last_line_and_skips_garbage(job_dir):
    report(step=1, total=4, loss=0.5)
    report(step=2, total=4, loss=0.4)
    text = (job_dir / "metrics.jsonl").read_text()
    whole = MetricsFileParser().feed(text)
    cut = text.index("loss", len(text) // 2)
    parser = MetricsFileParser()
    got = parser.feed(text[:cut]) + parser.feed(text[cut:])
    assert got == whole and len(got) == 4
    parser = MetricsFileParser()
    assert parser.feed('not json\n{"values": 3}\n[1]\n\n' + text) == whole
    assert parser.skipped == 3


def test_parse_one_record():
    (m,) = parse_metrics_record('{"t": 5.0, "values": {"loss": 1}, "source": "parsed"}')
    assert m == Metrics(None, None, {"loss": 1.0}, 5.0, "parsed")
    (p,) = parse_metrics_record('{"step": 3}', at=9.0)
    assert (p.step, p.at) == (3, 9.0)
    with pytest.raises(ValueError, match="not a metrics record"):
        parse_metrics_record("{oops")


def test_works_as_shipped_with_the_stdlib_only(tmp_path):
    """The runner's lib/ holds only gpu_magic/remote: report must import and write from there."""
    lib = tmp_path / "lib" / "gpu_magic"
    shutil.copytree(Path(gpu_magic.__file__).parent / "remote", lib / "remote")
    (lib / "__init__.py").write_text("")
    job = tmp_path / "job"
    job.mkdir()
    code = (
        "import sys; from gpu_magic.remote import report; report(step=1, loss=0.5); "
        "print(sorted(sys.modules))"
    )
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(tmp_path / "lib"),
        "GPU_MAGIC_JOB_DIR": str(job),
    }
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=job
    )
    assert out.returncode == 0, out.stderr
    assert "pydantic" not in out.stdout and "cloudpickle" not in out.stdout
    (p, m) = read(job / "metrics.jsonl")
    assert (p.step, m.values) == (1, {"loss": 0.5})
