"""What to bring back: the job folder's listing, checked, classified and selected.

The listing comes from ``Transport.list_tree`` (SFTP on a host: no command, so no login
shell's start-up before anything moves): sizes and types as ``lstat`` sees them. Only regular
files are collected; symlinks (never followed) and anything else are refused with the reason.
No sha256 comes with the listing: a small file's travels with its bytes in the tar stream
(``tarstream``), a big file's is computed on the host while it downloads, by that same tar
command (a final digests member), or by ``host_sha256`` when the file is fetched alone.
Every path is checked again here: a path that is absolute, has ``..`` or ``.`` parts, or is
not one of the collected names is refused, so a hostile or broken host cannot make us write
outside the job's results folder.
"""

from __future__ import annotations

import fnmatch
import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from .. import jobdir
from ..errors import TransferError
from ..models import GPUJob
from ..transport.base import DIR, FILE, SYMLINK, CommandResult, Program, Transport, quote_argv
from .series import PARSED_METRICS

LISTING = Program.from_file(Path(__file__).resolve().parent.parent / "remote" / "listing.py")
ERROR_FILE = f"{jobdir.STATE}/{jobdir.ERROR_JSON}"  # a failed cell's traceback
TOP_FILES = (jobdir.OUTPUT_LOG, jobdir.METRICS, jobdir.GPU_CSV, ERROR_FILE)
TREES = (jobdir.OUTPUTS, jobdir.CHECKPOINTS)
"""Folders collected recursively; ``checkpoints/`` is listed but only fetched on demand."""
ROOTS = (*TOP_FILES, *TREES)
LISTED = (*ROOTS, jobdir.CODE)
LEFT_ON_HOST = "left-on-host"
"""The kind of a file the cell wrote in its working folder (``code/``) outside ``outputs/``:
listed, so nothing is silently left behind, and fetched only when asked for."""
SCRATCH = frozenset({"__pycache__", ".ipynb_checkpoints"})
"""Folders under ``code/`` that Python and Jupyter write by themselves: never listed as left."""
SMALL = 1 << 20
"""Files smaller than this come in the tar stream, read whole and hashed by the host as it
sends them; bigger ones by SFTP, hashed on the host while they download."""

MODEL_SUFFIXES = {".pt", ".pth", ".safetensors", ".npy", ".npz", ".onnx", ".h5", ".joblib"}
PLOT_SUFFIXES = {".png", ".jpg", ".jpeg", ".svg", ".pdf", ".html"}


TAR_COMMAND_BYTES = 64 * 1024
"""Names per tar command: sshd hands the whole command line to ``sh -c`` as ONE argument, and
Linux caps one argument at 128 KiB (the listing script itself takes ~4 KiB of it)."""


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the job folder, POSIX
    size: int
    kind: str


def list_remote(transport: Transport, job: GPUJob) -> tuple[list, list]:
    """``(files, refused)`` of the job folder: regular files with safe paths, sorted; then the
    files the cell left in ``code/`` (see ``LEFT_ON_HOST``)."""
    return _classified(transport, job, transport.list_tree(job.remote_dir, LISTED))


def list_jobs(transport: Transport, jobs: Sequence[GPUJob]) -> dict[str, tuple[list, list]]:
    """``list_remote`` of several jobs whose folders share one parent (``tar_root``): ONE
    listing of that parent, each job's roots under its folder's name, so many jobs cost the
    round trips of one."""
    if len(jobs) == 1:
        return {jobs[0].id: list_remote(transport, jobs[0])}
    root = tar_root(jobs)
    names = {job.id: member_prefix(job, jobs) for job in jobs}
    found = transport.list_tree(root, [f"{names[job.id]}{r}" for job in jobs for r in LISTED])
    listed = {}
    for job in jobs:
        prefix = names[job.id]
        entries = [
            replace(e, path=e.path[len(prefix) :]) for e in found if e.path.startswith(prefix)
        ]
        listed[job.id] = _classified(transport, job, entries)
    return listed


def tar_root(jobs: Sequence[GPUJob]) -> str:
    """Where a tar of ``jobs``' files is taken from: the job folder of one job; the parent of
    several (they must share it)."""
    if len(jobs) == 1:
        return jobs[0].remote_dir
    (parent,) = {posixpath.dirname(job.remote_dir.rstrip("/")) for job in jobs}
    return parent


def member_prefix(job: GPUJob, jobs: Sequence[GPUJob]) -> str:
    """What names ``job``'s files under ``tar_root(jobs)``: nothing, or its folder's name."""
    return "" if len(jobs) == 1 else posixpath.basename(job.remote_dir.rstrip("/")) + "/"


def _classified(transport: Transport, job: GPUJob, entries: list) -> tuple[list, list]:
    files, refused = [], []
    shipped = _shipped(transport, job)
    for entry in sorted(entries, key=_order):
        top = entry.path.split("/")[0]
        if top == jobdir.CODE:
            if shipped is not None and _left_on_host(entry, shipped, job):
                files.append(RemoteFile(entry.path, entry.size, LEFT_ON_HOST))
            continue
        if entry.type == DIR and top in TREES:
            continue  # its files are listed
        why = _not_a_file(entry.type) or unsafe(entry.path)
        if why:
            refused.append((entry.path, why))
        else:
            files.append(RemoteFile(entry.path, entry.size, kind_of(entry.path, job)))
    return files, refused


def _shipped(transport: Transport, job: GPUJob) -> frozenset[str] | None:
    """The paths the upload put in the job folder (its ``.sha256`` list); None if unreadable,
    and then nothing under ``code/`` can be told apart from what the cell wrote."""
    try:
        listing = transport.read_file(f"{job.remote_dir.rstrip('/')}/{jobdir.CHECKSUMS}")
    except TransferError:
        return None
    lines = listing.decode("utf-8", "replace").splitlines()
    return frozenset(line.split("  ", 1)[1] for line in lines if "  " in line)


def _left_on_host(entry, shipped: frozenset[str], job: GPUJob) -> bool:
    """A regular file under ``code/`` that was not shipped, outside the git checkout (the
    repository's own files) and the folders Python writes by itself."""
    parts = entry.path.split("/")
    if entry.type != FILE or entry.path in shipped or SCRATCH.intersection(parts):
        return False
    return not (job.request.git is not None and entry.path.startswith(jobdir.GIT_CHECKOUT + "/"))


def _not_a_file(kind: str) -> str | None:
    if kind == SYMLINK:
        return "symlink"
    return None if kind == FILE else "not a regular file"


def _order(entry) -> tuple[int, str]:
    """The top files first, in their order, then each folder's files by path."""
    rank = next(
        (i for i, r in enumerate(ROOTS) if entry.path == r or entry.path.startswith(r + "/")),
        len(ROOTS),
    )
    return rank, entry.path


def host_sha256(transport: Transport, interpreter: str | None, remote: str) -> CommandResult:
    """Ask the host for the sha256 of one file: our script when we know the interpreter, else
    coreutils (the answer's first word either way)."""
    if interpreter is None:
        return transport.run(quote_argv("sha256sum", "--", remote))
    return transport.run_program(LISTING, interpreter, ["--sha256", remote])


def tar_batches(
    root: str, rels: list[str], bigs: Sequence[str] = ()
) -> list[tuple[list[str], list[str], list[str]]]:
    """``(args, rels, bigs)`` batches: ``LISTING`` with ``args`` streams a tar of ``rels``
    from the folder ``root`` (``tar_root``), then the host's sha256 of ``bigs``
    (``tarstream.DIGESTS``). Each batch's names fit one command line (``TAR_COMMAND_BYTES``);
    the big names go first, so the downloads waiting for their digests hear from the first."""
    batches, batch, used = [], ([], []), 0
    for big, rel in [(True, b) for b in bigs] + [(False, r) for r in rels]:
        cost = len(shlex.quote(rel)) + 1
        if (batch[0] or batch[1]) and used + cost > TAR_COMMAND_BYTES:
            batches.append(batch)
            batch, used = ([], []), 0
        batch[big].append(rel)
        used += cost
    if batch[0] or batch[1]:
        batches.append(batch)
    return [
        (["--tar", root, *small, *(["--digests", *big] if big else [])], small, big)
        for small, big in batches
    ]


def unsafe(path: str) -> str | None:
    """Why ``path`` may not be written under a results folder (None when it may)."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\0" in path:
        return "not a relative path"
    if any(p in ("", ".", "..") for p in parts):
        return "'..' or empty part"
    folders = (*TREES, jobdir.CODE)
    if path not in (*TOP_FILES, PARSED_METRICS) and (parts[0] not in folders or len(parts) < 2):
        return "not a collected file"
    return None


def kind_of(path: str, job: GPUJob) -> str:
    pure = PurePosixPath(path)
    suffix = pure.suffix.lower()
    variables = {f"{jobdir.OUTPUTS}/{n}{jobdir.PICKLE_SUFFIX}" for n in job.request.outputs}
    if path == jobdir.OUTPUT_LOG:
        return "log"
    if path == ERROR_FILE:
        return "error"
    if path in (*TOP_FILES, PARSED_METRICS):
        return "metrics"
    if path in variables:
        return "variable"
    if pure.parts[0] == jobdir.CHECKPOINTS:
        return "checkpoint"
    if "checkpoint" in path.lower() or "ckpt" in path.lower():
        return "checkpoint"
    if suffix in MODEL_SUFFIXES:
        return "model"
    if suffix in (".pkl", ".pickle"):
        return "pickle"
    if suffix in PLOT_SUFFIXES:
        return "plot"
    return "other"


def selected(f: RemoteFile, job: GPUJob) -> bool:
    """Log, metrics, output variables and checkpoints always (the last are only listed unless
    asked for); other outputs by --outputs-glob/--exclude."""
    if f.kind in ("log", "metrics", "variable", "error", LEFT_ON_HOST) or in_checkpoints(f):
        return True
    rel = f.path.split("/", 1)[1]
    globs = job.request.outputs_glob or ("*",)
    wanted = any(fnmatch.fnmatchcase(rel, g) for g in globs)
    return wanted and not any(fnmatch.fnmatchcase(rel, g) for g in job.request.exclude)


def essential(f: RemoteFile) -> bool:
    """What every collection brings: the log, the metrics, the variables, the error."""
    return f.kind in ("log", "metrics", "variable", "error")


def eager(f: RemoteFile, job: GPUJob, default_limit: int | None = None) -> bool:
    """Downloaded at collection: the essentials always; others with --fetch auto, unless they
    are bigger than --fetch-limit (else the ``gpu_magic_fetch_limit`` setting): those wait for
    ``job.load``/``job.path``."""
    if essential(f):
        return True
    if in_checkpoints(f) or f.kind == LEFT_ON_HOST:
        return False  # fetched on demand: job.load("checkpoints/...")
    limit = job.request.fetch_limit if job.request.fetch_limit is not None else default_limit
    return job.request.fetch == "auto" and (limit is None or f.size <= limit)


def in_checkpoints(f: RemoteFile) -> bool:
    return f.path.startswith(jobdir.CHECKPOINTS + "/")
