"""The ``env`` fixture: a Client wired to one cluster kind, for the behavioural suite:
``local``, ``ssh`` (process scheduler over a real sshd) and ``slurm`` (a real Slurm, submitted to
through its login node's sshd). ``process_env``: the two with the process scheduler only
(what the host's own processes do: signals, sessions, disks)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gpu_magic import Client, Settings
from gpu_magic.errors import TransferError

from .fixtures import make_settings


def metric_rows(job) -> list[dict]:
    """``job.metrics()`` as a list of row dicts, whether or not pandas made it a DataFrame (a
    DataFrame's missing cells, NaN, are left out as the plain rows leave them out)."""
    metrics = job.metrics()
    if not hasattr(metrics, "to_dict"):
        return metrics
    rows = metrics.to_dict("records")
    return [{k: v for k, v in row.items() if v == v} for row in rows]


@dataclass
class JobEnv:
    client: Client
    cluster_name: str
    cwd: Path
    namespace: dict = field(default_factory=dict)

    def transport(self):
        return self.client.host(self.cluster_name).transport

    def wait_for_remote_file(self, path: str, timeout: float = 30) -> str:
        """Poll (bounded) until a file exists on the host and return its text."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self.transport().read_file(path).decode()
                if text:
                    return text
            except TransferError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} did not appear within {timeout}s")
            time.sleep(0.05)


def local_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, gpu_cluster_base_path=str(tmp_path / "jobs"))


@pytest.fixture(params=["local", "ssh", "slurm"])
def env(request, tmp_path):
    yield from _env(request, tmp_path)


@pytest.fixture(params=["local", "ssh"])
def process_env(request, tmp_path):
    yield from _env(request, tmp_path)


def _env(request, tmp_path):
    cwd = tmp_path / "notebook"
    cwd.mkdir()
    if request.param == "local":
        client = Client(local_settings(tmp_path))
        name = "local"
    else:  # "ssh": process scheduler over a real sshd; "slurm": sbatch through a login node
        ssh_env = request.getfixturevalue("ssh_env" if request.param == "ssh" else "slurm_env")
        client = Client(ssh_env.settings)
        client.clusters.add(ssh_env.cluster)
        name = ssh_env.cluster.name
    yield JobEnv(client, name, cwd)
    for job in client.store.list(active_only=True):
        with contextlib.suppress(Exception):  # best-effort cleanup of a failed test's jobs
            client.cancel(job.id)
    client.close()
