"""Host-key checking that behaves like ``ssh -o StrictHostKeyChecking=yes``.

An unknown key is refused, never added: trusting a key is a human decision, so the error says how
to make it (fingerprint to compare, the exact ``ssh-keyscan`` line). A changed key is refused with
both fingerprints. Known hosts come from ``known_hosts_path`` (hashed and ``[host]:port`` entries
work, as in OpenSSH) plus an optional per-cluster file.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
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


@dataclass
class Markers:
    """What the known_hosts files said beyond plain keys: ``@revoked`` keys (refused, whatever
    else says) and whether ``@cert-authority`` lines were there (host certificates, which
    gpu_magic cannot verify: such a host needs its own key listed)."""

    revoked: dict[str, str] = field(default_factory=dict)  # fingerprint -> "file:line"
    cert_authority: list[str] = field(default_factory=list)  # "file:line"


class RejectUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is in no known_hosts file, explaining how to trust it."""

    def __init__(self, known_hosts: Path, markers: Markers | None = None):
        self.known_hosts = known_hosts
        self.markers = markers or Markers()

    def missing_host_key(self, client, hostname, key):
        host, port = split_known_name(hostname)
        kind = keyscan_type(key)
        where = self.markers.revoked.get(fingerprint(key))
        if where is not None:
            raise ChangedHostKeyError(
                f"the host key of {host}:{port} ({key.get_name()} {fingerprint(key)}) is "
                f"REVOKED ({where}): not connecting. Nothing was sent to the host."
            )
        certificates = ""
        if self.markers.cert_authority:
            certificates = (
                f" (known_hosts has @cert-authority lines, {', '.join(self.markers.cert_authority)}"
                ": gpu_magic cannot verify host certificates, so the host's own key must be listed)"
            )
        raise UnknownHostKeyError(
            f"unknown host key for {host}:{port}: {key.get_name()} {fingerprint(key)}. "
            f"Nothing was sent to the host. Verify this fingerprint with the host's "
            f"administrator, then trust it with: "
            f"ssh-keyscan -p {port} -t {kind} {host} >> {self.known_hosts} "
            f"(or connect once with: ssh -p {port} {host}){certificates}"
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


def load_known_hosts(client: paramiko.SSHClient, paths: list[Path]) -> Markers:
    """Load every existing known_hosts file into ``client`` (merged; missing files skipped).

    ``@revoked`` and ``@cert-authority`` lines (which paramiko cannot parse: it fails with a
    bare "Incorrect padding") are read here: a revoked key is refused, even where another line
    lists it, as OpenSSH does; a CA line is named when its host's key turns out unknown. Any
    other unreadable line is an error naming it."""
    markers = Markers()
    listed: list[paramiko.hostkeys.HostKeyEntry] = []
    for path in paths:
        path = Path(path).expanduser()
        if not path.is_file():
            continue
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read known hosts file {path}: {exc}") from None
        for number, line in enumerate(lines, 1):
            entry = _read_line(markers, line.strip(), f"{path}:{number}")
            if entry is not None:
                listed.append(entry)
    keys = client.get_host_keys()
    for entry in listed:
        if fingerprint(entry.key) not in markers.revoked:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
    return markers


def _read_line(markers: Markers, line: str, where: str) -> paramiko.hostkeys.HostKeyEntry | None:
    """The plain entry of one line (None for a comment, a marker line, an unknown key type)."""
    if not line or line.startswith("#"):
        return None
    if line.startswith("@cert-authority"):
        markers.cert_authority.append(where)
        return None
    revoked = line.startswith("@revoked")
    try:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(
            line.split(None, 1)[1] if revoked else line
        )
    except (paramiko.SSHException, ValueError, IndexError) as exc:
        raise ConfigError(f"{where}: unreadable known_hosts line: {exc}") from None
    if entry is not None and revoked:
        markers.revoked[fingerprint(entry.key)] = where
        return None
    return entry  # None: a key type paramiko does not know, ignored as OpenSSH ignores them
