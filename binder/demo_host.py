#!/usr/bin/env python3
"""A pretend GPU host on this machine, for the SSH tutorial (notebooks/02-ssh-gpu-host.ipynb).

Binder (and our CI, which replays Binder's recipe) has no GPU box to ssh into, so this starts
the user's own ``sshd`` on 127.0.0.1 (no root needed: an unprivileged sshd lets in only the
user who started it) and adds the alias ``gpu-demo`` to ``~/.ssh/config``, the way a user's own
GPU host would be set up. Its sessions get ``GPU_MAGIC_NVIDIA_SMI`` pointing at the
``nvidia-smi`` stand-in that replays a real 4x H100 capture (tests/fakes/nvidia-smi), so
``--gpus`` has GPUs to choose from. The host key is deliberately NOT trusted here: trusting it
is a step of the tutorial.

    python binder/demo_host.py start [--port 2222]   # idempotent; prints the alias
    python binder/demo_host.py stop

Standard library only: it runs before (and without) gpu_magic being installed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ALIAS = "gpu-demo"
DEFAULT_PORT = 2222
REPO = Path(__file__).resolve().parent.parent
NVIDIA_SMI = REPO / "tests" / "fakes" / "nvidia-smi"
START_TIMEOUT_S = 10.0


def state_dir() -> Path:
    return Path.home() / ".gpu_magic_demo_host"


def client_key() -> Path:
    return Path.home() / ".ssh" / "gpu_demo_ed25519"


def sshd_binary() -> str:
    found = shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if Path(p).exists()), None
    )
    if found is None:
        raise SystemExit(
            "demo_host: sshd is not installed (Debian: apt-get install openssh-server)"
        )
    return found


def keygen(path: Path, comment: str) -> None:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
        )


def sshd_config(port: int) -> str:
    """Keys only, loopback only; sessions see the replayed nvidia-smi."""
    here = state_dir()
    return "\n".join([
        f"ListenAddress 127.0.0.1:{port}",
        f"HostKey {here / 'host_ed25519'}",
        f"AuthorizedKeysFile {here / 'authorized_keys'}",
        f"PidFile {here / 'sshd.pid'}",
        f"SetEnv GPU_MAGIC_NVIDIA_SMI={NVIDIA_SMI}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "StrictModes no",
        "Subsystem sftp internal-sftp",
        "",
    ])  # fmt: skip


def alias_block(port: int) -> str:
    return (
        f"Host {ALIAS}\n"
        "    HostName 127.0.0.1\n"
        f"    Port {port}\n"
        f"    User {getpass.getuser()}\n"
        f"    IdentityFile ~/.ssh/{client_key().name}\n"
    )


def add_alias(port: int) -> None:
    """Append the ``gpu-demo`` block to ~/.ssh/config unless it is there."""
    config = Path.home() / ".ssh" / "config"
    config.parent.mkdir(mode=0o700, exist_ok=True)
    text = config.read_text() if config.exists() else ""
    if f"Host {ALIAS}\n" not in text:
        separator = "\n" if text and not text.endswith("\n\n") else ""
        config.write_text(text + separator + alias_block(port))
        config.chmod(0o600)


def running_pid() -> int | None:
    try:
        pid = int((state_dir() / "sshd.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start(port: int) -> None:
    here = state_dir()
    here.mkdir(mode=0o700, exist_ok=True)
    keygen(here / "host_ed25519", "gpu-demo-host")
    keygen(client_key(), "gpu-demo-user")
    (here / "authorized_keys").write_text(client_key().with_suffix(".pub").read_text())
    (here / "sshd_config").write_text(sshd_config(port))
    add_alias(port)
    if running_pid() is None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # root's privilege separation
        log = here / "sshd.log"
        subprocess.run(
            [sshd_binary(), "-f", str(here / "sshd_config"), "-E", str(log)], check=True
        )  # it daemonizes once it listens
    deadline = time.monotonic() + START_TIMEOUT_S
    while not accepts(port):
        if time.monotonic() > deadline:
            raise SystemExit(f"demo_host: sshd does not answer on port {port}; see {log}")
        time.sleep(0.05)
    print(f"demo_host: ssh alias {ALIAS} -> 127.0.0.1:{port} as {getpass.getuser()}")


def stop() -> None:
    pid = running_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        print(f"demo_host: stopped sshd {pid}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    opts = parser.parse_args(argv)
    start(opts.port) if opts.action == "start" else stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
