"""IPython magics: a thin adapter over ``gpu_magic.api.Client``.

User mistakes and connection problems become ``UsageError`` (message, no traceback); a cell that
raised on the GPU host is re-raised as ``RemoteJobError`` showing the remote traceback.
"""

from __future__ import annotations

import functools
import os
import queue
import shlex
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import formatting
from .api import Client, default_client
from .clusters import make_cluster
from .errors import GPUMagicError, InvalidRequestError, RemoteJobError
from .handle import JobHandle
from .models import GitSource, GPUJobRequest, JobStatus
from .monitoring.follow import follow_log
from .parsers.events import terminal_safe
from .parsers.levels import LineFilter
from .resources import parse_sbatch_options
from .results.progress import UPLOAD_STOPPED, TransferProgress


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
    pending = ""
    try:
        for text in follow_log(client.monitor, client.store.find(job).id):
            *lines, pending = (pending + text).split("\n")
            shown = [line for line in lines if keep.keep(line)]
            if shown:
                print(terminal_safe("\n".join(shown)), flush=True)
        if pending and keep.keep(pending):
            print(terminal_safe(pending), flush=True)
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
        except GPUMagicError as exc:  # one line, whatever a value in it holds
            raise UsageError(formatting.printable(str(exc))) from None

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


RESOURCE_OPTIONS = ("time", "mem", "cpus", "nodes", "gpu_type", "partition", "account", "qos",
                    "constraint")  # fmt: skip


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
    @argument("--inputs", default="", metavar="A,B", help="kernel variables to send")
    @argument("--outputs", default="", metavar="A,B", help="variables to bring back")
    @argument("--files", nargs="+", default=[], metavar="PATH", help="files/folders to ship")
    @argument("--follow-links", action="store_true", help="ship what links in --files point to")
    @argument("--git", metavar="URL[@REF]", help="clone this repository into code/repo")
    @argument("--env", action="append", default=[], metavar="K=V", help="environment variable")
    @argument("--secret-env", action="append", default=[], metavar="NAME",
              help="pass this kernel's $NAME to the job, written to no file")  # fmt: skip
    @argument("--args", default="", metavar="'A B'", help="arguments for the cell (sys.argv/$@)")
    @argument("--bash", action="store_true", help="the cell is a bash script")
    @argument("--python", metavar="PATH", help="interpreter on the host")
    @argument("--venv", metavar="DIR", help="virtualenv on the host")
    @argument("--conda", metavar="NAME", help="conda environment on the host")
    @argument("--name", help="a name to find the job by")
    @argument("--cluster", help="cluster name (see %%gpu_cluster list)")
    @argument("--gpus", type=int, default=0, metavar="N", help="number of GPUs")
    @argument("--timeout", type=float, metavar="SECONDS", help="stop the job after this long")
    @argument("--time", metavar="D-HH:MM:SS", help="Slurm: time limit")
    @argument("--mem", metavar="SIZE", help="Slurm: memory per node, e.g. 32G")
    @argument("--cpus", type=int, metavar="N", help="Slurm: CPUs per task")
    @argument("--nodes", type=int, metavar="N", help="Slurm: nodes (the cell runs under srun)")
    @argument("--gpu-type", metavar="TYPE", help="Slurm: GPU type, e.g. h100")
    @argument("--partition", help="Slurm: partition")
    @argument("--account", help="Slurm: account")
    @argument("--qos", help="Slurm: quality of service")
    @argument("--constraint", help="Slurm: node features, e.g. 'h100&ib'")
    @argument("--sbatch", action="append", default=[], metavar="KEY[=V]", help="Slurm: option")
    @argument("--wait", action="store_true", help="wait, then load --outputs into the kernel")
    @argument("--notify", action="store_true", help="post to the webhook when the job ends")
    @argument("--retries", type=int, default=0, metavar="N", help="run again up to N times")
    @argument("--retry-on", default="", metavar="KIND,..", help="failure kinds to retry")
    @argument("--fetch", choices=["auto", "manual"], default="auto", help="collect when it ends")
    @argument("--fetch-limit", metavar="SIZE", help="bigger files only when asked, e.g. 500MB")
    @argument("--outputs-glob", action="append", default=[], metavar="GLOB", help="outputs/ files")
    @argument("--exclude", action="append", default=[], metavar="GLOB", help="skip these files")
    @cell_magic
    @user_errors
    def gpu_submit(self, line: str, cell: str):
        """Run this cell on a GPU host; returns a job handle."""
        opts = parse(self.gpu_submit, line)
        if opts is None:
            return None
        request = self._request(opts, cell)
        handle = self._submit(request)
        ui().show_job(self.client, handle.id)
        if opts.wait:
            self._finish(handle.id, timeout=None)
        return handle

    def _submit(self, request: GPUJobRequest) -> JobHandle:
        """Submit on a thread while this one shows the upload's bar (past a second) and the
        submission's lines; Ctrl-C (an interrupt) cancels the upload, and the job with it."""
        upload, lines = TransferProgress(stopped=UPLOAD_STOPPED), queue.SimpleQueue()
        ns, cwd = self.shell.user_ns, Path(os.getcwd())
        work = lambda: self.client.submit(request, ns, cwd=cwd, say=lines.put, progress=upload)  # noqa: E731
        return ui().run_showing(lambda: upload, work, after_s=1.0, relay=lines, what="upload")

    def _request(self, opts, cell: str) -> GPUJobRequest:
        return GPUJobRequest.create(
            code=cell,
            language="bash" if opts.bash else "python",
            inputs=split_names(opts.inputs),
            outputs=split_names(opts.outputs),
            files=tuple(opts.files),
            follow_links=opts.follow_links,
            git=GitSource.parse(opts.git) if opts.git else None,
            env=parse_env(opts.env),
            secret_env=tuple(n for names in opts.secret_env for n in split_names(names)),
            args=split_args(opts.args),
            gpus=opts.gpus,
            name=opts.name,
            cluster=opts.cluster,
            timeout=opts.timeout,
            python=opts.python,
            venv=opts.venv,
            conda=opts.conda,
            fetch=opts.fetch,
            fetch_limit=opts.fetch_limit,
            outputs_glob=tuple(opts.outputs_glob),
            exclude=tuple(opts.exclude),
            notify=opts.notify,
            retries=opts.retries,
            retry_on=split_names(opts.retry_on),
            resources={
                **{k: getattr(opts, k) for k in RESOURCE_OPTIONS if getattr(opts, k) is not None},
                "sbatch": parse_sbatch_options(opts.sbatch),
            },
        )

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
            print(formatting.job_details(job, self.client.store.transitions(job.id)))
        else:
            ui().show_job(self.client, opts.job)
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
