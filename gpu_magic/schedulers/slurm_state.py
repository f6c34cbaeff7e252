"""Decide a Slurm job's state from what Slurm says and what its job folder says (pure).

Who is right when:
- Queued (PENDING, REQUEUED, PREEMPTED awaiting requeue): Slurm. A requeued job's folder may
  still hold the exit code of the attempt that was stopped; it is ignored until the job runs.
- Running: Slurm, unless run.sh has already written its exit code and that code is the cell's
  own (below 128) or carries our own flags (cancel requested, run.sh's --timeout watchdog): then
  the job is over even if Slurm is still cleaning up (COMPLETING), and it shows at once. A code
  from a signal we did not send (143 after Slurm's time limit, 137 after the OOM killer) waits for
  Slurm's final word, which says why.
- Finished: COMPLETED and FAILED defer to the folder's exit code and flags (they know about
  ``--timeout`` and cancel); every other final state (TIMEOUT, CANCELLED, OUT_OF_MEMORY,
  NODE_FAIL, ...) is Slurm's own verdict.
- Unknown to Slurm (purged after MinJobAge and no accounting): the folder's exit code, else lost;
  a code from a signal we did not send says that Slurm's reason is no longer known.
- Unknown to us (a submit whose answer the connection lost): the folder has the id sbatch gave
  (then as above, and the id is learnt), or says sbatch still runs, or that it never ran.
"""

from __future__ import annotations

import dataclasses

from ..models import GPUJob, JobStatus
from .base import Observation
from .folder_probe import FolderState
from .process import decide as decide_from_folder
from .slurm_parse import LIVE, SlurmJob, StateReport, final_status

PENDING_REASONS = {
    "": "waiting for the scheduler",
    "Priority": "jobs of higher priority are ahead",
    "Resources": "waiting for resources to free up",
    "Dependency": "waiting for a job it depends on",
    "BeginTime": "waiting for its begin time",
    "ReqNodeNotAvail": "a requested node is not available",
    "PartitionDown": "the partition is down",
    "PartitionConfig": "the partition cannot give what was asked (more nodes or GPUs than it has?)",
    "PartitionNodeLimit": "more nodes than the partition allows",
    "PartitionTimeLimit": "--time is longer than the partition allows",
    "QOSMaxGRESPerUser": "your QOS's GPU limit is reached: waiting for your other jobs",
    "AssocGrpGRES": "your account's GPU limit is reached",
    "JobHeldUser": "held by the user",
    "JobHeldAdmin": "held by an administrator",
}


def decide(job: GPUJob, report: StateReport, folder: FolderState) -> Observation:
    """The job's state from one state command's ``report`` and its folder."""
    if report.error:
        return Observation(job.status, f"{report.error} (state unknown this time)")
    if not job.scheduler_id:
        return _unconfirmed(job, report, folder)
    seen = report.jobs.get(job.scheduler_id or "")
    finished = _folder_finished(folder)
    if seen is None:
        if finished is not None:
            return finished if _own_ending(folder) else _signalled_unknown(finished, job)
        return Observation(
            JobStatus.LOST,
            f"Slurm no longer knows job {job.scheduler_id} and its folder has no exit code",
        )
    if seen.is_live and LIVE[seen.state] == JobStatus.QUEUED:
        return _queued(seen, report.positions.get(seen.job_id))
    if seen.is_live:
        if finished is not None and _own_ending(folder):
            return _with_nodes(finished, seen)
        return Observation(
            JobStatus.RUNNING,
            f"Slurm job {seen.job_id} {_running_word(seen)} on {seen.nodes or '?'}",
            started_at=folder.started or seen.start,
            nodes=seen.nodes or None,
        )
    return _final(seen, folder, finished)


def _unconfirmed(job: GPUJob, report: StateReport, folder: FolderState) -> Observation:
    """A submit whose answer was lost: the folder says whether sbatch ran and what it said."""
    if folder.submitted_id:
        learnt = job.model_copy(update={"scheduler_id": folder.submitted_id})
        seen = decide(learnt, report, folder)
        return dataclasses.replace(seen, scheduler_id=folder.submitted_id)
    if folder.submitted:
        return Observation(JobStatus.QUEUED, "submitted; waiting for sbatch's answer")
    return Observation(
        JobStatus.FAILED, "never submitted: the sbatch command did not reach the host"
    )


def _queued(seen: SlurmJob, position: tuple[int, int] | None) -> Observation:
    if seen.state == "PREEMPTED":
        why = "preempted; Slurm requeues it"
    elif seen.state != "PENDING":
        why = f"{seen.state.lower().replace('_', ' ')} by Slurm"
    else:
        why = PENDING_REASONS.get(seen.reason, seen.reason)
        why = f"{seen.reason}: {why}" if seen.reason else why
    where = ""
    if position is not None:
        where = f", {position[0]} of {position[1]} pending in {seen.partition or '?'}"
    return Observation(
        JobStatus.QUEUED,
        f"Slurm job {seen.job_id} pending ({why}{where})",
        queue_position=position,
        pending_reason=seen.reason or None,
    )


def _final(seen: SlurmJob, folder: FolderState, finished: Observation | None) -> Observation:
    if finished is not None and seen.state in ("COMPLETED", "FAILED"):
        return _with_nodes(finished, seen)
    status, reason = final_status(seen)
    if status == JobStatus.CANCELLED and folder.cancel_requested:
        reason = "cancelled by user"
    if finished is None and seen.state in ("COMPLETED", "FAILED"):
        reason = f"{reason or 'completed'}; run.sh wrote no exit code (see slurm.out)"
    exit_code = finished.exit_code if finished is not None else seen.exit_code
    # a job cancelled before run.sh started never ran (sacct gives it the cancel as Start)
    began = folder.started or (None if status == JobStatus.CANCELLED else seen.start)
    return Observation(
        status,
        reason,
        exit_code,
        began,
        folder.ended or seen.end,
        nodes=seen.nodes or None,
        scheduler_state=seen.state,
    )


def _folder_finished(folder: FolderState) -> Observation | None:
    """The process scheduler's verdict when run.sh wrote an exit code, else None."""
    if not folder.exists or not folder.exit_code.lstrip("-").isdigit():
        return None
    return decide_from_folder(folder)


def _signalled_unknown(finished: Observation, job: GPUJob) -> Observation:
    """A signal we did not send, and Slurm has forgotten why (purged, accounting off): say so
    rather than pass a bare exit code off as the whole story."""
    why = (
        f"exit code {finished.exit_code}: killed by a signal gpu_magic did not send; Slurm no "
        f"longer knows job {job.scheduler_id}, so not whether it was its time limit, a scancel "
        "or the OOM killer (see slurm.out)"
    )
    return Observation(
        finished.status, why, finished.exit_code, finished.started_at, finished.ended_at
    )


def _own_ending(folder: FolderState) -> bool:
    return int(folder.exit_code) < 128 or folder.cancel_requested or folder.timed_out


def _with_nodes(seen: Observation, job: SlurmJob) -> Observation:
    return Observation(
        seen.status, seen.reason, seen.exit_code, seen.started_at or job.start,
        seen.ended_at or job.end, nodes=job.nodes or None, scheduler_state=job.state,
    )  # fmt: skip


def _running_word(seen: SlurmJob) -> str:
    return "running" if seen.state == "RUNNING" else seen.state.lower().replace("_", " ")
