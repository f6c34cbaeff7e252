"""IPython magics: a thin adapter over ``gpu_magic.api.Client``.

User mistakes and connection problems become ``UsageError`` (message, no traceback); a cell that
raised on the GPU host is re-raised as ``RemoteJobError`` showing the remote traceback.
"""

from __future__ import annotations

import functools
import os
import queue
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import formatting
from .api import Client, default_client
from .clusters import make_cluster
from .errors import GPUMagicError, RemoteJobError
from .models import GPUJobRequest, JobStatus
from .monitoring.follow import follow_lines
from .parsers.events import terminal_safe
from .parsers.levels import LineFilter
from .results.progress import UPLOAD_STOPPED, TransferProgress
from .submit_options import FLAGS, from_flags
from .sweep_handle import SweepHandle
from .sweeps import Sweep


def ui():
    """The widget layer, imported on first use (plotly and ipywidgets are heavy)."""
    from . import ui as module

    return module


def follow(client: Client, job: str, level: str | None, grep: str | None) -> None:
    """Stream the log into the cell output until the job ends or the user interrupts."""
    try:
        keep = LineFilter(level, grep)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        for lines in follow_lines(client.monitor, client.store.find(job).id, keep):
            print(terminal_safe("\n".join(lines)), flush=True)
    except KeyboardInterrupt:
        print("gpu_magic: stopped following (the job goes on)")


def show_remote_error(shell, etype, evalue, tb, tb_offset=None) -> list[str]:
    """IPython's handler for ``RemoteJobError``: the cell's own traceback from the GPU host
    (it is in the message), without the gpu_magic frames that re-raised it in the kernel.
    IPython leaves the showing to the handler."""
    shown = shell.InteractiveTB.get_exception_only(etype, evalue)
    shell._showtraceback(etype, evalue, shown)  # IPython's one way to send a traceback as is
    return shown


def user_errors(method):
    """Show our errors as one clear line; keep remote tracebacks as real exceptions."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except RemoteJobError:
            raise
        except GPUMagicError as exc:  # one line, whatever a value in it holds (+ its details)
            raise UsageError("\n".join(map(formatting.printable, exc.lines()))) from None

    return wrapper


def parse(magic, line: str, needs_job: bool = False):
    """Parse a magic's arguments; print its help and return None for ``-h/--help``."""
    try:
        opts = parse_argstring(magic, line)
    except UsageError as exc:  # argparse quotes the words it refused: escape what they hold
        raise UsageError(formatting.printable(str(exc))) from None
    except ValueError as exc:  # shlex: a quote left open
        raise UsageError(f"%{magic.__name__}: {exc} in {line!r}") from None
    for key, value in vars(opts).items():
        setattr(opts, key, unquote(value))
    if opts.help:
        print(magic.__doc__)
        return None
    if needs_job and opts.job is None:
        raise UsageError(f"%{magic.__name__} needs a JOB (an id or a name); see --help")
    return opts


def unquote(value):
    """IPython keeps the quotes of a quoted option value (``--args '-x 1'``); drop them."""
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def submit_flags(magic):
    """``submit_options.FLAGS`` as IPython ``@argument`` decorators, in their order."""
    for name, options in reversed(FLAGS):
        magic = argument(name, **options)(magic)
    return magic


class ClientMagics(Magics):
    """Magics over one ``Client``: the kernel's default one, or one given (tests)."""

    def __init__(self, shell, client: Client | None = None):
        super().__init__(shell)
        self._client = client

    @property
    def client(self) -> Client:
        return self._client or default_client()


@magics_class
class GPUMagics(ClientMagics):
    # -- %%gpu_submit ---------------------------------------------------------------------
    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @submit_flags
    @argument("--wait", action="store_true", help="wait, then load --outputs into the kernel")
    @cell_magic
    @user_errors
    def gpu_submit(self, line: str, cell: str):
        """Run this cell on a GPU host; returns a job handle (with --sweep: a sweep handle,
        ``.results()``, ``.best("val_loss")``, ``.cancel()``, ``.retry()``)."""
        opts = parse(self.gpu_submit, line)
        if opts is None:
            return None
        request = self._request(opts, cell)
        if opts.sweep:
            return self._sweep(request, opts)
        handle = self._submit(request)
        ui().show_job(self.client, handle.id)
        if opts.wait:
            self._finish(handle.id, timeout=None)
        return handle

    def _submit(self, request: GPUJobRequest, sweep: Sweep | None = None):
        """Submit on a thread while this one shows the upload's bar (past a second) and the
        submission's lines; Ctrl-C (an interrupt) cancels the upload, and the job with it."""
        upload, lines = TransferProgress(stopped=UPLOAD_STOPPED), queue.SimpleQueue()
        ns, cwd = self.shell.user_ns, Path(os.getcwd())
        given = {"cwd": cwd, "say": lines.put, "progress": upload}
        if sweep is None:
            work = lambda: self.client.submit(request, ns, **given)  # noqa: E731
        else:
            work = lambda: self.client.submit_sweep(request, sweep, ns, **given)  # noqa: E731
        return ui().run_showing(lambda: upload, work, after_s=1.0, relay=lines, what="upload")

    def _sweep(self, request: GPUJobRequest, opts) -> SweepHandle:
        """A sweep: every member submitted, one grouped panel; ``--wait``: until all ended,
        then their results table."""
        sweep = Sweep.parse(opts.sweep, opts.sweep_mode, self.shell.user_ns)
        handle = self._submit(request, sweep)
        ui().show_sweep(self.client, handle.id)
        if opts.wait:
            handle.wait()
            print(formatting.sweep_table(handle.result_rows()))
        return handle

    def _request(self, opts, cell: str) -> GPUJobRequest:
        """The flags given, over the ``--template``'s options when one is named."""
        return self.client.clusters.templates.request(from_flags(opts), cell, opts.template)

    def _finish(self, job_id: str, timeout: float | None) -> None:
        """Wait, then load the outputs into the namespace; a failed job's saved outputs too (a
        missing ``--outputs`` name loses no other), then raise why it failed."""
        job = self.client.wait(job_id, timeout)
        completed = job.status == JobStatus.COMPLETED
        values = self.client.results.saved_outputs(job_id)
        self.shell.user_ns.update(values)
        if values:
            names = ", ".join(f"{k} ({type(v).__name__})" for k, v in values.items())
            ended = "completed" if completed else job.status
            print(f"gpu_magic: job {job_id} {ended}; loaded {names}")
        if not completed:
            self.client.results.raise_for_failure(job_id)

    # -- job magics -----------------------------------------------------------------------
    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("job", nargs="?", help="job id or name; all jobs when left out")
    @argument("--details", action="store_true", help="text details and state history of JOB")
    @line_magic
    @user_errors
    def gpu_status(self, line: str):
        """Show the live table of all jobs, or one job's live panel (or --details)."""
        opts = parse(self.gpu_status, line)
        if opts is None:
            return None
        if opts.job is None:
            ui().show_jobs(self.client)
        elif opts.details:
            job = self.client.job(opts.job)
            history = self.client.store.transitions(job.id)
            print(
                formatting.job_details(job, history, self.client.clusters.scheduler_of(job.cluster))
            )
        else:
            ui().show_job(self.client, opts.job)
        return None

    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @line_magic
    @user_errors
    def gpu_queue(self, line: str):
        """The jobs that wait and why: in Slurm's queue (its position and reason), for a free
        slot (in the order they will start), for the jobs they depend on (--after), for their
        start time (--at, --in)."""
        if parse(self.gpu_queue, line) is None:
            return None
        print(formatting.queue_table(self.client.queue()))
        return None

    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("job", nargs="?", help="job id or name")
    @argument("--tail", type=int, metavar="N", help="only the last N lines")
    @argument("--level", metavar="LEVEL", help="only DEBUG/INFO/WARNING/ERROR lines and above")
    @argument("--grep", metavar="REGEX", help="only lines matching this regular expression")
    @argument("--follow", action="store_true", help="keep printing until the job ends")
    @line_magic
    @user_errors
    def gpu_logs(self, line: str):
        """Print a job's output.log (stdout and stderr), filtered or followed."""
        opts = parse(self.gpu_logs, line, needs_job=True)
        if opts is None:
            return None
        if opts.follow:
            return follow(self.client, opts.job, opts.level, opts.grep)
        print(terminal_safe(self.client.logs(opts.job, opts.tail, opts.level, opts.grep)), end="")
        return None

    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("job", nargs="*", help="job ids or names")
    @line_magic
    @user_errors
    def gpu_cancel(self, line: str):
        """Stop jobs and every process they started (one command per cluster)."""
        opts = parse(self.gpu_cancel, line)
        if opts is None:
            return None
        if not opts.job:
            raise UsageError("%gpu_cancel needs a JOB (an id or a name); see --help")
        for job in self.client.cancel_many(opts.job):
            print(f"gpu_magic: job {job.id} is {job.status}")

    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("job", nargs="?", help="job id or name")
    @argument("files", nargs="*", metavar="FILE", help="collected files to download now")
    @argument("--list", action="store_true", help="list the collected files")
    @argument("--wait", action="store_true", help="wait for the job to end first")
    @argument("--timeout", type=float, metavar="SECONDS", help="give up waiting after this")
    @line_magic
    @user_errors
    def gpu_fetch(self, line: str):
        """Load a finished job's --outputs variables into the kernel (with a download progress
        bar); FILE ...: download those collected files now and print their local paths;
        --list: the collected files (path, kind, size, fetched)."""
        opts = parse(self.gpu_fetch, line, needs_job=True)
        if opts is None:
            return None
        results = self.client.results
        job = self.client.job(opts.job)
        if opts.wait:
            job = self.client.wait(job.id, opts.timeout)
        show = functools.partial(ui().run_showing, lambda: results.transfer(job.id))
        if opts.list:
            print(formatting.files_table(show(lambda: results.files(job.id))))
            return None
        if opts.files:
            paths = show(lambda: results.local_paths(job.id, opts.files))
            for name, path in zip(opts.files, paths, strict=True):
                print(f"gpu_magic: {name} → {path}")
            return None
        if job.status != JobStatus.COMPLETED:
            results.raise_for_failure(job.id)
        show(lambda: results.collect(job.id))
        self._finish(job.id, timeout=0)
        return None

    # -- clusters -------------------------------------------------------------------------
    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("action", nargs="?", choices=["list", "add", "use", "remove"], help="what to do")
    @argument("name", nargs="?", help="cluster name")
    @argument("--host", help="host name or ~/.ssh/config alias")
    @argument("--port", type=int)
    @argument("--user")
    @argument("--key", metavar="PATH", help="private key file (ssh-agent works too)")
    @argument("--known-hosts", metavar="PATH", help="an extra known_hosts file")
    @argument("--proxy-jump", metavar="HOST", help="jump host (like ssh -J)")
    @argument("--base-path", metavar="DIR", help="where job folders go on the host")
    @argument("--scheduler", choices=["process", "slurm"], default="process")
    @argument("--python", metavar="PATH", help="default interpreter on the host")
    @argument("--untrusted", action="store_true", help="never unpickle results from this host")
    @argument("--partition", help="Slurm: default partition")
    @argument("--account", help="Slurm: default account")
    @argument("--qos", help="Slurm: default quality of service")
    @argument("--gres-style", choices=["gres", "gpus"], help="Slurm: --gres or --gpus-per-node")
    @line_magic
    @user_errors
    def gpu_cluster(self, line: str):
        """Manage named clusters: list, add NAME --host ..., use NAME, remove NAME."""
        opts = parse(self.gpu_cluster, line)
        if opts is None:
            return None
        registry = self.client.clusters
        opts.action = opts.action or "list"
        if opts.action != "list" and not opts.name:
            raise UsageError(f"%gpu_cluster {opts.action} needs a cluster NAME")
        if opts.action == "add":
            registry.add(self._cluster(opts))
            print(f"gpu_magic: added cluster {opts.name!r} ({registry.path})")
        elif opts.action == "use":
            registry.use(opts.name)
            print(f"gpu_magic: jobs now go to {opts.name!r} by default")
        elif opts.action == "remove":
            registry.remove(opts.name)
            print(f"gpu_magic: removed cluster {opts.name!r}")
        else:
            print(formatting.cluster_table(registry.all(), registry.default_name()))

    @staticmethod
    def _cluster(opts):
        if not opts.host:
            raise UsageError("%gpu_cluster add needs --host")
        fields = {
            "name": opts.name,
            "host": opts.host,
            "port": opts.port,
            "user": opts.user,
            "key": opts.key,
            "known_hosts": opts.known_hosts,
            "proxy_jump": opts.proxy_jump,
            "base_path": opts.base_path,
            "scheduler": opts.scheduler,
            "python": opts.python,
            "trusted": False if opts.untrusted else None,
        }
        slurm = {k: getattr(opts, k) for k in ("partition", "account", "qos", "gres_style")}
        fields["slurm"] = {k: v for k, v in slurm.items() if v is not None}
        return make_cluster(**{k: v for k, v in fields.items() if v is not None})
