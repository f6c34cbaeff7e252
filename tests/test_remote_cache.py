"""The host's content-addressed file cache, on the local host and over the real sshd: a
resubmitted cell with unchanged files sends none of their bytes (the audit log counts what
went), an edited file is sent alone, unchanged local files are not read again to hash them,
variables go through the cache too, our runtime is byte-compiled once per host, and a cleanup
evicts only what no job folder links to."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from gpu_magic import GPUJobRequest, JobStatus
from gpu_magic.clusters import CleanupRules
from gpu_magic.housekeeping import cleanup
from gpu_magic.jobdir import CACHE

pytestmark = pytest.mark.timeout(180)
BIG = 3 << 20  # over LARGE_FILE: sent by SFTP, not in the tar
READ_BACK = "import hashlib\nprint(hashlib.sha256(open('data/big.bin','rb').read()).hexdigest())"


def _dataset(cwd: Path) -> Path:
    data = cwd / "data"
    data.mkdir(exist_ok=True)
    (data / "big.bin").write_bytes(os.urandom(BIG))
    for i in range(20):
        (data / f"part{i}.txt").write_text(f"row {i}\n" * 100)
    return data


def _submit(env, code=READ_BACK, lines=None, **fields):
    request = GPUJobRequest.create(code=code, cluster=env.cluster_name, files=("data",), **fields)
    handle = env.client.submit(
        request, env.namespace, cwd=env.cwd, say=lines.append if lines is not None else None
    )
    job = handle.wait(120).job
    assert job.status == JobStatus.COMPLETED, job.reason
    return job


def _sent(client, job_id) -> int:
    """File bytes that went to the host for ``job_id``: SFTP uploads and tar streams."""
    records = client.audit.records(job_id)
    return sum(r.get("bytes", 0) for r in records if r["event"] == "upload") + sum(
        r.get("stdin_bytes", 0) for r in records if r.get("direction") == "up"
    )


def test_a_resubmitted_cell_sends_none_of_its_unchanged_files(process_env):
    env, client = process_env, process_env.client
    data = _dataset(env.cwd)
    first = _submit(env)
    lines: list[str] = []
    second = _submit(env, lines=lines)
    assert _sent(client, first.id) > BIG
    assert _sent(client, second.id) < 64 * 1024  # spec.json, run.sh and the manifests only
    assert not [r for r in client.audit.records(second.id) if r["event"] == "upload"]
    assert "already on the host" in lines[0]
    expected = __import__("hashlib").sha256((data / "big.bin").read_bytes()).hexdigest()
    assert client.logs(second.id).strip() == expected  # the job read the right bytes
    a, b = (Path(j.remote_dir) / "code" / "data" / "big.bin" for j in (first, second))
    assert a.stat().st_ino == b.stat().st_ino  # one inode, linked from the cache
    assert a.stat().st_mode & 0o777 == 0o400  # read-only: no job can change another's input


def test_an_edited_file_is_sent_alone(process_env):
    env, client = process_env, process_env.client
    data = _dataset(env.cwd)
    _submit(env)
    (data / "part3.txt").write_text("edited\n")
    job = _submit(env, code="print(open('data/part3.txt').read())")
    assert client.logs(job.id) == "edited\n\n"
    assert _sent(client, job.id) < 64 * 1024  # the edited small file, not the big one


def test_unchanged_local_files_are_not_read_again_to_hash_them(process_env):
    env, client = process_env, process_env.client
    data = _dataset(env.cwd)
    _submit(env)
    hashed = client.digests.hashed
    _submit(env)
    assert client.digests.hashed == hashed  # every file answered from the table
    os.utime(data / "big.bin")  # touched: its mtime says it may have changed
    _submit(env)
    assert client.digests.hashed == hashed + 1


def test_a_variable_shipped_once_serves_every_cell_that_sends_it(process_env):
    env, client = process_env, process_env.client
    _dataset(env.cwd)
    env.namespace["table"] = os.urandom(BIG)  # pickled: bigger than LARGE_FILE
    code = "print(len(table))"
    first = _submit(env, code=code, inputs=("table",))
    second = _submit(env, code=code, inputs=("table",))
    assert client.logs(second.id).strip() == str(BIG)
    assert _sent(client, first.id) > 2 * BIG - 1024  # big.bin and the variable
    assert _sent(client, second.id) < 64 * 1024


def test_cleanup_evicts_only_what_no_job_folder_links_to(process_env):
    env, client = process_env, process_env.client
    data = _dataset(env.cwd)
    old = _submit(env)
    (data / "big.bin").write_bytes(os.urandom(BIG))  # the newer job ships other bytes
    new = _submit(env)
    root = Path(old.remote_dir).parent / CACHE
    cached = {p.name for p in root.rglob("*") if p.is_file()}
    request = cleanup.Request(sides=(cleanup.REMOTE,), rules=CleanupRules(keep_last=1), force=True)
    done = client.cleanup(request)
    assert not Path(old.remote_dir).exists() and Path(new.remote_dir).exists()
    left = {p.name for p in root.rglob("*") if p.is_file()}
    new_big = Path(new.remote_dir) / "code" / "data" / "big.bin"
    assert new_big.stat().st_nlink == 2 and any(
        (root / h[:2] / h).exists() and (root / h[:2] / h).stat().st_ino == new_big.stat().st_ino
        for h in left
    )  # what the live job links to stays
    files, _ = done.evicted[env.cluster_name]
    assert files == 1 and len(cached - left) == 1  # only the old job's big.bin went


IMPORT_VERBOSELY = """
import os, subprocess, sys
quiet = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
done = subprocess.run([sys.executable, "-v", "-c", "import gpu_magic.remote.layout"],
                      env=quiet, capture_output=True, text=True, check=True)
print([line for line in done.stderr.splitlines() if "layout" in line and "code object" in line])
"""


def test_our_runtime_is_compiled_once_per_host_and_jobs_import_it_compiled(process_env):
    env, client = process_env, process_env.client
    _dataset(env.cwd)
    jobs = [_submit(env, code=IMPORT_VERBOSELY) for _ in range(2)]
    layout = [Path(j.remote_dir) / "lib" / "gpu_magic" / "remote" / "layout.py" for j in jobs]
    compiled = [Path(importlib.util.cache_from_source(str(source))) for source in layout]
    assert compiled[0].stat().st_ino == compiled[1].stat().st_ino  # compiled once, linked twice
    header = compiled[1].read_bytes()[:16]
    assert int.from_bytes(header[4:8], "little") == 0b11  # checked hash: any copy of the source
    assert header[8:] == importlib.util.source_hash(layout[1].read_bytes())
    loaded = client.logs(jobs[1].id)
    assert f"code object from '{compiled[1]}'" in loaded  # the job's Python took it as it is
