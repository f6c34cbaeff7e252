"""Land many small files from ONE tar stream, each verified, none trusted.

One tar of 1000 small files moves over one channel in about the time ``sftp`` needs for a
tenth of them (shared/toolchain/TOOLCHAIN.md). But a tar stream is written by the host, so
nothing in it is taken on trust: ``tarfile.extractall`` is never used. A member is accepted only
when it is a regular file whose name is exactly one of the paths we asked for (and passes
``plan.unsafe``) with the size the listing gave and a ``GPU_MAGIC.sha256`` pax header (the
host's digest of the very bytes it sent, ``remote/listing.py``); its bytes go to that path's
``.partial`` file, hashed as they are written, and are renamed into place only when the
sha256 equals the header's. Anything else (``../x``, an absolute name, a link or device, a
name not asked for, a wrong size, no or a malformed header, other bytes than the header
says, a truncated stream) raises ``TransferError`` naming the member, and whatever was not
verified is never visible.

One name is reserved: ``DIGESTS`` (``.gpu_magic/digests.json``, which no collected file can be
called), the member in which the same command reports the host's sha256 of the big files
downloading over SFTP meanwhile. It is never landed on disk: when digests were asked for,
it must be one regular member, at most ``digests_limit`` bytes, holding a JSON object that
maps requested big names (only those) to lower-case sha256s; ``Sink.digests`` hears it as
soon as it arrives. A link by that name, a second one, one not asked for, bad JSON or a name
not requested raise ``TransferError`` naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import TransferError
from ..transport.base import copy_chunks, iter_chunks
from .plan import unsafe

CHUNK = 1 << 16
REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
HEADER = "GPU_MAGIC.sha256"  # the pax header listing.py's --tar writes
DIGESTS = ".gpu_magic/digests.json"  # the member listing.py's --tar --digests writes last
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Wanted:
    size: int  # what the listing said
    dest: Path  # where the verified copy becomes visible
    partial: Path  # where its bytes land first


@dataclass
class Sink:
    """Who hears about progress: bytes as they land, bytes thrown away (each with the member's
    name: one stream may carry several jobs' files), files verified (with their sha256)."""

    advance: Callable[[str, int], None]
    rewind: Callable[[str, int], None]
    landed: Callable[[str, str], None]
    digests: Callable[[dict[str, str]], None] = lambda digests: None  # the DIGESTS member's
    folders: set[Path] = field(default_factory=set)  # made already: 1000 files, 2 folders

    def folder(self, path: Path) -> None:
        if path.parent not in self.folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.folders.add(path.parent)


def receive(
    stream: BinaryIO, wanted: dict[str, Wanted], sink: Sink, bigs: Collection[str] = ()
) -> None:
    """Land every member of the tar ``stream``; each landed name is removed from ``wanted``
    (what is left afterwards, the host did not send). ``bigs``: the files whose sha256 the
    stream was asked to report (``DIGESTS``), handed to ``sink.digests``."""
    name, heard = None, False
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = member.name
                if name == DIGESTS:
                    sink.digests(_digests(tar, member, bigs, heard))
                    heard, name = True, None
                    continue
                target = _check(member, wanted)
                digest = _land(tar, member, target, sink)
                del wanted[name]
                sink.landed(name, digest)
                name = None
    except tarfile.TarError as exc:
        where = f" in member {name!r}" if name else ""
        raise TransferError(f"the tar stream from the host is broken{where}: {exc}") from exc


def digests_limit(bigs: Collection[str]) -> int:
    """The most bytes a faithful DIGESTS member for ``bigs`` takes (compact JSON), plus room
    for whitespace: anything longer is refused unread."""
    return 1024 + sum(len(json.dumps(rel)) + 68 for rel in bigs)


def _digests(
    tar: tarfile.TarFile, member: tarfile.TarInfo, bigs: Collection[str], heard: bool
) -> dict[str, str]:
    """The host's ``{big name: sha256}`` from the DIGESTS member, checked."""

    def refuse(why: str) -> TransferError:
        return TransferError(f"refused tar member {DIGESTS!r} from the host: {why}")

    if member.issym() or member.islnk():
        raise refuse(f"a link to {member.linkname!r}")
    if member.type not in REGULAR:
        raise refuse("not a regular file")
    if heard:
        raise refuse("a second digests member")
    if not bigs:
        raise refuse("no digests were asked for")
    if member.size > digests_limit(bigs):
        raise refuse(f"{member.size} bytes, more than digests of {len(bigs)} file(s) take")
    data = tar.extractfile(member).read()
    try:
        found = json.loads(data.decode("utf-8"), object_pairs_hook=_no_repeats)
    except ValueError as exc:  # also UnicodeDecodeError
        raise refuse(f"not valid JSON: {exc}") from None
    if not isinstance(found, dict):
        raise refuse("not a JSON object")
    extra = sorted(set(found) - set(bigs))
    if extra:
        raise refuse(f"digests for files not requested: {extra[:5]!r}")
    bad = sorted(rel for rel, digest in found.items() if not _is_sha256(digest))
    if bad:
        raise refuse(f"no valid sha256 for {bad[:5]!r}")
    return found


def _no_repeats(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a name given twice")
    return dict(pairs)


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and SHA256.fullmatch(value) is not None


def refusal(member: tarfile.TarInfo, wanted: dict[str, Wanted]) -> str | None:
    """Why ``member`` may not land (None when it may). A requested name passed ``unsafe``
    when it was listed (and its ``Wanted`` says where it lands, not the member's name)."""
    if member.name not in wanted:
        return unsafe(member.name) or "not one of the requested files"
    if member.issym() or member.islnk():
        return f"a link to {member.linkname!r}"
    if member.type not in REGULAR:
        return "not a regular file"
    if member.size != wanted[member.name].size:
        return f"{member.size} bytes, the listing said {wanted[member.name].size}"
    if not SHA256.fullmatch(member.pax_headers.get(HEADER, "")):
        return f"no valid {HEADER} header"
    return None


def _check(member: tarfile.TarInfo, wanted: dict[str, Wanted]) -> Wanted:
    why = refusal(member, wanted)
    if why:
        raise TransferError(f"refused tar member {member.name!r} from the host: {why}")
    return wanted[member.name]


def _land(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Wanted, sink: Sink) -> str:
    """Member bytes to the partial file, hashed on the way; renamed in place when they match
    the host's sha256 (returned)."""
    digest, written = hashlib.sha256(), [0]

    def moved(n: int) -> None:
        written[0] += n
        sink.advance(member.name, n)

    sink.folder(target.partial)
    try:
        with open(target.partial, "wb", buffering=0) as dst:  # no buffer: fewer syscalls
            copy_chunks(iter_chunks(tar.extractfile(member), CHUNK), dst, moved, digest)
        if digest.hexdigest() != member.pax_headers[HEADER]:
            raise TransferError(
                f"tar member {member.name!r}: sha256 of the bytes received does not match "
                f"the host's ({HEADER} header)"
            )
    except BaseException:
        target.partial.unlink(missing_ok=True)
        sink.rewind(member.name, written[0])
        raise
    sink.folder(target.dest)
    os.replace(target.partial, target.dest)
    return digest.hexdigest()
