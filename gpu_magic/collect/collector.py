"""Collect a finished job into the results store: list on the host, select, download verified."""

from __future__ import annotations

from pathlib import Path

from ..errors import TransferError
from ..models import GPUJob
from ..transport.base import Transport
from .download import download
from .plan import eager, list_remote, selected
from .progress import TransferProgress
from .store import ResultsStore


def collect(
    transport: Transport,
    interpreter: str,
    job: GPUJob,
    store: ResultsStore,
    progress: TransferProgress | None = None,
) -> dict:
    """Bring back what ``job``'s request selects; returns the (complete) manifest."""
    progress = progress or TransferProgress()
    files, refused = list_remote(transport, interpreter, job)
    manifest = {
        "job_id": job.id,
        "status": str(job.status),
        "complete": False,
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "kind": f.kind, "fetched": False}
            for f in files
            if selected(f, job)
        ],
        "refused": [{"path": p, "why": why} for p, why in refused],
    }
    store.write_manifest(job.id, manifest)
    todo = [f for f in files if selected(f, job) and eager(f, job)]
    progress.begin(sum(f.size for f in todo), len(todo))
    for entry, f in zip(manifest["files"], [f for f in files if selected(f, job)], strict=True):
        if eager(f, job):
            _fetch(transport, job, store, entry, progress)
            store.write_manifest(job.id, manifest)
    manifest["complete"] = True
    store.write_manifest(job.id, manifest)
    return manifest


def fetch_file(
    transport: Transport,
    job: GPUJob,
    store: ResultsStore,
    rel: str,
    progress: TransferProgress | None = None,
) -> Path:
    """The local copy of one listed file, downloaded now if it was not (``--fetch manual``)."""
    manifest = store.manifest(job.id)
    entry = next((e for e in (manifest or {"files": []})["files"] if e["path"] == rel), None)
    if entry is None:
        raise TransferError(f"job {job.id} has no collected file {rel!r}")
    if not entry["fetched"]:
        progress = progress or TransferProgress()
        progress.begin(entry["size"], 1)
        _fetch(transport, job, store, entry, progress)
        store.write_manifest(job.id, manifest)
    return store.path(job.id, rel)


def _fetch(
    transport: Transport, job: GPUJob, store: ResultsStore, entry: dict, progress: TransferProgress
) -> None:
    rel = entry["path"]
    remote = f"{job.remote_dir.rstrip('/')}/{rel}"
    dest, partial = store.path(job.id, rel), store.partial(job.id, rel)
    download(transport, remote, dest, partial, entry["size"], entry["sha256"], progress.advance)
    entry["fetched"] = True
    progress.file_done()
