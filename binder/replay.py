#!/usr/bin/env python3
"""Replay Binder's recipe here, as Binder runs it, and run the first two tutorials
(``make binder-check``).

Binder builds the repository as an unprivileged user (``jovyan``, HOME its own) with the
packages of ``apt.txt``, runs ``postBuild`` from the repository's root, and starts the server
through ``start``. This does the same with a fresh venv standing in for Binder's conda
environment (``environment.yml`` gives Python and Node.js; this machine has both): a user
``gpu-binder`` whose home is a new empty folder, a copy of the working tree (what git would
push: tracked and untracked-but-not-ignored files), ``postBuild``, then ``start`` wrapped
around executing ``01-quickstart`` and ``02-ssh-gpu-host`` with nbconvert, which fails on any
cell error that is not the lesson (cells tagged ``raises-exception``). Needs root (to make the
user); standard library only.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
USER = "gpu-binder"
PYTHON = "/usr/bin/python3"
"""The system's Python makes the venv: the new user may not read the Python running this."""
NOTEBOOKS = ("notebooks/01-quickstart.ipynb", "notebooks/02-ssh-gpu-host.ipynb")
EXECUTE = [
    "jupyter", "nbconvert", "--to", "notebook", "--execute", "--output-dir", "executed",
    "--ExecutePreprocessor.timeout=300", "--ExecutePreprocessor.store_widget_state=False",
]  # fmt: skip


def step(what: str, command: list[str], **kwargs) -> None:
    started = time.monotonic()
    print(f"binder replay: {what} ...", flush=True)
    subprocess.run(command, check=True, **kwargs)
    print(f"binder replay: {what}: ok ({time.monotonic() - started:.0f} s)", flush=True)


def apt_packages() -> None:
    """``apt.txt``, as Binder installs it (here: checked, installed when missing)."""
    wanted = (REPO / "binder" / "apt.txt").read_text().split()
    installed = [
        p for p in wanted if not subprocess.run(["dpkg", "-s", p], capture_output=True).returncode
    ]
    missing = [p for p in wanted if p not in installed]
    if missing:
        step("apt.txt", ["apt-get", "install", "-y", "-qq", *missing],
             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip


def fresh_user(home: Path) -> pwd.struct_passwd:
    """The unprivileged user, its home a new empty folder (sshd's sessions start there)."""
    try:
        pwd.getpwnam(USER)
        subprocess.run(["usermod", "--home", str(home), USER], check=True)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--shell", "/bin/bash", "--home-dir", str(home), USER],
            check=True,
        )
    home.mkdir(mode=0o700)
    user = pwd.getpwnam(USER)
    os.chown(home, user.pw_uid, user.pw_gid)
    return user


def copy_tree(dest: Path, user: pwd.struct_passwd) -> None:
    """What Binder receives: the working tree less what git ignores."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / os.fsdecode(name)
        if source.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(dest)], check=True)


@functools.cache
def pip_environment() -> dict[str, str]:
    """This machine's pip settings (its package mirror), which the new user cannot read from
    root's own pip.conf, as PIP_* variables."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    env = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.split(".", 1)[-1].upper().replace("-", "_")
        env[f"PIP_{name}"] = value.strip().strip("'\"")
    return env


def as_user(user: pwd.struct_passwd, venv: Path) -> list[str]:
    path = f"{venv}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    env = {"HOME": user.pw_dir, "USER": USER, "LOGNAME": USER, "PATH": path, "LANG": "C.UTF-8"}
    env.update(pip_environment())
    return ["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items())]


def main() -> int:
    if os.geteuid() != 0:  # like the Slurm tests without Slurm: said, not failed
        print("binder replay: SKIPPED: it needs root, to make the unprivileged user gpu-binder")
        return 0
    started = time.monotonic()
    apt_packages()
    root = Path(tempfile.mkdtemp(prefix="gpu_magic-binder-"))
    root.chmod(0o755)
    venv = root / "home" / "venv"
    try:
        user = fresh_user(root / "home")
        repo = root / "home" / "repo"
        copy_tree(repo, user)
        run = as_user(user, venv)
        step("fresh venv", [*run, PYTHON, "-m", "venv", str(venv)], cwd=repo)
        # environment.yml's pip is current; a venv's bundled one may predate the wheel format
        step("current pip", [*run, "python", "-m", "pip", "install", "-q", "--upgrade", "pip"])
        step("postBuild", [*run, "bash", "binder/postBuild"], cwd=repo)
        step("start + the tutorials", [*run, "binder/start", *EXECUTE, *NOTEBOOKS], cwd=repo)
    except subprocess.CalledProcessError as exc:
        print(f"binder replay: FAILED: {' '.join(map(str, exc.cmd[-3:]))} exited {exc.returncode}")
        return 1
    finally:
        stop = root / "home" / "repo" / "binder" / "demo_host.py"
        if stop.exists():  # the demo host that start left running
            subprocess.run([*as_user(pwd.getpwnam(USER), venv), "python3", str(stop), "stop"])
        shutil.rmtree(root, ignore_errors=True)
    print(f"binder replay: all ok in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
