"""Fast verified downloads: the job folder listed over SFTP (no command), small files in one
tar stream whose members carry the host's sha256, big ones with the host's sha256 computed
while they move, ``--fetch-limit``; and what a broken or hostile host cannot do.

The "host" runs on this machine (LocalTransport, or a real sshd on 127.0.0.1), so what it has
and what arrived are both checked directly on the filesystem.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shlex
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from harness.spy import CountingTransport, DelegatingTransport

from gpu_magic import GPUJobRequest, JobStatus
from gpu_magic.errors import InvalidRequestError, TransferCancelled, TransferError
from gpu_magic.models import GPUJob, parse_size
from gpu_magic.results import LocalResults, collect
from gpu_magic.results.collector import fetch_file, fetch_files
from gpu_magic.results.plan import LISTING, TAR_COMMAND_BYTES, tar_batches
from gpu_magic.results.progress import TransferProgress
from gpu_magic.transport import LocalTransport
from gpu_magic.transport.base import (
    CommandResult,
    RemoteEntry,
    Transport,
    copy_chunks,
    open_target,
    quote_argv,
)

pytestmark = pytest.mark.timeout(120)

BIG = 1 << 20  # files this big come by SFTP, smaller ones in the tar stream (plan.SMALL)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_job(folder: Path, files: dict[str, bytes], **request) -> GPUJob:
    """A finished job's folder on the "host" holding ``files`` (paths relative to it)."""
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    req = GPUJobRequest.create(code="pass", **request)
    return GPUJob(id="job1", request=req, cluster="test", remote_dir=str(folder))


def many_files(count: int = 300) -> dict[str, bytes]:
    files = {"output.log": b"step 1\n", "metrics.jsonl": b'{"loss": 1}\n'}
    names = ["with space.txt", "quote'd.bin", "ünïcode.dat", "-dash.txt", "x" * 120 + ".bin"]
    for i in range(count):
        name = names[i] if i < len(names) else f"f{i:04d}.bin"
        files[f"outputs/d{i % 7}/{name}"] = os.urandom((i * 7919) % 40_000)
    return files


def is_hash(command: str) -> bool:
    """The host's sha256 command for one file (not the listing, whose source names it too)."""
    return shlex.split(command)[3:4] == ["--sha256"]


def visible(folder: Path) -> dict[str, bytes]:
    """Every file a reader of the results folder can see (not the manifest or .partial/)."""
    found = {}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not rel.startswith(".partial/") and rel != "manifest.json":
            found[rel] = path.read_bytes()
    return found


class Spy(DelegatingTransport):
    """Records which commands, streams, downloads and listings were used."""

    def __init__(self, real: Transport):
        super().__init__(real)
        self.streams, self.gets, self.commands, self.lists = [], [], [], []
        self.offsets = []  # where each get_file started

    def run(self, command, *, stdin=None, timeout=None):
        self.commands.append(command)
        return super().run(command, stdin=stdin, timeout=timeout)

    def stream_from(self, command, size_hint=None):
        self.streams.append(command)
        return super().stream_from(command, size_hint)

    def get_file(self, remote, local, *, offset=0, progress=None, digest=None):
        self.gets.append(remote)
        self.offsets.append(offset)
        return super().get_file(remote, local, offset=offset, progress=progress, digest=digest)

    def list_tree(self, remote, roots):
        self.lists.append(remote)
        return super().list_tree(remote, roots)


@pytest.fixture(params=["local", "ssh"])
def host(request):
    """``(transport, folder on the host for job folders)`` for each transport kind."""
    if request.param == "local":
        folder = request.getfixturevalue("tmp_path") / "host"
        folder.mkdir()
        return LocalTransport(), folder
    ssh_env = request.getfixturevalue("ssh_env")
    return ssh_env.transport(), ssh_env.remote_dir


# -- the fast paths round trip verified --------------------------------------------------------


def test_many_small_files_come_in_one_tar_stream_byte_identical(host, tmp_path):
    transport, remote = host
    files = many_files()
    files["outputs/model.bin"] = os.urandom(BIG + 12345)  # and one big file beside them
    job = make_job(remote / "job1", files)
    spy, store, progress = Spy(transport), LocalResults(tmp_path / "results"), TransferProgress()
    manifest = collect(spy, sys.executable, job, store, progress)
    folder = store.folder(job.id)
    assert visible(folder) == files
    entries = {e["path"]: e for e in manifest["files"]}
    assert all(e["fetched"] and e["sha256"] == sha(files[p]) for p, e in entries.items())
    assert manifest["complete"] and set(entries) == set(files)
    assert len(spy.streams) == 1  # every small file in one stream
    assert spy.gets == [f"{job.remote_dir}/outputs/model.bin"]  # only the big file by SFTP
    assert spy.lists == [job.remote_dir]  # listed without a command...
    assert spy.commands == []  # ...and the big file's sha256 came in the stream
    assert shlex.split(spy.streams[0])[-2:] == ["--digests", "outputs/model.bin"]
    assert not [p for p in (folder / ".partial").rglob("*") if p.is_file()]
    done = progress.snapshot()
    assert (
        (done.done, done.files_done)
        == (done.total, done.files)
        == (
            sum(map(len, files.values())),
            len(files),
        )
    )


@pytest.mark.parametrize("how", ["collect", "fetch_file"])
def test_the_hosts_sha256_of_a_big_file_is_computed_while_it_downloads(how, tmp_path):
    """Each side waits (bounded) for the other to have started: only overlap passes. A
    collection's big file is hashed by its tar command, one fetched alone by hash_command."""
    data = os.urandom(2 * BIG)
    fetch = "manual" if how == "fetch_file" else "auto"
    job = make_job(tmp_path / "host/job1", {"outputs/w.bin": data}, fetch=fetch)
    hashing, downloading, met = threading.Event(), threading.Event(), []

    class Overlapping(LocalTransport):
        def hashes(self):
            hashing.set()
            met.append(downloading.wait(10))

        def run(self, command, *, stdin=None, timeout=None):
            if is_hash(command):
                self.hashes()
            return super().run(command, stdin=stdin, timeout=timeout)

        def stream_from(self, command, size_hint=None):
            if "--digests" in shlex.split(command):
                self.hashes()
            return super().stream_from(command, size_hint)

        def get_file(self, remote, local, **kw):
            downloading.set()
            met.append(hashing.wait(10))
            super().get_file(remote, local, **kw)

    store = LocalResults(tmp_path / "results")
    manifest = collect(Overlapping(), sys.executable, job, store)
    if how == "fetch_file":
        assert met == []  # listed, not fetched
        fetch_file(Overlapping(), job, store, "outputs/w.bin", interpreter=sys.executable)
        manifest = store.manifest(job.id)
    assert met == [True, True]
    assert manifest["files"][0]["sha256"] == sha(data)
    assert store.path(job.id, "outputs/w.bin").read_bytes() == data


@pytest.mark.parametrize("small", [True, False], ids=["small+big", "big only"])
def test_a_collection_with_big_files_runs_exactly_one_remote_command(host, small, tmp_path):
    transport, remote = host
    files = {"outputs/a.bin": os.urandom(BIG + 1), "outputs/b.bin": os.urandom(2 * BIG)}
    if small:
        files |= {"output.log": b"done\n", "outputs/c.txt": b"c" * 1000}
    job = make_job(remote / "job1", files)
    spy, store = CountingTransport(transport), LocalResults(tmp_path / "results")
    manifest = collect(spy, sys.executable, job, store)
    assert spy.commands == 1  # the tar stream: small files, then the big ones' digests
    assert visible(store.folder(job.id)) == files
    assert all(e["fetched"] and e["sha256"] == sha(files[e["path"]]) for e in manifest["files"])
    assert not list(store.folder(job.id).rglob("digests.json"))  # never landed


def test_big_files_the_stream_brings_no_digest_for_ask_hash_command(tmp_path):
    """A host whose tar command reports no digests (an older listing, or one it could not
    read): each big file asks hash_command instead, still verified."""
    files = {"output.log": b"done\n", "outputs/w.bin": os.urandom(BIG + 7)}
    job = make_job(tmp_path / "host/job1", files)

    class NoDigests(Spy):
        def stream_from(self, command, size_hint=None):
            argv = shlex.split(command)
            return super().stream_from(quote_argv(*argv[: argv.index("--digests")]))

    spy, store = NoDigests(LocalTransport()), LocalResults(tmp_path / "results")
    manifest = collect(spy, sys.executable, job, store)
    assert len(spy.streams) == 1 and len(spy.commands) == 1 and is_hash(spy.commands[0])
    assert visible(store.folder(job.id)) == files and manifest["complete"]


def test_tar_batches_put_the_big_names_first_and_each_fits_a_command_line(tmp_path):
    root = str(tmp_path / "host/job1")
    small = [f"outputs/s{i:05d}-{'x' * 60}.txt" for i in range(3000)]
    big = [f"outputs/b{i:04d}-{'y' * 60}.bin" for i in range(1500)]
    batches = tar_batches(root, small, big)
    assert len(batches) > 2
    assert [r for _, rels, _ in batches for r in rels] == small
    assert [b for _, _, bigs in batches for b in bigs] == big
    assert batches[0][1] == [] and batches[0][2] == big[: len(batches[0][2])]
    head = len(LISTING.command(sys.executable, "--tar", root))
    for args, rels, bigs in batches:
        assert len(LISTING.command(sys.executable, *args)) < head + TAR_COMMAND_BYTES + 12
        assert args == ["--tar", root, *rels, *(["--digests", *bigs] if bigs else [])]


def test_a_file_missing_from_the_tar_stream_falls_back_and_fails_clearly(tmp_path):
    job = make_job(tmp_path / "host/job1", {"outputs/a.txt": b"a", "outputs/b.txt": b"b"})

    class Vanishing(LocalTransport):  # b.txt is deleted between listing and transfer
        def stream_from(self, command, size_hint=None):
            (tmp_path / "host/job1/outputs/b.txt").unlink(missing_ok=True)
            return super().stream_from(command, size_hint)

    store = LocalResults(tmp_path / "results")
    with pytest.raises(TransferError, match="b.txt"):
        collect(Vanishing(), sys.executable, job, store)
    assert visible(store.folder(job.id)) == {"outputs/a.txt": b"a"}
    entries = {e["path"]: e["fetched"] for e in store.manifest(job.id)["files"]}
    assert entries == {"outputs/a.txt": True, "outputs/b.txt": False}


# -- a dropped connection mid tar stream ---------------------------------------------------------


class Killer:
    """Kills the sshd's connections once ``after`` bytes landed in the current stream."""

    def __init__(self, server, after: int, times: int):
        self.server, self.after, self.times = server, after, times
        self.moved, self.kills, self.seen_at_kill = 0, 0, []

    def progress(self, store: LocalResults, job_id: str) -> TransferProgress:
        progress = TransferProgress()
        real_advance = progress.advance

        def advance(n: int) -> None:
            real_advance(n)
            self.moved += n
            if self.moved >= self.after and self.kills < self.times:
                self.kills += 1
                self.moved = -(1 << 40)  # once per stream
                self.server.kill_connections()
                self.seen_at_kill.append(visible(store.folder(job_id)))

        progress.advance = advance
        return progress


class Rearming(Spy):
    def __init__(self, real, killer):
        super().__init__(real)
        self.killer = killer

    def stream_from(self, command, size_hint=None):
        self.killer.moved = 0
        return super().stream_from(command, size_hint)


def test_a_tar_stream_cut_off_is_retried_and_only_verified_files_show(ssh_env, tmp_path):
    files = many_files(400)
    job = make_job(ssh_env.remote_dir / "job1", files)
    store = LocalResults(tmp_path / "results")
    killer = Killer(ssh_env.server, after=1 << 20, times=1)
    spy = Rearming(ssh_env.transport(), killer)
    manifest = collect(spy, sys.executable, job, store, killer.progress(store, job.id))
    assert killer.kills == 1 and len(spy.streams) == 2  # cut once, then asked again
    for seen in killer.seen_at_kill:  # what was visible when the connection died: all verified
        assert seen and all(files[rel] == data for rel, data in seen.items())
    assert visible(store.folder(job.id)) == files
    assert manifest["complete"] and all(e["fetched"] for e in manifest["files"])


def test_a_tar_stream_cut_off_every_time_fails_clearly_and_a_later_collect_completes(
    ssh_env, tmp_path
):
    files = many_files(600)  # ~12 MB: more than 3 cuts leave in flight (2 MB window each)
    job = make_job(ssh_env.remote_dir / "job1", files)
    store = LocalResults(tmp_path / "results")
    killer = Killer(ssh_env.server, after=1 << 16, times=3)
    spy = Rearming(ssh_env.transport(), killer)
    with pytest.raises(TransferError, match="after 3 attempts.*connection"):
        collect(spy, sys.executable, job, store, killer.progress(store, job.id))
    shown = visible(store.folder(job.id))
    assert shown and len(shown) < len(files)
    assert all(files[rel] == data for rel, data in shown.items())
    fetched = {e["path"] for e in store.manifest(job.id)["files"] if e["fetched"]}
    assert fetched == set(shown)  # the manifest tells exactly what is here
    manifest = collect(ssh_env.transport(), sys.executable, job, store)
    assert manifest["complete"] and visible(store.folder(job.id)) == files


# -- stopped by the user (Ctrl-C) -------------------------------------------------------------


def test_a_cancelled_collection_stops_keeps_what_arrived_and_then_resumes(host, tmp_path):
    transport, remote = host
    files = many_files(100)
    files["outputs/model.bin"] = model = os.urandom(8 * BIG)
    job = make_job(remote / "job1", files)
    store = LocalResults(tmp_path / "results")
    partial = store.partial(job.id, "outputs/model.bin")
    progress = TransferProgress()
    progress.subscribe(
        lambda: partial.exists() and partial.stat().st_size >= BIG and progress.cancel()
    )
    with pytest.raises(TransferCancelled, match="stopped by the user"):
        collect(transport, sys.executable, job, store, progress)
    kept = partial.stat().st_size
    assert BIG <= kept < len(model) and partial.read_bytes() == model[:kept]
    shown = visible(store.folder(job.id))
    assert "outputs/model.bin" not in shown
    assert all(files[rel] == data for rel, data in shown.items())  # only verified files show
    manifest = store.manifest(job.id)
    assert not manifest["complete"]
    assert {e["path"] for e in manifest["files"] if e["fetched"]} == set(shown)
    spy = Spy(transport)
    assert collect(spy, sys.executable, job, store)["complete"]
    assert spy.offsets == [kept]  # the big file went on from where it stopped
    assert visible(store.folder(job.id)) == files


# -- a hostile or broken host: crafted tar streams at our own seam --------------------------


class CraftedHost(LocalTransport):
    """A host whose listing says ``listed`` and whose tar stream is ``tar_bytes``."""

    def __init__(self, listed: dict[str, bytes], tar_bytes: bytes):
        self.listed, self.tar_bytes, self.streams = listed, tar_bytes, 0

    def list_tree(self, remote, roots):
        return [RemoteEntry(p, len(d), "file") for p, d in self.listed.items()]

    def run(self, command, *, stdin=None, timeout=None):
        self.commands = [*getattr(self, "commands", []), command]
        raise AssertionError(f"no command expected: {command}")

    def stream_from(self, command, size_hint=None):
        self.streams += 1
        return contextlib.nullcontext(io.BytesIO(self.tar_bytes))

    def get_file(self, remote, local, *, offset=0, progress=None, digest=None):
        rel = remote.split("/job1/", 1)[1]
        if len(self.listed[rel]) < BIG:
            raise TransferError(f"no SFTP for small files on this host: {remote}")
        with open_target(local, offset) as f:  # a big file: its listed bytes
            copy_chunks([self.listed[rel][offset:]], f, progress, digest)


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


SAME = object()  # the header a faithful host writes: the sha256 of the member's bytes


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "", **kw):
    """A crafted member; ``sha256=`` sets its GPU_MAGIC.sha256 header (None: no header)."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    header = kw.get("sha256", SAME)
    if header is not None:
        info.pax_headers = {"GPU_MAGIC.sha256": sha(data) if header is SAME else header}
    return info, data


GOOD = {"outputs/a.txt": b"good", "outputs/b.txt": b"fine"}
HOSTILE = {
    "tar-slip": (member("../evil", b"evil"), "'../evil'"),
    "deep tar-slip": (member("outputs/../../evil", b"evil"), "'outputs/../../evil'"),
    "absolute": (member("/tmp/evil-abs", b"evil"), "'/tmp/evil-abs'"),
    "symlink": (member("outputs/a.txt", kind=tarfile.SYMTYPE, link="/etc/passwd"), "link"),
    "hardlink": (member("outputs/a.txt", kind=tarfile.LNKTYPE, link="/etc/passwd"), "link"),
    "device": (member("outputs/a.txt", kind=tarfile.CHRTYPE), "not a regular file"),
    "unexpected": (member("outputs/other.txt", b"evil"), "not one of the requested"),
    "wrong size": (member("outputs/a.txt", b"good and more"), "13 bytes, the listing said 4"),
    "wrong bytes": (member("outputs/a.txt", b"evil", sha256=sha(b"good")), "sha256"),
    "no sha256 header": (member("outputs/a.txt", b"good", sha256=None), "GPU_MAGIC.sha256"),
    "bad sha256 header": (member("outputs/a.txt", b"good", sha256="abc"), "GPU_MAGIC.sha256"),
    "upper-case sha256": (
        member("outputs/a.txt", b"good", sha256=sha(b"good").upper()),
        "no valid GPU_MAGIC.sha256 header",
    ),
}


def snapshot(root: Path, skip: Path) -> dict[str, int]:
    return {
        str(p): p.stat().st_size for p in root.rglob("*") if p.is_file() and skip not in p.parents
    }


def refused(tmp_path: Path, listed: dict, stream: bytes):
    """Collect from a host that lists ``listed`` and sends ``stream``: it must fail and write
    nothing outside the results folder. Returns ``(error text, host, store, job)``."""
    host = CraftedHost(listed, stream)
    job = make_job(tmp_path / "host/job1", {})
    store = LocalResults(tmp_path / "results")
    before = snapshot(tmp_path, store.root)
    with pytest.raises(TransferError) as info:
        collect(host, sys.executable, job, store)
    assert snapshot(tmp_path, store.root) == before  # nothing written outside the results
    return str(info.value), host, store, job


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_tar_members_are_refused_by_name(case, tmp_path):
    bad, why = HOSTILE[case]
    stream = tar_of(member("outputs/b.txt", b"fine"), bad, member("outputs/a.txt", b"good"))
    message, _host, store, job = refused(tmp_path, GOOD, stream)
    assert why in message and (repr(bad[0].name) in message or case == "wrong bytes")
    assert not Path("/tmp/evil-abs").exists() and not (tmp_path / "evil").exists()
    assert visible(store.folder(job.id)) == {"outputs/b.txt": b"fine"}  # verified before it
    assert not [p for p in store.folder(job.id).joinpath(".partial").rglob("*") if p.is_file()]
    assert not store.path(job.id, "outputs/a.txt").exists()


DIGESTS = ".gpu_magic/digests.json"
BIG_DATA = os.urandom(BIG + 3)
WITH_BIG = {**GOOD, "outputs/big.bin": BIG_DATA}


def digests(value, *, raw: bytes | None = None, **kw):
    """A crafted digests member holding ``value`` as JSON (or ``raw`` bytes)."""
    return member(
        DIGESTS, raw if raw is not None else json.dumps(value).encode(), sha256=None, **kw
    )


FAITHFUL = digests({"outputs/big.bin": sha(BIG_DATA)})
TWICE = b'{"outputs/big.bin": "%s", "outputs/big.bin": "%s"}' % (
    sha(BIG_DATA).encode(),
    sha(b"").encode(),
)
HOSTILE_DIGESTS = {
    "bad JSON": ([digests(None, raw=b'{"outputs/big.bin": ')], "not valid JSON"),
    "not UTF-8": ([digests(None, raw=b"\xff\xfe{}")], "not valid JSON"),
    "not an object": ([digests([sha(BIG_DATA)])], "not a JSON object"),
    "not requested": (
        [digests({"outputs/big.bin": sha(BIG_DATA), "outputs/other.bin": sha(b"")})],
        "not requested: ['outputs/other.bin']",
    ),
    "a small file's name": ([digests({"outputs/a.txt": sha(b"good")})], "not requested"),
    "bad sha256": ([digests({"outputs/big.bin": "abc"})], "no valid sha256"),
    "not a string": ([digests({"outputs/big.bin": 7})], "no valid sha256"),
    "a name twice": ([digests(None, raw=TWICE)], "a name given twice"),
    "oversized": ([digests(None, raw=b"{" + b" " * 20_000 + b"}")], "more than digests"),
    "symlink": ([member(DIGESTS, kind=tarfile.SYMTYPE, link="/etc/passwd")], "a link"),
    "hardlink": ([member(DIGESTS, kind=tarfile.LNKTYPE, link="outputs/a.txt")], "a link"),
    "a folder": ([member(DIGESTS, kind=tarfile.DIRTYPE)], "not a regular file"),
    "a second one": ([FAITHFUL, FAITHFUL], "a second digests member"),
}


@pytest.mark.parametrize("case", list(HOSTILE_DIGESTS))
def test_hostile_digests_members_are_refused_by_name(case, tmp_path):
    bad, why = HOSTILE_DIGESTS[case]
    stream = tar_of(member("outputs/b.txt", b"fine"), member("outputs/a.txt", b"good"), *bad)
    message, host, store, job = refused(tmp_path, WITH_BIG, stream)
    assert f"refused tar member {DIGESTS!r}" in message and why in message
    assert host.streams == 1 and not getattr(host, "commands", [])  # no hash_command either
    assert not list(tmp_path.rglob("digests.json")) and not (tmp_path / "etc").exists()
    shown = visible(store.folder(job.id))
    assert {k: v for k, v in shown.items() if k != "outputs/big.bin"} == GOOD
    if case != "a second one":  # the first, faithful one may have verified it meanwhile
        assert "outputs/big.bin" not in shown
    assert all(WITH_BIG[rel] == data for rel, data in shown.items())


def test_a_digests_member_nobody_asked_for_is_refused(tmp_path):
    stream = tar_of(member("outputs/b.txt", b"fine"), member("outputs/a.txt", b"good"), FAITHFUL)
    host = CraftedHost(GOOD, stream)  # no big file listed: no digests asked for
    store = LocalResults(tmp_path / "results")
    with pytest.raises(TransferError, match="digests.json.*no digests were asked for"):
        collect(host, sys.executable, make_job(tmp_path / "host/job1", {}), store)


def test_the_hosts_digests_verify_the_big_download(tmp_path):
    """The crafted host's faithful stream: the big file lands verified with no command; a
    digest that disagrees with the bytes is asked again from the host, never trusted."""
    stream = tar_of(member("outputs/b.txt", b"fine"), member("outputs/a.txt", b"good"), FAITHFUL)
    store, job = LocalResults(tmp_path / "results"), make_job(tmp_path / "host/job1", {})
    manifest = collect(CraftedHost(WITH_BIG, stream), sys.executable, job, store)
    assert visible(store.folder(job.id)) == WITH_BIG and manifest["complete"]

    class Lying(CraftedHost):  # its hash command says the same wrong sha256
        def run(self, command, *, stdin=None, timeout=None):
            self.commands = [*getattr(self, "commands", []), command]
            return CommandResult(command, 0, f"{sha(b'other bytes')}  x\n".encode())

    lying = tar_of(digests({"outputs/big.bin": sha(b"other bytes")}))
    host, store = Lying({"outputs/big.bin": BIG_DATA}, lying), LocalResults(tmp_path / "r2")
    with pytest.raises(TransferError, match="after 3 attempts.*does not match"):
        collect(host, sys.executable, job, store)
    assert visible(store.folder(job.id)) == {} and len(host.commands) == 2


def test_a_truncated_tar_stream_names_the_member_and_shows_nothing_unverified(tmp_path):
    whole = tar_of(member("outputs/a.txt", b"x" * 5000))
    host = CraftedHost({"outputs/a.txt": b"x" * 5000}, whole[: 512 + 2000])
    job = make_job(tmp_path / "host/job1", {})
    store = LocalResults(tmp_path / "results")
    with pytest.raises(TransferError, match="broken in member 'outputs/a.txt'"):
        collect(host, sys.executable, job, store)
    assert visible(store.folder(job.id)) == {}
    assert not [p for p in store.folder(job.id).joinpath(".partial").rglob("*") if p.is_file()]


# -- big files: the host's sha256 checked, retried, never trusted blindly ---------------------


class ChangingHost(LocalTransport):
    """A host whose big file changes after each download (``changes`` times), before the
    host's hash (the tar command's digests, then hash_command) reads it: the two sha256s
    disagree."""

    def __init__(self, path: Path, changes: int):
        self.path, self.changes = path, changes
        self.downloads, self.hashes = 0, 0
        self.cond = threading.Condition()

    def get_file(self, remote, local, **kw):
        super().get_file(remote, local, **kw)
        with self.cond:
            self.downloads += 1
            self.cond.notify_all()

    def hashes_now(self):
        with self.cond:
            self.hashes += 1
            assert self.cond.wait_for(lambda: self.downloads >= self.hashes, timeout=30)
            if self.changes:
                self.changes -= 1
                self.path.write_bytes(os.urandom(self.path.stat().st_size))

    def run(self, command, *, stdin=None, timeout=None):
        if is_hash(command):
            self.hashes_now()
        return super().run(command, stdin=stdin, timeout=timeout)

    def stream_from(self, command, size_hint=None):  # the collection's tar hashes the first time
        if "--digests" in shlex.split(command):
            self.hashes_now()
        return super().stream_from(command, size_hint)


def test_a_big_file_that_changes_on_the_host_is_retried_then_refused(tmp_path):
    job = make_job(tmp_path / "host/job1", {"outputs/w.bin": os.urandom(BIG + 1)})
    host = ChangingHost(tmp_path / "host/job1/outputs/w.bin", changes=99)
    store, progress = LocalResults(tmp_path / "results"), TransferProgress()
    with pytest.raises(TransferError, match="after 3 attempts.*sha256"):
        collect(host, sys.executable, job, store, progress)
    assert host.downloads == 3
    assert visible(store.folder(job.id)) == {}
    assert not store.partial(job.id, "outputs/w.bin").exists()
    assert progress.snapshot().done == 0  # every discarded byte was taken back


def test_a_big_file_that_changed_once_is_downloaded_again_and_verified(tmp_path):
    job = make_job(tmp_path / "host/job1", {"outputs/w.bin": os.urandom(BIG + 1)})
    path = tmp_path / "host/job1/outputs/w.bin"
    host = ChangingHost(path, changes=1)
    store, progress = LocalResults(tmp_path / "results"), TransferProgress()
    manifest = collect(host, sys.executable, job, store, progress)
    assert host.downloads == 2
    final = path.read_bytes()
    assert store.path(job.id, "outputs/w.bin").read_bytes() == final
    assert manifest["files"][0]["sha256"] == sha(final)
    snap = progress.snapshot()
    assert snap.done == snap.total == BIG + 1  # the first copy's bytes were rewound


def test_a_resumed_big_download_hashes_the_kept_prefix(tmp_path):
    data = os.urandom(3 * BIG)
    job = make_job(tmp_path / "host/job1", {"outputs/w.bin": data})
    store = LocalResults(tmp_path / "results")
    collect(LocalTransport(), sys.executable, job, store)  # listing + manifest (and the file)
    store.path(job.id, "outputs/w.bin").unlink()
    manifest = store.manifest(job.id)
    manifest["files"][0]["fetched"] = False
    store.write_manifest(job.id, manifest)
    partial = store.partial(job.id, "outputs/w.bin")
    partial.write_bytes(data[:BIG])  # a download cut off in an earlier kernel
    offsets = []

    class Resuming(LocalTransport):
        def get_file(self, remote, local, *, offset=0, **kw):
            offsets.append(offset)
            super().get_file(remote, local, offset=offset, **kw)

    progress = TransferProgress()
    got = fetch_file(Resuming(), job, store, "outputs/w.bin", progress, interpreter=sys.executable)
    assert offsets == [BIG] and got.read_bytes() == data
    assert progress.snapshot().done == 3 * BIG


def test_fetch_files_brings_several_files_under_one_progress(tmp_path):
    data = {"outputs/a.bin": os.urandom(BIG), "outputs/b.bin": os.urandom(BIG // 2)}
    job = make_job(tmp_path / "host/job1", data, fetch="manual")
    store = LocalResults(tmp_path / "results")
    collect(LocalTransport(), sys.executable, job, store)
    with pytest.raises(TransferError, match="has no collected file 'outputs/c.bin'"):
        fetch_files(LocalTransport(), job, store, ["outputs/a.bin", "outputs/c.bin"])
    assert not store.path(job.id, "outputs/a.bin").exists()  # nothing fetched before the check
    progress = TransferProgress()
    rels = ["outputs/a.bin", "outputs/b.bin", "outputs/a.bin"]
    paths = fetch_files(LocalTransport(), job, store, rels, progress, interpreter=sys.executable)
    assert [p.read_bytes() for p in paths] == [data[r] for r in rels]
    snap = progress.snapshot()
    both = BIG + BIG // 2
    assert (snap.done, snap.total, snap.files_done, snap.files) == (both, both, 2, 2)


def test_fetch_file_without_an_interpreter_asks_sha256sum(tmp_path):
    data = os.urandom(BIG)
    job = make_job(tmp_path / "host/job1", {"outputs/w.bin": data}, fetch="manual")
    store = LocalResults(tmp_path / "results")
    spy = Spy(LocalTransport())
    collect(spy, sys.executable, job, store)
    assert not store.path(job.id, "outputs/w.bin").exists()
    assert fetch_file(spy, job, store, "outputs/w.bin").read_bytes() == data
    assert spy.commands[-1].startswith("sha256sum -- ")
    assert store.entry(job.id, "outputs/w.bin")["sha256"] == sha(data)


# -- --fetch-limit ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("500MB", 500_000_000), ("2GiB", 2 << 30), ("1.5G", 1_500_000_000), ("4096", 4096),
     ("10kb", 10_000), ("64 KiB", 65536), ("3B", 3)],
)  # fmt: skip
def test_fetch_limit_sizes(text, size):
    assert parse_size(text) == size
    assert GPUJobRequest.create(code="pass", fetch_limit=text).fetch_limit == size


@pytest.mark.parametrize("bad", ["lots", "5XB", "-1", "1.2.3", "MB", "iB"])
def test_a_bad_fetch_limit_is_a_clear_error(bad):
    with pytest.raises(InvalidRequestError, match=f"fetch_limit: not a size: '{bad}'"):
        GPUJobRequest.create(code="pass", fetch_limit=bad)


def test_the_magic_passes_fetch_limit_and_refuses_a_bad_one():
    from IPython.core.error import UsageError

    from gpu_magic.magics import GPUMagics, parse

    magics = GPUMagics(None)
    opts = parse(magics.gpu_submit, "--fetch-limit 5MB --outputs y")
    assert magics._request(opts, "y = 1").fetch_limit == 5_000_000
    assert magics._request(parse(magics.gpu_submit, ""), "y = 1").fetch_limit is None
    with pytest.raises(UsageError, match="fetch_limit: not a size: 'big'"):
        magics.gpu_submit("--fetch-limit big", "y = 1")


def test_files_over_the_fetch_limit_wait_until_asked_for(tmp_path):
    files = {
        "output.log": b"x" * 20_000,  # essentials come whatever their size
        "outputs/y.pkl": b"p" * 20_000,
        "outputs/small.txt": b"s" * 100,
        "outputs/big.bin": os.urandom(20_000),
    }
    job = make_job(tmp_path / "host/job1", files, fetch_limit="10KB", outputs=("y",))
    store = LocalResults(tmp_path / "results")
    manifest = collect(LocalTransport(), sys.executable, job, store)
    fetched = {e["path"]: e["fetched"] for e in manifest["files"]}
    assert fetched == {
        "output.log": True, "outputs/y.pkl": True, "outputs/small.txt": True,
        "outputs/big.bin": False,
    }  # fmt: skip
    assert not store.path(job.id, "outputs/big.bin").exists()
    path = fetch_file(LocalTransport(), job, store, "outputs/big.bin")
    assert path.read_bytes() == files["outputs/big.bin"]


def test_fetch_limit_end_to_end(env):
    code = "import os\nopen('../outputs/big.bin', 'wb').write(os.urandom(50_000))\ny = 1\n"
    request = GPUJobRequest.create(
        code=code, cluster=env.cluster_name, outputs=("y",), fetch_limit="20KB"
    )
    job = env.client.submit(request, {}, cwd=env.cwd)
    assert job.wait(timeout=60).status == JobStatus.COMPLETED, job.logs()
    files = {f["path"]: f for f in job.files()}
    assert files["outputs/y.pkl"]["fetched"] and not files["outputs/big.bin"]["fetched"]
    local = job.path("big.bin")
    assert local.stat().st_size == 50_000
    assert {f["path"]: f for f in job.files()}["outputs/big.bin"]["fetched"]
