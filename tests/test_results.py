"""Results collection: the verified, resumable local results store and job.load/files/outputs."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from harness.clients import metric_rows

from gpu_magic import Client, GPUJobRequest, JobStatus, RemoteJobError
from gpu_magic.errors import TransferError
from gpu_magic.results import LocalResults, collect
from gpu_magic.results.download import download
from gpu_magic.results.plan import unsafe
from gpu_magic.transport import LocalTransport
from gpu_magic.transport.base import RemoteEntry
from gpu_magic.ui.results import ResultsSection

pytestmark = pytest.mark.timeout(90)

WRITE_OUTPUTS = """
import json, os
import numpy as np
os.makedirs('../outputs/ckpt', exist_ok=True)
np.save('../outputs/model.npy', np.arange(12.0).reshape(3, 4))
open('../outputs/plot.png', 'wb').write(b'\\x89PNG fake')
open('../outputs/ckpt/step1.pt', 'wb').write(b'checkpoint 1')
open('../outputs/ckpt/big_step2.pt', 'wb').write(os.urandom(1 << 16))
json.dump({'lr': 0.1}, open('../outputs/config.json', 'w'))
for step in (1, 2, 3):
    print(f'step {step} loss={1 / step}', flush=True)
y = 42
"""


def submit(env, code, **fields):
    request = GPUJobRequest.create(code=code, cluster=env.cluster_name, **fields)
    job = env.client.submit(request, env.namespace, cwd=env.cwd)
    assert job.wait(timeout=60).status == JobStatus.COMPLETED, job.logs()
    return job


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_model_file_round_trip(env):
    job = submit(env, WRITE_OUTPUTS, outputs=("y",))
    files = {f["path"]: f for f in job.files()}
    assert files["outputs/model.npy"]["kind"] == "model"
    assert files["outputs/plot.png"]["kind"] == "plot"
    assert files["outputs/ckpt/step1.pt"]["kind"] == "checkpoint"
    assert files["outputs/y.pkl"]["kind"] == "variable"
    assert files["output.log"]["kind"] == "log"
    np.testing.assert_array_equal(job.load("model.npy"), np.arange(12.0).reshape(3, 4))
    assert job.load("outputs/config.json") == {"lr": 0.1}
    assert job.load("plot.png") == job.path("plot.png")  # no loader: the local path
    assert job.outputs["y"] == 42
    folder = env.client.results.local.folder(job.id)
    for entry in files.values():  # every copy is verified and nothing partial is visible
        assert entry["fetched"]
        assert sha(folder / entry["path"]) == entry["sha256"]
    assert not any((folder / ".partial").rglob("*.*"))
    assert "step 3 loss" in job.logs()


def test_the_parsed_metric_series_lands_in_the_store(env):
    job = submit(env, WRITE_OUTPUTS, outputs=("y",))
    entry = next(f for f in job.files() if f["path"] == "parsed_metrics.csv")
    assert entry["kind"] == "metrics" and entry["fetched"]
    csv_file = env.client.results.local.folder(job.id) / "parsed_metrics.csv"
    assert sha(csv_file) == entry["sha256"] and csv_file.stat().st_size == entry["size"]
    lines = csv_file.read_text().splitlines()
    assert lines[0] == "step,loss"
    assert [tuple(map(float, line.split(","))) for line in lines[1:]] == [
        (1.0, 1.0),
        (2.0, 0.5),
        (3.0, 1 / 3),
    ]


def test_a_followed_jobs_log_is_not_parsed_again_for_its_series(process_env, monkeypatch):
    """The monitor's feed that read the whole log gives the series; a client that never
    followed the job parses the collected log, and both write the same file."""
    from gpu_magic import results_service

    env = process_env
    request = GPUJobRequest.create(code=WRITE_OUTPUTS, cluster=env.cluster_name, outputs=("y",))
    job = env.client.submit(request, env.namespace, cwd=env.cwd)
    feed = env.client.monitor.feed(job.id)  # followed, as a panel follows it
    assert job.wait(timeout=60).status == JobStatus.COMPLETED
    deadline = time.monotonic() + 30
    while not feed.done:
        assert time.monotonic() < deadline, "the monitor never read the whole log"
        time.sleep(0.05)
    rebuilt = []
    real = results_service.JobFeed
    monkeypatch.setattr(results_service, "JobFeed", lambda j: rebuilt.append(j.id) or real(j))
    csv_file = env.client.results.local.folder(job.id) / "parsed_metrics.csv"
    env.client.results.collect(job.id, again=True)
    followed = csv_file.read_text()
    assert rebuilt == [] and followed.splitlines()[0] == "step,loss"
    other = Client(env.client.settings)  # a new kernel: it never followed the job
    try:
        other.results.collect(job.id, again=True)
    finally:
        other.close()
    assert rebuilt == [job.id] and csv_file.read_text() == followed


RELATIVE_PATHS = """
import os
import numpy as np
from helper import SCALE
os.makedirs('outputs/deep', exist_ok=True)
np.save('outputs/model.npy', np.arange(6.0) * SCALE)
open('outputs/deep/notes.txt', 'w').write('deep')
resumed = open('checkpoints/resume.ckpt').read()
open('checkpoints/last.ckpt', 'w').write('step 9')
open('scratch.txt', 'w').write('written beside the cell')
os.makedirs('runs/1', exist_ok=True)
open('runs/1/events.out', 'w').write('tensorboard-ish')
"""


@pytest.mark.parametrize("env", ["local", "ssh"], indirect=True)
def test_relative_outputs_and_checkpoints_are_the_jobs_and_nothing_is_left_unsaid(env):
    """The cell runs in code/: its relative outputs/ and checkpoints/ are the job's folders (a
    shipped checkpoints/ file is where the cell looks for it), and what it wrote elsewhere there
    is listed as left on the host, fetched only when asked for; shipped files are not listed."""
    (env.cwd / "helper.py").write_text("SCALE = 3\n")
    (env.cwd / "checkpoints").mkdir()
    (env.cwd / "checkpoints" / "resume.ckpt").write_text("step 4")
    job = submit(env, RELATIVE_PATHS, files=("helper.py", "checkpoints"), outputs=("resumed",))
    assert job.outputs == {"resumed": "step 4"}
    files = {f["path"]: f for f in job.files()}
    np.testing.assert_array_equal(job.load("model.npy"), np.arange(6.0) * 3)
    assert files["outputs/deep/notes.txt"]["fetched"]
    assert files["checkpoints/last.ckpt"]["kind"] == "checkpoint"
    left = {p: f for p, f in files.items() if f["kind"] == "left-on-host"}
    assert set(left) == {"code/scratch.txt", "code/runs/1/events.out"}
    assert not any(f["fetched"] for f in left.values())
    section = ResultsSection(env.client, job.id, background=False)  # the panel's Results
    section.refresh(job.job)
    section.flush()
    try:
        assert "2 written outside outputs/ and left on the host" in section.note.value
        row = section.rows["code/scratch.txt"]
        assert [c.value for c in row.cells][1] == "left-on-host"
        assert row.fetch.layout.display != "none"
        row.fetch.click()  # one click brings it
        section.flush()
    finally:
        section.close()
    assert {f["path"]: f for f in job.files()}["code/scratch.txt"]["fetched"]
    assert job.path("code/scratch.txt").read_text() == "written beside the cell"
    assert not any(p.startswith(("code/main.py", "code/helper", "code/__pycache__")) for p in files)


def test_glob_and_exclude_choose_the_outputs(env):
    job = submit(
        env, WRITE_OUTPUTS, outputs=("y",), outputs_glob=("*.npy", "ckpt/*"), exclude=("*big*",)
    )
    paths = {f["path"] for f in job.files()}
    assert {"outputs/model.npy", "outputs/ckpt/step1.pt", "outputs/y.pkl"} <= paths
    assert {"output.log", "metrics.jsonl"} & paths
    assert not {"outputs/plot.png", "outputs/config.json", "outputs/ckpt/big_step2.pt"} & paths
    assert not (env.client.results.local.folder(job.id) / "outputs/plot.png").exists()


def test_manual_fetch_brings_big_files_only_when_asked(env):
    job = submit(env, WRITE_OUTPUTS, outputs=("y",), fetch="manual")
    files = {f["path"]: f for f in job.files()}
    assert files["outputs/y.pkl"]["fetched"] and files["output.log"]["fetched"]
    assert not files["outputs/model.npy"]["fetched"]
    local = env.client.results.local.folder(job.id) / "outputs/model.npy"
    assert not local.exists()
    np.testing.assert_array_equal(job.load("model.npy"), np.arange(12.0).reshape(3, 4))
    assert local.exists()
    assert {f["path"]: f for f in job.files()}["outputs/model.npy"]["fetched"]


def test_store_survives_a_kernel_restart_with_the_remote_folder_gone(env, tmp_path):
    job = submit(env, WRITE_OUTPUTS, outputs=("y",))
    assert len(job.files()) > 5
    env.transport().check("rm", "-rf", job.job.remote_dir)
    env.client.close()
    client = Client(env.client.settings)  # a new kernel: same data and results dirs
    client.clusters = env.client.clusters
    again = client.handle(job.id)
    assert {f["path"] for f in again.files()} == {f["path"] for f in job.files()}
    np.testing.assert_array_equal(again.load("model.npy"), np.arange(12.0).reshape(3, 4))
    assert again.outputs == {"y": 42}
    assert [r["loss"] for r in metric_rows(again)] == [1.0, 0.5, 1 / 3]
    assert "step 2 loss" in again.logs()
    client.close()


@pytest.mark.parametrize("env", ["local", "ssh"], indirect=True)
def test_checkpoints_are_listed_and_fetched_only_when_loaded(env):
    code = (
        "import os\n"
        "path = os.path.join(os.environ['GPU_MAGIC_CHECKPOINTS'], 'epoch1.pt')\n"
        "open(path, 'wb').write(os.urandom(50_000))\n"
    )
    job = submit(env, code)
    data = env.transport().read_file(f"{job.job.remote_dir}/checkpoints/epoch1.pt")
    entry = {f["path"]: f for f in job.files()}["checkpoints/epoch1.pt"]
    assert entry == {
        "path": "checkpoints/epoch1.pt", "size": 50_000, "sha256": "", "kind": "checkpoint",
        "fetched": False,
    }  # fmt: skip
    local = env.client.results.local.folder(job.id) / "checkpoints/epoch1.pt"
    assert not local.exists()  # listed, not downloaded
    got = env.client.results.load(job.id, "checkpoints/epoch1.pt")
    if importlib.util.find_spec("torch") is None:
        assert got == local  # no torch here: the .pt's local path
    assert local.read_bytes() == data
    entry = {f["path"]: f for f in job.files()}["checkpoints/epoch1.pt"]
    assert entry["fetched"] and entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_symlinks_and_escapes_are_refused(env, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    code = (
        "import os\nos.makedirs('../outputs', exist_ok=True)\n"
        f"os.symlink({str(secret)!r}, '../outputs/escape.txt')\n"
        f"os.symlink({str(tmp_path)!r}, '../outputs/elsewhere')\n"
        "os.symlink('../output.log', '../outputs/log_link')\n"
        "open('../outputs/fine.txt', 'w').write('ok')\n"
    )
    job = submit(env, code)
    manifest = env.client.results.collect(job.id)
    refused = {r["path"]: r["why"] for r in manifest["refused"]}
    assert refused == {
        "outputs/escape.txt": "symlink",
        "outputs/elsewhere": "symlink",
        "outputs/log_link": "symlink",
    }
    paths = {f["path"] for f in job.files()}
    assert "outputs/fine.txt" in paths and not set(refused) & paths
    folder = env.client.results.local.folder(job.id)
    assert not (folder / "outputs/escape.txt").exists()
    assert not (folder / "outputs/elsewhere").exists()


class ForgedListing(LocalTransport):
    """A host that lies in its listing: paths that climb out of the results folder."""

    def __init__(self, entries):
        self.entries = entries

    def list_tree(self, remote, roots):
        return self.entries


def test_dotdot_and_absolute_paths_from_the_host_are_refused(tmp_path):
    evil = ["outputs/../../evil", "/etc/evil", "outputs/./x", "spec.json", "outputs"]
    evil += ["checkpoints", "checkpoints/../../evil", "checkpoints/", "outputsx/y"]
    transport = ForgedListing([RemoteEntry(p, 4, "file") for p in evil])
    request = GPUJobRequest.create(code="pass")
    from gpu_magic.models import GPUJob

    job = GPUJob(id="j1", request=request, cluster="local", remote_dir=str(tmp_path / "remote"))
    store = LocalResults(tmp_path / "results")
    manifest = collect(transport, "python3", job, store)
    assert manifest["files"] == []
    assert {r["path"] for r in manifest["refused"]} == set(evil)
    assert not (tmp_path / "evil").exists()
    assert all(unsafe(p) for p in evil)
    with pytest.raises(TransferError):
        store.path("j1", "outputs/../../evil")


def test_an_interrupted_download_resumes_verified(ssh_env, tmp_path):
    data = os.urandom(24 << 20)
    remote = ssh_env.remote_dir / "model.bin"
    remote.write_bytes(data)
    real = ssh_env.transport()
    offsets, killed = [], []

    class Spy(LocalTransport):
        def get_file(self, remote, local, *, offset=0, progress=None, digest=None):
            offsets.append(offset)
            return real.get_file(remote, local, offset=offset, progress=progress, digest=digest)

    def kill_midway(n, moved=[0]):  # noqa: B006 - a counter shared across calls
        moved[0] += n
        if moved[0] >= 8 << 20 and not killed:
            killed.append(ssh_env.server.kill_connections())

    dest, partial = tmp_path / "got/model.bin", tmp_path / "got/.partial/model.bin"
    digest = hashlib.sha256(data).hexdigest()
    download(Spy(), str(remote), dest, partial, len(data), digest, progress=kill_midway)
    assert killed and offsets[0] == 0 and len(offsets) >= 2 and offsets[1] >= 8 << 20
    assert dest.read_bytes() == data
    assert sha(dest) == digest and not partial.exists()


def test_a_corrupt_download_is_never_visible(tmp_path):
    remote = tmp_path / "remote.bin"
    remote.write_bytes(b"real bytes")
    dest, partial = tmp_path / "got/remote.bin", tmp_path / "got/.partial/remote.bin"
    with pytest.raises(TransferError, match="sha256"):
        download(LocalTransport(), str(remote), dest, partial, 10, "0" * 64)
    assert not dest.exists() and not partial.exists()


def test_a_stale_partial_longer_than_the_file_starts_over(tmp_path):
    remote = tmp_path / "remote.bin"
    remote.write_bytes(b"abc")
    dest, partial = tmp_path / "d/remote.bin", tmp_path / "d/.partial/remote.bin"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"something much longer")
    download(LocalTransport(), str(remote), dest, partial, 3, hashlib.sha256(b"abc").hexdigest())
    assert dest.read_bytes() == b"abc"


def test_results_dir_setting(tmp_path):
    from gpu_magic import Settings

    assert Settings(gpu_magic_data_dir=tmp_path).results_path == tmp_path / "results"
    chosen = Settings(gpu_magic_data_dir=tmp_path, gpu_magic_results_dir=tmp_path / "r")
    assert chosen.results_path == tmp_path / "r"
    shutil.rmtree(tmp_path)


def test_a_failed_jobs_traceback_outlives_its_remote_folder(env):
    request = GPUJobRequest.create(
        code="def train():\n    raise ValueError('diverged at step 3')\n\ntrain()",
        cluster=env.cluster_name,
        outputs=("y",),
    )
    job = env.client.submit(request, {}, cwd=env.cwd)
    assert job.wait(timeout=60).status == JobStatus.FAILED
    manifest = env.client.results.collect(job.id)
    kinds = {f["path"]: f["kind"] for f in manifest["files"]}
    assert kinds["state/error.json"] == "error"
    env.transport().check("rm", "-rf", job.job.remote_dir)
    env.client.close()
    client = Client(env.client.settings)  # a new kernel, the host folder gone
    client.clusters = env.client.clusters
    with pytest.raises(RemoteJobError) as info:
        client.handle(job.id).fetch()
    assert info.value.exc_type == "ValueError"
    assert "diverged at step 3" in str(info.value)
    assert "in train" in info.value.remote_traceback
    client.close()


def test_a_lightning_checkpoint_loads_as_torch_files_do(tmp_path):
    """``job.load("checkpoints/last.ckpt")``: Lightning's checkpoints are ``torch.save`` dicts."""
    from gpu_magic.results.loaders import LOADERS, load

    assert LOADERS[".ckpt"] is LOADERS[".pt"]
    torch = pytest.importorskip("torch", reason="torch is not in the test venv (a GB-sized wheel)")
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, path)
    loaded = load(path)
    assert loaded["epoch"] == 3 and loaded["state_dict"]["w"].tolist() == [1.0, 1.0]
