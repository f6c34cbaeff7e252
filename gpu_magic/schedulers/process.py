"""``process`` scheduler: ``run.sh`` as a detached process group on a plain host.

The job folder's state files are the truth: ``exit_code`` means finished (written last, with
``cancel_requested`` / ``timed_out`` saying why); a live run.sh means running. When run.sh was
killed, the job is still running while any of its processes live (found by the marker in
their environment, ``jobdir.MARKER_VARIABLE``), and has ended as the cell's wrapper recorded
(``.cell_status``) once they are gone; only a job that left neither is ``lost``. A cancel
reaches every process of the job, also those outside its process group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .. import jobdir
from ..errors import SchedulerError
from ..jobdir import JobDir
from ..models import GPUJob, JobStatus
from ..packaging.runscript_parts import JOB_PIDS
from ..transport.base import quote_argv
from . import secret_env
from .base import Observation, Scheduler, Submitted, cancel_input
from .folder_probe import FolderState

# Idempotent: only the launch that makes the ``launched`` marker (mkdir is atomic) starts run.sh,
# so a launch repeated after a dropped connection reports the first one's pid, never a second run.
LAUNCH = (
    "umask 077 && cd {dir} && mkdir -p {state} && "
    "if mkdir {marker} 2>/dev/null; then {clear}"
    "{{ GPU_MAGIC_ATTEMPT={attempt} setsid nohup bash {script} </dev/null >/dev/null 2>&1 & }}; "
    "fi; "
    "i=0; while [ ! -s {pid} ] && [ $i -lt 200 ]; do sleep 0.01; i=$((i+1)); done; "
    "cat {pid} 2>/dev/null; true"
)

# A process counts as alive unless it is gone or a zombie (some containers' PID 1 never reaps).
ALIVE = (
    'alive() { kill -0 "$1" 2>/dev/null || return 1; '
    'read -r st < "/proc/$1/stat" 2>/dev/null || return 0; '
    'case "$st" in *") Z "*) return 1;; esac; return 0; }; '
)

# Every job on stdin (its process group and folder, each ended by a NUL): the command stays
# this long however many jobs there are (sshd hands it to the login shell as one argument,
# which Linux caps at 128 KiB). All of them at once: TERM each group, give run.sh up to 5 s to
# stop its child and write the exit code, KILL what is left of the groups; then the jobs'
# processes outside their groups (run.sh stops those itself, but it may be the process that
# is gone), found in ONE walk of /proc for all jobs (``_job_pids``: by group, or by the
# marker in their environment): TERM, up to 5 s, KILL.
CANCEL = (
    ALIVE
    + JOB_PIDS
    + r"""declare -A _gm_groups=() _gm_markers=()
_gm_since=
while IFS= read -r -d '' pgid && IFS= read -r -d '' dir; do
  touch "$dir"/@FLAG@
  _started "$pgid"  # the oldest leader: what is older than it is no job's (0: one is gone)
  if [ -z "$_gm_since" ] || [ "$_gm_started" -lt "$_gm_since" ]; then _gm_since=$_gm_started; fi
  kill -TERM -"$pgid" 2>/dev/null
  _gm_groups[$pgid]=1
  real=$(cd "$dir" 2>/dev/null && pwd -P) && _gm_markers["@MARKER@=$real"]=1
done
groups_alive() { local p; for p in "${!_gm_groups[@]}"; do alive "$p" && return 0; done; return 1; }
i=0; while groups_alive && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
for p in "${!_gm_groups[@]}"; do kill -KILL -"$p" 2>/dev/null; done
_job_pids
if [ ${#_gm_pids[@]} -gt 0 ]; then
  kill -TERM "${_gm_pids[@]}" 2>/dev/null
  i=0; while [ ${#_gm_pids[@]} -gt 0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); _job_pids; done
  [ ${#_gm_pids[@]} -gt 0 ] && kill -KILL "${_gm_pids[@]}" 2>/dev/null
fi
true
""".replace("@FLAG@", f"{jobdir.STATE}/{jobdir.CANCEL_REQUESTED}").replace(
        "@MARKER@", jobdir.MARKER_VARIABLE
    )
)


LIMIT_WARNED_REASON = (
    "stopped at its Slurm time limit (--time): warned ahead (SIGUSR2), run.sh sent the cell "
    "SIGTERM so it could save a checkpoint"
)


class ProcessScheduler(Scheduler):
    name = "process"
    relaunch_safe = True  # LAUNCH starts run.sh once, however often it runs

    def submit(
        self,
        job: GPUJob,
        folder: JobDir,
        secrets: Mapping[str, str] | None = None,
        after: Sequence[str] = (),
    ) -> Submitted:
        if after:  # the store holds this scheduler's jobs until their dependencies ended
            raise SchedulerError(f"job {job.id}: the process scheduler cannot wait for jobs")
        secrets = secrets or {}
        command = secret_env.reader(list(secrets)) + LAUNCH.format(
            dir=quote_argv(str(folder)),
            state=jobdir.STATE,
            marker=f"{jobdir.STATE}/{jobdir.attempt_marker(jobdir.LAUNCHED, job.attempt)}",
            clear=_clear_previous_attempt(job.attempt),
            attempt=job.attempt,
            script=jobdir.RUN_SCRIPT,
            pid=f"{jobdir.STATE}/{jobdir.PID}",
        )
        stdin = secret_env.payload(secrets) if secrets else None
        pid = self.transport.run(command, stdin=stdin).check().text.strip()
        if not pid.isdigit():
            raise SchedulerError(f"job {job.id} did not start: run.sh wrote no pid")
        return Submitted(scheduler_id=pid, status=JobStatus.RUNNING)

    def observe(self, job: GPUJob, folder: FolderState, state_output: str) -> Observation:
        return decide(folder)

    def cancel_many(self, jobs: list[GPUJob]) -> None:
        """All of them at once in one command (``CANCEL``): N jobs cost one round trip and
        one grace period, not N."""
        for job in jobs:
            if not job.scheduler_id or not job.scheduler_id.isdigit():
                raise SchedulerError(f"job {job.id} has no process group to cancel")
        # in bash, like run.sh: the login shell may be another (dash has no arrays)
        self.transport.run(quote_argv("bash", "-c", CANCEL), stdin=cancel_input(jobs)).check()


def _clear_previous_attempt(attempt: int) -> str:
    """Before attempt 2, 3, ...: the end of the previous one goes (run.sh would remove it only
    once it starts; a look in between must not read the old attempt's exit code as this one's),
    and so does a cancellation of it (a cancelled job run again is not cancelled at once)."""
    if attempt == 1:
        return ""
    ended = [jobdir.EXIT_CODE, jobdir.ENDED_AT, jobdir.PID, jobdir.PID_START, jobdir.CELL_STATUS,
             jobdir.CANCEL_REQUESTED]  # fmt: skip
    return "rm -f " + " ".join(f"{jobdir.STATE}/{name}" for name in ended) + "; "


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
    if folder.stragglers:
        listed = ", ".join(map(str, folder.stragglers[:10]))
        return Observation(
            JobStatus.RUNNING,
            f"run.sh (pid {folder.pid}) is gone, but the job's processes {listed} still run",
            started_at=started_at,
        )
    if folder.cell_status.lstrip("-").isdigit():  # run.sh was killed; the cell ended after it
        exit_code = int(folder.cell_status)
        status, reason = _finished(exit_code, folder)
        note = f"run.sh (pid {folder.pid}) was killed; the cell ended on its own"
        reason = f"{note}: {reason}" if reason else note
        return Observation(status, reason, exit_code, started_at)
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
    if folder.limit_warned:
        return JobStatus.TIMEOUT, LIMIT_WARNED_REASON
    if folder.timed_out and exit_code != 0:
        return JobStatus.TIMEOUT, "ran past its --timeout"
    if exit_code == 0:
        return JobStatus.COMPLETED, None
    return JobStatus.FAILED, f"exit code {exit_code}"
