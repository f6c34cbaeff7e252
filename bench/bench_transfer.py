"""SSHTransport vs OpenSSH on a loopback sshd: one big file, many small files, downloads.

Run: .venv/bin/python bench/bench_transfer.py [--size-mb 100] [--runs 3] [--small 1000]
         [--local-dir DIR]

Starts its own sshd (tests/harness/sshd.py) in a temporary directory, so it needs
/usr/sbin/sshd and root. Every figure is the median of ``--runs`` runs in MB/s (10^6 bytes/s),
OpenSSH and gpu_magic side by side in the same run, so the ratio is what to compare across
machines. Both ends share the CPU: on loopback the limit is encryption, not the network.

``--local-dir`` is where the downloads land (OpenSSH's and ours alike, so they stay
comparable); by default the temporary work folder, as the host's files; ``/dev/shm/...``
(tmpfs) measures the transfer without the local disk. The header line says what creating a
file costs there: right after many deletes (another bench, the test suite) ext4 makes each
create scan past the recently deleted inodes for a few minutes (see ``fresh_dir``), which
adds the same time per file to every method and so compresses the small-file ratios.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from harness.fixtures import make_settings  # noqa: E402
from harness.sshd import SSHServer  # noqa: E402
from timing import target  # noqa: E402

from gpu_magic.clusters import ClusterConfig  # noqa: E402
from gpu_magic.jobdir import JobDir  # noqa: E402
from gpu_magic.models import GPUJob, GPUJobRequest  # noqa: E402
from gpu_magic.packaging.bundle import Bundle  # noqa: E402
from gpu_magic.packaging.upload import upload_bundle  # noqa: E402
from gpu_magic.results import LocalResults, collect  # noqa: E402
from gpu_magic.results.download import download  # noqa: E402
from gpu_magic.results.download import file_sha256 as sha256  # noqa: E402
from gpu_magic.transport.base import quote_argv  # noqa: E402
from gpu_magic.transport.ssh import SSHTransport  # noqa: E402


@dataclass
class Bench:
    server: SSHServer
    transport: SSHTransport
    cluster: ClusterConfig
    work: Path
    local: Path  # where downloads land

    def openssh_options(self, port_flag: str) -> list[str]:
        return [
            *("-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"),
            *("-o", f"UserKnownHostsFile={self.server.known_hosts}"),
            *("-i", str(self.server.client_key), port_flag, str(self.server.port)),
        ]

    def scp(self, src: str, dst: str) -> None:
        subprocess.run(["scp", *self.openssh_options("-P"), src, dst], check=True)

    def sftp_batch(self, commands: str) -> None:
        batch = self.work / "sftp.batch"
        batch.write_text(commands)
        argv = ["sftp", *self.openssh_options("-P"), "-b", str(batch), "root@127.0.0.1"]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    def remote(self, path: Path) -> str:
        return f"root@127.0.0.1:{path}"


def median_seconds(fn: Callable[[int], None], runs: int, reset: Callable[[], None]) -> float:
    """Median wall time of ``fn(run)``; ``reset()`` runs untimed before each run."""
    samples = []
    for run in range(runs):
        reset()
        start = time.perf_counter()
        fn(run)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def paired_ratio(
    ours: Callable[[], None], theirs: Callable[[], None], runs: int, reset: Callable[[], None]
) -> float:
    """Median over runs of theirs/ours time (> 1: ours is faster), the two run back to back
    in each run, so a machine whose load drifts during the bench skews both alike."""
    ratios = []
    for run in range(runs):
        pair = [(theirs, 0), (ours, 1)] if run % 2 == 0 else [(ours, 1), (theirs, 0)]
        seconds = [0.0, 0.0]
        for fn, slot in pair:
            reset()
            start = time.perf_counter()
            fn()
            seconds[slot] = time.perf_counter() - start
        ratios.append(seconds[0] / seconds[1])
    return statistics.median(ratios)


SPENT = itertools.count()  # numbers the folders fresh_dir moved aside


def fresh_dir(path: Path) -> Callable[[], None]:
    """A reset that leaves ``path`` empty by moving the last run's folder aside, not deleting it.

    Deleting would skew the next runs: for a few minutes after a file is deleted, ext4 skips its
    inode when allocating (``recently_deleted`` in fs/ext4/ialloc.c), scanning past every such
    inode on each create; after a few thousand deletes a create costs ~0.7 ms of CPU, more than
    a 10 KB file's whole transfer. Spent folders go when the bench's temporary folder does.
    """

    def reset() -> None:
        if path.exists():
            path.rename(path.with_name(f".spent-{path.name}-{next(SPENT)}"))
        path.mkdir(parents=True)
        os.sync()  # earlier runs' dirty pages are written back now, not during the next run

    return reset


def create_cost_ms(folder: Path, count: int = 200) -> float:
    """Milliseconds to create one empty file in a new folder inside ``folder`` (left there)."""
    probe = folder / f".create-probe-{next(SPENT)}"
    probe.mkdir()
    start = time.perf_counter()
    for i in range(count):
        (probe / str(i)).touch()
    return (time.perf_counter() - start) * 1000 / count


def quiet_creates(folder: Path, limit_s: float = 120, quiet_ms: float = 0.1) -> float:
    """Wait (up to ``limit_s``) until creating a file in ``folder`` is cheap again; returns
    the last cost. A quiet ext4 takes ~0.03 ms; within a minute or so of many deletes (an
    earlier bench, the test suite) it takes up to ~1 ms (see ``fresh_dir``), which would add
    the same time per file to every method and compress the small-file ratios."""
    os.sync()  # the deleted inodes' table blocks clean: the kernel's window is then one minute
    deadline = time.monotonic() + limit_s
    cost = create_cost_ms(folder)
    while cost > quiet_ms and time.monotonic() < deadline:
        print(f"creating a file costs {cost:.2f} ms here (recent deletes); waiting", flush=True)
        time.sleep(10)
        cost = create_cost_ms(folder)
    return cost


def bench_big_upload(b: Bench, size: int, runs: int) -> list[tuple[str, float]]:
    src = b.work / "big.bin"
    write_random(src, size)
    dst_dir = b.work / "up"
    dst = dst_dir / "big.bin"
    reset = fresh_dir(dst_dir)

    def cold_put(_run: int) -> None:
        transport = SSHTransport(b.cluster, b.transport.settings)
        transport.put_file(src, str(dst))
        transport.close()

    rows = [
        ("OpenSSH scp put", median_seconds(lambda _: b.scp(str(src), b.remote(dst)), runs, reset)),
        ("put_file (warm connection)", median_seconds(put(b, src, dst), runs, reset)),
        ("put_file (new connection)", median_seconds(cold_put, runs, reset)),
        (
            "job upload (verified+atomic)",
            median_seconds(job_upload(b, [src], dst_dir), runs, reset),
        ),
    ]
    uploaded = dst_dir / f"job-{runs - 1}" / "code" / src.name  # the last row's last run
    assert sha256(uploaded) == sha256(src), "upload corrupted"
    return [(name, size / 1e6 / seconds) for name, seconds in rows]


def bench_shards_upload(b: Bench, size: int, runs: int) -> list[tuple[str, float]]:
    """Four files of ``size / 4`` bytes: one scp of the four vs the job upload (side by side,
    ``upload.LARGE_AT_ONCE``) and vs put_file of each in turn."""
    shards = [b.work / f"shard-{i}.bin" for i in range(4)]
    for shard in shards:
        write_random(shard, size // 4)
    dst_dir = b.work / "up-shards"
    reset = fresh_dir(dst_dir)

    def scp(_run: int) -> None:
        argv = ["scp", *b.openssh_options("-P"), *map(str, shards), b.remote(dst_dir) + "/"]
        subprocess.run(argv, check=True)

    def one_by_one(_run: int) -> None:
        for shard in shards:
            b.transport.put_file(shard, str(dst_dir / shard.name))

    rows = [
        ("OpenSSH scp put (one scp)", median_seconds(scp, runs, reset)),
        ("put_file, one after another", median_seconds(one_by_one, runs, reset)),
        ("job upload (side by side)", median_seconds(job_upload(b, shards, dst_dir), runs, reset)),
    ]
    return [(name, size / 1e6 / seconds) for name, seconds in rows]


def put(b: Bench, src: Path, dst: Path) -> Callable[[int], None]:
    expected = sha256(src)

    def run(_run: int) -> None:
        assert b.transport.put_file(src, str(dst)) == expected  # hashing while sending is timed

    return run


def job_upload(b: Bench, files: list[Path], dst_dir: Path) -> Callable[[int], None]:
    """The whole job-folder upload: tar of small files, SFTP of big ones, sha256 check, rename."""

    def run(run: int) -> None:
        bundle = Bundle(f"job-{run}")
        bundle.add("spec.json", b"{}")
        for path in files:
            bundle.add(f"code/{path.name}", source=path)
        upload_bundle(b.transport, bundle, JobDir(PurePosixPath(dst_dir / f"job-{run}")))

    return run


def bench_download(
    b: Bench, size: int, runs: int
) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """One ``size``-byte file: scp get vs get_file, a verified download() and a collect()."""
    src = b.work / "remote-big.bin"
    write_random(src, size)
    dst_dir = b.local / "down"
    dst = dst_dir / "big.bin"
    reset = fresh_dir(dst_dir)

    def verified(_run: int) -> None:
        """download(): the host's sha256sum runs while the bytes move into a .partial file
        (hashed as written), then check and rename."""

        def host_sha256() -> str:
            return b.transport.check("sha256sum", "--", str(src)).text.split()[0]

        download(b.transport, str(src), dst, dst_dir / ".partial" / "big.bin", size, host_sha256)

    job = job_folder(b.work / "job-big", {"big.bin": src})
    store = LocalResults(b.local / "results-big")
    rows = [
        ("OpenSSH scp get", median_seconds(lambda _: b.scp(b.remote(src), str(dst)), runs, reset)),
        ("get_file", median_seconds(lambda _: b.transport.get_file(str(src), dst), runs, reset)),
        ("download() verified", median_seconds(verified, runs, reset)),
        (
            "collect() verified",
            median_seconds(collection(b, job, store), runs, fresh_dir(store.root)),
        ),
    ]
    assert sha256(dst) == sha256(src), "download corrupted"
    assert sha256(store.path(job.id, "outputs/big.bin")) == sha256(src), "collect corrupted"
    scp = lambda: b.scp(b.remote(src), str(dst))  # noqa: E731
    pairs, reset_both = max(runs, 5), both(reset, fresh_dir(store.root))
    ratios = {
        "get_file": paired_ratio(lambda: b.transport.get_file(str(src), dst), scp, pairs, reset),
        "collect": paired_ratio(lambda: collection(b, job, store)(0), scp, pairs, reset_both),
    }
    return [(name, size / 1e6 / seconds) for name, seconds in rows], ratios


def both(*resets: Callable[[], None]) -> Callable[[], None]:
    return lambda: [reset() for reset in resets] and None


def job_folder(folder: Path, outputs: dict[str, Path]) -> GPUJob:
    """A finished job's folder on the host whose outputs/ holds ``outputs`` (hard links)."""
    (folder / "outputs").mkdir(parents=True)
    (folder / "output.log").write_text("done\n")
    for name, path in outputs.items():
        os.link(path, folder / "outputs" / name)
    request = GPUJobRequest.create(code="pass")
    return GPUJob(id=folder.name, request=request, cluster="bench", remote_dir=str(folder))


def collection(b: Bench, job: GPUJob, store: LocalResults) -> Callable[[int], None]:
    """Results collection end to end: listing on the host, transfer, sha256 checks, manifest."""

    def run(_run: int) -> None:
        manifest = collect(b.transport, sys.executable, job, store)
        assert all(entry["fetched"] for entry in manifest["files"])

    return run


def bench_small_download(b: Bench, count: int, size: int, runs: int) -> list[tuple[str, float]]:
    """sftp -b get of ``count`` small files vs collecting a job that left them in outputs/."""
    src = small_sources(b, count, size)
    names = sorted(p.name for p in src.iterdir())
    dst = b.local / "small-down"
    job = job_folder(b.work / "job-small", {name: src / name for name in names})
    store = LocalResults(b.local / "results-small")

    def get_each(_run: int) -> None:
        for name in names:
            b.transport.get_file(str(src / name), dst / name)

    sftp = f"lcd {dst}\ncd {src}\nget *\n"
    rows = [
        ("OpenSSH sftp -b get", median_seconds(lambda _: b.sftp_batch(sftp), runs, fresh_dir(dst))),
        ("get_file per file", median_seconds(get_each, runs, fresh_dir(dst))),
        (
            "collect() verified",
            median_seconds(collection(b, job, store), runs, fresh_dir(store.root)),
        ),
    ]
    landed = store.folder(job.id) / "outputs"
    assert sorted(p.name for p in landed.iterdir()) == names
    assert all((landed / n).read_bytes() == (src / n).read_bytes() for n in names)
    ratio = paired_ratio(
        lambda: collection(b, job, store)(0),
        lambda: b.sftp_batch(sftp),
        max(runs, 5),
        both(fresh_dir(dst), fresh_dir(store.root)),
    )
    return [(name, count * size / 1e6 / seconds) for name, seconds in rows], ratio


def small_sources(b: Bench, count: int, size: int) -> Path:
    """The folder of ``count`` random ``size``-byte files both small-file cases move (written
    by the first to ask)."""
    src = b.work / "small"
    if not src.exists():
        src.mkdir()
        for i in range(count):
            (src / f"f{i:05d}.bin").write_bytes(os.urandom(size))
    return src


def bench_small_files(b: Bench, count: int, size: int, runs: int) -> list[tuple[str, float]]:
    src = small_sources(b, count, size)
    names = sorted(p.name for p in src.iterdir())
    files = [src / name for name in names]
    dst = b.work / "small-up"
    reset = fresh_dir(dst)

    def tar_stream(_run: int) -> None:
        command = quote_argv("tar", "-x", "-C", str(dst))
        with b.transport.stream_to(command) as stdin, tarfile.open(fileobj=stdin, mode="w|") as tar:
            for name in names:
                tar.add(src / name, arcname=name)

    def put_each(_run: int) -> None:
        for name in names:
            b.transport.put_file(src / name, str(dst / name))

    sftp = f"lcd {src}\ncd {dst}\nput *\n"
    rows = [
        ("OpenSSH sftp -b put", median_seconds(lambda _: b.sftp_batch(sftp), runs, reset)),
        ("put_file per file", median_seconds(put_each, runs, reset)),
        ("tar stream via stream_to", median_seconds(tar_stream, runs, reset)),
        ("job upload (verified+atomic)", median_seconds(job_upload(b, files, dst), runs, reset)),
    ]
    landed = dst / f"job-{runs - 1}" / "code"  # the last row's last run
    assert sorted(p.name for p in landed.iterdir()) == names
    assert all((landed / n).read_bytes() == (src / n).read_bytes() for n in names[:: count // 10])
    return [(name, count * size / 1e6 / seconds) for name, seconds in rows]


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))
        f.write(os.urandom(size % (1 << 20)))


def print_table(title: str, rows: list[tuple[str, float]]) -> None:
    baseline = rows[0][1]
    print(f"\n{title}")
    print(f"| {'method':<28} | {'MB/s':>7} | {'vs ' + rows[0][0]:>22} |")
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 24}|")
    for name, rate in rows:
        print(f"| {name:<28} | {rate:7.1f} | {rate / baseline:21.2f}x |")


@contextmanager
def local_dir(path: Path | None) -> Iterator[Path | None]:
    """``path`` made for this run's downloads (a fresh folder inside it), removed afterwards."""
    if path is None:
        yield None
        return
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-transfer-local-", dir=path) as tmp:
        yield Path(tmp)


def filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (e.g. ext4, tmpfs)."""
    argv = ["findmnt", "-n", "-o", "FSTYPE", "--target", str(path)]
    try:
        found = subprocess.run(argv, capture_output=True, text=True).stdout.split()
    except OSError:
        found = []
    return found[0] if found else "?"  # the topmost of stacked mounts comes first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small", type=int, default=1000, help="number of 10 KB files")
    parser.add_argument("--skip-download", action="store_true")
    parser.add_argument("--skip-upload", action="store_true")
    parser.add_argument(
        "--local-dir",
        type=Path,
        help="where downloads land (created, emptied afterwards; default: the work folder)",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp,
        local_dir(args.local_dir) as local,
    ):
        work = Path(tmp)
        local = local or work
        with SSHServer(work / "sshd") as server:
            settings = make_settings(work, known_hosts_path=server.known_hosts)
            cluster = ClusterConfig(
                name="bench", host="127.0.0.1", port=server.port, user="root",
                key=str(server.client_key),
            )  # fmt: skip
            transport = SSHTransport(cluster, settings)
            transport.run("true").check()
            b = Bench(server, transport, cluster, work, local)
            costs = {folder: quiet_creates(folder) for folder in {work, local}}
            print(
                f"loopback sshd, {os.cpu_count()} CPUs, cipher {transport.cipher}, "
                f"downloads land in {local} ({filesystem(local)}, "
                f"{costs[local]:.2f} ms to create a file)"
            )
            print(f"median of {args.runs} runs, MB/s = 10^6 bytes per second")
            if not args.skip_upload:
                bench_uploads(b, args)
            if not args.skip_download:
                bench_downloads(b, args)
            transport.close()


def bench_uploads(b: Bench, args: argparse.Namespace) -> None:
    size = args.size_mb * 1_000_000
    big_up = bench_big_upload(b, size, args.runs)
    print_table(f"upload, one {args.size_mb} MB file", big_up)
    small = bench_small_files(b, args.small, 10_000, args.runs)
    print_table(f"upload, {args.small} x 10 KB files", small)
    print_table(  # after the others, whose conditions it would change (100 MB more written)
        f"upload, 4 files of {args.size_mb // 4} MB",
        bench_shards_upload(b, size, args.runs),
    )
    up, many_up = big_up[1][1] / big_up[0][1], small[-1][1] / small[0][1]
    target(f"{args.size_mb} MB upload vs scp", f"{up:.2f}x", ">= 1.5x", up >= 1.5)
    case = f"{args.small} x 10 KB upload (job upload) vs sftp -b"
    target(case, f"{many_up:.2f}x", ">= 2x", many_up >= 2)


def bench_downloads(b: Bench, args: argparse.Namespace) -> None:
    rows, big = bench_download(b, args.size_mb * 1_000_000, args.runs)
    print_table(f"download, one {args.size_mb} MB file", rows)
    down = big["get_file"]  # paired runs: scp's pace on this machine varies by half between runs
    case = f"{args.size_mb} MB download (get_file, paired runs) vs scp"
    target(case, f"{down:.2f}x", ">= 1.2x", down >= 1.2)
    many, small = bench_small_download(b, args.small, 10_000, args.runs)
    print_table(f"download, {args.small} x 10 KB files", many)
    print("\nverified collection, paired runs (targets: >= 1.0x, >= 2.0x)")
    print(f"  one {args.size_mb} MB file vs OpenSSH scp get:   {big['collect']:.2f}x")
    print(f"  {args.small} x 10 KB files vs OpenSSH sftp -b get: {small:.2f}x")


if __name__ == "__main__":
    main()
