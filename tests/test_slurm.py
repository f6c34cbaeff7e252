"""Slurm-only behaviour against the real test cluster (``harness/slurm.py``): GPUs Slurm hands
out, its time limit, a queue behind a full node, scancel, sbatch's refusals, job arrays, the
login-node (LocalTransport) path, and the final state with and without accounting.

The behavioural suite (``test_jobs.py``) also runs on this cluster through the ``env`` fixture.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from harness.procs import wait_until

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.errors import InvalidRequestError, SchedulerError
from gpu_magic.resources import Resources

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent


def client_for(env) -> Client:
    client = Client(env.settings)
    client.clusters.add(env.cluster)
    return client


def submit(client: Client, code: str, **fields):
    name = next(n for n in client.clusters.all() if n.startswith("slurm"))
    return client.submit(GPUJobRequest.create(code=code, cluster=name, **fields), {})


@pytest.fixture
def client(slurm_env):
    client = client_for(slurm_env)
    yield client
    for job in client.store.list(active_only=True):
        client.cancel(job.id)
    client.close()


@pytest.fixture(scope="session")
def overtime(slurm, tmp_path_factory):
    """A job past its 1-minute ``--time``. Slurm enforces limits every 30 s, so it takes 60-90 s
    to end: ``harness.slurm_fixtures`` runs the test that submits it first in the session and
    the one that checks it last, and the rest of the suite runs meanwhile."""
    from harness.fixtures import make_settings

    tmp = tmp_path_factory.mktemp("overtime")
    settings = make_settings(tmp)
    settings.known_hosts_path.write_text(slurm.login.known_hosts_line() + "\n")
    (tmp / "remote").mkdir()
    client = Client(settings)
    client.clusters.add(slurm.cluster(tmp / "remote", name="slurm-overtime"))
    code = "import time\nprint('started', flush=True)\ntime.sleep(300)"
    handle = submit(client, code, resources=Resources(time="1"))
    yield client, handle
    client.close()


def test_overtime_job_is_submitted_first(overtime):
    client, handle = overtime
    assert client.job(handle.id).status in (JobStatus.QUEUED, JobStatus.RUNNING)


def test_two_gpus_and_telemetry_of_only_those(client):
    """Slurm picks the GPUs (one is held by another job); the sampler samples only them."""
    holder = submit(client, "import time\ntime.sleep(300)", gpus=1)
    assert wait_until(lambda: holder.status == JobStatus.RUNNING, timeout=30)
    assert holder.job.reason == f"Slurm job {holder.job.scheduler_id} running on localhost"
    fake = {
        "PATH": f"{ROOT / 'fakes'}:{os.environ['PATH']}",
        "FAKE_NVIDIA_SMI_DIR": str(ROOT / "fixtures" / "nvidia_smi" / "h100x4"),
        "GPU_MAGIC_GPU_SAMPLE_INTERVAL": "0.2",
    }
    code = "import os, time\ndevices = os.environ['CUDA_VISIBLE_DEVICES']\ntime.sleep(1.5)"
    job = submit(client, code, gpus=2, env=fake, outputs=("devices",))
    devices = job.wait(timeout=60).fetch()["devices"].split(",")
    assert len(devices) == 2
    sampled = {str(sample.index) for sample in client.feed(job.id).gpu_samples()}
    assert sampled == set(devices)
    held = Path(holder.job.remote_dir)
    assert not (held / "gpu.csv").exists()  # gpus=1 but no fake nvidia-smi on its PATH
    holder.cancel()


def test_queued_behind_a_full_node_with_reason_then_runs(client):
    full = submit(client, "import time\ntime.sleep(300)", gpus=4)
    assert wait_until(lambda: full.status == JobStatus.RUNNING, timeout=30)
    waiting = submit(client, "y = 1", gpus=1, outputs=("y",))
    assert wait_until(lambda: "Resources" in (waiting.job.reason or ""), timeout=30)
    record = waiting.job
    assert record.status == JobStatus.QUEUED
    assert f"Slurm job {record.scheduler_id} pending" in record.reason
    assert "1 of 1 pending in debug" in record.reason
    look = client.host(record.cluster).scheduler.look([record])[record.id]
    assert look.observation.pending_reason == "Resources"
    assert look.observation.queue_position == (1, 1)
    assert [(job.id, why) for job, why in client.queue()] == [(record.id, record.reason)]
    full.cancel()
    assert waiting.wait(timeout=60).fetch() == {"y": 1}


def test_scancel_a_queued_job(client, slurm):
    blocked = submit(client, "pass", resources=Resources(sbatch={"begin": "now+1hour"}))
    assert blocked.status == JobStatus.QUEUED
    slurm_id = blocked.job.scheduler_id
    blocked.cancel()
    record = blocked.job
    assert (record.status, record.reason) == (JobStatus.CANCELLED, "cancelled by user")
    assert "CANCELLED" in slurm.cmd("squeue", "-h", "-t", "all", "-j", slurm_id, "-o", "%T").stdout
    assert not (Path(record.remote_dir) / "state" / "exit_code").exists()  # it never ran


def test_killed_batch_step_is_failed_not_lost(client):
    """Where the process scheduler reports ``lost`` (its process group vanished without an exit
    code), Slurm saw the batch step die and says so."""
    import signal

    job = submit(client, "import time\ntime.sleep(60)")
    group = int(wait_for_file(Path(job.job.remote_dir) / "state" / "pid"))
    os.killpg(group, signal.SIGKILL)  # no trap runs: run.sh writes no exit code
    record = client.wait(job.id, timeout=60)
    assert record.status == JobStatus.FAILED
    assert "signal 9" in record.reason and "run.sh wrote no exit code" in record.reason


CHECKPOINTS_ON_TERM = """
import os, signal, sys, time
def save_and_stop(signum, frame):
    open(os.path.join(os.environ["GPU_MAGIC_CHECKPOINTS"], "ckpt-7"), "w").write("7")
    print("checkpoint saved on SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, save_and_stop)
print("training", flush=True)
time.sleep(300)
"""


def test_the_time_limit_warning_stops_the_cell_with_term_to_checkpoint(client, slurm):
    """Slurm warns run.sh (USR2, ``--signal=B:USR2@120``) ahead of the limit: the cell gets
    TERM, saves a checkpoint, and the job ends ``timeout`` (its checkpoint collected). The
    warning is sent here as Slurm sends it, to the batch shell (``scancel --batch``)."""
    job = submit(client, CHECKPOINTS_ON_TERM, resources=Resources(time="10"))
    sbatch = (Path(job.job.remote_dir) / "job.sbatch").read_text()
    assert "#SBATCH --signal=B:USR2@120\n" in sbatch
    wait_until(lambda: "training" in client.logs(job.id), timeout=60)
    slurm.cmd("scancel", "--batch", "--signal=USR2", job.job.scheduler_id, check=True)
    record = client.wait(job.id, timeout=60)
    assert record.status == JobStatus.TIMEOUT, (record.status, record.reason)
    assert "Slurm time limit" in record.reason
    assert record.failure["kind"] == "timeout" and record.failure["detail"]["limit"] == "--time"
    assert "checkpoint saved on SIGTERM" in client.logs(job.id)
    assert (Path(record.remote_dir) / "checkpoints" / "ckpt-7").read_text() == "7"


def wait_for_file(path: Path, timeout: float = 30) -> str:
    assert wait_until(lambda: path.exists() and path.read_text().strip(), timeout=timeout), path
    return path.read_text()


def test_refused_sbatch_is_a_clear_error_with_slurms_message(client):
    with pytest.raises(SchedulerError, match="Invalid partition name specified"):
        submit(client, "pass", resources=Resources(partition="nosuch"))
    (record,) = client.store.list()
    assert record.status == JobStatus.FAILED
    assert "Invalid partition name specified" in record.error


def test_resources_are_refused_on_a_process_cluster(ssh_env):
    client = client_for(ssh_env)
    with pytest.raises(InvalidRequestError, match="need a Slurm cluster"):
        client.submit(GPUJobRequest.create(code="pass", cluster="ssh", resources={"mem": "1G"}))
    assert client.store.list() == []


def test_partition_account_defaults_reach_sbatch(slurm, tmp_path, slurm_env):
    cluster = slurm_env.cluster.model_copy(
        update={"slurm": slurm_env.cluster.slurm.model_copy(update={"partition": "gpu"})}
    )
    client = Client(slurm_env.settings)
    client.clusters.add(cluster)
    job = submit(client, "pass", resources=Resources(time="5", mem="100M", cpus=2))
    job.wait(timeout=60)
    shown = slurm.cmd("scontrol", "-o", "show", "job", job.job.scheduler_id).stdout
    assert "Partition=gpu" in shown and "TimeLimit=00:05:00" in shown
    assert "NumCPUs=2" in shown and "MinMemoryNode=100M" in shown
    client.close()


def test_job_array_runs_each_folder(client, slurm_env):
    from gpu_magic import submission
    from gpu_magic.packaging.upload import upload_bundle
    from gpu_magic.results.hostfolder import folder_of

    cluster = client.clusters.get(slurm_env.cluster.name)
    transport = client.host(cluster.name).transport
    base = submission.remote_base(transport, cluster)
    jobs = []
    for i in range(3):
        request = GPUJobRequest.create(code=f"y = {i} * 10", cluster=cluster.name, outputs=("y",))
        bundle = submission.package(request, {}, cluster)
        job = submission.new_job(bundle, request, cluster, base)
        client.store.insert(job)
        upload_bundle(transport, bundle, folder_of(job))
        jobs.append(job)
    submitted = client.host(cluster.name).scheduler.submit_array("sweep", jobs)
    array_id = submitted[0].scheduler_id.split("_")[0]
    assert [s.scheduler_id for s in submitted] == [f"{array_id}_{i}" for i in range(3)]
    for job, launched in zip(jobs, submitted, strict=True):
        client.tracker.save(
            submission.mark(job, launched.status, scheduler_id=launched.scheduler_id)
        )
    assert [client.wait(j.id, timeout=60).status for j in jobs] == [JobStatus.COMPLETED] * 3
    assert [client.results.outputs(j.id)["y"] for j in jobs] == [0, 10, 20]


def test_login_node_path_with_local_transport(slurm, tmp_path):
    """On a login node the same scheduler runs Slurm's commands locally (LocalTransport); here
    a LocalTransport whose commands run inside the cluster's namespace stands in for one."""
    from harness.slurm import NetnsTransport

    from gpu_magic import submission
    from gpu_magic.clusters import make_cluster
    from gpu_magic.packaging.upload import upload_bundle
    from gpu_magic.results.hostfolder import folder_of
    from gpu_magic.schedulers import SlurmScheduler

    cluster = make_cluster(name="login", scheduler="slurm", base_path=str(tmp_path / "jobs"))
    transport = NetnsTransport(slurm)
    request = GPUJobRequest.create(code="import sys\nsys.exit(4)", cluster="login")
    bundle = submission.package(request, {}, cluster)
    job = submission.new_job(bundle, request, cluster, cluster.base_path)
    upload_bundle(transport, bundle, folder_of(job))
    scheduler = SlurmScheduler(transport, cluster.interpreter)
    slurm_id = scheduler.submit(job, folder_of(job)).scheduler_id
    job = job.model_copy(update={"scheduler_id": slurm_id})
    deadline = time.monotonic() + 60
    while (seen := scheduler.poll([job])[job.id]).status in (JobStatus.QUEUED, JobStatus.RUNNING):
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    assert (seen.status, seen.exit_code) == (JobStatus.FAILED, 4)


@pytest.mark.slurm  # its fixture is asked for while it runs
@pytest.mark.parametrize("accounting", [False, True], ids=["scontrol", "sacct"])
def test_final_state_from_slurm_when_the_folder_has_none(accounting, request):
    """The folder's exit code gone (say, a node-local disk): Slurm's final word decides, from
    sacct with accounting and from scontrol show job without."""
    env = request.getfixturevalue("slurm_acct_env" if accounting else "slurm_env")
    client = client_for(env)
    job = submit(client, "import sys\nsys.exit(3)")
    record = client.wait(job.id, timeout=60)
    assert (record.status, record.exit_code) == (JobStatus.FAILED, 3)
    scheduler = client.host(record.cluster).scheduler
    (Path(record.remote_dir) / "state" / "exit_code").unlink()
    seen = scheduler.poll([record.model_copy(update={"status": JobStatus.RUNNING})])[record.id]
    assert (seen.status, seen.exit_code) == (JobStatus.FAILED, 3)
    assert scheduler.accounting is accounting  # learnt from that poll, remembered from now on
    assert "run.sh wrote no exit code" in seen.reason
    client.close()


def test_a_completed_jobs_end_needs_no_accounting_query(slurm_acct_env):
    """squeue's COMPLETED and the folder's exit code decide: sacct (~100 ms) is not asked, so
    a waiter hears of the end sooner. Without the exit code the status stays Slurm's word."""
    from gpu_magic.schedulers import SlurmScheduler

    client = client_for(slurm_acct_env)
    record = client.wait(submit(client, "print('done')").id, timeout=60)
    assert record.status == JobStatus.COMPLETED
    host = client.host(record.cluster)
    fresh = SlurmScheduler(host.transport, host.config.interpreter)  # has learnt nothing yet
    running = record.model_copy(update={"status": JobStatus.RUNNING})
    seen = fresh.poll([running])[record.id]
    assert (seen.status, seen.exit_code) == (JobStatus.COMPLETED, 0)
    assert fresh.accounting is None  # no sacct answer was read
    (Path(record.remote_dir) / "state" / "exit_code").unlink()
    seen = fresh.poll([running])[record.id]
    assert seen.status == JobStatus.COMPLETED and "run.sh wrote no exit code" in seen.reason
    client.close()


def test_magics_add_a_slurm_cluster_and_submit_with_resources(slurm_env, slurm, tmp_path):
    """The issue's two lines, in a real kernel: ``%gpu_cluster add ... --scheduler slurm
    --partition ...`` and ``%%gpu_submit --gpus 2 --time --mem --cpus --sbatch ...``."""
    import sys

    from harness.kernel import Kernel, kernel_env

    c = slurm_env.cluster
    kernel = Kernel(kernel_env(slurm_env.settings), str(tmp_path))
    try:
        added = kernel.run(
            "%load_ext gpu_magic\n"
            f"%gpu_cluster add hpc --host {c.host} --port {c.port} --user root --key {c.key} "
            f"--base-path {c.base_path} --python {sys.executable} --scheduler slurm "
            "--partition gpu --gres-style gpus"
        )
        assert added.error is None, added.text
        cell = kernel.run(
            "%%gpu_submit --cluster hpc --gpus 2 --gpu-type h100 --time 00:05:00 --mem 100M "
            "--cpus 2 --sbatch comment=from-magic --outputs devices --wait\n"
            "import os\ndevices = os.environ['CUDA_VISIBLE_DEVICES']",
            timeout=90,
        )
        assert cell.error is None, cell.text
        assert len(kernel.run("print(devices)").stdout.strip().split(",")) == 2
    finally:
        kernel.shutdown()
    (job,) = Client(slurm_env.settings).store.list()
    shown = slurm.cmd("scontrol", "-o", "show", "job", job.scheduler_id).stdout
    assert "Partition=gpu" in shown and "TimeLimit=00:05:00" in shown
    assert "Comment=from-magic" in shown and "NumCPUs=2" in shown


def test_job_past_its_time_limit_ends_timeout(overtime):
    client, handle = overtime
    record = client.wait(handle.id, timeout=150)
    history = [(t.status, t.reason) for t in client.store.transitions(handle.id)]
    assert record.status == JobStatus.TIMEOUT, (record.reason, record.exit_code, history)
    assert "Slurm time limit" in record.reason
    assert "started" in handle.logs()
