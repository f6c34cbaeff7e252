"""``gpu-magic``: the job store from a terminal, and a text view of an executed notebook."""

from __future__ import annotations

import argparse
import json
import sys

from . import formatting
from .api import default_client
from .errors import GPUMagicError


def show_notebook(path: str) -> None:
    """Print each code cell and its text outputs (what ``make demo`` shows at the end)."""
    with open(path) as f:
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


def show_audit(args: argparse.Namespace) -> int:
    """``gpu-magic audit verify`` exits 1 when the log was tampered with; otherwise the
    records (of one job)."""
    client = default_client()
    if args.job == "verify":
        verdict = client.audit.verify()
        print(f"gpu-magic: {verdict}")
        return 0 if verdict.ok else 1
    job_id = client.store.find(args.job).id if args.job else None
    records = client.audit.records(job_id, limit=args.limit)
    print("\n".join(map(json.dumps, records)) if args.json else formatting.audit_table(records))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-magic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="all jobs, or one job's details")
    status.add_argument("job", nargs="?")
    logs = sub.add_parser("logs", help="a job's output.log")
    logs.add_argument("job")
    logs.add_argument("--tail", type=int)
    show = sub.add_parser("show-notebook", help="print an executed notebook's outputs")
    show.add_argument("path")
    audit = sub.add_parser("audit", help="the audit log: show it, or verify its hash chain")
    audit.add_argument("job", nargs="?", help="a job id or name, or 'verify'")
    audit.add_argument("--limit", type=int, default=50, help="the last N records (50)")
    audit.add_argument("--json", action="store_true", help="the records as JSON lines")
    args = parser.parse_args(argv)
    try:
        if args.command == "show-notebook":
            show_notebook(args.path)
        elif args.command == "audit":
            return show_audit(args)
        elif args.command == "logs":
            print(default_client().logs(args.job, args.tail), end="")
        elif args.job:
            client = default_client()
            job = client.job(args.job)
            print(formatting.job_details(job, client.store.transitions(job.id)))
        else:
            print(formatting.job_table(default_client().jobs()))
    except GPUMagicError as exc:
        print(f"gpu-magic: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
