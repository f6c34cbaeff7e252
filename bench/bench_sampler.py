"""CPU cost of the GPU telemetry sampler (``gpu_magic/remote/sampler.py``).

Starts the sampler as run.sh does (``python -S sampler.py ...``), waits for its first sample, then
reads ``utime + stime`` from ``/proc/PID/stat`` of the sampler and of its nvidia-smi child over
``--seconds`` (default 30) at ``--interval`` (default: the sampler's own, 2 s) and prints both as
% of one core, plus the start-up CPU and how long a TERM takes to stop it. Uses the real
``nvidia-smi`` when one is on PATH, else (or with ``--fake``) the fake one replaying
``tests/fixtures/nvidia_smi/h100x1-real-busy``; the fake's own CPU (a bash loop) says nothing
about the real one's. ``--compare-spawn N`` also times N one-shot nvidia-smi queries, the cost
per tick of the design this replaced (spawning nvidia-smi every tick).

    python bench/bench_sampler.py [--seconds 30] [--interval 2] [--fake] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "gpu_magic" / "remote" / "sampler.py"
FAKES = ROOT / "tests" / "fakes"
FAKE_SCENARIO = ROOT / "tests" / "fixtures" / "nvidia_smi" / "h100x1-real-busy"
sys.path.insert(0, str(SCRIPT.parent))  # the script alone: no gpu_magic dependencies needed
from sampler import DEFAULT_INTERVAL_S, QUERY_ARGS  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = False) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:  # what it reaped: the fake's forks
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def child_of(pid: int) -> int | None:
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == pid and stat[0] != "Z":
            return int(entry)
    return None


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.01)
    raise SystemExit("timed out waiting for the sampler")


def environment(fake: bool) -> tuple[dict[str, str], str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS")
    }
    if not fake and shutil.which("nvidia-smi"):
        return env, "real nvidia-smi"
    env["PATH"] = f"{FAKES}{os.pathsep}{env['PATH']}"
    env["FAKE_NVIDIA_SMI_DIR"] = str(FAKE_SCENARIO)
    return env, f"fake nvidia-smi ({FAKE_SCENARIO.name})"


def measure(seconds: float, interval: float, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gpu.csv"
        command = [sys.executable, "-S", str(SCRIPT), "--out", str(out)]
        command += ["--marker", f"{tmp}/gpu_telemetry", "--interval", str(interval)]
        started = time.monotonic()
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: out.exists() and out.stat().st_size > 0)
            first_sample_s = time.monotonic() - started
            startup = cpu_seconds(proc.pid)
            smi = wait_for(lambda: child_of(proc.pid))
            before = (cpu_seconds(proc.pid), cpu_seconds(smi, children=True), time.monotonic())
            time.sleep(seconds)
            after = (cpu_seconds(proc.pid), cpu_seconds(smi, children=True), time.monotonic())
            stop_started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            stop_s = time.monotonic() - stop_started
        finally:
            proc.kill()
            proc.wait()
        lines = out.read_text().splitlines()
        marker = Path(tmp, "gpu_telemetry")
        marker_text = marker.read_text().strip() if marker.exists() else None
    elapsed = after[2] - before[2]
    stamps = sorted({float(line.split(", ", 1)[0]) for line in lines})
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "interval_s": interval,
        "measured_s": round(elapsed, 2),
        "sampler_cpu_percent": round(100 * (after[0] - before[0]) / elapsed, 3),
        "nvidia_smi_cpu_percent": round(100 * (after[1] - before[1]) / elapsed, 3),
        "sampler_startup_cpu_ms": round(1000 * startup, 1),
        "first_sample_after_s": round(first_sample_s, 3),
        "stop_after_term_s": round(stop_s, 3),
        "nvidia_smi_left_running": child_of(proc.pid) is not None,
        "lines": len(lines),
        "ticks": len(stamps),
        "median_gap_s": round(statistics.median(gaps), 3) if gaps else None,
        "marker": marker_text,
    }


def spawn_cost(runs: int, env: dict[str, str]) -> dict:
    """CPU and wall time of one one-shot ``nvidia-smi --query-gpu`` (the spawn-per-tick design)."""
    cpu, wall = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        subprocess.run(["nvidia-smi", *QUERY_ARGS], env=env, capture_output=True, check=True)
        wall.append(time.monotonic() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {
        "spawn_runs": runs,
        "spawn_cpu_ms_median": round(1000 * statistics.median(cpu), 1),
        "spawn_wall_ms_median": round(1000 * statistics.median(wall), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S)
    parser.add_argument("--fake", action="store_true", help="use the fake nvidia-smi")
    parser.add_argument("--compare-spawn", type=int, default=0, metavar="N")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    env, source = environment(args.fake)
    result = {
        "nvidia_smi": source,
        "cores": os.cpu_count(),
        **measure(args.seconds, args.interval, env),
    }
    if args.compare_spawn:
        result.update(spawn_cost(args.compare_spawn, env))
        per_tick = result["spawn_cpu_ms_median"] / 1000 / args.interval
        result["spawn_per_tick_cpu_percent"] = round(100 * per_tick, 3)
    for key, value in result.items():
        print(f"{key:28} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
