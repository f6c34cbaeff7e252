"""The connection's long-lived helper (``remote/helper.py``) over the real sshd.

Commands and our programs go to one helper process per connection once it is up (their shell's
parent is that process, the same for every command), answer exactly as an exec channel would
(exit codes, both outputs, stdin), run concurrently, are killed on timeout, and a helper that
dies mid-command makes that command "may or may not have run", never a silent rerun. Where no
helper can start, commands still work over exec channels.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness.procs import alive, wait_until

from gpu_magic.errors import (
    ClusterConnectionError,
    RemoteCommandError,
    TransferError,
    WaitTimeoutError,
)
from gpu_magic.transport.base import Program
from gpu_magic.transport.local import LocalTransport
from gpu_magic.transport.ssh import SPOOL_BYTES
from gpu_magic.transport.sshhelper import HELPER, Helper, HelperGone, Wire

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(120)]

ECHO = Program(
    "echo.py",
    "import sys\n"
    "data = sys.stdin.buffer.read()\n"
    "sys.stdout.write(repr(sys.argv[1:]) + '\\n')\n"
    "sys.stderr.write(str(len(data)))\n"
    "raise SystemExit(int(sys.argv[1]))\n",
)


def parent_of_shell(transport) -> int:
    return int(transport.run("echo $PPID").check().text)


def is_helper(pid: int) -> bool:
    return HELPER.source in Path(f"/proc/{pid}/cmdline").read_text()


def with_helper(transport) -> int:
    """Wait until commands reach the helper; returns its pid (the parent of a command's shell:
    over an exec channel that is the connection's sshd process)."""
    transport.connect()  # the helper starts in the background from the first command on
    found = wait_until(lambda: is_helper(parent_of_shell(transport)))
    assert found, "commands never reached the helper"
    return parent_of_shell(transport)


def test_every_command_of_a_connection_goes_to_one_helper(ssh_env):
    transport = ssh_env.transport()
    helper = with_helper(transport)
    assert {parent_of_shell(transport) for _ in range(5)} == {helper}


@pytest.mark.parametrize("code", [0, 3])
def test_a_program_answers_as_python_c_would(ssh_env, code):
    transport = ssh_env.transport()
    with_helper(transport)
    args = [str(code), "two words", "$HOME", "'quoted'"]
    over_helper = transport.run_program(ECHO, ssh_env.cluster.interpreter, args, stdin=b"x" * 70000)
    local = LocalTransport().run_program(
        ECHO, ssh_env.cluster.interpreter, args, stdin=b"x" * 70000
    )
    assert (over_helper.exit_code, over_helper.stdout, over_helper.stderr) == (
        local.exit_code,
        local.stdout,
        local.stderr,
    )
    assert over_helper.exit_code == code and over_helper.stderr == b"70000"
    assert ECHO.source not in over_helper.command and "<echo.py sha256:" in over_helper.command


def test_a_shell_command_keeps_exit_code_outputs_and_stdin(ssh_env):
    transport = ssh_env.transport()
    with_helper(transport)
    result = transport.run("cat; echo out; echo err >&2; exit 7", stdin=b"in\n")
    assert (result.exit_code, result.stdout, result.stderr) == (7, b"in\nout\n", b"err\n")
    assert transport.run("kill -9 $$").exit_code == 128 + signal.SIGKILL


def test_many_threads_share_the_helper_and_each_gets_its_own_answer(ssh_env):
    transport = ssh_env.transport()
    helper = with_helper(transport)

    def ask(i: int) -> tuple[str, int]:
        result = transport.run_program(ECHO, ssh_env.cluster.interpreter, ["0", str(i)])
        return result.text, parent_of_shell(transport)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(64)))
    assert [text for text, _ in answers] == [f"['0', '{i}']\n" for i in range(64)]
    assert {parent for _, parent in answers} == {helper}


def test_a_command_past_its_timeout_is_killed_on_the_host(ssh_env, tmp_path):
    transport = ssh_env.transport()
    with_helper(transport)
    pid_file = tmp_path / "pid"
    with pytest.raises(WaitTimeoutError, match="timed out"):
        transport.run(f"echo $$ > {pid_file}; exec sleep 60", timeout=1)
    pid = int(pid_file.read_text())
    assert wait_until(lambda: not alive(pid)), "the timed-out command still runs"
    assert transport.run("echo still here").check().text == "still here\n"


def test_a_helper_killed_mid_command_reports_it_may_have_run_and_is_replaced(ssh_env, tmp_path):
    transport = ssh_env.transport()
    helper = with_helper(transport)
    started = tmp_path / "started"
    failure: list[BaseException] = []

    def slow() -> None:
        try:
            transport.run(f"touch {started}; sleep 3")
        except ClusterConnectionError as exc:
            failure.append(exc)

    thread = threading.Thread(target=slow)
    thread.start()
    assert wait_until(started.exists)
    os.kill(helper, signal.SIGKILL)
    thread.join(30)
    assert failure and "may or may not have run" in str(failure[0])
    assert transport.run("echo next").check().text == "next\n"  # an exec channel meanwhile
    assert with_helper(transport) != helper  # and a new helper takes over


def test_without_a_usable_interpreter_commands_take_exec_channels(ssh_env):
    cluster = ssh_env.cluster.model_copy(update={"python": "/nonexistent/python3"})
    transport = ssh_env.transport(cluster)
    transport.connect()
    parents = {parent_of_shell(transport) for _ in range(4)}
    assert not any(is_helper(p) for p in parents)  # the connection's sshd runs each one
    assert transport.run_program(ECHO, "/nonexistent/python3", ["0"]).exit_code == 127


@pytest.mark.parametrize("size", [70_000, SPOOL_BYTES + 1_000_000, 4 * SPOOL_BYTES])
def test_a_stream_of_any_size_arrives_byte_for_byte_at_the_helper(ssh_env, tmp_path, size):
    """Small: one request; past the spool: in pieces as written. No login shell for either."""
    transport = ssh_env.transport()
    helper = with_helper(transport)
    target, parent = tmp_path / "got", tmp_path / "parent"
    data = os.urandom(size)
    with transport.stream_to(f"echo $PPID > {parent}; cat > {target}") as stream:
        for i in range(0, size, 50_000):
            stream.write(data[i : i + 50_000])
    assert target.read_bytes() == data
    assert int(parent.read_text()) == helper


@pytest.mark.parametrize("size", [1_000_000, 2 * SPOOL_BYTES])
def test_a_stream_to_a_failing_command_raises_its_error(ssh_env, tmp_path, size):
    transport = ssh_env.transport()
    with_helper(transport)
    failing = transport.stream_to("cat > /dev/null; echo nope >&2; exit 3")
    with pytest.raises(RemoteCommandError, match="exit code 3") as failed, failing as stream:
        stream.write(b"x" * size)
    assert "nope" in failed.value.stderr
    deaf = transport.stream_to("exec 0<&-; sleep 0.2")  # more than a pipe holds, never read
    with pytest.raises(TransferError, match="exited before reading all its input"), deaf as stream:
        stream.write(b"x" * size)
    early = transport.stream_to("head -c 10 > /dev/null")  # reads a little, then ends
    with pytest.raises(TransferError, match="exited before reading all its input"), early as stream:
        for _ in range(size // 100_000):
            stream.write(b"x" * 100_000)
    transport.run("true").check()  # the helper goes on answering


@pytest.mark.parametrize("size", [4, SPOOL_BYTES + 1])
def test_a_stream_whose_writer_fails_never_completes_its_command(ssh_env, tmp_path, size):
    """A small one is never sent; a big one, already flowing, is killed on the host."""
    transport = ssh_env.transport()
    with_helper(transport)
    ran = tmp_path / "ran"
    stream_to = transport.stream_to(f"cat > /dev/null; touch {ran}")
    with pytest.raises(ValueError, match="the caller's"), stream_to as stream:
        stream.write(b"x" * size)
        raise ValueError("the caller's own failure")
    transport.run("true").check()  # the helper still answers, and the command never went on
    assert not ran.exists()


class DeadSocketChannel:
    """A channel whose socket died before paramiko's transport thread noticed: paramiko then
    raises ``EOFError`` from every send, and ``close()`` is a send (its close message). This is
    the moment the soak test met under connection kills; it cannot be timed with a real sshd."""

    def __init__(self):
        self.closed = threading.Event()

    def sendall(self, data: bytes) -> None:
        raise EOFError

    def close(self) -> None:
        self.closed.set()
        raise EOFError

    def recv(self, size: int) -> bytes:
        self.closed.wait(30)
        return b""


def test_a_send_on_a_dead_socket_is_may_have_run_not_a_raw_eoferror():
    chan, ended = DeadSocketChannel(), threading.Event()
    helper = Helper(chan, Wire(chan), "host", ended.set)
    with pytest.raises(HelperGone) as gone:
        helper.shell("true", None, 5)
    assert gone.value.sent  # the bytes may have left: never resent another way
    assert ended.is_set() and not helper.alive  # its slot is freed, later requests refused
    with pytest.raises(HelperGone) as later:
        helper.shell("true", None, 5)
    assert not later.value.sent


@pytest.mark.parametrize("hint", [70_000, None, SPOOL_BYTES + 1])
def test_a_stream_from_the_host_comes_from_the_helper_when_said_small(ssh_env, tmp_path, hint):
    transport = ssh_env.transport()
    helper = with_helper(transport)
    source, parent = tmp_path / "data", tmp_path / "parent"
    source.write_bytes(os.urandom(70_000))
    with transport.stream_from(f"echo $PPID > {parent}; cat {source}", size_hint=hint) as stream:
        assert stream.read() == source.read_bytes()
    assert (int(parent.read_text()) == helper) is (hint is not None and hint <= SPOOL_BYTES)
    failing = transport.stream_from("echo partial; echo nope >&2; exit 3", size_hint=hint)
    with pytest.raises(RemoteCommandError, match="exit code 3") as failed, failing as stream:
        assert stream.read() == b"partial\n"
    assert "nope" in failed.value.stderr


PARENT = Program(
    "parent.py",
    "import os, sys\n"
    "sys.stdout.buffer.write(b'%d\\n' % os.getppid() + bytes(range(256)) * 300)\n"
    "raise SystemExit(int(sys.argv[1]))\n",
)


RECEIVER = Program(
    "receiver.py",
    "import hashlib, os, sys\n"
    "data = sys.stdin.buffer.read()\n"
    "print(os.getppid(), hashlib.sha256(data).hexdigest(), file=open(sys.argv[1], 'w'))\n"
    "raise SystemExit(int(sys.argv[2]))\n",
)


@pytest.mark.parametrize("size", [300_000, SPOOL_BYTES + 1])
def test_a_stream_into_our_program_runs_in_a_child_of_the_helper(ssh_env, tmp_path, size):
    """An upload's commit: the helper forks for it, small (one request) or big (in pieces)."""
    transport = ssh_env.transport()
    helper = with_helper(transport)
    data, seen = os.urandom(size), tmp_path / "seen"
    receiving = transport.stream_to_program(RECEIVER, ssh_env.cluster.interpreter, [str(seen), "0"])
    with receiving as stdin:
        stdin.write(data)
    parent, digest = seen.read_text().split()
    assert digest == hashlib.sha256(data).hexdigest()
    assert int(parent) == helper
    failing = transport.stream_to_program(RECEIVER, ssh_env.cluster.interpreter, [str(seen), "5"])
    with pytest.raises(RemoteCommandError, match="exit code 5"), failing as stdin:
        stdin.write(data)


@pytest.mark.parametrize("hint", [80_000, None])
def test_a_small_stream_of_our_program_runs_in_a_child_of_the_helper(ssh_env, hint):
    """A collection's tar: the helper forks, so no fresh interpreter starts for it."""
    transport = ssh_env.transport()
    helper = with_helper(transport)
    with transport.stream_program(PARENT, ssh_env.cluster.interpreter, ["0"], hint) as stream:
        parent, data = stream.read().split(b"\n", 1)
    assert data == bytes(range(256)) * 300
    assert (int(parent) == helper) is (hint is not None)
    failing = transport.stream_program(PARENT, ssh_env.cluster.interpreter, ["4"], hint)
    with pytest.raises(RemoteCommandError, match="exit code 4"), failing as stream:
        assert stream.read().endswith(bytes(range(256)))
