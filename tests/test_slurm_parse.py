"""squeue/sacct/scontrol parsers and the Slurm → gpu_magic state mapping, on output captured from
a real Slurm 22.05 (``tests/fixtures/slurm/capture.py``); the few states one machine cannot
produce (OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, REQUEUED) use lines written in the same format."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_magic import GPUJobRequest, JobStatus
from gpu_magic.models import GPUJob
from gpu_magic.schedulers.folder_probe import FolderState
from gpu_magic.schedulers.slurm_parse import (
    StateReport,
    parse_sacct,
    parse_scontrol,
    parse_squeue,
    parse_state_output,
    queue_positions,
)
from gpu_magic.schedulers.slurm_state import decide

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "slurm"
EMPTY = FolderState(exists=True)


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text()


def ids(tag: str) -> dict[str, str]:
    return dict(line.split("=") for line in fixture(f"{tag}_ids").split())


def job(slurm_id: str, status=JobStatus.QUEUED) -> GPUJob:
    request = GPUJobRequest(code="")
    return GPUJob(id="j", request=request, cluster="c", remote_dir="/x", scheduler_id=slurm_id,
                  status=status)  # fmt: skip


def folder(code: str, *flags: str) -> FolderState:
    return FolderState(True, "7", False, "2026-11-26T12:31:04Z", "2026-11-26T12:31:09Z", code,
                       frozenset(flags))  # fmt: skip


def test_squeue_lines():
    jobs = parse_squeue(fixture("acct_squeue"))
    n = ids("acct")
    assert jobs[n["hold_gpus"]].state == "RUNNING" and jobs[n["hold_gpus"]].nodes == "localhost"
    assert jobs[n["pending_resources"]].reason == "Resources"
    assert jobs[n["timeout"]].state == "TIMEOUT"
    assert {f"{n['array']}_{k}" for k in range(3)} <= set(jobs)  # -r: one line per task
    assert jobs[n["completed"]].reason == ""  # "None" means none


def test_pending_positions_follow_priority_order():
    positions = queue_positions(fixture("acct_pending"))
    n = ids("acct")
    assert positions[n["pending_resources"]] == (1, 5)
    assert positions[n["pending_priority"]] == (5, 5)  # --nice=100 puts it last


def test_sacct_lines():
    jobs = parse_sacct(fixture("acct_sacct"))
    n = ids("acct")
    assert (jobs[n["failed"]].state, jobs[n["failed"]].exit_code) == ("FAILED", 3)
    assert (jobs[n["signal"]].exit_code, jobs[n["signal"]].signal) == (0, 9)
    assert jobs[n["cancel_running"]].state == "CANCELLED"  # "CANCELLED by 0"
    pending_cancel = jobs[n["cancel_pending"]]
    assert (pending_cancel.nodes, pending_cancel.start) == ("", None)  # "None assigned", "None"
    assert jobs[n["timeout"]].end is not None


def test_scontrol_lines():
    jobs = parse_scontrol(fixture("noacct_scontrol"))
    n = ids("noacct")
    assert (jobs[n["timeout"]].state, jobs[n["timeout"]].signal) == ("TIMEOUT", 15)
    assert jobs[n["failed"]].exit_code == 3
    assert jobs[n["hold_gpus"]].nodes == "localhost"  # not ReqNodeList/ExcNodeList


@pytest.mark.parametrize("tag", ["acct", "noacct"])
def test_whole_state_output(tag):
    report = parse_state_output(fixture(f"{tag}_state"))
    assert report.error is None
    assert report.accounting is (tag == "acct")
    n = ids(tag)
    assert report.jobs[n["failed"]].source == ("sacct" if tag == "acct" else "scontrol")
    assert report.jobs[n["hold_gpus"]].source == "squeue"


EXPECTED = {
    "timeout": (JobStatus.TIMEOUT, "Slurm time limit"),
    "completed": (JobStatus.COMPLETED, "run.sh wrote no exit code"),
    "failed": (JobStatus.FAILED, "exit code 3"),
    "signal": (JobStatus.FAILED, "signal 9"),
    "cancel_running": (JobStatus.CANCELLED, "cancelled in Slurm"),
    "cancel_pending": (JobStatus.CANCELLED, "cancelled in Slurm"),
    "hold_gpus": (JobStatus.RUNNING, "running on localhost"),
    "pending_resources": (JobStatus.QUEUED, "Resources: waiting for resources"),
    "pending_priority": (JobStatus.QUEUED, "5 of 5 pending in debug"),
}


@pytest.mark.parametrize("tag", ["acct", "noacct"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_slurm_states_map_to_ours(tag, name):
    """Folders without an exit code: Slurm's word alone (run.sh never ran in these jobs)."""
    report = parse_state_output(fixture(f"{tag}_state"))
    seen = decide(job(ids(tag)[name]), report, EMPTY)
    status, reason = EXPECTED[name]
    assert seen.status == status
    assert reason in seen.reason


def test_queued_job_carries_position_and_reason_for_the_panel():
    report = parse_state_output(fixture("acct_state"))
    seen = decide(job(ids("acct")["pending_resources"]), report, EMPTY)
    assert (seen.queue_position, seen.pending_reason) == ((1, 5), "Resources")
    running = decide(job(ids("acct")["hold_gpus"]), report, EMPTY)
    assert running.nodes == "localhost" and running.reason.startswith("Slurm job 7 running")


def test_folder_refines_completed_and_failed():
    report = parse_state_output(fixture("acct_state"))
    n = ids("acct")
    assert decide(job(n["completed"]), report, folder("0")).reason is None
    timed_out = decide(job(n["failed"]), report, folder("143", "timed_out"))
    assert timed_out.status == JobStatus.TIMEOUT  # run.sh's --timeout, not Slurm's --time
    cancelled = decide(job(n["cancel_running"]), report, folder("143", "cancel_requested"))
    assert (cancelled.status, cancelled.reason) == (JobStatus.CANCELLED, "cancelled by user")


def test_running_job_ends_when_run_sh_wrote_its_own_exit_code():
    report = parse_state_output(fixture("acct_state"))
    running = job(ids("acct")["hold_gpus"], JobStatus.RUNNING)
    assert decide(running, report, folder("0")).status == JobStatus.COMPLETED
    assert decide(running, report, folder("3")).status == JobStatus.FAILED
    # 143 without our own flags: a TERM we did not send (Slurm's time limit?) - wait for Slurm
    assert decide(running, report, folder("143")).status == JobStatus.RUNNING


def test_job_slurm_forgot_falls_back_to_the_folder():
    report = StateReport()  # squeue answered, without this job (purged after MinJobAge)
    assert decide(job("99"), report, folder("0")).status == JobStatus.COMPLETED
    assert decide(job("99"), report, folder("2")).exit_code == 2
    lost = decide(job("99"), report, EMPTY)
    assert lost.status == JobStatus.LOST and "no longer knows job 99" in lost.reason


def test_signal_on_a_job_slurm_forgot_says_its_reason_is_unknown():
    report = StateReport()  # purged: Slurm's TIMEOUT or OUT_OF_MEMORY verdict is gone
    seen = decide(job("99"), report, folder("143"))
    assert seen.status == JobStatus.FAILED and seen.exit_code == 143
    assert "signal gpu_magic did not send" in seen.reason and "time limit" in seen.reason
    assert decide(job("99"), report, folder("3")).reason == "exit code 3"  # the cell's own code


def test_squeue_failure_keeps_the_state():
    report = parse_state_output(fixture("state_slurmctld_down"))
    assert "Unable to contact slurm controller" in report.error
    seen = decide(job("1", JobStatus.RUNNING), report, EMPTY)
    assert seen.status == JobStatus.RUNNING and "squeue failed" in seen.reason


CONSTRUCTED = """@@gm squeue
11|PREEMPTED|None|localhost|debug|2026-11-26T13:31:04
12|PENDING|BeginTime||debug|2026-11-26T13:33:04
@@gm rc 0
@@gm sacct
13|OUT_OF_MEMORY|0:125|None|localhost|debug|2026-11-26T13:31:04|2026-11-26T13:31:09
14|NODE_FAIL|0:0|None|localhost|debug|2026-11-26T13:31:04|2026-11-26T13:31:09
15|PREEMPTED|0:15|None|localhost|debug|2026-11-26T13:31:04|2026-11-26T13:31:09
16|REQUEUED|0:0|None|localhost|debug|2026-11-26T13:31:04|2026-11-26T13:31:09
@@gm rc 0
"""


@pytest.mark.parametrize(
    ("slurm_id", "status", "reason"),
    [
        ("11", JobStatus.QUEUED, "preempted; Slurm requeues it"),
        ("12", JobStatus.QUEUED, "BeginTime"),
        ("13", JobStatus.FAILED, "out of memory"),
        ("14", JobStatus.FAILED, "node failed"),
        ("15", JobStatus.FAILED, "preempted and not requeued"),
        ("16", JobStatus.LOST, "no longer knows"),  # sacct still working on it: not final
    ],
)
def test_states_one_machine_cannot_make(slurm_id, status, reason):
    seen = decide(job(slurm_id), parse_state_output(CONSTRUCTED), EMPTY)
    assert seen.status == status and reason in seen.reason


def test_oom_kill_code_waits_for_slurms_verdict():
    report = parse_state_output(CONSTRUCTED)
    seen = decide(job("13", JobStatus.RUNNING), report, folder("137"))
    assert (seen.status, seen.exit_code) == (JobStatus.FAILED, 137)
    assert "out of memory" in seen.reason
