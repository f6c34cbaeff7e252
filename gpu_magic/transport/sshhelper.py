"""The client end of the host's long-lived helper (``gpu_magic/remote/helper.py``).

Every exec channel starts the user's login shell, and its start-up files can cost more than the
command (87 ms per command on a host whose ``.bashrc`` runs ``pyenv init``, against ~1 ms for
a request on an open channel). So each SSH connection starts one helper per interpreter, once,
and sends its commands and our programs to it; many threads share it (requests carry ids and
run concurrently on the host). It is an optimisation only: while it starts, and on a host where
it cannot (no such interpreter, a forced command), commands take exec channels as before.

When the helper's channel ends, a request not yet sent is safe to send another way
(``HelperGone.sent`` is False); one already sent may or may not have run, exactly like an exec
channel that dropped, and is reported the same way: never sent twice.
"""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .base import Program
from .sshconnect import WIRE_ERRORS, close_quietly, describe

if TYPE_CHECKING:
    import paramiko

HELPER = Program.from_file(Path(__file__).resolve().parent.parent / "remote" / "helper.py")
HELLO = b'{"helper": 1'
RECV_CHUNK = 1 << 16
MAX_PREAMBLE = 1 << 20
"""What a login shell's start-up files may print before the helper says hello."""


class HelperGone(Exception):
    """The helper's channel ended; ``sent`` says whether the request had been sent."""

    def __init__(self, reason: str, *, sent: bool):
        super().__init__(reason)
        self.sent = sent


@dataclass(frozen=True)
class Reply:
    """What a request gave: as an exec channel would, and whether its stdin was left unread."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    unread: bool = False


@dataclass
class _Answer:
    done: threading.Event = field(default_factory=threading.Event)
    reply: Reply | None = None
    gone: str | None = None
    received: int | None = None  # the stdin bytes the helper had when it answered


class Wire:
    """Whole lines and counted byte sections read from a channel."""

    def __init__(self, chan: paramiko.Channel):
        self.chan, self.buffer = chan, bytearray()

    def _fill(self) -> None:
        data = self.chan.recv(RECV_CHUNK)
        if not data:
            raise EOFError("the helper's channel closed")
        self.buffer += data

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > MAX_PREAMBLE:
                raise EOFError("no line from the helper")
            self._fill()
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        return line

    def take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


class Helper:
    """One running helper on its own channel (which holds one of the connection's slots)."""

    def __init__(
        self, chan: paramiko.Channel, wire: Wire, label: str, on_end: Callable[[], object]
    ):
        self._chan, self._wire, self.label, self._on_end = chan, wire, label, on_end
        self._lock = threading.Lock()  # the waiting table and ``_gone``
        self._send_lock = threading.Lock()  # one request's bytes at a time on the channel
        self._waiting: dict[int, _Answer] = {}
        self._ids = itertools.count(1)
        self._known: set[str] = set()  # programs whose source this helper holds
        self._gone: str | None = None
        reader = threading.Thread(target=self._read_answers, daemon=True, name=f"helper {label}")
        reader.start()

    @classmethod
    def start(
        cls,
        chan: paramiko.Channel,
        interpreter: str,
        label: str,
        timeout: float,
        on_end: Callable[[], object],
    ) -> Helper:
        """Start the helper on ``chan`` and wait for its hello (what comes before is skipped:
        a start-up file's greeting). Raises ``EOFError``/``TimeoutError`` when it does not come.
        ``on_end`` is called once when the helper's channel ends (it frees the slot)."""
        chan.settimeout(timeout)
        chan.exec_command(HELPER.command(interpreter))
        wire = Wire(chan)
        deadline = time.monotonic() + timeout
        while not wire.line().startswith(HELLO):
            if time.monotonic() > deadline:
                raise TimeoutError("the helper did not start")
        chan.settimeout(None)
        return cls(chan, wire, label, on_end)

    @property
    def alive(self) -> bool:
        return self._gone is None

    def shell(self, command: str, stdin: bytes | None, timeout: float | None) -> Reply:
        """``/bin/sh -c command`` on the host."""
        return self._call({"op": "shell", "command": command}, b"", stdin or b"", timeout)

    def program(
        self, program: Program, args: list[str], stdin: bytes | None, timeout: float | None
    ) -> Reply:
        reply = self._call(*self._program(program, args), stdin or b"", timeout)
        self._known.add(program.sha256)  # only once sent: a request before it needs the source
        return reply

    def open_shell(self, command: str) -> Inflow:
        """``shell`` whose stdin is written as it comes (``Inflow``)."""
        return Inflow(self, *self._start({"op": "shell", "command": command}, b"", b"", True))

    def open_program(self, program: Program, args: list[str]) -> Inflow:
        """``program`` whose stdin is written as it comes (``Inflow``)."""
        inflow = Inflow(self, *self._start(*self._program(program, args), b"", True))
        self._known.add(program.sha256)
        return inflow

    def close(self) -> None:
        close_quietly(self._chan)

    def _program(self, program: Program, args: list[str]) -> tuple[dict, bytes]:
        """A program request's header, and its source unless this helper holds it already."""
        header = {"op": "program", "sha": program.sha256, "name": program.name, "args": args}
        return header, b"" if program.sha256 in self._known else program.source.encode()

    def _start(self, header: dict, source: bytes, stdin: bytes, more: bool) -> tuple[int, _Answer]:
        """Send a request (``more``: its stdin goes on in pieces); its id and answer to come."""
        answer = _Answer()
        with self._lock:
            if self._gone is not None:
                raise HelperGone(self._gone, sent=False)
            rid = next(self._ids)
            self._waiting[rid] = answer
        header = dict(header, id=rid, source_len=len(source), stdin_len=len(stdin), more=more)
        self._send(json.dumps(header).encode() + b"\n" + source + stdin)
        return rid, answer

    def _send_stdin(self, rid: int, data: bytes, more: bool) -> None:
        piece = {"id": 0, "op": "stdin", "target": rid, "source_len": 0,
                 "stdin_len": len(data), "more": more}  # fmt: skip
        self._send(json.dumps(piece).encode() + b"\n" + data)

    def _call(self, header: dict, source: bytes, stdin: bytes, timeout: float | None) -> Reply:
        rid, answer = self._start(header, source, stdin, False)
        if not answer.done.wait(timeout):
            self._kill(rid)
            raise TimeoutError
        if answer.gone is not None:
            raise HelperGone(answer.gone, sent=True)
        return answer.reply

    def _send(self, data: bytes) -> None:
        try:
            with self._send_lock:
                self._chan.sendall(data)
        except WIRE_ERRORS as exc:
            self._end(describe(exc))
            raise HelperGone(describe(exc), sent=True) from exc

    def _kill(self, rid: int) -> None:
        """Stop a request that outlived its timeout; its answer is dropped when it comes."""
        with self._lock:
            self._waiting.pop(rid, None)
        kill = {"op": "kill", "id": 0, "target": rid, "source_len": 0, "stdin_len": 0}
        try:
            with self._send_lock:
                self._chan.sendall(json.dumps(kill).encode() + b"\n")
        except WIRE_ERRORS as exc:
            self._end(describe(exc))

    def _read_answers(self) -> None:
        try:
            while True:
                header = json.loads(self._wire.line())
                stdout = self._wire.take(header["stdout_len"])
                stderr = self._wire.take(header["stderr_len"])
                with self._lock:
                    answer = self._waiting.pop(header["id"], None)
                if answer is not None:
                    unread = bool(header.get("unread"))
                    answer.reply = Reply(header["exit"], stdout, stderr, unread)
                    answer.received = header.get("received")
                    answer.done.set()
        except (*WIRE_ERRORS, ValueError, KeyError) as exc:
            self._end(describe(exc) if isinstance(exc, WIRE_ERRORS) else f"bad answer: {exc}")

    def _end(self, reason: str) -> None:
        """The channel is done for: every waiting request learns it, later ones are refused."""
        with self._lock:
            first = self._gone is None
            if first:
                self._gone = f"the helper on {self.label} stopped: {reason}"
            waiting, self._waiting = self._waiting, {}
        for answer in waiting.values():
            answer.gone = self._gone
            answer.done.set()
        if first:
            close_quietly(self._chan)
            self._on_end()


class Inflow(io.RawIOBase):
    """The stdin of a running request, sent to the helper piece by piece as it is written
    (the SSH channel's window holds the writer back), so a stream of any size skips the login
    shell an exec channel would start. ``finish`` ends the stdin and waits for the answer;
    ``abandon`` kills the request (the caller failed half way)."""

    def __init__(self, helper: Helper, rid: int, answer: _Answer):
        self._helper, self._rid, self._answer = helper, rid, answer
        self.sent = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self._answer.done.is_set():  # it ended before reading it all, as a pipe would say
            raise BrokenPipeError(f"the command of request {self._rid} has ended")
        self._helper._send_stdin(self._rid, bytes(data), more=True)
        self.sent += len(data)
        return len(data)

    def finish(self) -> Reply:
        """End the stdin; the answer (``unread`` also when a piece reached the helper after
        the command had ended)."""
        if not self._answer.done.is_set():
            self._helper._send_stdin(self._rid, b"", more=False)
        self._answer.done.wait()
        if self._answer.gone is not None:
            raise HelperGone(self._answer.gone, sent=True)
        reply, received = self._answer.reply, self._answer.received
        if received is not None and received < self.sent:
            return replace(reply, unread=True)
        return reply

    def abandon(self) -> None:
        self._helper._kill(self._rid)


class Spool(io.RawIOBase):
    """A stream's bytes held in memory up to ``limit``; past it, ``overflow()`` opens the real
    stream, which gets what was held and everything after (``stream`` is then set)."""

    def __init__(self, limit: int, overflow: Callable[[], BinaryIO]):
        self.limit, self._overflow = limit, overflow
        self.held = bytearray()
        self.stream: BinaryIO | None = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.stream is None and len(self.held) + len(data) <= self.limit:
            self.held += data
            return len(data)
        if self.stream is None:
            self.stream = self._overflow()
            self.stream.write(bytes(self.held))
            self.held = bytearray()
        self.stream.write(bytes(data))
        return len(data)
