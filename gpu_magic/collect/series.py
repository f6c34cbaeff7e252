"""The parsed metric series as rows and as ``parsed_metrics.csv`` in the results store.

``metrics.jsonl`` holds what the job reported itself; most jobs only print (tqdm, Trainer,
Lightning, Keras), so the series parsed from ``output.log`` are saved beside the raw files at
collection: one row per step, one column per metric, readable without gpu_magic.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
from pathlib import Path

PARSED_METRICS = "parsed_metrics.csv"


def metric_rows(series: dict[str, list[tuple[float, float]]]) -> list[dict]:
    """``{name: [(step, value)...]}`` as rows ``{"step": s, name: value, ...}`` by step."""
    rows: dict[float, dict] = {}
    for name, points in series.items():
        for x, value in points:
            rows.setdefault(x, {"step": x})[name] = value
    return [rows[x] for x in sorted(rows)]


def write_csv(rows: list[dict], dest: Path) -> dict:
    """Write ``rows`` atomically to ``dest``; returns its manifest entry (size, sha256)."""
    names = sorted({k for row in rows for k in row} - {"step"})
    text = io.StringIO()
    writer = csv.DictWriter(text, ["step", *names], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = text.getvalue().encode()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".series-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, dest)
    return {
        "path": PARSED_METRICS,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "kind": "metrics",
        "fetched": True,
    }
