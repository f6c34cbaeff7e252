"""``process`` scheduler: ``run.sh`` as a detached process group on a plain host.

The job folder's state files are the truth: ``exit_code`` means finished (written last, with
``cancel_requested`` / ``timed_out`` saying why); a live process group means running; a
process group that vanished without an exit code means ``lost``.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from .. import jobdir
from ..errors import SchedulerError
from ..jobdir import JobDir
from ..models import GPUJob, JobStatus
from ..transport.base import quote_argv
from .base import Observation, Scheduler, Submitted
from .folder_probe import FolderState

# Idempotent: only the launch that makes the ``launched`` marker (mkdir is atomic) starts run.sh,
# so a launch repeated after a dropped connection reports the first one's pid, never a second run.
LAUNCH = (
    "cd {dir} && mkdir -p {state} && "
    "if mkdir {marker} 2>/dev/null; then "
    "{{ setsid nohup bash {script} </dev/null >/dev/null 2>&1 & }}; fi; "
    "i=0; while [ ! -s {pid} ] && [ $i -lt 200 ]; do sleep 0.01; i=$((i+1)); done; "
    "cat {pid} 2>/dev/null; true"
)

# A process counts as alive unless it is gone or a zombie (some containers' PID 1 never reaps).
# Braces are doubled: these snippets go through str.format.
ALIVE = (
    'alive() {{ kill -0 "$1" 2>/dev/null || return 1; '
    'read -r st < "/proc/$1/stat" 2>/dev/null || return 0; '
    'case "$st" in *") Z "*) return 1;; esac; return 0; }}; '
)

# TERM the group, give run.sh time to stop its child and write the exit code, then KILL
# whatever is left of the group.
CANCEL = ALIVE + (
    "touch {flag}; p={pgid}; kill -TERM -$p 2>/dev/null; i=0; "
    "while alive $p && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; "
    "kill -KILL -$p 2>/dev/null; true"
)


class ProcessScheduler(Scheduler):
    name = "process"
    relaunch_safe = True  # LAUNCH starts run.sh once, however often it runs

    def submit(self, job: GPUJob, folder: JobDir) -> Submitted:
        command = LAUNCH.format(
            dir=quote_argv(str(folder)),
            state=jobdir.STATE,
            marker=f"{jobdir.STATE}/{jobdir.LAUNCHED}",
            script=jobdir.RUN_SCRIPT,
            pid=f"{jobdir.STATE}/{jobdir.PID}",
        )
        pid = self.transport.run(command).check().text.strip()
        if not pid.isdigit():
            raise SchedulerError(f"job {job.id} did not start: run.sh wrote no pid")
        return Submitted(scheduler_id=pid, status=JobStatus.RUNNING)

    def observe(self, job: GPUJob, folder: FolderState, state_output: str) -> Observation:
        return decide(folder)

    def cancel(self, job: GPUJob) -> None:
        if not job.scheduler_id or not job.scheduler_id.isdigit():
            raise SchedulerError(f"job {job.id} has no process group to cancel")
        folder = JobDir(PurePosixPath(job.remote_dir))
        command = CANCEL.format(
            flag=quote_argv(str(folder.state(jobdir.CANCEL_REQUESTED))), pgid=int(job.scheduler_id)
        )
        self.transport.run(command).check()


def decide(folder: FolderState) -> Observation:
    """A job's state from its folder alone (pure; the exit code file is the truth)."""
    if not folder.exists:
        return Observation(JobStatus.LOST, reason="the job folder no longer exists on the host")
    started_at, ended_at = folder.started, folder.ended
    if folder.exit_code.lstrip("-").isdigit():
        exit_code = int(folder.exit_code)
        status, reason = _finished(exit_code, folder)
        return Observation(status, reason, exit_code, started_at, ended_at)
    if folder.alive:
        return Observation(JobStatus.RUNNING, started_at=started_at)
    if folder.cancel_requested:
        return Observation(JobStatus.CANCELLED, "cancelled by user", started_at=started_at)
    if folder.pid:
        return Observation(
            JobStatus.LOST,
            f"process group {folder.pid} vanished without writing an exit code",
            started_at=started_at,
        )
    if not folder.launched:  # a launch the connection lost before it reached the host
        return Observation(
            JobStatus.FAILED, "never launched: the launch command did not reach the host"
        )
    return Observation(JobStatus.QUEUED, "launched; waiting for the process to start")


def _finished(exit_code: int, folder: FolderState) -> tuple[JobStatus, str | None]:
    if folder.cancel_requested:
        return JobStatus.CANCELLED, "cancelled by user"
    if folder.timed_out and exit_code != 0:
        return JobStatus.TIMEOUT, "ran past its --timeout"
    if exit_code == 0:
        return JobStatus.COMPLETED, None
    return JobStatus.FAILED, f"exit code {exit_code}"
