"""A ``Bundle`` is the job folder before upload: every file with its bytes or local source.

It also ships the remote runner (``lib/gpu_magic/remote``) and the kernel's own ``cloudpickle``
(``lib/cloudpickle``), so the host needs only a Python of the same minor version, and pickles are
read by the very cloudpickle that wrote them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import cloudpickle

from .. import jobdir
from ..errors import InvalidRequestError, TransferError
from ..formatting import size
from ..models import GPUJobRequest
from .files import LocalFile

REMOTE_PACKAGE = Path(__file__).resolve().parent.parent / "remote"
CLOUDPICKLE_PACKAGE = Path(cloudpickle.__file__).resolve().parent


@dataclass(frozen=True)
class BundleEntry:
    rel: str
    data: bytes | None = None
    source: Path | None = None
    mode: int = 0o600
    link: str | None = None  # a symbolic link: its relative target (no data)
    ranges: tuple[tuple[int, int], ...] | None = None  # only these (offset, length) of source

    @property
    def size(self) -> int:
        if self.link is not None:
            return 0
        if self.ranges is not None:
            return sum(length for _, length in self.ranges)
        return len(self.data) if self.data is not None else self.source.stat().st_size

    def open(self) -> BinaryIO:
        """The entry's bytes as a stream: in memory (a pickled variable), its local file, or
        the given ranges of that file one after another (a delta)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        try:
            file = open(self.source, "rb")  # noqa: SIM115 (the caller's with-block closes it)
        except OSError as exc:
            raise TransferError(f"cannot read {self.source}: {exc.strerror or exc}") from exc
        return file if self.ranges is None else io.BufferedReader(_Ranges(file, self.ranges))


class _Ranges(io.RawIOBase):
    """The bytes of ``file`` at ``ranges``, read as one stream."""

    def __init__(self, file: BinaryIO, ranges: tuple[tuple[int, int], ...]):
        self._file, self._ranges, self._at = file, list(ranges), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._ranges and self._at == self._ranges[0][1]:
            self._ranges.pop(0)
            self._at = 0
        if not self._ranges:
            return 0
        offset, length = self._ranges[0]
        self._file.seek(offset + self._at)
        wanted = min(len(buffer), length - self._at)
        got = self._file.readinto(memoryview(buffer)[:wanted])
        if not got:
            raise TransferError(f"{self._file.name} changed while it was sent (shorter now)")
        self._at += got
        return got

    def close(self) -> None:
        self._file.close()
        super().close()


@dataclass
class Bundle:
    job_id: str
    entries: list[BundleEntry] = field(default_factory=list)
    input_sizes: dict[str, int] = field(default_factory=dict)
    shipped_files: list[LocalFile] = field(default_factory=list)

    def add(
        self,
        rel: str,
        data: bytes | None = None,
        source: Path | None = None,
        mode: int = 0o600,
        link: str | None = None,
    ) -> None:
        self.entries.append(BundleEntry(rel, data, source, mode, link))

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def manifest_line(self, cluster: str, cached: int = 0) -> str:
        """The one line shown before upload: variables with sizes, files and bytes, and how
        many of those bytes the host's cache holds already (not sent again)."""
        inputs = ", ".join(f"{k} ({size(v)})" for k, v in self.input_sizes.items())
        shipped = sum(f.size for f in self.shipped_files)
        held = f" ({size(cached)} already on the host)" if cached else ""
        return (
            f"gpu_magic: job {self.job_id} → {cluster} | inputs: {inputs or 'none'} | "
            f"files: {len(self.shipped_files)} ({size(shipped)}) | "
            f"upload {size(self.total_bytes - cached)}{held}"
        )


def build_bundle(
    job_id: str,
    request: GPUJobRequest,
    pickled_inputs: dict[str, bytes],
    files: list[LocalFile],
    run_script: str,
) -> Bundle:
    bundle = Bundle(job_id, input_sizes={k: len(v) for k, v in pickled_inputs.items()})
    main = jobdir.main_file(request.language)
    bundle.add(jobdir.SPEC, request.model_dump_json(indent=2).encode())
    bundle.add(jobdir.RUN_SCRIPT, run_script.encode(), mode=0o700)
    bundle.add(f"{jobdir.CODE}/{main}", request.code.encode(), mode=0o700)
    for name, data in pickled_inputs.items():
        bundle.add(f"{jobdir.INPUTS}/{name}{jobdir.PICKLE_SUFFIX}", data)
    for local in files:
        if local.rel == main:
            raise InvalidRequestError(f"--files: {local.source} would overwrite the cell ({main})")
        if local.link is not None:
            bundle.add(jobdir.shipped_path(local.rel), link=local.link)
        else:
            bundle.add(
                jobdir.shipped_path(local.rel), source=local.source, mode=_mode(local.source)
            )
    bundle.shipped_files = list(files)
    _add_runtime(bundle)
    return bundle


def _add_runtime(bundle: Bundle) -> None:
    bundle.add(f"{jobdir.LIB}/gpu_magic/__init__.py", b"")
    for rel, source in _python_sources(REMOTE_PACKAGE):
        bundle.add(f"{jobdir.LIB}/gpu_magic/remote/{rel}", source=source)
    for rel, source in _python_sources(CLOUDPICKLE_PACKAGE):
        bundle.add(f"{jobdir.LIB}/cloudpickle/{rel}", source=source)


def _python_sources(package: Path) -> Iterator[tuple[str, Path]]:
    for source in sorted(package.rglob("*.py")):
        yield source.relative_to(package).as_posix(), source


def _mode(path: Path) -> int:
    """The file's permission bits for its owner, none for anyone else: a job folder holds
    ``--env`` values and data, so everything in it is private to the user (an executable stays
    executable; every file stays readable and writable by its owner, so uploads can resume)."""
    return private_mode(path.stat().st_mode)


def private_mode(mode: int) -> int:
    """``mode``'s owner bits (readable and writable by the owner at least), nothing else."""
    return (mode & 0o700) | 0o600
