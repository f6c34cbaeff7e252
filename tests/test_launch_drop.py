"""A connection that drops while the launch command runs: "it may or may not have run" is
resolved by looking at the job folder, never by guessing ``failed``, and nothing runs twice.

The drop is injected at our own transport seam, on the real local host and the real sshd: the
launch command runs on the host (or does not reach it), then its answer is lost."""

from __future__ import annotations

import pytest
from harness.clients import local_settings
from harness.spy import DelegatingTransport

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.errors import ClusterConnectionError
from gpu_magic.transport import LocalTransport

pytestmark = pytest.mark.timeout(120)


class DroppedLaunch(DelegatingTransport):
    """Loses the answer of the first ``drops`` launch commands: after the host ran them, or,
    with ``reach=False``, before they reached it."""

    def __init__(self, real, drops: int, reach: bool = True):
        super().__init__(real)
        self.drops, self.reach, self.launches = drops, reach, 0

    def run(self, command, *, stdin=None, timeout=None):
        if "setsid nohup" not in command or self.drops == 0:
            return super().run(command, stdin=stdin, timeout=timeout)
        self.drops -= 1
        self.launches += 1
        if self.reach:
            super().run(command, stdin=stdin, timeout=timeout)
        raise ClusterConnectionError(
            f"connection to {self.label} failed while running the launch "
            "(it may or may not have run): EOF"
        )


@pytest.fixture(params=["local", "ssh", "slurm"])
def host(request, tmp_path):
    """(settings, cluster name, the real transport) of the local host, the real sshd or the
    real Slurm's login node (where the launch is ``sbatch``)."""
    if request.param == "local":
        settings = local_settings(tmp_path)
        return settings, "local", LocalTransport()
    ssh_env = request.getfixturevalue("ssh_env" if request.param == "ssh" else "slurm_env")
    Client(ssh_env.settings).clusters.add(ssh_env.cluster)
    return ssh_env.settings, ssh_env.cluster.name, ssh_env.transport()


def run_once_code(tmp_path) -> tuple[str, object]:
    mark = tmp_path / "ran.txt"
    return f"open({str(mark)!r}, 'a').write('ran\\n')", mark


def test_a_launch_whose_answer_was_lost_is_asked_again_and_runs_once(host, tmp_path):
    settings, cluster, real = host
    dropping = DroppedLaunch(real, drops=1)
    client = Client(settings, transports={cluster: dropping})
    code, mark = run_once_code(tmp_path)
    try:
        job = client.submit(GPUJobRequest.create(code=code, cluster=cluster)).wait(60)
        assert job.status == JobStatus.COMPLETED
        assert mark.read_text() == "ran\n"  # launched twice, run once
        assert dropping.launches == 1
    finally:
        client.close()


def test_when_every_launch_answer_is_lost_the_folder_says_it_ran(host, tmp_path):
    settings, cluster, real = host
    client = Client(settings, transports={cluster: DroppedLaunch(real, drops=99)})
    code, mark = run_once_code(tmp_path)
    try:
        with pytest.raises(ClusterConnectionError, match="may or may not have run"):
            client.submit(GPUJobRequest.create(code=code, cluster=cluster, name="unsure"))
        (job,) = client.store.list()
        assert job.status == JobStatus.QUEUED and "launch unconfirmed" in job.reason
        done = client.wait(job.id, timeout=60)  # the next looks find it ran, and ended
        assert done.status == JobStatus.COMPLETED and done.exit_code == 0
        assert mark.read_text() == "ran\n"
    finally:
        client.close()


def test_a_launch_that_never_reached_the_host_is_failed_by_looking(host, tmp_path):
    settings, cluster, real = host
    client = Client(settings, transports={cluster: DroppedLaunch(real, drops=99, reach=False)})
    code, mark = run_once_code(tmp_path)
    try:
        with pytest.raises(ClusterConnectionError):
            client.submit(GPUJobRequest.create(code=code, cluster=cluster))
        (job,) = client.store.list()
        seen = client.job(job.id)  # one look at the folder: no launch marker, no process
        assert seen.status == JobStatus.FAILED
        assert "never launched" in seen.reason or "never submitted" in seen.reason
        assert not mark.exists()
    finally:
        client.close()
