"""The cleanup rules as pure functions: which jobs' folders go, and why. No I/O here.

Rules, for one cluster and one side (remote job folders or local results) at a time:

- ``keep_last N``: the N newest finished jobs stay; older finished ones go.
- ``older_than_days D``: finished jobs that ended more than D days ago go.
- ``quota_gb G``: while the side holds more than G GB (10^9 bytes, active jobs counted), the
  oldest finished jobs still kept go, one by one.

Active jobs are never chosen (they still count towards a quota). On the remote side a job whose
results are not completely fetched is kept instead, unless forced: it is reported as kept with
the rule that would have taken it, so a dry run shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..clusters import CleanupRules

GB = 10**9


@dataclass(frozen=True)
class Item:
    """One job's folder on one side."""

    job_id: str
    created: datetime  # newest first is by submission time
    ended: datetime | None  # age is counted from here (``created`` when unknown)
    size: int
    active: bool = False
    fetched: bool = True  # results completely collected locally (matters for remote folders)


@dataclass(frozen=True)
class Decision:
    job_id: str
    rule: str
    size: int
    forced: bool = False


@dataclass
class Verdict:
    delete: list[Decision] = field(default_factory=list)
    unfetched: list[Decision] = field(default_factory=list)  # kept: not fetched, not forced


def decide(
    items: list[Item], rules: CleanupRules, now: datetime, *, guard: bool, force: bool = False
) -> Verdict:
    """What ``rules`` delete among ``items``; ``guard`` keeps unfetched ones unless ``force``."""
    verdict = Verdict()
    finished = sorted((i for i in items if not i.active), key=_newest_first)
    for item, rule in _by_count_and_age(finished, rules, now):
        _judge(verdict, item, rule, guard, force)
    if rules.quota_gb is not None:
        _enforce_quota(verdict, items, finished, rules.quota_gb, guard, force)
    return verdict


def archive_due(items: list[Item], days: float | None, now: datetime) -> list[str]:
    """Finished, completely fetched jobs that ended more than ``days`` ago (oldest first)."""
    if days is None:
        return []
    due = [i for i in items if not i.active and i.fetched and _age(i, now) > timedelta(days=days)]
    return [i.job_id for i in sorted(due, key=_newest_first, reverse=True)]


def _by_count_and_age(finished: list[Item], rules: CleanupRules, now: datetime):
    for rank, item in enumerate(finished):
        if rules.keep_last is not None and rank >= rules.keep_last:
            yield item, f"keep-last {rules.keep_last}"
        elif rules.older_than_days is not None and _age(item, now) > timedelta(
            days=rules.older_than_days
        ):
            yield item, f"older-than {rules.older_than_days:g} days"


def _enforce_quota(verdict: Verdict, items, finished, quota_gb: float, guard, force) -> None:
    decided = {d.job_id for d in verdict.delete + verdict.unfetched}
    total = sum(i.size for i in items) - sum(d.size for d in verdict.delete)
    for item in reversed(finished):  # oldest first
        if total <= quota_gb * GB:
            return
        if item.job_id in decided:
            continue
        if _judge(verdict, item, f"quota {quota_gb:g} GB", guard, force):
            total -= item.size


def _judge(verdict: Verdict, item: Item, rule: str, guard: bool, force: bool) -> bool:
    """File ``item`` under delete (True) or kept-unfetched (False)."""
    blocked = guard and not item.fetched
    if blocked and not force:
        verdict.unfetched.append(Decision(item.job_id, rule, item.size))
        return False
    verdict.delete.append(Decision(item.job_id, rule, item.size, forced=blocked))
    return True


def _age(item: Item, now: datetime) -> timedelta:
    return now - (item.ended or item.created)


def _newest_first(item: Item):
    return (-item.created.timestamp(), item.job_id)
