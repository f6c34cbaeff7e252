"""GPU telemetry of one job: ``python sampler.py --pid PID --out gpu.csv --marker FILE``.

Runs on the GPU host as a plain script (stdlib only); ``run.sh`` starts it in the background once
the job's GPUs are known and stops it before it writes ``exit_code``.

Design: ONE long-running ``nvidia-smi --query-gpu=FIELDS --format=csv,noheader,nounits -lms MS``
child (or the command in ``$GPU_MAGIC_NVIDIA_SMI``) whose stdout this process reads. Starting
nvidia-smi every tick pays its start-up and NVML initialisation each time (24 ms of CPU per run on
an H200: 1.2 % of a core at 2 s, more without persistence mode); in loop mode it only queries
(0.03 % there, and under 0.03 % for this process, which sleeps in ``select`` between ticks).
It asks for every GPU and keeps the job's in Python rather than passing ``-i``: a bad ``-i``
makes nvidia-smi fail outright, and it does not take the UUID prefixes CUDA accepts.

The job's GPUs: those in ``CUDA_VISIBLE_DEVICES`` (nvidia-smi indices or ``GPU-`` UUID
prefixes; run.sh sets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so the indices agree); if it is unset,
those in ``SLURM_JOB_GPUS``, or every GPU nvidia-smi shows when none of those matches (a Slurm job
confined by cgroups sees only its own GPUs, renumbered from 0); if neither is set, every GPU.

Each line of ``--out`` is a unix timestamp (2 decimals; the same for all GPUs of one tick) and
then nvidia-smi's line unchanged: ``1795696939.35, 0, GPU-827f..., 0, 0, 81559, 50, 76.22``.
Lines are appended by whole lines, each batch with one ``os.write`` on an ``O_APPEND`` fd, so a
reader tailing by byte offset never sees half a line. The file is created at the first sample.

No telemetry is not an error: when nvidia-smi is missing or fails, or none of the job's GPUs is
in its output, ``--marker`` gets ``unavailable: <reason>`` (atomically) and the sampler exits 0;
when nvidia-smi dies after samples were written, the marker gets ``stopped: <reason>``.

It exits, and KILLs its nvidia-smi (the real one obeys TERM only at the end of its interval), on
TERM/INT/HUP or when the process ``--pid`` (run.sh) is gone or a zombie. The interval is
``--interval`` seconds, else ``$GPU_MAGIC_GPU_SAMPLE_INTERVAL``, else 2 (at least 0.1).
"""

from __future__ import annotations

import argparse
import math
import os
import select
import signal
import subprocess
import sys
import time

FIELDS = (
    "index",
    "uuid",
    "utilization.gpu",
    "memory.used",
    "memory.total",
    "temperature.gpu",
    "power.draw",
)
QUERY_ARGS = (f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits")
INTERVAL_ENV = "GPU_MAGIC_GPU_SAMPLE_INTERVAL"
DEFAULT_INTERVAL_S = 2.0
MIN_INTERVAL_S = 0.1
UNAVAILABLE = "unavailable"
STOPPED = "stopped"
NOTE_CHARS = 300


class NoJobGPU(Exception):
    """None of the job's GPUs is in nvidia-smi's output."""


class Selection:
    """Which GPUs (nvidia-smi index or UUID prefix) belong to the job; ``None``: all of them."""

    def __init__(self, entries: list[str] | None, source: str = "", fallback_all: bool = False):
        self.entries = entries
        self.source = source
        self.fallback_all = fallback_all

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> Selection:
        for name, fallback in (("CUDA_VISIBLE_DEVICES", False), ("SLURM_JOB_GPUS", True)):
            value = environ.get(name)
            if value is not None:
                entries = [e.strip() for e in value.split(",") if e.strip()]
                return cls(entries, f"{name}={value}", fallback)
        return cls(None)

    def matches(self, index: str, uuid: str) -> bool:
        if self.entries is None:
            return True
        return any(_matches(entry, index, uuid) for entry in self.entries)


def _matches(entry: str, index: str, uuid: str) -> bool:
    if entry.isdigit():
        return int(entry) == int(index)
    return entry.startswith("GPU-") and uuid.startswith(entry)


class Recorder:
    """Turns nvidia-smi's loop output into gpu.csv lines: stamps ticks, keeps the job's GPUs.

    A tick starts when the GPU index does not grow (nvidia-smi prints GPUs in index order); every
    line of a tick gets the time its first line was read whole.
    """

    def __init__(self, selection: Selection):
        self.selection = selection
        self.pending = b""
        self.last_index = -1
        self.stamp = ""
        self.ticks = 0
        self.matched = 0
        self.written = 0
        self.note = ""  # the last line that was not a sample: nvidia-smi's error, if any

    def feed(self, data: bytes, now: float) -> bytes:
        """The complete gpu.csv lines that ``data`` (more of nvidia-smi's stdout) yields."""
        *lines, self.pending = (self.pending + data).split(b"\n")
        out = []
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            fields = [field.strip() for field in line.split(",")]
            if len(fields) != len(FIELDS) or not fields[0].isdigit():
                if line:
                    self.note = line[:NOTE_CHARS]
                continue
            index = int(fields[0])
            if index <= self.last_index or not self.ticks:
                self._new_tick(now)
            self.last_index = index
            if self.selection.matches(fields[0], fields[1]):
                self.matched += 1
                out.append(f"{self.stamp}, {line}\n")
        return "".join(out).encode()

    def _new_tick(self, now: float) -> None:
        if self.ticks == 1 and not self.matched:
            if not self.selection.fallback_all:
                raise NoJobGPU(f"none of the GPUs nvidia-smi shows is in {self.selection.source}")
            self.selection = Selection(None)
        self.ticks += 1
        self.stamp = f"{now:.2f}"


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: nobody may ever reap it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_marker(path: str, status: str, reason: str) -> None:
    """``path`` := ``STATUS: REASON`` (temp file + rename)."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        f.write(f"{status}: {' '.join(reason.split())}\n")
    os.replace(tmp, path)


class Sampler:
    def __init__(self, args: argparse.Namespace, selection: Selection):
        self.args = args
        self.recorder = Recorder(selection)
        self.out_fd = -1
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)

    def run(self) -> tuple[str, str] | None:
        """Sample until told to stop; ``(status, reason)`` for the marker, or ``None``."""
        command = [self.args.nvidia_smi, *QUERY_ARGS, "-lms", str(round(self.args.interval * 1e3))]
        try:
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        except FileNotFoundError:
            return UNAVAILABLE, f"{command[0]} was not found: no NVIDIA driver, or not on PATH"
        except OSError as exc:
            return UNAVAILABLE, f"{command[0]} could not be run: {exc}"
        try:
            return self._loop(child)
        finally:
            stop(child)
            if self.out_fd >= 0:
                os.close(self.out_fd)

    def _loop(self, child: subprocess.Popen) -> tuple[str, str] | None:
        stdout = child.stdout.fileno()
        while not self.stopping and alive(self.args.pid):
            ready, _, _ = select.select([stdout, self.wake_r], [], [], self.args.interval)
            if stdout not in ready:
                continue
            data = os.read(stdout, 65536)
            if not data:
                return self._ended(child)
            try:
                self._append(self.recorder.feed(data, time.time()))
            except NoJobGPU as exc:
                return UNAVAILABLE, str(exc)
            except OSError as exc:
                return STOPPED, f"cannot write {self.args.out}: {exc}"
        return None

    def _ended(self, child: subprocess.Popen) -> tuple[str, str] | None:
        code = child.wait()
        if code < 0 or self.stopping:  # killed with the job's process group: the job is ending
            return None
        status = STOPPED if self.recorder.written else UNAVAILABLE
        detail = f": {self.recorder.note}" if self.recorder.note else ""
        return status, f"{self.args.nvidia_smi} exited with code {code}{detail}"

    def _append(self, lines: bytes) -> None:
        if not lines:
            return
        if self.out_fd < 0:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self.out_fd = os.open(self.args.out, flags, 0o644)
        view = memoryview(lines)
        while view:  # a regular file takes it in one write unless the disk is full
            view = view[os.write(self.out_fd, view) :]
        self.recorder.written += lines.count(b"\n")

    def on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True


def stop(child: subprocess.Popen) -> None:
    """KILL nvidia-smi and reap it. Not TERM: in loop mode the real one (driver 580) finishes its
    current interval before it obeys TERM, which would hold up the end of the job by up to one
    interval; a query has nothing to clean up."""
    if child.poll() is None:
        child.kill()
        child.wait()
    if child.stdout is not None:
        child.stdout.close()


def interval(value: str | None) -> float:
    try:
        seconds = float(value) if value else DEFAULT_INTERVAL_S
    except ValueError:
        seconds = DEFAULT_INTERVAL_S
    return max(MIN_INTERVAL_S, seconds) if math.isfinite(seconds) else DEFAULT_INTERVAL_S


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sampler.py", description="GPU telemetry of one job")
    parser.add_argument("--out", required=True, help="gpu.csv to append samples to")
    parser.add_argument("--marker", required=True, help="where to say why there is no telemetry")
    parser.add_argument("--pid", type=int, default=os.getppid(), help="stop when it is gone")
    parser.add_argument("--interval", help=f"seconds (default ${INTERVAL_ENV} or 2)")
    args = parser.parse_args(argv)
    args.interval = interval(args.interval or os.environ.get(INTERVAL_ENV))
    args.nvidia_smi = os.environ.get("GPU_MAGIC_NVIDIA_SMI") or "nvidia-smi"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sampler = Sampler(args, Selection.from_env(dict(os.environ)))
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, sampler.on_signal)
    signal.set_wakeup_fd(sampler.wake_w)
    try:
        result = sampler.run()
    except Exception as exc:  # the marker is the only place anyone will look
        status = STOPPED if sampler.recorder.written else UNAVAILABLE
        result = status, f"sampler error: {type(exc).__name__}: {exc}"
    if result is not None:
        write_marker(args.marker, *result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
