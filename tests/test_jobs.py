"""The behavioural suite: the same job life cycle on every cluster kind (local, real sshd, and a
real Slurm through its login node). A job's process group is run.sh's pid (``state/pid``) on every
scheduler; ``scheduler_id`` is that pid only for the process scheduler (Slurm: the Slurm job id)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from harness.procs import alive, group_alive, wait_until

from gpu_magic import GitSource, GPUJobRequest, JobStatus, RemoteJobError
from gpu_magic.errors import WaitTimeoutError

pytestmark = pytest.mark.timeout(90)


def submit(job_env, code, namespace=None, **fields):
    request = GPUJobRequest.create(code=code, cluster=job_env.cluster_name, **fields)
    namespace = job_env.namespace if namespace is None else namespace
    return job_env.client.submit(request, namespace, cwd=job_env.cwd)


def test_inputs_and_outputs_round_trip(env):
    env.namespace.update(x=21, weights=np.arange(6.0).reshape(2, 3), meta={"lr": 0.1})
    job = submit(
        env,
        "y = x * 2\nscaled = weights * y\nmeta = dict(meta, seen=True)",
        inputs=("x", "weights", "meta"),
        outputs=("y", "scaled", "meta"),
    )
    assert job.wait(timeout=60).status == JobStatus.COMPLETED
    out = job.fetch()
    assert out["y"] == 42
    np.testing.assert_array_equal(out["scaled"], np.arange(6.0).reshape(2, 3) * 42)
    assert out["meta"] == {"lr": 0.1, "seen": True}


SIZES = {"1KB": 1000, "1MiB": 1 << 20, "100MB": 100_000_000, "1GB": 1_000_000_000}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("env", ["ssh"], indirect=True)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_an_input_of_any_size_arrives_whole(env, size):
    """A pickled variable of 1 MiB or more takes the large-file path (pipelined SFTP from
    memory); before, it crashed there with ``stat: path should be string ... not NoneType``."""
    import hashlib

    array = np.arange(SIZES[size], dtype=np.uint8)  # 0..255 repeating: cheap to make and check
    env.namespace["array"] = array
    job = submit(
        env,
        "import hashlib\ndigest = hashlib.sha256(memoryview(array)).hexdigest()\nn = array.size",
        inputs=("array",),
        outputs=("digest", "n"),
    )
    assert job.wait(timeout=240).status == JobStatus.COMPLETED, job.logs()
    out = job.fetch()
    assert out["n"] == array.size
    assert out["digest"] == hashlib.sha256(memoryview(array)).hexdigest()


def test_files_and_folders_keep_their_layout(env):
    data = env.cwd / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("A")
    (data / "sub" / "b.txt").write_text("B")
    (data / "scratch.tmp").write_text("ignored by .gpuignore")
    (data / ".gpuignore").write_text("*.tmp\n")
    for skipped in (".git", "__pycache__", ".ipynb_checkpoints"):
        (data / skipped).mkdir()
        (data / skipped / "junk").write_text("never shipped")
    (env.cwd / "helper.py").write_text("VALUE = 7\n")
    code = (
        "import os\nfrom helper import VALUE\n"
        "tree = sorted(os.path.join(r, f) for r, _, fs in os.walk('data') for f in fs)\n"
        "contents = {p: open(p).read() for p in tree}\nvalue = VALUE"
    )
    job = submit(env, code, files=("data", "helper.py"), outputs=("tree", "contents", "value"))
    job.wait(timeout=60)
    out = job.fetch()
    assert out["tree"] == ["data/a.txt", "data/sub/b.txt"]
    assert out["contents"] == {"data/a.txt": "A", "data/sub/b.txt": "B"}
    assert out["value"] == 7


def test_bash_cell_with_env_and_args(env):
    tricky = "$(touch pwned); `id` ; echo 'x\" \n"
    job = submit(
        env,
        'echo "first=$1"\necho "second=$2"\necho "color=$COLOR"\nls pwned 2>&1 || true',
        language="bash",
        args=("two words", tricky),
        env={"COLOR": "deep blue"},
    )
    assert job.wait(timeout=60).status == JobStatus.COMPLETED
    log = job.logs()
    assert "first=two words" in log
    assert f"second={tricky}" in log
    assert "color=deep blue" in log
    assert "No such file" in log  # the metacharacters ran nothing


def test_python_cell_sees_env_and_argv(env):
    job = submit(
        env,
        "import os, sys\nargv = sys.argv[1:]\nseen = os.environ['MODE']",
        env={"MODE": "fast; rm -rf /"},
        args=("--lr", "0.1"),
        outputs=("argv", "seen"),
    )
    job.wait(timeout=60)
    assert job.fetch() == {"argv": ["--lr", "0.1"], "seen": "fast; rm -rf /"}


def test_nonzero_exit_is_failed_with_the_exit_code(env):
    job = submit(env, "import sys\nprint('bye')\nsys.exit(3)")
    record = env.client.wait(job.id, timeout=60)
    assert record.status == JobStatus.FAILED
    assert record.exit_code == 3
    assert "bye" in job.logs()


def test_remote_exception_shows_the_remote_traceback(env):
    job = submit(
        env, "values = [1, 2]\n\ndef ratio():\n    return values[0] / (values[1] - 2)\n\nratio()"
    )
    job.wait(timeout=60)
    assert job.status == JobStatus.FAILED
    assert job.job.error == "ZeroDivisionError: division by zero"
    with pytest.raises(RemoteJobError) as info:
        job.fetch()
    err = info.value
    assert err.exc_type == "ZeroDivisionError"
    assert "return values[0] / (values[1] - 2)" in err.remote_traceback
    assert "in ratio" in err.remote_traceback
    assert "runner.py" not in err.remote_traceback  # starts at the cell, not our machinery


def test_cancel_kills_the_whole_process_group(env):
    code = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "open('child.pid', 'w').write(str(child.pid))\n"
        "time.sleep(300)"
    )
    job = submit(env, code)
    child_pid_file = f"{job.job.remote_dir}/code/child.pid"
    child_pid = int(env.wait_for_remote_file(child_pid_file))
    group = int(env.wait_for_remote_file(f"{job.job.remote_dir}/state/pid"))  # run.sh's group
    assert alive(child_pid) and group_alive(group)
    job.cancel()
    assert job.status == JobStatus.CANCELLED
    assert wait_until(lambda: not alive(child_pid) and not group_alive(group))


def test_wait_timeout_raises_and_job_keeps_running(env):
    job = submit(env, "import time\ntime.sleep(60)")
    assert wait_until(lambda: job.status == JobStatus.RUNNING, timeout=30)  # Slurm queues first
    with pytest.raises(WaitTimeoutError, match="still running"):
        job.wait(timeout=0.3)
    assert job.status == JobStatus.RUNNING
    job.cancel()


def test_job_timeout_ends_in_timeout_state(env):
    job = submit(env, "import time\nprint('started', flush=True)\ntime.sleep(60)", timeout=1)
    record = env.client.wait(job.id, timeout=30)
    assert record.status == JobStatus.TIMEOUT
    group = int(env.wait_for_remote_file(f"{record.remote_dir}/state/pid"))  # run.sh's group
    assert wait_until(lambda: not group_alive(group))


def test_concurrent_submits_share_one_connection(env):
    handles, errors = [], []

    def one(i):
        try:
            handles.append(submit(env, f"y = {i} * {i}", outputs=("y",), namespace={}))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    results = sorted(h.wait(timeout=60).fetch()["y"] for h in handles)
    assert results == sorted(i * i for i in range(10))


def test_git_source_is_cloned_at_the_ref_and_importable(env, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "mylib.py").write_text("VERSION = 'v1'\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    subprocess.run([*git, "tag", "v1"], check=True)
    (repo / "mylib.py").write_text("VERSION = 'v2'\n")
    subprocess.run([*git, "commit", "-qam", "v2"], check=True)
    job = submit(
        env,
        "import mylib\nversion = mylib.VERSION",
        git=GitSource.parse(f"file://{repo}@v1"),
        outputs=("version",),
    )
    job.wait(timeout=60)
    assert job.fetch() == {"version": "v1"}


def test_interpreter_choice_python_and_venv(env):
    venv = Path(sys.prefix)
    by_venv = submit(env, "import sys\nexe = sys.executable", venv=str(venv), outputs=("exe",))
    by_path = submit(env, "import sys\nexe = sys.prefix", python=sys.executable, outputs=("exe",))
    assert by_venv.wait(timeout=60).fetch()["exe"] == str(venv / "bin" / "python")
    assert by_path.wait(timeout=60).fetch()["exe"] == sys.prefix
    missing = submit(env, "pass", venv="/nonexistent/venv")
    record = env.client.wait(missing.id, timeout=60)
    assert record.status == JobStatus.FAILED
    assert "/nonexistent/venv/bin/python" in missing.logs()
