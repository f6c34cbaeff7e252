"""GPU telemetry sampler (``gpu_magic/remote/sampler.py``): parsing on captured output, and the
script itself against the fake nvidia-smi in loop mode (run.sh's use of it: test_runscript.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness.procs import alive, wait_until

from gpu_magic.remote import sampler
from gpu_magic.remote.sampler import NoJobGPU, Recorder, Selection

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the sampler runs on Linux hosts"),
    pytest.mark.processes,  # the sampler for real (harness/tiers.py)
]

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "fakes"
FIXTURES = ROOT / "tests" / "fixtures" / "nvidia_smi"
SCRIPT = ROOT / "gpu_magic" / "remote" / "sampler.py"
H100X4 = (FIXTURES / "h100x4" / "query-sample.csv").read_bytes()
INTERVAL = 0.2


def rows(data: bytes) -> list[str]:
    return data.decode().splitlines()


# --------------------------------------------------------------------------- pure parts


def test_query_is_the_one_the_fixtures_hold():
    fake = (FAKES / "nvidia-smi").read_text()
    assert f'sample_args="{" ".join(sampler.QUERY_ARGS)}"' in fake


@pytest.mark.parametrize("capture", ["h100x1-real-run/samples.csv", "h200x1-real-loop/gpu.csv"])
def test_real_captures_are_valid_gpu_csv(capture):
    """The real H100 run's samples and a real sampler's gpu.csv have exactly the format the
    sampler writes for what nvidia-smi printed."""
    for line in rows((FIXTURES / capture).read_bytes()):
        stamp, rest = line.split(", ", 1)
        recorder = Recorder(Selection(["0"]))
        assert recorder.feed(f"{rest}\n".encode(), float(stamp)) == f"{line}\n".encode()


def test_real_loop_output_gives_one_tick_per_line():
    recorder = Recorder(Selection.from_env({"CUDA_VISIBLE_DEVICES": "0"}))
    raw = (FIXTURES / "h200x1-real-loop" / "loop-raw.txt").read_text().splitlines()
    arrivals = [line.split(" | ", 1) for line in raw if " | " in line]
    out = b"".join(recorder.feed(f"{line}\n".encode(), float(at)) for at, line in arrivals)
    assert rows(out) == [f"{float(at):.2f}, {line}" for at, line in arrivals]
    assert recorder.ticks == len(arrivals) == 6


def test_ticks_share_a_stamp_and_only_the_job_gpus_are_kept():
    recorder = Recorder(Selection(["1", "GPU-71b6"]))
    first = rows(recorder.feed(H100X4, 100.0))
    second = rows(recorder.feed(H100X4, 102.004))
    fixture = rows(H100X4)
    assert first == [f"100.00, {fixture[1]}", f"100.00, {fixture[3]}"]
    assert second == [f"102.00, {fixture[1]}", f"102.00, {fixture[3]}"]
    assert recorder.ticks == 2


def test_lines_split_across_reads_are_kept_whole():
    """A tick is stamped when its first line is complete."""
    recorder = Recorder(Selection(None))
    out = recorder.feed(H100X4[:10], 5.0)
    out += recorder.feed(H100X4[10:100], 5.5)  # the first line and part of the second
    out += recorder.feed(H100X4[100:] + H100X4[:50], 6.0)
    out += recorder.feed(H100X4[50:], 9.0)
    lines = rows(out)
    assert lines == [f"5.50, {line}" for line in rows(H100X4)] + [
        f"9.00, {line}" for line in rows(H100X4)
    ]


def test_other_output_is_noted_not_written():
    recorder = Recorder(Selection(None))
    text = b"Unable to determine the device handle for GPU 0000:4E:00.0: Unknown Error\n"
    assert recorder.feed(text + b"0, GPU-a, [N/A], 3, 40960, [N/A], [Not Supported]\n", 1) == (
        b"1.00, 0, GPU-a, [N/A], 3, 40960, [N/A], [Not Supported]\n"
    )
    assert recorder.note.startswith("Unable to determine")


def test_no_job_gpu_in_the_output():
    recorder = Recorder(Selection.from_env({"CUDA_VISIBLE_DEVICES": "MIG-4f2a"}))
    assert recorder.feed(H100X4, 1.0) == b""
    with pytest.raises(NoJobGPU, match="CUDA_VISIBLE_DEVICES=MIG-4f2a"):
        recorder.feed(H100X4, 2.0)


def test_slurm_gpus_renumbered_by_cgroups_fall_back_to_all():
    recorder = Recorder(Selection.from_env({"SLURM_JOB_GPUS": "6,7"}))
    assert recorder.feed(H100X4, 1.0) == b""
    assert len(rows(recorder.feed(H100X4, 2.0))) == 4
    matching = Recorder(Selection.from_env({"SLURM_JOB_GPUS": "2"}))
    assert [line.split(", ")[1] for line in rows(matching.feed(H100X4 * 2, 1.0))] == ["2", "2"]


def test_cuda_visible_devices_wins_over_slurm():
    selection = Selection.from_env({"CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_GPUS": "2"})
    assert selection.entries == ["0"]
    assert Selection.from_env({}).entries is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, 2.0), ("0.5", 0.5), ("0", 0.1), ("-1", 0.1), ("x", 2.0), ("nan", 2.0), ("inf", 2.0)],
)
def test_interval(value, seconds):
    assert sampler.interval(value) == seconds


# --------------------------------------------------------------------------- the script


def start(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS")
        and not k.startswith(("GPU_MAGIC_", "FAKE_NVIDIA_SMI"))
    }
    environ["PATH"] = f"{FAKES}{os.pathsep}{environ['PATH']}"
    environ.update(env)
    command = [sys.executable, "-S", str(SCRIPT), "--out", str(tmp_path / "gpu.csv")]
    command += ["--marker", str(tmp_path / "gpu_telemetry"), *args]
    return subprocess.Popen(command, env=environ, stdin=subprocess.DEVNULL)


def children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(stat[1]) == pid and stat[0] != "Z":
            found.append(int(entry))
    return found


def csv_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "gpu.csv"
    return path.read_text().splitlines() if path.exists() else []


def test_term_stops_the_sampler_and_its_nvidia_smi(tmp_path):
    proc = start(tmp_path, "--interval", str(INTERVAL), CUDA_VISIBLE_DEVICES="3")
    try:
        assert wait_until(lambda: len(csv_lines(tmp_path)) >= 3, timeout=30)
        (nvidia_smi,) = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
    assert not alive(nvidia_smi)
    assert {line.split(", ")[1] for line in csv_lines(tmp_path)} == {"3"}
    assert not (tmp_path / "gpu_telemetry").exists()


def test_exits_when_the_watched_process_is_a_zombie(tmp_path):
    watched = subprocess.Popen(["sleep", "300"])
    proc = start(tmp_path, "--pid", str(watched.pid), GPU_MAGIC_GPU_SAMPLE_INTERVAL=str(INTERVAL))
    try:
        assert wait_until(lambda: csv_lines(tmp_path), timeout=30)
        watched.kill()  # not reaped yet: a zombie, as run.sh would be under a non-reaping init
        assert proc.wait(timeout=10) == 0
    finally:
        watched.wait()
        proc.kill()
        proc.wait()
    assert not (tmp_path / "gpu_telemetry").exists()


def test_missing_nvidia_smi(tmp_path):
    proc = start(tmp_path, GPU_MAGIC_NVIDIA_SMI=str(tmp_path / "nope"))
    assert proc.wait(timeout=30) == 0
    marker = (tmp_path / "gpu_telemetry").read_text()
    assert (
        marker
        == f"unavailable: {tmp_path / 'nope'} was not found: no NVIDIA driver, or not on PATH\n"
    )
    assert not (tmp_path / "gpu.csv").exists()


def test_failing_nvidia_smi(tmp_path):
    proc = start(tmp_path, FAKE_NVIDIA_SMI_DIR=str(FIXTURES / "no-driver"))
    assert proc.wait(timeout=30) == 0
    marker = (tmp_path / "gpu_telemetry").read_text()
    assert marker.startswith("unavailable: nvidia-smi exited with code 9: NVIDIA-SMI has failed")
    assert not (tmp_path / "gpu.csv").exists()


def test_sampler_cpu_use_is_small(tmp_path):
    """The sampler's own CPU (not the fake's) at a short interval; bench/bench_sampler.py measures
    the default interval. Loose bound: it catches a busy loop, not a regression of a few %."""
    proc = start(tmp_path, "--interval", str(INTERVAL))
    try:
        assert wait_until(lambda: csv_lines(tmp_path), timeout=30)
        before, started = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(2)
        used = cpu_seconds(proc.pid) - before
        elapsed = time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert used / elapsed < 0.2, f"{100 * used / elapsed:.1f}% CPU"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
