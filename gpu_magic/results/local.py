"""The local results store: one folder per job, with a manifest of what was collected.

{results_dir}/{job_id}/
  manifest.json    {"job_id", "attempt", "complete", "files": [{path, size, sha256, kind, fetched}],
                    "refused": [{path, why}], "archive"?}  -- written atomically (temp + rename)
  .partial/        downloads in progress (never read as results)
{results_dir}/.locks/{job_id}.lock                  held while one process writes the job's results
  output.log  metrics.jsonl  gpu.csv  outputs/...   verified copies, same paths as on the host
{results_dir}/{job_id}.tar.zst (or .tar.gz)         an archived job's files (``storage.archive``)

An archived job's folder keeps only ``manifest.json`` (its ``archive`` entry names the file,
format and members) and serves as the extraction cache: ``local()`` extracts a member on first
use, verified against its sha256, to the same path an unarchived copy has.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from ..config import private_dir
from ..errors import TransferError
from . import tarball
from .plan import unsafe

MANIFEST = "manifest.json"
PARTIAL = ".partial"
LOCKS = ".locks"


class LocalResults:
    def __init__(self, root: Path):
        self.root = Path(root).expanduser()

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def path(self, job_id: str, rel: str) -> Path:
        if unsafe(rel):
            raise TransferError(f"refusing the path {rel!r}: {unsafe(rel)}")
        return self.folder(job_id) / rel

    def partial(self, job_id: str, rel: str) -> Path:
        self.path(job_id, rel)  # the same check
        return self.folder(job_id) / PARTIAL / rel

    @contextmanager
    def writing(self, job_id: str) -> Iterator[None]:
        """Held while one process writes the job's results (collects, fetches, archives).
        Processes sharing this store (two kernels, the Jupyter server) wait here, then read the
        manifest the first one wrote: one collection per job. An OS file lock, so a holder
        killed with -9 frees it."""
        folder = self.root / LOCKS
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with FileLock(folder / f"{job_id}.lock"):
            yield

    def manifest(self, job_id: str) -> dict | None:
        try:
            return json.loads((self.folder(job_id) / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # never written half (atomic), so only a foreign file: collect again

    def write_manifest(self, job_id: str, manifest: dict) -> None:
        folder = self.folder(job_id)
        private_dir(folder)  # a job's results are the user's alone
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest-")
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(tmp, folder / MANIFEST)

    def read_text(self, job_id: str, rel: str) -> str | None:
        """A fetched file's text, or None when it was not collected."""
        entry = self.entry(job_id, rel)
        if entry is None or not entry["fetched"]:
            return None
        return self.local(job_id, rel).read_text("utf-8", "replace")

    def local(self, job_id: str, rel: str) -> Path:
        """The readable copy of a fetched file: in the folder, or extracted from the archive."""
        self.extract(job_id, [rel])
        return self.path(job_id, rel)

    def extract(self, job_id: str, rels: Iterable[str]) -> None:
        """Bring the archived files among ``rels`` that are not in the folder back into it, in
        one pass over the archive, each checked against the manifest's sha256."""
        manifest = self.manifest(job_id) or {"files": []}
        info = manifest.get("archive")
        missing = [rel for rel in rels if not self.path(job_id, rel).exists()]
        if info is None or not missing:
            return
        hashes = {e["path"]: e["sha256"] for e in manifest["files"]}
        wanted = {rel: hashes[rel] for rel in missing if rel in info["members"]}
        if wanted:
            tarball.extract(
                self.root / info["file"],
                info["format"],
                wanted,
                lambda rel: self.path(job_id, rel),
                self.member_check(manifest),
            )

    @staticmethod
    def member_check(manifest: dict):
        """What an archive of this manifest may hold: the manifest itself and its listed files,
        each a safe relative path (``plan.unsafe``); anything else is refused by name."""
        listed = {e["path"] for e in manifest["files"]}

        def check(name: str) -> str | None:
            if name == MANIFEST:
                return None
            return unsafe(name) or (None if name in listed else "not in the manifest")

        return check

    def fully_fetched(self, job_id: str) -> bool:
        """Every listed result is here (loose or archived): the host's copy is not needed."""
        manifest = self.manifest(job_id)
        if manifest is None or not manifest.get("complete"):
            return False
        return all(e["fetched"] for e in manifest["files"])

    def archive_file(self, job_id: str) -> Path | None:
        """The job's archive, when its results were archived."""
        info = (self.manifest(job_id) or {}).get("archive")
        return None if info is None else self.root / info["file"]

    def job_ids(self) -> list[str]:
        """Every job with something in the store (a folder or an archive)."""
        if not self.root.exists():
            return []
        found = {p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")}
        for suffix in tarball.SUFFIXES.values():
            found |= {p.name[: -len(suffix)] for p in self.root.glob(f"*{suffix}")}
        return sorted(found)

    def size(self, job_id: str) -> int:
        """Bytes the job takes here: its folder (links not followed) plus its archive."""
        return self.loose_size(job_id) + sum(p.stat().st_size for p in self._archives(job_id))

    def loose_size(self, job_id: str) -> int:
        """Bytes in the job's folder (links not followed), the archive left out."""
        return sum(p.lstat().st_size for p in self.folder(job_id).rglob("*") if _counted(p))

    def remove(self, job_id: str) -> None:
        """Delete everything the store holds for the job (folder and archive)."""
        shutil.rmtree(self.folder(job_id), ignore_errors=True)
        for path in self._archives(job_id):
            path.unlink(missing_ok=True)

    def _archives(self, job_id: str) -> list[Path]:
        paths = [self.root / f"{job_id}{suffix}" for suffix in tarball.SUFFIXES.values()]
        return [p for p in paths if p.exists()]

    def entry(self, job_id: str, rel: str) -> dict | None:
        manifest = self.manifest(job_id) or {"files": []}
        return next((e for e in manifest["files"] if e["path"] == rel), None)


def _counted(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()
