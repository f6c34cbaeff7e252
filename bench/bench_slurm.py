"""Slurm targets on the real test cluster (``tests/harness/slurm.py``; needs root and slurm-wlm):

1. submit → queued on a warm connection (target < 0.5 s): ``Client.submit`` end to end (package,
   verified upload, ``sbatch --parsable`` in one command) and the sbatch round trip alone
   (``SlurmScheduler.submit``), beside Slurm's own floor (``sbatch --wrap true`` run directly in
   the cluster's namespace, no SSH), OpenSSH's ``ssh login sbatch ...`` (a new connection), and
   one bare exec (``true``) on the same warm connection: the SSH share of every round trip.
2. one poll of 100 queued/running jobs (target < 0.5 s): ``scheduler.look`` (one round trip:
   squeue for all of them, the pending queue for their positions, the job-folder probe), beside
   the bare ``squeue`` it runs.

    .venv/bin/python bench/bench_slurm.py [--runs 20] [--jobs 100]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.fixtures import make_settings  # noqa: E402
from harness.slurm import SlurmCluster, missing_packages  # noqa: E402
from timing import summary, timed  # noqa: E402

from gpu_magic import Client, GPUJobRequest, JobStatus  # noqa: E402
from gpu_magic.results.hostfolder import folder_of  # noqa: E402

SLEEP = "import time\ntime.sleep(600)"


def row(label: str, samples: list[float]) -> str:
    return f"  {label:<48} {summary(samples)}"


def make_client(slurm: SlurmCluster, work: Path) -> Client:
    (work / "known_hosts").write_text(slurm.login.known_hosts_line() + "\n")
    settings = make_settings(work, max_concurrent_jobs=10_000)
    client = Client(settings)
    (work / "remote").mkdir()
    client.clusters.add(slurm.cluster(work / "remote"))
    return client


def submit_latency(client: Client, slurm: SlurmCluster, runs: int) -> list[str]:
    request = GPUJobRequest.create(code=SLEEP, cluster="slurm")
    held = GPUJobRequest.create(
        code="pass", cluster="slurm", resources={"sbatch": {"begin": "now+1hour"}}
    )
    client.submit(request)  # warm: connection open, home known
    handles = []
    end_to_end = timed(lambda: handles.append(client.submit(held)), runs)
    assert all(h.job.status == JobStatus.QUEUED for h in handles)
    cluster = client.clusters.get("slurm")
    scheduler = client.host(cluster.name).scheduler
    job = handles[0].job
    sbatch_only = timed(lambda: scheduler.submit(job, folder_of(job)), runs)
    bare = ["sbatch", "--parsable", "--begin=now+1hour", "-o", "/dev/null", "--wrap", "true"]
    floor = timed(lambda: slurm.cmd(*bare, check=True), runs)
    login = slurm.login
    ssh = [
        "ssh", "-i", str(login.client_key), "-p", str(login.port), "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={login.known_hosts}", f"root@{login.host}", *bare,
    ]  # fmt: skip
    openssh = timed(lambda: subprocess.run(ssh, check=True, capture_output=True), runs)
    exec_true = timed(lambda: client.host(cluster.name).transport.run("true").check(), runs)
    return [
        row("Client.submit → queued (warm connection)", end_to_end),
        row("  of which sbatch round trip (scheduler.submit)", sbatch_only),
        row("sbatch in the namespace (Slurm's floor, no SSH)", floor),
        row("OpenSSH: ssh login sbatch (new connection)", openssh),
        row("one exec on the warm connection (`true`)", exec_true),
    ]


def poll_latency(client: Client, slurm: SlurmCluster, jobs: int, runs: int) -> list[str]:
    request = GPUJobRequest.create(code=SLEEP, cluster="slurm")
    handles = [client.submit(request) for _ in range(jobs)]
    records = [h.job for h in handles]
    states = {r.status for r in records}
    cluster = client.clusters.get("slurm")
    scheduler = client.host(cluster.name).scheduler
    scheduler.look(records)  # first poll learns whether sacct works
    looks = timed(lambda: scheduler.look(records), runs)
    seen = scheduler.look(records)
    running = sum(1 for look in seen.values() if look.observation.status == JobStatus.RUNNING)
    queued = sum(1 for look in seen.values() if look.observation.status == JobStatus.QUEUED)
    squeue = ["squeue", "--me", "-h", "-r", "-t", "all", "-o", "%i|%T|%r|%N|%P|%S"]
    bare = timed(lambda: slurm.cmd(*squeue, check=True), runs)
    return [
        f"  {jobs} jobs: {running} running, {queued} queued (stored as {sorted(map(str, states))})",
        row(f"one poll of {jobs} jobs (scheduler.look, 1 round trip)", looks),
        row("bare squeue in the namespace (no SSH, no probe)", bare),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=100)
    args = parser.parse_args()
    why = missing_packages()
    if why:
        sys.exit(f"bench_slurm: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with SlurmCluster(work / "slurm") as slurm:
            client = make_client(slurm, work)
            try:
                print("Slurm submit latency (loopback veth to the login node's sshd):")
                print("\n".join(submit_latency(client, slurm, args.runs)))
                slurm.cmd("scancel", "--user=root")
                print("Slurm poll latency:")
                print("\n".join(poll_latency(client, slurm, args.jobs, args.runs)))
            finally:
                client.close()


if __name__ == "__main__":
    main()
