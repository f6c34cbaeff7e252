"""Re-execute the tutorial notebooks in place as ``make test`` runs them (each in its own
``tutorial_env``: a new user, the demo SSH host), keeping text outputs and dropping widget views.

The committed notebooks carry their outputs: they are tutorials, read on GitHub, and strict
nbval compares every output with them (``sanitize.cfg`` masks what changes from run to run).
Widget views are dropped because their state is not stored; each widget's text fallback stays.

    .venv/bin/python notebooks/refresh.py [NAME.ipynb ...]   # default: all, in order
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from tutorial_env import TutorialEnv, needs

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
HERE = Path(__file__).resolve().parent


def refresh(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, resources={"metadata": {"path": str(HERE)}}).execute()
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)  # timestamps: noise in every diff
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, path)
    print(f"refreshed {path.name}")


if __name__ == "__main__":
    chosen = {Path(name).name for name in sys.argv[1:]}
    for notebook_path in sorted(HERE.glob("[0-9]*.ipynb")):
        if not chosen or notebook_path.name in chosen:
            env = TutorialEnv().enter(needs(notebook_path))
            try:
                refresh(notebook_path)
            finally:
                env.leave()
