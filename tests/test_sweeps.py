"""Sweeps (``--sweep``): the values and how they combine, each member's request, and sweeps run
for real on local, ssh and slurm (one ``sbatch --array`` there), their results table, best
member, cancel and retry of one member; the grouped panel; ``gpu-magic submit --sweep``."""

from __future__ import annotations

import itertools
import json
import threading

import numpy as np
import pytest
from harness.clients import local_settings

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.errors import InvalidRequestError
from gpu_magic.results.hostfolder import folder_of
from gpu_magic.sweeps import MAX_MEMBERS, Sweep, member_request, parse_axis, shown

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)

TRAIN = "print(f'epoch 1 loss={lr * bs}')\nscore = lr * bs\n"


# -- values and combinations ------------------------------------------------------------------
def test_values_are_python_literals_or_else_the_text_given():
    assert parse_axis("lr=1e-3,3e-4").values == (1e-3, 3e-4)
    assert parse_axis("opt=adam,sgd").values == ("adam", "sgd")
    assert parse_axis("opt='a,b',\"c\"").values == ("a,b", "c")
    assert parse_axis("mixed=1,two,None,True").values == (1, "two", None, True)
    assert parse_axis("cmd=$(rm -rf ~),`id`").values == ("$(rm -rf ~)", "`id`")  # verbatim


def test_an_expression_is_evaluated_in_the_namespace_and_iterated():
    namespace = {"np": np, "seeds": [3, 1, 2]}
    assert parse_axis("seed:=seeds", namespace).values == (3, 1, 2)
    assert parse_axis("lr:=np.logspace(-4, -2, 3)", namespace).values == pytest.approx(
        (1e-4, 1e-3, 1e-2)
    )
    assert parse_axis("n:=range(3)").values == (0, 1, 2)


@pytest.mark.parametrize(
    ("specs", "mode", "message"),
    [
        (["lr"], "grid", "expected NAME=V1,V2,... or NAME:=EXPRESSION"),
        (["2lr=1"], "grid", "expected NAME=V1,V2"),
        (["lr="], "grid", "--sweep lr: no values"),
        (["lr=1", "lr=2"], "grid", "--sweep lr is given twice"),
        (["a=1,2", "b=1"], "zip", "needs as many values of each (a: 2, b: 1)"),
        (["x:=undefined_name"], "grid", "NameError: name 'undefined_name' is not defined"),
        (["x:=42"], "grid", "TypeError: 'int' object is not iterable"),
        (["a:=range(100)", "b:=range(11)"], "grid", f"1100 members; at most {MAX_MEMBERS}"),
        (["a=1"], "random", "--sweep-mode 'random': expected grid or zip"),
    ],
)
def test_a_bad_sweep_is_refused_in_one_line(specs, mode, message):
    with pytest.raises(InvalidRequestError) as refused:
        Sweep.parse(specs, mode)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_grid_varies_the_first_slowest_and_zip_pairs():
    grid = Sweep.parse(["lr=1,2,3", "bs=32,64"])
    assert grid.size == 6 and grid.describe() == "3x2 grid (lr, bs)"
    assert grid.points()[:3] == [{"lr": 1, "bs": 32}, {"lr": 1, "bs": 64}, {"lr": 2, "bs": 32}]
    paired = Sweep.parse(["lr=1,2", "bs=32,64"], "zip")
    assert paired.points() == [{"lr": 1, "bs": 32}, {"lr": 2, "bs": 64}]


def test_a_member_gets_its_parameters_as_inputs_or_environment_and_a_numbered_name():
    request = GPUJobRequest.create(code="train()", inputs=("data",), name="exp")
    member = member_request(request, {"lr": 0.1}, 3)
    assert member.inputs == ("data", "lr") and member.name == "exp.3"
    script = GPUJobRequest.create(code="echo $LR", language="bash", env={"A": "1"})
    assert member_request(script, {"LR": 0.1}, 0).env == {"A": "1", "LR": "0.1"}
    with pytest.raises(InvalidRequestError, match="--sweep data is also given by --inputs"):
        member_request(request, {"data": 1}, 0)
    with pytest.raises(InvalidRequestError, match="too long for a sweep"):
        member_request(request.model_copy(update={"name": "x" * 63}), {"lr": 1}, 10)


def test_parameters_are_stored_as_json_scalars_or_their_repr():
    assert shown(np.float64(0.5)) == 0.5 and type(shown(np.int64(3))) is int
    assert shown(float("nan")) == "nan" and shown((1, 2)) == "(1, 2)"
    assert shown("x" * 100).endswith("...") and len(shown(list(range(100)))) == 80


# -- sweeps run for real ----------------------------------------------------------------------
def test_a_3x2_sweep_runs_six_members_with_their_parameters(env):
    request = GPUJobRequest.create(
        code=TRAIN, cluster=env.cluster_name, outputs=("score",), name="grid"
    )
    sweep = Sweep.parse(["lr=0.1,0.01,0.001", "bs=32,64"])
    said = []
    handle = env.client.submit_sweep(request, sweep, {}, cwd=env.cwd, say=said.append)
    assert said[0].startswith(f"gpu_magic: sweep {handle.id}: 6 members, 3x2 grid (lr, bs)")
    handle.wait(180)
    jobs = handle.jobs()
    assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 6
    assert [job.name for job in jobs] == [f"grid.{i}" for i in range(6)]
    assert handle.params == sweep.points()
    outputs = [env.client.results.outputs(job.id)["score"] for job in jobs]
    assert outputs == [p["lr"] * p["bs"] for p in sweep.points()]
    rows = handle.result_rows()
    assert [(r["lr"], r["bs"], r["loss"]) for r in rows] == [
        (p["lr"], p["bs"], pytest.approx(p["lr"] * p["bs"])) for p in sweep.points()
    ]
    assert handle.best("loss").id == jobs[4].id  # lr=0.001, bs=32
    assert handle.best("loss", mode="max").id == jobs[1].id  # lr=0.1, bs=64
    assert env.client.sweep("grid").id == handle.id == env.client.sweep(jobs[2].id).id
    if env.client.clusters.get(env.cluster_name).scheduler == "slurm":
        _one_job_array(env, jobs)


def _one_job_array(env, jobs):
    """Slurm: one sbatch made one array, task i for member i; each member's folder holds its
    own task id and Slurm's own messages of its task."""
    arrays = {job.scheduler_id.split("_")[0] for job in jobs}
    assert len(arrays) == 1
    array = arrays.pop()
    assert [job.scheduler_id for job in jobs] == [f"{array}_{i}" for i in range(6)]
    transport = env.transport()
    for i, job in enumerate(jobs):
        folder = folder_of(job)
        assert transport.read_file(str(folder.state("slurm_id"))).decode() == f"{array}_{i}\n"
        assert transport.check("test", "-f", str(folder.path("slurm.out"))).ok


def test_on_slurm_a_sweep_is_one_array_submitted_once(slurm_env):
    client = Client(slurm_env.settings)
    client.clusters.add(slurm_env.cluster)
    try:
        request = GPUJobRequest.create(code="x = n", cluster=slurm_env.cluster.name)
        before = len(client.audit.records())  # the audit log is the whole session's
        handle = client.submit_sweep(request, Sweep.parse(["n=1,2,3"]), {})
        records = client.audit.records()[before:]
        commands = [r["command"] for r in records if r["event"] == "command"]
        sbatches = [c for c in commands if "sbatch --parsable" in c]
        assert len(sbatches) == 1, sbatches
        arrays = {job.scheduler_id.split("_")[0] for job in handle.jobs()}
        assert len(arrays) == 1
        shown = client.host(slurm_env.cluster.name).transport.run(
            f"scontrol -o show job {arrays.pop()}"
        )
        limit = client.settings.max_concurrent_jobs  # Slurm runs at most this many at once
        assert f"ArrayTaskThrottle={limit}" in shown.text, shown.text
        handle.wait(120)
        assert set(handle.status()) == {"completed"}
    finally:
        client.close()


def test_one_member_is_cancelled_and_run_again(env):
    """Member 1 sleeps on its first attempt: cancelled alone (member 0 completes), then run
    again, the cancellation of its first attempt left behind."""
    code = (
        "import os, time\n"
        "if x == 1 and os.environ['GPU_MAGIC_ATTEMPT'] == '1':\n"
        "    print('started', flush=True)\n"
        "    time.sleep(120)\n"
        "y = x * 10\n"
    )
    request = GPUJobRequest.create(code=code, cluster=env.cluster_name, outputs=("y",))
    handle = env.client.submit_sweep(request, Sweep.parse(["x=0,1"]), {})
    first = handle[0].wait(120)
    assert first.status == JobStatus.COMPLETED
    env.wait_for_remote_file(str(folder_of(handle.jobs()[1]).log))
    handle.cancel(1)
    assert [job.status for job in handle.jobs()] == [JobStatus.COMPLETED, JobStatus.CANCELLED]
    handle.retry()  # the whole sweep: only the member that did not complete runs again
    handle.wait(120)
    jobs = handle.jobs()
    assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 2
    assert [job.attempt for job in jobs] == [1, 2]
    assert env.client.results.outputs(jobs[1].id)["y"] == 10
    with pytest.raises(InvalidRequestError, match="member 0 .* is completed: nothing to run"):
        handle.retry(0)


def test_a_failed_member_fails_alone_and_best_skips_it(tmp_path):
    client = Client(local_settings(tmp_path))
    code = "print(f'epoch 1 loss={x}')\nassert x != 0, 'zero'\n"
    request = GPUJobRequest.create(code=code, cluster="local")
    handle = client.submit_sweep(request, Sweep.parse(["x=0,1,2"]), {})
    handle.wait(60)
    assert [job.status for job in handle.jobs()] == [
        JobStatus.FAILED, JobStatus.COMPLETED, JobStatus.COMPLETED
    ]  # fmt: skip
    assert handle.best("loss").job.sweep.params == {"x": 1}
    with pytest.raises(InvalidRequestError, match="reported 'acc' \\(its metrics: loss\\)"):
        handle.best("acc")
    client.close()


def test_a_member_that_cannot_be_packaged_stops_the_sweep_before_any_launch(tmp_path):
    client = Client(local_settings(tmp_path))
    lock = threading.Lock()  # cannot be pickled: the third member is refused
    request = GPUJobRequest.create(code="pass", cluster="local")
    sweep = Sweep.parse(["v:=values"], namespace={"values": [1, 2, lock]})
    with pytest.raises(InvalidRequestError):
        client.submit_sweep(request, sweep, {})
    jobs = client.jobs()
    assert len(jobs) == 2 and {job.status for job in jobs} == {JobStatus.CANCELLED}
    assert all("another member did not upload" in job.reason for job in jobs)
    assert all(client.store.transitions(j.id)[-2].status == JobStatus.UPLOADING for j in jobs)
    client.close()


def test_members_take_slots_in_order_one_at_a_time_when_one_is_allowed(tmp_path):
    client = Client(local_settings(tmp_path).model_copy(update={"max_concurrent_jobs": 1}))
    request = GPUJobRequest.create(code="import time\ntime.sleep(0.3)", cluster="local")
    handle = client.submit_sweep(request, Sweep.parse(["i=1,2,3"]), {})
    jobs = handle.jobs()
    assert jobs[0].status == JobStatus.RUNNING  # launched at once, the others wait their turn
    assert [job.status for job in jobs[1:]] == [JobStatus.PENDING] * 2
    handle.wait(60)
    jobs = handle.jobs()
    assert set(handle.status()) == {"completed"}
    runs = [(job.started_at, job.ended_at) for job in jobs]
    assert all(ended <= later for (_, ended), (later, _) in itertools.pairwise(runs))
    client.close()


# -- the grouped panel ------------------------------------------------------------------------
def test_the_sweep_panel_shows_members_results_best_and_one_line_each(tmp_path):
    from gpu_magic.ui import SweepPanel

    client = Client(local_settings(tmp_path))
    request = GPUJobRequest.create(code=TRAIN.replace("loss", "val_acc"), cluster="local")
    handle = client.submit_sweep(request, Sweep.parse(["lr=0.1,0.2", "bs=1,2"]), {})
    handle.wait(60)
    panel = SweepPanel(client, handle.id, background=False)
    panel.throttle.flush()
    headers = [label for _, label in panel.grid.columns]
    assert headers == ["member", "lr", "bs", "status", "progress", "ETA", "runtime", "val_acc",
                       "job"]  # fmt: skip
    assert [(r["p0"], r["p1"], r["m0"]) for r in panel.grid.rows] == [
        ("0.1", "1", "0.1"), ("0.1", "2", "0.2"), ("0.2", "1", "0.2"), ("0.2", "2", "0.4")
    ]  # fmt: skip
    assert panel.grid.best == handle.jobs()[3].id  # accuracy: higher is better
    assert [t.name for t in panel.chart.data] == [
        "0: lr=0.1, bs=1", "1: lr=0.1, bs=2", "2: lr=0.2, bs=1", "3: lr=0.2, bs=2"
    ]  # fmt: skip
    assert "4 members (4 completed); ★ best max val_acc" in panel.header.value
    panel.grid.opened = handle.jobs()[2].id  # a click on a row: that member's own panel
    assert panel.panel.job_id == handle.jobs()[2].id
    assert "lr=0.2, bs=2: completed val_acc=0.4" in panel.snapshot_text()
    panel.close()
    client.close()


# -- the CLI ----------------------------------------------------------------------------------
def test_the_cli_submits_a_sweep_and_says_whether_every_member_completed(tmp_path):
    from harness.clients import JobEnv
    from test_cli import cli

    env = JobEnv(Client(local_settings(tmp_path)), "local", tmp_path)
    script = tmp_path / "train.py"
    script.write_text("import sys\nprint(f'epoch 1 loss={x}')\nsys.exit(x == 3)\n")
    done = cli(env, "submit", str(script), "--sweep", "x=1,2", "--name", "cli", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    shown_ = json.loads(done.stdout)
    assert [(m["x"], m["status"], m["loss"]) for m in shown_["members"]] == [
        (1, "completed", 1.0), (2, "completed", 2.0)
    ]  # fmt: skip
    assert env.client.sweep("cli").id == shown_["sweep"]
    failing = cli(env, "submit", str(script), "--sweep", "x=2,3", "--wait")
    assert failing.returncode == 1 and "failed" in failing.stdout
    refused = cli(env, "submit", str(script), "--sweep", "x")
    assert refused.returncode == 2 and "expected NAME=V1,V2" in refused.stderr
    env.client.close()


def test_the_sweep_panel_cancels_all_in_two_clicks_and_runs_the_failed_again(tmp_path):
    from gpu_magic.ui import SweepPanel

    client = Client(local_settings(tmp_path))
    go = tmp_path / "go"  # member 1 runs until the test lets it end
    code = (
        "import os, time\n"
        f"while x == 1 and not os.path.exists({str(go)!r}):\n"
        "    time.sleep(0.05)\n"
        "assert x != 0 or os.environ['GPU_MAGIC_ATTEMPT'] != '1'\n"
    )
    request = GPUJobRequest.create(code=code, cluster="local")
    handle = client.submit_sweep(request, Sweep.parse(["x=0,1"]), {})
    handle[0].wait(60)
    panel = SweepPanel(client, handle.id, background=False)
    actions = panel.actions
    panel.throttle.flush()
    assert not actions.cancel.disabled and not actions.retry.disabled  # member 0 failed
    actions.on_retry()
    assert handle[0].wait(60).status == JobStatus.COMPLETED  # its second attempt
    actions.on_cancel()
    assert actions.cancel.description == "Really cancel all?" and handle[1].status == "running"
    actions.on_cancel()
    assert [job.status for job in handle.jobs()] == [JobStatus.COMPLETED, JobStatus.CANCELLED]
    panel.throttle.flush()
    assert actions.cancel.disabled and not actions.retry.disabled
    assert "1 cancelled, 1 completed" in actions.message.value
    panel.close()
    client.close()


def test_files_the_members_share_are_uploaded_once(process_env):
    """A 3 MB data file: the first member sends it, the host's cache gives it to the others."""
    env = process_env
    data = env.cwd / "data.bin"
    data.write_bytes(bytes(range(256)) * (3 * 4096))
    code = "n = len(open('data.bin', 'rb').read())"
    request = GPUJobRequest.create(
        code=code, cluster=env.cluster_name, files=("data.bin",), outputs=("n",)
    )
    handle = env.client.submit_sweep(request, Sweep.parse(["seed=1,2,3"]), {}, cwd=env.cwd)
    handle.wait(120)
    jobs = handle.jobs()
    assert [env.client.results.outputs(job.id)["n"] for job in jobs] == [data.stat().st_size] * 3
    sent = [
        sum(r.get("bytes", 0) for r in env.client.audit.records(job.id) if r["event"] == "upload")
        for job in jobs
    ]
    assert sent[0] >= data.stat().st_size and sent[1:] == [0, 0], sent
