"""Real network faults for tests: an sshd across a link that can be cut, and stopped outright.

``FarHost`` runs a real sshd inside a network namespace of its own, reached over a veth pair
like a host across a network. ``cut()`` makes that link drop every packet both ways: a
partition, where nothing is refused and nothing answers (a link taken down is reported by the
kernel at once, which is not what a broken network does). The drop is a token-bucket qdisc
whose bucket holds one byte on both ends, so no packet ever fits (``netem loss 100%`` would
say it better, but not every kernel has netem: CI's container does not). ``heal()`` lets
packets through again. ``stop_sshd()`` kills the listener and every connection (a restart,
an sshd upgrade); ``start_sshd()`` brings it back on the same address and host key.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

from .netns import Netns, run
from .sshd import SSHServer

PORT = 22  # the namespace's ports are its own


_made = itertools.count()


class FarHost:
    def __init__(self, directory: Path):
        self.dir = Path(directory)
        # a name of its own each time: a deleted namespace's veth pair goes away asynchronously
        self.netns = Netns(f"gms{os.getpid()}f{next(_made) % 100}")
        self.server: SSHServer | None = None
        self.is_cut = False

    def start(self) -> FarHost:
        self.netns.create()
        try:
            self.start_sshd()
        except BaseException:
            self.netns.delete()
            raise
        return self

    def stop(self) -> None:
        self.heal()
        self.stop_sshd()
        self.netns.delete()

    # -- faults -----------------------------------------------------------------------------
    def cut(self) -> None:
        """Every packet between here and the host is dropped from now on, both ways."""
        drop = ("root", "tbf", "rate", "1kbit", "burst", "1", "limit", "1")
        run("tc", "qdisc", "add", "dev", self.netns.outer, *drop)
        run("tc", "-n", self.netns.name, "qdisc", "add", "dev", self.netns.inner, *drop)
        self.is_cut = True

    def heal(self) -> None:
        if not self.is_cut:
            return
        run("tc", "qdisc", "del", "dev", self.netns.outer, "root", check=False)
        run("tc", "-n", self.netns.name, "qdisc", "del", "dev", self.netns.inner, "root",
            check=False)  # fmt: skip
        self.is_cut = False

    def stop_sshd(self) -> None:
        """The listener and every connection's processes gone: sshd is down (jobs run on)."""
        if self.server is not None:
            self.server.drop_connections()
            self.server.stop()

    def start_sshd(self) -> None:
        self.server = SSHServer(
            self.dir / "sshd", host=self.netns.inner_ip, port=PORT, netns=self.netns.name
        ).start()

    # -- what a client needs ----------------------------------------------------------------
    def known_hosts_line(self) -> str:
        """Port 22 is written without brackets in known_hosts."""
        return f"{self.server.host} {self.server.host_public_key}"

    def cluster(self, base_path: Path, name: str = "far"):
        from gpu_magic.clusters import ClusterConfig

        return ClusterConfig(
            name=name,
            host=self.server.host,
            port=PORT,
            user="root",
            key=str(self.server.client_key),
            base_path=str(base_path),
            python=sys.executable,
        )
