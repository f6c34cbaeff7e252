"""Re-execute the example notebooks in place, keeping text outputs and dropping widget views.

The committed notebooks carry their outputs (they are tutorials, and nbval compares the cells
marked ``# NBVAL_CHECK_OUTPUT``); widget views are dropped because their state is not stored.

    .venv/bin/python notebooks/refresh.py
"""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
HERE = Path(__file__).resolve().parent


def refresh(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, resources={"metadata": {"path": str(HERE)}}).execute()
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, path)
    print(f"refreshed {path.name}")


if __name__ == "__main__":
    for notebook_path in sorted(HERE.glob("[0-9]*.ipynb")):
        refresh(notebook_path)
