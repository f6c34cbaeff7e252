"""``report()``: the explicit metrics channel, called from the job's own code on the GPU host.

    from gpu_magic.remote import report
    report(step=i, total=n_steps, loss=loss.item(), lr=sched.get_last_lr()[0])

Each call appends one JSON line to ``$GPU_MAGIC_JOB_DIR/metrics.jsonl`` (run.sh sets the
variable; without it, ``./metrics.jsonl`` and a warning, once):

    {"t": 1764162000.5, "step": 120, "total": 1000, "values": {"loss": 0.53, "lr": 0.0001}}

One ``write()`` of the whole line on an ``O_APPEND`` descriptor, under a lock: concurrent threads
never interleave, and a reader sees at most one partial (last) line. Values are numbers: Python
numbers, and numpy / torch scalars through ``float()``; NaN and infinities are kept (written as
``NaN`` / ``Infinity``, which Python's json reads back); anything else is a TypeError. A file
that cannot be written (full disk) gives one RuntimeWarning and the records are dropped: the
training loop goes on. Stdlib only.
"""

from __future__ import annotations

import json
import numbers
import operator
import os
import threading
import time
import warnings

METRICS = "metrics.jsonl"  # == gpu_magic.jobdir.METRICS (a test keeps them equal)
JOB_DIR_ENV = "GPU_MAGIC_JOB_DIR"

_lock = threading.Lock()
_fd: int | None = None
_fd_path: str | None = None
_warned = False
_io_warned = False


def report(
    step: int | None = None,
    total: int | None = None,
    epoch: int | None = None,
    epochs: int | None = None,
    **metrics: float,
) -> None:
    """Record progress and/or metrics for the notebook's live view."""
    record: dict = {"t": time.time()}
    for name, value in (("step", step), ("total", total), ("epoch", epoch), ("epochs", epochs)):
        if value is not None:
            record[name] = _count(name, value)
    record["values"] = {name: _number(name, value) for name, value in metrics.items()}
    line = json.dumps(record, separators=(",", ":")) + "\n"
    _append(line.encode())


def _count(name: str, value) -> int:
    if isinstance(value, bool):
        raise TypeError(f"report(): {name} must be an integer, not bool")
    try:
        return operator.index(value)
    except TypeError:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(
            f"report(): {name} must be an integer, not {type(value).__name__}"
        ) from None


def _number(name: str, value) -> float:
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(
            f"report(): metric {name!r} must be a number, "
            f"not {type(value).__name__} ({value!r:.60})"
        )
    try:  # numpy / torch scalars, 0-d arrays and one-element tensors
        number = float(value)
    except Exception as e:
        raise TypeError(
            f"report(): metric {name!r} must be a single number, got {type(value).__name__}: {e}"
        ) from None
    return number


def _path() -> str:
    global _warned
    job_dir = os.environ.get(JOB_DIR_ENV)
    if job_dir:
        return os.path.join(job_dir, METRICS)
    if not _warned:
        _warned = True
        warnings.warn(
            f"gpu_magic report(): {JOB_DIR_ENV} is not set (not running as a gpu_magic job?); "
            f"writing ./{METRICS}",
            RuntimeWarning,
            stacklevel=3,
        )
    return os.path.abspath(METRICS)


def _append(data: bytes) -> None:
    global _io_warned
    path = _path()
    try:
        with _lock:
            fd = _open(path)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
    except OSError as e:  # a full disk must not kill the training loop: warn once, drop
        if not _io_warned:
            _io_warned = True
            warnings.warn(
                f"gpu_magic report(): cannot write {path}: {e}; metrics are dropped",
                RuntimeWarning,
                stacklevel=3,
            )


def _open(path: str) -> int:
    global _fd, _fd_path
    if _fd is None or _fd_path != path:
        if _fd is not None:
            os.close(_fd)
            _fd = None
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fd_path = path
    return _fd


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
