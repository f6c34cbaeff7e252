"""What each ``gpu-magic`` command does (``cli`` builds the parser and turns errors into exit
codes): thin calls into the ``Client`` the magics use, printed as text or, with ``--json``, in
the REST API's shapes (``views``)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import argcomplete

from . import formatting, views
from .api import Client, default_client
from .errors import InvalidRequestError
from .housekeeping import cleanup as cleanups
from .housekeeping import report
from .models import JobStatus
from .monitoring.follow import follow_lines
from .parsers.events import terminal_safe
from .parsers.levels import LineFilter
from .submit_options import from_flags
from .sweeps import Sweep

OK, FAILED = 0, 1
NOT_FAILED = frozenset({JobStatus.COMPLETED}) | {s for s in JobStatus if not s.is_terminal}
"""What ``status JOB`` exits 0 for: completed, or not ended yet."""


def status(args) -> int:
    client = default_client()
    if args.job is None:
        jobs = client.jobs(cluster=args.cluster, limit=args.limit, active_only=args.active)
        show(args, [views.job_view(job) for job in jobs], lambda: formatting.job_table(jobs))
        return OK
    job = client.job(args.job)
    history = client.store.transitions(job.id)
    scheduler = client.clusters.scheduler_of(job.cluster)
    show(args, views.job_status_view(job, history),
         lambda: formatting.job_details(job, history, scheduler))  # fmt: skip
    return OK if job.status in NOT_FAILED else FAILED


def logs(args) -> int:
    client = default_client()
    job = client.store.find(args.job)
    if args.follow:
        try:
            keep = LineFilter(args.level, args.grep)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
        for lines in follow_lines(client.monitor, job.id, keep):
            text = "\n".join(json.dumps({"line": line}) for line in lines)
            print(text if args.json else terminal_safe("\n".join(lines)), flush=True)
        return OK
    text = client.logs(job.id, args.tail, args.level, args.grep)
    show(args, {"id": job.id, "status": job.status.value, "log": text},
         lambda: terminal_safe(text).rstrip("\n"))  # fmt: skip
    return OK


def cancel(args) -> int:
    for job in default_client().cancel_many(args.job):
        print(f"gpu-magic: job {job.id} is {job.status}")
    return OK


def fetch(args) -> int:
    """The FILEs named, or every collected file (a failed job: exit 1, after what it saved)."""
    client = default_client()
    job = client.wait(client.store.find(args.job).id) if args.wait else client.job(args.job)
    results = client.results
    if args.files:
        paths = results.local_paths(job.id, args.files)
    else:
        names = [entry["path"] for entry in results.files(job.id)]
        paths = results.local_paths(job.id, names)
    if args.output is not None:
        paths = [_copy(path, results.local.folder(job.id), args.output) for path in paths]
    shown = [str(path) for path in paths]
    show(args, {"id": job.id, "status": job.status.value, "files": shown},
         lambda: "\n".join(shown) or f"gpu-magic: job {job.id} collected no files")  # fmt: skip
    return OK if args.files or job.status == JobStatus.COMPLETED else FAILED


def _copy(path: Path, root: Path, target: Path) -> Path:
    """``path`` (under ``root``) copied to the same relative place under ``target``."""
    copied = target / path.relative_to(root)
    copied.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, copied)
    return copied


def submit(args) -> int:
    client = default_client()
    try:
        code = args.script.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"cannot read {args.script}: {exc}") from None
    options = from_flags(args)
    if args.script.suffix == ".sh":
        options = options.model_copy(update={"bash": True})
    request = client.clusters.templates.request(options, code, args.template)
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731 - stdout keeps to the answer
    if args.sweep:
        return _submit_sweep(client, request, args, say)
    job = client.submit(request, {}, cwd=Path.cwd(), say=say).job
    if args.wait:
        job = client.wait(job.id)
    show(args, views.job_view(job), lambda: f"gpu-magic: job {job.id} is {job.status}")
    return OK if not args.wait or job.status == JobStatus.COMPLETED else FAILED


def _submit_sweep(client, request, args, say) -> int:
    """A script run once per combination; ``--wait``: until every member ended (1 when one of
    them did not complete), with the results table."""
    sweep = Sweep.parse(args.sweep, args.sweep_mode)
    handle = client.submit_sweep(request, sweep, {}, cwd=Path.cwd(), say=say)
    if args.wait:
        handle.wait()
        rows = handle.result_rows()
        show(args, {"sweep": handle.id, "members": rows}, lambda: formatting.sweep_table(rows))
        failed = any(row["status"] != JobStatus.COMPLETED.value for row in rows)
        return FAILED if failed else OK
    members = [views.job_view(job) for job in handle.jobs(refresh=False)]
    show(args, {"sweep": handle.id, "members": members},
         lambda: f"gpu-magic: sweep {handle.id}: {len(members)} members submitted")  # fmt: skip
    return OK


def clusters(args) -> int:
    registry = default_client().clusters
    found, default = registry.all(), registry.default_name()
    show(args, [views.cluster_view(c, name == default) for name, c in found.items()],
         lambda: formatting.cluster_table(found, default))  # fmt: skip
    return OK


def templates(args) -> int:
    book = default_client().clusters.templates
    if args.action == "list":
        show(args, book.tables(), lambda: formatting.template_list(book))
        return OK
    if not args.name:
        raise InvalidRequestError("templates show needs a NAME")
    shown = {
        "name": args.name,
        "chain": book.chain(args.name),
        "options": book.options(args.name).to_template(),
        "set_by": book.origins(args.name),
    }
    show(args, shown, lambda: formatting.template_view(book, args.name))
    return OK


def queue(args) -> int:
    waiting = default_client().queue()
    show(args, views.queue_view(waiting), lambda: formatting.queue_table(waiting))
    return OK


def storage(args) -> int:
    usage = default_client().storage_usage(args.cluster)
    show(args, views.usage_view(usage), lambda: report.usage_table(usage))
    return OK


def cleanup(args) -> int:
    rules = cleanups.given_rules(args)
    request = cleanups.Request(cluster=args.cluster, rules=rules, force=args.force)
    plan = default_client().cleanup(request, dry_run=args.dry_run)
    show(args, views.plan_view(plan), lambda: report.plan_text(plan, args.dry_run))
    return OK


def audit(args) -> int:
    """``audit verify`` exits 1 when the log was tampered with; otherwise the records."""
    client = default_client()
    if args.job == "verify":
        verdict = client.audit.verify()
        print(f"gpu-magic: {verdict}")
        return OK if verdict.ok else FAILED
    job_id = client.store.find(args.job).id if args.job else None
    records = client.audit.records(job_id, limit=args.limit)
    print("\n".join(map(json.dumps, records)) if args.json else formatting.audit_table(records))
    return OK


def completion(args) -> int:
    print(argcomplete.shellcode(["gpu-magic"], shell=args.shell))
    return OK


def show_notebook(args) -> int:
    """Each code cell and its text outputs (what ``make demo`` shows at the end)."""
    with open(args.path) as f:
        notebook = json.load(f)
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        print("In:  " + "".join(cell["source"]).replace("\n", "\n     "))
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain")
            if output.get("output_type") == "error":
                text = f"{output['ename']}: {output['evalue']}"
            if text:
                print("Out: " + "".join(text).rstrip().replace("\n", "\n     "))
        print()
    return OK


def show(args, data: Any, text: Callable[[], str]) -> None:
    """``data`` as JSON with ``--json``, else ``text()``."""
    if args.json:
        print(json.dumps(data, indent=1, default=str))
    else:
        print(text())


# -- completion: what the shell offers after a TAB ----------------------------------------------


def complete_jobs(prefix: str, **_) -> list[str]:
    jobs = _completed(lambda client: client.store.list(limit=500))
    return [word for job in jobs for word in (job.id, job.name) if word and word.startswith(prefix)]


def complete_clusters(prefix: str, **_) -> list[str]:
    names = _completed(lambda client: list(client.clusters.all()))
    return [name for name in names if name.startswith(prefix)]


def complete_templates(prefix: str, **_) -> list[str]:
    names = _completed(lambda client: client.clusters.templates.names())
    return [name for name in names if name.startswith(prefix)]


def _completed(read: Callable[[Client], list]) -> list:
    """What ``read`` finds, or nothing: a broken config completes nothing, it never fails."""
    try:
        return read(default_client())
    except Exception as exc:
        argcomplete.warn(f"gpu-magic: {exc}")
        return []
