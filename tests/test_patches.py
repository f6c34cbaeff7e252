"""An edited large file goes as a patch: only the content-defined chunks the version on the
host lacks, built there from its cached copy and checked whole. On the local host and over
the real sshd; the recipe and the host's builder are also checked against each other for
arbitrary edits (hypothesis), and a wrong recipe is shown to cost a resend, never a file."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_magic import GPUJobRequest, JobStatus
from gpu_magic.packaging import chunking
from gpu_magic.packaging.chunking import Chunked, patch
from gpu_magic.packaging.digests import LocalDigests, chunk_file
from gpu_magic.remote import cache as host_cache

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)
BIG = chunking.CHUNKED_MIN + (8 << 20)  # chunked: at least CHUNKED_MIN
READ_BACK = "import hashlib\nprint(hashlib.sha256(open('data/big.bin','rb').read()).hexdigest())"


def _edit(path: Path, at: int, data: bytes, *, insert: bool = False) -> None:
    """Overwrite ``len(data)`` bytes at ``at`` (or insert them there)."""
    content = bytearray(path.read_bytes())
    content[at : at if insert else at + len(data)] = data
    path.write_bytes(bytes(content))


def _submit(env, code=READ_BACK):
    request = GPUJobRequest.create(code=code, cluster=env.cluster_name, files=("data",))
    lines: list[str] = []
    job = env.client.submit(request, env.namespace, cwd=env.cwd, say=lines.append).wait(120).job
    assert job.status == JobStatus.COMPLETED, job.reason
    return job, lines


def _uploaded(client, job_id) -> int:
    """Bytes of large files that went by SFTP for ``job_id`` (a delta is one of those)."""
    return sum(r.get("bytes", 0) for r in client.audit.records(job_id) if r["event"] == "upload")


def _dataset(cwd: Path) -> Path:
    (cwd / "data").mkdir()
    big = cwd / "data" / "big.bin"
    big.write_bytes(random.Random(7).randbytes(BIG))
    return big


def test_an_edited_large_file_sends_only_its_new_chunks(process_env):
    env, client = process_env, process_env.client
    big = _dataset(env.cwd)
    first, _ = _submit(env)
    _edit(big, BIG // 2, os.urandom(1 << 20))  # 1 MB changed in the middle
    _edit(big, 12345, b"inserted row\n" * 100, insert=True)  # and every later byte moved
    second, lines = _submit(env)
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    assert client.logs(second.id).strip() == expected  # the job read the new bytes
    assert _uploaded(client, first.id) >= BIG
    assert 1 << 20 < _uploaded(client, second.id) < 4 << 20  # the new chunks, not 24 MB
    assert "already on the host" in lines[0]
    built = Path(second.remote_dir) / "code" / "data" / "big.bin"
    assert built.read_bytes() == big.read_bytes()
    assert not list(built.parent.glob("*.gm_delta"))  # the delta went once used


def test_a_wrong_recipe_costs_a_resend_never_a_wrong_file(process_env):
    env, client = process_env, process_env.client
    big = _dataset(env.cwd)
    _submit(env)
    _edit(big, 1000, os.urandom(1 << 20))
    _lie_about_chunks(client.store.path)  # the kept list no longer says what the host holds
    job, _ = _submit(env)
    assert client.logs(job.id).strip() == hashlib.sha256(big.read_bytes()).hexdigest()
    uploads = [r for r in client.audit.records(job.id) if r["event"] == "upload"]
    assert uploads[-1]["bytes"] == big.stat().st_size  # the retry sent the whole file


def _lie_about_chunks(store: Path) -> None:
    """Swap the last two chunks of every kept chunk list (the edit left those alone): a
    recipe built from one reads the base's bytes in the wrong order."""
    with sqlite3.connect(store) as conn:
        for digest, blob in conn.execute("SELECT sha256, chunks FROM file_chunks").fetchall():
            chunks = Chunked.decode(digest, blob).chunks
            swapped = Chunked(digest, (*chunks[:-2], chunks[-1], chunks[-2]))
            conn.execute("UPDATE file_chunks SET chunks = ? WHERE sha256 = ?",
                         (swapped.encode(), digest))  # fmt: skip


def test_digests_keep_the_previous_version_s_chunks_while_a_row_names_them(tmp_path):
    digests = LocalDigests(_store(tmp_path))
    big = tmp_path / "big.bin"
    big.write_bytes(random.Random(1).randbytes(BIG))
    v1 = digests.sha256(big)
    assert digests.chunks(v1).size == BIG and digests.previous(big) is None
    _edit(big, 0, b"x" * 100)
    v2 = digests.sha256(big)
    assert digests.previous(big).sha256 == v1 and digests.chunks(v2) is not None
    _edit(big, 0, b"y" * 100)
    v3 = digests.sha256(big)
    assert digests.previous(big).sha256 == v2
    assert digests.chunks(v1) is None and digests.chunks(v3) is not None  # v1: no row names it
    small = tmp_path / "small.bin"
    small.write_bytes(b"not chunked")
    assert digests.chunks(digests.sha256(small)) is None
    digests.close()


def _store(tmp_path: Path) -> Path:
    from gpu_magic.jobstore import JobStore

    store = JobStore(tmp_path / "jobs.db")  # creates the schema
    store.close()
    return tmp_path / "jobs.db"


EDITS = st.lists(
    st.tuples(st.floats(0, 1), st.integers(1, 200_000), st.booleans()), min_size=1, max_size=6
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=EDITS, seed=st.integers(0, 2**32 - 1))
def test_the_host_builds_exactly_the_new_file_from_any_patch(tmp_path_factory, edits, seed):
    """Whatever the edits (overwrites, insertions, anywhere), the host's builder turns the
    base plus the patch's sent bytes into the new file, byte for byte."""
    folder = tmp_path_factory.mktemp("patch")
    rng = random.Random(seed)
    old, new = folder / "old.bin", folder / "new.bin"
    old.write_bytes(rng.randbytes(4 << 20))
    new.write_bytes(old.read_bytes())
    for where, length, insert in edits:
        _edit(new, int(where * new.stat().st_size), rng.randbytes(length), insert=insert)
    base, wanted = chunk_file(old), chunk_file(new)
    found = patch(wanted, base)
    if found is None:  # more than half changed: it goes whole
        return
    root = folder / "cache"
    (root / base.sha256[:2]).mkdir(parents=True)
    os.link(old, root / base.sha256[:2] / base.sha256)
    data = new.read_bytes()
    (folder / "built.gm_delta").write_bytes(b"".join(data[o : o + n] for o, n in found.sent))
    spec = {"base": found.base, "parts": found.parts, "delta": str(folder / "built.gm_delta")}
    written = host_cache.build(str(root), str(folder / "built"), spec)
    assert written == wanted.sha256 and (folder / "built").read_bytes() == data
    assert found.sent_bytes <= sum(n for _, n, _ in edits) + 6 * chunking.LARGEST * 2
