"""What a job asks a batch scheduler for (``Resources``) and a cluster's Slurm defaults.

Every value here may end up in an ``#SBATCH --key=value`` line, and sbatch reads those lines up
to the first command. A value with a space, quote, ``#`` or newline could end the line early or
start a new one, so each field has a pattern that admits only what Slurm itself accepts for it,
and extra options must be on an allow-list (built in, plus what the cluster's config adds).
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

TIME = re.compile(
    r"^(\d{1,3}-)?\d{1,6}(:\d{1,2}){0,2}\Z|^(UNLIMITED|INFINITE|unlimited|infinite)\Z"
)
MEMORY = re.compile(r"^\d{1,9}[KMGT]?\Z")
NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,64}\Z")
NAMES = re.compile(r"^[A-Za-z0-9_.+-]{1,64}(,[A-Za-z0-9_.+-]{1,64}){0,15}\Z")
CONSTRAINT = re.compile(r"^[A-Za-z0-9_.,&|*:\[\]()-]{1,200}\Z")
OPTION = re.compile(r"^[a-z][a-z0-9-]{0,40}\Z")
OPTION_VALUE = re.compile(r"^[A-Za-z0-9_.,:=@+/%\[\]-]{0,200}\Z")

SBATCH_ALLOWED = frozenset(
    {
        "begin", "comment", "cpus-per-gpu", "dependency", "distribution", "exclude", "exclusive",
        "gpu-bind", "gpus-per-task", "hint", "licenses", "mail-type", "mail-user",
        "mem-per-cpu", "mem-per-gpu", "nice", "nodelist", "no-requeue", "ntasks",
        "ntasks-per-node", "requeue", "reservation", "signal", "switches", "threads-per-core",
        "tmp", "wckey",
    }
)  # fmt: skip
"""Extra ``#SBATCH`` options a request may set (``--sbatch KEY=VALUE``) on any Slurm cluster."""

SBATCH_RESERVED = frozenset(
    {
        "array", "batch", "chdir", "error", "export", "export-file", "gid", "input", "job-name",
        "open-mode", "output", "parsable", "test-only", "uid", "wait", "wrap",
    }
)  # fmt: skip
"""Options gpu_magic sets itself or that would change how it tracks the job: never allowed."""


FIELD_PATTERNS: dict[str, tuple[re.Pattern, str]] = {
    "time": (TIME, "--time (minutes, MM:SS, HH:MM:SS or D-HH:MM:SS)"),
    "mem": (MEMORY, "--mem (a number with an optional K/M/G/T suffix)"),
    "partition": (NAMES, "partition"),
    "account": (NAME, "name"),
    "qos": (NAME, "name"),
    "gpu_type": (NAME, "name"),
    "constraint": (CONSTRAINT, "--constraint"),
}
"""Every free-text field of ``Resources`` and the pattern that keeps it inside its #SBATCH line."""


def _check(pattern: re.Pattern, what: str, value):
    if value is not None and not pattern.fullmatch(str(value)):
        raise ValueError(f"invalid {what} {value!r}")
    return value


def check_option(key: str, value: str) -> None:
    if not OPTION.fullmatch(key) or key in SBATCH_RESERVED:
        raise ValueError(f"#SBATCH option {key!r} cannot be set")
    _check(OPTION_VALUE, f"value for --{key} (no spaces, quotes or '#')", value)


class Resources(BaseModel):
    """A request's batch resources; ``None`` means the cluster default, or Slurm's.

    ``gpus`` stays on the request (it also means something to the process scheduler); on Slurm
    it is GPUs per node, of ``gpu_type`` when given.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    time: str | None = None
    mem: str | None = None
    cpus: int | None = Field(default=None, ge=1, le=4096)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int | None = Field(default=None, ge=1, le=1024)
    gpu_type: str | None = None
    sbatch: dict[str, str] = Field(default_factory=dict)

    @field_validator(*FIELD_PATTERNS)
    @classmethod
    def _pattern(cls, v, info: ValidationInfo):
        return _check(*FIELD_PATTERNS[info.field_name], v)

    @field_validator("sbatch")
    @classmethod
    def _sbatch(cls, options: dict[str, str]) -> dict[str, str]:
        for key, value in options.items():
            check_option(key, value)
        return options

    @property
    def is_empty(self) -> bool:
        return self == Resources()


class SlurmDefaults(Resources):
    """A cluster's ``[clusters.NAME.slurm]`` table: defaults for every request, and how to ask.

    ``gres_style``: ``gres`` renders ``--gres=gpu[:type]:N`` (works everywhere), ``gpus`` renders
    ``--gpus-per-node=[type:]N``. ``allowed_sbatch`` adds options to ``SBATCH_ALLOWED``.
    ``accounting``: whether ``sacct`` works there; None finds out on the first poll.
    """

    gres_style: Literal["gres", "gpus"] = "gres"
    allowed_sbatch: tuple[str, ...] = ()
    accounting: bool | None = None
    warn_before_limit: int | None = Field(default=120, ge=1)
    """Seconds before a job's time limit (at most half the limit) that Slurm warns run.sh
    (``--signal=B:USR2@N``; not USR1, which NCCL uses): the cell gets SIGTERM then, saves a
    checkpoint and the job ends as ``timeout`` on its own terms. None: no warning (Slurm's own
    TERM at the limit)."""

    @field_validator("allowed_sbatch")
    @classmethod
    def _allowed(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            check_option(key, "")
        return keys

    def allows(self, key: str) -> bool:
        return key in SBATCH_ALLOWED or key in self.allowed_sbatch


def time_limit_seconds(time: str) -> int | None:
    """Slurm's ``--time`` in seconds (None for no limit): "M", "M:S", "H:M:S", "D-H",
    "D-H:M" or "D-H:M:S", as sbatch reads them."""
    if time.lower() in ("unlimited", "infinite"):
        return None
    days, _, clock = time.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    if days:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = [*parts, 0, 0][:3]
        return ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    hours, minutes, seconds = {1: [0, *parts, 0], 2: [0, *parts], 3: parts}[len(parts)]
    return (hours * 60 + minutes) * 60 + seconds


def effective(request: Resources, defaults: SlurmDefaults, timeout: float | None) -> Resources:
    """The request's resources with the cluster's defaults filled in.

    Without a ``time``, a ``--timeout`` (seconds, enforced by run.sh) becomes a Slurm limit one
    minute longer, rounded up to whole minutes, so Slurm can plan for it and run.sh still stops
    the cell first and records ``timeout`` itself.
    """
    fields = {k: getattr(request, k) for k in Resources.model_fields if k != "sbatch"}
    for key, value in fields.items():
        if value is None:
            fields[key] = getattr(defaults, key)
    if request.time is None and timeout is not None:
        fields["time"] = str(math.ceil(timeout / 60) + 1)
    sbatch = {**defaults.sbatch, **request.sbatch}
    refused = sorted(k for k in sbatch if not defaults.allows(k))
    if refused:
        raise ValueError(
            f"#SBATCH option(s) {', '.join(refused)} are not allowed on this cluster; "
            "its config can add them to slurm.allowed_sbatch"
        )
    return Resources(**fields, sbatch=sbatch)


def parse_sbatch_options(pairs: list[str]) -> dict[str, str]:
    """``["exclusive", "mail-type=END"]`` → ``{"exclusive": "", "mail-type": "END"}``."""
    options = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        options[key.strip().lstrip("-")] = value
    return options
