"""Layering rules from DESIGN.md that a refactor could silently break."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import gpu_magic

BLOCK_UI = """
import sys
for name in ("IPython", "ipywidgets", "jupyter_server", "paramiko", "plotly"):
    sys.modules[name] = None
import gpu_magic.api
import gpu_magic
print("ok")
"""


@pytest.mark.processes
def test_api_imports_without_ipython_widgets_server_or_paramiko():
    out = subprocess.run([sys.executable, "-c", BLOCK_UI], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_public_names_are_exactly_all():
    public = {n for n in vars(gpu_magic) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(gpu_magic, n)).__name__ == "module"}
    assert sorted(public - modules - {"annotations"}) == sorted(gpu_magic.__all__)


def test_remote_runner_imports_only_stdlib_and_cloudpickle():
    remote = Path(gpu_magic.__file__).parent / "remote"
    allowed = set(sys.stdlib_module_names) | {"cloudpickle", "gpu_magic"}
    # the callbacks import the library they are for when the job makes one (never at import)
    for_callbacks = {"lightning", "pytorch_lightning", "transformers", "keras"}
    for source in remote.rglob("*.py"):
        for line in source.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and not words[1].startswith("."):
                top = words[1].split(".")[0]
                lazy = (
                    source.name == "callbacks.py" and line.startswith(" ") and top in for_callbacks
                )
                assert top in allowed or lazy, f"{source.name}: {line}"


# -- the import graph ----------------------------------------------------------------------
PACKAGE = Path(gpu_magic.__file__).parent


def _module_names() -> dict[str, Path]:
    names = {}
    for source in PACKAGE.rglob("*.py"):
        parts = source.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = source
    return names


def _imported(module: str, source: Path, known: set[str]) -> set[str]:
    """Every gpu_magic module ``module`` imports anywhere: at the top, under TYPE_CHECKING,
    inside a function (a lazy import still ties the two modules together)."""
    package = module.split(".") if source.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            stem = ".".join([*base, node.module] if node.module else base)
            targets = [
                f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


@pytest.mark.processes
def test_the_package_import_graph_has_no_cycles():
    """Nothing below the facade imports it back, and no two modules import each other in a
    loop (TYPE_CHECKING and function-level imports count)."""
    names = _module_names()
    graph = {m: _imported(m, source, set(names)) for m, source in names.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                loop = [*path[path.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(loop))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    below_facade = [m for m, targets in graph.items() if "gpu_magic.api" in targets]
    adapters = {"gpu_magic", "gpu_magic.magics", "gpu_magic.storage_magics", "gpu_magic.cli",
                "gpu_magic.cli_commands"}  # fmt: skip
    assert set(below_facade) <= adapters | {m for m in graph if m.startswith("gpu_magic.server")}
