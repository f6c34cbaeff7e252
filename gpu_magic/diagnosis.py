"""Why a job did not complete, from what its host shows, classified (``failures.classify``).

Called once, when the tracker records a job's end (one cancelled on request excepted). One
round trip reads the end of the cell's log, the end of the Slurm step's own messages
(``slurm.out``: time limits, the OOM killer, node failures are said there, not in the cell's
output) and the free space of the file system the job folder is on (a full disk explains a
vanished job better than anything else). A host that cannot be asked right now still gets a
classification from the exit code, the scheduler's verdict and the cell's exception.
"""

from __future__ import annotations

from . import jobdir
from .errors import GPUMagicError, RemoteJobError
from .failures import DiskSpace, Evidence, Failure, classify
from .models import GPUJob, JobStatus
from .schedulers import Observation
from .transport.base import Transport, quote_argv

LOG_TAIL_BYTES = 64 * 1024
STEP_TAIL_BYTES = 16 * 1024
SECTION = "@@gm-diagnosis@@"
ASK_TIMEOUT_S = 30.0


def diagnose(
    transport: Transport,
    job: GPUJob,
    seen: Observation,
    remote: RemoteJobError | None = None,
) -> Failure | None:
    """The failure of an ended ``job`` (None for a completed one). A job cancelled on request
    is not asked about: its cancel outranks all the host could show (``failures`` rule 1), and
    100 jobs cancelled at once would cost 100 round trips."""
    asked = job.status != JobStatus.CANCELLED
    log_tail, disk = _ask(transport, job) if asked else ("", None)
    return classify(
        Evidence(
            status=job.status.value,
            exit_code=job.exit_code,
            reason=job.reason,
            scheduler_state=seen.scheduler_state,
            error_type=remote.exc_type if remote is not None else None,
            error_message=remote.remote_message if remote is not None else None,
            log_tail=log_tail,
            disk_free=disk,
        )
    )


def evidence_command(job: GPUJob) -> str:
    folder = quote_argv(job.remote_dir)
    return (
        f"cd {folder} 2>/dev/null || exit 0; "
        f"tail -c {STEP_TAIL_BYTES} {jobdir.SLURM_OUTPUT} 2>/dev/null; "
        f"printf '\\n{SECTION}\\n'; tail -c {LOG_TAIL_BYTES} {jobdir.OUTPUT_LOG} 2>/dev/null; "
        f"printf '\\n{SECTION}\\n'; df -Pk . 2>/dev/null | tail -n 1"
    )


def parse_evidence(text: str) -> tuple[str, DiskSpace | None]:
    """(the log tail: the step's messages, then the cell's log; the disk's free space)."""
    parts = text.split(f"\n{SECTION}\n")
    if len(parts) != 3:
        return "", None
    step, log, df = parts
    return (step.strip() + "\n" + log).lstrip("\n"), _disk(df.split())


def _ask(transport: Transport, job: GPUJob) -> tuple[str, DiskSpace | None]:
    try:
        result = transport.run(evidence_command(job), timeout=ASK_TIMEOUT_S)
    except GPUMagicError:  # classified from what the poll already knows
        return "", None
    return parse_evidence(result.text)


def _disk(words: list[str]) -> DiskSpace | None:
    """``df -Pk``'s line: filesystem, 1K-blocks, used, available, capacity, mounted on."""
    if len(words) < 6 or not (words[1].isdigit() and words[3].isdigit()):
        return None
    return DiskSpace(
        path=words[5], free_bytes=int(words[3]) * 1024, total_bytes=int(words[1]) * 1024
    )
