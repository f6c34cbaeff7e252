"""The archive format: one compressed tar of a job's results, written, verified and read safely.

``zstd`` (``.tar.zst``, zstandard level 3 on all cores: several hundred MB/s, so archiving is
bounded by the disk, not the CPU) is used when the ``zstandard`` package imports; otherwise
``gzip`` (``.tar.gz``, level 1, its fastest). Members are regular files only, named by their
manifest path (``manifest.json`` first). Nothing here ever trusts a member's name to build a
path: readers ask for members by name and say where each one goes, and ``check`` refuses any
member that is not a regular file the caller expects (tar-slip, links, devices, strangers).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from ..errors import TransferError

SUFFIXES = {"zstd": ".tar.zst", "gzip": ".tar.gz"}
ZSTD_LEVEL = 3
GZIP_LEVEL = 1
CHUNK = 1 << 20

Check = Callable[[str], "str | None"]
"""Why a member name may not be read (None: it may)."""


def _zstandard():
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def best_format() -> str:
    """``zstd`` when the zstandard package is importable, else ``gzip``."""
    return "zstd" if _zstandard() is not None else "gzip"


@contextmanager
def _compressing(raw: BinaryIO, fmt: str) -> Iterator[BinaryIO]:
    if fmt == "zstd":
        compressor = _zstandard().ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
        with compressor.stream_writer(raw, closefd=False) as stream:
            yield stream
    else:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as stream:
            yield stream


@contextmanager
def _decompressing(path: Path, fmt: str) -> Iterator[BinaryIO]:
    with open(path, "rb") as raw:
        if fmt == "zstd":
            zstandard = _zstandard()
            if zstandard is None:
                raise TransferError(f"{path.name} is zstd-compressed: pip install zstandard")
            with zstandard.ZstdDecompressor().stream_reader(raw) as stream:
                yield stream
        else:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield stream


@contextmanager
def _members(path: Path, fmt: str) -> Iterator[tarfile.TarFile]:
    """The archive opened as a stream (no seeking: zstd frames are read front to back)."""
    try:
        with _decompressing(path, fmt) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            yield tar
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise TransferError(f"cannot read archive {path}: {exc}") from None
    except Exception as exc:  # zstandard.ZstdError and friends: a corrupt frame
        if isinstance(exc, TransferError):
            raise
        raise TransferError(f"cannot read archive {path}: {type(exc).__name__}: {exc}") from None


def pack(
    dest: Path, fmt: str, first: dict[str, bytes], folder: Path, names: list[str], check: Check,
    hashes: dict[str, str],
) -> int:  # fmt: skip
    """Write the in-memory members ``first`` then ``names`` (files under ``folder``) into
    ``dest``: a temporary file first, verified against ``hashes`` (name -> sha256 of every
    member), then renamed into place. Returns the archive's size."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}-")
    try:
        with os.fdopen(fd, "wb") as raw:
            _write(raw, fmt, first, folder, names)
            raw.flush()
            os.fsync(raw.fileno())
        verify(Path(tmp), fmt, check, hashes)
        os.replace(tmp, dest)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return dest.stat().st_size


def _write(raw: BinaryIO, fmt: str, first: dict[str, bytes], folder: Path, names: list[str]):
    with _compressing(raw, fmt) as stream, tarfile.open(fileobj=stream, mode="w|") as tar:
        for name, data in first.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name in names:
            source = folder / name
            info = tarfile.TarInfo(name)
            stat = source.stat()
            info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o644
            with open(source, "rb") as f:
                tar.addfile(info, f)


def verify(path: Path, fmt: str, check: Check, hashes: dict[str, str]) -> None:
    """Re-read the whole archive: exactly the expected members, each with its sha256."""
    seen: dict[str, str] = {}
    with _members(path, fmt) as tar:
        for member in tar:
            _refuse(member, check, path)
            if member.name in seen:
                raise TransferError(f"archive {path.name} holds {member.name!r} twice")
            seen[member.name] = _sha256(tar.extractfile(member))
    if set(seen) != set(hashes):
        missing = sorted(set(hashes) - set(seen))
        raise TransferError(f"archive {path.name} lacks {missing or 'nothing'}")
    wrong = sorted(n for n, digest in seen.items() if digest != hashes[n])
    if wrong:
        raise TransferError(f"archive {path.name}: sha256 mismatch for {wrong}")


def extract(
    path: Path, fmt: str, wanted: dict[str, str], dest_of: Callable[[str], Path], check: Check
) -> None:
    """Copy the ``wanted`` members (name -> sha256) to ``dest_of(name)``, each verified and
    renamed into place. Stops reading once all were found; every member read up to there must
    pass ``check``, so a hostile archive is refused, naming the member, before anything lands."""
    todo = dict(wanted)
    with _members(path, fmt) as tar:
        for member in tar:
            _refuse(member, check, path)
            if member.name in todo:
                _save(tar.extractfile(member), dest_of(member.name), todo.pop(member.name), path)
            if not todo:
                return
    raise TransferError(f"archive {path.name} lacks {sorted(todo)}")


def _refuse(member: tarfile.TarInfo, check: Check, path: Path) -> None:
    why = check(member.name) or (None if member.isreg() else "not a regular file")
    if why:
        raise TransferError(f"archive {path.name}: refusing member {member.name!r}: {why}")


def _save(source: BinaryIO, dest: Path, sha256: str, path: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}-")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: source.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise TransferError(f"archive {path.name}: sha256 mismatch for {dest.name}")
        os.replace(tmp, dest)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def _sha256(source: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: source.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()
