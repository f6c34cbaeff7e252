"""``process`` scheduler: ``run.sh`` as a detached process group on a plain host.

The job folder's state files are the truth: ``exit_code`` means finished (written last, with
``cancel_requested`` / ``timed_out`` saying why); a live process group means running; a
process group that vanished without an exit code means ``lost``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath

from .. import jobdir
from ..errors import SchedulerError
from ..jobdir import JobDir
from ..models import GPUJob, JobStatus
from ..transport.base import quote_argv
from .base import Observation, Scheduler, Submitted

LAUNCH = (
    "cd {dir} && {{ setsid nohup bash {script} </dev/null >/dev/null 2>&1 & }} && "
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

# One line per job: dir, alive, pid, started_at, ended_at, exit_code, flags. Liveness is read
# first: a job that ends between the two reads shows its exit code, never a false "lost".
POLL = (
    ALIVE
    + r"""for d in {dirs}; do
  s="$d/state"; pid=; alive=0; started=; ended=; code=; flags=
  if [ ! -d "$d" ]; then printf '%s\tmissing\n' "$d"; continue; fi
  read -r pid < "$s/{pid}" 2>/dev/null
  [ -n "$pid" ] && alive "$pid" && alive=1
  read -r started < "$s/{started}" 2>/dev/null; read -r ended < "$s/{ended}" 2>/dev/null
  read -r code < "$s/{code}" 2>/dev/null
  [ -e "$s/{cancel}" ] && flags="${{flags}}c"; [ -e "$s/{timed_out}" ] && flags="${{flags}}t"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$d" "$alive" "$pid" "$started" "$ended" "$code" "$flags"
done"""
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

    def submit(self, job: GPUJob, folder: JobDir) -> Submitted:
        command = LAUNCH.format(
            dir=quote_argv(str(folder)),
            script=jobdir.RUN_SCRIPT,
            pid=f"{jobdir.STATE}/{jobdir.PID}",
        )
        pid = self.transport.run(command).check().text.strip()
        if not pid.isdigit():
            raise SchedulerError(f"job {job.id} did not start: run.sh wrote no pid")
        return Submitted(scheduler_id=pid, status=JobStatus.RUNNING)

    def poll(self, jobs: list[GPUJob]) -> dict[str, Observation]:
        if not jobs:
            return {}
        by_dir = {job.remote_dir: job.id for job in jobs}
        command = POLL.format(
            dirs=" ".join(quote_argv(d) for d in by_dir),
            pid=jobdir.PID,
            started=jobdir.STARTED_AT,
            ended=jobdir.ENDED_AT,
            code=jobdir.EXIT_CODE,
            cancel=jobdir.CANCEL_REQUESTED,
            timed_out=jobdir.TIMED_OUT,
        )
        lines = self.transport.run(command).check().text.splitlines()
        return {by_dir[fields[0]]: parse_poll_line(fields[1:]) for fields in _split(lines, by_dir)}

    def cancel(self, job: GPUJob) -> None:
        if not job.scheduler_id or not job.scheduler_id.isdigit():
            raise SchedulerError(f"job {job.id} has no process group to cancel")
        folder = JobDir(PurePosixPath(job.remote_dir))
        command = CANCEL.format(
            flag=quote_argv(str(folder.state(jobdir.CANCEL_REQUESTED))), pgid=int(job.scheduler_id)
        )
        self.transport.run(command).check()


def _split(lines: list[str], known: dict[str, str]):
    for line in lines:
        fields = line.split("\t")
        if fields[0] in known:
            yield fields


def parse_poll_line(fields: list[str]) -> Observation:
    """Decide a job's state from one poll line (pure; tested on captured lines)."""
    if fields[0] == "missing":
        return Observation(JobStatus.LOST, reason="the job folder no longer exists on the host")
    alive, pid, started, ended, code, flags = (fields + [""] * 6)[:6]
    started_at, ended_at = _timestamp(started), _timestamp(ended)
    if code.strip().lstrip("-").isdigit():
        exit_code = int(code)
        status, reason = _finished(exit_code, flags)
        return Observation(status, reason, exit_code, started_at, ended_at)
    if alive == "1":
        return Observation(JobStatus.RUNNING, started_at=started_at)
    if "c" in flags:
        return Observation(JobStatus.CANCELLED, "cancelled by user", started_at=started_at)
    if pid:
        return Observation(
            JobStatus.LOST,
            f"process group {pid} vanished without writing an exit code",
            started_at=started_at,
        )
    return Observation(JobStatus.QUEUED, "launched; waiting for the process to start")


def _finished(exit_code: int, flags: str) -> tuple[JobStatus, str | None]:
    if "c" in flags:
        return JobStatus.CANCELLED, "cancelled by user"
    if "t" in flags:
        return JobStatus.TIMEOUT, "ran past its --timeout"
    if exit_code == 0:
        return JobStatus.COMPLETED, None
    return JobStatus.FAILED, f"exit code {exit_code}"


def _timestamp(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
