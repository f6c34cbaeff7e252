"""A cloned repository cannot take over: its ``.env`` may set only harmless settings (the
rest is ignored and reported), the user's own ``settings.env`` and environment decide where
jobs go and whom to trust, and an ssh config's ``Match exec`` is refused unless allowed.

Before, a repository's ``.env`` set the cluster host and port, the known_hosts file and the ssh
config file, so every job (with its inputs and ``--env`` secrets) went to its host, whose key
it vouched for, and its ssh config could run a local command in the kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_magic import Client, Settings
from gpu_magic.errors import ConfigError
from gpu_magic.transport.sshconfig import load_ssh_config


@pytest.fixture
def hostile_repo(tmp_path, monkeypatch, sshd):
    """A working directory whose .env points gpu_magic at a host and trust files of its own
    (the real sshd, with its key in the repo's known_hosts), and whose ssh config runs a
    command; the user's own config dir is empty."""
    repo = tmp_path / "cloned-repo"
    repo.mkdir()
    canary = tmp_path / "canary"
    (repo / "known_hosts").write_text(sshd.known_hosts_line() + "\n")
    (repo / "ssh_config").write_text(f'Match exec "touch {canary}"\n  User root\n')
    (repo / ".env").write_text(
        f"GPU_CLUSTER_HOST=127.0.0.1\nGPU_CLUSTER_PORT={sshd.port}\nGPU_CLUSTER_USERNAME=root\n"
        f"GPU_CLUSTER_KEY_PATH={sshd.client_key}\nKNOWN_HOSTS_PATH={repo / 'known_hosts'}\n"
        f"SSH_CONFIG_PATH={repo / 'ssh_config'}\nGPU_MAGIC_DATA_DIR={repo / 'data'}\n"
        "MAX_CONCURRENT_JOBS=3\n"
    )
    for name in ("GPU_CLUSTER_HOST", "KNOWN_HOSTS_PATH", "SSH_CONFIG_PATH", "GPU_MAGIC_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GPU_MAGIC_CONFIG_DIR", str(tmp_path / "my-config"))
    monkeypatch.chdir(repo)
    return repo, canary


def test_a_repositorys_dotenv_sets_only_harmless_settings(hostile_repo):
    repo, canary = hostile_repo
    settings = Settings()
    assert settings.max_concurrent_jobs == 3  # harmless: used
    assert settings.gpu_cluster_host is None and settings.gpu_cluster_port is None
    assert settings.known_hosts_path == Path("~/.ssh/known_hosts")
    assert settings.ssh_config_path == Path("~/.ssh/config")
    assert repo not in settings.gpu_magic_data_dir.parents
    client = Client(settings)
    try:
        assert [c for c in client.clusters.all() if c != "local"] == []  # no host of its own
    finally:
        client.close()
    assert not canary.exists()


def test_loading_the_magics_says_what_the_dotenv_set_and_what_was_ignored(hostile_repo, capsys):
    from gpu_magic import _report_workdir_dotenv

    _report_workdir_dotenv()
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"gpu_magic: read {hostile_repo[0] / '.env'}: MAX_CONCURRENT_JOBS;")
    assert "ignored GPU_CLUSTER_HOST, GPU_CLUSTER_KEY_PATH, GPU_CLUSTER_PORT" in line
    assert "KNOWN_HOSTS_PATH" in line and "SSH_CONFIG_PATH" in line
    assert "\n" not in line


def test_the_users_own_settings_file_is_trusted(hostile_repo, tmp_path):
    mine = tmp_path / "my-config"
    mine.mkdir()
    (mine / "settings.env").write_text("GPU_CLUSTER_HOST=gpu.mine.example\n")
    assert Settings().gpu_cluster_host == "gpu.mine.example"


def test_match_exec_in_an_ssh_config_is_refused_naming_the_line(hostile_repo):
    repo, canary = hostile_repo
    with pytest.raises(ConfigError, match=r"ssh_config:1: 'Match exec' would run a local command"):
        load_ssh_config(repo / "ssh_config")
    assert load_ssh_config(repo / "ssh_config", allow_commands=True) is not None
    assert not canary.exists()
