"""Follow a job's log as it grows (``%gpu_logs JOB --follow``, ``gpu-magic logs -f``), driven
by the monitor."""

from __future__ import annotations

import codecs
import threading
from collections.abc import Iterator

from ..parsers.levels import LineFilter
from .monitor import Monitor


def follow_log(monitor: Monitor, job_id: str, wake_every: float = 1.0) -> Iterator[str]:
    """Yield the log text there is, then each new piece, until the job ended and all is read."""
    feed = monitor.feed(job_id)
    news = threading.Event()
    unsubscribe = feed.subscribe(lambda _update: news.set())
    hide = monitor.on_screen(job_id)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    sent = 0
    try:
        while True:
            done = feed.done  # read before the bytes: what arrives later is read next round
            data = feed.log_bytes()
            if len(data) > sent:
                yield decoder.decode(data[sent:])
                sent = len(data)
            if done:
                yield decoder.decode(b"", final=True)
                return
            news.wait(wake_every)
            news.clear()
    finally:
        unsubscribe()
        hide()


def follow_lines(monitor: Monitor, job_id: str, keep: LineFilter) -> Iterator[list[str]]:
    """``follow_log`` as the whole lines that ``keep`` keeps, a list per piece that brought
    any (the last line even without its newline, once the job has ended)."""
    pending = ""
    for text in follow_log(monitor, job_id):
        *lines, pending = (pending + text).split("\n")
        kept = [line for line in lines if keep.keep(line)]
        if kept:
            yield kept
    if pending and keep.keep(pending):
        yield [pending]
