"""Settings from the environment and ``.env`` (the plan's field names), and where files live."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BASE_PATH = "~/.gpu_magic/jobs"


class Settings(BaseSettings):
    """Every field can be set by the environment variable of the same name, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    gpu_cluster_host: str | None = None
    gpu_cluster_username: str | None = None
    gpu_cluster_key_path: str | None = None
    gpu_cluster_base_path: str = DEFAULT_BASE_PATH
    gpu_cluster_port: int | None = Field(default=None, ge=1, le=65535)
    gpu_cluster_scheduler: Literal["process", "slurm"] = "process"

    max_concurrent_jobs: int = Field(default=10, ge=1)
    ssh_connection_timeout: float = Field(default=30, gt=0)
    ssh_keepalive_interval: float = Field(default=5, gt=0)
    """An idle connection is probed this often; one whose data stays unacknowledged for three
    intervals is dead and replaced (without it, a connection that a partition cut keeps
    retransmitting into the void for minutes after the network is back)."""
    gpu_magic_reconnect_limit: float = Field(default=600, ge=0)
    """How long ``job.wait()``, ``--wait`` and the panel ride out a host that cannot be reached
    (reconnecting all the while) before the wait gives up."""
    file_transfer_timeout: float = Field(default=3600, gt=0)
    job_monitoring_interval: float = Field(default=30, gt=0)

    gpu_magic_webhook_url: str | None = None
    """A Slack-compatible incoming webhook: jobs submitted with ``--notify`` post their end
    there (the URL is a credential: it is never shown, logged or stored in a job)."""
    gpu_magic_notify_all: bool = False
    """Post every job's end to the webhook, not only those submitted with ``--notify``."""

    gpu_magic_config_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_config_dir("gpu_magic"))
    )
    gpu_magic_data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("gpu_magic"))
    )
    gpu_magic_results_dir: Path | None = None
    """The local results store (default: ``results`` under the data dir)."""
    gpu_magic_archive_after_days: float | None = Field(default=None, ge=0)
    """A cleanup run packs finished jobs' local results older than this into archives."""
    gpu_magic_cleanup_after_collect: bool = False
    """Run the cleanup policy of a job's cluster each time a job's results are collected."""
    gpu_magic_cleanup_remote_keep_last: int | None = Field(default=None, ge=0)
    gpu_magic_cleanup_remote_older_than_days: float | None = Field(default=None, ge=0)
    gpu_magic_cleanup_remote_quota_gb: float | None = Field(default=None, ge=0)
    gpu_magic_cleanup_local_keep_last: int | None = Field(default=None, ge=0)
    gpu_magic_cleanup_local_older_than_days: float | None = Field(default=None, ge=0)
    gpu_magic_cleanup_local_quota_gb: float | None = Field(default=None, ge=0)
    """Cleanup rules for every cluster (clusters.toml ``[clusters.NAME.cleanup]`` overrides);
    none set: a cleanup deletes nothing unless rules are given on the command line."""
    ssh_config_path: Path = Path("~/.ssh/config")
    known_hosts_path: Path = Path("~/.ssh/known_hosts")

    @property
    def clusters_file(self) -> Path:
        return self.gpu_magic_config_dir.expanduser() / "clusters.toml"

    @property
    def store_path(self) -> Path:
        return self.gpu_magic_data_dir.expanduser() / "jobs.sqlite3"

    @property
    def results_path(self) -> Path:
        chosen = self.gpu_magic_results_dir or self.gpu_magic_data_dir / "results"
        return chosen.expanduser()


def private_dir(path: Path) -> None:
    """``path`` and its missing parents made readable by their owner only (0700): the job
    store, the clusters file and the results hold ``--env`` values and data. Folders that
    exist already keep their mode (a shared results folder the user chose stays shared)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            folder.mkdir(mode=0o700)


def private_file(path: Path) -> None:
    """Create ``path`` (0600) if it does not exist, else take its group and other bits away."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
