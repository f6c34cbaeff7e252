"""The monitor and the live UI on a loopback sshd, each figure beside its target.

1. one monitor tick for 100 running jobs of one host: < 300 ms, one round trip;
2. ``%gpu_status`` (no argument) with 1000 finished jobs stored, widget and text paths: < 100 ms;
3. a line printed by a job → visible in its panel, at the fast pace: p95 < 1 s;
4. kernel-side CPU of the monitor and 10 panels while 10 jobs stream logs: < 5 % of one core.

    .venv/bin/python bench/bench_monitor.py [--jobs 100] [--ticks 20] [--stored 1000]
                                            [--seconds 20] [--profile]

Starts its own sshd (tests/harness/sshd.py: needs /usr/sbin/sshd and root); every job runs on the
``ssh`` cluster over it, so the remote side shares this machine's CPUs with the kernel side.

- 1 drives ``Monitor(..., background=False).tick()`` by hand at the fast pace, every 5th job
  printing 10 lines/s, with a counting wrapper around the real transport.
- 3 and 4 use real ``JobPanel``s with the client's own background monitor. 3 records when each
  line reaches the feed (monitor thread) and when the panel's throttle puts it into the log
  widget. 4 reads every thread's CPU time from ``/proc/self/task/<tid>/schedstat`` (ns) every
  0.25 s, so threads that start or end during the window count too, and sums it by kind: the
  monitor thread, paramiko's transport thread (the monitor's SSH I/O) and the panels' appliers
  are what the target counts; this bench's main thread is reported, not counted. Its third row
  starts with ~300 KB of log per job, like a job that has run for a while.
- The widgets run headless in this process: a widget change is turned into its state dict but,
  with no frontend, not JSON-encoded or sent, so the UI figures are a lower bound of a kernel
  with a browser attached.

``--profile`` prints cProfile tops (of a tick, of ``%gpu_status``, of a panel's apply) even for
a met target; they are printed anyway for a missed one. Every job started is cancelled or has
ended, and no process of it is left, when this returns.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import paramiko  # noqa: E402
from harness.fixtures import make_settings  # noqa: E402
from harness.spy import CountingTransport  # noqa: E402
from harness.sshd import SSHServer  # noqa: E402
from timing import target  # noqa: E402

from gpu_magic import Client, GPUJobRequest, JobStatus, formatting, ui  # noqa: E402
from gpu_magic.models import GPUJob  # noqa: E402
from gpu_magic.monitoring.monitor import FAST, Monitor  # noqa: E402
from gpu_magic.schedulers.folder_probe import PROBE, probe_args  # noqa: E402
from gpu_magic.ui import JobPanel  # noqa: E402

CLUSTER = "ssh"
POLL_S = 0.05
SLEEPER = "import time\ntime.sleep(600)"
CHATTY = """
import time
while True:
    print(f"{time.time():.6f} epoch 3 batch 117 " + "x" * 40, flush=True)
    time.sleep(0.1)
"""
STAMPS = """
import time
for i in range({count}):
    print(f"stamp {{i}} {{time.time():.6f}}", flush=True)
    time.sleep({pace})
"""
STAMP = re.compile(r"^stamp (\d+) (\d+\.\d{6})$")
TRAINING = """
import math, time
n = {count}
for i in range(n):
    loss = 2.5 * math.exp(-i / 150) + 0.05
    print(f"step {{i + 1}}/{{n}} loss={{loss:.4f}} lr=3.0e-04", flush=True)
    time.sleep({pace})
"""
PLAIN = """
import time
for i in range({history}):  # what a job that has run a while already wrote
    print(f"{{time.strftime('%H:%M:%S')}} worker 3: shard 17 batch {{i}} ok (earlier)")
print("streaming", flush=True)
for i in range({count}):
    print(f"{{time.strftime('%H:%M:%S')}} worker 3: shard 17 batch {{i}} ok", flush=True)
    time.sleep({pace})
"""


# -- helpers ----------------------------------------------------------------------------------
@dataclass
class Result:
    number: int
    what: str
    target: str
    measured: str
    met: bool | None  # None: information, no target


def quantile(samples: list[float], q: float) -> float:
    """Nearest-rank quantile (q=0.95 of 20 samples is the 19th smallest, not the largest)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def wait_until(condition: Callable[[], bool], timeout: float, every: float = POLL_S) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return condition()
        time.sleep(every)
    return True


def top_of_profile(fn: Callable[[], object], runs: int, limit: int = 14) -> str:
    profiler = cProfile.Profile()
    for _ in range(runs):
        profiler.runcall(fn)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(limit)
    stats.sort_stats("tottime").print_stats(limit)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


def submit(client: Client, code: str, name: str, fetch: str = "auto") -> str:
    request = GPUJobRequest.create(code=code, cluster=CLUSTER, name=name, fetch=fetch)
    return client.submit(request).id


def cancel_all(client: Client, job_ids: list[str]) -> None:
    """Cancel every job still active (a few at a time: each cancel waits for the group)."""
    active = [j for j in job_ids if not client.store.get(j).is_terminal]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for job in pool.map(client.cancel, active):
            if not job.is_terminal:
                raise RuntimeError(f"job {job.id} is still {job.status} after cancel")


def job_processes(base: Path) -> list[int]:
    """PIDs of live processes whose cwd or command line is under ``base``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(f"/proc/{entry}/cwd")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state != "Z" and (cwd.startswith(str(base)) or str(base) in cmdline):
            found.append(int(entry))
    return found


def no_job_processes_left(*bases: Path) -> None:
    left = lambda: [pid for base in bases for pid in job_processes(base)]  # noqa: E731
    if not wait_until(lambda: not left(), timeout=15, every=0.1):
        raise RuntimeError(f"job processes left behind: {left()}")


# -- 1. one tick for 100 running jobs ---------------------------------------------------------
def bench_tick(client: Client, jobs: int, ticks: int, profile: bool) -> list[Result]:
    print(f"\n[1] one monitor tick, {jobs} running jobs on one host")
    started = time.perf_counter()
    ids = [
        submit(client, CHATTY if i % 5 == 0 else SLEEPER, f"tick-{i}", "manual")
        for i in range(jobs)
    ]  # every 5th job prints 10 lines/s, the others sleep; nothing to collect after the cancel
    print(f"    submitted {jobs} jobs in {time.perf_counter() - started:.1f} s")
    host = client.host(CLUSTER)
    cluster, real = host.config, host.transport
    spy = CountingTransport(real)
    watcher = Client(client.settings, transports={CLUSTER: spy})  # the same store and jobs
    try:
        interval = watcher.settings.job_monitoring_interval
        monitor = Monitor(  # ticks driven here, no thread
            watcher.store, watcher.hosts, watcher.tracker, interval=interval, background=False
        )
        feeds = [monitor.feed(job_id) for job_id in ids]
        monitor.tick()  # the first tick reads every file from offset 0
        running = sum(f.job.status == JobStatus.RUNNING for f in feeds)
        if running != jobs or monitor.last_error:
            raise RuntimeError(f"{running}/{jobs} running; errors {monitor.last_error}")
        times, trips, commands, tailed = [], [], [], []
        for _ in range(ticks):
            time.sleep(FAST)  # the fast pace between ticks, so the chatty jobs have news
            before, inside = spy.commands, spy.seconds
            start = time.perf_counter()
            updates = monitor.tick()
            times.append(time.perf_counter() - start)
            if monitor.last_error:
                raise RuntimeError(f"a tick failed: {monitor.last_error}")
            trips.append(spy.seconds - inside)
            commands.append(spy.commands - before)
            tailed.append(sum(len(u.log_text.encode()) for u in updates.values()))
        asked = probe_args({f.job.remote_dir: f.requests() for f in feeds})
        probe = PROBE.command(cluster.interpreter, *asked)
        local = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run(["bash", "-c", probe], check=True, stdout=subprocess.DEVNULL)
            local.append(time.perf_counter() - start)
        empty = []
        for _ in range(5):
            start = time.perf_counter()
            real.run("true").check()
            empty.append(time.perf_counter() - start)
        median, p95 = statistics.median(times), quantile(times, 0.95)
        print(
            f"    {ticks} ticks: median {ms(median)}, p95 {ms(p95)}, max {ms(max(times))}; "
            f"commands per tick {sorted(set(commands))}; "
            f"median {statistics.median(tailed) / 1024:.1f} KiB of log tailed per tick"
        )
        print(
            f"    of which inside transport.run (the round trip): median "
            f"{ms(statistics.median(trips))}; client side (parse, store, feeds): median "
            f"{ms(statistics.median([t - r for t, r in zip(times, trips, strict=True)]))}; "
            f"the probe command alone run locally by bash: median {ms(statistics.median(local))}; "
            f"an empty command (`true`) over the same connection: median "
            f"{ms(statistics.median(empty))}"
        )
        met = median < 0.150 and set(commands) == {1}
        if profile or not met:
            print("    profile of 5 ticks:")
            print(indent(top_of_profile(monitor.tick, 5)))
        tick = Result(
            1,
            f"monitor tick, {jobs} running jobs, 1 host",
            "median < 150 ms, 1 round trip",
            f"median {ms(median)}, p95 {ms(p95)}, {max(commands)} round trip(s)",
            met,
        )
        return [tick, bench_cancel(watcher, spy, ids)]
    finally:
        watcher.close()
        cancel_all(client, ids)  # what a failed run left running


def bench_cancel(client: Client, spy: CountingTransport, ids: list[str]) -> Result:
    """``cancel_many`` of every job: the commands it sent (a look before, the cancel, a look
    after, however many jobs) and its time, the jobs' process groups waited for on the host."""
    before, started = spy.commands, time.perf_counter()
    jobs = client.cancel_many(ids)
    seconds, commands = time.perf_counter() - started, spy.commands - before
    left = [job.id for job in jobs if job.status != JobStatus.CANCELLED]
    print(f"    cancel_many of {len(ids)} jobs: {seconds:.2f} s, {commands} commands; left {left}")
    return Result(
        1,
        f"cancel {len(ids)} running jobs, 1 host",
        "one round trip per host",
        f"{commands} commands (look, cancel, look), {seconds:.2f} s",
        commands <= 3 and not left,
    )


def indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


# -- 2. %gpu_status with 1000 stored jobs -----------------------------------------------------
CELL = """
import torch
from torch.utils.data import DataLoader
model = build_model(width=512, depth=12).cuda()
opt = torch.optim.AdamW(model.parameters(), lr=lr)
for epoch in range(epochs):
    for step, batch in enumerate(DataLoader(train_set, batch_size=64, shuffle=True)):
        loss = model(batch.cuda()).loss
        loss.backward(); opt.step(); opt.zero_grad()
        if step % 50 == 0:
            print(f"epoch {epoch} step {step} loss={loss.item():.4f}")
history = evaluate(model)
"""
ENDINGS = [
    (JobStatus.COMPLETED, 0, None),
    (JobStatus.COMPLETED, 0, None),
    (JobStatus.COMPLETED, 0, None),
    (JobStatus.COMPLETED, 0, None),
    (JobStatus.FAILED, 1, "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"),
    (JobStatus.CANCELLED, 143, None),
    (JobStatus.COMPLETED, 0, None),
    (JobStatus.TIMEOUT, 124, None),
    (JobStatus.COMPLETED, 0, None),
    (JobStatus.LOST, None, None),
]


def stored_job(i: int, now: datetime) -> GPUJob:
    created = now - timedelta(minutes=7 * i + 3)
    status, exit_code, error = ENDINGS[i % len(ENDINGS)]
    request = GPUJobRequest(
        code=CELL,
        inputs=("lr", "epochs", "train_set"),
        outputs=("model", "history"),
        files=("data/vocab.json",),
        env={"WANDB_MODE": "offline", "SEED": str(i)},
        gpus=(1, 2, 4, 8)[i % 4],
        name=f"sweep-{i % 40}",
        cluster=("local", CLUSTER)[i % 2],
        timeout=3600.0,
    )
    job_id = f"{created:%Y%m%d-%H%M%S}-{i:06x}"
    return GPUJob(
        id=job_id,
        request=request,
        cluster=request.cluster,
        remote_dir=f"/home/user/.gpu_magic/jobs/{job_id}",
        status=status,
        reason={JobStatus.CANCELLED: "cancelled by user"}.get(status),
        scheduler_id=str(20000 + i),
        created_at=created,
        submitted_at=created + timedelta(seconds=2),
        started_at=created + timedelta(seconds=3),
        ended_at=created + timedelta(seconds=60 + 37 * (i % 97)),
        exit_code=exit_code,
        error=error,
    )


def bench_status(work: Path, server: SSHServer, stored: int, profile: bool) -> list[Result]:
    print(f"\n[2] %gpu_status with no argument, {stored} finished jobs in the store")
    settings = make_settings(work / "store-bench", known_hosts_path=server.known_hosts)
    client = Client(settings)
    client.clusters.add(server.cluster(work / "remote-status"))
    now = datetime.now(timezone.utc)
    for i in range(stored):
        client.store.insert(stored_job(i, now))
    shown = ui._display
    tables: list = []
    try:

        def widget_path():  # what a frontend's display() asks of the table: its mime bundle
            ui._display = lambda obj: obj._repr_mimebundle_()
            tables.append(ui.show_jobs(client, widgets=True))

        def text_path():  # plain IPython / nbconvert: the TextView's repr
            ui._display = lambda obj: None
            return repr(ui.show_jobs(client, widgets=False))

        def timed(fn, runs=15):
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - start)
                close_tables(tables)
            return statistics.median(samples), quantile(samples, 0.95)

        widget_path()  # warm: the first widget of a process builds its classes' traits
        close_tables(tables)
        widget = timed(widget_path)
        plain = timed(text_path)
        all_rows = timed(lambda: formatting.job_table(client.jobs()), runs=7)
        table = ui.JobsTable(client, background=False)
        reapply = timed(lambda: table._apply({}))  # the table's pulse, every 2 s, while shown
        table.close()
        cold = cold_import_ms()
        active = submit(client, SLEEPER, "active")  # one running job on the ssh host as well
        try:
            active_text = timed(text_path, runs=7)
            active_widget = timed(widget_path, runs=7)
        finally:
            cancel_all(client, [active])
        print(
            f"    widget path (JobsTable, first render + mime bundle, {ui.table.LIMIT} rows): "
            f"median {ms(widget[0])}, p95 {ms(widget[1])}"
        )
        print(f"    text path (repr of the TextView): median {ms(plain[0])}, p95 {ms(plain[1])}")
        print(
            f"    for scale: formatting.job_table(client.jobs()) of all {stored}: median "
            f"{ms(all_rows[0])}; the live table's re-apply (its 2 s pulse): median "
            f"{ms(reapply[0])}; first import of gpu_magic.ui in a new process: {cold}"
        )
        print(
            f"    with one job running on the ssh host too: text path median "
            f"{ms(active_text[0])} (client.jobs() polls it: one round trip), widget path median "
            f"{ms(active_widget[0])}"
        )
        results = [
            Result(2, "%gpu_status, widgets (JobsTable)", "< 100 ms", f"median {ms(widget[0])}, "
                   f"p95 {ms(widget[1])}", widget[1] < 0.100),
            Result(2, "%gpu_status, text (TextView)", "< 100 ms",
                   f"median {ms(plain[0])}, p95 {ms(plain[1])}", plain[1] < 0.100),
            Result(2, f"job_table(client.jobs()), all {stored}", "-",
                   f"median {ms(all_rows[0])}", None),
            Result(2, "%gpu_status, text, +1 job running over ssh", "-",
                   f"median {ms(active_text[0])}, p95 {ms(active_text[1])}", None),
        ]  # fmt: skip
        for result, fn in zip(results[:2], (widget_path, text_path), strict=True):
            if profile or not result.met:
                print(f"    profile of 5 runs of {result.what}:")
                print(indent(top_of_profile(fn, 5)))
                close_tables(tables)
        return results
    finally:
        ui._display = shown
        close_tables(tables)
        client.close()
        client.store.close()


def close_tables(tables: list) -> None:
    while tables:
        tables.pop().close()


def cold_import_ms() -> str:
    code = (
        "import time; t = time.perf_counter(); import gpu_magic.ui; print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return ms(float(out.stdout))


# -- 3. printed remotely → visible in the panel -----------------------------------------------
def bench_visible(client: Client, seconds: float, pace: float) -> list[Result]:
    count = int(seconds / pace)
    print(
        f"\n[3] line printed → visible in the panel: 1 job, a line every {pace} s for ~{seconds} s"
    )
    job_id = submit(client, STAMPS.format(count=count, pace=pace), "stamps")
    arrived: dict[int, float] = {}  # line -> when the monitor's tick handed it to the feed
    visible: dict[int, float] = {}  # line -> when the panel's throttle put it into the widget
    pending = [""]

    def on_update(update):  # monitor thread
        now = time.time()
        pending[0] += update.log_text
        *lines, pending[0] = pending[0].split("\n")
        for line in lines:
            if m := STAMP.match(line):
                arrived.setdefault(int(m[1]), now)

    client.monitor.feed(job_id).subscribe(on_update)
    panel = JobPanel(client, job_id)  # on screen: the monitor goes to the fast pace
    original = panel.logview.render

    def render():  # applier thread, under the widget lock: what the tail shows now
        original()
        now = time.time()
        for line in panel.logview.last(200):
            if m := STAMP.match(line.text):
                visible.setdefault(int(m[1]), now)

    panel.logview.render = render
    shown_at = time.time()  # lines printed before this count in no figure
    try:
        feed = panel.feed
        if not wait_until(lambda: feed.done, timeout=seconds + 60):
            raise RuntimeError(f"job {job_id} did not finish: {feed.job.status}")
        printed = {
            int(m[1]): float(m[2]) for m in map(STAMP.match, feed.log_text().split("\n")) if m
        }
        if len(printed) != count:
            raise RuntimeError(f"{len(printed)} of {count} lines in the feed")
        if not wait_until(lambda: len(visible) >= count, timeout=10):
            raise RuntimeError(f"only {len(visible)} of {count} lines became visible")
    finally:
        panel.close()
    kept = [i for i in printed if printed[i] >= shown_at]  # printed while the panel was shown
    lags = [visible[i] - printed[i] for i in kept]
    to_feed = [arrived[i] - printed[i] for i in kept]
    to_widget = [visible[i] - arrived[i] for i in kept]
    print(
        f"    {len(kept)} of {count} lines printed while the panel was shown: visible - printed "
        f"p50 {ms(statistics.median(lags))}, p95 {ms(quantile(lags, 0.95))}, max {ms(max(lags))}"
    )
    print(
        f"    printed → feed (monitor tick) p50 {ms(statistics.median(to_feed))}, p95 "
        f"{ms(quantile(to_feed, 0.95))}; feed → widget (throttle) p50 "
        f"{ms(statistics.median(to_widget))}, p95 {ms(quantile(to_widget, 0.95))}"
    )
    p95 = quantile(lags, 0.95)
    return [
        Result(
            3,
            f"printed → visible in the panel ({pace} s lines)",
            "p95 < 1 s",
            f"p50 {ms(statistics.median(lags))}, p95 {ms(p95)}, max {ms(max(lags))}",
            p95 < 1.0,
        )
    ]


# -- 4. CPU while 10 jobs stream ----------------------------------------------------------------
def thread_cpu_ns() -> dict[int, int]:
    """CPU time of every thread of this process, in ns (schedstat; stat's ticks as fallback)."""
    found = {}
    tick_ns = 1e9 / os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            found[int(tid)] = int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            try:
                fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                found[int(tid)] = int((int(fields[11]) + int(fields[12])) * tick_ns)
            except (OSError, ValueError, IndexError):
                continue  # it ended while we looked
    return found


MAIN = "bench main thread"


def total_share(per_kind: dict[str, float], wall: float) -> float:
    return sum(v for k, v in per_kind.items() if k != MAIN) / wall


def kind_of(thread: threading.Thread) -> str:
    if thread is threading.main_thread():
        return MAIN
    if thread.name == "gpu_magic-monitor":
        return "monitor"
    if thread.name == "gpu_magic-ui":
        return "panel appliers"
    if isinstance(thread, paramiko.Transport) or thread.name == "ssh-stream":
        return "ssh (paramiko)"
    return f"other ({thread.name})"


class CPUWatch:
    """Per-thread CPU over a window, sampled often so that threads ending meanwhile count too."""

    def __init__(self):
        self.first = thread_cpu_ns()
        self.last = dict(self.first)
        self.kinds: dict[int, str] = {}
        self.wall = time.perf_counter()
        self.usage = resource.getrusage(resource.RUSAGE_SELF)
        self.sample()

    def sample(self) -> None:
        now = thread_cpu_ns()
        self.last.update(now)
        for thread in threading.enumerate():
            if thread.native_id in now:
                self.kinds[thread.native_id] = kind_of(thread)

    def stop(self) -> tuple[float, dict[str, float], float]:
        """Wall seconds, CPU seconds per kind of thread, CPU seconds of the whole process."""
        self.sample()
        wall = time.perf_counter() - self.wall
        usage = resource.getrusage(resource.RUSAGE_SELF)
        process = (usage.ru_utime - self.usage.ru_utime) + (usage.ru_stime - self.usage.ru_stime)
        per_kind: dict[str, float] = {}
        for tid, ns in self.last.items():
            kind = self.kinds.get(tid, "other (not a Python thread)")
            per_kind[kind] = per_kind.get(kind, 0.0) + (ns - self.first.get(tid, 0)) / 1e9
        return wall, per_kind, process


def bench_cpu(
    client: Client,
    jobs: int,
    seconds: float,
    rate: float,
    style: str,
    history: int = 0,
    profile: bool = False,
) -> list[Result]:
    """``history``: lines each job writes at once before streaming (a log that is already long;
    the window starts once every panel has shown them)."""
    code = {"training": TRAINING, "plain": PLAIN}[style]
    count, pace = int(seconds * rate), 1 / rate
    label = f"{style} lines/s" + (f", {history}-line log first" if history else "")
    print(f"\n[4] CPU while {jobs} jobs print ~{rate:g} {label} each for ~{seconds} s")
    source = code.format(count=count, pace=pace, history=history)
    ids = [submit(client, source, f"cpu-{i}") for i in range(jobs)]
    expected = jobs * (count + (history + 1 if style == "plain" else 0))
    panels = []
    try:
        start = time.perf_counter()
        panels = [JobPanel(client, job_id) for job_id in ids]  # all on screen: the fast pace
        built = time.perf_counter() - start
        if not wait_until(  # every panel has shown the earlier log
            lambda: not history or all("streaming" in p.logview.lines for p in panels),
            timeout=60,
        ):
            raise RuntimeError("the jobs' earlier log did not arrive")
        before = sum(p.feed.log_bytes().count(b"\n") for p in panels)
        watch = CPUWatch()
        deadline = time.monotonic() + seconds + 60
        while not all(p.feed.done for p in panels):
            if time.monotonic() > deadline:
                raise RuntimeError("the streaming jobs did not finish")
            time.sleep(0.25)
            watch.sample()
        wall, per_kind, process = watch.stop()
        lines = sum(p.feed.log_text().count("\n") for p in panels)
        if any(p.feed.job.status != JobStatus.COMPLETED for p in panels) or lines != expected:
            raise RuntimeError(f"{lines} of {expected} lines, or a job did not complete")
        size = sum(len(p.feed.log_bytes()) for p in panels) / jobs
        profiled = ""
        if profile or total_share(per_kind, wall) >= 0.05:
            changes = {"job": True, "log": True, "metrics": True}  # what a tick with news marks

            def apply():
                with panels[0].lock:
                    panels[0]._apply(changes)

            profiled = top_of_profile(apply, 10)
        applies = sum(p.throttle.applies for p in panels)
    finally:
        for panel in panels:
            panel.close()
        cancel_all(client, ids)
    counted = {k: v for k, v in per_kind.items() if k != MAIN}
    total = sum(counted.values())
    parts = ", ".join(f"{k} {100 * v / wall:.2f}%" for k, v in sorted(counted.items()))
    print(
        f"    {lines - before} lines in a {wall:.1f} s window ({(lines - before) / wall:.0f}/s in "
        f"all), logs of "
        f"{size / 1024:.0f} KiB each at the end; building the {jobs} panels took {ms(built)} "
        f"(not counted); {applies} panel applies"
    )
    print(f"    CPU per thread kind, % of one core: {parts}")
    main = per_kind.get(MAIN, 0.0)
    print(
        f"    whole process (getrusage) {100 * process / wall:.2f}%, of which this bench's main "
        f"thread (sampling /proc, waiting) {100 * main / wall:.2f}%"
    )
    monitor = counted.get("monitor", 0.0) + counted.get("ssh (paramiko)", 0.0)
    if profiled:
        print("    profile of 10 applies of one panel (job, log and metrics changed):")
        print(indent(profiled))
    return [
        Result(
            4,
            f"CPU, {jobs} jobs x {rate:g} {label}, {jobs} panels",
            "< 5% of a core",
            f"{100 * total / wall:.2f}% (monitor+ssh {100 * monitor / wall:.2f}%, "
            f"panels {100 * counted.get('panel appliers', 0.0) / wall:.2f}%)",
            total / wall < 0.05,
        )
    ]


# -- main ---------------------------------------------------------------------------------------
def print_table(results: list[Result]) -> None:
    print(f"\n| # | {'what':<64} | {'target':<22} | {'measured':<52} | met |")
    print(f"|---|{'-' * 66}|{'-' * 24}|{'-' * 54}|-----|")
    for r in results:
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        print(f"| {r.number} | {r.what:<64} | {r.target:<22} | {r.measured:<52} | {met:<3} |")
    for r in results:
        if r.met is not None:
            target(r.what, r.measured, r.target, r.met)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="running jobs for the tick")
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--stored", type=int, default=1000, help="finished jobs in the store")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of 3. and 4.")
    parser.add_argument("--profile", action="store_true", help="profile even met targets")
    parser.add_argument("--only-tick", action="store_true", help="1. (tick and cancel) only")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"loopback sshd, {os.cpu_count()} CPUs, load average {load:.2f} at the start")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        work = Path(tmp)
        base = work / "remote"
        with SSHServer(work / "sshd") as server:
            settings = make_settings(
                work, known_hosts_path=server.known_hosts, max_concurrent_jobs=10_000
            )
            client = Client(settings)
            client.clusters.add(server.cluster(base))
            try:
                results += bench_tick(client, args.jobs, args.ticks, args.profile)
                if args.only_tick:
                    return print_table(results)
                results += bench_status(work, server, args.stored, args.profile)
                results += bench_visible(client, args.seconds, pace=0.3)
                for style, history in (("plain", 0), ("training", 0), ("plain", 6000)):
                    results += bench_cpu(
                        client, 10, args.seconds, 20, style, history, profile=args.profile
                    )
            finally:
                active = [j.id for j in client.store.list(active_only=True)]
                cancel_all(client, active)
                client.close()
                no_job_processes_left(base, work / "remote-status")
    print_table(results)
    print(f"load average {os.getloadavg()[0]:.2f} at the end (2 cores are easily shared)")


if __name__ == "__main__":
    main()
