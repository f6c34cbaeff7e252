"""Render the sbatch script of a job (or of a job array): pure functions, pinned by golden files.

The script holds only ``#SBATCH`` lines and a call of the job folder's ``run.sh``, the very
launcher the process scheduler starts: everything a job does (state files, TERM handling, the
GPU sampler, the exit code) stays in one place. sbatch is run inside the job folder, so the
batch job's working directory is that folder and ``run.sh`` is found relative to it.

Each ``#SBATCH`` value has passed ``resources``' patterns; ``sbatch_line`` checks every line once
more, so that no value can end an ``#SBATCH`` line early or add one.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from datetime import datetime

from .. import jobdir
from ..models import GPUJobRequest
from ..resources import Resources, time_limit_seconds

SAFE_LINE = re.compile(r"^#SBATCH --[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:=@+/%\[\]()&|*-]*)?\Z")
SRUN = ("srun", "--kill-on-bad-exit=1")
"""How run.sh starts the cell on every node of a multi-node job (one task per node)."""


def sbatch_line(key: str, value: str | int | None = "") -> str:
    line = f"#SBATCH --{key}" + ("" if value in ("", None) else f"={value}")
    if not SAFE_LINE.fullmatch(line):
        raise ValueError(f"refusing to write an unsafe #SBATCH line: {line!r}")
    return line


def gpu_option(count: int, gpu_type: str | None, style: str) -> tuple[str, str]:
    """GPUs per node: ``--gres=gpu[:type]:N`` or ``--gpus-per-node=[type:]N``."""
    typed = f"{gpu_type}:" if gpu_type else ""
    if style == "gpus":
        return "gpus-per-node", f"{typed}{count}"
    return "gres", f"gpu:{typed}{count}"


def resource_lines(resources: Resources, gpus: int, gres_style: str) -> list[str]:
    """The ``#SBATCH`` lines for the resources, in a fixed order."""
    r = resources
    options: list[tuple[str, str | int | None]] = [
        ("partition", r.partition),
        ("account", r.account),
        ("qos", r.qos),
        ("time", r.time),
        ("nodes", r.nodes),
        ("cpus-per-task", r.cpus),
        ("mem", r.mem),
        ("constraint", r.constraint),
    ]
    if r.nodes and r.nodes > 1 and "ntasks-per-node" not in r.sbatch:
        options.append(("ntasks-per-node", 1))
    if gpus > 0:
        options.append(gpu_option(gpus, r.gpu_type, gres_style))
    lines = [sbatch_line(k, v) for k, v in options if v is not None]
    return lines + [sbatch_line(k, v) for k, v in sorted(r.sbatch.items())]


def attempt_lines(request: GPUJobRequest, resources: Resources, warn: int | None) -> list[str]:
    """``--signal=B:USR2@N``: with a time limit, run.sh is warned N s before it (it stops the
    cell with TERM: a checkpoint is saved, the end is a ``timeout`` it records), never more than
    half the limit ahead: a warning due at once would reach the batch shell before run.sh
    traps it, killing it with no exit code, a ``failed`` job. ``--requeue``: with retries, a
    preempted job or one whose node failed goes back to Slurm's queue."""
    lines = []
    limit = time_limit_seconds(resources.time) if resources.time else None
    ahead = min(warn, limit // 2) if warn and limit else 0
    if ahead >= 1:
        lines.append(sbatch_line("signal", f"B:USR2@{ahead}"))
    if request.retries:
        lines.append(sbatch_line("requeue"))
    return lines


def start_lines(request: GPUJobRequest, after: Sequence[str], now: datetime) -> list[str]:
    """When the job may start: after the Slurm jobs ``after`` (completed; with ``after_any``
    ended), which Slurm cancels it for when one cannot be met (``--kill-on-invalid-dep``);
    not before ``request.start_at`` (``--begin=now+N``, counted here: the cluster's clock and
    time zone need not be ours); ``--nice`` for a priority below 0 (a user may only lower
    one)."""
    lines = []
    if after:
        kind = "afterany" if request.after_any else "afterok"
        lines.append(sbatch_line("dependency", f"{kind}:{':'.join(after)}"))
        lines.append(sbatch_line("kill-on-invalid-dep", "yes"))
    if request.start_at is not None:
        left = math.ceil((request.start_at - now).total_seconds())
        if left > 0:
            lines.append(sbatch_line("begin", f"now+{left}"))
    if request.priority < 0:
        lines.append(sbatch_line("nice", -request.priority))
    return lines


def job_name(job_id: str, request: GPUJobRequest) -> str:
    return f"gm-{request.name or job_id}"


def render_sbatch_script(
    job_id: str,
    request: GPUJobRequest,
    resources: Resources,
    gres_style: str = "gres",
    warn_before_limit: int | None = None,
    starts: Sequence[str] = (),
) -> str:
    """The sbatch script of one job; submit it from inside the job folder. ``starts``: its
    ``start_lines``."""
    lines = [
        "#!/bin/bash",
        sbatch_line("job-name", job_name(job_id, request)),
        sbatch_line("output", jobdir.SLURM_OUTPUT),
        sbatch_line("open-mode", "append"),
        *resource_lines(resources, request.gpus, gres_style),
        *attempt_lines(request, resources, warn_before_limit),
        *starts,
        f"# gpu_magic job {job_id} (generated: do not edit). Slurm's own messages go to",
        f"# {jobdir.SLURM_OUTPUT}; the cell's output to {jobdir.OUTPUT_LOG} (written by run.sh).",
        f"exec bash ./{jobdir.RUN_SCRIPT}",
    ]
    return "\n".join(lines) + "\n"


def render_array_script(
    name: str,
    request: GPUJobRequest,
    resources: Resources,
    folders: list[str],
    gres_style: str = "gres",
    max_running: int | None = None,
    warn_before_limit: int | None = None,
    starts: Sequence[str] = (),
) -> str:
    """One sbatch script for N job folders: task i runs ``folders[i]/run.sh``.

    Every task gets the same resources (those of ``request``). Submit it from ``folders[0]``;
    Slurm's own messages of task i go to ``state/array/i.out`` there, which the submit makes
    a link to folder i's ``slurm.out`` (``SlurmScheduler.submit_array``).
    """
    if not folders:
        raise ValueError("a job array needs at least one job folder")
    spec = f"0-{len(folders) - 1}" + (f"%{max_running}" if max_running else "")
    cases = "".join(f"  {i}) cd -- {shlex.quote(f)} ;;\n" for i, f in enumerate(folders))
    lines = [
        "#!/bin/bash",
        sbatch_line("job-name", f"gm-{name}"),
        sbatch_line("array", spec),
        sbatch_line("output", f"{jobdir.STATE}/{jobdir.ARRAY_OUTPUTS}/%a.out"),
        sbatch_line("open-mode", "append"),
        *resource_lines(resources, request.gpus, gres_style),
        *attempt_lines(request, resources, warn_before_limit),
        *starts,
        f"# gpu_magic job array {name} (generated: do not edit): task i runs job folder i.",
        'case "$SLURM_ARRAY_TASK_ID" in',
        cases + '  *) echo "gpu_magic: no job folder for task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
        "esac",
        f"exec bash ./{jobdir.RUN_SCRIPT}",
    ]
    return "\n".join(lines) + "\n"


def run_script_options(request: GPUJobRequest, resources: Resources) -> dict:
    """How ``run.sh`` differs under Slurm: Slurm picks the GPUs (it sets CUDA_VISIBLE_DEVICES),
    and a multi-node job starts the cell with ``srun`` on every node."""
    launcher = SRUN if resources.nodes and resources.nodes > 1 else ()
    return {"select_gpus": False, "launcher": launcher}
