"""Archives of job results: packed verified, read back on demand, hostile archives refused."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import zstandard
from harness.clients import local_settings, metric_rows

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.errors import JobStateError, TransferError
from gpu_magic.results.local import LOCKS

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)

WRITE = """
import os
import numpy as np
os.makedirs('../outputs/ckpt', exist_ok=True)
np.save('../outputs/model.npy', np.arange(20.0).reshape(4, 5))
open('../outputs/ckpt/blob.bin', 'wb').write(os.urandom(300_000))
for step in (1, 2, 3):
    print(f'step {step} loss={1 / step}', flush=True)
y = 42
"""


def submit(client: Client, cluster: str, cwd: Path, code: str = WRITE, **fields):
    request = GPUJobRequest.create(code=code, cluster=cluster, outputs=("y",), **fields)
    job = client.submit(request, {}, cwd=cwd)
    assert job.wait(timeout=60).status == JobStatus.COMPLETED, job.logs()
    return job


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def members(archive: Path) -> dict[str, bytes]:
    data = zstandard.ZstdDecompressor().decompressobj().decompress(archive.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


@pytest.fixture
def local(tmp_path):
    client = Client(local_settings(tmp_path))
    yield client
    client.close()


def test_load_from_an_archive_after_a_kernel_restart(env):
    job = submit(env.client, env.cluster_name, env.cwd)
    listed = job.files()
    store = env.client.results.local
    before = {e["path"]: sha(store.folder(job.id) / e["path"]) for e in listed}
    archive = job.archive()
    assert archive == store.root / f"{job.id}.tar.zst"
    assert [p.name for p in store.folder(job.id).iterdir()] == ["manifest.json"]
    packed = members(archive)
    assert next(iter(packed)) == "manifest.json"
    assert set(packed) == {"manifest.json", *before}
    assert json.loads(packed["manifest.json"])["files"] == listed
    assert {n: hashlib.sha256(b).hexdigest() for n, b in packed.items() if n in before} == before
    env.transport().check("rm", "-rf", job.job.remote_dir)  # reads can only use the archive
    env.client.close()
    client = Client(env.client.settings)  # a new kernel
    client.clusters = env.client.clusters
    again = client.handle(job.id)
    assert again.files() == listed  # the manifest beside the archive
    np.testing.assert_array_equal(again.load("model.npy"), np.arange(20.0).reshape(4, 5))
    blob = again.path("ckpt/blob.bin")
    assert blob == store.folder(job.id) / "outputs/ckpt/blob.bin"  # extracted on demand
    assert sha(blob) == before["outputs/ckpt/blob.bin"]
    assert again.outputs == {"y": 42}
    assert [r["loss"] for r in metric_rows(again)] == [1.0, 0.5, 1 / 3]
    assert "step 2 loss=0.5" in again.logs()
    client.close()


def test_archiving_again_drops_only_the_extraction_cache(local, tmp_path):
    job = submit(local, "local", tmp_path)
    folder = local.results.local.folder(job.id)
    loose = sum(e["size"] for e in job.files() if e["fetched"])
    manifest_before = (folder / "manifest.json").stat().st_size
    archive = job.archive()
    stamp = archive.stat().st_mtime_ns
    job.load("model.npy")
    assert (folder / "outputs/model.npy").exists()
    assert job.archive() == archive and archive.stat().st_mtime_ns == stamp
    assert [p.name for p in folder.iterdir()] == ["manifest.json"]
    [packed] = local.store.deletions()  # the first archive removed loose files; the cache is not
    assert (packed.job_id, packed.location, packed.path) == (job.id, "local", str(folder))
    assert packed.rule == f"%gpu_archive: packed into {archive.name}"
    manifest_after = (folder / "manifest.json").stat().st_size  # now naming the archive
    assert packed.bytes == loose + manifest_before - manifest_after


def test_gzip_when_zstandard_is_missing(local, tmp_path, monkeypatch):
    job = submit(local, "local", tmp_path)
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard now fails
    archive = job.archive()
    assert archive.name == f"{job.id}.tar.gz"
    with tarfile.open(archive, "r:gz") as tar:
        assert "outputs/model.npy" in tar.getnames()
    np.testing.assert_array_equal(job.load("model.npy"), np.arange(20.0).reshape(4, 5))


def test_an_active_job_is_not_archived(local, tmp_path):
    request = GPUJobRequest.create(code="import time\ntime.sleep(60)", cluster="local")
    job = local.submit(request, {}, cwd=tmp_path)
    with pytest.raises(JobStateError, match="results come when it ends"):
        job.archive()
    assert not list(local.results.local.root.glob("*.tar.*"))
    job.cancel()


def test_a_file_that_changed_since_collection_stops_the_archive(local, tmp_path):
    job = submit(local, "local", tmp_path)
    job.files()
    folder = local.results.local.folder(job.id)
    (folder / "outputs/model.npy").write_bytes(b"bit rot")
    with pytest.raises(TransferError, match="sha256 mismatch.*outputs/model.npy"):
        job.archive()
    assert not list(local.results.local.root.glob(f"{job.id}*.tar.*"))  # no archive, no temp
    assert [p.name for p in local.results.local.root.glob(".*")] == [LOCKS]
    assert (folder / "outputs/ckpt/blob.bin").exists()  # nothing removed
    assert "archive" not in local.results.local.manifest(job.id)


def hostile(archive: Path, entries: list[tuple[tarfile.TarInfo, bytes]], keep: dict) -> None:
    """Rewrite ``archive`` with ``entries`` first, then the genuine members in ``keep``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in entries + [(_info(n, len(d)), d) for n, d in keep.items()]:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    archive.write_bytes(zstandard.ZstdCompressor().compress(buffer.getvalue()))


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = ""):
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, kind, link
    return info


SECRET = "/etc/hostname"
ATTACKS = {
    "dotdot": (lambda root: [(_info("../../evil.txt", 4), b"evil")], "../../evil.txt"),
    "absolute": (lambda root: [(_info(str(root / "evil.txt"), 4), b"evil")], "evil.txt"),
    "symlink": (
        lambda root: [(_info("outputs/model.npy", 0, tarfile.SYMTYPE, SECRET), b"")],
        "outputs/model.npy",
    ),
    "hardlink": (
        lambda root: [(_info("outputs/model.npy", 0, tarfile.LNKTYPE, SECRET), b"")],
        "outputs/model.npy",
    ),
    "stranger": (lambda root: [(_info("outputs/other.npy", 4), b"evil")], "outputs/other.npy"),
    "device": (lambda root: [(_info("output.log", 0, tarfile.CHRTYPE), b"")], "output.log"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_tar_slip_in_an_archive_is_refused(local, tmp_path, attack):
    job = submit(local, "local", tmp_path)
    archive = job.archive()
    genuine = members(archive)
    make, name = ATTACKS[attack]
    hostile(archive, make(tmp_path), genuine)
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(TransferError, match=f"refusing member '[^']*{name}'"):
        job.load("model.npy")
    assert {p for p in tmp_path.rglob("*")} == before  # nothing written anywhere
    assert not (local.results.local.folder(job.id) / "outputs").exists()


def test_a_hostile_manifest_path_is_refused_before_reading(local, tmp_path):
    job = submit(local, "local", tmp_path)
    job.archive()
    store = local.results.local
    manifest = store.manifest(job.id)
    entry = {"path": "../evil.npy", "size": 4, "sha256": "0" * 64, "kind": "model", "fetched": True}
    manifest["files"].append(entry)
    manifest["archive"]["members"].append("../evil.npy")
    store.write_manifest(job.id, manifest)
    with pytest.raises(TransferError, match="refusing the path '../evil.npy'"):
        job.load("../evil.npy")
    assert not (store.root / "evil.npy").exists()


def test_a_member_that_differs_from_the_manifest_is_not_extracted(local, tmp_path):
    job = submit(local, "local", tmp_path)
    archive = job.archive()
    genuine = members(archive)
    genuine["outputs/model.npy"] = b"not the model"
    hostile(archive, [], genuine)
    with pytest.raises(TransferError, match="sha256 mismatch for model.npy"):
        job.load("model.npy")
    folder = local.results.local.folder(job.id)
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["manifest.json"]
