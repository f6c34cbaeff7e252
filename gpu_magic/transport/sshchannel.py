"""Moving bytes over one SSH channel without deadlocks or needless waits (used by ``ssh.py``).

An exec channel carries stdin, stdout and stderr under SSH flow control: a window per
direction that refills only as the other side reads. A client that writes stdin while not
reading, or reads stdout while stderr fills up, can stall the remote command forever. So
``collect`` moves all three in one loop, and ``Reader`` drains the outputs in a thread while a
caller streams stdin through ``ChannelWriter``. On an SFTP session, ``Batch`` keeps many
requests in flight at once (a folder tree listed in a few round trips), and ``read_request``
picks the largest read size the server answers whole.
"""

from __future__ import annotations

import contextlib
import io
import re
import select
import threading
import time
from typing import TYPE_CHECKING

from paramiko import SFTPAttributes, SFTPError
from paramiko import sftp as wire

from ..errors import ClusterConnectionError, TransferError, WaitTimeoutError
from .base import Stat, entry_type
from .sshconnect import WIRE_ERRORS, describe

if TYPE_CHECKING:
    import paramiko

RECV_CHUNK = 1 << 16
STDIN_POLL_S = 0.01
"""How often a writer blocked on a full window looks again (the window has no event)."""


class ChannelWriter(io.RawIOBase):
    """The command's stdin as a file; a command that stopped reading gives BrokenPipeError."""

    def __init__(self, chan: paramiko.Channel, label: str):
        self._chan = chan
        self._label = label
        self._abandoned = False

    def writable(self) -> bool:
        return True

    def abandon(self) -> None:
        """Drop further writes, e.g. the buffer flushed when the writer is garbage-collected."""
        self._abandoned = True

    def write(self, data) -> int:
        if self._abandoned:
            return len(data)
        try:
            self._chan.sendall(bytes(data))
        except TimeoutError:
            raise TransferError(f"upload to {self._label} stalled") from None
        except WIRE_ERRORS as exc:
            if self._chan.closed or self._chan.eof_received:
                raise BrokenPipeError(f"{self._label}: the command closed its input") from exc
            raise TransferError(f"upload to {self._label} failed: {describe(exc)}") from exc
        return len(data)


class ChannelReader(io.RawIOBase):
    """The command's stdout as a file, for ``stream_from``. stderr is moved aside as it arrives:
    it shares the flow-control window, so leaving it unread could stall stdout."""

    def __init__(self, chan: paramiko.Channel, label: str):
        self._chan = chan
        self._label = label
        self.stderr = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self._drain_stderr()
        try:
            data = self._chan.recv(len(buffer))
        except TimeoutError:
            raise TransferError(f"download from {self._label} stalled") from None
        except WIRE_ERRORS as exc:
            lost = f"{self._label}: connection lost: {describe(exc)}"
            raise ClusterConnectionError(lost) from exc
        buffer[: len(data)] = data
        return len(data)

    def finish(self) -> int:
        """Read stdout to its end (the command blocks on a full window otherwise), then wait
        for the exit status (-1 when the connection dropped or the command got a signal)."""
        while self.read(RECV_CHUNK):
            pass
        status = self._chan.recv_exit_status()
        self._drain_stderr()
        return status

    def _drain_stderr(self) -> None:
        while self._chan.recv_stderr_ready():
            self.stderr += self._chan.recv_stderr(RECV_CHUNK)


def connection_lost(chan: paramiko.Channel) -> bool:
    """Whether ``chan`` ended because its connection died. paramiko records the transport's
    fatal error before it closes the channels but marks itself inactive only after, so a
    reader that just saw EOF must look at both."""
    transport = chan.get_transport()
    return not transport.is_active() or transport.saved_exception is not None


class Reader:
    """Drains stdout/stderr in a thread while the caller writes stdin (no window deadlock)."""

    def __init__(self, chan: paramiko.Channel):
        self._chan = chan
        self._result: tuple[bytes, bytes] = (b"", b"")
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True, name="ssh-stream")
        self._thread.start()

    def _drain(self) -> None:
        try:
            self._result = collect(self._chan, None, None)
        except BaseException as exc:
            self._error = exc

    def finish(self, timeout: float) -> tuple[bytes, bytes, int]:
        """Close stdin, then wait for the command to exit; returns (stdout, stderr, status)."""
        with contextlib.suppress(*WIRE_ERRORS):  # already closed: the exit status tells
            self._chan.shutdown_write()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise WaitTimeoutError(f"remote command did not exit within {timeout}s of its input")
        if self._error is not None:
            raise ClusterConnectionError(f"connection lost while streaming: {self._error}")
        return (*self._result, self._chan.recv_exit_status())


def answers(sftp: paramiko.SFTPClient) -> bool:
    """One round trip (~0.1 ms) on an idle session: a connection that the server dropped while
    the session sat idle is noticed here, where retrying is still safe, not mid-transfer."""
    try:
        sftp.normalize(".")
    except WIRE_ERRORS:
        return False
    return True


def collect(chan: paramiko.Channel, deadline: float | None, stdin: bytes | None):
    """Read stdout and stderr until EOF and exit status, feeding ``stdin`` meanwhile.

    Both streams and stdin share flow-control windows: reading one stream only, or writing
    stdin without reading, can stall the remote command forever, so all three move in one
    loop. ``stdin=None`` leaves stdin to the caller. Raises TimeoutError past ``deadline``.
    """
    out, err = bytearray(), bytearray()
    poller = select.poll()  # not select(): a busy kernel process may hold fds above 1024
    poller.register(chan.fileno(), select.POLLIN)  # readable when stdout or stderr has data
    sent = 0
    while True:
        if stdin is not None:
            sent, stdin = _feed(chan, stdin, sent)
        _drain_ready(chan, out, err)
        if chan.closed or chan.eof_received:
            break
        wait = _remaining(deadline)
        if stdin is not None:
            wait = STDIN_POLL_S if wait is None else min(wait, STDIN_POLL_S)
        poller.poll(None if wait is None else wait * 1000)
    if not chan.status_event.wait(_remaining(deadline)):
        raise TimeoutError
    _drain_ready(chan, out, err)
    return bytes(out), bytes(err)


def _feed(chan: paramiko.Channel, data: bytes, sent: int) -> tuple[int, bytes | None]:
    """Send what the window allows without blocking; close stdin when all is sent."""
    try:
        while sent < len(data) and chan.send_ready():
            sent += chan.send(data[sent : sent + RECV_CHUNK])
        if sent >= len(data):
            chan.shutdown_write()
            return sent, None
    except OSError:
        return sent, None  # the command exited without reading everything, like a pipe
    return sent, data


def _drain_ready(chan: paramiko.Channel, out: bytearray, err: bytearray) -> None:
    while chan.recv_ready():
        out += chan.recv(RECV_CHUNK)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(RECV_CHUNK)


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


class Batch:
    """SFTP requests sent together and answered together: one round trip for a whole batch.

    paramiko's public calls wait for each answer before sending the next request; this uses
    the same machinery its prefetching reads use (``_async_request`` with an object that
    receives the answers) so that many lstats or readdirs are in flight at once.
    """

    def __init__(self, sftp: paramiko.SFTPClient):
        self.sftp = sftp
        self._answers: dict[int, paramiko.Message] = {}
        self._kinds: dict[int, int] = {}

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self._kinds[num], self._answers[num] = t, msg

    def ask(self, requests: list[tuple]) -> list[tuple[int, paramiko.Message]]:
        """Send every ``(type, *args)`` request, then read all their answers (in order)."""
        nums = [self.sftp._async_request(self, t, *args) for t, *args in requests]
        for num in nums:
            while num not in self._answers:
                self.sftp._read_response()  # one answer, to whichever request it belongs
        return [(self._kinds.pop(n), self._answers.pop(n)) for n in nums]

    def _status(self, msg: paramiko.Message) -> None:
        """Raise what an SFTP status answer means (FileNotFoundError, EOFError, OSError)."""
        self.sftp._convert_status(msg)
        raise SFTPError("unexpected OK status")

    def lstat(self, paths: list[str]) -> list[Stat | None]:
        stats = []
        for t, msg in self.ask([(wire.CMD_LSTAT, p) for p in paths]):
            try:
                if t != wire.CMD_ATTRS:
                    self._status(msg)
            except FileNotFoundError:  # the server says so for ENOTDIR too
                stats.append(None)
                continue
            attr = SFTPAttributes._from_msg(msg)
            stats.append((attr.st_size or 0, entry_type(attr.st_mode or 0)))
        return stats

    def listdir(self, folders: list[str]) -> list[list[tuple[str, Stat]]]:
        """Every folder's children (lstat attributes: sftp-server never follows links)."""
        handles: dict[int, bytes] = {}
        problem = None
        for i, (t, msg) in enumerate(self.ask([(wire.CMD_OPENDIR, f) for f in folders])):
            try:
                if t != wire.CMD_HANDLE:
                    self._status(msg)
                handles[i] = msg.get_binary()
            except FileNotFoundError:
                continue  # gone since it was listed: no children
            except OSError as exc:  # e.g. unreadable: close what opened, then say so
                problem = problem or exc
        children: list[list[tuple[str, Stat]]] = [[] for _ in folders]
        reading = {} if problem else dict(handles)
        while reading:
            answers = self.ask([(wire.CMD_READDIR, h) for h in reading.values()])
            for i, (t, msg) in zip(list(reading), answers, strict=True):
                if t == wire.CMD_NAME:
                    children[i] += _names(msg)
                    continue
                try:
                    self._status(msg)
                except EOFError:
                    del reading[i]  # this folder is done
        self.ask([(wire.CMD_CLOSE, h) for h in handles.values()])
        if problem:
            raise problem
        return children


def _names(msg: paramiko.Message) -> list[tuple[str, Stat]]:
    """The entries of one READDIR answer, as ``(name, (size, type))``."""
    names = []
    for _ in range(msg.get_int()):
        name, longname = msg.get_text(), msg.get_text()
        attr = SFTPAttributes._from_msg(msg, name, longname)
        if name not in (".", ".."):
            names.append((name, (attr.st_size or 0, entry_type(attr.st_mode or 0))))
    return names


FULL_READS = re.compile(r"^SSH-2\.0-OpenSSH_(\d+)")
READ_REQUEST = 128 * 1024
"""Prefetched SFTP reads of 128 KiB: ~20% faster downloads than paramiko's 32 KiB, but only
from OpenSSH 9 or later (which answers reads up to ~255 KiB whole). An older or unknown
server may answer less, and a short answer makes paramiko stop prefetching for the rest of
the file (one round trip per read from then on), so those keep paramiko's 32 KiB."""


def read_request(sftp: paramiko.SFTPClient, default: int) -> int:
    """The SFTP read size this server answers in full (see ``READ_REQUEST``)."""
    match = FULL_READS.match(sftp.get_channel().get_transport().remote_version or "")
    return READ_REQUEST if match and int(match[1]) >= 9 else default
