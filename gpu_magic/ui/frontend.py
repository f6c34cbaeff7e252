"""Whether a widget can be shown here, and showing one (IPython's ``display``)."""

from __future__ import annotations


def widget_frontend() -> bool:
    """True inside an ipykernel kernel (the only place a widget can be rendered)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def display(obj) -> None:
    from IPython.display import display as show

    show(obj)
