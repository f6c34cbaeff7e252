"""``Hosts``: a cluster name in, its host out (config, transport, scheduler); one connection
per host, however many cluster names lead there.

The one place that picks concrete backends: ``LocalTransport`` for the ``local`` cluster,
``SSHTransport`` for the rest (paramiko loads only then), ``SlurmScheduler`` or
``ProcessScheduler`` by the cluster's ``scheduler``. Tests and benches inject their own
transports (``Hosts(..., transports={"ssh": spy})`` or a factory), as httpx takes a
``transport=``; nobody reaches into a private dict. Every transport handed out, injected or
not, is an ``AuditedTransport``: nothing reaches a host unrecorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .audit import AuditLog, Trail
from .clusters import ClusterConfig, ClusterRegistry
from .config import Settings
from .models import GPUJob
from .schedulers import ProcessScheduler, Scheduler, SlurmScheduler
from .transport import LocalTransport, Transport
from .transport.audited import AuditedTransport

TransportFactory = Callable[[ClusterConfig], Transport]


@dataclass(frozen=True)
class Host:
    """One cluster as the services use it."""

    config: ClusterConfig
    transport: Transport
    scheduler: Scheduler
    audit: Trail

    @property
    def name(self) -> str:
        return self.config.name


class Hosts:
    """Thread-safe; one transport per cluster (shared by every thread), one scheduler per
    cluster config (a Slurm scheduler remembers whether sacct works there)."""

    def __init__(
        self,
        settings: Settings,
        clusters: ClusterRegistry,
        audit: AuditLog,
        transports: Mapping[str, Transport] | TransportFactory | None = None,
    ):
        self.settings, self.clusters, self.audit = settings, clusters, audit
        self._given = transports
        self._transports: dict[str, Transport] = {}
        self._shared: dict[tuple, Transport] = {}  # identity -> the one transport of a host
        self._hosts: dict[str, Host] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Host:
        """The host of cluster ``name`` (``UnknownClusterError`` for a name nobody defined)."""
        config = self.clusters.get(name)
        with self._lock:
            transport = self._transports.get(config.name)
            if transport is None:
                transport = self._transports[config.name] = self._audited(config)
            host = self._hosts.get(config.name)
            if host is None or host.config != config or host.transport is not transport:
                trail = self.audit.trail(config.name, transport.label)
                host = self._hosts[config.name] = Host(
                    config, transport, _scheduler(config, transport), trail
                )
            return host

    def of(self, job: GPUJob) -> Host:
        return self.get(job.cluster)

    def close(self) -> None:
        """Close every connection; the hosts can be used again afterwards (they reconnect)."""
        with self._lock:
            transports, self._transports, self._hosts = list(self._transports.values()), {}, {}
            self._shared = {}
        for transport in transports:
            transport.close()  # a shared one twice: closing is idempotent

    def _audited(self, config: ClusterConfig) -> AuditedTransport:
        """The cluster's transport, recorded under its own name; the connection under it is
        shared with every other cluster that names the same host (``identity``)."""
        transport = self._make_transport(config)
        identity = getattr(transport, "identity", None)
        if identity is not None:
            transport = self._shared.setdefault(identity, transport)
        return AuditedTransport(transport, self.audit.trail(config.name, transport.label).record)

    def _make_transport(self, config: ClusterConfig) -> Transport:
        given = self._given
        if callable(given):
            return given(config)
        if given is not None and config.name in given:
            return given[config.name]
        if config.is_local:
            return LocalTransport()
        from .transport.ssh import SSHTransport  # paramiko loads only when a host needs it

        return SSHTransport(config, self.settings)


def _scheduler(config: ClusterConfig, transport: Transport) -> Scheduler:
    if config.scheduler == "slurm":
        return SlurmScheduler(transport, config.interpreter, config.slurm)
    return ProcessScheduler(transport, config.interpreter)
