"""Job latency on loopback: submit → running, and the status of one job (``%gpu_status JOB``).

Runs on the built-in ``local`` cluster and over a real sshd on 127.0.0.1 (warm connection), with
OpenSSH's own ``ssh host true`` round trip beside it for scale. Prints medians and p95 in ms.

    .venv/bin/python bench/bench_latency.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.fixtures import make_settings  # noqa: E402
from harness.sshd import SSHServer  # noqa: E402
from timing import summary, target, timed  # noqa: E402

from gpu_magic import Client, GPUJobRequest, formatting  # noqa: E402


def measure(client: Client, cluster: str, runs: int) -> dict[str, list[float]]:
    request = GPUJobRequest.create(code="y = 1", outputs=("y",), cluster=cluster)
    client.submit(request).wait(timeout=30)  # warm the connection
    handles = []

    def submit():
        handles.append(client.submit(request))

    submits = timed(submit, runs)
    assert all(h.job.status.value in ("running", "completed") for h in handles)
    for handle in handles:
        handle.wait(timeout=60)
    sleeper = client.submit(
        GPUJobRequest.create(code="import time; time.sleep(600)", cluster=cluster)
    )

    def status():  # what %gpu_status JOB does for a running job: one poll round trip + store
        job = client.job(sleeper.id)
        assert job.status.value == "running"
        formatting.job_details(job, client.store.transitions(job.id))

    try:
        return {"submit → running": submits, "status of a running job": timed(status, runs * 3)}
    finally:
        sleeper.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, SSHServer(Path(tmp) / "sshd") as server:
        tmp = Path(tmp)
        (tmp / "known_hosts").write_text(server.known_hosts_line() + "\n")
        settings = make_settings(
            tmp, gpu_cluster_base_path=str(tmp / "jobs"), max_concurrent_jobs=10_000
        )
        client = Client(settings)
        client.clusters.add(server.cluster(tmp / "remote"))
        ssh_true = [
            "ssh",
            "-p",
            str(server.port),
            "-i",
            str(server.client_key),
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={tmp / 'known_hosts'}",
            f"root@{server.host}",
            "true",
        ]
        for cluster in ("local", "ssh"):
            for what, samples in measure(client, cluster, args.runs).items():
                print(f"{cluster:6} {what:24} {summary(samples)}")
                if cluster == "ssh" and what == "submit → running":
                    took = statistics.median(samples)
                    case = "submit → running, warm connection (ssh)"
                    target(case, f"{took:.0f} ms", "< 200 ms", took < 200)
        openssh = timed(lambda: subprocess.run(ssh_true, check=True), args.runs)
        print(f"{'ssh':6} {'OpenSSH `ssh host true`':24} {summary(openssh)}")
        client.close()


if __name__ == "__main__":
    main()
