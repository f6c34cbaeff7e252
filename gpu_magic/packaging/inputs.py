"""Kernel variables named by ``--inputs`` become cloudpickled bytes, or a clear error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cloudpickle

from ..errors import InvalidRequestError


def pickle_inputs(names: tuple[str, ...], namespace: Mapping[str, Any]) -> dict[str, bytes]:
    """Pickle every named variable; fail on the first missing or unpicklable one."""
    missing = [name for name in names if name not in namespace]
    if missing:
        raise InvalidRequestError(
            f"--inputs: {', '.join(map(repr, missing))} "
            f"{'is' if len(missing) == 1 else 'are'} not defined in the kernel"
        )
    return {name: _dumps(name, namespace[name]) for name in names}


def _dumps(name: str, value: Any) -> bytes:
    try:
        return cloudpickle.dumps(value)
    except Exception as exc:  # pickling raises anything: TypeError, PicklingError, RecursionError
        raise InvalidRequestError(
            f"--inputs: cannot send {name!r} ({type(value).__name__}): {type(exc).__name__}: {exc}"
        ) from None
