"""Bad input: a clear error, and nothing created on the host or in the job store."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gpu_magic import Client, GPUJobRequest
from gpu_magic.errors import (
    AuthenticationError,
    HostUnreachableError,
    InvalidRequestError,
    UnknownClusterError,
    UnknownHostKeyError,
)
from gpu_magic.submit_options import parse_env

pytestmark = pytest.mark.timeout(60)


def client_for(settings, cluster) -> Client:
    client = Client(settings)
    client.clusters.add(cluster)
    return client


def assert_nothing_left(client: Client, base: Path) -> None:
    assert client.store.list() == []
    assert not base.exists() or list(base.iterdir()) == []


def submit(client, cluster_name, code="y = 1", namespace=None, **fields):
    request = GPUJobRequest.create(code=code, cluster=cluster_name, **fields)
    return client.submit(request, namespace or {})


def test_unknown_host_key_is_refused_with_its_fingerprint(ssh_env, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    settings = ssh_env.settings.model_copy(update={"known_hosts_path": empty})
    client = client_for(settings, ssh_env.cluster)
    with pytest.raises(UnknownHostKeyError) as info:
        submit(client, ssh_env.cluster.name)
    message = str(info.value)
    assert "SHA256:" in message and "127.0.0.1" in message
    assert "known_hosts" in message
    assert_nothing_left(client, Path(ssh_env.cluster.base_path))


def test_wrong_key_is_refused(ssh_env, tmp_path):
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cluster = ssh_env.cluster.model_copy(update={"key": str(key)})
    client = client_for(ssh_env.settings, cluster)
    with pytest.raises(AuthenticationError, match="root@127.0.0.1"):
        submit(client, cluster.name)
    assert_nothing_left(client, Path(cluster.base_path))


def test_unreachable_host_fails_within_the_connection_timeout(ssh_env):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts TCP but never speaks SSH
    port = silent.getsockname()[1]
    settings = ssh_env.settings.model_copy(update={"ssh_connection_timeout": 1.5})
    cluster = ssh_env.cluster.model_copy(update={"port": port})
    client = client_for(settings, cluster)
    started = time.monotonic()
    try:
        with pytest.raises(HostUnreachableError, match=f"127.0.0.1:{port}"):
            submit(client, cluster.name)
    finally:
        silent.close()
    assert time.monotonic() - started < 1.5 * 4  # a bound on the timeout, not a speed target
    assert client.store.list() == []


def test_unknown_cluster(tmp_path):
    from harness.clients import local_settings

    client = Client(local_settings(tmp_path))
    with pytest.raises(UnknownClusterError, match="known clusters: local"):
        submit(client, "nowhere")
    assert_nothing_left(client, tmp_path / "jobs")


def test_bad_env_syntax():
    with pytest.raises(InvalidRequestError, match="--env expects KEY=VALUE, got 'JUSTTEXT'"):
        parse_env(["A=1", "JUSTTEXT"])
    with pytest.raises(InvalidRequestError, match="'1X' is not a valid environment variable"):
        GPUJobRequest.create(code="", env=parse_env(["1X=2"]))


@pytest.mark.parametrize("cluster_kind", ["local", "ssh"])
def test_missing_and_unpicklable_inputs_send_nothing(cluster_kind, request, tmp_path):
    if cluster_kind == "ssh":
        ssh_env = request.getfixturevalue("ssh_env")
        client, name = client_for(ssh_env.settings, ssh_env.cluster), ssh_env.cluster.name
        base = Path(ssh_env.cluster.base_path)
    else:
        from harness.clients import local_settings

        client, name, base = Client(local_settings(tmp_path)), "local", tmp_path / "jobs"
    with pytest.raises(InvalidRequestError, match="'ghost' is not defined"):
        submit(client, name, inputs=("ghost",))
    with pytest.raises(InvalidRequestError, match="cannot send 'lock'"):
        submit(client, name, inputs=("lock",), namespace={"lock": threading.Lock()})
    with pytest.raises(InvalidRequestError, match="does not exist"):
        submit(client, name, files=(str(tmp_path / "missing.csv"),))
    assert_nothing_left(client, base)
