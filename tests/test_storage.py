"""%gpu_storage numbers against the real sizes, unreachable hosts, and the magics in a kernel."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from harness.kernel import Kernel, kernel_env

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.clusters import make_cluster
from gpu_magic.housekeeping import report

pytestmark = pytest.mark.timeout(120)

WRITE = """
import os
os.makedirs('../outputs/sub', exist_ok=True)
open('../outputs/blob.bin', 'wb').write(os.urandom(70_000))
open('../outputs/sub/small.txt', 'w').write('x' * 1234)
os.symlink('/usr', '../outputs/usr_link')  # never followed by the size walk
print('done', flush=True)
"""


def submit(client: Client, cluster: str, cwd: Path, code: str = WRITE):
    job = client.submit(GPUJobRequest.create(code=code, cluster=cluster), {}, cwd=cwd)
    assert job.wait(timeout=60).status == JobStatus.COMPLETED, job.logs()
    return job


def remote_bytes(transport, folder: str) -> int:
    """Regular files under ``folder``, measured on the host by find (links not followed)."""
    out = transport.check("find", folder, "-type", "f", "-printf", "%s\\n").text
    return sum(int(n) for n in out.split())


def local_bytes(client: Client, job_id: str) -> int:
    store = client.results.local
    total = sum(
        os.lstat(os.path.join(d, f)).st_size
        for d, _, files in os.walk(store.folder(job_id))
        for f in files
        if not os.path.islink(os.path.join(d, f))
    )
    return total + sum(p.stat().st_size for p in store.root.glob(f"{job_id}.tar.*"))


def test_storage_numbers_equal_the_real_sizes(env):
    jobs = [submit(env.client, env.cluster_name, env.cwd) for _ in range(2)]
    jobs[0].files()
    jobs[1].archive()
    measured = env.client.storage_usage()
    rows = {u.job.id: u for u in measured.jobs}
    for job in jobs:
        assert rows[job.id].remote == remote_bytes(env.transport(), job.job.remote_dir)
        assert rows[job.id].local == local_bytes(env.client, job.id)
        assert rows[job.id].fetched and rows[job.id].remote_note == ""
    assert [rows[j.id].archived for j in jobs] == [False, True]
    assert measured.total("remote") == sum(rows[j.id].remote for j in jobs)
    assert measured.total("local") == sum(rows[j.id].local for j in jobs)
    text = report.usage_table(measured, exact=True)
    for job in jobs:
        row = rows[job.id]
        assert re.search(rf"{job.id}\s+\S+\s+completed\s+{row.remote}\s+{row.local}\s", text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_host_does_not_fail_the_table(ssh_env, tmp_path):
    settings = ssh_env.settings.model_copy(update={"gpu_cluster_base_path": str(tmp_path / "j")})
    client = Client(settings)
    client.clusters.add(ssh_env.cluster)
    remote_job = submit(client, "ssh", tmp_path)
    local_job = submit(client, "local", tmp_path)
    client.close()
    down = make_cluster(**{**ssh_env.cluster.model_dump(), "port": free_port()})
    client = Client(settings)  # a new kernel, and the host has gone away
    client.clusters.add(down)
    measured = client.storage_usage()
    rows = {u.job.id: u for u in measured.jobs}
    assert rows[remote_job.id].remote is None and rows[remote_job.id].remote_note == "unreachable"
    assert rows[local_job.id].remote == remote_bytes(client.hosts.of(local_job.job).transport,
                                                     local_job.job.remote_dir)  # fmt: skip
    text = report.usage_table(measured)
    assert re.search(rf"{remote_job.id}\s+ssh\s+completed\s+unreachable", text)
    assert "ssh: unreachable (" in text
    client.close()


def test_cleanup_storage_and_archive_magics_in_a_real_kernel(ssh_env, tmp_path):
    client = Client(ssh_env.settings)
    client.clusters.add(ssh_env.cluster)
    old, new = (submit(client, "ssh", tmp_path) for _ in range(2))
    old.files(), new.files()
    old_dir, new_dir = Path(old.job.remote_dir), Path(new.job.remote_dir)
    sizes = {
        j.id: remote_bytes(client.hosts.of(j.job).transport, j.job.remote_dir) for j in (old, new)
    }
    client.close()
    kernel = Kernel(kernel_env(ssh_env.settings), str(tmp_path))
    try:
        assert kernel.run("%load_ext gpu_magic").error is None
        for magic in ("gpu_archive", "gpu_storage", "gpu_cleanup"):
            shown = kernel.run(f"%{magic} --help")
            assert shown.error is None and f"%{magic}" in shown.stdout, shown.text
        table = kernel.run("%gpu_storage --bytes")
        assert table.error is None, table.text
        assert re.search(rf"{old.id}\s+ssh\s+completed\s+{sizes[old.id]}\s", table.stdout)
        dry = kernel.run("%gpu_cleanup --remote --keep-last 1 --dry-run")
        assert dry.error is None, dry.text
        assert "cleanup dry run; nothing was deleted" in dry.stdout
        assert re.search(
            rf"would delete\s+remote\s+ssh\s+{old.id}\s+\S+ kB\s+keep-last 1", dry.stdout
        )
        assert new.id not in dry.stdout and "1 folder(s)" in dry.stdout
        assert old_dir.is_dir() and new_dir.is_dir()
        assert "No deletions recorded yet." in kernel.run("%gpu_cleanup --history").stdout
        real = kernel.run("%gpu_cleanup --remote --keep-last 1")
        assert real.error is None, real.text
        assert re.search(rf"deleted\s+remote\s+ssh\s+{old.id}\s+\S+ kB\s+keep-last 1", real.stdout)
        assert "1 folder(s)" in real.stdout and "deleted" in real.stdout.splitlines()[-1]
        assert not old_dir.exists() and new_dir.is_dir()
        history = kernel.run("%gpu_cleanup --history --bytes").stdout
        assert re.search(
            rf"{old.id}\s+ssh\s+remote\s+{old_dir}\s+{sizes[old.id]}\s+keep-last 1\s+no", history
        )
        archived = kernel.run(f"%gpu_archive {old.id}")
        assert archived.error is None and f"job {old.id} archived" in archived.stdout
        assert kernel.run(f"%gpu_logs {old.id}").stdout == "done\n"  # from the archive
        packed = kernel.run("%gpu_cleanup --history").stdout
        rule = rf"%gpu_archive: packed into {old.id}\.tar\.zst"
        assert re.search(rf"{old.id}\s+ssh\s+local\s+\S+\s+\S+ kB\s+{rule}\s+no", packed), packed
        after = kernel.run("%gpu_storage").stdout
        assert re.search(rf"{old.id}\s+ssh\s+completed\s+deleted\s+\S+ kB\s+yes\s+yes", after)
        bad = kernel.run("%gpu_cleanup --remote --local")
        assert (
            bad.error
            == "UsageError: --remote and --local exclude each other (give neither for both)"
        )
        typo = kernel.run("%gpu_cleanup --cluster nowhere --keep-last 0")
        assert typo.error.startswith("UsageError: unknown cluster 'nowhere'")
        none = kernel.run("%gpu_cleanup")
        assert "no cleanup rules" in none.stdout
    finally:
        kernel.shutdown()
