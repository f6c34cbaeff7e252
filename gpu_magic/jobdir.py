"""The job folder contract: the only module that knows the file names inside a job folder.

{base_path}/{job_id}/
  spec.json  code/  inputs/  lib/  run.sh  output.log  gpu.csv  metrics.jsonl
  job.sbatch  slurm.out   (Slurm clusters only)
  outputs/   state/{pid,started_at,ended_at,exit_code,error.json,cancel_requested,timed_out}
  checkpoints/
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath

SPEC = "spec.json"
CODE = "code"
INPUTS = "inputs"
LIB = "lib"
RUN_SCRIPT = "run.sh"
SBATCH_SCRIPT = "job.sbatch"  # Slurm only: the batch script that runs run.sh
SLURM_OUTPUT = "slurm.out"  # Slurm only: the batch step's own messages (cell output: output.log)
OUTPUT_LOG = "output.log"
GPU_CSV = "gpu.csv"
METRICS = "metrics.jsonl"
OUTPUTS = "outputs"
STATE = "state"
CHECKPOINTS = "checkpoints"
CHECKSUMS = ".sha256"
CACHE = ".cache/sha256"  # under the base path: the host's content-addressed file cache
PARTIAL_SUFFIX = ".partial"

PICKLE_SUFFIX = ".pkl"
PYTHON_MAIN = "main.py"
BASH_MAIN = "main.sh"

# files under state/
PID = "pid"
PID_START = "pid_start"  # "BOOT_ID START_TICKS" of run.sh: a reused pid after a reboot is not it
LAUNCHED = "launched"  # process scheduler: made (mkdir) by the one launch that starts run.sh
SUBMITTED = "submitted"  # Slurm: made (mkdir) by the one submit that runs sbatch
ARRAY_OUTPUTS = "array"  # Slurm: in a job array's folder 0, state/array/I.out -> task I's slurm.out
SLURM_ID = "slurm_id"  # Slurm: sbatch's answer, the job id (written by the detached sbatch)
SBATCH_STATUS = "sbatch_status"  # Slurm: sbatch's exit status, written after slurm_id
SBATCH_ERROR = "sbatch_error"  # Slurm: what sbatch said on stderr (why it refused)
STARTED_AT = "started_at"
ENDED_AT = "ended_at"
EXIT_CODE = "exit_code"
ERROR_JSON = "error.json"
CANCEL_REQUESTED = "cancel_requested"
TIMED_OUT = "timed_out"
LIMIT_WARNED = "limit_warned"  # Slurm warned run.sh of the time limit (USR2): it stopped the cell
GPU_TELEMETRY = "gpu_telemetry"  # "unavailable: why" / "stopped: why"; absent while sampling works
CELL_STATUS = ".cell_status"  # run.sh's private note of the cell's exit status
RESERVE = ".reserve"  # run.sh keeps this room so that a full disk cannot stop it writing the end

MARKER_VARIABLE = "GPU_MAGIC_JOB_DIR"
"""Every process of a job carries ``GPU_MAGIC_JOB_DIR=<the folder, symlinks resolved>`` in its
environment (run.sh exports it): so a child that left the job's process group (``setsid``,
``start_new_session=True``) is still found, stopped, and counted as the job running."""

GIT_CHECKOUT = f"{CODE}/repo"


SAFE_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
NEW_JOB_ID = re.compile(r"\b\d{8}-\d{6}-[0-9a-f]{6}\b")


def attempt_marker(marker: str, attempt: int) -> str:
    """The launch marker of one attempt: ``launched`` for the first, ``launched.2``, ... after
    (each made once, by the one launch that starts that attempt)."""
    return marker if attempt == 1 else f"{marker}.{attempt}"


def safe_id(job_id: str) -> bool:
    """A job id usable as one path component, in a shell word and a URL: no ``/``, no
    leading ``.``, nothing a shell or a path would read specially."""
    return bool(SAFE_JOB_ID.match(job_id))


def job_ids_in(text: str) -> list[str]:
    """The ids ``new_job_id`` makes that occur in ``text`` (a command line, a path)."""
    return NEW_JOB_ID.findall(text)


def new_job_id(now: datetime | None = None) -> str:
    """Sortable and readable: ``20261126-142501-3fa9c2``."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def shipped_path(rel: str) -> str:
    """Where a ``--files`` path lands in the job folder: under ``code/``, where the cell runs,
    except ``outputs/...`` and ``checkpoints/...``: ``code/outputs`` and ``code/checkpoints``
    are links to the job's own folders (a local checkpoint shipped to resume from is found at
    the same relative path, and where the job keeps its checkpoints)."""
    top = rel.split("/", 1)[0]
    return rel if top in (OUTPUTS, CHECKPOINTS) and "/" in rel else f"{CODE}/{rel}"


def main_file(language: str) -> str:
    return BASH_MAIN if language == "bash" else PYTHON_MAIN


@dataclass(frozen=True)
class JobDir:
    """Paths inside one job folder on the host (always POSIX)."""

    root: PurePosixPath

    @classmethod
    def under(cls, base: str, job_id: str) -> JobDir:
        return cls(PurePosixPath(base) / job_id)

    def __str__(self) -> str:
        return str(self.root)

    @property
    def partial(self) -> PurePosixPath:
        """Where an upload lands before the atomic rename to ``root``."""
        return self.root.with_name(self.root.name + PARTIAL_SUFFIX)

    def path(self, *parts: str) -> PurePosixPath:
        return self.root.joinpath(*parts)

    def state(self, name: str) -> PurePosixPath:
        return self.root / STATE / name

    def input_pickle(self, name: str) -> PurePosixPath:
        return self.root / INPUTS / f"{name}{PICKLE_SUFFIX}"

    def output_pickle(self, name: str) -> PurePosixPath:
        return self.root / OUTPUTS / f"{name}{PICKLE_SUFFIX}"

    @property
    def log(self) -> PurePosixPath:
        return self.root / OUTPUT_LOG

    @property
    def run_script(self) -> PurePosixPath:
        return self.root / RUN_SCRIPT
