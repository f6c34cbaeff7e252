"""How fast is the job store for ``%gpu_status``? Inserts 1000 jobs, then times the reads.

Run: .venv/bin/python bench/bench_store.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_magic.jobstore import JobStore
from gpu_magic.models import GitSource, GPUJob, GPUJobRequest, JobStatus

N_JOBS = 1000
RUNS = 15


def make_job(i: int) -> GPUJob:
    request = GPUJobRequest(
        code=f"import torch\nprint({i})\n" * 20,
        inputs=("df", "config"),
        outputs=("model",),
        files=("data/train.csv", "utils.py"),
        git=GitSource(url="https://github.com/example/repo.git", ref="main"),
        env={"WANDB_MODE": "offline", "SEED": str(i)},
        gpus=1,
        name=f"train-{i % 50}",
        cluster="a100" if i % 2 else "local",
    )
    created = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=i)
    status = list(JobStatus)[i % len(JobStatus)]
    return GPUJob(
        id=f"20260101-{i:06d}-{i:06x}",
        request=request,
        cluster=request.cluster,
        remote_dir=f"/scratch/jobs/{i}",
        status=status,
        created_at=created,
        submitted_at=created,
        started_at=created + timedelta(seconds=5),
        scheduler_id=str(10_000 + i),
    )


def timed(fn, runs: int = RUNS) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, JobStore(Path(tmp) / "jobs.sqlite3") as store:
        jobs = [make_job(i) for i in range(N_JOBS)]
        start = time.perf_counter()
        for job in jobs:
            store.insert(job)
        insert_ms = (time.perf_counter() - start) * 1000
        assert len(store.list()) == N_JOBS

        print(f"insert {N_JOBS} jobs, one transaction each: {insert_ms:8.1f} ms in total")
        cases = {
            f"list() of {N_JOBS} jobs": store.list,
            "list(active_only=True)": lambda: store.list(active_only=True),
            "list(limit=20)": lambda: store.list(limit=20),
            "find(name), newest of 20": lambda: store.find("train-7"),
            "find(id suffix)": lambda: store.find("0003e7"),
            "count_active(cluster)": lambda: store.count_active("a100"),
        }
        for label, fn in cases.items():
            print(f"{label:<40} median of {RUNS}: {timed(fn):8.2f} ms")


if __name__ == "__main__":
    main()
