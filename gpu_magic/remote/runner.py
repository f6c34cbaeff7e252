"""Run a Python cell inside its job folder: ``python -m gpu_magic.remote.runner JOBDIR``.

Runs on the GPU host (stdlib + cloudpickle only). Reads ``spec.json`` for ``inputs``,
``outputs`` and ``args``; unpickles each input from ``inputs/NAME.pkl`` into the cell's
namespace; runs ``code/main.py`` as ``__main__`` (with its real file name, so tracebacks show the
cell's lines); pickles each requested output to ``outputs/NAME.pkl`` (temp file + rename),
every one the cell defined even when another is missing (then the job fails naming it).

On failure it writes ``state/error.json`` (``type``, ``message``, ``traceback``, the runner's own
frames removed), prints the traceback to stderr and exits 1. ``sys.exit(n)`` in the cell exits
with ``n`` (outputs are still saved for ``sys.exit(0)``; ``error.json`` only for a non-zero code).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import types
from pathlib import Path

import cloudpickle

from .layout import CODE, ERROR_JSON, INPUTS, OUTPUTS, PICKLE_SUFFIX, PYTHON_MAIN, SPEC, STATE

MAX_LISTED_NAMES = 40


class RunnerFailure(Exception):
    """A failure the runner reports itself: ``type_name`` is what ``error.json`` shows."""

    def __init__(self, type_name: str, message: str):
        super().__init__(message)
        self.type_name = type_name


def main(argv: list[str] | None = None) -> object:
    """Run the job; the result is the process exit status (``sys.exit`` semantics)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m gpu_magic.remote.runner JOBDIR", file=sys.stderr)
        return 2
    job = Path(argv[0]).resolve()
    spec = json.loads((job / SPEC).read_text(encoding="utf-8"))
    module = _main_module(job / CODE / PYTHON_MAIN)
    try:
        _load_inputs(job, spec.get("inputs") or (), module.__dict__)
        sys.argv = [PYTHON_MAIN, *(spec.get("args") or ())]
        _run_cell(module)
        _save_outputs(job, spec.get("outputs") or (), module.__dict__)
    except SystemExit as exc:
        return _on_exit(job, exc, spec.get("outputs") or (), module.__dict__)
    except RunnerFailure as exc:
        return _fail(job, exc.type_name, str(exc), f"{exc.type_name}: {exc}\n")
    except BaseException as exc:
        return _fail(job, _type_name(exc), str(exc), format_traceback(exc))
    return 0


def _main_module(path: Path) -> types.ModuleType:
    """The cell's namespace, installed as ``sys.modules['__main__']`` like ``python main.py``.

    So pickle-by-reference of cell functions (multiprocessing, DataLoader workers) finds them.
    """
    module = types.ModuleType("__main__")
    module.__file__ = str(path)
    return module


def _run_cell(module: types.ModuleType) -> None:
    path = Path(module.__file__)
    code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    sys.modules["__main__"] = module
    exec(code, module.__dict__)  # noqa: S102 - running the user's cell is the point


def _load_inputs(job: Path, names: list[str], namespace: dict) -> None:
    for name in names:
        path = job / INPUTS / f"{name}{PICKLE_SUFFIX}"
        try:
            with open(path, "rb") as f:
                namespace[name] = cloudpickle.load(f)
        except Exception as exc:
            hint = ""
            if isinstance(exc, ModuleNotFoundError):
                hint = " (install that module in the job's Python environment)"
            raise RunnerFailure(
                _type_name(exc),
                f"cannot load input variable {name!r} from {INPUTS}/{path.name}: {exc}{hint}",
            ) from exc


def _save_outputs(job: Path, names: list[str], namespace: dict) -> None:
    """Pickle every output the cell defined; then, if some are missing, fail naming them (the
    others are saved and come back: a typo in one name does not lose the run)."""
    present = [name for name in names if name in namespace]
    missing = [name for name in names if name not in namespace]
    if os.environ.get("SLURM_PROCID", "0") == "0":  # a multi-node job (srun): rank 0 saves
        (job / OUTPUTS).mkdir(exist_ok=True)
        for name in present:
            _dump_atomic(namespace[name], job / OUTPUTS / f"{name}{PICKLE_SUFFIX}", name)
    if missing:
        listed = ", ".join(map(repr, missing))
        saved = f"; saved: {', '.join(present)}" if present else ""
        raise RunnerFailure(
            "NameError",
            f"output variable{'s' if len(missing) > 1 else ''} {listed} "
            f"{'were' if len(missing) > 1 else 'was'} not defined by the cell{saved}; "
            f"defined names: {_defined_names(namespace)}",
        )


def _dump_atomic(value: object, path: Path, name: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            cloudpickle.dump(value, f)
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise RunnerFailure(
            _type_name(exc), f"cannot pickle output variable {name!r}: {exc}"
        ) from exc


def _defined_names(namespace: dict) -> str:
    names = sorted(
        name
        for name, value in namespace.items()
        if not name.startswith("__") and not isinstance(value, types.ModuleType)
    )
    if len(names) > MAX_LISTED_NAMES:
        names = [*names[:MAX_LISTED_NAMES], "..."]
    return ", ".join(names) or "(none)"


def _on_exit(job: Path, exc: SystemExit, outputs: list[str], namespace: dict) -> object:
    if exc.code in (None, 0):
        try:
            _save_outputs(job, outputs, namespace)
        except RunnerFailure as failure:
            return _fail(job, failure.type_name, str(failure), f"{failure.type_name}: {failure}\n")
        return 0
    _write_error(job, "SystemExit", str(exc.code), format_traceback(exc))
    if isinstance(exc.code, int):
        print(f"[gpu_magic] the cell called sys.exit({exc.code})", file=sys.stderr)
    return exc.code


def _fail(job: Path, type_name: str, message: str, formatted: str) -> int:
    print(formatted, file=sys.stderr, end="")
    sys.stderr.flush()
    _write_error(job, type_name, message, formatted)
    return 1


def _write_error(job: Path, type_name: str, message: str, formatted: str) -> None:
    state = job / STATE
    state.mkdir(exist_ok=True)
    tmp = state / f".{ERROR_JSON}.tmp"
    payload = {"type": type_name, "message": message, "traceback": formatted}
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, state / ERROR_JSON)


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def format_traceback(exc: BaseException) -> str:
    """The traceback as Python prints it, starting at the cell: leading runner frames dropped."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals is globals():
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


if __name__ == "__main__":
    sys.exit(main())
