"""Choose the GPUs for a job: ``python gpus.py N`` prints the chosen indices, e.g. ``1,3``.

Runs on the GPU host as a plain script (stdlib only). Asks ``nvidia-smi`` (or the command in
``$GPU_MAGIC_NVIDIA_SMI``) for every GPU's memory and utilisation, keeps only the GPUs listed in
an already-set ``CUDA_VISIBLE_DEVICES`` (indices or UUID prefixes), and picks the N least used:
idle ones first (under ``FREE_MEMORY_MIB`` used and ``FREE_UTILIZATION`` % busy), then by memory
used, utilisation and index. If fewer than N are idle it still takes the least used and warns
on stderr. Exit status: 0 chosen, 2 usage, 3 fewer GPUs than asked, 4 nvidia-smi missing or
failing. Indices are nvidia-smi's (PCI bus order): run.sh sets ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

FIELDS = ("index", "uuid", "utilization.gpu", "memory.used", "memory.total")
QUERY_ARGS = (f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits")
FREE_MEMORY_MIB = 1024.0
FREE_UTILIZATION = 10.0
EXIT_USAGE = 2
EXIT_TOO_FEW = 3
EXIT_NO_NVIDIA_SMI = 4
QUERY_TIMEOUT_S = 60


class GPUQueryError(Exception):
    """nvidia-smi is missing or failed."""


class NotEnoughGPUs(Exception):
    """Fewer GPUs are visible than were asked for."""


@dataclass(frozen=True)
class GPU:
    index: int
    uuid: str
    utilization: float | None  # percent
    memory_used: float | None  # MiB
    memory_total: float | None  # MiB

    @property
    def free(self) -> bool:
        return (self.memory_used or 0.0) < FREE_MEMORY_MIB and (
            self.utilization or 0.0
        ) < FREE_UTILIZATION

    def describe(self) -> str:
        used = "?" if self.memory_used is None else f"{self.memory_used:g}"
        total = "?" if self.memory_total is None else f"{self.memory_total:g}"
        busy = "?" if self.utilization is None else f"{self.utilization:g}"
        return f"GPU {self.index} ({used}/{total} MiB used, {busy}% busy)"


def _number(text: str) -> float | None:
    """nvidia-smi writes ``[N/A]`` or ``[Not Supported]`` where it has no value."""
    try:
        return float(text)
    except ValueError:
        return None


def parse_gpus(text: str) -> list[GPU]:
    """Parse ``nvidia-smi --query-gpu=index,uuid,... --format=csv,noheader,nounits`` output."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < len(FIELDS) or not fields[0].isdigit():
            continue
        index, uuid, util, used, total = fields[: len(FIELDS)]
        gpus.append(GPU(int(index), uuid, _number(util), _number(used), _number(total)))
    return gpus


def visible(gpus: list[GPU], cuda_visible_devices: str | None) -> list[GPU]:
    """The GPUs an already-set ``CUDA_VISIBLE_DEVICES`` allows (``None``: all of them)."""
    if cuda_visible_devices is None:
        return list(gpus)
    wanted = [entry.strip() for entry in cuda_visible_devices.split(",") if entry.strip()]
    return [gpu for gpu in gpus if any(_matches(gpu, entry) for entry in wanted)]


def _matches(gpu: GPU, entry: str) -> bool:
    if entry.isdigit():
        return int(entry) == gpu.index
    return entry.startswith("GPU-") and gpu.uuid.startswith(entry)


def _load(gpu: GPU) -> tuple:
    return (not gpu.free, gpu.memory_used or 0.0, gpu.utilization or 0.0, gpu.index)


def choose(gpus: list[GPU], count: int) -> tuple[list[GPU], str | None]:
    """The ``count`` least used GPUs (sorted by index) and a warning if some of them are busy."""
    if count > len(gpus):
        raise NotEnoughGPUs(
            f"asked for {count} GPU(s) but only {len(gpus)} "
            f"{'is' if len(gpus) == 1 else 'are'} visible on this host"
        )
    chosen = sorted(gpus, key=_load)[:count]
    busy = [gpu for gpu in chosen if not gpu.free]
    warning = None
    if busy:
        warning = (
            f"only {count - len(busy)} of the {count} requested GPU(s) are idle; "
            f"also using the least used busy one(s): {', '.join(g.describe() for g in busy)}"
        )
    return sorted(chosen, key=lambda gpu: gpu.index), warning


def query(nvidia_smi: str = "nvidia-smi") -> str:
    try:
        proc = subprocess.run(
            [nvidia_smi, *QUERY_ARGS], capture_output=True, text=True, timeout=QUERY_TIMEOUT_S
        )
    except FileNotFoundError:
        raise GPUQueryError(
            f"{nvidia_smi} was not found: no NVIDIA driver on this host, or it is not on PATH"
        ) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GPUQueryError(f"{nvidia_smi} could not be run: {exc}") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise GPUQueryError(f"{nvidia_smi} failed with exit code {proc.returncode}: {detail}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1:
        print("usage: gpus.py N  (N >= 1: how many GPUs to choose)", file=sys.stderr)
        return EXIT_USAGE
    try:
        gpus = visible(
            parse_gpus(query(os.environ.get("GPU_MAGIC_NVIDIA_SMI") or "nvidia-smi")),
            os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
        chosen, warning = choose(gpus, int(argv[0]))
    except GPUQueryError as exc:
        print(f"[gpu_magic] {exc}", file=sys.stderr)
        return EXIT_NO_NVIDIA_SMI
    except NotEnoughGPUs as exc:
        restricted = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = "" if restricted is None else f" (CUDA_VISIBLE_DEVICES={restricted!r})"
        print(f"[gpu_magic] {exc}{where}", file=sys.stderr)
        return EXIT_TOO_FEW
    if warning:
        print(f"[gpu_magic] warning: {warning}", file=sys.stderr)
    print(",".join(str(gpu.index) for gpu in chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
