"""The audit log: complete (every remote operation of a whole job lifecycle has its record, on
the local host and over the real sshd), chained (a changed, removed, reordered or cut record is
found, by ``verify`` and by ``gpu-magic audit verify``'s exit code), shared safely by processes
appending at once, and free of secrets."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from collections import Counter
from contextlib import contextmanager

import pytest
from harness.clients import local_settings
from harness.kernel import Kernel, kernel_env
from harness.spy import DelegatingTransport

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.cli import main as cli
from gpu_magic.clusters import CleanupRules
from gpu_magic.errors import UnknownHostKeyError
from gpu_magic.housekeeping import cleanup
from gpu_magic.transport import LocalTransport
from gpu_magic.transport.base import shorten

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)
TRANSPORT_EVENTS = {"command", "upload", "download", "read", "mkdir", "list"}


class Journal(DelegatingTransport):
    """The real transport, with every remote operation the services ask for written down
    (what the audit log must show, one record each)."""

    def __init__(self, real):
        super().__init__(real)
        self.seen: list[tuple[str, str]] = []

    def run(self, command, *, stdin=None, timeout=None):
        self.seen.append(("command", command))
        return super().run(command, stdin=stdin, timeout=timeout)

    @contextmanager
    def stream_from(self, command, size_hint=None):
        self.seen.append(("command", command))
        with super().stream_from(command, size_hint) as stream:
            yield stream

    @contextmanager
    def stream_to(self, command):
        self.seen.append(("command", command))
        with super().stream_to(command) as stream:
            yield stream

    def put_stream(self, source, remote, **options):
        self.seen.append(("upload", remote))
        return super().put_stream(source, remote, **options)

    def makedirs(self, remote):
        self.seen.append(("mkdir", remote))
        return super().makedirs(remote)

    def read_file(self, remote, offset=0):
        self.seen.append(("read", remote))
        return super().read_file(remote, offset)

    def get_file(self, remote, local, **options):
        self.seen.append(("download", remote))
        return super().get_file(remote, local, **options)

    def list_tree(self, remote, roots):
        self.seen.append(("list", remote))
        return super().list_tree(remote, roots)


def _operation(record: dict) -> tuple[str, str]:
    return record["event"], record.get("command") or record["path"]


def _asked(operation: tuple[str, str]) -> tuple[str, str]:
    """What the record of an operation shows: our programs by name, not their source."""
    event, what = operation
    return event, shorten(what) if event == "command" else what


@pytest.fixture(params=["local", "ssh"])
def journaled(request, tmp_path):
    """A client whose every transport is a ``Journal`` over the real one (``transports=``)."""
    journals: list[Journal] = []

    def transports(config):
        if config.is_local:
            real = LocalTransport()
        else:
            from gpu_magic.transport.ssh import SSHTransport

            real = SSHTransport(config, settings)
        journals.append(Journal(real))
        return journals[-1]

    if request.param == "local":
        settings, cluster = local_settings(tmp_path), "local"
        client = Client(settings, transports=transports)
    else:
        ssh_env = request.getfixturevalue("ssh_env")
        settings, cluster = ssh_env.settings, ssh_env.cluster.name
        client = Client(settings, transports=transports)
        client.clusters.add(ssh_env.cluster)
    yield client, cluster, journals, tmp_path
    client.close()


def test_every_remote_operation_of_a_whole_lifecycle_has_its_record(journaled):
    client, cluster, journals, tmp_path = journaled
    (tmp_path / "data.txt").write_text("shipped\n")
    code = "import time\nprint('step 1 loss=0.5', flush=True)\nresult = x * 2\n"
    request = GPUJobRequest.create(
        code=code, cluster=cluster, inputs=("x",), outputs=("result",), files=("data.txt",)
    )
    job = client.submit(request, {"x": 21}, cwd=tmp_path)
    assert job.wait(60).job.status == JobStatus.COMPLETED  # polls: the monitor's look
    assert client.monitor.sync(job.id).job.is_terminal  # a monitor tick with its log tail
    assert "loss=0.5" in client.logs(job.id)
    assert job.outputs == {"result": 42}  # fetched
    long = client.submit(GPUJobRequest.create(code="import time; time.sleep(60)", cluster=cluster))
    assert client.cancel(long.id).status in (JobStatus.CANCELLED, JobStatus.RUNNING)
    assert long.wait(60).job.status == JobStatus.CANCELLED
    assert client.results.archive(job.id).exists()
    rules = CleanupRules(keep_last=0)
    done = client.cleanup(cleanup.Request(rules=rules, force=True))
    assert done.actions  # folders deleted on the host (and locally)

    asked = Counter(_asked(op) for journal in journals for op in journal.seen)
    records = client.audit.records()
    recorded = Counter(_operation(r) for r in records if r["event"] in TRANSPORT_EVENTS)
    assert asked and recorded == asked  # each remote operation exactly once, nothing extra
    events = Counter(r["event"] for r in records)
    assert events["submit"] == 2 and events["cancel"] == 1 and events["delete"] >= 2
    states = [(r["jobs"], r["status"]) for r in records if r["event"] == "state"]
    assert ([long.id], "cancelled") in states and ([job.id], "completed") in states
    assert all(r["cluster"] == cluster and r["user"] for r in records)
    assert {job.id, long.id} <= {j for r in records for j in r["jobs"]}
    assert client.audit.verify().ok


def test_transfers_carry_direction_size_and_sha256(tmp_path):
    client = Client(local_settings(tmp_path))
    try:
        big = tmp_path / "big.bin"
        big.write_bytes(b"x" * (2 << 20))  # over LARGE_FILE: sent by put_stream, not the tar
        request = GPUJobRequest.create(code="pass", cluster="local", files=("big.bin",))
        client.submit(request, cwd=tmp_path).wait(60)
        uploads = [r for r in client.audit.records() if r["event"] == "upload"]
        assert [(r["path"].endswith("/big.bin"), r["bytes"]) for r in uploads] == [(True, 2 << 20)]
        assert uploads[0]["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
        tar = [r for r in client.audit.records() if r.get("direction") == "up"]
        assert tar and tar[0]["stdin_bytes"] > 0 and len(tar[0]["stdin_sha256"]) == 64
    finally:
        client.close()


def test_a_secret_env_value_reaches_no_record(tmp_path):
    client = Client(local_settings(tmp_path))
    try:
        env = {"HF_TOKEN": "hf_very_secret_value", "MODE": "fast"}
        code = "import os, sys; sys.exit(0 if os.environ['HF_TOKEN'].startswith('hf_') else 3)"
        job = client.submit(GPUJobRequest.create(code=code, cluster="local", env=env))
        assert job.wait(60).job.status == JobStatus.COMPLETED  # the job still got it
        text = client.settings.audit_path.read_text()
        assert "hf_very_secret_value" not in text
        submit = next(r for r in client.audit.records() if r["event"] == "submit")
        assert submit["env_names"] == ["HF_TOKEN", "MODE"] and "fast" not in json.dumps(submit)
    finally:
        client.close()


@pytest.fixture
def logged(tmp_path, monkeypatch):
    """A real log of two jobs, and the CLI pointed at it."""
    settings = local_settings(tmp_path)
    for name, value in (("GPU_MAGIC_DATA_DIR", settings.gpu_magic_data_dir),
                        ("GPU_MAGIC_CONFIG_DIR", settings.gpu_magic_config_dir),
                        ("GPU_CLUSTER_BASE_PATH", settings.gpu_cluster_base_path)):  # fmt: skip
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr("gpu_magic.api._default", None)
    client = Client(settings)
    for _ in range(2):
        client.submit(GPUJobRequest.create(code="pass", cluster="local")).wait(60)
    client.close()
    yield settings.audit_path
    monkeypatch.setattr("gpu_magic.api._default", None)


def _verify(capsys) -> tuple[int, str]:
    code = cli(["audit", "verify"])
    return code, capsys.readouterr().out


def _edit(path, change):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(change(lines)) + "\n")


def test_an_untouched_log_verifies(logged, capsys):
    code, out = _verify(capsys)
    assert code == 0 and "intact" in out


@pytest.mark.parametrize(
    "tamper, finding",
    [
        (lambda ls: [ls[0], ls[1].replace('"pid":', '"pid":1'), *ls[2:]], "record 2 was changed"),
        (lambda ls: [ls[0], *ls[2:]], "record 3 stands where record 2 belongs"),
        (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], "record 3 stands where record 2 belongs"),
        (lambda ls: ls[:-1], "cut from the end"),
        (lambda ls: [*ls[:-1], ls[-1].replace('"at":"', '"at":"1')], "was changed"),
    ],
    ids=["changed", "removed", "reordered", "cut", "last-changed"],
)
def test_a_tampered_log_is_found_out(logged, capsys, tamper, finding):
    _edit(logged, tamper)
    code, out = _verify(capsys)
    assert code == 1 and "BROKEN" in out and finding in out


def test_processes_appending_at_once_keep_one_chain(tmp_path):
    settings = local_settings(tmp_path)
    Client(settings).close()  # the store and its tables exist
    script = textwrap.dedent(f"""
        from gpu_magic.audit import AuditLog
        log = AuditLog({str(settings.audit_path)!r}, {str(settings.store_path)!r})
        for i in range(150):
            log.record("command", cluster="local", command=f"echo {{i}}")
    """)
    writers = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [w.wait(120) for w in writers] == [0, 0, 0]
    client = Client(settings)
    try:
        verdict = client.audit.verify()
        assert verdict.ok and verdict.records == 450, verdict
        seqs = [json.loads(line)["seq"] for line in settings.audit_path.read_text().splitlines()]
        assert seqs == list(range(1, 451))
    finally:
        client.close()


def test_the_log_is_private_to_the_user(logged):
    assert logged.stat().st_mode & 0o777 == 0o600


def test_gpu_audit_shows_a_jobs_records(logged, capsys):
    first = next(r for r in map(json.loads, logged.read_text().splitlines()) if r["jobs"])
    assert cli(["audit", first["jobs"][0], "--json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown and all(first["jobs"][0] in r["jobs"] for r in shown)
    assert {"submit", "state", "command"} <= {r["event"] for r in shown}


def test_host_keys_accepted_and_refused_are_trust_records(ssh_env, tmp_path):
    client = Client(ssh_env.settings)
    client.clusters.add(ssh_env.cluster)
    try:
        client.submit(GPUJobRequest.create(code="pass", cluster="ssh")).wait(60)
        trust = [r for r in client.audit.records() if r["event"] == "trust"]
        key = ssh_env.server.known_hosts_line().split()[1]  # the key type
        assert [r["decision"] for r in trust] == ["host key accepted"]
        assert trust[0]["key"].startswith(f"{key} SHA256:") and trust[0]["host"]
    finally:
        client.close()
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    stranger = Client(ssh_env.settings.model_copy(update={"known_hosts_path": empty}))
    stranger.clusters.add(ssh_env.cluster)
    try:
        with pytest.raises(UnknownHostKeyError):
            stranger.submit(GPUJobRequest.create(code="pass", cluster="ssh"))
        *_, refused, connect = stranger.audit.records()
        assert refused["decision"] == "host key refused" and "SHA256:" in refused["reason"]
        assert connect["event"] == "connect" and "UnknownHostKeyError" in connect["error"]
        assert stranger.audit.verify().ok
    finally:
        stranger.close()


@pytest.mark.kernel
def test_gpu_audit_in_a_real_kernel(logged, tmp_path):
    settings = local_settings(tmp_path)
    kernel = Kernel(kernel_env(settings), str(tmp_path))
    try:
        assert kernel.run("%load_ext gpu_magic").error is None
        shown = kernel.run("%gpu_audit --limit 5")
        assert shown.error is None and len(shown.stdout.splitlines()) == 2 + 5, shown.text
        assert "event" in shown.stdout.splitlines()[0]
        verified = kernel.run("%gpu_audit --verify")
        assert verified.error is None and "audit log intact" in verified.stdout
        bad = kernel.run("%gpu_audit nosuchjob")
        assert bad.error is not None and "\n" not in bad.error and "nosuchjob" in bad.error
    finally:
        kernel.shutdown()


def test_reading_a_working_directory_env_is_a_trust_record(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("GPU_CLUSTER_HOST=evil.example\nMAX_CONCURRENT_JOBS=3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPU_MAGIC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GPU_MAGIC_CONFIG_DIR", str(tmp_path / "config"))
    client = Client()
    try:
        (record,) = client.audit.records()
        assert record["decision"] == "working directory .env read"
        assert record["used"] == ["MAX_CONCURRENT_JOBS"]
        assert record["ignored"] == ["GPU_CLUSTER_HOST"]
    finally:
        client.close()
