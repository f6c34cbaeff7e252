"""Ship a ``Bundle`` to the host atomically and verified, in as few round trips as possible.

Only what the host's content-addressed cache lacks is sent (``remote_cache``: one command asks).
Large files go first over pipelined SFTP into ``{job}.partial``, up to ``LARGE_AT_ONCE`` side by
side; then ONE command receives the small files as a tar stream (2-4x faster than per-file SFTP
for many small files) whose last members are the sha256 list of every file and the cache
manifest; the host's cache program (``remote/cache.py receive``, in a child of the host's helper
where there is one) extracts them with GNU tar, checks every file sent, links the cached ones
in, adds the new ones to the cache, and the folder is renamed into place. A job folder therefore
either exists complete and verified or not at all; a failure removes the partial folder. Each
command costs a remote shell start (often 50-100 ms with a heavy ``.bashrc``), so a bundle of
small files is exactly one command after the cache's question.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import tarfile
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import PurePosixPath

import tenacity

from ..errors import (
    ClusterConnectionError,
    GPUMagicError,
    RemoteCommandError,
    TransferCancelled,
    TransferError,
    transient,
)
from ..jobdir import CHECKSUMS, JobDir
from ..transport.base import FILE, Progress, Transport, quote_argv
from . import remote_cache
from .bundle import Bundle, BundleEntry
from .digests import LocalDigests
from .remote_cache import Plan, RemoteCache

log = logging.getLogger(__name__)


class Verification(TransferError):
    """The host's sha256 check of the uploaded folder failed."""


LARGE_FILE = 1 << 20
LARGE_AT_ONCE = 4
"""Large files sent side by side, each on an SFTP session of its own over the one connection.
For a link with a long round trip: a session's window (OpenSSH's sshd gives 2 MiB) lets
one file move at most that much per round trip, 40 MB/s at 50 ms. On the loopback sshd, where
the CPU is the limit, 1, 2 and 4 at once measure the same (150-159 MB/s for 4 x 25 MB; this
machine's kernel has no netem to lengthen the round trip)."""
UPLOAD_ATTEMPTS = 5
RESUME_HASH_CHUNK = 1 << 20
NO_CACHE = RemoteCache(None)


def upload_bundle(
    transport: Transport,
    bundle: Bundle,
    target: JobDir,
    progress: Progress | None = None,
    *,
    cache: RemoteCache = NO_CACHE,
    planned: Plan | None = None,
    digests: LocalDigests | None = None,
) -> None:
    """Upload ``bundle`` into ``target``, sending only what the host's ``cache`` lacks
    (``planned``: what ``remote_cache.plan`` found with ``digests``, else it is asked here); a
    dropped connection or a failed verification is retried (``UPLOAD_ATTEMPTS``, asking the
    cache again), resuming large files from what the host already holds (the commit's sha256
    check covers every byte sent, resent or not). After a failed verification, changed large
    files go whole, not as patches. A stop by the user is not retried."""
    partial, final = str(target.partial), str(target.root)
    plans = iter([planned] if planned is not None else [])
    verified = True  # False once a commit's check failed

    def attempt(again: bool) -> None:
        nonlocal verified
        chosen = next(plans, None) or remote_cache.plan(
            transport, bundle, cache, digests if verified else None
        )
        try:
            _upload_once(transport, bundle, partial, final, progress, again, cache, chosen)
        except Verification:
            verified = False
            raise

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_worth_retrying),
        stop=tenacity.stop_after_attempt(UPLOAD_ATTEMPTS),
        wait=tenacity.wait_random_exponential(multiplier=0.2, max=5),
        before_sleep=lambda state: log.info(
            "gpu_magic: upload of job %s again: %s", bundle.job_id, state.outcome.exception()
        ),
        reraise=True,
    )
    attempts = iter(range(UPLOAD_ATTEMPTS))
    try:
        retrying(lambda: attempt(next(attempts) > 0))
    except GPUMagicError as exc:
        _discard(transport, partial)
        if isinstance(exc, (TransferError, ClusterConnectionError)):
            raise
        raise TransferError(f"upload of job {bundle.job_id} to {final} failed: {exc}") from exc


def _worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, TransferCancelled):
        return False
    return isinstance(exc, TransferError) or transient(exc)


def _upload_once(
    transport, bundle: Bundle, partial: str, final: str, progress, again, cache, plan: Plan
) -> None:
    """One attempt. Only a repeated one asks what an earlier one left (the job id is new, so
    a first attempt finds nothing: no round trip spent asking)."""
    if again and _already_committed(transport, final):  # the commit ran; its answer was lost
        return
    sent = plan.to_send(bundle)
    small = [e for e in sent if e.size < LARGE_FILE]
    large = [e for e in sent if e.size >= LARGE_FILE]
    checksums = _send_large(transport, large, partial, progress, again)
    checksums.update(plan.cached)  # listed, so a later check covers the linked files too
    commit = _Commit(cache, plan, checksums)
    try:
        _send_small_and_commit(transport, small, commit, partial, final, not large, progress)
    except Verification:
        _discard(transport, partial)  # what the host holds is wrong: the next try resends all
        raise


def _already_committed(transport: Transport, final: str) -> bool:
    """Whether ``final`` is in place and verified (a first attempt's commit never is)."""
    check = f"cd {quote_argv(final)} 2>/dev/null && sha256sum --quiet --strict -c {CHECKSUMS}"
    return transport.run(check).ok


def _send_large(
    transport, large: list[BundleEntry], partial: str, progress, again: bool
) -> dict[str, str]:
    if not large:
        return {}
    held = _held(transport, partial, [e.rel for e in large]) if again else {}
    for folder in sorted({str(PurePosixPath(partial) / e.rel).rsplit("/", 1)[0] for e in large}):
        transport.makedirs(folder)  # SFTP, no remote shell
    stop = threading.Event()  # one file failed: the others stop at their next piece
    pieces = _stoppable(progress, stop)

    def one(e: BundleEntry) -> tuple[str, str]:
        return e.rel, _send_one(transport, e, f"{partial}/{e.rel}", held.get(e.rel, 0), pieces)

    at_once = min(LARGE_AT_ONCE, len(large))
    with ThreadPoolExecutor(at_once, thread_name_prefix="gpu_magic-upload") as pool:
        sending = [pool.submit(one, e) for e in large]
        try:
            wait(sending, return_when=FIRST_EXCEPTION)
        except BaseException:  # Ctrl-C while waiting
            stop.set()
            raise
        failed = next((f.exception() for f in sending if f.done() and f.exception()), None)
        if failed is not None:
            stop.set()
    if failed is not None:
        raise failed
    return dict(f.result() for f in sending)


def _stoppable(progress, stop: threading.Event):
    """``progress`` that raises ``TransferCancelled`` once ``stop`` is set."""

    def advance(n: int) -> None:
        if stop.is_set():
            raise TransferCancelled("another file of the upload failed")
        if progress:
            progress(n)

    return advance


def _held(transport: Transport, partial: str, rels: list[str]) -> dict[str, int]:
    """The sizes of the large files an earlier attempt left in ``partial`` (resumed, not resent)."""
    found = transport.list_tree(partial, rels)
    return {e.path: e.size for e in found if e.type == FILE}


def _send_one(transport, entry: BundleEntry, remote: str, held: int, progress) -> str:
    """Send ``entry`` from byte ``held`` on (0: all of it); returns its whole sha256."""
    digest = hashlib.sha256()
    with entry.open() as source:
        held = held if held <= entry.size else 0
        left = held
        while left and (chunk := source.read(min(left, RESUME_HASH_CHUNK))):
            digest.update(chunk)  # what the host holds already: hashed here, not sent again
            left -= len(chunk)
        if progress and held:
            progress(held)
        return transport.put_stream(
            source, remote, mode=entry.mode, progress=progress, offset=held, digest=digest
        )


@dataclass(frozen=True)
class _Commit:
    """What the commit needs besides the small files: the host's cache (whose helper program
    receives them), the plan (its manifest says what to add to the cache, what to link from
    it, what to build from patches), the checksums of what was sent so far."""

    cache: RemoteCache
    plan: Plan
    checksums: dict[str, str]


def _send_small_and_commit(transport, small, commit: _Commit, partial, final, fresh, progress):
    checksums = dict(commit.checksums)
    now = time.time()
    receiving = commit.cache.receive(transport, partial, final, fresh=fresh)
    try:
        with receiving as stdin, tarfile.open(fileobj=stdin, mode="w|") as tar:
            for entry in small:
                if entry.link is not None:  # a link inside its folder: no bytes to check
                    _add_link(tar, entry.rel, entry.link, now)
                    continue
                data = _read(entry)
                checksums[entry.rel] = hashlib.sha256(data).hexdigest()
                _add(tar, entry.rel, data, entry.mode, now)
                if progress:
                    progress(len(data))
            listed = sorted(commit.plan.listed(checksums).items())
            listing = "".join(f"{digest}  {rel}\n" for rel, digest in listed)
            _add(tar, CHECKSUMS, listing.encode(), 0o600, now)
            _add(tar, remote_cache.MANIFEST, commit.plan.manifest(), 0o600, now)
    except RemoteCommandError as exc:
        raise Verification(f"upload verification failed for {final}: {exc.stderr.strip()}") from exc


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, mtime
    tar.addfile(info, io.BytesIO(data))


def _add_link(tar: tarfile.TarFile, name: str, target: str, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime, info.mode = tarfile.SYMTYPE, target, mtime, 0o777
    tar.addfile(info)


def _read(entry: BundleEntry) -> bytes:
    if entry.data is not None:
        return entry.data
    with entry.open() as source:
        return source.read()


def _discard(transport: Transport, partial: str) -> None:
    """Best effort: never leave a half-uploaded folder behind."""
    with contextlib.suppress(GPUMagicError):
        transport.run(f"rm -rf {quote_argv(partial)}")
