"""Plain-text tables for ``%gpu_storage`` and ``%gpu_cleanup`` (terminal, nbconvert, notebook)."""

from __future__ import annotations

from collections.abc import Sequence

from ..formatting import clock, size, table
from ..jobstore import Deletion
from .cleanup import ARCHIVE, DELETE, KEEP, REFUSE, Plan
from .usage import JobUsage, Usage


def usage_table(usage: Usage, exact: bool = False) -> str:
    if not usage.jobs:
        return "No jobs yet. Submit one with %%gpu_submit."
    rows = [_usage_row(u, exact) for u in usage.jobs]
    for cluster in sorted({u.job.cluster for u in usage.jobs}):
        rows.append(_total_row(usage, cluster, exact))
    rows.append(_total_row(usage, None, exact))
    headers = ("job", "cluster", "status", "remote", "local", "archived", "fetched")
    lines = [table(headers, rows)]
    lines += [f"{name}: unreachable ({why})" for name, why in sorted(usage.errors.items())]
    return "\n".join(lines)


def _usage_row(u: JobUsage, exact: bool) -> Sequence[str]:
    remote = u.remote_note or size(u.remote, exact)
    archived = "yes" if u.archived else "no"
    fetched = "yes" if u.fetched else "no"
    return (u.job.id, u.job.cluster, u.job.status.value, remote, size(u.local, exact), archived,
            fetched)  # fmt: skip


def _total_row(usage: Usage, cluster: str | None, exact: bool) -> Sequence[str]:
    label = f"total {cluster}" if cluster else "total"
    remote = size(usage.total("remote", cluster), exact)
    return (label, "", "", remote, size(usage.total("local", cluster), exact), "", "")


VERBS = {
    (DELETE, True): "would delete",
    (DELETE, False): "deleted",
    (ARCHIVE, True): "would archive",
    (ARCHIVE, False): "archived",
    (KEEP, True): "kept",
    (KEEP, False): "kept",
    (REFUSE, True): "refused",
    (REFUSE, False): "refused",
}


def plan_text(plan: Plan, dry_run: bool, exact: bool = False) -> str:
    """What a cleanup did (or would do), one line per folder, then the notes and the total."""
    if not plan.ruled:
        return (
            "gpu_magic: no cleanup rules: give --keep-last, --older-than or --quota, or set "
            "them (GPU_MAGIC_CLEANUP_* settings, [clusters.NAME.cleanup] in clusters.toml)"
        )
    shown = plan.actions if dry_run else _shown_after(plan)
    lines = ["gpu_magic: cleanup dry run; nothing was deleted" if dry_run else "gpu_magic: cleanup"]
    if shown:
        rows = [_action_row(a, dry_run, exact) for a in shown]
        lines.append(table(("action", "where", "cluster", "job", "size", "rule", "note"), rows))
    else:
        lines.append("nothing to clean up")
    lines += [f"note: {n}" for n in plan.notes]
    lines += [
        f"host file cache of {cluster}: {files} file(s) no job links to removed "
        f"({size(freed, exact)})"
        for cluster, (files, freed) in plan.evicted.items()
        if files
    ]
    lines.append(_summary(plan, dry_run, exact))
    return "\n".join(lines)


def _shown_after(plan: Plan) -> list:
    done = {id(a) for a in plan.done}
    return [a for a in plan.actions if id(a) in done or a.kind in (KEEP, REFUSE)]


def _action_row(a, dry_run: bool, exact: bool) -> Sequence[str]:
    note = a.note or ("forced: results not fetched" if a.forced else "")
    verb = VERBS[a.kind, dry_run]
    return (verb, a.where, a.job.cluster, a.job.id, size(a.size, exact), a.rule, note)


def _summary(plan: Plan, dry_run: bool, exact: bool) -> str:
    chosen = [a for a in (plan.actions if dry_run else plan.done) if a.kind == DELETE]
    freed = size(sum(a.size for a in chosen), exact)
    verb = "would be deleted" if dry_run else "deleted"
    return f"{len(chosen)} folder(s), {freed}, {verb}"


def history_table(deletions: list[Deletion], exact: bool = False) -> str:
    if not deletions:
        return "No deletions recorded yet."
    rows = [
        (clock(d.at), d.job_id, d.cluster, d.location, d.path, size(d.bytes, exact), d.rule,
         "yes" if d.forced else "no")
        for d in deletions
    ]  # fmt: skip
    return table(("time", "job", "cluster", "where", "path", "size", "rule", "forced"), rows)
