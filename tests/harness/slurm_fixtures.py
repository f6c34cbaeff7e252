"""pytest fixtures for the real Slurm test cluster (``harness.slurm.SlurmCluster``).

- ``slurm`` (session): the cluster without accounting (``sacct`` fails; final states come from
  ``scontrol`` and the job folder), and its login sshd.
- ``slurm_acct`` (session): a second cluster with MariaDB + slurmdbd, so ``sacct`` works. Started
  only by the tests that ask for it.
- ``slurm_env`` / ``slurm_acct_env`` (function): an ``SSHEnv`` whose ``cluster`` is a
  ``scheduler = "slurm"`` cluster reached through that login node.

Both skip with the reason when this machine cannot run Slurm (not root, packages missing);
``make test`` installs the packages, so in CI they run.
"""

from __future__ import annotations

import pytest

from .fixtures import SSHEnv, make_settings
from .slurm import SlurmCluster, missing_packages

FIRST = {"test_overtime_job_is_submitted_first"}
LAST = {"test_job_past_its_time_limit_ends_timeout"}


def pytest_collection_modifyitems(items):
    """Submit the job that runs past Slurm's 1-minute time limit at the start of the session
    and check it at the end, so its minute overlaps the rest of the suite instead of adding to
    it (Slurm has no time limit shorter than a minute)."""
    first = [i for i in items if i.name in FIRST]
    last = [i for i in items if i.name in LAST]
    items[:] = first + [i for i in items if i.name not in FIRST | LAST] + last


def _cluster(tmp_path_factory, accounting: bool):
    why = missing_packages(accounting)
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), accounting=accounting).start()
    return cluster


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    cluster = _cluster(tmp_path_factory, accounting=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def slurm_acct(tmp_path_factory):
    cluster = _cluster(tmp_path_factory, accounting=True)
    yield cluster
    cluster.stop()


def _env(cluster, tmp_path, monkeypatch, **slurm_defaults) -> SSHEnv:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    settings = make_settings(tmp_path)
    settings.known_hosts_path.write_text(cluster.login.known_hosts_line() + "\n")
    remote = tmp_path / "remote"
    remote.mkdir()
    return SSHEnv(
        settings=settings,
        cluster=cluster.cluster(remote, **slurm_defaults),
        server=cluster.login,
        tmp_path=tmp_path,
    )


@pytest.fixture
def slurm_env(tmp_path, slurm, monkeypatch):
    env = _env(slurm, tmp_path, monkeypatch)
    yield env
    env.close()


@pytest.fixture
def slurm_acct_env(tmp_path, slurm_acct, monkeypatch):
    env = _env(slurm_acct, tmp_path, monkeypatch)
    yield env
    env.close()
