"""Host-key checking that behaves like ``ssh -o StrictHostKeyChecking=yes``.

An unknown key is refused, never added: trusting a key is a human decision, so the error says how
to make it (fingerprint to compare, the exact ``ssh-keyscan`` line). A changed key is refused with
both fingerprints. Known hosts come from ``known_hosts_path`` (hashed and ``[host]:port`` entries
work, as in OpenSSH) plus an optional per-cluster file.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import paramiko

from ..errors import ChangedHostKeyError, ConfigError, UnknownHostKeyError

KEYSCAN_TYPES = {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa", "ssh-dss": "dsa"}


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's default fingerprint form: ``SHA256:`` + unpadded base64 of the key blob."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def keyscan_type(key: paramiko.PKey) -> str:
    name = key.get_name()
    return "ecdsa" if name.startswith("ecdsa-") else KEYSCAN_TYPES.get(name, name)


def split_known_name(name: str) -> tuple[str, int]:
    """paramiko's host-key lookup name (``host`` or ``[host]:port``) → (host, port)."""
    if name.startswith("[") and "]:" in name:
        host, _, port = name[1:].rpartition("]:")
        return host, int(port)
    return name, 22


class RejectUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is in no known_hosts file, explaining how to trust it."""

    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        host, port = split_known_name(hostname)
        kind = keyscan_type(key)
        raise UnknownHostKeyError(
            f"unknown host key for {host}:{port}: {key.get_name()} {fingerprint(key)}. "
            f"Nothing was sent to the host. Verify this fingerprint with the host's "
            f"administrator, then trust it with: "
            f"ssh-keyscan -p {port} -t {kind} {host} >> {self.known_hosts} "
            f"(or connect once with: ssh -p {port} {host})"
        )


def changed_host_key_error(exc: paramiko.BadHostKeyException, where: str) -> ChangedHostKeyError:
    """The key differs from known_hosts: possibly a man-in-the-middle; never continue."""
    return ChangedHostKeyError(
        f"WARNING: the host key of {where} has CHANGED. Someone could be eavesdropping on you "
        f"(man-in-the-middle attack), or the host was reinstalled. "
        f"Expected {exc.expected_key.get_name()} {fingerprint(exc.expected_key)}, "
        f"got {exc.key.get_name()} {fingerprint(exc.key)}. Not connecting. If the change is "
        f"legitimate, remove the old entry (ssh-keygen -R HOST) and trust the new key."
    )


def load_known_hosts(client: paramiko.SSHClient, paths: list[Path]) -> None:
    """Load every existing known_hosts file into ``client`` (merged; missing files skipped)."""
    for path in paths:
        path = Path(path).expanduser()
        if not path.is_file():
            continue
        try:
            client.load_system_host_keys(str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read known hosts file {path}: {exc}") from None
