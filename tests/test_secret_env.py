"""``--secret-env NAME``: the kernel's value reaches the job verbatim, on the local host, over
the real sshd and through the real Slurm, and is written to no file on either side, shown in
no process's argv and kept in no record; a process without the value never launches the job."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness.clients import local_settings
from harness.procs import wait_until

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.errors import InvalidRequestError

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)
CANARY = "/tmp/gpu_magic-secret-canary"
TOKEN = "tok_" + os.urandom(8).hex()
SECRET = f'{TOKEN} it\'s "$(touch {CANARY})" `id`\n line two\n\n'  # trailing newlines kept

# The cell checks what it got by hash (printing or saving the value would put it in a file),
# then waits for the test to look at every process's argv while it runs.
CHECK = """
import hashlib, os, pathlib, sys, time
got = os.environ.get("HF_TOKEN", "")
pathlib.Path("outputs/verdict").write_text(
    "same" if hashlib.sha256(got.encode()).hexdigest() == os.environ["EXPECTED"] else "differs")
while not pathlib.Path("release").exists():
    time.sleep(0.05)
"""


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    if os.path.exists(CANARY):
        os.unlink(CANARY)
    yield SECRET
    assert not os.path.exists(CANARY), "the secret was run as a command"


def _argv_holding(needle: bytes) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and needle in (proc / "cmdline").read_bytes():
                found.append(proc.name)
        except OSError:
            continue
    return found


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return [
        str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink()
        and needle in p.read_bytes()
    ]  # fmt: skip


def test_a_secret_reaches_the_job_verbatim_and_is_written_nowhere(env, secret):
    client, cluster = env.client, env.cluster_name
    expected = hashlib.sha256(secret.encode()).hexdigest()
    request = GPUJobRequest.create(
        code=CHECK, cluster=cluster, secret_env=("HF_TOKEN",), env={"EXPECTED": expected}
    )
    handle = client.submit(request)
    job = handle.job
    verdict = f"{job.remote_dir}/outputs/verdict"
    assert env.wait_for_remote_file(verdict, timeout=120) == "same"
    assert _argv_holding(TOKEN.encode()) == []  # ps shows it nowhere while the job runs
    env.transport().run(f"touch {job.remote_dir}/code/release").check()
    assert handle.wait(120).job.status == JobStatus.COMPLETED
    needle = TOKEN.encode()
    assert _files_holding(Path(job.remote_dir), needle) == []  # the host's side
    assert _files_holding(client.settings.gpu_magic_data_dir, needle) == []  # store, audit, results
    stored = client.store.get(job.id).request
    assert stored.secret_env == ("HF_TOKEN",) and "HF_TOKEN" not in stored.env


def test_a_secret_not_set_is_one_line_and_nothing_is_sent(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    client = Client(local_settings(tmp_path))
    try:
        request = GPUJobRequest.create(code="pass", cluster="local", secret_env=("HF_TOKEN",))
        with pytest.raises(InvalidRequestError) as info:
            client.submit(request)
        assert "\n" not in str(info.value) and "--secret-env HF_TOKEN" in str(info.value)
        assert client.store.list() == [] and not (tmp_path / "jobs").exists()
    finally:
        client.close()


@pytest.mark.parametrize("bad", ["HF TOKEN", "HF_TOKEN\n", "1X", "GPU_MAGIC_JOB_ID", ""])
def test_a_secret_name_that_is_no_variable_name_is_refused(bad):
    with pytest.raises(InvalidRequestError) as info:
        GPUJobRequest.create(code="pass", secret_env=(bad,))
    assert "\n" not in str(info.value)


def test_a_name_given_as_env_and_secret_env_is_refused():
    with pytest.raises(InvalidRequestError, match="both --env and --secret-env"):
        GPUJobRequest.create(code="pass", env={"HF_TOKEN": "x"}, secret_env=("HF_TOKEN",))


def test_a_process_without_the_secret_leaves_the_waiting_job_to_one_with_it(tmp_path, secret):
    settings = local_settings(tmp_path).model_copy(update={"max_concurrent_jobs": 1})
    client = Client(settings)
    try:
        hold = "import pathlib, time\nwhile not pathlib.Path('release').exists(): time.sleep(0.05)"
        blocker = client.submit(GPUJobRequest.create(code=hold, cluster="local"))
        request = GPUJobRequest.create(code="pass", cluster="local", secret_env=("HF_TOKEN",))
        waiting = client.submit(request)
        assert waiting.job.status == JobStatus.PENDING  # waits for the slot
        folder = Path(blocker.job.remote_dir)
        (folder / "code" / "release").touch()
        assert wait_until(lambda: (folder / "state" / "exit_code").exists(), timeout=60)
        # another process, without HF_TOKEN, sees the free slot first: it must not launch it
        other = textwrap.dedent(f"""
            from gpu_magic import Client
            c = Client()
            assert c.job({blocker.id!r}).status.value == "completed"  # frees the slot
            print(c.store.get({waiting.id!r}).status.value)
            c.close()
        """)
        environ = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
        environ.update(
            GPU_MAGIC_DATA_DIR=str(settings.gpu_magic_data_dir),
            GPU_MAGIC_CONFIG_DIR=str(settings.gpu_magic_config_dir),
            GPU_CLUSTER_BASE_PATH=str(settings.gpu_cluster_base_path),
            MAX_CONCURRENT_JOBS="1",
        )
        shown = subprocess.run(
            [sys.executable, "-c", other], capture_output=True, text=True, env=environ, cwd=tmp_path
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip() == "pending"
        assert waiting.wait(60).job.status == JobStatus.COMPLETED
    finally:
        client.close()


def test_the_secret_is_redacted_from_the_audit_log_and_the_launch_command(tmp_path, secret):
    client = Client(local_settings(tmp_path))
    try:
        request = GPUJobRequest.create(code="pass", cluster="local", secret_env=("HF_TOKEN",))
        client.submit(request).wait(60)
        launches = [r for r in client.audit.records() if "setsid" in r.get("command", "")]
        assert launches and launches[0]["stdin_bytes"] > 0  # it went over stdin
        assert TOKEN not in client.settings.audit_path.read_text()
    finally:
        client.close()
