"""``gpu-magic``: the jobs, store and clusters of the notebooks, from a terminal.

Every command works on the store the magics and the server extension use, so a job submitted
here shows in a notebook's ``%gpu_status``, the REST API and the sidebar, and the other way
round. Read commands take ``--json`` (the REST API's shapes; ``logs -f --json``: a JSON line
per log line). Exit codes: 0 done; 1 a job failed (``status JOB`` of one that ended other than
completed, ``submit --wait``, ``fetch`` of a failed job) or the host could not do what was
asked; 2 a usage error (bad arguments; an unknown job, cluster or template; a request that can
never run). Completion of job ids and names, cluster and template names:
``eval "$(gpu-magic completion bash)"`` (or ``zsh``) in the shell's start-up file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import argcomplete

from . import cli_commands as commands
from .errors import (
    ConfigError,
    GPUMagicError,
    InvalidRequestError,
    JobNotFoundError,
    ResultNotFoundError,
)
from .submit_options import add_flags

USAGE = 2
USAGE_ERRORS = (ConfigError, InvalidRequestError, JobNotFoundError, ResultNotFoundError)
"""What the person typing got wrong (exit 2); any other error is the job's or the host's (1)."""
INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except USAGE_ERRORS as exc:
        print(f"gpu-magic: {exc}", file=sys.stderr)
        return USAGE
    except GPUMagicError as exc:
        print(f"gpu-magic: {exc}", file=sys.stderr)
        return commands.FAILED
    except KeyboardInterrupt:
        print("gpu-magic: interrupted", file=sys.stderr)
        return INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpu-magic",
        description="GPU jobs on SSH hosts and Slurm: the notebooks' jobs, from a terminal.",
        epilog="exit codes: 0 ok, 1 a job failed (or the host could not do it), 2 usage",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_status, _logs, _cancel, _fetch, _submit, _queue, _clusters, _templates, _storage,
                _cleanup, _audit, _completion, _show_notebook):  # fmt: skip
        add(sub)
    return parser


def _command(sub, name: str, run: Callable, help: str, *, reads: bool = False):
    command = sub.add_parser(name, help=help, description=help)
    command.set_defaults(run=run)
    if reads:
        command.add_argument("--json", action="store_true", help="print JSON")
    return command


def _completing(action: argparse.Action, completer: Callable) -> None:
    action.completer = completer  # type: ignore[attr-defined] - argcomplete's hook


def _status(sub) -> None:
    command = _command(sub, "status", commands.status, "all jobs, or one job", reads=True)
    job = command.add_argument("job", nargs="?", help="job id or name; all jobs if left out")
    _completing(job, commands.complete_jobs)
    _completing(command.add_argument("--cluster", help="only its jobs"), commands.complete_clusters)
    command.add_argument("--active", action="store_true", help="only jobs not ended")
    command.add_argument("--limit", type=int, default=100, help="the newest N jobs (100)")


def _logs(sub) -> None:
    command = _command(sub, "logs", commands.logs, "a job's output (stdout and stderr)", reads=True)
    _completing(command.add_argument("job", help="job id or name"), commands.complete_jobs)
    command.add_argument("-f", "--follow", action="store_true", help="until the job ends")
    command.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    command.add_argument("--level", metavar="LEVEL", help="DEBUG/INFO/WARNING/ERROR and above")
    command.add_argument("--grep", metavar="REGEX", help="only lines matching it")


def _cancel(sub) -> None:
    command = _command(sub, "cancel", commands.cancel, "stop jobs (one command per host)")
    job = command.add_argument("job", nargs="+", help="job ids or names")
    _completing(job, commands.complete_jobs)


def _fetch(sub) -> None:
    help = "a finished job's collected files, or the FILEs named, on this machine"
    command = _command(sub, "fetch", commands.fetch, help, reads=True)
    _completing(command.add_argument("job", help="job id or name"), commands.complete_jobs)
    command.add_argument("files", nargs="*", metavar="FILE", help="collected files to download")
    command.add_argument("-o", "--output", type=Path, metavar="DIR", help="copy them here too")
    command.add_argument("--wait", action="store_true", help="wait for the job to end first")


def _submit(sub) -> None:
    help = "run a script on a cluster as a notebook cell is run (a .sh file: as bash)"
    command = _command(sub, "submit", commands.submit, help, reads=True)
    command.add_argument("script", type=Path, help="the Python (or .sh) file to run")
    flags = add_flags(command)
    _completing(flags["cluster"], commands.complete_clusters)
    _completing(flags["template"], commands.complete_templates)
    command.add_argument("--wait", action="store_true", help="wait; exit 1 unless it completed")


def _clusters(sub) -> None:
    _command(sub, "clusters", commands.clusters, "the configured clusters", reads=True)


def _templates(sub) -> None:
    command = _command(sub, "templates", commands.templates, "job templates", reads=True)
    command.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    _completing(command.add_argument("name", nargs="?"), commands.complete_templates)


def _queue(sub) -> None:
    help = "the jobs that wait, and what for (Slurm's queue, a slot, other jobs, a start time)"
    _command(sub, "queue", commands.queue, help, reads=True)


def _storage(sub) -> None:
    command = _command(sub, "storage", commands.storage, "disk use per job", reads=True)
    _completing(command.add_argument("--cluster"), commands.complete_clusters)


def _cleanup(sub) -> None:
    help = "delete old job folders by the cleanup rules (--dry-run: only show them)"
    command = _command(sub, "cleanup", commands.cleanup, help, reads=True)
    _completing(command.add_argument("--cluster"), commands.complete_clusters)
    command.add_argument("--dry-run", action="store_true", help="show what would go")
    command.add_argument("--keep-last", type=int, metavar="N", help="keep the N newest ended")
    command.add_argument("--older-than", type=float, metavar="DAYS", help="older than this")
    command.add_argument("--quota", type=float, metavar="GB", help="oldest first until under")
    command.add_argument("--force", action="store_true", help="also results not fetched yet")


def _audit(sub) -> None:
    help = "the audit log: show it, or verify its hash chain"
    command = _command(sub, "audit", commands.audit, help, reads=True)
    job = command.add_argument("job", nargs="?", help="a job id or name, or 'verify'")
    _completing(job, commands.complete_jobs)
    command.add_argument("--limit", type=int, default=50, help="the last N records (50)")


def _completion(sub) -> None:
    help = 'shell completion: eval "$(gpu-magic completion bash)"'
    command = _command(sub, "completion", commands.completion, help)
    command.add_argument("shell", choices=["bash", "zsh"], nargs="?", default="bash")


def _show_notebook(sub) -> None:
    help = "print an executed notebook's outputs"
    command = _command(sub, "show-notebook", commands.show_notebook, help)
    command.add_argument("path")


if __name__ == "__main__":
    sys.exit(main())
