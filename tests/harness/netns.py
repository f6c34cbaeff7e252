"""A network namespace for test daemons, joined to this namespace by a veth pair.

The namespace has lo with 127.0.0.1 and 127.0.0.2 (Slurm resolves names with
``getaddrinfo(AI_ADDRCONFIG)``, which glibc answers only when an IPv4 address other than 127.0.0.1
exists) and one end of a veth pair; the other end stays here. The pair gets a private /30 from
10.231.0.0/16 that no interface of this machine uses, so a test process here reaches a server in
the namespace like a remote host. Names are ``gms<pid of the test process><tag>``; a namespace
whose test process is gone and that holds no process is removed by the next ``create()``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from pathlib import Path

SUBNET = ipaddress.ip_network("10.231.0.0/16")


def run(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


class Netns:
    """A network namespace with lo (127.0.0.1 + 127.0.0.2) and a veth pair to this namespace."""

    def __init__(self, name: str):
        self.name = name
        self.path = f"/run/netns/{name}"
        self.outer_ip = self.inner_ip = ""
        self.outer, self.inner = f"{name}h", f"{name}n"  # the veth ends: here, in there

    def create(self) -> Netns:
        _sweep_stale()
        run("ip", "netns", "add", self.name)
        run("ip", "-n", self.name, "link", "set", "lo", "up")
        run("ip", "-n", self.name, "addr", "add", "127.0.0.2/8", "dev", "lo")
        outer, inner = self.outer, self.inner
        run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", self.name)
        net = _free_slash30()
        self.outer_ip, self.inner_ip = str(net[1]), str(net[2])
        run("ip", "addr", "add", f"{self.outer_ip}/30", "dev", outer)
        run("ip", "link", "set", outer, "up")
        run("ip", "-n", self.name, "addr", "add", f"{self.inner_ip}/30", "dev", inner)
        run("ip", "-n", self.name, "link", "set", inner, "up")
        return self

    def enter(self) -> list[str]:
        """The argv prefix that runs a command inside (``nsenter``: unlike ``ip netns exec`` it
        keeps /sys/fs/cgroup, which slurmd needs)."""
        return ["nsenter", f"--net={self.path}"]

    def delete(self) -> None:
        """Deleting the namespace also deletes the veth pair."""
        run("ip", "netns", "del", self.name, check=False)


def _sweep_stale() -> None:
    """Remove namespaces of this harness whose test process is gone (named ``gms<pid><tag>``)."""
    for entry in Path("/run/netns").glob("gms*") if Path("/run/netns").exists() else ():
        owner = re.match(r"gms(\d+)", entry.name)
        stale = owner is not None and not Path(f"/proc/{owner[1]}").exists()
        if stale and not run("ip", "netns", "pids", entry.name, check=False).stdout.strip():
            run("ip", "netns", "del", entry.name, check=False)


def _free_slash30() -> ipaddress.IPv4Network:
    """A /30 of SUBNET that no interface of this machine uses (start from our PID)."""
    used = run("ip", "-4", "-o", "addr", "show").stdout
    nets = list(SUBNET.subnets(new_prefix=30))
    start = os.getpid() % len(nets)
    for i in range(len(nets)):
        net = nets[(start + i) % len(nets)]
        if f" {net[1]}/" not in used and f" {net[2]}/" not in used:
            return net
    raise RuntimeError(f"no free /30 left in {SUBNET}")
