"""gpu_magic against submitit (PyPI) on the same real test Slurm (``tests/harness/slurm.py``).

submitit runs where ``sbatch`` is (here: inside the cluster's network namespace, as on a login
node) and shares a folder with the job; gpu_magic runs on the laptop side and reaches the
login node over SSH. Both submit the same trivial function and are timed to:

1. running: submit, then poll until Slurm says RUNNING. submitit is given its fastest poll
   (``job.get_info(mode="force")`` every 20 ms, an sacct call each); gpu_magic polls
   ``client.monitor.sync`` (one SSH round trip each) at the same pace.
2. result in hand: submit, then what each documents: ``job.result()`` for submitit (it looks
   for the result file once a second) and ``handle.wait(); handle.fetch()`` for gpu_magic; and
   submitit's fastest possible (``job.done(force_check=True)`` every 20 ms, then ``result()``).

Slurm's controller starts a submitted job at its next scheduling pass, once a second: one
run's time depends on where in that second the job was submitted (0 to 1 s more). So run k of
N starts every case of both tools at the same moment of the wall-clock second, k/N into it,
and the comparison is of the MEANS over those phases: the expected time of a submission made
at a random moment, which is what a user meets.

    .venv/bin/python bench/bench_submitit.py [--runs 5]

Needs root and slurm-wlm (with accounting: submitit reads job states from sacct) and the
``bench`` extra (``pip install .[bench]``: submitit).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.fixtures import make_settings  # noqa: E402
from harness.slurm import SlurmCluster, missing_packages  # noqa: E402
from timing import summary, target  # noqa: E402

from gpu_magic import Client, GPUJobRequest, JobStatus  # noqa: E402

POLL_S = 0.02
SUBMITIT = r"""
import json, sys, time
import submitit

def work(x):
    return x * 2

def at_phase(phase):  # sleep until phase (a fraction) into the next second but one
    time.sleep(2 - time.time() % 1 + phase)

folder, runs, poll, phase = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
executor = submitit.SlurmExecutor(folder=folder)
executor.update_parameters(time=5, cpus_per_task=1)
times = {"running": [], "result": [], "result_fast": []}
for _ in range(runs):
    at_phase(phase)
    start = time.perf_counter()
    job = executor.submit(work, 21)
    while job.get_info(mode="force").get("State") not in ("RUNNING", "COMPLETED"):
        time.sleep(poll)
    times["running"].append(time.perf_counter() - start)
    job.result()
    at_phase(phase)
    start = time.perf_counter()
    job = executor.submit(work, 21)
    assert job.result() == 42
    times["result"].append(time.perf_counter() - start)
    at_phase(phase)
    start = time.perf_counter()
    job = executor.submit(work, 21)
    while not job.done(force_check=True):
        time.sleep(poll)
    assert job.result() == 42
    times["result_fast"].append(time.perf_counter() - start)
print(json.dumps(times))
"""


def make_client(slurm: SlurmCluster, work: Path) -> Client:
    (work / "known_hosts").write_text(slurm.login.known_hosts_line() + "\n")
    client = Client(make_settings(work, max_concurrent_jobs=10_000))
    (work / "remote").mkdir()
    client.clusters.add(slurm.cluster(work / "remote"))
    return client


def warm(client: Client) -> GPUJobRequest:
    """The trivial request, run once: the connection is open and the helper up."""
    request = GPUJobRequest.create(code="y = x * 2", cluster="slurm", inputs=("x",), outputs=("y",))
    client.submit(request, {"x": 21}).wait(60)
    return request


def at_phase(phase: float) -> None:
    """Sleep until ``phase`` (a fraction) into the next wall-clock second but one (the same
    as the submitit script's)."""
    time.sleep(2 - time.time() % 1 + phase)


def ours(client: Client, request: GPUJobRequest, phase: float) -> dict[str, list[float]]:
    """One run of each case, each started ``phase`` into a second."""
    slow = GPUJobRequest.create(code="import time; time.sleep(2)", cluster="slurm")
    at_phase(phase)
    start = time.perf_counter()
    handle = client.submit(slow)
    while client.monitor.sync(handle.id).job.status not in (
        JobStatus.RUNNING,
        JobStatus.COMPLETED,
    ):
        time.sleep(POLL_S)
    running = time.perf_counter() - start
    handle.wait(60)  # an idle cluster for the next case, as submitit's job.result() leaves
    at_phase(phase)
    start = time.perf_counter()
    handle = client.submit(request, {"x": 21})
    assert handle.wait(60).fetch() == {"y": 42}
    return {"running": [running], "result": [time.perf_counter() - start]}


def theirs(slurm: SlurmCluster, folder: Path, phase: float) -> dict[str, list[float]]:
    """One run of each case, in a fresh Python on the login node (its start is not timed)."""
    folder.mkdir()
    argv = (sys.executable, "-c", SUBMITIT, str(folder), "1", str(POLL_S), str(phase))
    done = slurm.cmd(*argv, timeout=90)
    if done.returncode != 0:
        sys.exit(f"bench_submitit: submitit failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def paired(slurm: SlurmCluster, client: Client, work: Path, runs: int) -> tuple[dict, dict]:
    """Run k times ours, then submitit's, every case started k/runs into a second."""
    request = warm(client)
    mine: dict[str, list[float]] = {"running": [], "result": []}
    other: dict[str, list[float]] = {"running": [], "result": [], "result_fast": []}
    for run in range(runs):
        phase = run / runs
        ran = [
            (mine, ours(client, request, phase)),
            (other, theirs(slurm, work / f"submitit-{run}", phase)),
        ]
        for times, more in ran:
            for case, samples in more.items():
                times[case] += samples
    return mine, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=8, help="phases of the second to start at")
    args = parser.parse_args()
    why = missing_packages(accounting=True)
    if why:
        sys.exit(f"bench_submitit: {why}")
    try:
        import submitit  # noqa: F401
    except ImportError:
        sys.exit("bench_submitit: submitit is not installed (pip install .[bench])")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with SlurmCluster(work / "slurm", accounting=True) as slurm:
            client = make_client(slurm, work)
            try:
                mine, other = paired(slurm, client, work, args.runs)
            finally:
                client.close()
    print("gpu_magic (over SSH) vs submitit (on the login node), same Slurm, same function:")
    rows = [
        ("submit -> running, gpu_magic", mine["running"]),
        ("submit -> running, submitit (forced sacct polls)", other["running"]),
        ("submit -> result, gpu_magic wait()+fetch()", mine["result"]),
        ("submit -> result, submitit job.result()", other["result"]),
        ("submit -> result, submitit fastest (forced polls)", other["result_fast"]),
    ]
    for label, samples in rows:
        mean = statistics.mean(samples) * 1000
        print(f"  {label:<52} mean {mean:7.1f} ms   {summary([s * 1000 for s in samples])}")
    for case, a, b in [
        ("submit → running on Slurm vs submitit", "running", "running"),
        ("submit → result on Slurm vs submitit job.result()", "result", "result"),
        ("submit → result on Slurm vs submitit's fastest polls", "result", "result_fast"),
    ]:
        ours_s, theirs_s = statistics.mean(mine[a]), statistics.mean(other[b])
        figure = f"means over {args.runs} phases {ours_s:.2f} s vs {theirs_s:.2f} s"
        target(case, f"{figure}, {ours_s / theirs_s:.2f}x", "<= 1.0x", ours_s <= theirs_s)


if __name__ == "__main__":
    main()
