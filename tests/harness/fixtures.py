"""pytest fixtures for the real components the tests run against.

- ``sshd`` (session): one real OpenSSH server on 127.0.0.1 with OpenSSH's default
  ``MaxSessions``/``MaxStartups`` (``harness.sshd.SSHServer``); skipped with a clear message when
  ``/usr/sbin/sshd`` is missing (``make test`` installs it).
- ``ssh_env`` (function): an ``SSHEnv`` with ``settings`` (ssh config, known_hosts and gpu_magic
  dirs all under ``tmp_path``: the real ``~/.ssh`` is never read or written), ``cluster`` (the
  ``ssh`` cluster for that server: root, its client key, a tmp ``base_path``), and
  ``transport()`` which makes an ``SSHTransport`` that is closed at teardown. It unsets
  ``SSH_AUTH_SOCK`` so a developer's ssh-agent cannot change a test's outcome.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gpu_magic.clusters import ClusterConfig
from gpu_magic.config import Settings

from .sshd import SSHD, SSHServer


@dataclass
class SSHEnv:
    settings: Settings
    cluster: ClusterConfig
    server: SSHServer
    tmp_path: Path
    _open: list = field(default_factory=list)

    @property
    def remote_dir(self) -> Path:
        """The cluster's ``base_path``: sshd runs on this machine, so it is a local path too."""
        return Path(self.cluster.base_path)

    def transport(self, cluster: ClusterConfig | None = None, settings: Settings | None = None):
        from gpu_magic.transport.ssh import SSHTransport

        transport = SSHTransport(cluster or self.cluster, settings or self.settings)
        self._open.append(transport)
        return transport

    def close(self) -> None:
        for transport in self._open:
            transport.close()


def make_settings(tmp_path: Path, **overrides) -> Settings:
    """Settings that point every path into ``tmp_path`` and ignore ``.env``."""
    fields = {
        "gpu_magic_config_dir": tmp_path / "config",
        "gpu_magic_data_dir": tmp_path / "data",
        "ssh_config_path": tmp_path / "ssh_config",
        "known_hosts_path": tmp_path / "known_hosts",
        "ssh_connection_timeout": 10,
        **overrides,
    }
    return Settings(_env_file=None, **fields)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing: apt-get install openssh-server (make test does)")
    server = SSHServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def ssh_env(tmp_path, sshd, monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    settings = make_settings(tmp_path)
    settings.known_hosts_path.write_text(sshd.known_hosts_line() + "\n")
    remote = tmp_path / "remote"
    remote.mkdir()
    cluster = sshd.cluster(remote)
    env = SSHEnv(settings=settings, cluster=cluster, server=sshd, tmp_path=tmp_path)
    yield env
    env.close()


@pytest.fixture
def python_sigint():
    """Ctrl-C is Python's KeyboardInterrupt, whatever SIGINT handler an earlier test left."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)
