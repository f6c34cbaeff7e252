"""Resubmitting a cell after editing 1% of a large shipped file, against ``rsync`` of the same
edit, over a loopback sshd.

Run: .venv/bin/python bench/bench_patch.py [--size-mb 1000] [--runs 3]

The file starts as random bytes, shipped once by a first submit and copied once by ``rsync``.
Each run then edits it in place: ``EDITS`` overwrites of random bytes at random offsets, 1% of
the file in all, and times, on the same edit:
- our resubmit: ``Client.submit`` returning (the file hashed and cut into chunks here, the new
  chunks sent, the file built on the host from its cached version and checked whole, the job
  launched), with the bytes the audit log recorded going to the host;
- ``rsync -a`` of the edited file to the copy of the version before (its delta transfer), with
  the bytes rsync's ``--stats`` says it sent.
Both write a whole new file on the host: each starts after ``sync``, and they take turns going
first. The target: our time <= rsync's.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from bench_cache import PYTHON, sent  # noqa: E402
from harness.fixtures import make_settings  # noqa: E402
from harness.sshd import SSHServer  # noqa: E402
from timing import target  # noqa: E402

from gpu_magic import Client, GPUJobRequest  # noqa: E402
from gpu_magic.clusters import ClusterConfig  # noqa: E402
from gpu_magic.formatting import size as shown  # noqa: E402

EDITS = 10
BLOCK = 8 << 20  # the random file is written this much at a time


def make_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        for at in range(0, size, BLOCK):
            f.write(os.urandom(min(BLOCK, size - at)))


def edit(path: Path, rng: random.Random) -> None:
    """Overwrite 1% of ``path`` in ``EDITS`` places."""
    size = path.stat().st_size
    each = size // 100 // EDITS
    with open(path, "r+b") as f:
        for _ in range(EDITS):
            f.seek(rng.randrange(0, size - each))
            f.write(os.urandom(each))


def submit(client: Client, cwd: Path) -> tuple[float, int, float]:
    """Seconds to submit, bytes sent, and seconds of those in the host's commit (where a
    patched file is built and checked)."""
    request = GPUJobRequest.create(code="pass", cluster="bench", files=("data",))
    start = time.perf_counter()
    handle = client.submit(request, cwd=cwd)
    took = time.perf_counter() - start
    handle.wait(300)
    records = client.audit.records(handle.id)
    commit = sum(r["ms"] for r in records if "> commit " in r.get("command", ""))
    return took, sent(client, handle.id), commit / 1000


def rsync(server: SSHServer, source: Path, copy: str) -> tuple[float, int]:
    known = f"UserKnownHostsFile={server.known_hosts}"
    ssh = ["ssh", "-p", str(server.port), "-o", "BatchMode=yes", "-o", known,
           "-i", str(server.client_key)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(
        ["rsync", "-a", "--stats", "-e", " ".join(ssh), str(source), copy],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    took = time.perf_counter() - start
    found = re.search(r"Total bytes sent: ([\d,]+)", done.stdout)
    return took, int(found.group(1).replace(",", "")) if found else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="gm-patch-") as tmp:
        work = Path(tmp)
        big = work / "nb" / "data" / "big.bin"
        make_file(big, args.size_mb * 10**6)
        with SSHServer(work / "sshd") as server:
            client = Client(make_settings(work / "client", known_hosts_path=server.known_hosts))
            client.clusters.add(ClusterConfig(
                name="bench", host="127.0.0.1", port=server.port, user="root",
                key=str(server.client_key), base_path=str(work / "remote"), python=PYTHON,
            ))  # fmt: skip
            client.host("bench").transport.connect()  # a warm connection, as in a kernel
            first = submit(client, work / "nb")[:2]
            copy = f"root@127.0.0.1:{work}/rsync/"
            (work / "rsync").mkdir()
            rsync(server, big, copy)  # rsync's first copy
            ours, theirs = [], []
            for run in range(args.runs):
                edit(big, rng)
                timed = [lambda: ours.append(submit(client, work / "nb")),
                         lambda: theirs.append(rsync(server, big, copy))]  # fmt: skip
                for measure in timed if run % 2 == 0 else reversed(timed):
                    os.sync()  # neither pays for the other's writes still going to disk
                    measure()
            client.close()
    median = statistics.median
    took, data = median(t for t, _, _ in ours), median(b for _, b, _ in ours)
    built = median(c for _, _, c in ours)
    rsync_took, rsync_data = median(t for t, _ in theirs), median(b for _, b in theirs)
    print(f"resubmit after editing 1% of a {args.size_mb} MB file ({EDITS} places), loopback "
          f"sshd, {os.cpu_count()} CPUs, median of {args.runs} runs")  # fmt: skip
    print(f"  first submit          {first[0] * 1000:8.0f} ms   sent {shown(first[1])}")
    print(f"  resubmit, edited      {took * 1000:8.0f} ms   sent {shown(data)}, of which "
          f"{built * 1000:.0f} ms the host's commit (built and checked there)")  # fmt: skip
    print(f"  rsync -a, same edit   {rsync_took * 1000:8.0f} ms   sent {shown(rsync_data)}")
    ratio = took / rsync_took
    print(f"  resubmit / rsync: {ratio:.2f}x")
    target(
        f"resubmit after editing 1% of a {args.size_mb} MB file vs rsync",
        f"{took * 1000:.0f} ms vs {rsync_took * 1000:.0f} ms, {ratio:.2f}x "
        f"({shown(data)} vs {shown(rsync_data)} sent)",
        "<= 1.0x rsync",
        ratio <= 1.0,
    )


if __name__ == "__main__":
    main()
