"""The cleanup run: plan what the rules delete (per cluster, remote and local apart), then do it.

``plan`` only reads (the job store, the results store, one size command per host) and is what a
dry run shows. ``carry_out`` deletes exactly the planned folders, re-checking before each
remote one that the results are still here (unless forced), and records every deletion in the
job store. Rules come from the command line when given (they replace the configured ones),
else from each cluster's policy: ``[clusters.NAME.cleanup]`` over the ``GPU_MAGIC_CLEANUP_*``
settings. The local side also archives jobs older than ``archive_after_days``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ..clusters import CleanupConfig, CleanupRules, cleanup_defaults
from ..errors import GPUMagicError, InvalidRequestError
from ..jobstore import Deletion
from ..models import GPUJob, utcnow
from ..packaging.remote_cache import RemoteCache
from ..results import deletion, policy
from . import usage

if TYPE_CHECKING:  # pragma: no cover
    from ..results_service import ResultsService

REMOTE, LOCAL = "remote", "local"
DELETE, ARCHIVE, KEEP, REFUSE = "delete", "archive", "keep", "refuse"


def given_rules(opts) -> CleanupRules | None:
    """The rules ``--keep-last``, ``--older-than`` and ``--quota`` give (of ``%gpu_cleanup`` or
    ``gpu-magic cleanup``): they replace the configured ones; none given: None, the policy."""
    given = {"keep_last": opts.keep_last, "older_than_days": opts.older_than,
             "quota_gb": opts.quota}  # fmt: skip
    given = {k: v for k, v in given.items() if v is not None}
    if any(v < 0 for v in given.values()):
        raise InvalidRequestError("--keep-last, --older-than and --quota take numbers >= 0")
    return CleanupRules(**given) if given else None


@dataclass(frozen=True)
class Request:
    """What to clean. ``rules=None``: each cluster's configured policy."""

    cluster: str | None = None
    sides: tuple[str, ...] = (REMOTE, LOCAL)
    rules: CleanupRules | None = None
    force: bool = False


@dataclass(frozen=True)
class Action:
    kind: str  # delete, archive, keep (not fetched) or refuse (path check failed)
    where: str  # remote or local
    job: GPUJob
    size: int
    rule: str
    path: str = ""
    forced: bool = False
    note: str = ""


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # sides skipped, failures
    done: list[Action] = field(default_factory=list)  # filled by carry_out
    bases: dict[str, str] = field(default_factory=dict)  # cluster -> expanded base path
    ruled: bool = False  # some rule applied somewhere
    evicted: dict[str, tuple[int, int]] = field(default_factory=dict)  # cluster -> files, bytes

    def of(self, kind: str) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]


def plan(service: ResultsService, request: Request, now: datetime | None = None) -> Plan:
    """What a cleanup would do now; reads only."""
    result, now = Plan(), now or utcnow()
    jobs = service.jobs.list(cluster=request.cluster)
    for name in sorted({j.cluster for j in jobs}):
        mine = [j for j in jobs if j.cluster == name]
        config = _policy(service, name, result)
        if REMOTE in request.sides:
            _plan_remote(service, result, name, mine, request.rules or config.remote, request, now)
        if LOCAL in request.sides:
            _plan_local(service, result, mine, request.rules or config.local, config, now)
    return result


def _policy(service: ResultsService, name: str, result: Plan) -> CleanupConfig:
    try:
        return service.hosts.clusters.cleanup_policy(name)
    except GPUMagicError as exc:  # the cluster was removed: its jobs' local results remain
        result.notes.append(f"cluster {name}: {exc}; using the default policy")
        return cleanup_defaults(service.settings)


def _plan_remote(service, result: Plan, name: str, jobs, rules, request: Request, now) -> None:
    if rules.empty:
        return
    result.ruled = True
    try:
        cluster = service.hosts.clusters.get(name)
        result.bases[name] = service.hosts.get(name).transport.expand_path(cluster.base_path)
        sizes = usage.cluster_sizes(service, name, jobs)
    except GPUMagicError as exc:
        result.notes.append(f"remote folders of cluster {name} left alone: {exc}")
        return
    store = service.local
    items = [
        _item(j, sizes[j.id], fetched=store.fully_fetched(j.id))
        for j in jobs
        if sizes[j.id] is not None
    ]
    verdict = policy.decide(items, rules, now, guard=True, force=request.force)
    by_id = {j.id: j for j in jobs}
    for d in verdict.delete:
        result.actions.append(_remote_delete(result.bases[name], by_id[d.job_id], d))
    for d in verdict.unfetched:
        note = "results not fetched: kept (--force deletes it)"
        result.actions.append(Action(KEEP, REMOTE, by_id[d.job_id], d.size, d.rule, note=note))


def _remote_delete(base: str, job: GPUJob, d: policy.Decision) -> Action:
    try:
        folder = deletion.job_folder(base, job)
    except GPUMagicError as exc:
        return Action(REFUSE, REMOTE, job, d.size, d.rule, path=job.remote_dir, note=str(exc))
    return Action(DELETE, REMOTE, job, d.size, d.rule, path=folder, forced=d.forced)


def _plan_local(service, result: Plan, jobs, rules, config: CleanupConfig, now) -> None:
    store = service.local
    present = set(store.job_ids())
    here = [j for j in jobs if j.id in present]
    items = [_item(j, store.size(j.id)) for j in here]
    verdict = policy.decide(items, rules, now, guard=False)
    result.ruled = result.ruled or not rules.empty or config.archive_after_days is not None
    by_id = {j.id: j for j in here}
    for d in verdict.delete:
        path = str(store.folder(d.job_id))
        result.actions.append(Action(DELETE, LOCAL, by_id[d.job_id], d.size, d.rule, path=path))
    gone = {d.job_id for d in verdict.delete}
    candidates = [
        _item(j, store.size(j.id), fetched=service.collected_files(j.id) is not None)
        for j in here
        if j.id not in gone and store.archive_file(j.id) is None
    ]
    days = config.archive_after_days
    rule = f"archive-after {days:g} days" if days is not None else ""
    for job_id in policy.archive_due(candidates, days, now):
        size = store.size(job_id)
        result.actions.append(Action(ARCHIVE, LOCAL, by_id[job_id], size, rule))


def _item(job: GPUJob, size: int, *, fetched: bool = True) -> policy.Item:
    return policy.Item(
        job.id, job.created_at, job.ended_at, size, active=not job.is_terminal, fetched=fetched
    )


def carry_out(service: ResultsService, result: Plan) -> Plan:
    """Delete (and archive) what ``result`` planned; one failure does not stop the others. The
    folders of one host go in one command (and its cache is trimmed in one more)."""
    remote: dict[str, list[Action]] = {}
    for action in result.actions:
        if action.kind == DELETE and action.where == REMOTE:
            if action.forced or service.local.fully_fetched(action.job.id):
                remote.setdefault(action.job.cluster, []).append(action)
            else:
                result.notes.append(
                    f"remote {action.job.id} kept: its results are no longer all here"
                )
        elif action.kind in (DELETE, ARCHIVE):
            _attempt(service, result, [action], lambda a=action: _do_local(service, a))
    for cluster, actions in remote.items():
        _delete_remote(service, result, cluster, actions)
    for cluster in sorted({a.job.cluster for a in result.done if a.where == REMOTE}):
        _evict(service, result, cluster)
    return result


def _delete_remote(service: ResultsService, result: Plan, cluster: str, actions: list[Action]):
    transport, base = service.hosts.get(cluster).transport, result.bases[cluster]

    def delete(chosen: list[Action]) -> None:
        deletion.delete_folders(transport, base, [a.job for a in chosen])

    if not _attempt(service, result, actions, lambda: delete(actions), quiet=True):
        for action in actions:  # the one command failed: one each, to tell which cannot go
            _attempt(service, result, [action], lambda a=action: delete([a]))


def _attempt(service, result: Plan, actions: list[Action], work, *, quiet: bool = False) -> bool:
    """Do ``work`` for ``actions``; record them as done, or their failure (unless ``quiet``)."""
    try:
        work()
    except GPUMagicError as exc:
        for action in [] if quiet else actions:
            result.notes.append(f"{action.kind} {action.where} {action.job.id} failed: {exc}")
        return False
    for action in actions:
        if action.kind == DELETE:  # an archive records the loose files it removes itself
            service.jobs.record_deletion(_deletion(action))
        result.done.append(action)
    return True


def _evict(service: ResultsService, result: Plan, cluster: str) -> None:
    """After job folders went: the host's cached files that no job folder links to any more
    (a file a live job holds has another link, and stays)."""
    host = service.hosts.get(cluster)
    cache = RemoteCache.under(result.bases[cluster], host.config.interpreter)
    try:
        result.evicted[cluster] = cache.evict(host.transport)
    except GPUMagicError as exc:
        result.notes.append(f"the file cache of cluster {cluster} was not trimmed: {exc}")


def _do_local(service: ResultsService, action: Action) -> None:
    if action.kind == ARCHIVE:
        service.archive(action.job.id, rule=action.rule)
    else:
        service.remove_local(action.job.id)


def _deletion(action: Action) -> Deletion:
    job = action.job
    where, path, size, rule = action.where, action.path, action.size, action.rule
    return Deletion(job.id, job.cluster, where, path, size, rule, forced=action.forced)


def cleanup(service: ResultsService, request: Request, *, dry_run: bool = False) -> Plan:
    """Plan, and unless ``dry_run`` carry out, a cleanup."""
    planned = plan(service, request)
    return planned if dry_run else carry_out(service, planned)


def after_collect(service: ResultsService, cluster: str) -> Plan | None:
    """The cluster's configured cleanup, when its policy asks for one after each collection."""
    if not service.hosts.clusters.cleanup_policy(cluster).after_collect:
        return None
    return cleanup(service, Request(cluster=cluster))
