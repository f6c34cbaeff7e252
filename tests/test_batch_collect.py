"""Collecting many ended jobs of one host costs the round trips of one: ONE listing of the
folder that holds them and ONE tar command for all their small files (and the digests of their
big ones), on the local host, over the real sshd and on the real Slurm. Jobs that end while a
collection of their cluster runs wait for it and then go together; one job stopped, or one
folder that leads into another, holds nobody else back and leaks nothing."""

from __future__ import annotations

import io
import random
import subprocess
import sys
import tarfile
import threading

import pytest
from harness.clients import local_settings
from harness.spy import DelegatingTransport
from test_download import BIG, Spy, make_job, sha, visible

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.errors import TransferCancelled
from gpu_magic.results.collector import collect_many
from gpu_magic.results.local import LocalResults
from gpu_magic.results.plan import LISTING
from gpu_magic.results.progress import TransferProgress
from gpu_magic.transport import LocalTransport

pytestmark = pytest.mark.timeout(240)


def job_files(n: int) -> dict[str, bytes]:
    """Job ``n``'s files (the same bytes each call)."""
    noise = random.Random(n).randbytes
    files = {
        "output.log": f"job {n} step 1\n".encode(),
        "metrics.jsonl": b'{"loss": %d}\n' % n,
        f"outputs/note {n}.txt": noise(100 + n),
        "outputs/deep/same name.bin": noise(3000 + n),  # one name in every job
    }
    if n == 0:
        files["outputs/model.bin"] = noise(BIG + 777)  # over SFTP, its digest in the tar
    return files


def jobs_under(folder, count: int):
    made = {}
    for n in range(count):
        job = make_job(folder / f"job{n}", job_files(n)).model_copy(update={"id": f"job{n}"})
        made[job.id] = job
    return made


@pytest.fixture(params=["local", "ssh"])
def host(request):
    if request.param == "local":
        folder = request.getfixturevalue("tmp_path") / "host"
        folder.mkdir()
        return LocalTransport(), folder
    ssh_env = request.getfixturevalue("ssh_env")
    return ssh_env.transport(), ssh_env.remote_dir


def test_jobs_of_one_folder_come_in_one_listing_and_one_tar_stream(host, tmp_path):
    transport, remote = host
    jobs = jobs_under(remote, 4)
    spy, store = Spy(transport), LocalResults(tmp_path / "results")
    progress = {job_id: TransferProgress() for job_id in jobs}
    outcomes = collect_many(spy, sys.executable, list(jobs.values()), store, progress)
    assert spy.lists == [str(remote)]  # the folder that holds them, once
    assert len(spy.streams) == 1 and spy.commands == []  # no sha256 command for the big file
    assert spy.gets == [f"{jobs['job0'].remote_dir}/outputs/model.bin"]
    for n, (job_id, manifest) in enumerate(outcomes.items()):
        assert manifest["complete"], manifest
        files = job_files(n)
        assert visible(store.folder(job_id)) == files  # each job's own bytes, none mixed up
        assert {e["path"]: e["sha256"] for e in manifest["files"]} == {
            rel: sha(data) for rel, data in files.items()
        }
        snap = progress[job_id].snapshot()
        assert (snap.done, snap.files_done) == (sum(map(len, files.values())), len(files))


def test_a_stopped_job_leaves_the_others_to_finish(tmp_path):
    jobs = jobs_under(tmp_path / "host", 3)
    progress = {job_id: TransferProgress() for job_id in jobs}

    class StopsJob1(Spy):
        def stream_from(self, command, size_hint=None):
            progress["job1"].cancel()  # the user's Stop, as the stream starts
            return super().stream_from(command, size_hint)

    spy, store = StopsJob1(LocalTransport()), LocalResults(tmp_path / "results")
    outcomes = collect_many(spy, sys.executable, list(jobs.values()), store, progress)
    assert isinstance(outcomes["job1"], TransferCancelled)
    assert not store.manifest("job1")["complete"]
    assert len(spy.streams) == 2  # again, without the stopped job
    assert "job1/" not in spy.streams[1] and "job2/" in spy.streams[1]
    for job_id in ("job0", "job2"):
        assert outcomes[job_id]["complete"]
        assert visible(store.folder(job_id)) == job_files(int(job_id[-1]))
    assert progress["job1"].snapshot().finished is False  # the service ends it, with the error


def test_the_host_leaves_out_a_file_reached_through_another_jobs_folder(tmp_path):
    """A job's ``outputs/`` symlinked into another job's: listed as a link it is never asked
    for; asked anyway (a folder replaced between listing and tar), the host's script leaves
    it out, since each name must stay inside the folder its first part names."""
    (tmp_path / "job1/outputs").mkdir(parents=True)
    (tmp_path / "job1/outputs/secret.txt").write_text("job1's")
    (tmp_path / "job0").mkdir()
    (tmp_path / "job0/outputs").symlink_to(tmp_path / "job1/outputs")
    (tmp_path / "job0/output.log").write_text("fine\n")
    argv = [sys.executable, "-c", LISTING.source, "--tar", str(tmp_path)]
    done = subprocess.run(
        [*argv, "job0/outputs/secret.txt", "job0/output.log", "job1/outputs/secret.txt"],
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        assert tar.getnames() == ["job0/output.log", "job1/outputs/secret.txt"]
    assert b"left out job0/outputs/secret.txt" in done.stderr


# -- through the Client: real jobs, the audit log counting what reached the host ------------

CODE = """
import os
os.makedirs('outputs', exist_ok=True)
open('outputs/note.txt', 'w').write(f'job {n}')
y = os.urandom(2 * 2**20) if n == 0 else n * 2
"""


def finished_jobs(client: Client, cluster: str, count: int) -> list:
    """``count`` completed jobs that were not collected (``--fetch manual``)."""
    handles = []
    for n in range(count):
        request = GPUJobRequest.create(
            code=CODE, cluster=cluster, inputs=("n",), outputs=("y",), fetch="manual"
        )
        handles.append(client.submit(request, {"n": n}))
    for handle in handles:
        assert handle.wait(180).job.status == JobStatus.COMPLETED
    return handles


def test_five_ended_jobs_are_collected_with_one_command(env):
    client = env.client
    handles = finished_jobs(client, env.cluster_name, 5)
    before = client.audit.records()[-1]["seq"]
    outcomes = client.results.collect_many([h.id for h in handles])
    seen = [r for r in client.audit.records() if r["seq"] > before]
    assert len([r for r in seen if r["event"] == "list"]) == 1
    assert len([r for r in seen if r["event"] == "command"]) == 1  # the tar; no sha256 asked
    assert all(outcomes[h.id]["complete"] for h in handles)
    values = [h.fetch()["y"] for h in handles]
    assert len(values[0]) == 2 * 2**20 and values[1:] == [2, 4, 6, 8]


@pytest.mark.processes
def test_jobs_that_end_during_a_collection_are_collected_together_after_it(tmp_path):
    """The first ended job's collection is held at its listing; three more end meanwhile:
    one collection takes all three once the first is done."""
    entered, release = threading.Event(), threading.Event()

    class HeldListing(DelegatingTransport):
        def __init__(self, real):
            super().__init__(real)
            self.listed: list[list[str]] = []

        def list_tree(self, remote, roots):
            roots = list(roots)
            self.listed.append(sorted({r.split("/")[0] for r in roots}))
            entered.set()
            assert release.wait(60)
            return super().list_tree(remote, roots)

    settings = local_settings(tmp_path)
    first = Client(settings)
    handles = finished_jobs(first, "local", 4)
    first.close()
    held = HeldListing(LocalTransport())
    client = Client(settings, transports={"local": held})
    fresh: list[str] = []
    client.results.on_collected(fresh.append)
    try:
        client.results.collect_in_background(handles[0].id)
        assert entered.wait(60)
        for handle in handles[1:]:
            client.results.collect_in_background(handle.id)
        release.set()
    finally:
        client.close()  # joins the collection thread
    folders = [h.job.remote_dir.rstrip("/").rsplit("/", 1)[1] for h in handles]
    assert len(held.listed) == 2 and held.listed[1] == sorted(folders[1:])
    assert fresh == ["local", "local"]  # the cleanup listener: once per collection
    for handle in handles:
        assert client.results.local.manifest(handle.id)["complete"]
    assert client.results.errors == {}
