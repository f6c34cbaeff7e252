"""100 jobs at once from one client over a loopback sshd: they all complete, once each.

Run: .venv/bin/python bench/bench_scale.py [--jobs 100]

Every job ships the same small data folder (the host's cache sends it once) and runs until the
bench releases them all at once. Reported: the time to submit them all (per job), how many run
at once, the monitor's tick while all of them run (one round trip for all), the time until
every one has ended after the release, and the peak memory of this process (the kernel's
side) from ``getrusage``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from harness.fixtures import make_settings  # noqa: E402
from harness.sshd import SSHServer  # noqa: E402
from timing import target  # noqa: E402

from gpu_magic import Client, GPUJobRequest, JobStatus  # noqa: E402
from gpu_magic.clusters import ClusterConfig  # noqa: E402

PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else None
CELL = (  # runs until the bench releases every job at once, so all of them run together
    "import os, time\nprint('step 1 loss=0.5', flush=True)\n"
    "while not os.path.exists(os.environ['RELEASE']): time.sleep(0.1)\nresult = n * 2"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gm-scale-") as tmp:
        work = Path(tmp)
        data = work / "nb" / "data"
        data.mkdir(parents=True)
        (data / "table.bin").write_bytes(os.urandom(2 << 20))
        with SSHServer(work / "sshd", max_sessions=64) as server:
            settings = make_settings(work, known_hosts_path=server.known_hosts)
            settings = settings.model_copy(update={"max_concurrent_jobs": args.jobs})
            client = Client(settings)
            client.clusters.add(ClusterConfig(
                name="bench", host="127.0.0.1", port=server.port, user="root",
                key=str(server.client_key), base_path=str(work / "remote"), python=PYTHON,
                max_sessions=32,
            ))  # fmt: skip
            client.host("bench").transport.connect()
            start = time.perf_counter()
            handles = []
            for n in range(args.jobs):
                request = GPUJobRequest.create(
                    code=CELL, cluster="bench", files=("data",), inputs=("n",),
                    outputs=("result",), env={"RELEASE": str(work / "release")},
                )  # fmt: skip
                handles.append(client.submit(request, {"n": n}, cwd=work / "nb"))
            submitted = time.perf_counter() - start
            ticks = []
            monitor = client.monitor
            for handle in handles:
                monitor.feed(handle.id)
            for _ in range(10):  # all of them running
                t = time.perf_counter()
                monitor.tick()
                ticks.append((time.perf_counter() - t) * 1000)
            running = sum(j.status == JobStatus.RUNNING for j in client.jobs(refresh=False))
            released = time.perf_counter()
            (work / "release").touch()
            while not all(j.is_terminal for j in client.jobs(cluster="bench", refresh=False)):
                monitor.tick()
            ended = time.perf_counter() - released
            outcomes = [client.wait(h.id, 60) for h in handles]
            right = sum(
                client.results.outputs(h.id) == {"result": 2 * n} for n, h in enumerate(handles)
            )
            completed = sum(j.status == JobStatus.COMPLETED for j in outcomes)
            client.results.close(timeout=300)  # every background collection has ended
            background = tar_commands(client, since=0)
            collecting = collect_paired(client, [h.id for h in handles])
            client.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (one_s, one_n), (many_s, many_n) = collecting
    print(f"{args.jobs} concurrent jobs from one client, loopback sshd, {os.cpu_count()} CPUs")
    print(
        f"  submitted all in     {submitted:7.1f} s   ({submitted / args.jobs * 1000:.0f} ms a job)"
    )
    print(f"  running at once      {running}/{args.jobs}")
    print(f"  all ended            {ended:7.1f} s after their release")
    print(f"  completed, right     {completed}/{args.jobs}, {right}/{args.jobs} results right")
    if ticks:
        tick, worst = statistics.median(ticks), max(ticks)
        print(f"  monitor tick         median {tick:.0f} ms, max {worst:.0f} ms")
    print(f"  peak memory (client) {peak:7.0f} MB")
    print(f"  collected as they ended: {background} tar commands for {args.jobs} jobs")
    print(
        f"  collecting all {args.jobs} again, one job at a time: {one_s:6.2f} s, {one_n} commands"
    )
    print(
        f"  collecting all {args.jobs} again, in one go:         {many_s:6.2f} s, {many_n} commands"
    )
    target(
        f"collect {args.jobs} ended jobs of one host",
        f"{many_n} command(s), {many_s:.2f} s; one job at a time: {one_n} commands, "
        f"{one_s:.2f} s ({one_s / many_s:.1f}x as long)",
        "one round trip per host",
        many_n == 1,
    )
    target(
        f"{args.jobs} concurrent jobs from one kernel",
        f"{completed}/{args.jobs} completed right, {submitted / args.jobs * 1000:.0f} ms a job, "
        f"peak {peak:.0f} MB",
        "all complete",
        completed == right == args.jobs,
    )


def tar_commands(client: Client, since: int) -> int:
    """The collections' commands since audit record ``since``: their tar streams (a job
    folder is listed over SFTP, and a collection runs no other command)."""
    return sum(
        r["event"] == "command" and " --tar " in r.get("command", "")
        for r in client.audit.records()
        if r["seq"] > since
    )


def collect_paired(client: Client, ids: list[str]) -> list[tuple[float, int]]:
    """Every job collected again: one at a time, then all in one go; ``(seconds, commands)``
    of each way."""
    ways = []
    for collect in (
        lambda: [client.results.collect(job_id, again=True) for job_id in ids],
        lambda: client.results.collect_many(ids, again=True),
    ):
        since = client.audit.records()[-1]["seq"]
        start = time.perf_counter()
        collect()
        ways.append((time.perf_counter() - start, tar_commands(client, since)))
    return ways


if __name__ == "__main__":
    main()
