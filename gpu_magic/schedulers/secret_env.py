"""``--secret-env NAME``: a value from this process's environment to the job, in no file.

The value travels on the launch command's stdin, one line per secret (base64, so any bytes
but NUL survive: newlines, quotes, a trailing newline), ahead of whatever else the command
reads there (Slurm's sbatch script). The launch shell reads each line with the ``read``
builtin and exports it; run.sh (or sbatch, which hands its environment to the job) inherits
it. So the value is in no file on either side, in no process's argv (``ps`` shows none), not
in ``spec.json``, ``run.sh`` or the job store (they hold names only). Slurm keeps a job's
environment in its own state directory, readable by Slurm's administrators only.

A launch made later by another process (a slot freed, a retry) needs the value in that
process's environment; ``missing`` says which are absent, and such a process leaves the job
to one that has them.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from ..errors import InvalidRequestError


def values(names: tuple[str, ...]) -> dict[str, str]:
    """The secrets' values from this process's environment (``InvalidRequestError`` naming
    every one that is not set, before anything is sent)."""
    absent = missing(names)
    if absent:
        raise InvalidRequestError(
            f"--secret-env {', '.join(absent)}: not set in this process's environment "
            "(set it where the kernel starts, e.g. export it before `jupyter lab`)"
        )
    return {name: os.environ[name] for name in names}


def missing(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name not in os.environ]


def reader(names: list[str]) -> str:
    """The POSIX-shell prefix of a launch command that reads ``names`` from stdin, in order,
    and exports them (names are identifiers: checked by the request). Command substitution
    drops trailing newlines, so each value is decoded with a final ``x`` that is cut after."""
    return "".join(
        f'IFS= read -r _gm_b || exit 64; _gm_v="$(printf %s "$_gm_b" | base64 -d; printf x)"; '
        f'{name}="${{_gm_v%x}}"; export {name}; '
        for name in names
    ) + ("unset _gm_b _gm_v; " if names else "")


def payload(secrets: Mapping[str, str]) -> bytes:
    """What ``reader`` reads: one base64 line per secret, in the same order."""
    return b"".join(base64.b64encode(v.encode()) + b"\n" for v in secrets.values())
