"""Turn a request into an uploaded, launched job: package → manifest → upload → launch."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import tenacity

from .clusters import ClusterConfig
from .errors import (
    ClusterConnectionError,
    GPUMagicError,
    HostUnreachableError,
    InvalidRequestError,
    transient,
)
from .jobdir import JobDir, new_job_id
from .models import GPUJob, GPUJobRequest, JobStatus, SweepMember, utcnow
from .packaging.bundle import Bundle, build_bundle
from .packaging.files import collect_files
from .packaging.inputs import pickle_inputs
from .packaging.names import warning
from .packaging.runscript import render_run_script
from .schedulers import secret_env
from .schedulers.base import Observation, Submitted
from .schedulers.slurm import request_resources
from .schedulers.slurm_script import run_script_options
from .transport.base import Transport

if TYPE_CHECKING:
    from .hosts import Host
    from .packaging.remote_cache import Plan
    from .results.progress import TransferProgress

log = logging.getLogger(__name__)
LAUNCH_ATTEMPTS = 4


def package(
    request: GPUJobRequest,
    namespace: Mapping[str, Any],
    cluster: ClusterConfig,
    cwd: Path | None = None,
) -> Bundle:
    """Everything that can fail on bad input fails here, before anything is sent."""
    secret_env.values(request.secret_env)  # each one set here, or one line naming the absent
    job_id = new_job_id()
    options = _run_script_options(request, cluster)
    pickled = pickle_inputs(request.inputs, namespace)
    files = collect_files(request.files, cwd, follow_links=request.follow_links)
    script = render_run_script(job_id, request, cluster.interpreter, **options)
    return build_bundle(job_id, request, pickled, files, script)


def _run_script_options(request: GPUJobRequest, cluster: ClusterConfig) -> dict:
    """How run.sh differs on this cluster's scheduler; Slurm resources elsewhere are a mistake."""
    if cluster.scheduler == "slurm":
        return run_script_options(request, request_resources(request, cluster.slurm))
    if not request.resources.is_empty:
        raise InvalidRequestError(
            f"--time/--mem/--partition/... need a Slurm cluster; {cluster.name!r} runs jobs "
            f"with the {cluster.scheduler!r} scheduler"
        )
    return {}


def new_job(
    bundle: Bundle,
    request: GPUJobRequest,
    cluster: ClusterConfig,
    base: str,
    sweep: SweepMember | None = None,
) -> GPUJob:
    folder = JobDir.under(base, bundle.job_id)
    return GPUJob(
        id=bundle.job_id,
        request=request,
        cluster=cluster.name,
        remote_dir=str(folder),
        status=JobStatus.PENDING,
        sweep=sweep,
    )


def announce(
    bundle: Bundle,
    request: GPUJobRequest,
    cluster: ClusterConfig,
    namesake: GPUJob | None,
    say: Callable[[str], None] | None,
    cached: int = 0,
) -> None:
    """The line shown before upload, and what the user should know about the request: an
    ``--outputs`` name the cell never assigns, a ``--name`` that another job already has."""
    if say is None:
        return
    say(bundle.manifest_line(cluster.name, cached))
    if request.language == "python" and (
        typo := warning(request.code, request.outputs, request.inputs)
    ):
        say(typo)
    if namesake is not None:
        say(
            f"gpu_magic: note: job {namesake.id} ({namesake.status}) is also named "
            f"{request.name!r}; the name now means this newer job (its id still finds the other)"
        )


class Upload:
    """A submission's upload as its ``TransferProgress`` (if any) sees it: what will be sent
    (the bundle less what the host's cache holds), each chunk, the end."""

    def __init__(self, bundle: Bundle, plan: Plan, progress: TransferProgress | None):
        self.progress = progress
        if progress is not None:
            sent = plan.to_send(bundle)
            progress.begin(sum(e.size for e in sent), len(sent))

    @property
    def advance(self) -> Callable[[int], None] | None:
        """What ``upload_bundle`` reports each chunk to (None: no one is listening)."""
        return None if self.progress is None else self.progress.advance

    def end(self, failure: BaseException | None = None) -> None:
        if self.progress is not None:
            self.progress.end(None if failure is None else str(failure))


SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH", re.IGNORECASE)


def secrets(request: GPUJobRequest) -> list[str]:
    """The request's values the audit log must never show: the ``--secret-env`` values and
    ``--env`` values whose names look like secrets (``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``)."""
    named = [value for name, value in request.env.items() if SECRET_NAME.search(name)]
    return [*named, *secret_env.values(request.secret_env).values()]


def can_launch(job: GPUJob) -> bool:
    """Whether this process can launch ``job``: it holds every ``--secret-env`` value."""
    return not secret_env.missing(job.request.secret_env)


def summary(bundle: Bundle, request: GPUJobRequest, sweep: SweepMember | None = None) -> dict:
    """What the audit log keeps of a submission: what was asked for and what was shipped, by
    name, size and hash; never a value (``--env`` values, ``--args``, the variables, a
    sweep's parameters: only their names)."""
    place = {} if sweep is None else {"sweep": sweep.sweep_id, "sweep_index": sweep.index}
    return {
        **place,
        "name": request.name,
        "language": request.language,
        "code_sha256": hashlib.sha256(request.code.encode()).hexdigest(),
        "gpus": request.gpus,
        "inputs": bundle.input_sizes,
        "outputs": list(request.outputs),
        "files": {f.rel: f.size for f in bundle.shipped_files},
        "env_names": sorted(request.env),
        "secret_env_names": list(request.secret_env),
        "args": len(request.args),
        "bytes": bundle.total_bytes,
    }


def remote_base(transport: Transport, cluster: ClusterConfig) -> str:
    """The cluster's job folder base on the host; connecting here fails before any record
    (a connection dropped meanwhile is tried again: nothing has been sent yet)."""

    def ask() -> str:
        transport.connect()
        return transport.expand_path(cluster.base_path)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_cut_off),
        stop=tenacity.stop_after_attempt(LAUNCH_ATTEMPTS),
        wait=tenacity.wait_random_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    return retrying(ask)


def _cut_off(exc: BaseException) -> bool:
    """A connection that was up and dropped; not a host that does not answer at all (the
    connect already dialled it until its timeout: the user hears of it now)."""
    return dropped(exc) and not isinstance(exc, HostUnreachableError)


def mark(job: GPUJob, status: JobStatus, **changes) -> GPUJob:
    """A copy of ``job`` in a new state (records are immutable snapshots in the store)."""
    stamp = {}
    if status in (JobStatus.QUEUED, JobStatus.RUNNING) and job.submitted_at is None:
        stamp["submitted_at"] = utcnow()
    return job.model_copy(update={"status": status, **stamp, **changes})


def observe(job: GPUJob, seen: Observation) -> GPUJob:
    """``job`` updated with what a poll saw (the same object when nothing changed)."""
    changes = {"status": seen.status, "reason": seen.reason}
    for field in ("exit_code", "started_at", "ended_at", "scheduler_id"):
        if getattr(seen, field) is not None:
            changes[field] = getattr(seen, field)
    if all(getattr(job, k) == v for k, v in changes.items()):
        return job
    return job.model_copy(update=changes)


def start(
    host: Host, job: GPUJob, save: Callable[..., GPUJob], after: Sequence[str] = ()
) -> GPUJob:
    """Launch an uploaded job and ``save`` what came of it: launched; refused (``failed``: it
    never ran); or dropped, "it may or may not have run" (``queued`` until the next look at
    its folder says which: never ``failed`` by guess). A failed launch raises after saving.
    ``after``: the scheduler ids of jobs it waits for (a scheduler that ``holds``)."""
    try:
        launched = launch(host, job, JobDir(PurePosixPath(job.remote_dir)), after)
    except GPUMagicError as exc:
        save(*launch_failed(job, exc))
        raise
    job = mark(job, launched.status, scheduler_id=launched.scheduler_id)
    return save(job, reason=launched.reason or "launched")


def never_ran(job: GPUJob, exc: GPUMagicError) -> tuple[GPUJob, str]:
    return mark(job, JobStatus.FAILED, error=str(exc)), str(exc)


def launch_failed(job: GPUJob, exc: GPUMagicError) -> tuple[GPUJob, str]:
    """A refused launch never ran; one whose connection dropped may have."""
    if not dropped(exc):
        return never_ran(job, exc)
    unsure = f"launch unconfirmed, the connection dropped; the next look tells: {exc}"
    return mark(job, JobStatus.QUEUED, reason=unsure), unsure


def launch(host: Host, job: GPUJob, folder: JobDir, after: Sequence[str] = ()) -> Submitted:
    """Hand the uploaded folder to the host's scheduler (see ``_once``)."""
    secrets = secret_env.values(job.request.secret_env)
    host.audit.log.redact(secrets.values())
    return _once(host, f"job {job.id}", host.scheduler.submit, job, folder, secrets, after)


def start_array(
    host: Host,
    jobs: list[GPUJob],
    name: str,
    max_running: int,
    save: Callable[..., GPUJob],
    after: Sequence[str] = (),
) -> list[GPUJob]:
    """Launch uploaded jobs as one batch (a sweep as one Slurm job array, at most
    ``max_running`` at once) and ``save`` what came of each, as ``start`` does for one."""
    secrets = secret_env.values(jobs[0].request.secret_env)
    host.audit.log.redact(secrets.values())
    submit = host.scheduler.submit_array
    what = f"job array {name}"
    try:
        launched = _once(host, what, submit, name, jobs, max_running, secrets, after)
    except GPUMagicError as exc:
        for job in jobs:
            save(*launch_failed(job, exc))
        raise
    return [
        save(mark(job, it.status, scheduler_id=it.scheduler_id), reason=it.reason or "launched")
        for job, it in zip(jobs, launched, strict=True)
    ]


def _once(host: Host, what: str, submit: Callable, *args):
    """``submit(*args)``, a scheduler's launch. A connection that drops while it runs leaves
    "it may or may not have run": where the scheduler's launch is safe to repeat (it reports
    the first launch, never starts a second), it is repeated on a fresh connection until it
    answers; authentication and host-key failures never are."""
    if not host.scheduler.relaunch_safe:
        return submit(*args)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(dropped),
        stop=tenacity.stop_after_attempt(LAUNCH_ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=0.2, max=5) + tenacity.wait_random(0, 0.2),
        before_sleep=lambda state: log.info(
            "gpu_magic: launching %s again: %s", what, state.outcome.exception()
        ),
        reraise=True,
    )
    return retrying(submit, *args)


def dropped(exc: BaseException) -> bool:
    """A lost connection, not a refused one (a key or host key never gets better)."""
    return isinstance(exc, ClusterConnectionError) and transient(exc)
