"""Availability under a scripted fault schedule: how much of the time the client's view of a
running job is fresh, and how fast it is fresh again after each fault ends.

A real sshd runs in a network namespace of its own (``tests/harness/faults.FarHost``); a job
prints a line every 0.2 s. Two observers follow it side by side, one sample a second each:

- gpu_magic: the monitor with a panel on screen (its fast pace), as in a notebook;
- OpenSSH: ``ssh -o ConnectTimeout=10 -o ServerAliveInterval=5 host tail -c 64 output.log``
  once a second, each run in its own process: what a hand-written watch loop does.

A one-second slot is *fresh* when the observer's last successful look at the host is at most
``FRESH_S`` old. The schedule: connections killed every ~5 s for a while, a 30 s partition
(every packet dropped), sshd stopped for 20 s. Reported per observer: availability over the
whole run, availability outside the fault windows (what the client itself loses: recovery
after each fault, the plan's 99.9% criterion), and the recovery time after each fault.

    .venv/bin/python bench/bench_faults.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.faults import FarHost  # noqa: E402
from harness.fixtures import make_settings  # noqa: E402

from gpu_magic import Client, GPUJobRequest  # noqa: E402

FRESH_S = 2.0
JOB = "import time\nfor i in range(100000):\n    print(i, flush=True)\n    time.sleep(0.2)\n"


class Observer:
    """The moments an observer's looks at the host succeeded."""

    def __init__(self, name: str):
        self.name, self.ok = name, [0.0]
        self.lock = threading.Lock()

    def saw(self) -> None:
        with self.lock:
            self.ok.append(time.monotonic())

    def fresh_at(self, moment: float) -> bool:
        with self.lock:
            last = max((t for t in self.ok if t <= moment), default=0.0)
        return moment - last <= FRESH_S

    def fresh_again(self, moment: float) -> float | None:
        with self.lock:
            after = [t for t in self.ok if t >= moment]
        return after[0] - moment if after else None


def ssh_loop(host: FarHost, log: str, observer: Observer, stop: threading.Event) -> None:
    server = host.server
    known = server.dir.parent / "openssh_known_hosts"  # the restarted sshd rewrites its own
    known.write_text(host.known_hosts_line() + "\n")
    argv = [
        "ssh", "-q", "-i", str(server.client_key), "-o", f"UserKnownHostsFile={known}",
        "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
        "-o", "ServerAliveInterval=5", "-o", "BatchMode=yes", f"root@{server.host}",
        f"tail -c 64 {log}",
    ]  # fmt: skip
    while not stop.is_set():
        started = time.monotonic()
        try:
            if subprocess.run(argv, capture_output=True, timeout=30).returncode == 0:
                observer.saw()
        except subprocess.TimeoutExpired:
            pass
        stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def kill_connections_every_5s(host: FarHost, rounds: int) -> None:
    for _ in range(rounds):
        host.server.drop_connections()
        time.sleep(random.uniform(4, 6))


def schedule(host: FarHost, quick: bool) -> list[tuple[str, float, float]]:
    """Run the faults, each after a quiet spell; returns (fault, start, end) windows. The
    sleeps are the schedule itself."""
    faults = [
        (
            "connections killed every ~5 s",
            lambda: kill_connections_every_5s(host, 4 if quick else 12),
            None,
        ),
        ("partition", host.cut, (10 if quick else 30, host.heal)),
        ("sshd stopped", host.stop_sshd, (8 if quick else 20, host.start_sshd)),
    ]
    windows = []
    for name, begin, lasting in faults:
        time.sleep(10)
        start = time.monotonic()
        begin()
        if lasting is not None:
            time.sleep(lasting[0])
            lasting[1]()
        windows.append((name, start, time.monotonic()))
    time.sleep(15)
    return windows


def report(observer: Observer, begin: float, end: float, windows) -> None:
    slots = [begin + i for i in range(int(end - begin))]
    faulty = [(s, e) for _, s, e in windows if e > s]
    outside = [t for t in slots if not any(s <= t <= e for s, e in faulty)]
    fresh_all = sum(observer.fresh_at(t) for t in slots) / len(slots)
    fresh_out = sum(observer.fresh_at(t) for t in outside) / len(outside)
    print(
        f"{observer.name:10s} fresh {fresh_all:6.1%} of {len(slots)} s; "
        f"outside fault windows {fresh_out:7.2%} of {len(outside)} s"
    )
    for fault, start, stop in windows:
        again = observer.fresh_again(stop)
        shown = f"{again:5.1f} s" if again is not None else "never"
        during = [t for t in slots if start <= t <= stop]
        fresh = sum(observer.fresh_at(t) for t in during) / max(1, len(during))
        print(f"{'':10s} {fault}: fresh {fresh:6.1%} during it, fresh again {shown} after")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a shorter schedule (~1.5 min)")
    quick = parser.parse_args().quick
    tmp = Path(tempfile.mkdtemp(prefix="bench_faults"))
    host = FarHost(tmp / "far").start()
    settings = make_settings(tmp, ssh_connection_timeout=10)
    settings.known_hosts_path.write_text(host.known_hosts_line() + "\n")
    (tmp / "remote").mkdir()
    client = Client(settings)
    client.clusters.add(host.cluster(tmp / "remote"))
    ours, theirs = Observer("gpu_magic"), Observer("OpenSSH")
    client.monitor.on_tick(lambda cluster, seconds, error: error is None and ours.saw())
    stop = threading.Event()
    try:
        handle = client.submit(GPUJobRequest.create(code=JOB, cluster="far", name="faults"))
        hide = client.monitor.on_screen(handle.id)
        log = f"{handle.job.remote_dir}/output.log"
        watcher = threading.Thread(target=ssh_loop, args=(host, log, theirs, stop), daemon=True)
        watcher.start()
        deadline = time.monotonic() + 60
        while min(len(ours.ok), len(theirs.ok)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # both have seen the host once: the run starts fresh
        begin = time.monotonic()
        windows = schedule(host, quick)
        end = time.monotonic()
        stop.set()
        hide()
        print(f"availability under faults (fresh: the last look is <= {FRESH_S} s old)")
        for observer in (ours, theirs):
            report(observer, begin, end, windows)
        client.cancel(handle.id)
    finally:
        stop.set()
        client.close()
        host.stop()


if __name__ == "__main__":
    main()
