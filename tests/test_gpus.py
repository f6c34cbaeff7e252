"""GPU selection (``gpu_magic/remote/gpus.py``): parsing and choosing, on captured output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_magic.remote import gpus
from gpu_magic.remote.gpus import GPU, choose, parse_gpus, visible

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fakes" / "nvidia-smi"
FIXTURES = ROOT / "tests" / "fixtures" / "nvidia_smi"
SCRIPT = ROOT / "gpu_magic" / "remote" / "gpus.py"


def h100x4() -> list[GPU]:
    return parse_gpus((FIXTURES / "h100x4" / "query-select.csv").read_text())


def test_parse_fixture():
    parsed = h100x4()
    assert [g.index for g in parsed] == [0, 1, 2, 3]
    assert parsed[0] == GPU(0, "GPU-8a4f2c1e-5b7d-4e39-a1c6-0f2d9e8b7a61", 97.0, 71234.0, 81559.0)
    assert [g.free for g in parsed] == [False, True, False, True]


def test_parse_not_available_values_and_junk():
    text = (
        "0, GPU-aaaa, [N/A], [N/A], [N/A]\n"
        "\n"
        "No devices were found\n"
        "1, GPU-bbbb, [Not Supported], 3, 40960\n"
    )
    parsed = parse_gpus(text)
    assert parsed == [
        GPU(0, "GPU-aaaa", None, None, None),
        GPU(1, "GPU-bbbb", None, 3.0, 40960.0),
    ]
    assert all(g.free for g in parsed)


def test_parse_ignores_extra_fields():
    sample = (FIXTURES / "h100x4" / "query-sample.csv").read_text()
    assert parse_gpus(sample) == h100x4()


def test_choose_the_idle_ones():
    chosen, warning = choose(h100x4(), 2)
    assert [g.index for g in chosen] == [1, 3]
    assert warning is None


def test_choose_one_prefers_least_memory():
    chosen, _ = choose(h100x4(), 1)
    assert [g.index for g in chosen] == [3]  # 0 MiB used beats 1 MiB


def test_choose_more_than_idle_takes_least_used_busy_and_warns():
    chosen, warning = choose(h100x4(), 3)
    assert [g.index for g in chosen] == [1, 2, 3]
    assert warning is not None
    assert "only 2 of the 3 requested GPU(s) are idle" in warning
    assert "GPU 2 (40960/81559 MiB used, 88% busy)" in warning


def test_choose_too_many_fails():
    with pytest.raises(gpus.NotEnoughGPUs, match="asked for 5 GPU.* only 4 are visible"):
        choose(h100x4(), 5)


def test_busy_by_utilisation_alone():
    compute_bound = GPU(0, "GPU-a", 95.0, 200.0, 81559.0)
    assert not compute_bound.free
    assert GPU(1, "GPU-b", 0.0, 900.0, 81559.0).free


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, [0, 1, 2, 3]),
        ("0,2", [0, 2]),
        (" 3 , 1 ", [1, 3]),
        ("GPU-3c9e7b2a", [1]),  # a UUID prefix, as CUDA accepts
        ("GPU-71b6c4d8-9e3a-4f15-a2d7-5c8e0f1a2b34,0", [0, 3]),
        ("", []),
        ("-1", []),
        ("7", []),
    ],
)
def test_visible_respects_cuda_visible_devices(value, expected):
    assert [g.index for g in visible(h100x4(), value)] == expected


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    full.update(env)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=full
    )


def test_script_with_fake_nvidia_smi():
    proc = run_script("2", GPU_MAGIC_NVIDIA_SMI=str(FAKE))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "1,3\n"
    assert proc.stderr == ""


def test_script_warns_when_busy_gpus_are_used():
    proc = run_script("1", GPU_MAGIC_NVIDIA_SMI=str(FAKE), CUDA_VISIBLE_DEVICES="0,2")
    assert proc.returncode == 0
    assert proc.stdout == "2\n"
    assert "warning: only 0 of the 1 requested GPU(s) are idle" in proc.stderr


def test_script_not_enough_gpus():
    proc = run_script("2", GPU_MAGIC_NVIDIA_SMI=str(FAKE), CUDA_VISIBLE_DEVICES="1")
    assert proc.returncode == gpus.EXIT_TOO_FEW
    assert proc.stdout == ""
    assert "asked for 2 GPU(s) but only 1 is visible" in proc.stderr
    assert "CUDA_VISIBLE_DEVICES='1'" in proc.stderr


def test_script_without_nvidia_smi(tmp_path):
    proc = run_script("1", GPU_MAGIC_NVIDIA_SMI=str(tmp_path / "nvidia-smi"))
    assert proc.returncode == gpus.EXIT_NO_NVIDIA_SMI
    assert "nvidia-smi was not found" in proc.stderr


def test_script_when_the_driver_is_down():
    proc = run_script(
        "1", GPU_MAGIC_NVIDIA_SMI=str(FAKE), FAKE_NVIDIA_SMI_DIR=str(FIXTURES / "no-driver")
    )
    assert proc.returncode == gpus.EXIT_NO_NVIDIA_SMI
    assert "failed with exit code 9" in proc.stderr
    assert "couldn't communicate with the NVIDIA driver" in proc.stderr


@pytest.mark.parametrize("args", [(), ("0",), ("two",), ("1", "2")])
def test_script_usage(args):
    proc = run_script(*args, GPU_MAGIC_NVIDIA_SMI=str(FAKE))
    assert proc.returncode == gpus.EXIT_USAGE
    assert "usage" in proc.stderr


def test_fake_nvidia_smi_serves_the_documented_queries():
    def fake(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(FAKE), *args], capture_output=True, text=True)

    assert fake(*gpus.QUERY_ARGS).stdout == (FIXTURES / "h100x4" / "query-select.csv").read_text()
    sample = fake(
        "--query-gpu=index,uuid,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw",
        "--format=csv,noheader,nounits",
    )
    assert sample.stdout.splitlines()[0].endswith(", 61, 612.48")
    assert fake("-L").stdout.startswith("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-")
    unknown = fake("--query-gpu=name")
    assert unknown.returncode == 2
    assert "unsupported arguments" in unknown.stderr


def test_every_fixture_line_parses():
    for csv in FIXTURES.glob("*/query-*.csv"):
        lines = [line for line in csv.read_text().splitlines() if line.strip()]
        assert len(parse_gpus(csv.read_text())) == len(lines), csv


@pytest.mark.parametrize(
    ("scenario", "utilization", "free"),
    [("h100x1-real-idle", 0.0, True), ("h100x1-real-busy", 100.0, False)],
)
def test_real_h100_captures_parse(scenario, utilization, free):
    """Output captured on a real H100 (driver 580.159.04) by bench/gpu_device_check.sh."""
    for name in ("query-select.csv", "query-sample.csv"):
        (gpu,) = parse_gpus((FIXTURES / scenario / name).read_text())
        assert gpu.index == 0
        assert gpu.uuid == "GPU-827f571d-4f36-e59b-ebeb-8252ebf24cfb"
        assert (gpu.utilization, gpu.memory_total, gpu.free) == (utilization, 81559.0, free)


def test_script_on_the_real_single_h100_capture():
    busy = str(FIXTURES / "h100x1-real-busy")
    one = run_script("1", GPU_MAGIC_NVIDIA_SMI=str(FAKE), FAKE_NVIDIA_SMI_DIR=busy)
    assert (one.returncode, one.stdout) == (0, "0\n")
    assert "only 0 of the 1 requested GPU(s) are idle" in one.stderr
    two = run_script("2", GPU_MAGIC_NVIDIA_SMI=str(FAKE), FAKE_NVIDIA_SMI_DIR=busy)
    assert two.returncode == gpus.EXIT_TOO_FEW
