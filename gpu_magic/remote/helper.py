"""A long-lived helper on the host: one per SSH connection, so a command costs a fork, not a login.

Started once over an exec channel (``python -c SOURCE``): the user's login shell and its
start-up files run that once, and every later command of the connection is a request on the
same channel. Like the probe, it knows no file names and no commands of its own: the client
sends the programs (our other helpers' sources, sent once and remembered by sha256) and the
command lines, and gets back what ``exec`` would have given: exit code, stdout, stderr.

Wire format, both directions: one JSON line, then the byte sections its ``*_len`` fields count.

    hello      server -> ``{"helper": 1}``           once, when ready (what a start-up file
                                                      printed before it is skipped by the client)
    program    ``{"id", "op": "program", "sha", "args", "stdin_len"[, "source_len"]}``
               runs a program in a forked child of this process: its imports are already done,
               so it starts in about a millisecond, not a fresh interpreter's tens
    shell      ``{"id", "op": "shell", "command", "stdin_len"}``: ``/bin/sh -c command`` in the
               environment the login shell gave this process
               Either may say ``"more": true``: its stdin goes on in ``stdin`` messages
    stdin      ``{"op": "stdin", "target", "stdin_len", "more"}``: the next piece of a running
               request's stdin (a stream of any size, without holding it all first); the
               piece with ``"more": false`` ends it
    kill       ``{"id", "op": "kill", "target"}``: SIGKILL the process group of a running
               request (the client's timeout); its answer still comes, with the signal's code
    answer     server -> ``{"id", "exit", "unread", "received", "stdout_len", "stderr_len"}`` +
               the two outputs (``unread``: the command ended before reading all of its stdin;
               ``received``: the stdin bytes that reached this process before the answer, so a
               streamed piece that came too late is known as unread too)

Requests run concurrently (each in its own child and process group); this process is one
thread around a selector, so forking is safe. It exits when its stdin closes (the connection
went away); children finish on their own.
"""

import base64  # noqa: F401 - imported once here, so the programs' own imports cost nothing
import contextlib
import functools  # noqa: F401
import hashlib  # noqa: F401
import importlib.util  # noqa: F401
import io  # noqa: F401
import json
import os
import py_compile  # noqa: F401
import selectors
import shutil  # noqa: F401
import signal
import stat  # noqa: F401
import subprocess  # noqa: F401
import sys
import tarfile  # noqa: F401
import threading  # noqa: F401
import time  # noqa: F401
import traceback
from concurrent.futures import ThreadPoolExecutor  # noqa: F401 - ~5 ms in each child otherwise

READ_CHUNK = 1 << 16
REAP_POLL_S = 0.005
"""Without ``os.pidfd_open`` (Python < 3.9): how often an exited child whose pipes closed is
looked for."""


class Request:
    """One running request: the child's pid, its pipes, what it wrote so far."""

    def __init__(self, rid, pid, stdin_fd, stdout_fd, stderr_fd, stdin, more):
        self.id, self.pid = rid, pid
        self.pending_stdin = bytearray(stdin)
        self.received = len(stdin)  # stdin bytes this request was sent, pieces included
        self.more = more  # more stdin comes in "stdin" messages
        self.stdin_fd = stdin_fd
        self.writing = False  # the stdin pipe is registered for writing
        self.open = {stdout_fd: bytearray(), stderr_fd: bytearray()}
        self.out_fd, self.err_fd = stdout_fd, stderr_fd
        self.output = {}
        self.status = None
        self.unread = False  # the child exited or closed its stdin before reading it all


class Server:
    def __init__(self, inp, out):
        self.inp, self.out = inp, out
        self.buffer = bytearray()
        self.programs = {}
        self.running = {}
        self.selector = selectors.DefaultSelector()
        self.selector.register(inp, selectors.EVENT_READ, ("input", None))
        self.closing = False

    # -- the loop ---------------------------------------------------------------------------

    def serve(self):
        self.write({"helper": 1}, b"", b"")
        while not self.closing or self.running:
            waiting = any(r.status is None and not r.open for r in self.running.values())
            timeout = REAP_POLL_S if waiting and not hasattr(os, "pidfd_open") else None
            for key, _ in self.selector.select(timeout):
                kind, request = key.data
                if kind == "input":
                    self.read_input()
                elif kind == "stdin":
                    self.feed(request)
                elif kind == "exit":
                    self.reap(request, key.fileobj)
                else:
                    self.drain(request, key.fileobj)
            for request in list(self.running.values()):
                if request.status is None and not request.open and not hasattr(os, "pidfd_open"):
                    self.reap(request, None)

    def read_input(self):
        data = os.read(self.inp, READ_CHUNK)
        if not data:
            self.selector.unregister(self.inp)
            self.closing = True
            return
        self.buffer += data
        while True:
            message = self.take_message()
            if message is None:
                return
            try:
                self.handle(*message)
            except Exception:  # e.g. a program that does not compile: its answer says why
                failure = traceback.format_exc().encode()
                self.write({"id": message[0].get("id", 0), "exit": 126}, b"", failure)

    def take_message(self):
        """The next whole request in the buffer, or None while it is still arriving."""
        end = self.buffer.find(b"\n")
        if end < 0:
            return None
        header = json.loads(bytes(self.buffer[:end]))
        sizes = [header.get("source_len", 0), header.get("stdin_len", 0)]
        total = end + 1 + sum(sizes)
        if len(self.buffer) < total:
            return None
        body = bytes(self.buffer[end + 1 : total])
        del self.buffer[:total]
        return header, body[: sizes[0]], body[sizes[0] :]

    # -- requests ---------------------------------------------------------------------------

    def handle(self, header, source, stdin):
        if header["op"] == "kill":
            target = self.running.get(header["target"])
            if target is not None and target.status is None:
                with contextlib.suppress(OSError):
                    os.killpg(target.pid, signal.SIGKILL)
            return
        if header["op"] == "stdin":
            target = self.running.get(header["target"])
            if target is not None:  # else it has ended and been answered: the piece is dropped
                self.more_stdin(target, stdin, header.get("more", False))
            return
        if source:
            self.programs[header["sha"]] = compile(source, header.get("name", "<program>"), "exec")
        if header["op"] == "program" and header["sha"] not in self.programs:
            self.write({"id": header["id"], "exit": 127}, b"", b"unknown program\n")
            return
        self.start(header, stdin)

    def start(self, header, stdin):
        pipes = [os.pipe() for _ in range(3)]
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(header, self.programs.get(header.get("sha")), pipes)
        with contextlib.suppress(OSError):  # also here: a kill arriving first finds the group
            os.setpgid(pid, pid)
        for i, (r, w) in enumerate(pipes):
            os.close(r if i == 0 else w)
        more = header.get("more", False)
        request = Request(header["id"], pid, pipes[0][1], pipes[1][0], pipes[2][0], stdin, more)
        self.running[request.id] = request
        for fd in request.open:
            self.selector.register(fd, selectors.EVENT_READ, ("output", request))
        os.set_blocking(request.stdin_fd, False)
        self.want_to_write(request)
        if hasattr(os, "pidfd_open"):
            self.selector.register(os.pidfd_open(pid), selectors.EVENT_READ, ("exit", request))

    def want_to_write(self, request):
        if not request.writing:
            self.selector.register(request.stdin_fd, selectors.EVENT_WRITE, ("stdin", request))
            request.writing = True

    def more_stdin(self, request, data, more):
        """The next piece of a streamed stdin (after the child closed it: it went unread)."""
        request.more = more
        request.received += len(data)
        if request.stdin_fd is None:
            request.unread = request.unread or bool(data)
            return
        request.pending_stdin += data
        self.want_to_write(request)

    def feed(self, request):
        """Write what fits of the request's stdin; close it when all is written and no more
        is coming (until more comes, the pipe waits, not registered)."""
        try:
            sent = os.write(request.stdin_fd, memoryview(request.pending_stdin)[:READ_CHUNK])
            del request.pending_stdin[:sent]
        except BlockingIOError:
            return
        except OSError:  # the child stopped reading: like a broken pipe under exec
            request.pending_stdin, request.unread, request.more = bytearray(), True, False
        if request.pending_stdin:
            return
        self.selector.unregister(request.stdin_fd)
        request.writing = False
        if not request.more:
            os.close(request.stdin_fd)
            request.stdin_fd = None

    def drain(self, request, fd):
        data = os.read(fd, READ_CHUNK)
        if data:
            request.open[fd] += data
            return
        self.selector.unregister(fd)
        os.close(fd)
        request.output[fd] = bytes(request.open.pop(fd))
        self.maybe_answer(request)

    def reap(self, request, pidfd):
        """The child exited (its pidfd turned readable, or a poll found it)."""
        pid, status = os.waitpid(request.pid, 0 if pidfd is not None else os.WNOHANG)
        if pid == 0:
            return
        if pidfd is not None:
            self.selector.unregister(pidfd)
            os.close(pidfd)
        request.status = status
        self.maybe_answer(request)

    def maybe_answer(self, request):
        if request.open or request.status is None:
            return
        if request.stdin_fd is not None:  # ended before it had all of its stdin
            request.unread = request.unread or bool(request.pending_stdin)
            if request.writing:
                self.selector.unregister(request.stdin_fd)
            os.close(request.stdin_fd)
        del self.running[request.id]
        code = exit_code(request.status)
        out, err = request.output[request.out_fd], request.output[request.err_fd]
        answer = {"id": request.id, "exit": code, "unread": request.unread}
        self.write(dict(answer, received=request.received), out, err)

    def write(self, header, stdout, stderr):
        header = dict(header, stdout_len=len(stdout), stderr_len=len(stderr))
        data = json.dumps(header).encode() + b"\n" + stdout + stderr
        while data:
            sent = os.write(self.out, data)
            data = data[sent:]


def exit_code(status):
    """What a shell reports: the exit code, or 128 + the signal that ended the child."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def close_inherited():
    """Close every fd above 2: the server's, and the pipes of the other running requests (a
    child holding another's stdin open would keep that one from ever reading its end)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = range(3, 4096)
    for fd in fds:
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)


def child(header, code, pipes):
    """In the forked child: the pipes become fds 0-2, then the program or the shell runs."""
    try:
        os.setpgid(0, 0)  # a group of its own: a kill on timeout reaches what it started
        for i, (r, w) in enumerate(pipes):
            os.dup2(r if i == 0 else w, i)
        close_inherited()
        for sig in (signal.SIGPIPE, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        if header["op"] == "shell":
            os.execv("/bin/sh", ["sh", "-c", header["command"]])  # noqa: S606 - our command line
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the child's own, until it exits
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        sys.argv = ["-c", *header["args"]]
        os._exit(run_program(code))
    except BaseException:
        traceback.print_exc()
        os._exit(126)


def run_program(code):
    """Run a program as ``python -c`` would, and return its exit code."""
    status = 0
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # noqa: S102 - ours
    except SystemExit as stop:
        if stop.code is None:
            status = 0
        elif isinstance(stop.code, int):
            status = stop.code
        else:
            print(stop.code, file=sys.stderr)
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    return status


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Server(sys.stdin.fileno(), sys.stdout.fileno()).serve()
