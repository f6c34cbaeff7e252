"""A real Jupyter server with the gpu_magic extension (pytest-jupyter's fixtures), on this
folder only: its autouse fixtures make an event loop and a ServerApp for every test.

``gpu_server`` is the extension's own state in the running server, its gpu_magic folders under
the test's ``tmp_path``; ``cluster`` is ``local`` or the real loopback sshd's cluster."""

from __future__ import annotations

import pytest
from harness.fixtures import make_settings
from harness.kernel import kernel_env
from pytest_jupyter.jupyter_core import *  # noqa: F403 - fixtures and hooks, this folder only
from pytest_jupyter.jupyter_server import *  # noqa: F403
from pytest_jupyter.pytest_tornasync import *  # noqa: F403
from traitlets.config import Config

from gpu_magic import Client


@pytest.fixture(params=["local", "ssh"])
def cluster(request, tmp_path, monkeypatch):
    """The cluster the server's jobs go to; the environment points gpu_magic at tmp folders."""
    if request.param == "local":
        settings = make_settings(tmp_path, gpu_cluster_base_path=str(tmp_path / "jobs"))
        name = "local"
    else:
        ssh_env = request.getfixturevalue("ssh_env")
        settings, name = ssh_env.settings, ssh_env.cluster.name
        Client(settings).clusters.add(ssh_env.cluster)
    for key, value in kernel_env(settings).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GPU_CLUSTER_BASE_PATH", str(settings.gpu_cluster_base_path))
    monkeypatch.setenv("JOB_MONITORING_INTERVAL", "1")  # the watch and the unwatched pace
    return name


@pytest.fixture
def jp_server_config(cluster):
    return Config({"ServerApp": {"jpserver_extensions": {"gpu_magic.server": True}}})


@pytest.fixture
def gpu_server(jp_serverapp):
    """The running server's gpu_magic Client (the same store a kernel here would use)."""
    return jp_serverapp.web_app.settings["gpu_magic_client"]
