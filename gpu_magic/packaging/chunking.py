"""Content-defined chunks of a large file, and what an edited version must send of them.

A dataset edited in place, or with rows inserted, keeps most of its chunks: FastCDC cuts where
the content says, not at fixed offsets, so an insertion moves only the cuts next to it. The
client remembers each large shipped file's chunk list (``LocalDigests``); when such a file
changed and the host's cache holds the version shipped before, the upload sends only the
chunks that version lacks plus a recipe (``Patch``). The host builds the new file from its
cached copy and those bytes (``remote/cache.py``) and checks its whole sha256, as for any
file sent, so a wrong recipe can cost a resend but never a wrong file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import xxhash
from pyfastcdc import FastCDC

from ..errors import TransferError

CHUNKED_MIN = 16 << 20  # smaller files are hashed whole and resent whole when they change
AVERAGE, SMALLEST, LARGEST = 256 << 10, 64 << 10, 1 << 20  # a chunk's size (FastCDC's bounds)
WORTH_IT = 0.5  # a patch must send at most this share of the file (else the file goes whole)
_RECORD = struct.Struct(">I16s")  # one chunk in the stored list: length, xxh3-128 digest
_CHUNKER = FastCDC(AVERAGE, min_size=SMALLEST, max_size=LARGEST)


@dataclass(frozen=True)
class Chunked:
    """A file's sha256 and its chunks in order, each as (length, xxh3-128 digest).

    A chunk is named by a fast non-cryptographic hash (~9 GB/s here, sha256 ~1.3 GB/s):
    two chunks that collided would make a wrong recipe, and a wrong recipe costs a resend,
    never a wrong file (the host checks the built file's sha256, see the module docstring)."""

    sha256: str
    chunks: tuple[tuple[int, bytes], ...]

    @property
    def size(self) -> int:
        return sum(length for length, _ in self.chunks)

    def encode(self) -> bytes:
        return b"".join(_RECORD.pack(length, digest) for length, digest in self.chunks)

    @classmethod
    def decode(cls, sha256: str, blob: bytes) -> Chunked:
        return cls(sha256, tuple(_RECORD.iter_unpack(blob)))


def cut(path: Path) -> tuple[tuple[int, bytes], ...]:
    """``path``'s chunks in order. Read through a file object, not mapped: a file truncated
    while it is read must be an error here, not a crash."""
    try:
        with open(path, "rb") as f:
            return tuple(
                (chunk.length, xxhash.xxh3_128_digest(chunk.data))
                for chunk in _CHUNKER.cut_stream(f)
            )
    except OSError as exc:
        raise TransferError(f"cannot read {path}: {exc.strerror or exc}") from exc


FROM_DELTA = -1  # a part's source offset when its bytes come in the delta, not from the base


@dataclass(frozen=True)
class Patch:
    """How the host builds a file from ``base`` (the sha256 of a version it holds): ``parts``
    in order, each ``(offset in base, length)`` or ``(FROM_DELTA, length)``, the next bytes of
    the delta. ``sent`` are the delta's ranges of the new file, ``(offset, length)``."""

    base: str
    parts: tuple[tuple[int, int], ...]
    sent: tuple[tuple[int, int], ...]

    @property
    def sent_bytes(self) -> int:
        return sum(length for _, length in self.sent)


def patch(new: Chunked, base: Chunked) -> Patch | None:
    """What ``new`` needs beyond ``base``'s chunks, adjacent parts merged; None when that is
    more than ``WORTH_IT`` of the file (sending it whole is as cheap and needs no base)."""
    where, offset = {}, 0
    for length, digest in base.chunks:
        where.setdefault(digest, offset)
        offset += length
    parts: list[list[int]] = []
    sent: list[list[int]] = []
    position = 0
    for length, digest in new.chunks:
        source = where.get(digest, FROM_DELTA)
        _extend(parts, source, length)
        if source == FROM_DELTA:
            _extend_range(sent, position, length)
        position += length
    result = Patch(base.sha256, tuple(map(tuple, parts)), tuple(map(tuple, sent)))
    return result if result.sent_bytes <= WORTH_IT * new.size else None


def _extend(parts: list[list[int]], source: int, length: int) -> None:
    """Append a part, merged into the last one when it continues it."""
    if parts:
        last_source, last_length = parts[-1]
        if (source == FROM_DELTA) == (last_source == FROM_DELTA) and (
            source == FROM_DELTA or source == last_source + last_length
        ):
            parts[-1][1] += length
            return
    parts.append([source, length])


def _extend_range(ranges: list[list[int]], offset: int, length: int) -> None:
    if ranges and ranges[-1][0] + ranges[-1][1] == offset:
        ranges[-1][1] += length
    else:
        ranges.append([offset, length])
