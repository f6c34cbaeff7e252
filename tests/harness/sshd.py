"""A real OpenSSH ``sshd`` on 127.0.0.1 for tests and benchmarks (no mocks at the SSH boundary).

Everything lives in one directory: host key, client key, authorized_keys, config, known_hosts and
the log (kept after ``stop()`` for debugging). It runs as root and logs in as root. ``MaxSessions``
and ``MaxStartups`` stay at OpenSSH's defaults unless asked, because real clusters keep them and
the client must cope with them.

    with SSHServer(tmp_path / "sshd") as server:
        server.port, server.client_key, server.known_hosts
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def generate_key(path: Path, comment: str = "gpu_magic-test") -> Path:
    """A fresh unencrypted ed25519 key pair at ``path`` / ``path.pub`` (ssh-keygen)."""
    path = Path(path)
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, deadline: float, alive=lambda: True, host: str = HOST) -> bool:
    """Poll until something accepts TCP connections on host:port (bounded)."""
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class SSHServer:
    """One ``sshd -D -e`` process; ``start()`` waits until it accepts connections.

    ``netns``/``host``/``port``: run it inside that network namespace, listening on ``host``
    (an address the test process can reach, e.g. the namespace's end of a veth pair) and a fixed
    ``port`` (the namespace's ports are its own, so no free-port search is needed there).
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_sessions: int | None = None,
        max_startups: str | None = None,
        extra_config: tuple[str, ...] = (),
        host: str = HOST,
        port: int | None = None,
        netns: str | None = None,
    ):
        self.dir = Path(directory).resolve()
        self.max_sessions = max_sessions
        self.max_startups = max_startups
        self.extra_config = extra_config
        self.host = host
        self.fixed_port = port
        self.netns = netns
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.host_key = self.dir / "host_ed25519"
        self.client_key = self.dir / "client_key"
        self.authorized_keys = self.dir / "authorized_keys"
        self.config_path = self.dir / "sshd_config"
        self.known_hosts = self.dir / "known_hosts"
        self.log_path = self.dir / "sshd.log"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SSHServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        generate_key(self.host_key, "sshd-host")
        generate_key(self.client_key)
        self.authorized_keys.write_text(self.client_key.with_suffix(".pub").read_text())
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation dir
        for _ in range(3):  # a free port can be taken by someone else before sshd binds it
            self.port = self.fixed_port or free_port()
            if self._spawn():
                self.known_hosts.write_text(self.known_hosts_line() + "\n")
                return self
        raise RuntimeError(f"sshd did not start; log {self.log_path}:\n{self.log_tail()}")

    def _spawn(self) -> bool:
        self.config_path.write_text(self.config_text())
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            enter = ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []
            self.proc = subprocess.Popen(
                [*enter, str(SSHD), "-D", "-e", "-f", str(self.config_path), "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        if wait_for_port(self.port, deadline, lambda: self.proc.poll() is None, self.host):
            return True
        self.stop()
        return False

    def config_text(self) -> str:
        lines = [
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"PidFile {self.dir / 'sshd.pidfile'}",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "Subsystem sftp internal-sftp",
        ]
        if self.max_sessions is not None:
            lines.append(f"MaxSessions {self.max_sessions}")
        if self.max_startups is not None:
            lines.append(f"MaxStartups {self.max_startups}")
        return "\n".join([*lines, *self.extra_config]) + "\n"

    def stop(self) -> None:
        """Stop by PID: SIGTERM, bounded wait, then SIGKILL. The log file stays."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- for tests ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def host_public_key(self) -> str:
        """``ssh-ed25519 AAAA...`` (type and base64, no comment)."""
        return " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])

    def cluster(self, base_path: Path, name: str = "ssh"):
        """A gpu_magic cluster for this server: root, the client key, this Python on the host."""
        import sys

        from gpu_magic.clusters import ClusterConfig

        return ClusterConfig(
            name=name,
            host=self.host,
            port=self.port,
            user="root",
            key=str(self.client_key),
            base_path=str(base_path),
            python=sys.executable,
        )

    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_public_key}"

    def connection_pids(self) -> list[int]:
        """PIDs of the per-connection sshd processes (live children of the listener)."""
        if self.pid is None:
            return []
        return [pid for pid, (ppid, state) in _processes().items() if ppid == self.pid]

    def kill_connections(self) -> list[int]:
        """SIGKILL every connection's whole process tree (privsep monitor, the network child,
        the commands it runs) and wait (bounded) until they are dead, so that when this returns
        the server side of every connection is gone. Returns the connection PIDs.

        A login shell killed while its start-up files ran ``pyenv rehash`` (root's ``.bashrc``
        here runs ``pyenv init``) leaves pyenv's lock behind, and every later login then waits
        60 s for it: such a lock is removed, as the killed rehash would have on its way out."""
        connections = self.connection_pids()
        tree = _descendants(connections)
        locks = [lock for pid in tree if (lock := _pyenv_rehash_lock(pid)) is not None]
        _kill_and_wait(tree)
        for lock in locks:
            lock.unlink(missing_ok=True)
        return connections

    def drop_connections(self) -> list[int]:
        """SIGKILL the sshd processes of every connection, leaving the commands they ran: what
        a client sees when the network drops its connection (a shell killed halfway through
        its start-up files could leave their locks behind, e.g. pyenv's rehash lock, and stall
        every later login for a minute). Returns the killed PIDs."""
        tree = [pid for pid in _descendants(self.connection_pids()) if _is_sshd(pid)]
        _kill_and_wait(tree)
        return tree

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) of every live process (zombies count as dead)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:  # it exited while we looked
            continue
        if state not in ("Z", "X"):
            found[int(stat.parent.name)] = (int(ppid), state)
    return found


def _kill_and_wait(pids: list[int]) -> None:
    """SIGKILL ``pids`` and wait (bounded) until every one is dead."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(pid in _processes() for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd connection processes {pids} survived SIGKILL")
        time.sleep(0.01)


def _pyenv_rehash_lock(pid: int) -> Path | None:
    """The lock file of the ``pyenv rehash`` that ``pid`` runs, if it runs one."""
    try:
        if b"pyenv-rehash" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # it exited meanwhile
        return None
    root = next((v[11:] for v in environ if v.startswith(b"PYENV_ROOT=")), None)
    return None if root is None else Path(os.fsdecode(root)) / "shims" / ".pyenv-shim"


def _is_sshd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() in ("sshd", "sshd-session")
    except OSError:
        return False


def _descendants(roots: list[int]) -> list[int]:
    processes = _processes()
    tree, frontier = list(roots), list(roots)
    while frontier:
        frontier = [pid for pid, (ppid, _) in processes.items() if ppid in frontier]
        tree += frontier
    return tree
