"""Render ``run.sh``, the launcher inside every job folder (a pure function of the request).

The scheduler starts it as ``cd JOBDIR && setsid nohup bash run.sh </dev/null >/dev/null 2>&1 &``,
so the script's ``$$`` is the id of the job's process group. What it does, in order:

1. ``cd`` to its own folder (JOBDIR = ``pwd -P``), traps TERM/INT/HUP, ``mkdir -p`` state/
   outputs/ checkpoints/, removes a previous attempt's ``exit_code``, ``ended_at``, ``timed_out``,
   ``error.json``, ``gpu_telemetry`` and ``.cell_status`` (gpu.csv, like output.log, keeps
   growing across attempts), links ``code/outputs`` and ``code/checkpoints`` to the job's
   folders (so the cell's relative ``outputs/model.pt`` is collected), then writes
   ``state/pid`` (``$$``), ``state/pid_start`` (boot id and start time: a pid handed out again
   after a reboot is not taken for the job) and ``started_at``.
2. If ``state/cancel_requested`` already exists it stops with ``EXIT_CANCELLED``.
3. Exports the request's env, then ``GPU_MAGIC_JOB_ID``, ``GPU_MAGIC_JOB_DIR``,
   ``GPU_MAGIC_OUTPUTS`` and ``GPU_MAGIC_CHECKPOINTS`` (where the cell saves files to collect),
   ``GPU_MAGIC_ATTEMPT`` (1, or what the launch of a retry set), ``GPU_MAGIC_RESUME_FROM``
   (the newest entry of checkpoints/, when there is one; logged), ``PYTHONUNBUFFERED=1`` and
   ``PYTHONPATH=JOBDIR/lib[:JOBDIR/code/repo][:$PYTHONPATH]``.
4. With ``timeout``: a watchdog that, when it expires, touches ``state/timed_out`` and sends TERM
   to the process group.
5. With ``gpus > 0``: ``lib/gpu_magic/remote/gpus.py N`` picks the GPUs; it exports
   ``CUDA_VISIBLE_DEVICES`` and ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or fails with
   ``EXIT_GPU_UNAVAILABLE``. Then, if ``CUDA_VISIBLE_DEVICES`` (or Slurm's ``SLURM_JOB_GPUS``)
   names GPUs, ``lib/gpu_magic/remote/sampler.py`` samples them into ``gpu.csv`` in the
   background (no output to output.log); else ``state/gpu_telemetry`` says why there is none. With
   ``gpus == 0`` and neither set the job may still reach every GPU of a shared box, but sampling
   them all would chart other users' work as this job's, so it does not sample.
6. With a git source: clones into ``code/repo`` (unless a previous attempt did) and checks out the
   ref, or fails with ``EXIT_GIT_FAILED`` (git's message is in output.log).
7. Runs the cell in ``code/`` inside a background wrapper subshell, output appended to
   ``output.log``, and waits. The wrapper outlives a TERM just long enough to write the cell's
   status to ``state/.cell_status``: after a trap has interrupted ``wait``, bash 5 sometimes
   reports -1 for the child, so ``wait`` alone cannot give the exit code.
8. On TERM (cancel or timeout): TERM to the whole group and to the job's processes that left
   it (``setsid``: found by ``GPU_MAGIC_JOB_DIR`` in their environment), KILL whatever is left
   after the grace period. After a normal end, processes the cell left behind are stopped the
   same way.
9. Stops the sampler (TERM, and waits for it; it KILLs its nvidia-smi at once), then
   writes ``state/ended_at`` and, last, ``state/exit_code`` (the cell's status: 143 for TERM,
   137 for KILL), both atomically (temp file in state/ + ``mv``).

Every value taken from the request is quoted with ``shlex.quote``.
"""

from __future__ import annotations

import math
import re
import shlex

from .. import jobdir
from ..models import GPUJobRequest
from .runscript_parts import FINISH, JOB_PIDS, PRELUDE, RESUME, SAMPLER, WATCHDOG, WRAPPER

EXIT_GPU_UNAVAILABLE = 97
"""``gpus.py`` could not choose the GPUs: no nvidia-smi, driver down, fewer GPUs than asked."""
EXIT_GIT_FAILED = 98
"""``git clone`` or ``git checkout`` of the request's git source failed."""
EXIT_CANCELLED = 143
"""``state/cancel_requested`` existed before the cell started (same code as a TERM)."""
KILL_GRACE_SECONDS = 10
"""How long processes get between TERM and KILL."""

RUNNER_MODULE = "gpu_magic.remote.runner"
GPUS_SCRIPT = f"{jobdir.LIB}/gpu_magic/remote/gpus.py"
SAMPLER_SCRIPT = f"{jobdir.LIB}/gpu_magic/remote/sampler.py"
GPU_TELEMETRY = jobdir.GPU_TELEMETRY
"""File in state/: ``unavailable: REASON`` (no GPU telemetry) or ``stopped: REASON`` (gpu.csv
has samples until nvidia-smi failed). Absent while sampling works."""
NO_GPUS_REQUESTED = "unavailable: no GPUs requested and CUDA_VISIBLE_DEVICES is not set"
GIT_CHECKOUT = jobdir.GIT_CHECKOUT
CELL_STATUS = jobdir.CELL_STATUS
"""Private file in state/: the cell's exit status, written by the wrapper that runs it."""

CLONE_FAILED = "git clone failed (see the git output above)"

_TO_LOG = '>>"$_gm_log" 2>&1'
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


def render_run_script(
    job_id: str,
    request: GPUJobRequest,
    interpreter: str,
    *,
    kill_grace: float = KILL_GRACE_SECONDS,
    select_gpus: bool = True,
    launcher: tuple[str, ...] = (),
) -> str:
    """The text of ``run.sh`` for one job; ``interpreter`` is the cluster's default python.

    ``select_gpus=False``: a batch scheduler has already chosen the GPUs (Slurm sets
    ``CUDA_VISIBLE_DEVICES``), so ``gpus.py`` is not run. ``launcher``: words put before the
    cell's command (``srun ...`` runs it on every node of a multi-node Slurm job).
    """
    if not jobdir.safe_id(job_id):
        raise ValueError(f"unsafe job id {job_id!r}")
    parts = [
        _header(job_id),
        _fill(
            PRELUDE,
            raw={"JOB_PIDS": JOB_PIDS},
            GRACE_TICKS=str(max(1, math.ceil(kill_grace * 10))),
            GRACE=f"{kill_grace:g}",
        ),
        _exports(job_id, request),
        f"_gm_py=({python_command(request, interpreter)})\n",
    ]
    if request.timeout is not None:
        parts.append(_fill(WATCHDOG, SECONDS=_seconds(request.timeout)))
    if request.gpus > 0:
        parts.append(_gpus(request.gpus) if select_gpus else _GIVEN_GPUS)
    parts.append(_sampler(request, interpreter))
    if request.git is not None:
        parts.append(_git(request.git.url, request.git.ref))
    parts.append(_launch(request, launcher))
    parts.append(FINISH)
    return "\n".join(parts)


def _header(job_id: str) -> str:
    return (
        "#!/usr/bin/env bash\n"
        f"# gpu_magic run script for job {job_id} (generated: do not edit).\n"
        "# Started as: cd JOBDIR && setsid nohup bash run.sh </dev/null >/dev/null 2>&1 &\n"
        "# so $$ is the job's process group. Its own exit codes: "
        f"{EXIT_GPU_UNAVAILABLE} no GPUs, {EXIT_GIT_FAILED} git failed, "
        f"{EXIT_CANCELLED} cancelled before start.\n"
    )


def _fill(template: str, raw: dict[str, str] | None = None, **extra: str) -> str:
    """Replace ``@NAME@`` with the shell-quoted job-folder names and ``extra``; ``raw`` values
    (already shell code) go in last, so nothing inside them is taken for a placeholder."""
    names = {
        "LOG": jobdir.OUTPUT_LOG,
        "STATE": jobdir.STATE,
        "OUTPUTS": jobdir.OUTPUTS,
        "CHECKPOINTS": jobdir.CHECKPOINTS,
        "PID": jobdir.PID,
        "PID_START": jobdir.PID_START,
        "RESERVE": jobdir.RESERVE,
        "MARKER": jobdir.MARKER_VARIABLE,
        "STARTED_AT": jobdir.STARTED_AT,
        "ENDED_AT": jobdir.ENDED_AT,
        "EXIT_CODE": jobdir.EXIT_CODE,
        "ERROR_JSON": jobdir.ERROR_JSON,
        "CANCEL_REQUESTED": jobdir.CANCEL_REQUESTED,
        "TIMED_OUT": jobdir.TIMED_OUT,
        "LIMIT_WARNED": jobdir.LIMIT_WARNED,
        "CANCELLED": str(EXIT_CANCELLED),
        "CELL_STATUS": CELL_STATUS,
        "CODE": jobdir.CODE,
        "GPU_CSV": jobdir.GPU_CSV,
        "GPU_TELEMETRY": GPU_TELEMETRY,
        "SAMPLER": SAMPLER_SCRIPT,
        "NO_GPUS": NO_GPUS_REQUESTED,
    }
    names.update(extra)
    for key, value in names.items():
        template = template.replace(f"@{key}@", shlex.quote(value))
    leftover = set(re.findall(r"@([A-Z_]+)@", template)) - set(raw or ())
    if leftover:
        raise AssertionError(f"unfilled placeholders {sorted(leftover)} in run.sh template")
    for key, value in (raw or {}).items():
        template = template.replace(f"@{key}@", value)
    return template


def _exports(job_id: str, request: GPUJobRequest) -> str:
    lines = []
    for name, value in request.env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name {name!r}")
        lines.append(f"export {name}={shlex.quote(value)}")
    path = '"$_gm_jobdir"/' + shlex.quote(jobdir.LIB)
    if request.git is not None:
        path += ':"$_gm_jobdir"/' + shlex.quote(GIT_CHECKOUT)
    lines += [
        f"export GPU_MAGIC_JOB_ID={shlex.quote(job_id)}",
        'export GPU_MAGIC_JOB_DIR="$_gm_jobdir"',
        f'export GPU_MAGIC_OUTPUTS="$_gm_jobdir"/{shlex.quote(jobdir.OUTPUTS)}',
        f'export GPU_MAGIC_CHECKPOINTS="$_gm_jobdir"/{shlex.quote(jobdir.CHECKPOINTS)}',
        'export GPU_MAGIC_ATTEMPT="$((${GPU_MAGIC_ATTEMPT:-1} + ${SLURM_RESTART_COUNT:-0}))"',
        _fill(RESUME),
        "export PYTHONUNBUFFERED=1",
        f'export PYTHONPATH={path}"${{PYTHONPATH:+:$PYTHONPATH}}"',
    ]
    return "\n".join(lines) + "\n"


def python_command(request: GPUJobRequest, interpreter: str) -> str:
    """The words (shell-quoted) that start the job's Python."""
    if request.conda:
        return f"conda run --no-capture-output -n {shlex.quote(request.conda)} python"
    if request.venv:
        return _path_word(request.venv.rstrip("/") + "/bin/python")
    return _path_word(request.python or interpreter)


def _path_word(path: str) -> str:
    """Quote a path, keeping a leading ``~/`` as ``"$HOME"/`` (quoting would disable it)."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _seconds(timeout: float) -> str:
    text = f"{timeout:.3f}".rstrip("0").rstrip(".")
    return "0.001" if text == "0" else text


def _gpus(count: int) -> str:
    script = '"$_gm_jobdir"/' + shlex.quote(GPUS_SCRIPT)
    message = shlex.quote(f"could not get {count} GPU(s) on this host; the cell did not run")
    return (
        f'if ! _gm_devices="$("${{_gm_py[@]}}" {script} {count} 2>>"$_gm_log")"; then\n'
        f'  _fail {EXIT_GPU_UNAVAILABLE} {message}" (host $HOSTNAME)"\n'
        "fi\n"
        "export CUDA_DEVICE_ORDER=PCI_BUS_ID\n"
        'export CUDA_VISIBLE_DEVICES="$_gm_devices"\n'
        '_log "CUDA_VISIBLE_DEVICES=$_gm_devices"\n'
    )


def _sampler(request: GPUJobRequest, interpreter: str) -> str:
    """Start the GPU sampler in the background. It needs only the standard library: with conda it
    runs on the cluster's interpreter, as ``conda run`` would be one more process between run.sh
    and the sampler (and slow to start)."""
    python = _path_word(interpreter) if request.conda else '"${_gm_py[@]}"'
    return _fill(SAMPLER, raw={"PYTHON": python})


def _git(url: str, ref: str | None) -> str:
    repo = shlex.quote(GIT_CHECKOUT)
    text = (
        f"if [ ! -d {repo}/.git ]; then\n"
        f"  GIT_TERMINAL_PROMPT=0 git clone --quiet -- {shlex.quote(url)} {repo} {_TO_LOG} ||\n"
        f"    _fail {EXIT_GIT_FAILED} {shlex.quote(CLONE_FAILED)}\n"
        "fi\n"
    )
    if ref:
        failed = shlex.quote(f"git checkout of {ref} failed (see the git output above)")
        text += (
            f"git -C {repo} checkout --quiet {shlex.quote(ref)} -- {_TO_LOG} ||\n"
            f"  _fail {EXIT_GIT_FAILED} {failed}\n"
        )
    return text


_GIVEN_GPUS = '_log "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-} (chosen by the scheduler)"\n'


def _launch(request: GPUJobRequest, launcher: tuple[str, ...] = ()) -> str:
    """Run the cell in a background wrapper that records its exit status and survives TERM."""
    if request.language == "bash":
        args = "".join(f" {shlex.quote(arg)}" for arg in request.args)
        prologue = (
            "_gm_buf=()\nif command -v stdbuf >/dev/null 2>&1; then _gm_buf=(stdbuf -oL -eL); fi\n"
        )
        command = f'${{_gm_buf[@]+"${{_gm_buf[@]}}"}} bash {shlex.quote(jobdir.BASH_MAIN)}{args}'
    else:
        prologue = ""
        command = f'"${{_gm_py[@]}}" -u -m {RUNNER_MODULE} "$_gm_jobdir"'
    if launcher:
        command = " ".join(shlex.quote(word) for word in launcher) + " " + command
    return prologue + _fill(WRAPPER, raw={"COMMAND": command})
