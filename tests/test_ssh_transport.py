"""SSHTransport against a real OpenSSH sshd on 127.0.0.1 (no mocks).

sshd runs on this machine as root, so "remote" paths are local paths too: the tests check
what arrived, and what did not, directly on the filesystem.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import select
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
from harness.spy import DelegatingTransport
from harness.sshd import SSHServer, generate_key

from gpu_magic.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    ClusterConnectionError,
    HostUnreachableError,
    RemoteCommandError,
    TransferError,
    UnknownHostKeyError,
    WaitTimeoutError,
)
from gpu_magic.results.download import download
from gpu_magic.transport import ssh
from gpu_magic.transport.base import RemoteEntry, quote_argv
from gpu_magic.transport.local import LocalTransport
from gpu_magic.transport.ssh import SSHTransport

pytestmark = pytest.mark.ssh

GCM = "aes128-gcm@openssh.com"


def openssh_fingerprint(public_key_file: Path) -> str:
    """The fingerprint as OpenSSH prints it (an independent check of ours)."""
    out = subprocess.run(["ssh-keygen", "-lf", str(public_key_file)], capture_output=True)
    return out.stdout.decode().split()[1]


def wait_until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# -- commands ---------------------------------------------------------------------------------


def test_run_returns_output_and_exit_code(ssh_env):
    t = ssh_env.transport()
    result = t.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert t.run("true").ok
    with pytest.raises(RemoteCommandError) as info:
        t.check("sh", "-c", "echo boom >&2; exit 7")
    assert info.value.exit_code == 7 and "boom" in str(info.value)
    assert t.label == f"root@127.0.0.1:{ssh_env.server.port}"
    assert t.cipher == GCM


def test_quoted_argv_arrives_literally_and_runs_nothing(ssh_env, tmp_path):
    marker = tmp_path / "pwned"
    args = [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"; touch {marker}",
        f"a && touch {marker} || b",
        'it\'s "quoted"',
        "two\nlines",
        "*",
        "$HOME",
        "",
    ]
    result = ssh_env.transport().run(quote_argv("printf", "%s\\0", *args))
    assert result.ok, result.stderr
    assert result.stdout.split(b"\0")[:-1] == [a.encode() for a in args]
    assert not marker.exists()


def test_stdin_is_fed_while_both_outputs_are_read(ssh_env):
    data = os.urandom(3_000_000)  # larger than the channel windows (2 MiB) in every direction
    t = ssh_env.transport()
    assert t.run("cat", stdin=data, timeout=60).stdout == data
    both = t.run("tee /dev/stderr", stdin=data, timeout=60)
    assert both.stdout == data and both.stderr == data
    assert t.run("cat", stdin=b"").stdout == b""


def test_run_timeout_raises_and_the_transport_stays_usable(ssh_env):
    t = ssh_env.transport()
    pid_file = ssh_env.remote_dir / "sleeper.pid"
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError):
        t.run(f"echo $$ > {pid_file}; exec sleep 30", timeout=1)
    assert time.monotonic() - started < 20
    assert t.run("echo ok").text == "ok\n"
    os.kill(int(pid_file.read_text()), 9)  # no pty, so nothing signals it: do not leave it


def test_home_is_the_remote_home(ssh_env):
    assert ssh_env.transport().home() == os.path.expanduser("~root")


# -- streaming and files ----------------------------------------------------------------------


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_stream_to_tar_extracts_every_file(ssh_env):
    dest = ssh_env.remote_dir / "unpacked"
    dest.mkdir()
    files = {f"d/f{i}.bin": os.urandom(10_000) for i in range(200)}
    files["big.bin"] = os.urandom(3_000_000)
    with ssh_env.transport().stream_to(quote_argv("tar", "-x", "-C", str(dest))) as stdin:
        stdin.write(make_tar(files))
    for name, data in files.items():
        assert (dest / name).read_bytes() == data


def test_stream_to_reports_the_commands_failure(ssh_env):
    t = ssh_env.transport()
    missing = ssh_env.remote_dir / "missing"
    with pytest.raises(RemoteCommandError) as info, t.stream_to(f"tar -x -C {missing}") as stdin:
        stdin.write(make_tar({"a": b"x"}))
    assert "missing" in info.value.stderr
    with pytest.raises(RemoteCommandError) as info, t.stream_to("exit 3") as stdin:
        for _ in range(40):  # far more than the window: the writes must not hang
            stdin.write(os.urandom(256 * 1024))
    assert info.value.exit_code == 3
    assert t.run("echo still-fine").text == "still-fine\n"


def test_put_file_hash_content_and_mode(ssh_env, tmp_path):
    local = tmp_path / "payload.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # several 255 KiB requests, odd tail
    local.chmod(0o750)
    remote = ssh_env.remote_dir / "payload.bin"
    moved = []
    digest = ssh_env.transport().put_file(local, str(remote), progress=moved.append)
    assert digest == hashlib.sha256(local.read_bytes()).hexdigest()
    assert remote.read_bytes() == local.read_bytes()
    assert remote.stat().st_mode & 0o777 == 0o750
    assert sum(moved) == local.stat().st_size


def test_put_file_of_an_empty_file(ssh_env, tmp_path):
    local = tmp_path / "empty"
    local.write_bytes(b"")
    remote = ssh_env.remote_dir / "empty"
    assert ssh_env.transport().put_file(local, str(remote)) == hashlib.sha256(b"").hexdigest()
    assert remote.read_bytes() == b""


def test_read_file_from_an_offset(ssh_env):
    small = ssh_env.remote_dir / "log.txt"
    small.write_bytes(b"line one\nline two\n")
    big = ssh_env.remote_dir / "big.bin"
    big.write_bytes(os.urandom(1_000_000))  # takes the prefetch path
    t = ssh_env.transport()
    assert t.read_file(str(small)) == b"line one\nline two\n"
    assert t.read_file(str(small), offset=9) == b"line two\n"
    assert t.read_file(str(small), offset=1000) == b""
    assert t.read_file(str(big), offset=12345) == big.read_bytes()[12345:]


def test_get_file(ssh_env, tmp_path):
    remote = ssh_env.remote_dir / "result.bin"
    remote.write_bytes(os.urandom(2_500_000))
    local = tmp_path / "result.bin"
    moved = []
    ssh_env.transport().get_file(str(remote), local, progress=moved.append)
    assert local.read_bytes() == remote.read_bytes()
    assert sum(moved) == remote.stat().st_size


@pytest.fixture(params=["sftp", "streamed"])
def download_path(request, monkeypatch):
    """get_file's two paths: SFTP, and an exec channel for big files (any size, here)."""
    monkeypatch.setattr(ssh, "STREAM_BYTES", 0 if request.param == "streamed" else 1 << 40)
    return request.param


def test_get_file_resumes_with_progress_and_digest_of_the_new_bytes(
    ssh_env, tmp_path, download_path
):
    data = os.urandom(2_500_000)
    remote = ssh_env.remote_dir / "it's $(touch gm-pwned) a -n file.bin"  # arrives verbatim
    remote.write_bytes(data)
    local = tmp_path / "result.bin"
    local.write_bytes(data[:1_000_000] + b"bytes past the kept prefix are replaced")
    moved, digest = [], hashlib.sha256()
    t = ssh_env.transport()
    t.get_file(str(remote), local, offset=1_000_000, progress=moved.append, digest=digest)
    assert local.read_bytes() == data
    assert sum(moved) == 1_500_000
    assert digest.hexdigest() == hashlib.sha256(data[1_000_000:]).hexdigest()
    assert not (Path(t.home()) / "gm-pwned").exists()


def test_a_download_cut_off_resumes_from_what_arrived(ssh_env, tmp_path, download_path):
    """The connection dies after 1 MB of an 8 MB download; ``download`` reconnects and
    resumes from its partial file, and what lands is verified."""
    data = os.urandom(8 << 20)
    remote = ssh_env.remote_dir / "model.bin"
    remote.write_bytes(data)
    spy = Offsets(ssh_env.transport())
    moved = [0]

    def progress(n: int) -> None:
        moved[0] += n
        if len(spy.offsets) == 1 and moved[0] >= 1 << 20:
            ssh_env.server.kill_connections()

    sha = hashlib.sha256(data).hexdigest()
    dest, partial = tmp_path / "model.bin", tmp_path / ".partial" / "model.bin"
    assert download(spy, str(remote), dest, partial, len(data), sha, progress) == sha
    assert dest.read_bytes() == data
    assert len(spy.offsets) == 2 and 0 < spy.offsets[1] < len(data)  # resumed, not redone


class Offsets(DelegatingTransport):
    """Records where each ``get_file`` started."""

    def __init__(self, real):
        super().__init__(real)
        self.offsets: list[int] = []

    def get_file(self, remote, local, *, offset=0, progress=None, digest=None):
        self.offsets.append(offset)
        return super().get_file(remote, local, offset=offset, progress=progress, digest=digest)


def test_polling_a_missing_file_keeps_working(ssh_env):
    log = ssh_env.remote_dir / "output.log"
    t = ssh_env.transport()
    for _ in range(3):
        with pytest.raises(TransferError):
            t.read_file(str(log))
    log.write_bytes(b"step 1\n")
    assert t.read_file(str(log)) == b"step 1\n"


def test_file_errors_are_transfer_errors(ssh_env, tmp_path):
    t = ssh_env.transport()
    missing = str(ssh_env.remote_dir / "nope" / "x")
    local = tmp_path / "x"
    local.write_bytes(b"x")
    with pytest.raises(TransferError, match="nope"):
        t.put_file(local, missing)
    with pytest.raises(TransferError, match="nope"):
        t.read_file(missing)
    with pytest.raises(TransferError, match="nope"):
        t.get_file(missing, tmp_path / "y")
    with pytest.raises(TransferError):
        t.put_file(tmp_path / "no-such-local-file", str(ssh_env.remote_dir / "z"))
    assert not (ssh_env.remote_dir / "z").exists()


# -- listing a folder without a shell --------------------------------------------------------

ROOTS = ["output.log", "metrics.jsonl", "state/error.json", "gone/x", "outputs", "checkpoints"]


def odd_tree(root: Path, secret: Path) -> None:
    """A job-like folder with everything list_tree must not follow or trip over."""
    (root / "outputs/deep/er").mkdir(parents=True)
    (root / "output.log").write_bytes(b"log\n")
    (root / "outputs/deep/er/w.bin").write_bytes(b"w" * 12345)
    for i in range(250):  # more than one READDIR answer (OpenSSH sends 100 names per answer)
        (root / f"outputs/f{i:03d}.txt").write_bytes(b"x" * i)
    os.symlink(secret, root / "outputs/to_file")
    os.symlink(secret.parent, root / "outputs/to_dir")
    os.mkfifo(root / "outputs/pipe")
    os.symlink(secret.parent, root / "state")  # a folder above a root, swapped for a link
    os.symlink(secret, root / "checkpoints")


def expected_tree(root: Path, secret: Path) -> list[RemoteEntry]:
    outputs = [
        RemoteEntry("outputs/deep", (root / "outputs/deep").lstat().st_size, "dir"),
        *[RemoteEntry(f"outputs/f{i:03d}.txt", i, "file") for i in range(250)],
        RemoteEntry("outputs/pipe", 0, "other"),
        RemoteEntry("outputs/to_dir", len(str(secret.parent)), "symlink"),
        RemoteEntry("outputs/to_file", len(str(secret)), "symlink"),
        RemoteEntry("outputs/deep/er", (root / "outputs/deep/er").lstat().st_size, "dir"),
        RemoteEntry("outputs/deep/er/w.bin", 12345, "file"),
    ]
    return [
        RemoteEntry("output.log", 4, "file"),
        RemoteEntry("state", len(str(secret.parent)), "symlink"),
        RemoteEntry("outputs", (root / "outputs").lstat().st_size, "dir"),
        RemoteEntry("checkpoints", len(str(secret)), "symlink"),
        *outputs,
    ]


def test_list_tree_lstats_over_sftp_without_a_command(ssh_env, tmp_path):
    secret = tmp_path / "secret/error.json"
    secret.parent.mkdir()
    secret.write_text("not yours")
    root = ssh_env.remote_dir / "job"
    odd_tree(root, secret)

    class NoCommands(SSHTransport):
        def run(self, command, **kw):
            raise AssertionError(f"list_tree ran a command: {command}")

    t = NoCommands(ssh_env.cluster, ssh_env.settings)
    want = expected_tree(root, secret)
    assert t.list_tree(str(root), ROOTS) == want  # missing roots skipped, no link followed
    assert LocalTransport().list_tree(str(root), ROOTS) == want  # the same seam, locally
    assert t.list_tree(str(ssh_env.remote_dir / "no-such-job"), ROOTS) == []
    t.close()


# -- host keys --------------------------------------------------------------------------------


def test_unknown_host_key_is_refused_with_fingerprint_and_hint(ssh_env, tmp_path):
    server = ssh_env.server
    ssh_env.settings.known_hosts_path.write_text("")
    marker = tmp_path / "should-not-exist"
    with pytest.raises(UnknownHostKeyError) as info:
        ssh_env.transport().run(f"touch {marker}")
    message = str(info.value)
    assert openssh_fingerprint(server.host_key.with_suffix(".pub")) in message
    assert f"127.0.0.1:{server.port}" in message
    assert f"ssh-keyscan -p {server.port} -t ed25519 127.0.0.1" in message
    assert not marker.exists()


def test_changed_host_key_is_refused_with_both_fingerprints(ssh_env, tmp_path):
    other = generate_key(tmp_path / "other_host_key")
    other_pub = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    known = ssh_env.settings.known_hosts_path
    known.write_text(f"[127.0.0.1]:{ssh_env.server.port} {other_pub}\n")
    with pytest.raises(ChangedHostKeyError) as info:
        ssh_env.transport().run("true")
    message = str(info.value)
    assert openssh_fingerprint(other.with_suffix(".pub")) in message
    assert openssh_fingerprint(ssh_env.server.host_key.with_suffix(".pub")) in message
    assert "CHANGED" in message


def test_hashed_known_hosts_and_cluster_known_hosts_file(ssh_env, tmp_path):
    known = ssh_env.settings.known_hosts_path
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert known.read_text().startswith("|1|")
    assert ssh_env.transport().run("true").ok

    known.write_text("")
    cluster = ssh_env.cluster.model_copy(update={"known_hosts": str(ssh_env.server.known_hosts)})
    assert ssh_env.transport(cluster).run("true").ok


# -- authentication and reachability ----------------------------------------------------------


def test_wrong_key_is_an_authentication_error_naming_what_was_tried(ssh_env, tmp_path):
    wrong = generate_key(tmp_path / "wrong_key")
    cluster = ssh_env.cluster.model_copy(update={"key": str(wrong)})
    with pytest.raises(AuthenticationError) as info:
        ssh_env.transport(cluster).run("true")
    message = str(info.value)
    assert f"root@127.0.0.1:{ssh_env.server.port}" in message
    assert str(wrong) in message and "ssh-agent" in message


def test_missing_key_file_is_an_authentication_error(ssh_env, tmp_path):
    cluster = ssh_env.cluster.model_copy(update={"key": str(tmp_path / "absent")})
    with pytest.raises(AuthenticationError, match="absent"):
        ssh_env.transport(cluster).run("true")


def test_closed_port_is_unreachable_at_once(ssh_env):
    with socket.socket() as s:  # bound, not listening: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        cluster = ssh_env.cluster.model_copy(update={"port": port})
        started = time.monotonic()
        with pytest.raises(HostUnreachableError, match=f"127.0.0.1:{port}"):
            ssh_env.transport(cluster).run("true")
    assert time.monotonic() - started < ssh_env.settings.ssh_connection_timeout


def test_silent_host_fails_within_the_connection_timeout(ssh_env):
    settings = ssh_env.settings.model_copy(update={"ssh_connection_timeout": 2.0})
    with socket.socket() as silent:  # accepts TCP, never speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        cluster = ssh_env.cluster.model_copy(update={"port": port})
        started = time.monotonic()
        with pytest.raises(HostUnreachableError, match=f"127.0.0.1:{port}"):
            ssh_env.transport(cluster, settings).run("true")
        assert time.monotonic() - started < 2.0 * 3  # a bound, not a performance figure


def test_unresolvable_host_is_unreachable(ssh_env):
    cluster = ssh_env.cluster.model_copy(update={"host": "no-such-host.invalid"})
    with pytest.raises(HostUnreachableError, match=r"no-such-host\.invalid"):
        ssh_env.transport(cluster).run("true")


# -- ssh config, ProxyJump, agent -------------------------------------------------------------


def write_ssh_config(ssh_env, text: str) -> Path:
    path = ssh_env.settings.ssh_config_path
    path.write_text(text)
    return path


def test_ssh_config_alias(ssh_env):
    server = ssh_env.server
    config = write_ssh_config(
        ssh_env,
        f"Host gpubox\n  HostName 127.0.0.1\n  Port {server.port}\n  User root\n"
        f"  IdentityFile {server.client_key}\n",
    )
    cluster = ssh_env.cluster.model_copy(update={"host": "gpubox", "port": None, "user": None})
    cluster = cluster.model_copy(update={"key": None})
    t = ssh_env.transport(cluster)
    assert t.label == f"root@127.0.0.1:{server.port}"
    assert t.run("echo via-alias").text == "via-alias\n"
    # the same alias works for OpenSSH itself, so the config above is a real one
    known = ssh_env.settings.known_hosts_path
    ssh = subprocess.run(
        [
            *("ssh", "-F", str(config), "-o", f"UserKnownHostsFile={known}"),
            *("-o", "BatchMode=yes", "gpubox", "echo", "via-openssh"),
        ],
        capture_output=True,
        timeout=30,
    )
    assert ssh.stdout == b"via-openssh\n", ssh.stderr


def test_explicit_cluster_fields_win_over_ssh_config(ssh_env, tmp_path):
    wrong = generate_key(tmp_path / "wrong_key")
    write_ssh_config(ssh_env, f"Host 127.0.0.1\n  Port 1\n  User nobody\n  IdentityFile {wrong}\n")
    t = ssh_env.transport()  # the cluster names port, user and key explicitly
    assert t.label == f"root@127.0.0.1:{ssh_env.server.port}"
    assert t.run("id -un").text == "root\n"


@pytest.fixture
def jump_server(tmp_path, ssh_env):
    """A second sshd used only as a jump host: it has connections only if we jumped through it."""
    with SSHServer(tmp_path / "jump") as jump:
        jump.authorized_keys.write_text(ssh_env.server.client_key.with_suffix(".pub").read_text())
        with ssh_env.settings.known_hosts_path.open("a") as known:
            known.write(jump.known_hosts_line() + "\n")
        yield jump


def test_proxy_jump_from_cluster_field(ssh_env, jump_server):
    cluster = ssh_env.cluster.model_copy(
        update={"proxy_jump": f"root@127.0.0.1:{jump_server.port}"}
    )
    t = ssh_env.transport(cluster)
    assert t.run("echo through-the-jump").text == "through-the-jump\n"
    assert len(jump_server.connection_pids()) == 1


def test_proxy_jump_from_ssh_config(ssh_env, jump_server):
    server = ssh_env.server
    write_ssh_config(
        ssh_env,
        f"Host bastion\n  HostName 127.0.0.1\n  Port {jump_server.port}\n  User root\n"
        f"  IdentityFile {server.client_key}\n"
        f"Host gpubox\n  HostName 127.0.0.1\n  Port {server.port}\n  User root\n"
        f"  IdentityFile {server.client_key}\n  ProxyJump bastion\n",
    )
    cluster = ssh_env.cluster.model_copy(
        update={"host": "gpubox", "port": None, "user": None, "key": None}
    )
    t = ssh_env.transport(cluster)
    assert t.run("echo ok").text == "ok\n"
    assert len(jump_server.connection_pids()) == 1


def test_proxy_jump_to_a_dead_target(ssh_env, jump_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        cluster = ssh_env.cluster.model_copy(
            update={"port": dead, "proxy_jump": f"root@127.0.0.1:{jump_server.port}"}
        )
        with pytest.raises(HostUnreachableError, match=f"127.0.0.1:{dead}"):
            ssh_env.transport(cluster).run("true")


@pytest.fixture
def ssh_agent(tmp_path):
    """A real ssh-agent in the foreground (-D), stopped by PID."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        wait_until(sock.exists, what="ssh-agent socket")
        yield sock
    finally:
        agent.terminate()
        agent.wait(5)


def test_ssh_agent_authenticates_a_cluster_without_key(ssh_env, ssh_agent, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on
    cluster = ssh_env.cluster.model_copy(update={"key": None})
    with pytest.raises(AuthenticationError, match="no ssh-agent"):
        ssh_env.transport(cluster).run("true")  # control: without the agent it cannot log in

    env = {**os.environ, "SSH_AUTH_SOCK": str(ssh_agent)}
    subprocess.run(["ssh-add", str(ssh_env.server.client_key)], env=env, check=True)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(ssh_agent))
    assert ssh_env.transport(cluster).run("echo agent").text == "agent\n"


# -- concurrency and failures of the connection -----------------------------------------------


@pytest.fixture
def fresh_sshd(tmp_path, ssh_env):
    """Factory: an sshd of its own (OpenSSH defaults unless asked) and a cluster for it."""
    servers = []

    def start(**options):
        server = SSHServer(tmp_path / f"sshd{len(servers)}", **options).start()
        servers.append(server)
        server.authorized_keys.write_text(ssh_env.server.client_key.with_suffix(".pub").read_text())
        with ssh_env.settings.known_hosts_path.open("a") as known:
            known.write(server.known_hosts_line() + "\n")
        return server, ssh_env.cluster.model_copy(update={"port": server.port})

    yield start
    for server in servers:
        server.stop()


def run_in_threads(count: int, work) -> list:
    """Start ``count`` threads at once (barrier); returns results or the exceptions raised."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(i):
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_forty_threads_share_one_connection_under_default_max_sessions(ssh_env, fresh_sshd):
    server, cluster = fresh_sshd()  # MaxSessions 10, the OpenSSH default
    t = ssh_env.transport(cluster)
    results = run_in_threads(40, lambda i: t.run(f"sleep 0.2; echo {i}").text)
    assert results == [f"{i}\n" for i in range(40)]
    assert len(server.connection_pids()) == 1


def test_two_cluster_names_for_one_host_share_one_connection(ssh_env, fresh_sshd, tmp_path):
    """An ssh config alias and the address it names are one host: one connection serves the
    jobs of both, and the audit log still says which cluster each command was for."""
    from gpu_magic import Client, GPUJobRequest, JobStatus

    server, cluster = fresh_sshd()
    write_ssh_config(
        ssh_env,
        f"Host gpubox\n  HostName 127.0.0.1\n  Port {server.port}\n  User root\n"
        f"  IdentityFile {ssh_env.server.client_key}\n",
    )
    alias = cluster.model_copy(
        update={"name": "alias", "host": "gpubox", "port": None, "user": None, "key": None,
                "base_path": str(tmp_path / "other")}
    )  # fmt: skip
    client = Client(ssh_env.settings)
    client.clusters.add(cluster)
    client.clusters.add(alias)
    try:
        for name in (cluster.name, alias.name):
            job = client.submit(GPUJobRequest.create(code="pass", cluster=name)).wait(60).job
            assert job.status == JobStatus.COMPLETED, job.reason
        assert len(server.connection_pids()) == 1
        used = {r["cluster"] for r in client.audit.records() if r["event"] == "command"}
        assert used == {cluster.name, alias.name}
    finally:
        client.close()


def test_channel_cap_equal_to_max_sessions_and_the_control_without_it(ssh_env, fresh_sshd):
    """With the cap at the server's MaxSessions every call waits its turn; without the cap the
    server refuses the extra channels (the control that shows the cap does the work)."""
    _server, cluster = fresh_sshd(max_sessions=2)
    settings = ssh_env.settings.model_copy(update={"ssh_connection_timeout": 0.5})
    command = "sleep 1; echo ok"  # far longer than the 0.5 s a refused channel is retried
    capped = ssh_env.transport(cluster.model_copy(update={"max_sessions": 2}), settings)
    assert run_in_threads(6, lambda i: capped.run(command).text) == ["ok\n"] * 6
    no_helper = {"max_sessions": 6, "helper": False}  # a helper would hold one of the two
    uncapped = ssh_env.transport(cluster.model_copy(update=no_helper), settings)
    results = run_in_threads(6, lambda i: uncapped.run(command).text)
    refused = [r for r in results if isinstance(r, ClusterConnectionError)]
    assert len(refused) == 4 and results.count("ok\n") == 2, results


def test_simultaneous_connects_survive_default_max_startups(ssh_env, fresh_sshd):
    server, cluster = fresh_sshd()  # MaxStartups 10:30:100, the OpenSSH default
    transports = [ssh_env.transport(cluster) for _ in range(40)]
    results = run_in_threads(40, lambda i: transports[i].run("echo up").text)
    assert results == ["up\n"] * 40
    assert "past MaxStartups" in server.log_path.read_text()  # the retries were needed


class DroppingProxy:
    """TCP forwarder to sshd that closes its first ``drop`` connections at once, like sshd does
    past MaxStartups, and counts every connection it accepts.

    ``close()`` shuts every socket down before closing: that wakes the threads blocked in
    ``accept()``/``select()``, which would otherwise linger and could accept on a reused
    descriptor (seen: a closed proxy's thread accepted a later test's connection)."""

    def __init__(self, target_port: int, drop: int):
        self.target_port = target_port
        self.drop = drop
        self.accepted = 0
        self.relayed: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads = [threading.Thread(target=self._serve, daemon=True)]
        self.threads[0].start()

    def _serve(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # shut down by close()
                return
            self.accepted += 1
            if self.accepted <= self.drop:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.relayed += [client, upstream]
            thread = threading.Thread(target=self._relay, args=(client, upstream), daemon=True)
            self.threads.append(thread)
            thread.start()

    @staticmethod
    def _relay(a: socket.socket, b: socket.socket) -> None:
        """Copy both ways until either side closes, then close both (one thread owns both)."""
        peer = {a: b, b: a}
        with a, b:
            while True:
                readable, _, _ = select.select([a, b], [], [])
                try:
                    for sock in readable:
                        data = sock.recv(65536)
                        if not data:
                            return
                        peer[sock].sendall(data)
                except OSError:
                    return

    def close(self):
        for sock in [self.listener, *self.relayed]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def dropping_proxy(ssh_env):
    proxies = []

    def make(drop: int) -> DroppingProxy:
        proxy = DroppingProxy(ssh_env.server.port, drop)
        proxies.append(proxy)
        line = f"[127.0.0.1]:{proxy.port} {ssh_env.server.host_public_key}\n"
        with ssh_env.settings.known_hosts_path.open("a") as known:
            known.write(line)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


def test_connects_dropped_before_the_banner_are_retried(ssh_env, dropping_proxy):
    proxy = dropping_proxy(drop=2)
    cluster = ssh_env.cluster.model_copy(update={"port": proxy.port})
    assert ssh_env.transport(cluster).run("echo hi").text == "hi\n"
    assert proxy.accepted == 3


def test_auth_and_host_key_failures_are_not_retried(ssh_env, dropping_proxy, tmp_path):
    proxy = dropping_proxy(drop=0)
    wrong = generate_key(tmp_path / "wrong_key")
    cluster = ssh_env.cluster.model_copy(update={"port": proxy.port, "key": str(wrong)})
    with pytest.raises(AuthenticationError):
        ssh_env.transport(cluster).run("true")
    assert proxy.accepted == 1
    ssh_env.settings.known_hosts_path.write_text("")
    cluster = ssh_env.cluster.model_copy(update={"port": proxy.port})
    with pytest.raises(UnknownHostKeyError):
        ssh_env.transport(cluster).run("true")
    assert proxy.accepted == 2


class CuttingAgent:
    """A relay in front of a real ssh-agent that, asked for its first signature, first drops
    every connection of ``server``: the login it signs for dies in the middle of authentication
    (what a client sees when sshd is killed or the network drops right then)."""

    SIGN_REQUEST = 13  # SSH2_AGENTC_SIGN_REQUEST

    def __init__(self, agent: Path, server: SSHServer, path: Path):
        self.agent, self.server, self.path = agent, server, path
        self.signatures = 0
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.socket(socket.AF_UNIX) as agent:
            agent.connect(str(self.agent))
            while request := agent_message(client):
                if request[4] == self.SIGN_REQUEST:
                    self.signatures += 1
                    if self.signatures == 1:
                        self.server.drop_connections()
                agent.sendall(request)
                client.sendall(agent_message(agent))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


def agent_message(sock: socket.socket) -> bytes:
    """One ssh-agent protocol message (4-byte length, then the body); b"" at EOF."""
    message = b""
    need = 4
    while len(message) < need:
        chunk = sock.recv(need - len(message))
        if not chunk:
            return b""
        message += chunk
        if len(message) == 4:
            need = 4 + int.from_bytes(message, "big")
    return message


def test_a_connection_cut_during_authentication_is_retried(
    ssh_env, fresh_sshd, ssh_agent, monkeypatch, tmp_path
):
    """paramiko reports a connection that died while the keys were offered as an authentication
    failure; it was a drop, with no word from the server, and is retried like one."""
    server, cluster = fresh_sshd()
    env = {**os.environ, "SSH_AUTH_SOCK": str(ssh_agent)}
    subprocess.run(["ssh-add", "-q", str(ssh_env.server.client_key)], env=env, check=True)
    relay = CuttingAgent(ssh_agent, server, tmp_path / "relay.sock")
    monkeypatch.setenv("HOME", str(tmp_path))  # the agent's key only
    monkeypatch.setenv("SSH_AUTH_SOCK", str(relay.path))
    try:
        t = ssh_env.transport(cluster.model_copy(update={"key": None}))
        assert t.run("echo through").text == "through\n"
    finally:
        relay.close()
    assert relay.signatures == 2  # the first login was cut as it signed; the second went through


def test_a_server_that_ends_authentication_itself_is_not_retried(ssh_env, fresh_sshd, tmp_path):
    """sshd's own goodbye during authentication (MaxAuthTries) is a refusal: one connection,
    the authentication error, no retries that could get the address banned."""
    server, cluster = fresh_sshd(extra_config=("MaxAuthTries 1", "LogLevel VERBOSE"))
    wrong = generate_key(tmp_path / "wrong_key")
    with pytest.raises(AuthenticationError, match="authentication failed"):
        ssh_env.transport(cluster.model_copy(update={"key": str(wrong)})).run("true")
    # sshd logs its goodbye after sending it (the client may be back first), and each login's
    # "Failed publickey" before answering it: once the goodbye is in the log, every login is.
    goodbye = "Too many authentication failures"
    wait_until(lambda: goodbye in server.log_path.read_text(), what="sshd to log its goodbye")
    log = server.log_path.read_text()
    assert log.count("Failed publickey") == 1, log  # one login: not tried again


def test_reconnects_after_the_server_dropped_the_connection(ssh_env, fresh_sshd):
    server, cluster = fresh_sshd()
    t = ssh_env.transport(cluster)
    assert t.run("echo one").text == "one\n"
    assert server.kill_connections()
    assert t.run("echo two").text == "two\n"  # at once: the dead connection is noticed on open
    assert server.kill_connections()
    wait_until(lambda: t.cipher is None, what="the client to notice the dropped connection")
    assert t.run("echo three").text == "three\n"
    t.close()
    assert t.cipher is None
    assert t.run("echo four").text == "four\n"


def test_a_command_cut_off_by_a_dropped_connection_is_a_connection_error(ssh_env, fresh_sshd):
    server, cluster = fresh_sshd()
    t = ssh_env.transport(cluster)
    started = ssh_env.remote_dir / "started"

    def kill_once_started():
        wait_until(started.exists, what="the command to start")
        server.kill_connections()

    killer = threading.Thread(target=kill_once_started)
    killer.start()
    with pytest.raises(ClusterConnectionError, match="may or may not have run"):
        t.run(f"touch {started}; sleep 30", timeout=60)
    killer.join()
    assert t.run("echo back").text == "back\n"


def test_a_stream_cut_off_by_a_dropped_connection_is_a_connection_error(ssh_env, fresh_sshd):
    server, cluster = fresh_sshd()
    t = ssh_env.transport(cluster)
    started = ssh_env.remote_dir / "started"
    command = f"touch {started}; cat > /dev/null"
    with pytest.raises(ClusterConnectionError), t.stream_to(command) as stdin:
        wait_until(started.exists, what="the command to start")
        server.kill_connections()
        for _ in range(1000):  # 64 MB: far past any window, so the writes must notice
            stdin.write(b"x" * 65536)
    assert t.run("echo back").text == "back\n"


def test_file_transfer_after_reconnect(ssh_env, fresh_sshd, tmp_path):
    server, cluster = fresh_sshd()
    t = ssh_env.transport(cluster)
    target = ssh_env.remote_dir / "f"
    target.write_bytes(b"before")
    assert t.read_file(str(target)) == b"before"  # leaves an idle SFTP session behind
    server.kill_connections()
    target.write_bytes(b"after")
    assert t.read_file(str(target)) == b"after"


def test_transport_needs_a_host(ssh_env):
    from gpu_magic.errors import ConfigError

    with pytest.raises(ConfigError):
        SSHTransport(ssh_env.cluster.model_copy(update={"host": None}), ssh_env.settings)


# -- stream_from: a command's stdout as a stream (tar of many small files) ---------------------


def test_stream_from_yields_stdout_byte_for_byte_past_the_window(ssh_env):
    data = os.urandom(5_000_000)  # more than paramiko's 2 MB window
    source = ssh_env.remote_dir / "data.bin"
    source.write_bytes(data)
    noise = "head -c 300000 /dev/zero >&2"  # stderr shares the window: it must not stall stdout
    t = ssh_env.transport()
    with t.stream_from(f"{noise}; cat {source}; {noise}") as stream:
        got = stream.read()
    assert got == data


def test_stream_from_drains_what_the_caller_left_unread(ssh_env):
    t = ssh_env.transport()
    done = ssh_env.remote_dir / "done"
    with t.stream_from(f"head -c 20000000 /dev/zero; touch {done}") as stream:
        assert stream.read(10) == b"\0" * 10
    assert done.exists()  # the command ran to its end: it was not left blocked on a full window
    assert t.run("echo still-fine").text == "still-fine\n"


def test_stream_from_reports_the_commands_failure(ssh_env):
    t = ssh_env.transport()
    with (
        pytest.raises(RemoteCommandError) as info,
        t.stream_from("echo partial; echo why >&2; exit 4") as s,
    ):
        assert s.read() == b"partial\n"
    assert info.value.exit_code == 4 and "why" in info.value.stderr
    assert t.run("echo still-fine").text == "still-fine\n"


def test_a_stream_from_cut_off_by_a_dropped_connection_is_a_connection_error(ssh_env, fresh_sshd):
    server, cluster = fresh_sshd()
    t = ssh_env.transport(cluster)
    got = 0
    with (
        pytest.raises(ClusterConnectionError, match="connection"),
        t.stream_from("head -c 500000000 /dev/zero") as stream,
    ):
        while chunk := stream.read(1 << 16):
            got += len(chunk)
            if got >= 1 << 20 and server.connection_pids():
                server.kill_connections()
    assert got < 500_000_000  # it ended early, and said so
    assert t.run("echo back").text == "back\n"


def test_a_failure_in_the_callers_block_is_blamed_on_a_dropped_connection(ssh_env, fresh_sshd):
    """A reader that trips over the truncated data sees its own error: the cause is named."""
    server, cluster = fresh_sshd()
    t = ssh_env.transport(cluster)
    with (
        pytest.raises(ClusterConnectionError) as info,
        t.stream_from("head -c 500000000 /dev/zero") as s,
    ):
        s.read(1 << 20)
        server.kill_connections()
        while s.read(1 << 16):
            pass
        raise ValueError("short read")
    assert isinstance(info.value.__cause__, ValueError)
