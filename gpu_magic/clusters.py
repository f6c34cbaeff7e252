"""Named clusters: the built-in ``local`` one, one from ``GPU_CLUSTER_*`` settings, and a TOML file.

The default cluster is, in order: the one chosen with ``%gpu_cluster use`` (saved in the file),
the ``default`` cluster defined by ``GPU_CLUSTER_HOST``, then ``local``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import DEFAULT_BASE_PATH, Settings, private_dir
from .errors import ConfigError, UnknownClusterError
from .models import format_validation_error
from .resources import SlurmDefaults
from .templates import Templates

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCAL = "local"
ENV_CLUSTER = "default"
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
HOST = re.compile(r"^[A-Za-z0-9_.:%\[\]-]+\Z")


class CleanupRules(BaseModel):
    """One side's cleanup rules (remote job folders or local results); unset rules do nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_last: int | None = Field(default=None, ge=0)
    older_than_days: float | None = Field(default=None, ge=0)
    quota_gb: float | None = Field(default=None, ge=0)

    def over(self, defaults: CleanupRules) -> CleanupRules:
        """These rules, each unset one taken from ``defaults`` (a cluster over ``Settings``)."""
        mine = self.model_dump(exclude_none=True)
        return CleanupRules(**{**defaults.model_dump(exclude_none=True), **mine})

    @property
    def empty(self) -> bool:
        return self == CleanupRules()


class CleanupConfig(BaseModel):
    """``[clusters.NAME.cleanup]``: ``archive_after_days``, ``after_collect`` and the
    ``[...cleanup.remote]`` / ``[...cleanup.local]`` rule tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remote: CleanupRules = Field(default_factory=CleanupRules)
    local: CleanupRules = Field(default_factory=CleanupRules)
    archive_after_days: float | None = Field(default=None, ge=0)
    after_collect: bool | None = None

    def over(self, defaults: CleanupConfig) -> CleanupConfig:
        """This cluster's policy with everything it leaves unset taken from ``defaults``."""
        return CleanupConfig(
            remote=self.remote.over(defaults.remote),
            local=self.local.over(defaults.local),
            archive_after_days=_first(self.archive_after_days, defaults.archive_after_days),
            after_collect=_first(self.after_collect, defaults.after_collect),
        )


def _first(value, default):
    return default if value is None else value


def cleanup_defaults(settings: Settings) -> CleanupConfig:
    """The policy every cluster starts from: the ``GPU_MAGIC_CLEANUP_*`` settings."""
    s = settings

    def rules(side: str) -> CleanupRules:
        names = ("keep_last", "older_than_days", "quota_gb")
        return CleanupRules(**{n: getattr(s, f"gpu_magic_cleanup_{side}_{n}") for n in names})

    return CleanupConfig(
        remote=rules("remote"),
        local=rules("local"),
        archive_after_days=s.gpu_magic_archive_after_days,
        after_collect=s.gpu_magic_cleanup_after_collect,
    )


class ClusterConfig(BaseModel):
    """How to reach one cluster. ``host=None`` means this machine (the ``local`` cluster)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None
    proxy_jump: str | None = None
    base_path: str = DEFAULT_BASE_PATH
    scheduler: Literal["process", "slurm"] = "process"
    python: str | None = None
    max_sessions: int = Field(default=8, ge=1, le=64)
    helper: bool = True
    """Keep one helper process per connection on the host (``remote/helper.py``), so that a
    command costs a request on an open channel, not a login shell's start; ``false``: every
    command takes an exec channel of its own (a host that forbids lingering processes)."""
    trusted: bool = True
    """Whether results from this host may be unpickled into the kernel. A pickle runs code
    when it is loaded, so whoever controls a host you submit to can run code in your kernel
    through ``--outputs`` variables and ``.pkl`` files; ``trusted = false`` (a shared or
    borrowed machine) refuses them, unless a load says ``unsafe=True``."""
    slurm: SlurmDefaults = Field(default_factory=SlurmDefaults)
    """``[clusters.NAME.slurm]``: partition, account, time, gres_style, allowed_sbatch, ..."""
    cleanup: CleanupConfig = Field(default_factory=CleanupConfig)
    """``[clusters.NAME.cleanup]`` (+ ``.remote`` / ``.local``): overrides of the cleanup
    settings for this cluster."""

    @field_validator("base_path")
    @classmethod
    def _base_path(cls, path: str) -> str:
        """Absolute or ``~/...``, printable: never something a command takes for an option
        (``-rf``) or a name that breaks a line."""
        if (
            not (path.startswith("/") or path == "~" or path.startswith("~/"))
            or not path.isprintable()
        ):
            raise ValueError(f"base_path {path!r} must be an absolute path or start with ~/")
        return path

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not CLUSTER_NAME.match(name):
            raise ValueError(f"cluster name {name!r} must be letters, digits, '_', '.', '-'")
        return name

    @field_validator("host", "proxy_jump")
    @classmethod
    def _host(cls, host: str | None) -> str | None:
        if host is not None and (not HOST.match(host.replace("@", "").replace(",", ""))):
            raise ValueError(f"invalid host {host!r}")
        if host is not None and host.startswith("-"):
            raise ValueError(f"invalid host {host!r}")
        return host

    @field_validator("user")
    @classmethod
    def _user(cls, user: str | None) -> str | None:
        if user is not None and not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$", user):
            raise ValueError(f"invalid user name {user!r}")
        return user

    @property
    def is_local(self) -> bool:
        return self.host is None

    @property
    def interpreter(self) -> str:
        if self.python:
            return self.python
        return sys.executable if self.is_local else "python3"

    def to_toml_table(self) -> dict:
        return self.model_dump(exclude={"name"}, exclude_none=True, exclude_defaults=True)


def make_cluster(**fields) -> ClusterConfig:
    try:
        return ClusterConfig(**fields)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc).replace("job request", "cluster")) from None


class ClusterRegistry:
    """Reads and writes the clusters file; always answers for ``local``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path: Path = settings.clusters_file

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            return tomllib.loads(self.path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read clusters file {self.path}: {exc}") from None

    def _write(self, data: dict) -> None:
        """Atomically, and private to the user (0600 in a 0700 folder)."""
        private_dir(self.path.parent)
        tmp = self.path.with_suffix(".tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(tomli_w.dumps(data))
        os.replace(tmp, self.path)

    def _builtin(self) -> dict[str, ClusterConfig]:
        found = {LOCAL: ClusterConfig(name=LOCAL, base_path=self.settings.gpu_cluster_base_path)}
        s = self.settings
        if s.gpu_cluster_host:
            found[ENV_CLUSTER] = make_cluster(
                name=ENV_CLUSTER,
                host=s.gpu_cluster_host,
                port=s.gpu_cluster_port,
                user=s.gpu_cluster_username,
                key=s.gpu_cluster_key_path,
                base_path=s.gpu_cluster_base_path,
                scheduler=s.gpu_cluster_scheduler,
            )
        return found

    def all(self) -> dict[str, ClusterConfig]:
        clusters = self._builtin()
        for name, table in self._read().get("clusters", {}).items():
            clusters[name] = make_cluster(name=name, **table)
        return clusters

    def get(self, name: str | None = None) -> ClusterConfig:
        clusters = self.all()
        name = name or self.default_name(clusters)
        if name not in clusters:
            raise UnknownClusterError(name, sorted(clusters))
        return clusters[name]

    def scheduler_of(self, name: str) -> str | None:
        """The scheduler of cluster ``name``; ``None`` once it is removed (its jobs stay)."""
        cluster = self.all().get(name)
        return cluster.scheduler if cluster else None

    def default_name(self, clusters: dict[str, ClusterConfig] | None = None) -> str:
        clusters = clusters if clusters is not None else self.all()
        chosen = self._read().get("default")
        if chosen in clusters:
            return chosen
        return ENV_CLUSTER if ENV_CLUSTER in clusters else LOCAL

    @property
    def templates(self) -> Templates:
        """The ``[templates.NAME]`` tables of the same file (``templates``)."""
        return Templates(self._read, self._write)

    def cleanup_policy(self, name: str) -> CleanupConfig:
        """The cleanup policy of a cluster: its own table over the ``Settings`` defaults."""
        return self.get(name).cleanup.over(cleanup_defaults(self.settings))

    def add(self, cluster: ClusterConfig) -> None:
        if cluster.name == LOCAL:
            raise ConfigError("'local' is built in and cannot be redefined")
        data = self._read()
        data.setdefault("clusters", {})[cluster.name] = cluster.to_toml_table()
        self._write(data)

    def remove(self, name: str) -> None:
        data = self._read()
        if name not in data.get("clusters", {}):
            raise UnknownClusterError(name, sorted(self.all()))
        del data["clusters"][name]
        if data.get("default") == name:
            del data["default"]
        self._write(data)

    def use(self, name: str) -> None:
        self.get(name)
        data = self._read()
        data["default"] = name
        self._write(data)
