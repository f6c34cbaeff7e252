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


def metric_rows(records) -> list[dict]:
    """Metric records (``Telemetry.records``: x, epoch, values) as rows ``{"step": x,
    "epoch": e, name: value, ...}`` sorted by step. Records at one step share a row while
    their names differ (a bar's train_loss, then its val_loss); a name seen again there starts
    a new row, so a second evaluation at the last step does not overwrite the first, and a
    whole log entry (a Trainer dict, as in ``log_history``) is a row of its own."""
    rows: dict[float, list[dict]] = {}
    open_row: dict[float, bool] = {}  # whether the step's last row may take more names
    for record in records:
        at_step = rows.setdefault(record.x, [])
        shared = open_row.get(record.x) and not set(record.values) & set(at_step[-1])
        if record.whole or not shared:
            at_step.append({"step": record.x})
        row = at_step[-1]
        if record.epoch is not None:
            row.setdefault("epoch", record.epoch)
        row.update(record.values)
        open_row[record.x] = not record.whole
    return [row for x in sorted(rows) for row in rows[x]]


def write_csv(rows: list[dict], dest: Path) -> dict:
    """Write ``rows`` atomically to ``dest``; returns its manifest entry (size, sha256)."""
    names = sorted({k for row in rows for k in row} - {"step", "epoch"})
    first = ["step", "epoch"] if any("epoch" in row for row in rows) else ["step"]
    text = io.StringIO()
    writer = csv.DictWriter(text, [*first, *names], lineterminator="\n")
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


def final_values(rows: list[dict]) -> dict[str, float]:
    """Each metric's last value in ``metric_rows`` order (the end of training), step and
    epoch left out: what a sweep's results table compares members by."""
    final: dict[str, float] = {}
    for row in rows:
        final.update({k: v for k, v in row.items() if k not in ("step", "epoch")})
    return final
