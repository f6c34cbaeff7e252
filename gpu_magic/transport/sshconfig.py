"""Where to connect: a cluster's host resolved through ``~/.ssh/config`` the way ``ssh`` does.

Only the options that decide *where* and *as whom* are honoured (HostName, Port, User,
IdentityFile, ProxyJump); explicit ``ClusterConfig`` fields win over the file, as command-line
flags win over it for ``ssh``. A missing config file is the same as an empty one.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ..errors import ConfigError

DEFAULT_PORT = 22
MAX_JUMPS = 8
"""Bound on ProxyJump chains, so a config whose jump hosts jump through each other fails."""


@dataclass(frozen=True)
class Endpoint:
    """One SSH server to authenticate to; ``proxy_jump`` says how to reach it (None: directly)."""

    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    explicit_key: bool
    proxy_jump: str | None

    @property
    def label(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


MATCH_EXEC = re.compile(r"^\s*match\b.*\bexec\b", re.IGNORECASE)


def load_ssh_config(path: Path, allow_commands: bool = False) -> paramiko.SSHConfig:
    """Parse the user's ssh config; a missing file is an empty config.

    ``Match exec`` runs a local command while the config is read (paramiko does, as ssh
    does): a config that is not the user's own would run code in the kernel. It is refused,
    naming the line, unless ``allow_commands`` (``GPU_MAGIC_SSH_CONFIG_COMMANDS=1``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        return paramiko.SSHConfig()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read ssh config {path}: {exc}") from None
    if not allow_commands:
        _refuse_local_commands(path, text)
    try:
        return paramiko.SSHConfig.from_text(text)
    except (paramiko.SSHException, ValueError) as exc:
        raise ConfigError(f"cannot read ssh config {path}: {exc}") from None


def _refuse_local_commands(path: Path, text: str) -> None:
    for number, line in enumerate(text.splitlines(), 1):
        if MATCH_EXEC.match(line):
            raise ConfigError(
                f"{path}:{number}: 'Match exec' would run a local command whenever gpu_magic "
                "reads this ssh config; it is refused. If this config is your own, allow it "
                "with GPU_MAGIC_SSH_CONFIG_COMMANDS=1 in your environment (or settings.env in "
                "your gpu_magic config folder)"
            )


def resolve(
    alias: str,
    config: paramiko.SSHConfig,
    *,
    port: int | None = None,
    user: str | None = None,
    key: str | None = None,
    proxy_jump: str | None = None,
) -> Endpoint:
    """Resolve ``alias`` like ``ssh alias`` would; keyword arguments override the config."""
    options = config.lookup(alias)
    keys = (key,) if key else tuple(options.get("identityfile", ()))
    jump = proxy_jump or options.get("proxyjump")
    try:
        resolved_port = int(port or options.get("port", DEFAULT_PORT))
    except ValueError:
        raise ConfigError(f"ssh config: invalid Port for {alias!r}") from None
    return Endpoint(
        hostname=options.get("hostname", alias),
        port=resolved_port,
        user=user or options.get("user") or getpass.getuser(),
        key_files=tuple(os.path.expanduser(k) for k in keys),
        explicit_key=bool(key),
        proxy_jump=None if jump in (None, "", "none") else jump,
    )


def split_jump(spec: str) -> tuple[str, str | None, int | None]:
    """``[user@]host[:port]`` (one hop of a ProxyJump list) → (host, user, port)."""
    user, _, hostport = spec.rpartition("@")
    host, port = hostport, None
    if hostport.startswith("["):  # [v6addr]:port
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] or None
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    try:
        return host, user or None, int(port) if port else None
    except ValueError:
        raise ConfigError(f"invalid ProxyJump hop {spec!r}") from None


def jump_endpoint(chain: str, config: paramiko.SSHConfig) -> Endpoint:
    """The last hop of a ProxyJump ``chain``, reached through the hops before it.

    ``-J a,b target`` means: reach ``b`` through ``a``, then ``target`` through ``b``. The last hop
    keeps its own ProxyJump from the config only when it is the first hop of the chain.
    """
    hops = [h.strip() for h in chain.split(",") if h.strip()]
    if not hops:
        raise ConfigError(f"empty ProxyJump {chain!r}")
    host, user, port = split_jump(hops[-1])
    return resolve(host, config, port=port, user=user, proxy_jump=",".join(hops[:-1]) or None)
