"""A real single-node Slurm for tests: munge, slurmctld, slurmd with fake GPUs, optionally MariaDB
and slurmdbd (so that ``sacct`` works), and a login node (a real sshd) to submit through.

Why a network namespace: the daemons bind 0.0.0.0 on fixed ports (6817-6819, 3306); in a
namespace of their own they clash with nothing, and two clusters (with and without accounting)
run side by side. Slurm resolves names with ``getaddrinfo(AI_ADDRCONFIG)``, which glibc answers
only when an IPv4 address other than 127.0.0.1 exists, hence ``127.0.0.2`` on the namespace's lo.

Why a veth pair: the login node's sshd must run inside the namespace (Slurm's client commands
reach slurmctld on the namespace's own 127.0.0.1), but the tests and the kernel run outside it.
A private /30 (from 10.231.0.0/16) joins the two namespaces; the sshd listens on the namespace's
end, and the test process connects there like to any remote login node. Jobs run under slurmd in
the namespace but share the file system and the PID namespace, so job folders are local paths.

Fake GPUs are character devices with NVIDIA's major number (195) that nothing opens; Slurm only
needs them to exist to hand them out and set ``CUDA_VISIBLE_DEVICES``. Every daemon is a child of
the test process (``-D``) that gets SIGTERM if the test process dies (``PR_SET_PDEATHSIG``), and
``stop()`` ends them by PID, newest first, after cancelling the cluster's jobs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

from gpu_magic.transport import LocalTransport
from gpu_magic.transport.base import quote_argv

from .netns import Netns, run
from .slurm_conf import GPUS, slurm_conf, slurmdbd_conf
from .sshd import SSHServer

SLURM_BINARIES = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged")
ACCOUNTING_BINARIES = ("/usr/sbin/slurmdbd", "/usr/sbin/mariadbd")
LOGIN_PORT = 2222
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def missing_packages(accounting: bool = False) -> str | None:
    """Why this machine cannot run the cluster (None: it can)."""
    if os.geteuid() != 0:
        return "the Slurm test cluster needs root (network namespaces, daemons)"
    needed = SLURM_BINARIES + (ACCOUNTING_BINARIES if accounting else ())
    absent = [b for b in needed if not Path(b).exists()]
    if absent:
        pkgs = "slurm-wlm munge" + (" slurmdbd mariadb-server" if accounting else "")
        return f"{', '.join(absent)} missing: apt-get install {pkgs} (make test does)"
    return None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, so no daemon outlives it."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_for(condition, timeout: float, what: str, log: Path | None = None) -> None:
    """Poll ``condition`` (bounded); fail with ``what`` and the log's tail."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} within {timeout:g}s\n{tail}")
        time.sleep(0.05)


class SlurmCluster:
    """``start()`` brings the cluster and its login sshd up; ``stop()`` takes both down."""

    def __init__(self, directory: Path, *, accounting: bool = False):
        self.dir = Path(directory).resolve()
        self.accounting = accounting
        self.name = f"gms{os.getpid()}{'a' if accounting else 'p'}"
        self.netns = Netns(self.name)
        self.conf = self.dir / "slurm.conf"
        self.logs = self.dir / "log"
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.login: SSHServer | None = None

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> SlurmCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for sub in ("state", "spool", "log", "fakedev", "munge"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.netns.create()
        self._fake_gpus()
        self._munge()
        self._write_config()
        if self.accounting:
            self._mariadb()
            self._slurmdbd()
        self._daemon("slurmctld", "/usr/sbin/slurmctld", "-D", "-c", "-f", str(self.conf))
        ping = lambda: "UP" in self.cmd("scontrol", "ping").stdout  # noqa: E731
        wait_for(ping, START_TIMEOUT_S, "slurmctld did not answer", self.logs / "slurmctld.log")
        self._daemon("slurmd", "/usr/sbin/slurmd", "-D", "-N", "localhost", "-f", str(self.conf))
        idle = lambda: self.cmd("sinfo", "-h", "-o", "%T").stdout.strip() == "idle"  # noqa: E731
        wait_for(idle, START_TIMEOUT_S, "the node did not become idle", self.logs / "slurmd.log")
        self._login()

    def stop(self) -> None:
        if self.login is not None:
            self.login.stop()
        if any(name == "slurmctld" for name, _ in self.procs):
            self._cancel_all()
        for name, proc in reversed(self.procs):
            _stop(name, proc)
        self.procs.clear()
        self.netns.delete()

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- for tests --------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def cmd(self, *argv: str, check: bool = False, timeout: float = 20):
        """Run a Slurm client command inside the namespace (as the login node would)."""
        return subprocess.run(
            [*self.netns.enter(), *argv], capture_output=True, text=True, env=self.env,
            check=check, timeout=timeout,
        )  # fmt: skip

    def cluster(self, base_path: Path, name: str = "slurm", **slurm):
        """A gpu_magic cluster that submits through the login node's sshd."""
        from gpu_magic.clusters import make_cluster

        fields = self.login.cluster(base_path, name=name).model_dump(exclude_none=True)
        return make_cluster(**{**fields, "scheduler": "slurm", "slurm": slurm})

    def queue(self) -> list[str]:
        return self.cmd("squeue", "-h", "-o", "%i").stdout.split()

    # -- pieces -----------------------------------------------------------------------------------
    def _daemon(self, name: str, *argv: str, inside: bool = True) -> subprocess.Popen:
        with open(self.logs / f"{name}.stderr", "ab") as err:
            proc = subprocess.Popen(
                [*(self.netns.enter() if inside else []), *argv], stdout=err, stderr=err,
                stdin=subprocess.DEVNULL, env=self.env, preexec_fn=_die_with_parent,
            )  # fmt: skip
        self.procs.append((name, proc))
        return proc

    def _fake_gpus(self) -> None:
        for i in range(GPUS):
            dev = self.dir / "fakedev" / f"nvidia{i}"
            if not dev.exists():
                os.mknod(dev, 0o666 | 0o020000, os.makedev(195, i))  # S_IFCHR

    def _munge(self) -> None:
        key = self.dir / "munge" / "munge.key"
        if not key.exists():
            run("mungekey", "-c", "-k", str(key))
            key.chmod(0o400)
        m = self.dir / "munge"
        self._daemon(
            "munged", "/usr/sbin/munged", "-F", "--force", f"--key-file={key}",
            f"-S{self.munge_socket}", f"--pid-file={m / 'munged.pid'}",
            f"--log-file={m / 'munged.log'}", f"--seed-file={m / 'munged.seed'}", inside=False,
        )  # fmt: skip
        wait_for(lambda: Path(self.munge_socket).exists(), 10, "munged did not start",
                 m / "munged.log")  # fmt: skip

    @property
    def munge_socket(self) -> str:
        return str(self.dir / "munge" / "munge.socket.2")

    def _write_config(self) -> None:
        self.conf.write_text(slurm_conf(self.dir, self.name, self.munge_socket, self.accounting))
        (self.dir / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName=localhost Name=gpu Type=h100 "
            f"File={self.dir}/fakedev/nvidia[0-{GPUS - 1}]\n"
        )
        if self.accounting:
            dbd = self.dir / "slurmdbd.conf"
            dbd.write_text(slurmdbd_conf(self.dir, self.munge_socket))
            dbd.chmod(0o600)

    def _mariadb(self) -> None:
        db = self.dir / "mariadb"
        if not (db / "data" / "mysql").exists():
            run(
                "mariadb-install-db", "--no-defaults", f"--datadir={db / 'data'}", "--user=root",
                "--auth-root-authentication-method=socket", "--skip-test-db", timeout=120,
            )  # fmt: skip
        sock = db / "mysqld.sock"
        self._daemon(
            "mariadbd", "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={db / 'data'}",
            f"--socket={sock}", "--bind-address=127.0.0.1", "--port=3306", "--user=root",
            f"--log-error={self.logs / 'mariadb.err'}", "--innodb-buffer-pool-size=32M",
            "--skip-log-bin", "--innodb-flush-log-at-trx-commit=0",
        )  # fmt: skip
        sql = ["mariadb", f"--socket={sock}", "-e"]
        wait_for(lambda: run(*sql, "select 1", check=False).returncode == 0, START_TIMEOUT_S,
                 "MariaDB did not answer", self.logs / "mariadb.err")  # fmt: skip
        run(*sql, "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw'; "
            "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")  # fmt: skip

    def _slurmdbd(self) -> None:
        log = self.logs / "slurmdbd.log"
        self._daemon("slurmdbd", "/usr/sbin/slurmdbd", "-D")  # finds slurmdbd.conf by SLURM_CONF
        wait_for(lambda: log.exists() and "started" in log.read_text(errors="replace"),
                 START_TIMEOUT_S, "slurmdbd did not start", log)  # fmt: skip
        self.cmd("sacctmgr", "-i", "add", "cluster", self.name, check=True)

    def _login(self) -> None:
        self.login = SSHServer(
            self.dir / "login", host=self.netns.inner_ip, port=LOGIN_PORT,
            netns=self.name, extra_config=(f"SetEnv SLURM_CONF={self.conf}",),
        ).start()  # fmt: skip

    def _cancel_all(self) -> None:
        """Cancel every job and wait (bounded) until slurmd has ended them all."""
        self.cmd("scancel", "--full", "--user=root")
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.queue() and time.monotonic() < deadline:
            time.sleep(0.1)


def _stop(name: str, proc: subprocess.Popen) -> None:
    """SIGTERM by PID, bounded wait, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(STOP_TIMEOUT_S)


class NetnsTransport(LocalTransport):
    """A LocalTransport whose commands run inside a cluster's namespace with its SLURM_CONF:
    what the notebook sees when it runs on the login node itself."""

    def __init__(self, cluster: SlurmCluster):
        self.cluster = cluster

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None):
        conf = f"SLURM_CONF={self.cluster.conf}"
        inside = quote_argv(*self.cluster.netns.enter(), "env", conf, "/bin/sh", "-c", command)
        return super().run(inside, stdin=stdin, timeout=timeout)
