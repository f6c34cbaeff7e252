"""A submission's options as users write them, and how layers of them combine.

The same options come from ``%%gpu_submit`` flags, ``gpu-magic submit`` flags and template
tables (``templates``): ``FLAGS`` spells them once for both command lines, ``SubmitOptions``
holds one layer of them, ``over`` lays one layer on another (scalars replace; tables such as
``env`` and ``sbatch`` merge key by key; lists such as ``files`` add up in order, without
repeats) and ``request`` turns the result into a ``GPUJobRequest`` for a cell's code.
"""

from __future__ import annotations

import argparse
import shlex
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import holds
from .errors import InvalidRequestError
from .models import GitSource, GPUJobRequest, utcnow
from .resources import parse_sbatch_options

RESOURCE_OPTIONS = ("time", "mem", "cpus", "nodes", "gpu_type", "partition", "account", "qos",
                    "constraint")  # fmt: skip
CELL_OPTIONS = frozenset(
    {"name", "inputs", "outputs", "args", "bash", "after", "after_any", "at", "start_in"}
)
"""What belongs to one cell, not to a way of running cells: never saved into a template."""


class SubmitOptions(BaseModel):
    """A submission's options as users write them (flags, a template table); ``None``, an
    empty list or ``False``: not given (a lower layer's value stands)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: str | None = None
    gpus: int | None = Field(default=None, ge=0, le=64)
    timeout: float | None = Field(default=None, gt=0)
    time: str | None = None
    mem: str | None = None
    cpus: int | None = None
    nodes: int | None = None
    gpu_type: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    sbatch: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    follow_links: bool = False
    git: str | None = None
    python: str | None = None
    venv: str | None = None
    conda: str | None = None
    fetch: Literal["auto", "manual"] | None = None
    fetch_limit: str | int | None = None
    outputs_glob: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    notify: bool = False
    retries: int | None = Field(default=None, ge=0, le=20)
    retry_on: tuple[str, ...] = ()
    priority: int | None = Field(default=None, ge=-100, le=100)
    # one cell's own (flags only; ``CELL_OPTIONS``)
    name: str | None = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    bash: bool = False
    after: tuple[str, ...] = ()
    after_any: tuple[str, ...] = ()
    at: str | None = None
    start_in: str | None = None

    @classmethod
    def of_request(cls, request: GPUJobRequest) -> SubmitOptions:
        """The options that make ``request``, its defaults included (``gpus = 0``): ``beyond``
        then keeps what a template needs to say."""
        skip = {"code", "language", "resources", "git", "template", "after", "after_any",
                "start_at"}  # fmt: skip
        fields = request.model_dump(exclude=skip)
        fields.update(request.resources.model_dump(exclude_none=True))
        if request.git is not None:
            fields["git"] = request.git.url + (f"@{request.git.ref}" if request.git.ref else "")
        return cls(**fields, bash=request.language == "bash")

    def given(self) -> dict[str, Any]:
        """The options this layer sets."""
        return {k: v for k, v in self.model_dump().items() if not _unset(v)}

    def over(self, lower: SubmitOptions) -> SubmitOptions:
        """These options layered over ``lower`` (see the module docstring)."""
        merged = lower.given()
        for key, value in self.given().items():
            below = merged.get(key)
            if isinstance(value, dict) and below:
                value = {**below, **value}
            elif isinstance(value, tuple) and below:
                value = tuple(dict.fromkeys((*below, *value)))
            merged[key] = value
        return SubmitOptions(**merged)

    def beyond(self, lower: SubmitOptions) -> SubmitOptions:
        """What these options set that ``lower`` (or, where it is silent, a request's default)
        does not already give: what a template saved over ``lower`` needs to say."""
        below, own = lower.given(), {}
        for key, value in self.given().items():
            under = below.get(key, _request_default(key))
            if isinstance(value, dict) and under:
                value = {k: v for k, v in value.items() if under.get(k) != v}
            elif isinstance(value, tuple) and under:
                value = tuple(v for v in value if v not in under)
            if value != under:
                own[key] = value
        return SubmitOptions(**own)

    def request(
        self, code: str, template: str | None = None, now: datetime | None = None
    ) -> GPUJobRequest:
        """The job request these options make for ``code`` (``--in`` counts from ``now``)."""
        resources = {k: getattr(self, k) for k in RESOURCE_OPTIONS if getattr(self, k) is not None}
        fields = self.given()
        for key in (*RESOURCE_OPTIONS, "sbatch", "git", "bash", "after", "after_any", "at",
                    "start_in"):  # fmt: skip
            fields.pop(key, None)
        if self.after and self.after_any:
            raise InvalidRequestError("give --after or --after-any, not both")
        return GPUJobRequest.create(
            **fields,
            code=code,
            language="bash" if self.bash else "python",
            git=GitSource.parse(self.git) if self.git else None,
            resources={**resources, "sbatch": dict(self.sbatch)},
            template=template,
            after=self.after or self.after_any,
            after_any=bool(self.after_any),
            start_at=holds.start_time(self.at, self.start_in, now or utcnow()),
        )

    def to_template(self) -> dict[str, Any]:
        """The table ``%gpu_template save`` writes: what was given, less the cell's own."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in self.given().items()
            if k not in CELL_OPTIONS
        }


def _request_default(key: str) -> Any:
    field = GPUJobRequest.model_fields.get(key)
    if field is None or field.is_required():
        return None
    default = field.get_default(call_default_factory=True)
    return tuple(default) if isinstance(default, list) else default


def _unset(value: Any) -> bool:
    """Whether a layer leaves this option to the layers beneath (0 is a value: ``gpus = 0``)."""
    return value is None or value is False or value == () or value == {}


def _flag(name: str, help: str, **options: Any) -> tuple[str, dict[str, Any]]:
    return name, {"help": help, **options}


FLAGS = [
    _flag("--template", "start from this template's options", metavar="NAME"),
    _flag("--inputs", "kernel variables to send", default="", metavar="A,B"),
    _flag("--sweep", "run once per value: NAME=V1,V2 or NAME:=EXPR (repeat: a grid)",
          action="append", default=[], metavar="NAME=VALUES"),
    _flag("--sweep-mode", "combine --sweep values: every combination, or the i-th together",
          choices=["grid", "zip"], default="grid"),
    _flag("--outputs", "variables to bring back", default="", metavar="A,B"),
    _flag("--files", "files/folders to ship", nargs="+", default=[], metavar="PATH"),
    _flag("--follow-links", "ship what links in --files point to", action="store_true"),
    _flag("--git", "clone this repository into code/repo", metavar="URL[@REF]"),
    _flag("--env", "environment variable", action="append", default=[], metavar="K=V"),
    _flag("--secret-env", "pass this process's $NAME to the job, written to no file",
          action="append", default=[], metavar="NAME"),
    _flag("--args", "arguments for the cell (sys.argv/$@)", default="", metavar="'A B'"),
    _flag("--bash", "the cell is a bash script", action="store_true"),
    _flag("--python", "interpreter on the host", metavar="PATH"),
    _flag("--venv", "virtualenv on the host", metavar="DIR"),
    _flag("--conda", "conda environment on the host", metavar="NAME"),
    _flag("--name", "a name to find the job by"),
    _flag("--cluster", "cluster name (see %%gpu_cluster list)"),
    _flag("--gpus", "number of GPUs (0)", type=int, metavar="N"),
    _flag("--timeout", "stop the job after this long", type=float, metavar="SECONDS"),
    _flag("--time", "Slurm: time limit", metavar="D-HH:MM:SS"),
    _flag("--mem", "Slurm: memory per node, e.g. 32G", metavar="SIZE"),
    _flag("--cpus", "Slurm: CPUs per task", type=int, metavar="N"),
    _flag("--nodes", "Slurm: nodes (the cell runs under srun)", type=int, metavar="N"),
    _flag("--gpu-type", "Slurm: GPU type, e.g. h100", metavar="TYPE"),
    _flag("--partition", "Slurm: partition"),
    _flag("--account", "Slurm: account"),
    _flag("--qos", "Slurm: quality of service"),
    _flag("--constraint", "Slurm: node features, e.g. 'h100&ib'"),
    _flag("--sbatch", "Slurm: option", action="append", default=[], metavar="KEY[=V]"),
    _flag("--after", "start once these jobs completed", default="", metavar="JOB,.."),
    _flag("--after-any", "start once these jobs ended, however", default="", metavar="JOB,.."),
    _flag("--at", "start at this local time", metavar="'YYYY-MM-DD HH:MM'"),
    _flag("--in", "start after this delay, e.g. 2h, 1h30m", dest="start_in", metavar="DELAY"),
    _flag("--priority", "among waiting jobs, higher first (0)", type=int, metavar="N"),
    _flag("--notify", "post to the webhook when the job ends", action="store_true"),
    _flag("--retries", "run again up to N times (0)", type=int, metavar="N"),
    _flag("--retry-on", "failure kinds to retry", default="", metavar="KIND,.."),
    _flag("--fetch", "collect when it ends (auto)", choices=["auto", "manual"]),
    _flag("--fetch-limit", "bigger files only when asked, e.g. 500MB", metavar="SIZE"),
    _flag("--outputs-glob", "outputs/ files", action="append", default=[], metavar="GLOB"),
    _flag("--exclude", "skip these files", action="append", default=[], metavar="GLOB"),
]  # fmt: skip
"""The submission flags of ``%%gpu_submit`` and ``gpu-magic submit``, argparse's way. A flag
left out is ``None``, empty or ``False``: the template's value, or the default, stands."""


def add_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """``FLAGS`` on ``parser``; their actions by destination (a completer may be set on one)."""
    return {action.dest: action for action in (parser.add_argument(n, **o) for n, o in FLAGS)}


def from_flags(opts: argparse.Namespace) -> SubmitOptions:
    """The options a parsed command line gives (``FLAGS``)."""
    given = {
        name: getattr(opts, name) for name in SubmitOptions.model_fields if hasattr(opts, name)
    }
    given.update(
        inputs=split_names(opts.inputs),
        outputs=split_names(opts.outputs),
        env=parse_env(opts.env),
        secret_env=tuple(n for names in opts.secret_env for n in split_names(names)),
        args=split_args(opts.args),
        retry_on=split_names(opts.retry_on),
        after=split_names(opts.after),
        after_any=split_names(opts.after_any),
        sbatch=parse_sbatch_options(opts.sbatch),
    )
    return SubmitOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})


def split_names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.replace(" ", ",").split(",") if n.strip())


def split_args(text: str) -> tuple[str, ...]:
    """``--args`` as the words a shell would make of them."""
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise InvalidRequestError(f"--args {text!r}: {exc}") from None


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequestError(f"--env expects KEY=VALUE, got {pair!r}")
        env[key] = value
    return env
