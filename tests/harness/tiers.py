"""Test tiers: every test that needs the real sshd, the real Slurm or a real kernel is marked so
(``ssh``, ``slurm``, ``kernel``), found from the fixtures it uses (or marked by hand where a test
starts a kernel itself); every test in ``tests/browser`` is ``browser``; a test that runs real
processes on this machine (jobs on the ``local`` cluster, run.sh, the sampler, a subprocess) is
``processes``: the ``local`` case of the cluster-kind fixtures here, by hand elsewhere.
``make test-fast`` runs the rest for the edit-test loop; ``make test`` runs everything."""

from __future__ import annotations

import pytest

NEEDS = {"sshd": "ssh", "slurm": "slurm", "slurm_acct": "slurm"}
KINDS = {"local": "processes", "ssh": "ssh", "slurm": "slurm"}
"""Parameters of the fixtures that run one test on several cluster kinds (``env``,
``process_env`` and their like): the kind's fixture is asked for while the test sets up, not
named by it."""


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        kinds = {value for value in params.values() if isinstance(value, str)}
        needs = {NEEDS[f] for f in used & NEEDS.keys()} | {KINDS[k] for k in kinds & KINDS.keys()}
        if item.path.parent.name == "browser":
            needs.add("browser")
        for marker in sorted(needs):
            item.add_marker(getattr(pytest.mark, marker))
