"""``make bench``: every bench in one run, then ``bench/RESULTS.md``.

Each bench prints its own report (echoed here as it comes) and a ``TARGET case | figure |
target | met`` line per target it measures (``timing.target``); RESULTS.md gets the machine it
ran on, the table of those targets, and every bench's full report. A bench that cannot run here
(no Slurm, not root) is listed with its reason, and the others still run.

    .venv/bin/python bench/run_all.py [--only bench_cache.py ...] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    "bench_transfer.py",
    "bench_cache.py",
    "bench_patch.py",
    "bench_latency.py",
    "bench_store.py",
    "bench_monitor.py",
    "bench_first_submit.py",
    "bench_server.py",
    "bench_faults.py",
    "bench_scale.py",
    "bench_slurm.py",
    "bench_submitit.py",
]
MARK = "TARGET "


def run(bench: str) -> tuple[int, str, float]:
    """Run one bench, echoing its output as it comes; returns (exit code, output, seconds)."""
    start = time.monotonic()
    print(f"\n=== {bench}", flush=True)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / bench)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=HERE.parent,
    )
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    return proc.wait(), "".join(lines), time.monotonic() - start


def first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    import paramiko

    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; memory {pages / 2**30:.0f} GiB",
        f"- kernel {platform.release()}; Python {platform.python_version()}; "
        f"paramiko {paramiko.__version__}",
        f"- OpenSSH: {first_line(['ssh', '-V'])}; rsync: {first_line(['rsync', '--version'])}",
        f"- Slurm: {first_line(['/usr/sbin/slurmctld', '-V'])}",  # sinfo needs a config
        "- every sshd is on 127.0.0.1 (loopback): the figures are CPU-bound, not network-bound",
    ]


def targets(outputs: dict[str, str]) -> list[str]:
    rows = ["| case | measured | target | |", "|---|---|---|---|"]
    for output in outputs.values():
        for line in output.splitlines():
            if line.startswith(MARK):
                rows.append("| " + line[len(MARK) :].strip() + " |")
    return rows


def report(outputs: dict[str, str], codes: dict[str, int], took: dict[str, float]) -> str:
    commit = first_line(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"])
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmark results",
        "",
        f"`make bench` at {commit}, {now}. Medians of repeated runs; OpenSSH, rsync and",
        "submitit measured in the same run on the same machine. Written by `bench/run_all.py`.",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        "## Targets",
        "",
        *targets(outputs),
        "",
        "## Reports",
    ]
    for bench, output in outputs.items():
        state = "" if codes[bench] == 0 else f" (exit {codes[bench]}: did not finish)"
        parts += ["", f"### {bench}{state}, {took[bench]:.0f} s", "", "```", output.rstrip(), "```"]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="these benches only")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    outputs, codes, took = {}, {}, {}
    for bench in args.only or BENCHES:
        codes[bench], outputs[bench], took[bench] = run(bench)
    args.out.write_text(report(outputs, codes, took))
    print(f"\nwrote {args.out}")
    sys.exit(1 if any(codes.values()) else 0)


if __name__ == "__main__":
    main()
