"""IPython magics for archives, storage usage and cleanup: a thin adapter over ``storage``.

A second magics class beside ``magics.GPUMagics`` (registered by ``load_ipython_extension``);
it shares that module's argument parsing and error display.
"""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .api import Client
from .formatting import size
from .housekeeping import cleanup, report
from .magics import ClientMagics, parse, user_errors


@magics_class
class StorageMagics(ClientMagics):
    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("job", nargs="?", help="job id or name")
    @line_magic
    @user_errors
    def gpu_archive(self, line: str):
        """Pack a finished job's local results into one compressed archive (.tar.zst)."""
        opts = parse(self.gpu_archive, line, needs_job=True)
        if opts is None:
            return None
        job = self.client.store.find(opts.job)
        path = self.client.results.archive(job.id)
        print(f"gpu_magic: job {job.id} archived: {path} ({size(path.stat().st_size)})")
        return None

    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("--cluster", help="only this cluster's jobs")
    @argument("--bytes", action="store_true", help="exact sizes in bytes")
    @line_magic
    @user_errors
    def gpu_storage(self, line: str):
        """Show local and remote usage per job and in total."""
        opts = parse(self.gpu_storage, line)
        if opts is None:
            return None
        _check_cluster(self.client, opts.cluster)
        print(report.usage_table(self.client.storage_usage(opts.cluster), opts.bytes))
        return None

    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("--cluster", help="only this cluster's jobs")
    @argument("--remote", action="store_true", help="only job folders on the hosts")
    @argument("--local", action="store_true", help="only local results")
    @argument("--keep-last", type=int, metavar="N", help="keep the N newest finished jobs")
    @argument("--older-than", type=float, metavar="DAYS", help="delete jobs older than this")
    @argument("--quota", type=float, metavar="GB", help="delete oldest until under GB")
    @argument("--dry-run", action="store_true", help="show what would go; delete nothing")
    @argument("--force", action="store_true", help="also delete results not fetched yet")
    @argument("--history", action="store_true", help="list the recorded deletions")
    @argument("--bytes", action="store_true", help="exact sizes in bytes")
    @line_magic
    @user_errors
    def gpu_cleanup(self, line: str):
        """Delete old job folders by the cleanup rules (given here, else configured);
        --dry-run shows what would go and why. Active jobs are never touched, and results not
        fetched yet stay on the host unless --force."""
        opts = parse(self.gpu_cleanup, line)
        if opts is None:
            return None
        if opts.history:
            print(report.history_table(self.client.store.deletions(), opts.bytes))
            return None
        request = cleanup.Request(
            cluster=opts.cluster,
            sides=_sides(opts),
            rules=cleanup.given_rules(opts),
            force=opts.force,
        )
        _check_cluster(self.client, opts.cluster)
        done = self.client.cleanup(request, dry_run=opts.dry_run)
        print(report.plan_text(done, opts.dry_run, opts.bytes))
        return None


def _check_cluster(client: Client, name: str | None) -> None:
    """A typo is an error, not an empty table; a removed cluster whose jobs remain is fine."""
    if name and not client.store.list(cluster=name, limit=1):
        client.clusters.get(name)


def _sides(opts) -> tuple[str, ...]:
    if opts.remote and opts.local:
        raise UsageError("--remote and --local exclude each other (give neither for both)")
    if opts.remote:
        return (cleanup.REMOTE,)
    return (cleanup.LOCAL,) if opts.local else (cleanup.REMOTE, cleanup.LOCAL)
