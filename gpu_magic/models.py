"""Pydantic models: what to run (GPUJobRequest), the persisted record (GPUJob) and its states."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidRequestError
from .resources import Resources

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: "$" would admit a final "\n"
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
GIT_URL = re.compile(r"^(https?://|ssh://|git://|file://|[\w.-]+@[\w.-]+:|/)[^\s]+\Z")
GIT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,199}\Z")


SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(I?)B?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}


def parse_size(text: str) -> int:
    """Bytes in ``"500MB"``, ``"1.5G"``, ``"2GiB"``, ``"4096"``: K/M/G/T are powers of 1000,
    KiB/MiB/GiB/TiB of 1024 (how disk and download sizes are usually shown)."""
    match = SIZE.match(text)
    if not match or (match[3] and not match[2]):
        raise ValueError(f"not a size: {text!r} (e.g. 500MB, 2GiB or a number of bytes)")
    base = 1024 if match[3] else 1000
    return int(float(match[1]) * base ** SIZE_UNITS[match[2].upper()])


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class JobStatus(str, Enum):
    PENDING = "pending"
    UPLOADING = "uploading"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    LOST = "lost"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    def __str__(self) -> str:
        return self.value


class FailureKind(str, Enum):
    """Why a job did not complete, as ``failures.classify`` names it (``GPUJob.failure``)."""

    CUDA_OOM = "cuda_oom"
    HOST_OOM = "host_oom"
    KILLED = "killed"
    NCCL = "nccl"
    IMPORT_ERROR = "import_error"
    SYNTAX_ERROR = "syntax_error"
    USER_EXCEPTION = "user_exception"
    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    NODE_FAILURE = "node_failure"
    DISK_FULL = "disk_full"
    CANCELLED = "cancelled"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMEOUT, JobStatus.LOST}
)


class GitSource(BaseModel):
    """A repository cloned into ``code/repo`` on the host before the cell runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    url: str
    ref: str | None = None

    @classmethod
    def parse(cls, spec: str) -> GitSource:
        """``URL[@ref]``; the ``@`` of ``git@host:`` is not a ref separator."""
        url, ref = spec, None
        head, sep, tail = spec.rpartition("@")
        if sep and head and "/" not in tail and ":" not in tail:
            url, ref = head, tail
        try:
            return cls(url=url, ref=ref)
        except ValidationError as exc:  # one line for the user, not pydantic's report
            raise InvalidRequestError(f"--git: {format_validation_error(exc)}") from None

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if not GIT_URL.match(url) or url.startswith("-"):
            raise ValueError(f"not a git URL: {url!r}")
        return url

    @field_validator("ref")
    @classmethod
    def _check_ref(cls, ref: str | None) -> str | None:
        if ref is not None and (not GIT_REF.match(ref) or ".." in ref):
            raise ValueError(f"not a git ref: {ref!r}")
        return ref


class GPUJobRequest(BaseModel):
    """Everything needed to run one cell; saved as the job folder's ``spec.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    language: Literal["python", "bash"] = "python"
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    git: GitSource | None = None
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: tuple[str, ...] = ()
    """Names of variables whose values the launch takes from this process's environment and
    passes to the job over its stdin: the values are written nowhere (names only here)."""
    args: tuple[str, ...] = ()
    gpus: int = Field(default=0, ge=0, le=64)
    name: str | None = None
    cluster: str | None = None
    timeout: float | None = Field(default=None, gt=0, description="run-time limit in seconds")
    python: str | None = None
    venv: str | None = None
    conda: str | None = None
    resources: Resources = Field(default_factory=Resources)
    """Batch-scheduler resources (Slurm: time, mem, cpus, partition, ...)."""
    fetch: Literal["auto", "manual"] = "auto"
    """auto: collect everything selected when the job ends; manual: only log, metrics and
    output variables, other files when asked for (``job.load``)."""
    fetch_limit: int | None = Field(default=None, ge=0)
    """With fetch auto, files bigger than this many bytes (``"500MB"``, ``"2GiB"`` accepted)
    are listed but downloaded only when asked for, like fetch manual's."""
    outputs_glob: tuple[str, ...] = ()
    """Which files under outputs/ to collect (all when empty); ``exclude`` removes some."""
    exclude: tuple[str, ...] = ()
    follow_links: bool = False
    """Ship what symbolic links in ``files`` folders point to, also outside them (default: a
    link inside its folder is shipped as a link, one out of it is refused)."""
    notify: bool = False
    """Post a message to the webhook (``gpu_magic_webhook_url``) when the job ends."""
    retries: int = Field(default=0, ge=0, le=20)
    """Run the job again (same id, same folder, checkpoints kept) this many times at most
    when it fails in one of the ``retry_on`` ways."""
    retry_on: tuple[str, ...] = ()
    """Failure kinds (``failures.FailureKind``) that are retried; empty: ``DEFAULT_RETRY_ON``."""
    template: str | None = None
    """The template (``templates``) the options started from, for the record: the request
    holds every option it gave, so a later change to the template changes no job."""
    after: tuple[str, ...] = ()
    """Ids of jobs that must end before this one starts: completed, or with ``after_any``
    ended whatever their outcome (``--after``, ``--after-any``)."""
    after_any: bool = False
    start_at: datetime | None = None
    """Not to start before this moment (``--at``, ``--in``)."""
    priority: int = Field(default=0, ge=-100, le=100)
    """Among the jobs waiting on one cluster, the higher starts first (then the older)."""

    @field_validator("inputs", "outputs")
    @classmethod
    def _identifiers(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not IDENTIFIER.match(name):
                raise ValueError(f"{name!r} is not a Python variable name")
        if len(set(names)) != len(names):
            raise ValueError("a variable is named twice")
        return names

    @field_validator("after")
    @classmethod
    def _job_ids(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        for job_id in ids:
            if not JOB_NAME.fullmatch(job_id):
                raise ValueError(f"{job_id!r} is not a job id")
        if len(set(ids)) != len(ids):
            raise ValueError("a job is named twice in --after")
        return ids

    @field_validator("start_at")
    @classmethod
    def _aware(cls, moment: datetime | None) -> datetime | None:
        """A moment without a time zone is the local time of this machine."""
        return moment.astimezone(timezone.utc) if moment is not None else None

    @field_validator("retry_on")
    @classmethod
    def _failure_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        known = {kind.value for kind in FailureKind}
        unknown = [kind for kind in kinds if kind not in known]
        if unknown:
            raise ValueError(
                f"unknown failure kind {unknown[0]!r}; known: {', '.join(sorted(known))}"
            )
        return kinds

    @field_validator("fetch_limit", mode="before")
    @classmethod
    def _size(cls, value):
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("outputs_glob", "exclude")
    @classmethod
    def _globs(cls, globs: tuple[str, ...]) -> tuple[str, ...]:
        for glob in globs:
            if not glob or "\0" in glob:
                raise ValueError(f"invalid glob {glob!r}")
        return globs

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not IDENTIFIER.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if "\0" in value:
                raise ValueError(f"the value of {key} contains a NUL byte")
        return env

    @field_validator("secret_env")
    @classmethod
    def _secret_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not IDENTIFIER.match(name) or name.startswith("GPU_MAGIC_"):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        if len(set(names)) != len(names):
            raise ValueError("a --secret-env variable is named twice")
        return names

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        if name is not None and not JOB_NAME.fullmatch(name):  # "$" admits a final "\n"
            raise ValueError(
                f"job name {name!r} must be 1-64 letters, digits, '_', '.' or '-' "
                "and start with a letter or digit"
            )
        return name

    @field_validator("python", "venv", "conda")
    @classmethod
    def _no_control_chars(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(ord(c) < 32 for c in value)):
            raise ValueError(f"invalid interpreter setting {value!r}")
        return value

    @model_validator(mode="after")
    def _one_interpreter(self) -> GPUJobRequest:
        chosen = [k for k in ("python", "venv", "conda") if getattr(self, k)]
        if len(chosen) > 1:
            raise ValueError(f"choose one of --python, --venv, --conda (got {', '.join(chosen)})")
        if self.language == "bash" and (self.inputs or self.outputs):
            raise ValueError("--inputs/--outputs need a Python cell (not --bash)")
        if both := sorted(set(self.secret_env) & set(self.env)):
            raise ValueError(f"{both[0]} is given by both --env and --secret-env")
        if self.after_any and not self.after:
            raise ValueError("after_any needs the jobs to wait for (after)")
        return self

    @classmethod
    def create(cls, **fields) -> GPUJobRequest:
        """Build a request, turning pydantic's validation errors into one clear message."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise InvalidRequestError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "request"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {msg}")
    return "invalid job request: " + "; ".join(lines)


class SweepMember(BaseModel):
    """A job's place in a sweep (``%%gpu_submit --sweep``): which sweep, which combination, and
    the values it was given, as shown (a JSON number, string, bool or null; another value's
    ``repr``): the members of one sweep share ``sweep_id``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sweep_id: str
    index: int = Field(ge=0)
    size: int = Field(ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None
    """The sweep's ``--name`` (its members are called ``NAME.0``, ``NAME.1``, ...)."""

    @property
    def label(self) -> str:
        """``lr=0.001, bs=32``: how a legend or a table names the member."""
        return ", ".join(f"{key}={value}" for key, value in self.params.items())


class GPUJob(BaseModel):
    """The persisted record of a submitted job (the local store caches the remote folder)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    request: GPUJobRequest
    cluster: str
    remote_dir: str
    status: JobStatus = JobStatus.PENDING
    reason: str | None = None
    scheduler_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    ready_at: datetime | None = None
    """Set while the job, uploaded, waits for a free slot (``max_concurrent_jobs``): the
    jobs of a cluster start in this order."""
    attempt: int = Field(default=1, ge=1)
    """Which run of the job this is: a retry keeps the id and the folder (``--retries``)."""
    failure: dict[str, Any] | None = None
    """Why it did not complete, classified (``failures.Failure.to_dict``: kind, explanation,
    fix, detail); None while it runs and when it completed."""
    sweep: SweepMember | None = None
    """Set on the members of a sweep."""
    held: bool = False
    """Uploaded and held (``pending``) until the jobs it depends on ended and its start time
    came (``request.after``, ``request.start_at``); then it joins the slot queue."""

    @property
    def name(self) -> str | None:
        return self.request.name

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def runtime_seconds(self, now: datetime | None = None) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at or now or utcnow()
        return max(0.0, (end - self.started_at).total_seconds())
