"""Where a job keeps its checkpoints and which one to resume from (runs on the GPU host).

run.sh exports ``GPU_MAGIC_CHECKPOINTS`` (the job's ``checkpoints/`` folder, kept across
attempts and collected like outputs), ``GPU_MAGIC_ATTEMPT`` (1, 2, ...) and, when that folder
holds anything, ``GPU_MAGIC_RESUME_FROM`` (its newest entry: a file such as Lightning's
``epoch=3-step=400.ckpt`` or a folder such as HF Trainer's ``checkpoint-500``). So a cell that
saves there resumes with no code change beyond passing it on::

    from gpu_magic.remote import checkpoints
    trainer.train(resume_from_checkpoint=checkpoints.resume_from())      # HF Trainer
    trainer.fit(model, ckpt_path=checkpoints.resume_from())              # Lightning
"""

from __future__ import annotations

import os


def folder() -> str:
    """The job's checkpoint folder (``./checkpoints`` outside a gpu_magic job)."""
    return os.environ.get("GPU_MAGIC_CHECKPOINTS", os.path.abspath("checkpoints"))


def attempt() -> int:
    """Which run of the job this is: 1, then 2, 3, ... after retries."""
    return int(os.environ.get("GPU_MAGIC_ATTEMPT", "1"))


def resume_from() -> str | None:
    """The newest checkpoint (None when there is none yet: start from scratch)."""
    return os.environ.get("GPU_MAGIC_RESUME_FROM") or None
