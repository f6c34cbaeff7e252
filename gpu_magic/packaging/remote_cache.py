"""The client's side of the host's content-addressed cache (``remote/cache.py`` runs there).

A bundle's cacheable files (under ``code/``, ``inputs/`` and ``lib/``: the cell, the shipped
files, the pickled variables and the runtime) are named by their sha256; ONE command asks
the host which of those it lacks (``plan``), and only those are sent; the rest are
hard-linked from the cache when the upload is committed. A large file that changed since
it was last shipped, whose earlier version the host still holds, goes as a patch: only its
new chunks (``chunking``); the same question asks for that version too. The runtime's
sources are byte-compiled on the host once, their ``.pyc`` cached and linked like the rest.
Files shipped to
``outputs/`` or ``checkpoints/`` are never cached: a job overwrites those (a trainer's
``last.ckpt``), and a cached file is read-only because other jobs may hold the same inode.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

import tenacity

from .. import jobdir
from ..errors import RemoteCommandError, TransferError, transient
from ..transport.base import Program, Transport
from .bundle import Bundle, BundleEntry
from .chunking import CHUNKED_MIN, Chunked, Patch, patch
from .digests import LocalDigests, sha256_file

CACHE = Program.from_file(Path(__file__).resolve().parent.parent / "remote" / "cache.py")
CACHEABLE = (jobdir.CODE, jobdir.INPUTS, jobdir.LIB)
MANIFEST = ".gm_cache.json"
DELTA_SUFFIX = ".gm_delta"  # a patched file's new chunks travel as FILE.gm_delta
ASK_ATTEMPTS = 5


@dataclass(frozen=True)
class RemoteCache:
    """The cache of one host: its folder (``{base_path}/.cache/sha256``), and the Python
    that runs the helper there. ``root=None``: no cache (everything is sent)."""

    root: str | None
    interpreter: str = "python3"

    @classmethod
    def under(cls, base: str, interpreter: str) -> RemoteCache:
        return cls(posixpath.join(base, jobdir.CACHE), interpreter)

    def lacking(self, transport: Transport, hashes: set[str]) -> set[str]:
        """Which of ``hashes`` the host's cache does not hold: one command for them all (it
        only reads, so a dropped connection is simply asked again)."""
        if self.root is None or not hashes:
            return set(hashes)
        request = json.dumps({"root": self.root, "hashes": sorted(hashes)}).encode()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(transient),
            stop=tenacity.stop_after_attempt(ASK_ATTEMPTS),
            wait=tenacity.wait_random_exponential(multiplier=0.2, max=5),
            reraise=True,
        )
        result = retrying(
            transport.run_program, CACHE, self.interpreter, ["lacking"], stdin=request
        )
        try:
            return set(json.loads(result.check().text))
        except (RemoteCommandError, ValueError) as exc:
            raise TransferError(f"cannot ask the host's file cache {self.root}: {exc}") from exc

    def receive(self, transport: Transport, partial: str, final: str, *, fresh: bool):
        """The stream that ends an upload: a tar extracted into ``partial`` (emptied first when
        ``fresh``), then checked, linked from the cache and renamed to ``final``. Its answer
        comes when the stream is closed (``Transport.stream_to_program``)."""
        args = ["receive", self.root or "", MANIFEST, jobdir.CHECKSUMS, partial, final]
        if fresh:
            args.append("fresh")
        return transport.stream_to_program(CACHE, self.interpreter, args)

    def evict(self, transport: Transport) -> tuple[int, int]:
        """Remove the cached files no job folder links to: ``(files, bytes)`` freed."""
        result = transport.run_program(CACHE, self.interpreter, ["evict", self.root or ""])
        try:
            freed = json.loads(result.check().text)
            return int(freed["files"]), int(freed["bytes"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TransferError(f"unreadable answer from the cache {self.root}: {exc}") from exc


@dataclass
class Plan:
    """What one upload sends: ``digests`` of the bundle's cacheable entries; ``cached``,
    those the host holds already (linked, not sent); ``patches``, those built on the host
    from a version it holds and the new chunks (sent as ``rel + DELTA_SUFFIX``)."""

    digests: dict[str, str] = field(default_factory=dict)
    cached: dict[str, str] = field(default_factory=dict)
    cached_bytes: int = 0  # what the host holds of the bundle: cached files, patches' bases
    patches: dict[str, Patch] = field(default_factory=dict)

    def to_send(self, bundle: Bundle) -> list[BundleEntry]:
        """The entries that travel: the bundle less the cached ones, patched ones as deltas."""
        sent = []
        for entry in bundle.entries:
            if entry.rel in self.cached:
                continue
            found = self.patches.get(entry.rel)
            if found is not None:
                entry = dataclasses.replace(entry, rel=entry.rel + DELTA_SUFFIX, ranges=found.sent)
            sent.append(entry)
        return sent

    def listed(self, checksums: dict[str, str]) -> dict[str, str]:
        """``checksums`` of what was sent as the job folder lists them: a delta's line is its
        patched file's, with the whole file's sha256 (the host checks it once built)."""
        listed = {
            rel: digest
            for rel, digest in checksums.items()
            if rel.removesuffix(DELTA_SUFFIX) not in self.patches
        }
        listed.update({rel: self.digests[rel] for rel in self.patches})
        return listed

    def manifest(self) -> bytes:
        sent = {rel: h for rel, h in self.digests.items() if rel not in self.cached}
        patches = {
            rel: {"base": p.base, "parts": p.parts, "delta": rel + DELTA_SUFFIX}
            for rel, p in self.patches.items()
        }
        runtime = sorted(rel for rel in self.digests if _runtime_source(rel))
        manifest = {"add": sent, "link": self.cached, "patch": patches, "compile": runtime}
        return json.dumps(manifest).encode()


def plan(
    transport: Transport, bundle: Bundle, cache: RemoteCache, digests: LocalDigests | None
) -> Plan:
    """Hash the bundle's cacheable entries and ask the host which of them, and of the earlier
    versions of large changed files, it lacks (one command)."""
    entries = [e for e in bundle.entries if _cacheable(e)]
    if cache.root is None or not entries:
        return Plan()
    named = _sha256s(entries, digests)
    bases = _bases(entries, named, digests)
    wanted = set(named.values()) | {base.sha256 for base in bases.values()}
    lacking = cache.lacking(transport, wanted)
    cached = {rel: h for rel, h in named.items() if h not in lacking}
    patches = {
        rel: found
        for rel, base in bases.items()
        if named[rel] in lacking and base.sha256 not in lacking
        if (found := _patch(named[rel], base, digests)) is not None
    }
    sizes = {e.rel: e.size for e in entries}
    held = sum(sizes[rel] for rel in cached) + sum(
        sizes[rel] - p.sent_bytes for rel, p in patches.items()
    )
    return Plan(named, cached, held, patches)


def _bases(
    entries: list[BundleEntry], named: dict[str, str], digests: LocalDigests | None
) -> dict[str, Chunked]:
    """The earlier version of each large file that changed since it was last hashed."""
    if digests is None:
        return {}
    found = {}
    for entry in entries:
        if entry.source is not None and entry.data is None and entry.size >= CHUNKED_MIN:
            base = digests.previous(entry.source)
            if base is not None and base.sha256 != named[entry.rel]:
                found[entry.rel] = base
    return found


def _patch(digest: str, base: Chunked, digests: LocalDigests) -> Patch | None:
    new = digests.chunks(digest)
    return None if new is None else patch(new, base)


def _runtime_source(rel: str) -> bool:
    """Our runtime's Python sources (``lib/``): byte-compiled once per host, not per job."""
    return rel.startswith(f"{jobdir.LIB}/") and rel.endswith(".py")


def _cacheable(entry: BundleEntry) -> bool:
    return entry.link is None and entry.rel.split("/", 1)[0] in CACHEABLE


def _sha256s(entries: list[BundleEntry], digests: LocalDigests | None) -> dict[str, str]:
    """Each entry's sha256 by its ``rel``; files through ``digests`` (in one go) when given."""
    files = [e.source for e in entries if e.data is None]
    if digests is not None:
        known = digests.sha256_all(files)
    else:
        known = {path: sha256_file(path) for path in files}
    return {
        e.rel: known[e.source] if e.data is None else hashlib.sha256(e.data).hexdigest()
        for e in entries
    }
