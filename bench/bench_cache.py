"""Resubmitting a cell whose ``--files`` folder did not change, over a loopback sshd.

Run: .venv/bin/python bench/bench_cache.py [--size-mb 100] [--runs 3]

The folder: one file of 80% of ``--size-mb`` and 200 small files for the rest. Timed, medians
of ``--runs``: the first submit (everything sent), a resubmit (the host's cache holds every
file: target 0 data bytes, under 0.3 s), and, in the same run, what users fall back to:
``scp -r`` of the folder and ``rsync -a`` of the unchanged folder to where it already is.
"Submit" is ``Client.submit`` returning: packaged, uploaded (or linked), launched. The bytes
are those the audit log recorded going to the host for the job (SFTP writes and tar streams).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from harness.fixtures import make_settings  # noqa: E402
from harness.sshd import SSHServer  # noqa: E402
from timing import target, timed  # noqa: E402

from gpu_magic import Client, GPUJobRequest  # noqa: E402
from gpu_magic.clusters import ClusterConfig  # noqa: E402
from gpu_magic.formatting import size as shown  # noqa: E402

# the host's own Python, as on a GPU host (a login shell's pyenv shim here costs ~150 ms a start)
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else None


def make_folder(root: Path, total: int) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    (data / "big.bin").write_bytes(os.urandom(total * 8 // 10))
    small = (total - total * 8 // 10) // 200
    for i in range(200):
        (data / f"part{i:03d}.bin").write_bytes(os.urandom(small))
    return data


def sent(client: Client, job_id: str) -> int:
    records = client.audit.records(job_id)
    return sum(r.get("bytes", 0) for r in records if r["event"] == "upload") + sum(
        r.get("stdin_bytes", 0) for r in records if r.get("direction") == "up"
    )


def submit(client: Client, cwd: Path) -> tuple[float, int]:
    request = GPUJobRequest.create(code="pass", cluster="bench", files=("data",))
    start = time.perf_counter()
    handle = client.submit(request, cwd=cwd)
    took = time.perf_counter() - start
    handle.wait(120)
    client.results.collect(handle.id)  # the background collection is over before the next
    return took, sent(client, handle.id)


def openssh(server: SSHServer, *argv: str) -> float:
    start = time.perf_counter()
    subprocess.run(list(argv), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gm-cache-") as tmp:
        work = Path(tmp)
        make_folder(work / "nb", args.size_mb * 10**6)
        with SSHServer(work / "sshd") as server:
            ssh = ["-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={server.known_hosts}",
                   "-i", str(server.client_key)]  # fmt: skip
            firsts, resubmits, scps, rsyncs, bare = [], [], [], [], []
            for run in range(args.runs):
                settings = make_settings(work / f"run{run}", known_hosts_path=server.known_hosts)
                client = Client(settings)
                client.clusters.add(ClusterConfig(
                    name="bench", host="127.0.0.1", port=server.port, user="root",
                    key=str(server.client_key), base_path=str(work / f"remote{run}"),
                    python=PYTHON,
                ))  # fmt: skip
                client.host("bench").transport.connect()  # a warm connection, as in a kernel
                transport = client.host("bench").transport
                bare.append(min(timed(lambda t=transport: t.run("true"), 5)))
                firsts.append(submit(client, work / "nb"))
                resubmits.append(submit(client, work / "nb"))
                client.close()
                source, copy = f"{work}/nb/data/", f"root@127.0.0.1:{work}/rsync{run}/"
                scps.append(openssh(server, "scp", "-q", "-r", "-P", str(server.port), *ssh,
                                    source, f"root@127.0.0.1:{work}/scp{run}"))  # fmt: skip
                rsync = ["rsync", "-a", "-e", " ".join(["ssh", "-p", str(server.port), *ssh])]
                openssh(server, *rsync, source, copy)  # the first copy
                rsyncs.append(openssh(server, *rsync, source, copy))  # nothing changed
                for copied in (f"scp{run}", f"rsync{run}"):
                    shutil.rmtree(work / copied, ignore_errors=True)
    median = statistics.median
    print(f"resubmit, unchanged {args.size_mb} MB folder (1 file + 200 small), loopback sshd, "
          f"{os.cpu_count()} CPUs, median of {args.runs} runs")  # fmt: skip
    print(f"  first submit        {median(t for t, _ in firsts) * 1000:8.0f} ms   "
          f"sent {shown(median(b for _, b in firsts))}")  # fmt: skip
    print(
        f"  resubmit            {median(t for t, _ in resubmits) * 1000:8.0f} ms   "
        f"sent {shown(median(b for _, b in resubmits))}  (target: no file data, < 300 ms)"
    )
    print(f"  scp -r (first copy) {median(scps) * 1000:8.0f} ms")
    print(f"  one bare command    {median(bare):8.0f} ms   (`true` on the connection's helper; "
          "a resubmit runs three: ask the cache, commit, launch)")  # fmt: skip
    print(f"  rsync -a, unchanged {median(rsyncs) * 1000:8.0f} ms   (the same folder, again)")
    ratio = median(t for t, _ in resubmits) / median(rsyncs)
    print(f"  resubmit / rsync of the unchanged folder: {ratio:.2f}x")
    took, sent = median(t for t, _ in resubmits), median(b for _, b in resubmits)
    smallest = (args.size_mb * 10**6 - args.size_mb * 10**6 * 8 // 10) // 200
    # less than the smallest shipped file: not one of them went (the rest is spec, run.sh, lists)
    target(
        f"resubmit, unchanged {args.size_mb} MB folder",
        f"{took * 1000:.0f} ms, {shown(sent)} sent, no file data: {sent < smallest}",
        "0 data bytes, < 300 ms",
        took < 0.3 and sent < smallest,
    )


if __name__ == "__main__":
    main()
