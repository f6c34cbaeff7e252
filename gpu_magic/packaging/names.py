"""Which ``--outputs`` names a Python cell never assigns: found before upload, not after the run.

A typo in ``--outputs`` used to be found only when the runner looked for the variable, after
the whole run. The cell's syntax tree tells most of it up front: every name it binds
(assignments, ``for``/``with``/``except`` targets, imports, ``def``/``class``, walrus, ``match``
captures, ``global``). A name bound some other way (``exec``, ``globals()[...]``) looks
unassigned, so this only ever warns; an ``--inputs`` name counts as assigned (it arrives so).
"""

from __future__ import annotations

import ast
import difflib


def unassigned_outputs(code: str, outputs: tuple[str, ...], inputs: tuple[str, ...]) -> list[str]:
    """The ``outputs`` the cell never binds (none when it does not parse: the run will say)."""
    bound = _bound(code)
    return [] if bound is None else [n for n in outputs if n not in bound | set(inputs)]


def warning(code: str, outputs: tuple[str, ...], inputs: tuple[str, ...]) -> str | None:
    """One line naming each unassigned output, with the closest name the cell does bind."""
    missing = unassigned_outputs(code, outputs, inputs)
    if not missing:
        return None
    bound = sorted(_bound(code) or ())
    parts = []
    for name in missing:
        close = difflib.get_close_matches(name, bound, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    verb = "is" if len(parts) == 1 else "are"
    return (
        f"gpu_magic: warning: --outputs {', '.join(parts)} {verb} never assigned in the cell; "
        "the other outputs still come back"
    )


def _bound(code: str) -> set[str] | None:
    try:
        return _bound_names(ast.parse(code))
    except (SyntaxError, ValueError):
        return None


def _bound_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
    return names
