"""Archive one job's local results: ``{results_dir}/{job_id}.tar.zst`` beside its manifest.

Order matters for a crash at any point: the archive is written under a temporary name and
verified member by member (sha256 against the manifest) before it is renamed into place; then
the manifest beside it gains its ``archive`` entry (atomically); only then are the loose files
removed. Interrupted anywhere, the store still reads correctly (loose files or archive).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import JobStateError
from . import tarball

if TYPE_CHECKING:  # pragma: no cover
    from .local import LocalResults

MANIFEST = "manifest.json"


def archive_results(store: LocalResults, job_id: str) -> Path:
    """Pack the job's fetched files (and its manifest) into one archive; returns its path.
    An archived job is packed again only when files were fetched after it was archived."""
    manifest = store.manifest(job_id)
    if manifest is None or not manifest.get("complete"):
        raise JobStateError(f"job {job_id} has no complete results to archive")
    names = [e["path"] for e in manifest["files"] if e["fetched"]]
    info = manifest.get("archive")
    if info is not None and set(info["members"]) == set(names):
        _drop_loose_files(store, job_id)  # already archived: only the extraction cache goes
        return store.root / info["file"]
    store.extract(job_id, names)  # a new archive needs every member loose first
    return _pack(store, job_id, manifest, names)


def _pack(store: LocalResults, job_id: str, manifest: dict, names: list[str]) -> Path:
    fmt = tarball.best_format()
    dest = store.root / f"{job_id}{tarball.SUFFIXES[fmt]}"
    inner = {k: v for k, v in manifest.items() if k != "archive"}
    inner["archive"] = {"file": dest.name, "format": fmt, "members": names}
    first = {MANIFEST: json.dumps(inner, indent=1).encode()}
    hashes = {e["path"]: e["sha256"] for e in manifest["files"] if e["fetched"]}
    hashes[MANIFEST] = hashlib.sha256(first[MANIFEST]).hexdigest()
    check = store.member_check(manifest)
    size = tarball.pack(dest, fmt, first, store.folder(job_id), names, check, hashes)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    inner["archive"].update(size=size, created=stamp)
    store.write_manifest(job_id, inner)  # from here on, reads come from the archive
    _drop_loose_files(store, job_id)
    for other in tarball.SUFFIXES.values():  # a former archive in the other format
        stale = store.root / f"{job_id}{other}"
        if stale != dest:
            stale.unlink(missing_ok=True)
    return dest


def _drop_loose_files(store: LocalResults, job_id: str) -> None:
    """Everything in the job's folder but the manifest (the archive holds it all)."""
    for path in store.folder(job_id).iterdir():
        if path.name == MANIFEST:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
