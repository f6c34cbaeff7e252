"""``SSHTransport``: the transport seam over one shared paramiko connection per host.

Why it is built this way (numbers: shared/toolchain/TOOLCHAIN.md):

- ONE connection per transport, opened lazily, shared by every thread and reopened when it died.
  Real sshds keep ``MaxStartups`` at its default, which drops simultaneous connects, so connects
  that the server drops during the handshake are retried; auth and host-key failures never are.
- Channels on the connection are capped by a semaphore (``cluster.max_sessions``, default 8)
  below sshd's default ``MaxSessions 10``: 50 threads share the connection without the server
  refusing channels.
- ``aes128-gcm@openssh.com`` first and 255 KiB pipelined SFTP writes: measured ~2x faster than
  paramiko's defaults and faster than OpenSSH ``scp``. Reads keep paramiko's prefetch, except
  big downloads (``STREAM_BYTES``), which flow over an exec channel: faster than ``scp`` too.
- paramiko is imported only here and in the modules split from this one to keep each short:
  ``sshconnect`` (opening a connection, retries), ``sshchannel`` (deadlock-free channel I/O),
  ``hostkeys`` and ``sshconfig``. Every paramiko, socket and OS error is mapped at this
  boundary into ``gpu_magic.errors``: the ``ClusterConnectionError`` family for connections
  and commands, ``TransferError`` for file operations.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import paramiko
import tenacity

from ..clusters import ClusterConfig
from ..config import Settings
from ..errors import (
    ClusterConnectionError,
    ConfigError,
    GPUMagicError,
    RemoteCommandError,
    TransferError,
    WaitTimeoutError,
)
from .base import (
    CommandResult,
    Digest,
    Program,
    Progress,
    RemoteEntry,
    Transport,
    copy_chunks,
    iter_chunks,
    open_target,
    quote_argv,
    shorten,
    walk_tree,
)
from .hostkeys import fingerprint
from .sshchannel import (
    Batch,
    ChannelReader,
    ChannelWriter,
    Reader,
    answers,
    collect,
    connection_lost,
    read_request,
)
from .sshconfig import load_ssh_config, resolve
from .sshconnect import WIRE_ERRORS, Connection, Connector, close_quietly, describe
from .sshhelper import Helper, HelperGone, Reply, Spool

SFTP_REQUEST = 255 * 1024
"""OpenSSH's sftp-server accepts messages up to 256 KiB; 255 KiB of data leaves room for headers."""
RECV_CHUNK = 1 << 16
READ_PIECE = 1 << 20
STREAM_BYTES = 64 << 20
"""A download with this much or more to move flows over an exec channel (``tail -c``), not
SFTP: it costs about a third less CPU per byte here (paramiko's prefetch parses and reassembles
every 255 KiB reply), which outweighs, from about this size, the login shell that the command
starts (~150 ms on a host whose ``.bashrc`` runs ``pyenv init``). ``bench/bench_transfer.py``"""
STREAM_CHUNK = 1 << 20
HELPER_MIN_SESSIONS = 3
"""The helper holds one channel slot for the connection's life: not below this many slots."""
STARTING, UNAVAILABLE = "starting", "unavailable"
SPOOL_BYTES = 4 << 20
"""A stream up to this size goes to the helper in one request (held in memory, sent at its end:
a progress bar meanwhile shows it as sent); a bigger one flows to the helper in pieces."""


class SSHTransport(Transport):
    """Commands and files on ``cluster.host`` over SSH. Thread-safe; see the module docstring."""

    def __init__(self, cluster: ClusterConfig, settings: Settings):
        if cluster.host is None:
            raise ConfigError(f"cluster {cluster.name!r} has no host; use LocalTransport")
        self.cluster = cluster
        self.settings = settings
        self._ssh_config = load_ssh_config(
            settings.ssh_config_path, allow_commands=settings.gpu_magic_ssh_config_commands
        )
        self.endpoint = resolve(
            cluster.host,
            self._ssh_config,
            port=cluster.port,
            user=cluster.user,
            key=cluster.key,
            proxy_jump=cluster.proxy_jump,
        )
        self.label = self.endpoint.label
        known_hosts = [Path(settings.known_hosts_path).expanduser()]
        if cluster.known_hosts:
            known_hosts.append(Path(cluster.known_hosts).expanduser())
        self._connector = Connector(
            self._ssh_config,
            known_hosts,
            settings.ssh_connection_timeout,
            fallback_keys=self.endpoint.key_files,
            keepalive=settings.ssh_keepalive_interval,
        )
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._home: str | None = None

    # -- the seam ---------------------------------------------------------------------------

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        helper = self._helper(self.cluster.interpreter)
        if helper is not None:
            reply = self._ask(
                helper, command, timeout, lambda: helper.shell(command, stdin, timeout)
            )
            if reply is not None:
                return CommandResult(command, reply.exit_code, reply.stdout, reply.stderr)
        return self._exec(command, stdin, timeout)

    def run_program(
        self,
        program: Program,
        interpreter: str,
        args: Iterable[str] = (),
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        args = list(args)
        command = program.command(interpreter, *args)
        shown = shorten(command)
        helper = self._helper(interpreter)
        if helper is not None:
            ask = lambda: helper.program(program, args, stdin, timeout)  # noqa: E731
            reply = self._ask(helper, shown, timeout, ask)
            if reply is not None:
                return CommandResult(shown, reply.exit_code, reply.stdout, reply.stderr)
        return replace(self._exec(command, stdin, timeout), command=shown)

    def _ask(self, helper: Helper, command: str, timeout: float | None, ask) -> Reply | None:
        """A command's reply from the helper, or None when it must take an exec channel (the
        helper had gone before the request was sent)."""
        try:
            return ask()
        except TimeoutError:
            raise WaitTimeoutError(
                f"command timed out after {timeout}s on {self.label}: {command}"
            ) from None
        except HelperGone as gone:
            if gone.sent:
                raise self._lost(command, gone) from gone
            return None

    def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> CommandResult:
        """``command`` on an exec channel of its own (the login shell starts for it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._channel(timeout) as chan:
            try:
                chan.exec_command(command)
                out, err = collect(chan, deadline, stdin or b"")
            except TimeoutError:
                raise WaitTimeoutError(
                    f"command timed out after {timeout}s on {self.label}: {command}"
                ) from None
            except WIRE_ERRORS as exc:
                raise self._lost(command, exc) from exc
            status = chan.recv_exit_status()
            if status == -1 and not chan.get_transport().is_active():
                raise self._lost(command, EOFError("connection closed"))
        return CommandResult(command, status, out, err)

    def stream_to(self, command: str) -> AbstractContextManager[BinaryIO]:
        """A stream to the helper: a small one (a resubmit's tar of spec, run script and
        lists) gathered and sent as one request, so nothing is sent when the caller's block
        fails; one that outgrows ``SPOOL_BYTES`` flows on in pieces as it is written (and is
        killed on the host when the caller's block fails). No login shell starts for either."""
        whole = lambda helper, data: helper.shell(command, data, None)  # noqa: E731
        return self._stream_in(command, self.cluster.interpreter, whole, Helper.open_shell)

    def stream_to_program(
        self, program: Program, interpreter: str, args: Iterable[str] = ()
    ) -> AbstractContextManager[BinaryIO]:
        """Like ``stream_to``, in a child of the helper, whose imports are done (an upload's
        commit: no fresh interpreter's ~40 ms either)."""
        args = list(args)
        whole = lambda helper, data: helper.program(program, args, data, None)  # noqa: E731
        piecewise = lambda helper, _command: helper.open_program(program, args)  # noqa: E731
        return self._stream_in(program.command(interpreter, *args), interpreter, whole, piecewise)

    @contextmanager
    def _stream_in(self, command: str, interpreter: str, whole, piecewise) -> Iterator[BinaryIO]:
        helper = self._helper(interpreter)
        if helper is None:
            with self._exec_stream_to(command) as stream:
                yield stream
            return
        with contextlib.ExitStack() as overflow:
            flowing = lambda: self._helper_stream_to(helper, command, piecewise)  # noqa: E731
            spool = Spool(SPOOL_BYTES, lambda: overflow.enter_context(flowing()))
            writer = io.BufferedWriter(spool, SFTP_REQUEST)
            yield writer
            writer.flush()
            if spool.stream is not None:
                return  # the flowing stream's exit (the stack) waits for the answer, checks it
        data, shown = bytes(spool.held), shorten(command)
        reply = self._ask(helper, shown, None, lambda: whole(helper, data))
        if reply is None:  # the helper went before the request did
            reply = self._exec(command, data, None)
            reply = Reply(reply.exit_code, reply.stdout, reply.stderr)
        self._check_fed(shown, reply)

    @contextmanager
    def _helper_stream_to(self, helper: Helper, command: str, piecewise) -> Iterator[BinaryIO]:
        """The helper's request for ``command``, its stdin sent in pieces as written."""
        shown = shorten(command)
        try:
            inflow = piecewise(helper, command)
        except HelperGone as gone:
            if gone.sent:
                raise self._lost(shown, gone) from gone
            with self._exec_stream_to(command) as stream:  # the helper went before it
                yield stream
            return
        broken = False
        try:
            writer = io.BufferedWriter(inflow, SFTP_REQUEST)
            yield writer
            writer.flush()
        except BrokenPipeError:
            broken = True  # the command has ended; its answer says how
        except HelperGone as gone:
            raise self._lost(shown, gone) from gone
        except BaseException:
            inflow.abandon()  # the caller failed half way: the request is killed
            raise
        try:
            reply = inflow.finish()
        except HelperGone as gone:
            raise self._lost(shown, gone) from gone
        self._check_fed(shown, replace(reply, unread=reply.unread or broken))

    def _check_fed(self, shown: str, reply: Reply) -> None:
        """A stream's command failed, or ended before reading all it was sent: an error."""
        if reply.exit_code != 0:
            out, err = reply.stdout.decode(errors="replace"), reply.stderr.decode(errors="replace")
            raise RemoteCommandError(shown, reply.exit_code, err, out)
        if reply.unread:
            raise TransferError(f"{self.label}: {shown} exited before reading all its input")

    @contextmanager
    def _exec_stream_to(self, command: str) -> Iterator[BinaryIO]:
        """``stream_to`` over an exec channel of its own: the bytes flow as they are written."""
        with self._channel() as chan:
            try:
                chan.exec_command(command)
            except WIRE_ERRORS as exc:
                raise self._lost(command, exc) from exc
            chan.settimeout(self.settings.file_transfer_timeout)  # bounds a stalled sendall
            reader = Reader(chan)
            raw = ChannelWriter(chan, self.label)
            writer = io.BufferedWriter(raw, SFTP_REQUEST)
            broken = False
            try:
                yield writer
                writer.flush()
            except BrokenPipeError:
                broken = True  # the command stopped reading; its exit status says why
            except BaseException:
                raw.abandon()  # the caller failed: send nothing more, the channel closes
                raise
            out, err, status = reader.finish(self.settings.file_transfer_timeout)
            if status == -1 and not chan.get_transport().is_active():
                raise self._lost(command, EOFError("connection closed"))
        if status != 0:
            raise RemoteCommandError(
                command, status, err.decode(errors="replace"), out.decode(errors="replace")
            )
        if broken:
            raise TransferError(f"{self.label}: {command} exited before reading all its input")

    def stream_from(
        self, command: str, size_hint: int | None = None
    ) -> AbstractContextManager[BinaryIO]:
        """A stream whose ``size_hint`` says it is small (up to ``SPOOL_BYTES``) comes whole
        from the helper (no login shell's start-up); any other flows over an exec channel of
        its own."""
        ask = lambda helper, timeout: helper.shell(command, None, timeout)  # noqa: E731
        return self._stream(command, self.cluster.interpreter, size_hint, ask)

    def stream_program(
        self,
        program: Program,
        interpreter: str,
        args: Iterable[str] = (),
        size_hint: int | None = None,
    ) -> AbstractContextManager[BinaryIO]:
        """Like ``stream_from``; a small one runs in a child of the helper, whose imports are
        done (a collection's tar of a few outputs: no fresh interpreter's ~40 ms either)."""
        args = list(args)
        ask = lambda helper, timeout: helper.program(program, args, None, timeout)  # noqa: E731
        return self._stream(program.command(interpreter, *args), interpreter, size_hint, ask)

    @contextmanager
    def _stream(self, command: str, interpreter: str, size_hint: int | None, ask):
        helper = None
        if size_hint is not None and size_hint <= SPOOL_BYTES:
            helper = self._helper(interpreter)
        reply, timeout = None, self.settings.file_transfer_timeout
        if helper is not None:
            reply = self._ask(helper, shorten(command), timeout, lambda: ask(helper, timeout))
        if reply is None:  # no helper, or it went before the request did
            with self._exec_stream_from(command) as stream:
                yield stream
            return
        yield io.BytesIO(reply.stdout)
        if reply.exit_code != 0:
            raise RemoteCommandError(
                shorten(command), reply.exit_code, reply.stderr.decode(errors="replace")
            )

    @contextmanager
    def _exec_stream_from(self, command: str) -> Iterator[BinaryIO]:
        """``stream_from`` over an exec channel of its own: the bytes flow as they come."""
        with self._channel() as chan:
            try:
                chan.exec_command(command)
            except WIRE_ERRORS as exc:
                raise self._lost(command, exc) from exc
            chan.settimeout(self.settings.file_transfer_timeout)  # a stalled stream fails
            raw = ChannelReader(chan, self.label)
            try:
                yield io.BufferedReader(raw, SFTP_REQUEST)
                status = raw.finish()
            except BaseException as exc:
                if connection_lost(chan):  # what the caller saw is a symptom: say the cause
                    raise self._lost(command, exc) from exc
                raise
            if status == -1 and connection_lost(chan):
                raise self._lost(command, EOFError("connection closed"))
        if status != 0:
            raise RemoteCommandError(command, status, raw.stderr.decode(errors="replace"))

    def put_stream(
        self,
        source: BinaryIO,
        remote: str,
        *,
        mode: int = 0o644,
        progress: Progress | None = None,
        offset: int = 0,
        digest: Digest | None = None,
    ) -> str:
        digest = digest or hashlib.sha256()
        with self._transfer(f"upload to {self.label}:{remote}"), self._sftp() as sftp:
            with sftp.open(remote, "r+b" if offset else "wb") as dst:
                if offset:
                    dst.truncate(offset)
                    dst.seek(offset)
                dst.MAX_REQUEST_SIZE = SFTP_REQUEST
                dst.set_pipelined(True)
                sent = copy_chunks(iter_chunks(source, SFTP_REQUEST), dst, progress, digest)
            sftp.chmod(remote, mode)
            if sftp.stat(remote).st_size != offset + sent:
                size = offset + sent
                raise TransferError(f"{self.label}:{remote} is not {size} bytes after upload")
        return digest.hexdigest()

    def makedirs(self, remote: str) -> None:
        with self._transfer(f"create {self.label}:{remote}"), self._sftp() as sftp:
            missing = []
            path = PurePosixPath(remote)
            while str(path) not in ("/", "."):
                try:
                    sftp.stat(str(path))
                    break
                except FileNotFoundError:
                    missing.append(str(path))
                    path = path.parent
            for folder in reversed(missing):
                sftp.mkdir(folder, mode=0o700)  # job folders are private to the user

    def read_file(self, remote: str, offset: int = 0) -> bytes:
        """Read in pieces joined at the end: paramiko's ``read(n)`` grows one bytes object
        piece by piece, so one 32 MB read took 2.3 s here (16 MB: 0.57 s)."""
        what = f"read {self.label}:{remote}"
        with self._transfer(what), self._sftp() as sftp, sftp.open(remote, "rb") as f:
            wanted = f.stat().st_size - offset  # a snapshot: what is appended later, next time
            if wanted <= 0:
                return b""
            f.seek(offset)
            if wanted > f.MAX_REQUEST_SIZE:  # a single request needs no prefetch thread
                f.prefetch(offset + wanted)
            pieces = []
            while wanted > 0 and (piece := f.read(min(wanted, READ_PIECE))):
                pieces.append(piece)
                wanted -= len(piece)
            return b"".join(pieces)

    def get_file(
        self,
        remote: str,
        local: Path,
        *,
        offset: int = 0,
        progress: Progress | None = None,
        digest: Digest | None = None,
    ) -> None:
        """Over SFTP, or, with ``STREAM_BYTES`` or more to move, over an exec channel."""
        what = f"download {self.label}:{remote} to {local}"
        with self._transfer(what):
            with self._sftp() as sftp, sftp.open(remote, "rb") as src:
                size = src.stat().st_size
                if size - offset < STREAM_BYTES:
                    src.MAX_REQUEST_SIZE = read_request(sftp, src.MAX_REQUEST_SIZE)
                    src.seek(offset)
                    src.prefetch(size)  # prefetch is what makes SFTP reads fast
                    with open_target(local, offset) as dst:
                        copy_chunks(iter_chunks(src, RECV_CHUNK), dst, progress, digest)
                    return
            command = quote_argv("tail", "-c", f"+{offset + 1}", "--", remote)
            with self._exec_stream_from(command) as stream, open_target(local, offset) as dst:
                chunks = iter(lambda: stream.read1(STREAM_CHUNK), b"")
                copy_chunks(chunks, dst, progress, digest)

    def list_tree(self, remote: str, roots: Iterable[str]) -> list[RemoteEntry]:
        """Over SFTP (no shell: a command pays the login shell's start-up, ~120 ms on a host
        whose ``.bashrc`` runs ``pyenv init``): each batch of lstats or folder listings is sent
        at once, so a job folder costs a few round trips, not a few per folder."""
        base = remote.rstrip("/") or "/"
        with self._transfer(f"list {self.label}:{remote}"), self._sftp() as sftp:
            batch = Batch(sftp)
            return walk_tree(
                roots,
                lambda paths: batch.lstat([f"{base}/{p}" for p in paths]),
                lambda folders: batch.listdir([f"{base}/{f}" for f in folders]),
            )

    def home(self) -> str:
        if self._home is None:
            home = self.run('printf %s "$HOME"', timeout=self.settings.ssh_connection_timeout)
            if not home.check().text.startswith("/"):
                raise ClusterConnectionError(f"{self.label}: $HOME is not absolute: {home.text!r}")
            self._home = home.text
        return self._home

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @property
    def cipher(self) -> str | None:
        """The negotiated cipher of the open connection (None when not connected)."""
        conn = self._conn
        return conn.transport.local_cipher if conn is not None and conn.active else None

    @property
    def identity(self) -> tuple:
        """What makes two transports the same host to the same user with the same trust: two
        cluster names (an ssh config alias and its address) with one identity share one
        connection (``Hosts``)."""
        e = self.endpoint  # the key is left out: the same user on the same host is the same
        return (e.hostname, e.port, e.user, e.proxy_jump, tuple(self._connector.known_hosts))

    @property
    def host_key(self) -> str | None:
        """``TYPE SHA256:...`` of the key the open connection's host proved (None when not
        connected): the audit log records each one accepted."""
        conn = self._conn
        if conn is None or not conn.active:
            return None
        key = conn.transport.get_remote_server_key()
        return f"{key.get_name()} {fingerprint(key)}"

    # -- the helper ---------------------------------------------------------------------------

    def _helper(self, interpreter: str) -> Helper | None:
        """The connection's running helper for ``interpreter``; None while one starts in the
        background (this call takes an exec channel), or where none can run."""
        if not self.cluster.helper or self.cluster.max_sessions < HELPER_MIN_SESSIONS:
            return None  # off, or it would hold a slot that commands and transfers need
        conn = self._connection()
        with conn.lock:
            helper = conn.helpers.get(interpreter)
            if isinstance(helper, Helper) and helper.alive:
                return helper
            if helper in (STARTING, UNAVAILABLE):
                return None
            conn.helpers[interpreter] = STARTING
        threading.Thread(
            target=self._start_helper, args=(conn, interpreter), daemon=True, name="helper start"
        ).start()
        return None

    def _start_helper(self, conn: Connection, interpreter: str) -> None:
        state: object = None  # no free slot now: the next command tries again
        if conn.slots.acquire(blocking=False):
            state = UNAVAILABLE
            try:
                chan = self._open_session(conn)
                timeout = self.settings.ssh_connection_timeout
                state = Helper.start(chan, interpreter, self.label, timeout, conn.slots.release)
            except (*WIRE_ERRORS, TimeoutError):
                conn.slots.release()
        with conn.lock:
            if state is None:
                conn.helpers.pop(interpreter, None)
            else:
                conn.helpers[interpreter] = state

    # -- connection and channels ------------------------------------------------------------

    def _connection(self) -> Connection:
        """The shared connection, opened (or reopened after it died) under the lock."""
        with self._lock:
            if self._conn is not None and self._conn.active:
                return self._conn
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._conn = self._connector.connect(self.endpoint, self.cluster.max_sessions)
            return self._conn

    def _discard(self, conn: Connection) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
        conn.close()

    def _open_channel(self, wait: float | None = None) -> tuple[Connection, paramiko.Channel]:
        """A session channel holding one of the connection's slots (the caller releases it).

        Opening a channel runs nothing, so when it fails because the connection died under us
        (the server restarted, the network dropped) it is safe to reconnect once and retry.
        An open that times out on a connection that still looks alive proves nothing (a busy
        server; other channels on it may be mid-command): it stays, and if the network under
        it is really gone, the kernel kills it once sent data has waited ``TCP_USER_TIMEOUT``
        for an acknowledgement (``sshconnect.set_dead_after``), and the next call reconnects.
        """
        for attempt in (1, 2):
            conn = self._connection()
            if not conn.slots.acquire(timeout=wait):
                raise WaitTimeoutError(f"no free SSH channel to {self.label} within {wait}s")
            try:
                return conn, self._open_session(conn)
            except WIRE_ERRORS as exc:
                conn.slots.release()
                if conn.active or attempt == 2:
                    raise ClusterConnectionError(
                        f"cannot open a channel to {self.label}: {describe(exc)}"
                    ) from exc
                self._discard(conn)
        raise AssertionError("unreachable")

    def _open_session(self, conn: Connection) -> paramiko.Channel:
        """Open a session channel, retrying refusals briefly while the connection lives.

        sshd frees a closed session only on its next loop turn, so an open that arrives right
        after a close can be refused even below MaxSessions; nothing has run yet, so retrying
        is safe. A real shortage still fails after ``ssh_connection_timeout``.
        """
        timeout = self.settings.ssh_connection_timeout
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(paramiko.ChannelException),
            stop=tenacity.stop_after_delay(timeout),
            wait=tenacity.wait_exponential(multiplier=0.01, max=0.5),
            reraise=True,
        )
        return retrying(conn.open_session, timeout)

    @contextmanager
    def _channel(self, wait: float | None = None) -> Iterator[paramiko.Channel]:
        conn, chan = self._open_channel(wait)
        try:
            yield chan
        finally:
            close_quietly(chan)
            conn.slots.release()

    @contextmanager
    def _sftp(self) -> Iterator[paramiko.SFTPClient]:
        """An SFTP session on the shared connection; one idle session is kept for the next call.

        Opening a session costs ~1.5 ms on loopback (a 10 KB upload takes ~0.8 ms on an open
        one), while one session shared under a lock would queue a log tail behind a multi-GB
        upload: so concurrent calls get sessions of their own and sequential calls reuse one.
        """
        conn, sftp = self._take_sftp()
        try:
            yield sftp
        except (FileNotFoundError, PermissionError):
            self._keep_sftp(conn, sftp)  # an answer, not a failure: polling a log not there yet
            raise
        except BaseException:
            self._drop_sftp(conn, sftp)
            raise
        self._keep_sftp(conn, sftp)

    def _take_sftp(self) -> tuple[Connection, paramiko.SFTPClient]:
        conn = self._connection()
        with conn.lock:
            sftp, conn.spare_sftp = conn.spare_sftp, None
        if sftp is not None and answers(sftp):
            return conn, sftp
        if sftp is not None:
            self._drop_sftp(conn, sftp)  # and the dead connection is noticed: reopen below
        conn, chan = self._open_channel()
        try:
            chan.settimeout(self.settings.file_transfer_timeout)  # a stalled transfer fails
            chan.invoke_subsystem("sftp")
            return conn, paramiko.SFTPClient(chan)
        except BaseException:
            close_quietly(chan)
            conn.slots.release()
            raise

    def _keep_sftp(self, conn: Connection, sftp: paramiko.SFTPClient) -> None:
        """Keep ``sftp`` as the idle session unless one is kept already (or only one slot)."""
        if self.cluster.max_sessions > 1 and conn.active:
            with conn.lock:
                if conn.spare_sftp is None:
                    conn.spare_sftp = sftp
                    return
        self._drop_sftp(conn, sftp)

    @staticmethod
    def _drop_sftp(conn: Connection, sftp: paramiko.SFTPClient) -> None:
        close_quietly(sftp)
        conn.slots.release()

    @contextmanager
    def _transfer(self, what: str) -> Iterator[None]:
        try:
            yield
        except GPUMagicError:
            raise
        except (*WIRE_ERRORS, ValueError) as exc:
            raise TransferError(f"cannot {what}: {describe(exc)}") from exc

    def _lost(self, command: str, exc: BaseException) -> ClusterConnectionError:
        shown = command if len(command) <= 200 else command[:200] + "..."
        return ClusterConnectionError(
            f"connection to {self.label} failed while running {shown!r} "
            f"(it may or may not have run): {describe(exc)}"
        )
