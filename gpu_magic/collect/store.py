"""The local results store: one folder per job, with a manifest of what was collected.

{results_dir}/{job_id}/
  manifest.json    {"job_id", "complete", "files": [{path, size, sha256, kind, fetched}],
                    "refused": [{path, why}]}  -- written atomically (temp + rename)
  .partial/        downloads in progress (never read as results)
  output.log  metrics.jsonl  gpu.csv  outputs/...   verified copies, same paths as on the host
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import TransferError
from .plan import unsafe

MANIFEST = "manifest.json"
PARTIAL = ".partial"


class ResultsStore:
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

    def manifest(self, job_id: str) -> dict | None:
        try:
            return json.loads((self.folder(job_id) / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # never written half (atomic), so only a foreign file: collect again

    def write_manifest(self, job_id: str, manifest: dict) -> None:
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest-")
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(tmp, folder / MANIFEST)

    def read_text(self, job_id: str, rel: str) -> str | None:
        """A fetched file's text, or None when it was not collected."""
        entry = self.entry(job_id, rel)
        if entry is None or not entry["fetched"]:
            return None
        return self.path(job_id, rel).read_text("utf-8", "replace")

    def entry(self, job_id: str, rel: str) -> dict | None:
        manifest = self.manifest(job_id) or {"files": []}
        return next((e for e in manifest["files"] if e["path"] == rel), None)
