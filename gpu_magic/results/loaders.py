"""Load a collected file into the kernel by its extension; anything else stays a path.

A file from a host is data from whoever controls that host. Formats that cannot run code load
as they are (JSON, numpy without pickles, safetensors); torch files load with
``weights_only=True``; pickles only from a trusted cluster. ``unsafe=True`` loads a torch file
fully and a pickle from anywhere: the caller vouches for the job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cloudpickle

from ..errors import TransferError


def load(path: Path, *, trusted: bool = True, unsafe: bool = False) -> Any:
    suffix = path.suffix.lower()
    loader = LOADERS.get(suffix)
    if loader is None:
        return path
    if loader is _pickle and not (trusted or unsafe):
        raise TransferError(
            f"{path.name} was not unpickled: its cluster is not trusted (trusted = false), and "
            f"a pickle runs code in this kernel; if you trust this job: load(..., unsafe=True)"
        )
    try:
        return loader(path, unsafe) if loader is _torch else loader(path)
    except ImportError:
        return path  # the library for this format is not installed here: hand over the path
    except Exception as exc:  # a loader raises anything: version skew, corrupt file
        hint = ""
        if loader is _torch and not unsafe:
            hint = " (loaded with weights_only=True; unsafe=True loads it fully, running its code)"
        raise TransferError(f"cannot load {path.name}: {type(exc).__name__}: {exc}{hint}") from None


def _numpy(path: Path) -> Any:
    import numpy

    if path.suffix.lower() == ".npz":
        with numpy.load(path, allow_pickle=False) as data:
            return dict(data)
    return numpy.load(path, allow_pickle=False)


def _torch(path: Path, unsafe: bool = False) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=not unsafe)


def _safetensors(path: Path) -> Any:
    try:
        from safetensors.torch import load_file
    except ImportError:
        from safetensors.numpy import load_file
    return load_file(str(path))


def _pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return cloudpickle.load(f)


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


LOADERS = {
    ".ckpt": _torch,  # Lightning checkpoints are torch.save dicts
    ".npy": _numpy,
    ".npz": _numpy,
    ".pt": _torch,
    ".pth": _torch,
    ".safetensors": _safetensors,
    ".pkl": _pickle,
    ".pickle": _pickle,
    ".json": _json,
}
