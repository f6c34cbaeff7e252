"""Sweeps: one cell run once per combination of parameter values (``--sweep``).

``--sweep NAME=VALUES`` gives a parameter its values, either a comma list of Python literals
(``lr=1e-3,3e-4``, ``opt='adam','sgd'``; an item that is no literal is taken as the text it
is: ``opt=adam,sgd``) or ``NAME:=EXPRESSION``, evaluated in the notebook's namespace and
iterated (``lr:=np.logspace(-4, -2, 3)``, ``seed:=seeds``). ``grid`` (the default) runs every
combination, the first parameter varying slowest; ``zip`` runs the i-th values together.

Each member is the same request with the parameters injected: a Python cell receives them as
variables (they travel as ``--inputs``), a bash cell as environment variables. Everything is
checked here, before anything is packaged or sent.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from .errors import InvalidRequestError
from .models import IDENTIFIER, JOB_NAME, GPUJobRequest, SweepMember

MAX_MEMBERS = 1000
"""Slurm's default ``MaxArraySize`` is 1001 (task ids 0..1000); a bigger sweep is a mistake
more often than a plan."""
Mode = Literal["grid", "zip"]


@dataclass(frozen=True)
class Axis:
    """One swept parameter and its values, in order."""

    name: str
    values: tuple[Any, ...]


def parse_axis(spec: str, namespace: Mapping[str, Any] | None = None) -> Axis:
    """``NAME=V1,V2,...`` or ``NAME:=EXPRESSION`` (see the module docstring)."""
    name, sep, source = spec.partition("=")
    evaluated = sep and name.endswith(":")
    name = name.removesuffix(":").strip()
    if not sep or not IDENTIFIER.match(name):
        raise InvalidRequestError(
            f"--sweep {spec!r}: expected NAME=V1,V2,... or NAME:=EXPRESSION "
            "(NAME a Python variable name)"
        )
    values = _evaluate(name, source, namespace or {}) if evaluated else _literals(source)
    if not values:
        raise InvalidRequestError(f"--sweep {name}: no values")
    return Axis(name, values)


def _literals(text: str) -> tuple[Any, ...]:
    """``1e-3,3e-4`` as numbers; ``'a,b',c`` as Python reads it; else each item as text."""
    try:
        value = ast.literal_eval(f"[{text}]")
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return tuple(_literal_or_text(item.strip()) for item in text.split(",") if item.strip())
    return tuple(value)


def _literal_or_text(item: str) -> Any:
    try:
        return ast.literal_eval(item)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return item


def _evaluate(name: str, expression: str, namespace: Mapping[str, Any]) -> tuple[Any, ...]:
    """The user's own expression, in the user's own namespace (as the cell itself would run)."""
    try:
        result = eval(expression, {"__builtins__": __builtins__}, dict(namespace))  # noqa: S307
        values = tuple(result)
    except Exception as exc:  # one line for the user: whatever their expression raised
        raise InvalidRequestError(
            f"--sweep {name}:={expression}: {type(exc).__name__}: {exc}"
        ) from None
    return values


@dataclass(frozen=True)
class Sweep:
    """The swept parameters and how their values combine."""

    axes: tuple[Axis, ...]
    mode: Mode = "grid"

    @classmethod
    def parse(
        cls, specs: list[str], mode: str = "grid", namespace: Mapping[str, Any] | None = None
    ) -> Sweep:
        axes = tuple(parse_axis(spec, namespace) for spec in specs)
        names = [axis.name for axis in axes]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise InvalidRequestError(f"--sweep {twice[0]} is given twice")
        if mode not in ("grid", "zip"):
            raise InvalidRequestError(f"--sweep-mode {mode!r}: expected grid or zip")
        if mode == "zip" and len({len(axis.values) for axis in axes}) > 1:
            sizes = ", ".join(f"{a.name}: {len(a.values)}" for a in axes)
            raise InvalidRequestError(f"--sweep-mode zip needs as many values of each ({sizes})")
        sweep = cls(axes, mode)  # type: ignore[arg-type]
        if sweep.size > MAX_MEMBERS:
            raise InvalidRequestError(
                f"--sweep makes {sweep.size} members; at most {MAX_MEMBERS} in one sweep"
            )
        return sweep

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(axis.name for axis in self.axes)

    @property
    def size(self) -> int:
        if self.mode == "zip":
            return len(self.axes[0].values)
        count = 1
        for axis in self.axes:
            count *= len(axis.values)
        return count

    def points(self) -> list[dict[str, Any]]:
        """Every member's parameters, in member order."""
        columns = [axis.values for axis in self.axes]
        rows = zip(*columns, strict=True) if self.mode == "zip" else itertools.product(*columns)
        return [dict(zip(self.names, row, strict=True)) for row in rows]

    def describe(self) -> str:
        """``3x2 grid (lr, bs)``: how the submission line names it."""
        sizes = "x".join(str(len(axis.values)) for axis in self.axes)
        return f"{sizes} {self.mode} ({', '.join(self.names)})"


def new_sweep_id(now: datetime | None = None) -> str:
    """Like a job id, marked as a sweep's: ``sw-20261207-154501-3fa9c2``."""
    now = now or datetime.now(timezone.utc)
    return f"sw-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def member_request(request: GPUJobRequest, point: Mapping[str, Any], index: int) -> GPUJobRequest:
    """``request`` for one member: its parameters injected (a Python cell's as variables, a
    bash cell's as environment variables) and, with a ``--name``, called ``NAME.INDEX``."""
    given = request.env if request.language == "bash" else request.inputs
    if clash := sorted(set(point) & set(given)):
        where = "--env" if request.language == "bash" else "--inputs"
        raise InvalidRequestError(f"--sweep {clash[0]} is also given by {where}")
    changes: dict[str, Any] = {}
    if request.language == "bash":
        changes["env"] = {**request.env, **{k: str(v) for k, v in point.items()}}
    else:
        changes["inputs"] = (*request.inputs, *point)
    if request.name is not None:
        changes["name"] = member_name(request.name, index)
    return GPUJobRequest.create(**{**request.model_dump(), **changes})


def member_name(name: str, index: int) -> str:
    named = f"{name}.{index}"
    if not JOB_NAME.fullmatch(named):
        raise InvalidRequestError(
            f"--name {name!r} is too long for a sweep: its members are called {named!r} "
            "(at most 64 characters)"
        )
    return named


def shown(value: Any) -> Any:
    """A parameter value as the store keeps it for tables and legends: JSON's own scalars as
    they are (numpy's scalars as Python's), anything else as its ``repr``; text at most 80
    characters (the member itself gets the whole value)."""
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float) and json.dumps(value) not in ("NaN", "Infinity", "-Infinity"):
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def members(
    sweep: Sweep, sweep_id: str, request: GPUJobRequest
) -> list[tuple[GPUJobRequest, SweepMember, dict[str, Any]]]:
    """Each member's request, place in the sweep, and parameter values (all checked now)."""
    points = sweep.points()
    made = []
    for index, point in enumerate(points):
        params = {name: shown(value) for name, value in point.items()}
        place = SweepMember(
            sweep_id=sweep_id, index=index, size=len(points), params=params, name=request.name
        )
        made.append((member_request(request, point, index), place, point))
    return made


def best_member(
    members: Iterable[tuple[str, str, Mapping[str, Any]]], metric: str, mode: str
) -> str | None:
    """Of ``(job id, status, final metrics)``, the completed member with the lowest (``mode
    "max"``: highest) finite ``metric``; None while none has one."""
    scored = [
        (finals[metric], job_id)
        for job_id, status, finals in members
        if status == "completed" and _finite(finals.get(metric))
    ]
    if not scored:
        return None
    return (min(scored) if mode == "min" else max(scored))[1]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
