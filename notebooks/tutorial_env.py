"""The world the tutorial notebooks run in, for nbval (``notebooks/conftest.py``) and for
``refresh.py`` alike, so that the committed outputs are what a test run prints.

A new user: HOME is a fresh folder, so gpu_magic's config, job store, results and the local
cluster's ``~/.gpu_magic/jobs`` all start empty and print as a user would see them; nothing of
the developer's own setup (``GPU_MAGIC_*``, ``GPU_CLUSTER_*``, XDG folders) leaks in. The SSH
tutorial's host is ``binder/demo_host.py`` (the user's own sshd on 127.0.0.1, alias
``gpu-demo``), exactly as Binder starts it. A notebook whose metadata says
``"gpu_magic": {"needs": ["slurm"]}`` also gets the test Slurm (``tests/harness/slurm.py``: one
node with four fake GPUs in a network namespace; root only) behind the alias ``slurm-login``,
its login node's key already trusted (trusting a key is ``02``'s lesson).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST_JOBS = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".gpu_magic" / "jobs"
"""Where the demo host puts job folders: its sessions' home is the account's own (sshd does not
take HOME from us), which is not the tutorial's HOME when the tests run as a real user."""
LEAKS = ("GPU_MAGIC_", "GPU_CLUSTER_", "XDG_", "JUPYTER_", "IPYTHONDIR", "MAX_CONCURRENT_JOBS")


def needs(notebook: Path) -> list[str]:
    """What a notebook needs beyond the demo host (its metadata ``gpu_magic.needs``)."""
    metadata = json.loads(notebook.read_text()).get("metadata", {})
    return metadata.get("gpu_magic", {}).get("needs", [])


def slurm_missing() -> str | None:
    """Why this machine cannot run the test Slurm, or None."""
    if os.geteuid() != 0:
        return "the Slurm tutorial needs root (the test Slurm runs in a network namespace)"
    return _slurm_harness().missing_packages()


def _slurm_harness():
    tests = str(HERE.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from harness import slurm

    return slurm


@functools.cache
def demo_host():
    """binder/demo_host.py as a module (it is a script, not part of the package), loaded once."""
    spec = importlib.util.spec_from_file_location(
        "demo_host", HERE.parent / "binder" / "demo_host.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TutorialEnv:
    """``enter()`` makes this process (and the kernels it starts) a new user with the demo
    host running; ``leave()`` stops the host and removes the folder."""

    def __init__(self) -> None:
        self.home: Path | None = None
        self._saved: dict[str, str] = {}
        self._host_jobs: set[str] = set()
        self._slurm = None

    def enter(self, needs: list[str] = ()) -> TutorialEnv:
        self._saved = dict(os.environ)
        self._host_jobs = set(os.listdir(HOST_JOBS)) if HOST_JOBS.is_dir() else set()
        self.home = Path(tempfile.mkdtemp(prefix="gpu_magic-tutorial-"))
        for name in list(os.environ):
            if name.startswith(LEAKS):
                del os.environ[name]
        os.environ["HOME"] = str(self.home)
        shutil.rmtree(HERE / "demo_data", ignore_errors=True)  # what a notebook made last run
        demo_host().start(demo_host().DEFAULT_PORT)
        if "slurm" in needs:
            self._start_slurm()
        return self

    def _start_slurm(self) -> None:
        self._slurm = _slurm_harness().SlurmCluster(self.home / ".test-slurm").start()
        login = self._slurm.login
        ssh = self.home / ".ssh"
        with open(ssh / "config", "a") as config:
            config.write(
                f"\nHost slurm-login\n    HostName {login.host}\n    Port {login.port}\n"
                f"    User root\n    IdentityFile {login.client_key}\n"
            )
        with open(ssh / "known_hosts", "a") as known:
            known.write(login.known_hosts_line() + "\n")

    def leave(self) -> None:
        if self.home is None:
            return
        demo_host().stop()
        if self._slurm is not None:
            self._slurm.stop()
            self._slurm = None
        if HOST_JOBS.is_dir() and self.home / ".gpu_magic" / "jobs" != HOST_JOBS:
            for made in set(os.listdir(HOST_JOBS)) - self._host_jobs:  # the demo host's jobs
                shutil.rmtree(HOST_JOBS / made, ignore_errors=True)
        os.environ.clear()
        os.environ.update(self._saved)
        shutil.rmtree(self.home, ignore_errors=True)
        self.home = None
