"""Why a job failed: one kind, a one-line explanation with the specifics, a one-line fix.

``classify(Evidence)`` reads what a finished job left (its final status, the exit code run.sh
recorded, Slurm's state, ``state/error.json``, the end of ``output.log``, the free disk space)
and returns a ``Failure``, or None for a completed job. Pure: the callers gather the evidence.

The first rule that matches wins. The order, and why:

1. **cancelled**: someone asked for it; what the cell printed while being stopped (SIGTERM,
   a KeyboardInterrupt, exit 143) is the consequence, not the cause.
2. **timeout** (our status, Slurm TIMEOUT/DEADLINE, slurmstepd's "DUE TO TIME LIMIT"): the limit
   stopped it; the same reasoning.
3. **preempted**, **node failure** (Slurm's state or slurmstepd's line): the allocation ended
   under the job; errors from vanished peers and the SIGTERM are consequences.
4. **host OOM the system reports** (Slurm OUT_OF_MEMORY, slurmstepd's oom-kill count, the
   kernel's "Out of memory: Killed process"): the cgroup's SIGKILL is what the cell's last
   lines show (exit 137, a DataLoader worker "killed by signal"), so those lines are effects.
5. **the cell's final exception, when it names a cause**: CUDA OOM, disk full, MemoryError,
   NCCL, import, syntax. From error.json; else the last traceback of the tail, but only when
   the cell did not end by a signal (then it survived that exception and went on).
6. **a signal from outside** (KILL, TERM, INT, HUP...): nothing the process printed made someone
   kill it, so earlier error lines (a caught CUDA OOM) do not explain it. SIGKILL with the
   shell's "Killed" line is HOST_OOM: run.sh's wrapper prints that line for every SIGKILL, the
   log cannot tell who sent it, and with cancel and timeout ruled out the usual sender is the
   kernel's OOM killer (the explanation says "most likely"). Other signals: KILLED.
7. **root-cause lines in the tail** (the latest wins): CUDA OOM and disk-full messages beat a
   generic final exception (a CalledProcessError or a DataLoader error raised *because* of
   them) and explain an abort (SIGABRT after a C++ OOM). NCCL lines and CUDA-driver OOM lines
   (often harmless: TensorFlow logs and retries) count only when there is no exception at all
   (the NCCL watchdog aborts the process without a Python traceback). A lost job whose disk was
   measured full is DISK_FULL: that is why it could not record its exit code.
8. **lost**: vanished without an exit code and nothing above explains it. An ordinary exception
   in its log does not explain why no exit code was written.
9. **the generic exception**: USER_EXCEPTION ("the cell raised ValueError: ..."; sys.exit(n):
   "the cell called sys.exit(n)"); KeyboardInterrupt is KILLED by SIGINT.
10. **a signal the process raised itself** (ABRT, SEGV, BUS, FPE, ILL) that nothing explains:
    KILLED, with a fix for that signal.
11. **any other non-zero exit** (a bash cell's ``exit 3``, run.sh's own codes): USER_EXCEPTION
    "exited with code N", with run.sh's message when it stopped the job itself.
12. **nothing at all**: LOST ("ended as failed and left nothing that says why"); it claims the
    least (no exception, no signal that did not happen).

Every pattern runs in time linear in its input: anchored or literal-led, bounded repeats, no
nested quantifiers; only the last ``TAIL_CHARS``/``TAIL_LINES`` of the log are read, each line cut
to ``LINE_CHARS``.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from . import jobdir
from .formatting import size
from .models import FailureKind
from .packaging.runscript import EXIT_GIT_FAILED, EXIT_GPU_UNAVAILABLE

TAIL_CHARS = 64 * 1024
TAIL_LINES = 400
LINE_CHARS = 4096
MESSAGE_CHARS = 8192
SHOWN_CHARS = 300
"""An explanation or fix longer than this is cut (with an ellipsis): one line in a table."""
FULL_BELOW = 1 << 20
"""A filesystem with less free space than this counts as full (a lost job's missing exit code)."""
CELL_PATH = f"/{jobdir.CODE}/{jobdir.PYTHON_MAIN}"
"""The cell's file in a traceback: ``.../JOB/code/main.py``."""


@dataclass(frozen=True)
class DiskSpace:
    """Free space of the filesystem holding the job folder, as the client measured it."""

    path: str
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class Evidence:
    """Everything known about how a job ended (see the module docstring for how it is used)."""

    status: str
    exit_code: int | None
    reason: str | None = None
    scheduler_state: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    log_tail: str = ""
    disk_free: DiskSpace | None = None


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    explanation: str
    fix: str
    detail: Mapping[str, str | int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", MappingProxyType(dict(self.detail)))

    def to_dict(self) -> dict:
        """JSON-ready: ``kind`` as its string value."""
        return {
            "kind": self.kind.value,
            "explanation": self.explanation,
            "fix": self.fix,
            "detail": dict(self.detail),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Failure:
        return cls(FailureKind(data["kind"]), data["explanation"], data["fix"], data["detail"])


def classify(evidence: Evidence) -> Failure | None:
    """None for a completed job; otherwise exactly one kind (the first rule that matches)."""
    facts = _Facts.of(evidence)
    if facts.status == "completed":
        return None
    for rule in RULES:
        failure = rule(facts)
        if failure is not None:
            return failure
    return _unexplained(facts)


# -- what the rules read --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Exception:
    """The cell's final exception: its type as error.json writes it, its message, and the
    traceback's frames ``(file, line)`` when the tail shows them."""

    type: str
    message: str
    frames: tuple[tuple[str, int], ...] = ()

    @property
    def short(self) -> str:
        return self.type.rsplit(".", 1)[-1]

    @property
    def text(self) -> str:
        return f"{self.type}: {self.message}"

    @property
    def headline(self) -> str:
        first = self.message.strip().split("\n", 1)[0]
        return f"{self.type}: {first}" if first else self.type


@dataclass(frozen=True)
class _Facts:
    """The evidence read once for all the rules: normalised status and Slurm state, the tail's
    last lines, the final exception and the signal the exit code stands for."""

    evidence: Evidence
    status: str
    state: str
    lines: tuple[str, ...]
    exception: _Exception | None
    signal: int | None

    @classmethod
    def of(cls, evidence: Evidence) -> _Facts:
        lines = _tail_lines(evidence.log_tail or "")
        code = evidence.exit_code
        chose_code = (evidence.error_type or "").rsplit(".", 1)[-1] == "SystemExit"
        sig = None if chose_code else _signal_of(code)
        return cls(
            evidence=evidence,
            status=str(getattr(evidence.status, "value", evidence.status) or "").lower(),
            state=_slurm_state(evidence.scheduler_state),
            lines=lines,
            exception=_final_exception(evidence, lines, sig),
            signal=sig,
        )

    def from_end(self) -> Iterator[str]:
        return reversed(self.lines)


def _tail_lines(text: str) -> tuple[str, ...]:
    lines = text[-TAIL_CHARS:].splitlines()[-TAIL_LINES:]
    return tuple(line[:LINE_CHARS] for line in lines)


def _slurm_state(state: str | None) -> str:
    """``CANCELLED by 1000`` (sacct) -> ``CANCELLED``."""
    words = (state or "").split(None, 1)
    return words[0].upper() if words else ""


def _signal_of(code: int | None) -> int | None:
    """The signal an exit status stands for: 128+N from a shell, -N from Popen; None if none."""
    if code is None:
        return None
    number = -code if code < 0 else code - 128
    return number if 1 <= number <= 64 else None


def _final_exception(
    evidence: Evidence, lines: tuple[str, ...], sig: int | None
) -> _Exception | None:
    """error.json's exception (with the tail's frames when they are its own), else the tail's
    last traceback unless a signal ended the cell (it then went on past that exception)."""
    tail = _last_traceback(lines)
    if evidence.error_type:
        message = (evidence.error_message or "")[:MESSAGE_CHARS]
        frames = tail.frames if tail and tail.short == _short(evidence.error_type) else ()
        return _Exception(evidence.error_type, message, frames)
    return tail if sig is None else None


def _short(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1]


# -- the tail's last traceback --------------------------------------------------------------------

FRAME = re.compile(r'  File "([^"\n]{1,4096})", line (\d{1,9})')
EXCEPTION_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_.]{0,200})(?::(?: (.*))?)?\Z")
MESSAGE_LINES = 20


def _last_traceback(lines: tuple[str, ...]) -> _Exception | None:
    """The exception line after the tail's last frame (``  File "...", line N``), with its
    continuation lines; a SyntaxError's report has frames but no ``Traceback`` header."""
    last = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith('  File "')), None)
    if last is None:
        return None
    for index in range(last + 1, min(len(lines), last + 12)):
        line = lines[index]
        if not line.strip() or line[0] in " \t":
            continue  # the frame's source line, carets
        match = EXCEPTION_LINE.match(line)
        if match is None:
            return None
        message = "\n".join([match[2] or "", *_continuation(lines, index + 1)]).strip()
        return _Exception(match[1], message[:MESSAGE_CHARS], _frames(lines, last))
    return None


def _continuation(lines: tuple[str, ...], start: int) -> list[str]:
    more = []
    for line in lines[start : start + MESSAGE_LINES]:
        if not line.strip() or line.startswith("[gpu_magic]"):
            break
        more.append(line)
    return more


def _frames(lines: tuple[str, ...], last: int) -> tuple[tuple[str, int], ...]:
    """The frames of the traceback that ends at ``last``, outermost first."""
    frames = []
    for line in reversed(lines[: last + 1]):
        match = FRAME.match(line)
        if match:
            frames.append((match[1], int(match[2])))
        elif not line.startswith((" ", "\t")):
            break  # the "Traceback (most recent call last):" header, or other output
    return tuple(reversed(frames))


def _in_cell(path: str) -> bool:
    return path.endswith(CELL_PATH) or path == jobdir.PYTHON_MAIN


def _cell_line(exception: _Exception | None) -> int | None:
    """The line of the cell (code/main.py) closest to where the exception was raised."""
    for path, line in reversed(exception.frames if exception else ()):
        if _in_cell(path):
            return line
    return None


# -- building the answer --------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]{0,32}[A-Za-z]")
CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _one_line(text: str) -> str:
    """Whitespace and control characters collapsed, cut to SHOWN_CHARS."""
    text = " ".join(CONTROL.sub(" ", ANSI.sub("", text[: SHOWN_CHARS * 4])).split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1].rstrip() + "…"


def _failure(kind: FailureKind, explanation: str, fix: str, **detail: str | int) -> Failure:
    shown = {k: _one_line(v) if isinstance(v, str) else v for k, v in detail.items()}
    return Failure(kind, _one_line(explanation), _one_line(fix), shown)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return ""


def _signal_text(number: int) -> str:
    name = _signal_name(number)
    return f"signal {number} ({name})" if name else f"signal {number}"


# -- 1-3: the job was stopped from outside --------------------------------------------------------

SLURMSTEPD_CANCELLED = re.compile(
    r"\*\*\* (?:JOB|STEP) (\S{1,64}) ON (\S{1,255}) CANCELLED AT (\S{1,64})"
    r"(?: DUE TO ([A-Z][A-Z ,]{0,80}))? \*\*\*"
)
"""slurmstepd's line when it ends a job (src/slurmd/slurmstepd/req.c), e.g.
``*** JOB 42 ON node7 CANCELLED AT 2026-03-02T10:15:03 DUE TO TIME LIMIT ***``."""


def _slurmstepd_end(facts: _Facts) -> tuple[str, str] | None:
    """(cause, node) from slurmstepd's last "CANCELLED AT" line: cause "TIME LIMIT",
    "PREEMPTION", "NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS", ..., or "" for an scancel."""
    for line in facts.from_end():
        if "*** " in line and " CANCELLED AT " in line:
            match = SLURMSTEPD_CANCELLED.search(line)
            if match:
                return match[4] or "", match[2]
    return None


def _cancelled(facts: _Facts) -> Failure | None:
    stepd = _slurmstepd_end(facts)
    said_why = stepd is not None and stepd[0] != ""  # "DUE TO PREEMPTION" is more specific
    by_slurm = (facts.state in ("CANCELLED", "REVOKED") and not said_why) or (
        stepd is not None and not said_why
    )
    if facts.status != "cancelled" and not by_slurm:
        return None
    reason = facts.evidence.reason
    said = f": {reason}" if reason and reason.strip().lower() != "cancelled" else ""
    return _failure(
        FailureKind.CANCELLED,
        f"the job was cancelled{said}",
        "nothing to fix if the cancel was meant; otherwise submit the cell again",
    )


def _timed_out(facts: _Facts) -> Failure | None:
    stepd = _slurmstepd_end(facts)
    by_slurm = facts.state in ("TIMEOUT", "DEADLINE") or (
        stepd is not None and stepd[0] == "TIME LIMIT"
    )
    if facts.status != "timeout" and not by_slurm:
        return None
    resume = "save checkpoints in checkpoints/ and resume from the last one"
    if facts.state == "DEADLINE":
        limit, what = "--deadline", "Slurm stopped the job at its deadline (DEADLINE)"
        fix = "give it a later deadline (--sbatch deadline=...) or less work"
    elif by_slurm or "Slurm" in (facts.evidence.reason or ""):  # "... Slurm time limit (--time)"
        limit, what = "--time", "Slurm stopped the job at its time limit (--time)"
        fix = f"raise --time, or {resume}"
    else:
        limit, what = "--timeout", "the job ran past its --timeout and was stopped"
        fix = f"raise --timeout, or {resume}"
    return _failure(FailureKind.TIMEOUT, what, fix, limit=limit)


def _preempted(facts: _Facts) -> Failure | None:
    stepd = _slurmstepd_end(facts)
    if facts.state != "PREEMPTED" and not (stepd and stepd[0] == "PREEMPTION"):
        return None
    node = {"node": stepd[1]} if stepd else {}
    on = f" on {stepd[1]}" if stepd else ""
    return _failure(
        FailureKind.PREEMPTED,
        f"Slurm preempted the job{on}: a higher-priority job took its resources",
        "submit it again (--sbatch requeue lets Slurm requeue it), on a partition or QOS"
        " without preemption if you can, and save checkpoints so a rerun resumes",
        **node,
    )


def _node_failed(facts: _Facts) -> Failure | None:
    stepd = _slurmstepd_end(facts)
    failed = stepd is not None and stepd[0].startswith("NODE FAILURE")
    if facts.state not in ("NODE_FAIL", "BOOT_FAIL") and not failed:
        return None
    node = stepd[1] if stepd else ""
    what = "failed to boot (BOOT_FAIL)" if facts.state == "BOOT_FAIL" else "failed (NODE_FAIL)"
    where = f"the job's node {node}" if node else "the job's node"
    keep_off = f"--sbatch exclude={node}" if node else "--sbatch exclude=NODE"
    return _failure(
        FailureKind.NODE_FAILURE,
        f"{where} {what}",
        f"submit it again: Slurm picks another node ({keep_off} keeps it off this one);"
        " save checkpoints so a rerun resumes",
        **({"node": node} if node else {}),
    )


# -- host memory ----------------------------------------------------------------------------------

HOST_OOM_FIX = (
    "use less host memory (smaller batches, fewer DataLoader workers, data loaded lazily) or"
    " ask for more: --mem on Slurm (e.g. --mem 64G), a host with more RAM otherwise"
)
SLURM_OOM = re.compile(r"Detected (\d{1,9}) oom[-_]kill event")
"""task/cgroup's count: ``Detected 1 oom_kill event in StepId=42.batch. Some of the step tasks
have been OOM Killed.`` (older: ``Detected 1 oom-kill event(s) in step 42.batch cgroup.``)."""
BAD_ALLOC = "std::bad_alloc"
SRUN_OOM = re.compile(r"task \d{1,9}: Out Of Memory")
KERNEL_OOM = re.compile(r"out of memory: kill(?:ed)? process (\d{1,10}) \(([^)\n]{0,64})\)", re.I)
SHELL_KILLED = re.compile(r"(?:[^:\n]{0,300}: line \d{1,9}: +)?(?:\d{1,10} +)?Killed(?: |\Z)")
"""bash's report of a SIGKILLed foreground child: ``run.sh: line 179:  9883 Killed   cmd`` (the
pid right-aligned), plain ``Killed`` from sh."""
DATALOADER_KILLED = re.compile(
    r"DataLoader worker \(pid(?:\(s\))? ([\d, ]{1,64})\) is killed by signal: Killed"
)


def _system_oom_line(line: str) -> Failure | None:
    if "oom" in line and (match := SLURM_OOM.search(line)):
        count = int(match[1])
        return _host_oom(
            f"Slurm's memory cgroup killed {count} process(es) of the job (oom-kill)", events=count
        )
    if "Out Of Memory" in line and SRUN_OOM.search(line):
        return _host_oom(
            "Slurm stopped a task for using more memory than it asked for (srun: Out Of Memory)"
        )
    if "illed process" in line or "ill process" in line:
        match = KERNEL_OOM.search(line)
        if match:
            return _host_oom(
                f"the kernel's out-of-memory killer killed process {match[1]} ({match[2]})",
                pid=int(match[1]),
            )
    return None


def _bad_alloc() -> Failure:
    return _host_oom("the cell ran out of host memory (C++ std::bad_alloc)")


def _host_oom(explanation: str, **detail: str | int) -> Failure:
    return _failure(FailureKind.HOST_OOM, explanation, HOST_OOM_FIX, **detail)


def _oom_reported(facts: _Facts) -> Failure | None:
    if facts.state == "OUT_OF_MEMORY":
        return _host_oom(
            "Slurm stopped the job for using more memory than it asked for (OUT_OF_MEMORY)"
        )
    for line in facts.from_end():
        failure = _system_oom_line(line)
        if failure is not None:
            return failure
    return None


def _host_oom_exception(exc: _Exception) -> Failure | None:
    if exc.short == "MemoryError":
        said = f": {exc.message}" if exc.message.strip() else ""
        line = _cell_line(exc)
        at = {"line": line} if line else {}
        where = f" at line {line} of the cell" if line else ""
        return _host_oom(f"the cell ran out of host memory{where} (MemoryError{said})", **at)
    if BAD_ALLOC in exc.message:
        return _bad_alloc()
    match = DATALOADER_KILLED.search(exc.message) if "DataLoader" in exc.message else None
    if match:
        return _host_oom(
            f"a DataLoader worker (pid {match[1].strip()}) was killed by SIGKILL, most likely by"
            " the out-of-memory killer",
            signal=9,
        )
    return None


# -- GPU memory -----------------------------------------------------------------------------------

CUDA_OOM_FIX = (
    "use a smaller batch (gradient accumulation keeps the effective size), mixed precision"
    " (bf16/fp16) or activation checkpointing, or more or larger GPUs (--gpus, --gpu-type)"
)
SIZE = r"\d{1,12}(?:\.\d{1,6})? ?(?:bytes|[KMGTP]i?B)"
TORCH_TRIED = re.compile(rf"CUDA out of memory\. Tried to allocate ({SIZE})")
TORCH_OLD_GPU = re.compile(rf"\(GPU (\d{{1,4}}); ({SIZE}) total capacity; ")
TORCH_OLD_FREE = re.compile(rf"; ({SIZE}) free; ")
TORCH_NEW_GPU = re.compile(
    rf"GPU (\d{{1,4}}) has a total capacity of ({SIZE}) of which ({SIZE}) is free"
)
TF_OOM = re.compile(
    r"OOM when allocating tensor with shape ?(\[[^\]\n]{0,200}\])(?: and type (\w{1,32}))?"
)
TF_DEVICE = re.compile(r" on (/\S{0,200}device:(CPU|GPU):(\d{1,4}))")
XLA_OOM = re.compile(rf"Out of memory while trying to allocate ({SIZE})")
CUDA_ERROR_OOM = "CUDA error: out of memory"
TORCH_OOM_TYPES = ("torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError")
DRIVER_OOM = ("CUDA_ERROR_OUT_OF_MEMORY", "cudaErrorMemoryAllocation")


def _cuda_oom(text: str, weak: bool) -> Failure | None:
    """A GPU out-of-memory message in ``text`` (a line, or an exception's text). ``weak``: also
    the driver's error names, which TensorFlow logs for allocations it then retries."""
    if "CUDA out of memory" in text:
        return _torch_oom(text)
    if "OOM when allocating tensor" in text:
        return _tf_oom(text)
    if "Out of memory while trying to allocate" in text and (match := XLA_OOM.search(text)):
        return _xla_oom(match[1])
    if CUDA_ERROR_OOM in text:
        return _gpu_oom("CUDA out of memory (CUDA error: out of memory)", framework="cuda")
    name = next((n for n in DRIVER_OOM if n in text), None) if weak else None
    return _gpu_oom(f"CUDA out of memory ({name})", framework="cuda") if name else None


def _torch_oom(text: str) -> Failure:
    tried = TORCH_TRIED.search(text)
    new, old = TORCH_NEW_GPU.search(text), TORCH_OLD_GPU.search(text)
    detail: dict[str, str | int] = {"framework": "pytorch"}
    if tried:
        detail["tried"] = tried[1]
    if new:
        detail.update(gpu=int(new[1]), total=new[2], free=new[3])
    elif old:
        free = TORCH_OLD_FREE.search(text)
        detail.update(gpu=int(old[1]), total=old[2], **({"free": free[1]} if free else {}))
    return _gpu_oom(_gpu_oom_sentence(detail), **detail)


def _gpu_oom_sentence(detail: Mapping[str, str | int]) -> str:
    where = f" on GPU {detail['gpu']}" if "gpu" in detail else ""
    what = f" while allocating {detail['tried']}" if "tried" in detail else ""
    room = ""
    if "total" in detail:
        room = (
            f" ({detail['free']} free of {detail['total']})"
            if "free" in detail
            else f" ({detail['total']} total)"
        )
    return f"CUDA out of memory{where}{what}{room}"


def _tf_oom(text: str) -> Failure:
    match, device = TF_OOM.search(text), TF_DEVICE.search(text)
    shape = match[1] if match else "?"
    dtype = f"{match[2]} " if match and match[2] else ""
    if device and device[2] == "CPU":
        return _host_oom(
            f"TensorFlow ran out of host memory allocating a {dtype}tensor of shape {shape}",
            shape=shape,
        )
    gpu = {"gpu": int(device[3])} if device else {}
    where = f" on GPU {device[3]}" if device else ""
    return _gpu_oom(
        f"TensorFlow ran out of GPU memory{where} allocating a {dtype}tensor of shape {shape}",
        framework="tensorflow",
        shape=shape,
        **gpu,
    )


def _xla_oom(amount: str) -> Failure:
    number = amount.split()[0] if amount.endswith("bytes") else ""
    shown = size(int(number)) if number.isdigit() else amount
    detail: dict[str, str | int] = {"framework": "xla", "tried": shown}
    if number.isdigit():
        detail["tried_bytes"] = int(number)
    return _gpu_oom(f"XLA (JAX) ran out of GPU memory while allocating {shown}", **detail)


def _gpu_oom(explanation: str, **detail: str | int) -> Failure:
    return _failure(FailureKind.CUDA_OOM, explanation, CUDA_OOM_FIX, **detail)


# -- disk -----------------------------------------------------------------------------------------

NO_SPACE, QUOTA = "No space left on device", "Disk quota exceeded"
QUOTED = r"'([^'\n]{1,4096})'"
PATH_AFTER = re.compile(rf"(?:{NO_SPACE}|{QUOTA}): {QUOTED}(?: -> {QUOTED})?")
"""Python's OSError: ``[Errno 28] No space left on device: 'src' -> 'dst'``."""
PATH_BEFORE = re.compile(rf"{QUOTED}: (?:{NO_SPACE}|{QUOTA})")
"""coreutils: ``dd: error writing '/scratch/data.bin': No space left on device``."""
DISK_FIX = (
    "free space (%gpu_cleanup removes old job folders), write big files elsewhere, or use"
    " another --base-path for the cluster"
)


def _disk_full(text: str, disk: DiskSpace | None) -> Failure | None:
    quota = QUOTA in text or "[Errno 122]" in text
    if not (quota or NO_SPACE in text or "[Errno 28]" in text):
        return None
    after, before = PATH_AFTER.search(text), PATH_BEFORE.search(text)
    path = (after[2] or after[1]) if after else before[1] if before else None
    fix = DISK_FIX + (", or ask for a larger quota" if quota else "")
    detail = _disk_detail(path, disk, quota)
    return _failure(FailureKind.DISK_FULL, _disk_sentence(path, disk, quota), fix, **detail)


def _on_disk(path: str | None, disk: DiskSpace | None) -> bool:
    """Whether the measured filesystem is the one ``path`` is on (as far as the names tell)."""
    if disk is None:
        return False
    if path is None or not path.startswith("/"):
        return True  # no path, or relative to the cell's folder, which is in the job folder
    root = disk.path.rstrip("/")
    return path == root or path.startswith(root + "/")


def _disk_sentence(path: str | None, disk: DiskSpace | None, quota: bool) -> str:
    full = "is over its disk quota" if quota else "is full"
    if disk is not None and _on_disk(path, disk):
        room = f"{size(disk.free_bytes)} free of {size(disk.total_bytes)}"
        writing = f" (writing {path})" if path else ""
        return f"{disk.path} {full}: {room}{writing}"
    problem = "disk quota exceeded" if quota else "no space left on the device"
    where = f" holding {path}" if path else " the job wrote to"
    measured = ""
    if disk is not None:
        measured = f" (the job folder's disk {disk.path} has {size(disk.free_bytes)} free)"
    return f"{problem}{where}{measured}"


def _disk_detail(path: str | None, disk: DiskSpace | None, quota: bool) -> dict[str, str | int]:
    detail: dict[str, str | int] = {"errno": 122 if quota else 28}
    if path:
        detail["path"] = path
    if disk is not None and _on_disk(path, disk):
        detail.update(path=disk.path, free_bytes=disk.free_bytes, total_bytes=disk.total_bytes)
        if path:
            detail["file"] = path
    return detail


def _lost_to_full_disk(facts: _Facts) -> Failure | None:
    """A job that vanished, or failed without a word, on a disk measured full: the full disk
    is why (it also kept the exit code, or the cell's traceback, from being written)."""
    disk = facts.evidence.disk_free
    if disk is None or disk.free_bytes >= FULL_BELOW:
        return None
    if facts.status == "lost":
        consequence = "the job could not record how it ended"
    elif facts.status == "failed" and facts.exception is None:
        consequence = "the cell's error could not be written to its log"
    else:
        return None
    room = f"{size(disk.free_bytes)} free of {size(disk.total_bytes)}"
    return _failure(
        FailureKind.DISK_FULL,
        f"{disk.path} is full: {room}; {consequence}",
        DISK_FIX,
        path=disk.path,
        free_bytes=disk.free_bytes,
        total_bytes=disk.total_bytes,
    )


# -- NCCL -----------------------------------------------------------------------------------------

NCCL_FIX = (
    "rerun with --env NCCL_DEBUG=INFO to see why; check that every rank reaches the same"
    " collectives and that the nodes reach each other (NCCL_SOCKET_IFNAME)"
)
NCCL_TIMEOUT_FIX = (
    "a rank stopped reaching the collective (crashed, hung or far slower): read every rank's"
    " log; raise the process group's timeout only if one is just slow"
)
NCCL_ERROR_NAME = re.compile(
    r"\bnccl(?:UnhandledCuda|System|Internal|InvalidArgument|InvalidUsage|Remote)Error\b"
)
NCCL_ERROR_IN = re.compile(
    r"NCCL error in: [^,\n]{0,300}, ([^,\n]{1,300}), NCCL version ([\w.+-]{1,40})"
)
NCCL_WATCHDOG = "Watchdog caught collective operation timeout"
NCCL_OP = re.compile(r"OpType=(\w{1,40})")
NCCL_RAN = re.compile(r"Timeout\(ms\)=(\d{1,12})\) ran for (\d{1,12}) milliseconds")
NCCL_WARN = re.compile(r" NCCL WARN (.{1,300})")
NCCL_SIGNS = (
    "NCCL error",
    "Some NCCL operations have failed or timed out",
    "NCCL communicator was aborted",
)


def _nccl(text: str) -> Failure | None:
    """An NCCL failure named in ``text`` (an exception's text or one line of the log)."""
    if NCCL_WATCHDOG in text:
        return _nccl_timeout(text)
    name = NCCL_ERROR_NAME.search(text) if "nccl" in text else None
    if name is None and not any(sign in text for sign in NCCL_SIGNS):
        warn = NCCL_WARN.search(text) if "NCCL WARN" in text else None
        return _nccl_failure(f"NCCL warned: {warn[1]}") if warn else None
    said = NCCL_ERROR_IN.search(text)
    detail: dict[str, str | int] = {"error": name[0]} if name else {}
    if said:
        detail["nccl_version"] = said[2]
    what = said[1].split(" (run with", 1)[0] if said else "an NCCL operation failed"
    named = f" ({name[0]})" if name else ""
    return _nccl_failure(f"NCCL failed: {what}{named}", **detail)


def _nccl_timeout(text: str) -> Failure:
    op, ran = NCCL_OP.search(text), NCCL_RAN.search(text)
    detail: dict[str, str | int] = {"op": op[1]} if op else {}
    if ran:
        detail.update(timeout_ms=int(ran[1]), ran_ms=int(ran[2]))
    which = f" ({op[1]})" if op else ""
    after = f" after {ran[2]} ms (timeout {ran[1]} ms)" if ran else ""
    explanation = f"an NCCL collective{which} timed out{after}: the watchdog stopped the process"
    return _failure(FailureKind.NCCL, explanation, NCCL_TIMEOUT_FIX, **detail)


def _nccl_failure(explanation: str, **detail: str | int) -> Failure:
    return _failure(FailureKind.NCCL, explanation, NCCL_FIX, **detail)


def _nccl_exception(exc: _Exception) -> Failure | None:
    failure = _nccl(exc.text)
    if failure is None and exc.short == "DistBackendError":
        return _nccl_failure(f"the distributed backend failed: {exc.headline}")
    return failure


# -- imports and syntax ---------------------------------------------------------------------------

NO_MODULE = re.compile(r"No module named '([^'\n]{1,200})'")
CANNOT_IMPORT = re.compile(r"cannot import name '([^'\n]{1,200})' from '([^'\n]{1,200})'")
ENVIRONMENT = "--venv DIR, --conda NAME or --python PATH"
SYNTAX_TYPES = ("SyntaxError", "IndentationError", "TabError")
WHERE_IN_MESSAGE = re.compile(r" \(([^()\n]{1,300}), line (\d{1,9})\)\Z")


def _import_error(exc: _Exception) -> Failure | None:
    if exc.short not in ("ModuleNotFoundError", "ImportError"):
        return None
    missing, name = NO_MODULE.search(exc.message), CANNOT_IMPORT.search(exc.message)
    if missing:
        module, top = missing[1], missing[1].split(".", 1)[0]
        return _failure(
            FailureKind.IMPORT_ERROR,
            f"the cell could not import {module} ({exc.short}: No module named '{module}')",
            f"install {top} in the job's environment (pip install {top} on the host), or run"
            f" the cell where it is installed: {ENVIRONMENT}",
            module=module,
            package=top,
        )
    if name:
        return _failure(
            FailureKind.IMPORT_ERROR,
            f"the cell could not import {name[1]} from {name[2]} ({exc.short}: the installed"
            f" {name[2]} has no {name[1]})",
            f"install the version of {name[2]} the cell was written for in the job's environment,"
            f" change the import, or choose another environment ({ENVIRONMENT})",
            module=name[2],
            name=name[1],
        )
    return _failure(
        FailureKind.IMPORT_ERROR,
        f"the cell could not import: {exc.headline}",
        f"install what is missing in the job's environment, or choose another ({ENVIRONMENT})",
    )


def _syntax_error(exc: _Exception) -> Failure | None:
    if exc.short not in SYNTAX_TYPES:
        return None
    path, line = _syntax_place(exc)
    where = WHERE_IN_MESSAGE.search(exc.message)
    said = (exc.message[: where.start()] if where else exc.message).strip().split("\n", 1)[0]
    in_cell = not path or _in_cell(path)
    name = "the cell" if in_cell else path.rsplit("/", 1)[-1]
    whose = "the cell has" if in_cell else f"{name}, which the cell imports, has"
    at = f" at line {line}" if line else ""
    detail: dict[str, str | int] = {"line": line} if line else {}
    if not in_cell:
        detail["file"] = path
    return _failure(
        FailureKind.SYNTAX_ERROR,
        f"{whose} a {exc.short}{at}" + (f": {said}" if said else ""),
        f"fix {f'line {line} of ' if line else ''}{name} and submit the cell again",
        **detail,
    )


def _syntax_place(exc: _Exception) -> tuple[str, int]:
    """(file, line): the report's frame (a full path) unless the message names another file."""
    where = WHERE_IN_MESSAGE.search(exc.message)
    if exc.frames and (where is None or exc.frames[-1][0].endswith("/" + where[1])):
        return exc.frames[-1]
    return (where[1], int(where[2])) if where else ("", 0)


# -- 5: the cell's exception names the cause ------------------------------------------------------


def _named_cause(facts: _Facts) -> Failure | None:
    exc = facts.exception
    if exc is None:
        return None
    disk = facts.evidence.disk_free
    torch_oom = _torch_oom(exc.text) if exc.type in TORCH_OOM_TYPES else None
    return (
        torch_oom
        or _cuda_oom(exc.text, weak=True)
        or _disk_full(exc.text, disk)
        or _host_oom_exception(exc)
        or _nccl_exception(exc)
        or _import_error(exc)
        or _syntax_error(exc)
    )


# -- 6, 10: signals -------------------------------------------------------------------------------

SELF_SIGNALS = frozenset(
    int(s)
    for s in (
        getattr(signal, n, None)
        for n in ("SIGABRT", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS")
    )
    if s is not None
)
"""Signals a process gets for what it does itself; the others are sent from outside."""
SIGNAL_FIXES = {
    "SIGKILL": "find who sent it (an admin, a watchdog, the OOM killer: check the host's memory)"
    " and submit the cell again",
    "SIGTERM": "something asked the job to stop (an admin, a host shutting down): submit it again,"
    " saving checkpoints so it can resume",
    "SIGINT": "the cell was interrupted (Ctrl-C or SIGINT): submit it again if that was not meant",
    "SIGSEGV": "a native extension crashed: check that the CUDA, driver and library versions in"
    " the job's environment match (--venv / --conda)",
    "SIGABRT": "a native library aborted (its message is just above in the log): fix what it"
    " reports, or check the library versions in the job's environment",
    "SIGBUS": "often /dev/shm too small for DataLoader workers: use fewer workers"
    " (num_workers) or a larger /dev/shm; else a file mapped into memory shrank",
}
DEFAULT_SIGNAL_FIX = (
    "find what sent the signal (the lines just above it in the log) and submit the cell again"
)


def _killed(number: int, explanation: str | None = None) -> Failure:
    name = _signal_name(number)
    fix = SIGNAL_FIXES.get(name, DEFAULT_SIGNAL_FIX)
    said = explanation or f"the cell was killed by {_signal_text(number)}"
    return _failure(
        FailureKind.KILLED, said, fix, signal=number, **({"signal_name": name} if name else {})
    )


def _outside_signal(facts: _Facts) -> Failure | None:
    number = facts.signal
    if number is None or number in SELF_SIGNALS:
        return None
    if number == signal.SIGKILL and any(SHELL_KILLED.match(line) for line in facts.lines):
        return _host_oom(
            "the cell was killed by signal 9 (SIGKILL; the shell printed 'Killed') and nothing"
            " else says why: most likely the kernel's out-of-memory killer",
            signal=9,
        )
    return _killed(number)


def _self_signal(facts: _Facts) -> Failure | None:
    return _killed(facts.signal) if facts.signal is not None else None


# -- 7: root-cause lines --------------------------------------------------------------------------


def _root_cause_line(facts: _Facts) -> Failure | None:
    alone = facts.exception is None
    disk = facts.evidence.disk_free
    for line in facts.from_end():
        failure = _cuda_oom(line, weak=alone) or _disk_full(line, disk)
        if failure is None and alone:
            failure = _nccl(line) or (_bad_alloc() if BAD_ALLOC in line else None)
        if failure is not None:
            return failure
    return _lost_to_full_disk(facts)


# -- 8, 9, 11, 12: what is left -------------------------------------------------------------------


def _lost(facts: _Facts) -> Failure | None:
    if facts.status != "lost":
        return None
    reason = facts.evidence.reason
    said = f": {reason}" if reason else " without an exit code"
    return _failure(
        FailureKind.LOST,
        f"the job was lost{said}",
        "check the host (a reboot, a full disk under the job folder or an admin's kill leaves"
        " no exit code) and submit the cell again",
    )


def _generic_exception(facts: _Facts) -> Failure | None:
    exc = facts.exception
    if exc is None:
        return None
    if exc.short == "SystemExit":
        code = exc.message.strip()
        number = code.lstrip("-").isdigit()
        shown = code if number else repr(code)
        return _failure(
            FailureKind.USER_EXCEPTION,
            f"the cell called sys.exit({shown})",
            "see why the cell exits there (the lines before it in the log)",
            **({"exit_code": int(code)} if number else {}),
        )
    if exc.short == "KeyboardInterrupt":
        return _killed(int(signal.SIGINT), "the cell was interrupted (KeyboardInterrupt: SIGINT)")
    line = _cell_line(exc)
    at = f" (line {line} of the cell)" if line else ""
    return _failure(
        FailureKind.USER_EXCEPTION,
        f"the cell raised {exc.headline}{at}",
        "fix what the traceback points at (%gpu_logs JOB shows it) and submit the cell again",
        type=exc.type,
        **({"line": line} if line else {}),
    )


LAUNCHER_FIXES = {
    EXIT_GPU_UNAVAILABLE: "ask for fewer GPUs (--gpus N) or wait until the host's GPUs are free",
    EXIT_GIT_FAILED: "check the --git URL and ref (git's own message is in the log)",
}
LAUNCHER = "[gpu_magic] "


def _exit_code(facts: _Facts) -> Failure | None:
    code = facts.evidence.exit_code
    if code in (None, 0):
        return None
    said = _launcher_said(facts) if code in LAUNCHER_FIXES else None
    if said:
        return _failure(
            FailureKind.USER_EXCEPTION,
            f"the job stopped before the cell ran (exit {code}): {said}",
            LAUNCHER_FIXES[code],
            exit_code=code,
        )
    return _failure(
        FailureKind.USER_EXCEPTION,
        f"the cell exited with code {code}",
        "see what the cell printed last (%gpu_logs JOB) for why it exits with that code",
        exit_code=code,
    )


def _launcher_said(facts: _Facts) -> str | None:
    return next(
        (line[len(LAUNCHER) :] for line in facts.from_end() if line.startswith(LAUNCHER)), None
    )


def _unexplained(facts: _Facts) -> Failure:
    reason = facts.evidence.reason
    said = f" ({reason})" if reason else ""
    return _failure(
        FailureKind.LOST,
        f"the job ended as {facts.status or 'unknown'}{said} and left nothing that says why",
        "look at the job's log (%gpu_logs JOB) and the host, then submit the cell again",
    )


RULES: tuple[Callable[[_Facts], Failure | None], ...] = (
    _cancelled,
    _timed_out,
    _preempted,
    _node_failed,
    _oom_reported,
    _named_cause,
    _outside_signal,
    _root_cause_line,
    _lost,
    _generic_exception,
    _self_signal,
    _exit_code,
)
"""The precedence of the module docstring, in order (rule 12 is ``_unexplained``)."""
