"""Ship a ``Bundle`` to the host atomically and verified.

Small files travel in one tar stream over one exec channel (2-4x faster than per-file SFTP for
many small files); large files go over pipelined SFTP. Everything lands in ``{job}.partial``;
one final command checks every sha256 and renames the folder into place, so a job folder either
exists complete and verified or not at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
import time
from pathlib import PurePosixPath

from ..errors import ClusterConnectionError, GPUMagicError, TransferError
from ..jobdir import CHECKSUMS, JobDir
from ..transport.base import Progress, Transport, quote_argv
from .bundle import Bundle, BundleEntry

LARGE_FILE = 1 << 20


def upload_bundle(
    transport: Transport, bundle: Bundle, target: JobDir, progress: Progress | None = None
) -> None:
    partial = str(target.partial)
    small = [e for e in bundle.entries if e.size < LARGE_FILE]
    large = [e for e in bundle.entries if e.size >= LARGE_FILE]
    try:
        checksums = _send_tar(transport, small, large, partial, progress)
        for entry in large:
            remote = str(PurePosixPath(partial) / entry.rel)
            checksums[entry.rel] = transport.put_file(entry.source, remote, progress=progress)
        _verify_and_commit(transport, checksums, partial, str(target.root))
    except GPUMagicError as exc:
        _discard(transport, partial)
        if isinstance(exc, (TransferError, ClusterConnectionError)):
            raise
        raise TransferError(f"upload of job {bundle.job_id} failed: {exc}") from exc


def _send_tar(transport, small, large, partial, progress) -> dict[str, str]:
    """Stream the small files (and the folders the large ones need) as one tar archive."""
    checksums: dict[str, str] = {}
    command = (
        f"rm -rf {quote_argv(partial)} && mkdir -p {quote_argv(partial)} && "
        f"tar -x --no-same-owner -f - -C {quote_argv(partial)}"
    )
    now = time.time()
    with transport.stream_to(command) as stdin, tarfile.open(fileobj=stdin, mode="w|") as tar:
        for folder in sorted({str(PurePosixPath(e.rel).parent) for e in large} - {"."}):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        for entry in small:
            data = _read(entry)
            checksums[entry.rel] = hashlib.sha256(data).hexdigest()
            info = tarfile.TarInfo(entry.rel)
            info.size, info.mode, info.mtime = len(data), entry.mode, now
            tar.addfile(info, io.BytesIO(data))
            if progress:
                progress(len(data))
    return checksums


def _read(entry: BundleEntry) -> bytes:
    if entry.data is not None:
        return entry.data
    try:
        return entry.source.read_bytes()
    except OSError as exc:
        raise TransferError(f"cannot read {entry.source}: {exc}") from exc


def _verify_and_commit(transport: Transport, checksums: dict[str, str], partial: str, final: str):
    listing = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(checksums.items()))
    command = (
        f"cd {quote_argv(partial)} && cat > {CHECKSUMS} && "
        f"sha256sum --quiet --strict -c {CHECKSUMS} && cd .. && "
        f"mv -T {quote_argv(partial)} {quote_argv(final)}"
    )
    result = transport.run(command, stdin=listing.encode())
    if not result.ok:
        detail = (result.stderr or result.stdout).decode(errors="replace").strip()
        raise TransferError(f"upload verification failed for {final}: {detail}")


def _discard(transport: Transport, partial: str) -> None:
    """Best effort: never leave a half-uploaded folder behind."""
    with contextlib.suppress(GPUMagicError):
        transport.run(f"rm -rf {quote_argv(partial)}")
