"""Code that runs ON the GPU host: stdlib + cloudpickle only, never pydantic or other gpu_magic.

The packager ships this folder (with an empty ``gpu_magic/__init__.py``) into ``JOBDIR/lib/``,
and ``run.sh`` puts ``JOBDIR/lib`` first on ``PYTHONPATH``.
"""

from . import checkpoints
from .report import report

__all__ = ["checkpoints", "report"]
