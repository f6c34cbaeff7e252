"""What to bring back: the host's listing (one round trip), checked, classified and selected.

The listing is computed on the host by ``gpu_magic/remote/listing.py`` (size of every regular
file, and the sha256 of the small ones: a big file's is computed while it downloads, see
``hash_command``; symlinks and escapes refused there). Its paths are checked again here: a path that
is absolute, has ``..`` or ``.`` parts, or is not one of the collected names is refused, so a
hostile or broken host cannot make us write outside the job's results folder.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import jobdir
from ..errors import TransferError
from ..models import GPUJob
from ..transport.base import Transport, quote_argv

LISTING_SOURCE = (Path(__file__).resolve().parent.parent / "remote" / "listing.py").read_text()
ERROR_FILE = f"{jobdir.STATE}/{jobdir.ERROR_JSON}"  # a failed cell's traceback
TOP_FILES = (jobdir.OUTPUT_LOG, jobdir.METRICS, jobdir.GPU_CSV, ERROR_FILE)

MODEL_SUFFIXES = {".pt", ".pth", ".safetensors", ".npy", ".npz", ".onnx", ".h5", ".joblib"}
PLOT_SUFFIXES = {".png", ".jpg", ".jpeg", ".svg", ".pdf", ".html"}


TAR_COMMAND_BYTES = 64 * 1024
"""Names per tar command: sshd hands the whole command line to ``sh -c`` as ONE argument, and
Linux caps one argument at 128 KiB (the listing script itself takes ~4 KiB of it)."""


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the job folder, POSIX
    size: int
    sha256: str | None  # None for a big file: hashed on the host while it downloads
    kind: str


def list_remote(transport: Transport, interpreter: str, job: GPUJob) -> tuple[list, list]:
    """``(files, refused)`` of the job folder, hashed on the host."""
    command = quote_argv(interpreter, "-c", LISTING_SOURCE, job.remote_dir)
    text = transport.run(command).check().text
    try:
        data = json.loads(text)
        raw = [(str(p), int(s), None if h is None else str(h)) for p, s, h in data["files"]]
        refused = [(str(p), str(why)) for p, why in data["refused"]]
    except (ValueError, KeyError, TypeError):
        raise TransferError(f"unreadable listing of {job.remote_dir}: {text[:200]!r}") from None
    files = []
    for path, size, digest in raw:
        why = unsafe(path)
        if why:
            refused.append((path, why))
        else:
            files.append(RemoteFile(path, size, digest, kind_of(path, job)))
    return files, refused


def hash_command(interpreter: str | None, remote: str) -> str:
    """The host's sha256 of one file: our script when we know the interpreter, else coreutils."""
    if interpreter is None:
        return quote_argv("sha256sum", "--", remote)
    return quote_argv(interpreter, "-c", LISTING_SOURCE, "--sha256", remote)


def tar_commands(interpreter: str, job: GPUJob, rels: list[str]) -> list[tuple[str, list[str]]]:
    """``(command, rels)`` batches that each stream a tar of their files from the job folder."""
    batches, batch, used = [], [], 0
    for rel in rels:
        cost = len(shlex.quote(rel)) + 1
        if batch and used + cost > TAR_COMMAND_BYTES:
            batches.append(batch)
            batch, used = [], 0
        batch.append(rel)
        used += cost
    if batch:
        batches.append(batch)
    head = (interpreter, "-c", LISTING_SOURCE, "--tar", job.remote_dir)
    return [(quote_argv(*head, *batch), batch) for batch in batches]


def unsafe(path: str) -> str | None:
    """Why ``path`` may not be written under a results folder (None when it may)."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\0" in path:
        return "not a relative path"
    if any(p in ("", ".", "..") for p in parts):
        return "'..' or empty part"
    if path not in TOP_FILES and (parts[0] != jobdir.OUTPUTS or len(parts) < 2):
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
    if path in TOP_FILES:
        return "metrics"
    if path in variables:
        return "variable"
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
    """Log, metrics and output variables always; other outputs by --outputs-glob/--exclude."""
    if f.kind in ("log", "metrics", "variable", "error"):
        return True
    rel = f.path.split("/", 1)[1]
    globs = job.request.outputs_glob or ("*",)
    wanted = any(fnmatch.fnmatchcase(rel, g) for g in globs)
    return wanted and not any(fnmatch.fnmatchcase(rel, g) for g in job.request.exclude)


def eager(f: RemoteFile, job: GPUJob) -> bool:
    """Downloaded at collection: the essentials always; others with --fetch auto, unless they
    are bigger than --fetch-limit (those wait for ``job.load``/``job.path``)."""
    if f.kind in ("log", "metrics", "variable", "error"):
        return True
    limit = job.request.fetch_limit
    return job.request.fetch == "auto" and (limit is None or f.size <= limit)
