"""Job templates: named sets of submission options in the config file, with inheritance.

A ``[templates.NAME]`` table in the clusters file holds what ``%%gpu_submit`` flags would say
(``cluster = "hpc"``, ``gpus = 4``, ``time = "12:00:00"``, ``env = {...}``, ``files = [...]``),
and ``extends = "base"`` starts from another template. A submission is layered, lowest first:
the cluster's own defaults (``[clusters.X.slurm]``, applied at launch to what is still unset),
the template chain (the furthest ancestor first), then the flags given (``SubmitOptions.over``
says how two layers combine). What a template may hold is checked when it is read: a misspelt
key or a bad value is one line naming the template, never a surprise at launch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .errors import ConfigError, InvalidRequestError
from .models import GPUJobRequest, format_validation_error
from .submit_options import CELL_OPTIONS, SubmitOptions

TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


class Templates:
    """The ``[templates]`` of one config file: read through ``load`` (a callable returning the
    parsed file), written through ``save`` (one taking the whole new file)."""

    def __init__(self, load, save):
        self._load, self._save = load, save

    def tables(self) -> dict[str, dict]:
        return dict(self._load().get("templates", {}))

    def names(self) -> list[str]:
        return sorted(self.tables())

    def chain(self, name: str) -> list[str]:
        """``name`` and its ancestors, the furthest first; a loop or a missing parent is a
        ``ConfigError`` naming it."""
        tables, chain = self.tables(), [name]
        while True:
            table = tables.get(chain[0])
            if table is None:
                known = ", ".join(sorted(tables)) or "none defined"
                child = f" (extended by {chain[1]!r})" if len(chain) > 1 else ""
                raise ConfigError(f"unknown template {chain[0]!r}{child}; known: {known}")
            parent = table.get("extends")
            if parent is None:
                return chain
            if parent in chain:
                loop = " -> ".join([*reversed(chain), parent])
                raise ConfigError(f"template {name!r}: 'extends' makes a loop ({loop})")
            chain.insert(0, parent)

    def options(self, name: str) -> SubmitOptions:
        """The template's options with its ancestors' beneath them."""
        tables, resolved = self.tables(), SubmitOptions()
        for link in self.chain(name):
            resolved = _table_options(link, tables[link]).over(resolved)
        return resolved

    def request(self, given: SubmitOptions, code: str, name: str | None) -> GPUJobRequest:
        """The request of a submission: the ``given`` options over template ``name``'s (when
        one is named), for ``code``; what the magic and the CLI both submit."""
        options = given.over(self.options(name)) if name else given
        return options.request(code, template=name)

    def origins(self, name: str) -> dict[str, str]:
        """Which templates of the chain set each option (what ``show`` prints beside it): the
        last one, or all that added to a table or a list (``base+a100``)."""
        tables, found = self.tables(), {}
        for link in self.chain(name):
            for key, value in _table_options(link, tables[link]).given().items():
                adds = isinstance(value, dict | tuple) and key in found
                found[key] = f"{found[key]}+{link}" if adds else link
        return found

    def save(self, name: str, options: SubmitOptions, *, extends: str | None = None) -> None:
        if not TEMPLATE_NAME.fullmatch(name):
            raise ConfigError(
                f"template name {name!r} must be 1-64 letters, digits, '_', '.' or '-' "
                "and start with a letter or digit"
            )
        table = options.to_template()
        if extends is not None:
            self.chain(extends)  # it must exist (and be sound) now
            table = {"extends": extends, **table}
        data = self._load()
        data.setdefault("templates", {})[name] = table
        self._save(data)

    def delete(self, name: str) -> None:
        data = self._load()
        if name not in data.get("templates", {}):
            self.chain(name)  # raises: unknown, with the known names
        del data["templates"][name]
        self._save(data)


def _table_options(name: str, table: Mapping[str, Any]) -> SubmitOptions:
    """One template's own table as options, checked as a request would check them."""
    fields = {k: v for k, v in table.items() if k != "extends"}
    if cell := sorted(CELL_OPTIONS & set(fields)):
        raise ConfigError(f"template {name!r}: {cell[0]!r} belongs to a cell, not a template")
    try:
        options = SubmitOptions(**fields)
        options.request("")
    except ValidationError as exc:
        message = format_validation_error(exc).removeprefix("invalid job request: ")
        raise ConfigError(f"template {name!r}: {message}") from None
    except InvalidRequestError as exc:
        message = str(exc).replace("invalid job request: ", "").replace("--git: ", "git: ")
        raise ConfigError(f"template {name!r}: {message}") from None
    return options
