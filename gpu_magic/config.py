"""Settings from the environment and ``.env`` files (the plan's field names), and where files live.

Where a setting may come from is a matter of trust. A ``.env`` in the notebook's working
directory comes with whatever repository the user cloned: were it to set the host, the port,
the known_hosts or ssh config file, a key or the folders, a cloned repository would send every
job (with its data and secrets) to another host and trust that host's key. So, from highest
to lowest precedence:

1. explicit arguments (``Settings(...)``, magic options);
2. the process environment;
3. ``settings.env`` in the user's own config dir (``GPU_MAGIC_CONFIG_DIR``);
4. ``.env`` in the working directory, for ``HARMLESS`` settings only (timeouts, paces,
   limits); every other key in it is ignored, and ``workdir_dotenv`` says which (the magics
   report it when they load).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_BASE_PATH = "~/.gpu_magic/jobs"
WORKDIR_DOTENV = ".env"
USER_SETTINGS = "settings.env"
HARMLESS = frozenset(
    {
        "max_concurrent_jobs",
        "ssh_connection_timeout",
        "file_transfer_timeout",
        "job_monitoring_interval",
        "ssh_keepalive_interval",
        "gpu_magic_reconnect_limit",
        "gpu_magic_fetch_limit",
    }
)
"""What a working directory's ``.env`` may set: how long to wait and how often to look, never
where to connect, whom to trust, where files live, what to delete or where to post."""


class Settings(BaseSettings):
    """Every field can be set by the environment variable of the same name, upper-cased."""

    model_config = SettingsConfigDict(env_file=WORKDIR_DOTENV, extra="ignore")

    @field_validator("gpu_magic_fetch_limit", mode="before")
    @classmethod
    def _size(cls, value):
        from .models import parse_size

        if value in ("", None):
            return None
        return parse_size(value) if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The precedence of the module docstring. ``Settings(_env_file=None)`` reads neither
        ``.env`` file (tests, and callers that want the environment only)."""
        sources = [init_settings, env_settings]
        if getattr(dotenv_settings, "env_file", None) is not None:
            user_file = user_config_dir() / USER_SETTINGS
            sources.append(DotEnvSettingsSource(settings_cls, env_file=user_file))
            sources.append(_Harmless(settings_cls, dotenv_settings))
        return (*sources, file_secret_settings)

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
    gpu_magic_fetch_limit: int | None = Field(default=2_000_000_000, ge=0)
    """With ``--fetch auto`` and no ``--fetch-limit``: files bigger than this many bytes are
    listed, and fetched only when asked for (``job.load``), so a job cannot fill the local
    disk by accident (``"500MB"``, ``"2GiB"`` accepted; empty: no limit)."""
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
    gpu_magic_ssh_config_commands: bool = False
    """Allow ``Match exec`` in the ssh config (it runs a local command when the config is
    read): off, so that only a config the user vouches for can run anything."""
    ssh_config_path: Path = Path("~/.ssh/config")
    known_hosts_path: Path = Path("~/.ssh/known_hosts")

    @property
    def clusters_file(self) -> Path:
        return self.gpu_magic_config_dir.expanduser() / "clusters.toml"

    @property
    def store_path(self) -> Path:
        return self.gpu_magic_data_dir.expanduser() / "jobs.sqlite3"

    @property
    def audit_path(self) -> Path:
        return self.gpu_magic_data_dir.expanduser() / "audit.jsonl"

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


def user_config_dir() -> Path:
    """The user's own config dir, from the environment or the platform's default (never from
    a working directory's ``.env``)."""
    chosen = os.environ.get("GPU_MAGIC_CONFIG_DIR")
    return Path(chosen).expanduser() if chosen else Path(platformdirs.user_config_dir("gpu_magic"))


def workdir_dotenv(cwd: Path | None = None) -> tuple[Path, list[str], list[str]] | None:
    """``(path, used, ignored)``: the working directory's ``.env`` and which of its settings
    were used and which ignored (upper-case names); None when there is none."""
    from dotenv import dotenv_values

    path = (cwd or Path.cwd()) / WORKDIR_DOTENV
    if not path.is_file():
        return None
    names = [name.lower() for name in dotenv_values(path) if name]
    known = [name for name in names if name in Settings.model_fields]
    used = sorted(name.upper() for name in known if name in HARMLESS)
    return path, used, sorted(name.upper() for name in known if name not in HARMLESS)


class _Harmless(PydanticBaseSettingsSource):
    """A working directory's ``.env``, with only the ``HARMLESS`` settings kept."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field, field_name):  # the inner source reads the fields
        return None, field_name, False

    def __call__(self) -> dict:
        return {key: value for key, value in self.inner().items() if key in HARMLESS}
