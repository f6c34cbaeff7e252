"""Opening one authenticated SSH connection, through ProxyJump hosts, with errors mapped.

Split from ``ssh.py`` (which owns what runs *on* a connection) so that each stays readable.
What is retried and what is not is the point of this module:

- sshd drops simultaneous connects past ``MaxStartups`` (default ``10:30:100``) before its
  banner: the client sees EOF or a reset, and a retry a moment later succeeds.
- a connection that ends during authentication without the server saying goodbye (no
  ``SSH_MSG_DISCONNECT``: a killed sshd, a cut network) was dropped, not refused; paramiko
  reports it as an authentication failure, so it is told apart here and retried the same way.
  sshd's own goodbye there (``MaxAuthTries``) is a refusal, and retrying it could get the
  user's address banned (fail2ban).
- a refused port, an unknown name, a rejected key, an unknown or changed host key: retrying
  cannot help, so the error is raised at once, mapped into ``gpu_magic.errors`` with the
  ``host:port`` and what to do about it.
- a host that does not answer is dialled again every ``DIAL_ATTEMPT_S`` until the connection
  timeout: each dial sends a fresh SYN, where one long dial would wait out TCP's doubling
  retransmissions (1, 3, 7, 15 s...) and notice a network that came back up to that late.

A connection that a partition cut must be noticed, or every command waits on it: the socket
gets ``TCP_USER_TIMEOUT`` (data unacknowledged that long kills it) and SSH keepalives every
``keepalive`` seconds keep data in flight on an idle connection, so a dead one dies within
about four keepalive intervals and the next call reconnects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import paramiko
import tenacity

from ..errors import (
    AuthenticationError,
    ClusterConnectionError,
    ConfigError,
    GPUMagicError,
    HostUnreachableError,
)
from .hostkeys import RejectUnknownHostKey, changed_host_key_error, load_known_hosts
from .sshconfig import MAX_JUMPS, Endpoint, jump_endpoint

FAST_CIPHER = "aes128-gcm@openssh.com"
DEAD_AFTER_KEEPALIVES = 3
"""Sent data unacknowledged for this many keepalive intervals: the connection is dead."""
DIAL_ATTEMPT_S = 3.0
HANDSHAKE_SLACK_S = 1.0
"""paramiko's handshake wait must outlast its banner timeout: when both expire together the
wait can end first with a meaningless "No existing session" instead of the banner timeout."""
CONNECT_ATTEMPTS = 10
"""Handshakes that sshd dropped (MaxStartups) are tried again this often, with jittered waits
growing to 1 s, within the connection timeout: a burst of 40 connects on a busy 2-core host
outlasted 5 quick tries (about 0.4 s of waits) once in a few CI runs; 10 span a few seconds."""
WIRE_ERRORS = (paramiko.SSHException, EOFError, OSError)
"""What paramiko and sockets raise when the wire misbehaves (socket.timeout is an OSError)."""

# paramiko's transport thread logs every dropped handshake as an ERROR with a traceback; with no
# logging configured, Python prints those into the notebook cell. The errors raised here carry
# the same facts, so give paramiko's logger a handler of its own (records still propagate).
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class Connection:
    """One authenticated connection, the jump connections under it, and its channel slots."""

    def __init__(self, client: paramiko.SSHClient, jumps: list, max_sessions: int):
        self.client = client
        self.jumps = jumps
        self.slots = threading.BoundedSemaphore(max_sessions)
        self.lock = threading.Lock()
        self.spare_sftp: paramiko.SFTPClient | None = None  # the idle SFTP session ssh.py keeps
        self.helpers: dict[
            str, object
        ] = {}  # interpreter -> its helper (``sshhelper``), or why not

    @property
    def transport(self) -> paramiko.Transport | None:
        return self.client.get_transport()

    @property
    def active(self) -> bool:
        transport = self.transport
        return transport is not None and transport.is_active()

    def open_session(self, timeout: float) -> paramiko.Channel:
        transport = self.transport
        if transport is None or not transport.is_active():
            raise EOFError("connection closed")
        return transport.open_session(timeout=timeout)

    def close(self) -> None:
        for client in [self.client, *reversed(self.jumps)]:
            client.close()


class Connector:
    """Opens connections with one ssh config, one set of known_hosts and one timeout.

    ``fallback_keys`` are offered to hosts whose ssh config names no IdentityFile: a jump host
    given as ``proxy_jump="user@bastion"`` then tries the cluster's key too (and the agent).
    """

    def __init__(
        self,
        ssh_config: paramiko.SSHConfig,
        known_hosts: list[Path],
        timeout: float,
        fallback_keys: tuple[str, ...] = (),
        keepalive: float = 5.0,
    ):
        self.ssh_config = ssh_config
        self.known_hosts = known_hosts
        self.timeout = timeout
        self.fallback_keys = fallback_keys
        self.keepalive = keepalive

    def connect(self, endpoint: Endpoint, max_sessions: int) -> Connection:
        return Connection(*self._open_chain(endpoint), max_sessions)

    def _open_chain(self, endpoint: Endpoint, depth: int = 0):
        """Connect to ``endpoint`` through its ProxyJump hosts; returns (client, jump clients)."""
        if depth > MAX_JUMPS:
            raise ConfigError(f"ProxyJump chain to {endpoint.label} is longer than {MAX_JUMPS}")
        if not endpoint.proxy_jump:
            return self._open_client(endpoint, lambda: self._dial(endpoint)), []
        jump = jump_endpoint(endpoint.proxy_jump, self.ssh_config)
        jump_client, jumps = self._open_chain(jump, depth + 1)
        jumps.append(jump_client)
        try:
            tunnel = lambda: self._tunnel(jump_client, jump, endpoint)  # noqa: E731
            return self._open_client(endpoint, tunnel), jumps
        except BaseException:
            for client in reversed(jumps):
                client.close()
            raise

    def _dial(self, endpoint: Endpoint) -> socket.socket:
        """TCP to the host, dialled afresh every ``DIAL_ATTEMPT_S`` while it does not answer.

        NODELAY: SFTP is request/response, and Nagle's algorithm held back small requests
        (measured: a 10 KB read_file 2.5 ms with Nagle, 0.5 ms without).
        """
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TimeoutError),
            stop=tenacity.stop_after_delay(self.timeout),
            reraise=True,
        )
        attempt = min(DIAL_ATTEMPT_S, self.timeout)
        address = (endpoint.hostname, endpoint.port)
        sock = retrying(socket.create_connection, address, timeout=attempt)
        sock.settimeout(self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_dead_after(sock, self.keepalive * DEAD_AFTER_KEEPALIVES)
        return sock

    def _tunnel(self, via: paramiko.SSHClient, jump: Endpoint, target: Endpoint):
        """A ``direct-tcpip`` channel from the jump host to the target, used as the socket."""
        try:
            return via.get_transport().open_channel(
                "direct-tcpip",
                (target.hostname, target.port),
                ("127.0.0.1", 0),
                timeout=self.timeout,
            )
        except paramiko.ChannelException as exc:
            raise HostUnreachableError(
                f"jump host {jump.label} cannot reach {target.hostname}:{target.port}: {exc.text}"
            ) from None

    def _open_client(self, endpoint: Endpoint, dial: Callable) -> paramiko.SSHClient:
        """Handshake and authenticate, retrying only connects the server dropped early."""
        keys = key_files(endpoint) or [k for k in self.fallback_keys if os.path.isfile(k)]
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(dropped_early),
            stop=tenacity.stop_after_attempt(CONNECT_ATTEMPTS)
            | tenacity.stop_after_delay(self.timeout),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=1.0),
            reraise=True,
        )
        try:
            return retrying(self._handshake, endpoint, dial, keys)
        except GPUMagicError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise changed_host_key_error(exc, f"{endpoint.hostname}:{endpoint.port}") from None
        except (*WIRE_ERRORS, ValueError) as exc:
            if is_auth_failure(exc):
                raise AuthenticationError(auth_message(endpoint, keys, exc)) from None
            raise connect_error(endpoint, exc, self.timeout) from None

    def _handshake(self, endpoint: Endpoint, dial: Callable, keys: list[str]):
        sock = dial()
        client = paramiko.SSHClient()
        try:
            markers = load_known_hosts(client, self.known_hosts)
            client.set_missing_host_key_policy(RejectUnknownHostKey(self.known_hosts[0], markers))
            client.connect(
                endpoint.hostname,
                port=endpoint.port,
                username=endpoint.user,
                key_filename=keys or None,
                allow_agent=True,
                look_for_keys=not keys,
                timeout=self.timeout + HANDSHAKE_SLACK_S,  # used for the handshake only
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                channel_timeout=self.timeout,
                sock=sock,
                transport_factory=fast_transport,
            )
        except BaseException as exc:
            cut = isinstance(exc, paramiko.AuthenticationException) and cut_during_authentication(
                client.get_transport()
            )
            client.close()
            sock.close()
            if cut:
                raise EOFError("the connection ended during authentication") from exc
            raise
        client.get_transport().set_keepalive(max(1, round(self.keepalive)))
        return client


def set_dead_after(sock: socket.socket, seconds: float) -> None:
    """Let the kernel kill the connection when sent data stays unacknowledged for ``seconds``
    (Linux ``TCP_USER_TIMEOUT``), and probe an idle one (TCP keepalive: a host that rebooted
    answers with a reset). Where the options are missing, SSH keepalives still run."""
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        options.append((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(seconds * 1000)))
    if hasattr(socket, "TCP_KEEPIDLE"):
        interval = max(1, int(seconds / DEAD_AFTER_KEEPALIVES))
        options += [
            (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, interval),
            (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval),
            (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, DEAD_AFTER_KEEPALIVES),
        ]
    for level, option, value in options:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, option, value)


class GoodbyeTransport(paramiko.Transport):
    """A paramiko Transport that remembers whether the server ended the connection with
    ``SSH_MSG_DISCONNECT`` (paramiko only logs it): without one, it was cut."""

    said_goodbye = False

    def _parse_disconnect(self, m) -> None:
        self.said_goodbye = True
        super()._parse_disconnect(m)


def cut_during_authentication(transport: GoodbyeTransport | None) -> bool:
    """An authentication failure whose connection is gone with no word from the server."""
    if transport is None or transport.is_active():
        return False  # the server answered: the keys were refused
    return not transport.said_goodbye


def fast_transport(sock, **kwargs) -> paramiko.Transport:
    """A paramiko Transport that offers aes128-gcm first (paramiko lists it last)."""
    transport = GoodbyeTransport(sock, **kwargs)
    options = transport.get_security_options()
    options.ciphers = (FAST_CIPHER, *(c for c in options.ciphers if c != FAST_CIPHER))
    return transport


def key_files(endpoint: Endpoint) -> list[str]:
    """Key files to offer: an explicit key must exist; missing config IdentityFiles are skipped.
    A key that others can read is refused, as ssh refuses it: it may not be secret any more."""
    if endpoint.explicit_key and not os.path.isfile(endpoint.key_files[0]):
        raise AuthenticationError(
            f"key file {endpoint.key_files[0]} for {endpoint.label} does not exist"
        )
    keys = [k for k in endpoint.key_files if os.path.isfile(k)]
    for key in keys:
        mode = os.stat(key).st_mode & 0o777
        if mode & 0o077:
            raise AuthenticationError(
                f"key file {key} for {endpoint.label} can be read by others (mode {mode:04o}); "
                f"ssh refuses such a key, and so does gpu_magic: chmod 600 {key}"
            )
    return keys


def is_auth_failure(exc: BaseException) -> bool:
    """Rejected keys, or nothing to offer (paramiko says so with a plain SSHException)."""
    return isinstance(exc, paramiko.AuthenticationException) or (
        "No authentication methods available" in str(exc)
    )


def dropped_early(exc: BaseException) -> bool:
    """True when the server closed the connection during the handshake (sshd MaxStartups).

    A banner *timeout* is a host that does not answer: retrying would only multiply the wait.
    """
    if isinstance(exc, (GPUMagicError, paramiko.AuthenticationException)):
        return False
    if isinstance(exc, (EOFError, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return True
    if isinstance(exc, paramiko.SSHException) and "protocol banner" in str(exc):
        return not isinstance(exc.__context__, TimeoutError)
    return False


def connect_error(endpoint: Endpoint, exc: BaseException, timeout: float) -> GPUMagicError:
    """Map a failed connect to the error a user can act on."""
    where = f"{endpoint.hostname}:{endpoint.port}"
    if isinstance(exc, socket.gaierror):
        return HostUnreachableError(f"cannot resolve {where}: {exc.strerror}")
    if isinstance(exc, ConnectionRefusedError):
        return HostUnreachableError(f"connection to {where} refused: is sshd running on that port?")
    if isinstance(exc, TimeoutError) or _banner_timeout(exc) or "timed out" in str(exc):
        return HostUnreachableError(f"{where} did not answer over SSH within {timeout:g}s")
    if dropped_early(exc):
        return ClusterConnectionError(
            f"{where} closed the connection during the SSH handshake, even after retries "
            f"(overloaded sshd? MaxStartups?): {describe(exc)}"
        )
    if isinstance(exc, OSError):
        return HostUnreachableError(f"cannot reach {where}: {describe(exc)}")
    return ClusterConnectionError(f"SSH connection to {endpoint.label} failed: {describe(exc)}")


def _banner_timeout(exc: BaseException) -> bool:
    return "protocol banner" in str(exc) and isinstance(exc.__context__, TimeoutError)


def auth_message(endpoint: Endpoint, keys: list[str], exc: BaseException) -> str:
    agent = os.environ.get("SSH_AUTH_SOCK")
    tried = [f"key {k}" for k in keys] or ["default keys ~/.ssh/id_*"]
    tried.append(f"ssh-agent at {agent}" if agent else "no ssh-agent (SSH_AUTH_SOCK is not set)")
    hint = ""
    if isinstance(exc, paramiko.PasswordRequiredException):
        hint = " A key is passphrase-protected: add it to ssh-agent with ssh-add."
    return (
        f"authentication failed for {endpoint.label}; tried: {', '.join(tried)}. "
        f"Passwords are never used: install your public key in the host's "
        f"~/.ssh/authorized_keys.{hint}"
    )


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def close_quietly(closable: paramiko.Channel | paramiko.SFTPClient) -> None:
    """Close a channel or SFTP session whose connection may have just died.

    paramiko sends the close message itself, and on a socket that died before its transport
    thread noticed, that send raises ``EOFError``; the error would replace the one the caller
    is reporting (a send that failed, "it may or may not have run"). A close is best effort."""
    with contextlib.suppress(*WIRE_ERRORS):
        closable.close()
