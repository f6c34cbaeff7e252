"""``gpu-magic``, the console script, run as a user runs it, on the store a notebook's client
filled (and the other way round) on local, ssh and slurm: ``--json`` parsed, exit codes 0 / 1
(a job failed) / 2 (usage) checked, shell completion of job ids and names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_magic import GPUJobRequest, JobStatus
from gpu_magic.submit_options import SubmitOptions

pytestmark = pytest.mark.timeout(300)
GPU_MAGIC = Path(sys.executable).parent / "gpu-magic"


def cli(env, *argv: str, cwd: Path | None = None, extra: dict | None = None):
    """``gpu-magic ARGV`` in a process of its own, over the same settings as ``env.client``."""
    settings = env.client.settings
    variables = {name.upper(): str(getattr(settings, name)) for name in settings.model_fields_set}
    environ = {**os.environ, **variables, **(extra or {})}
    return subprocess.run(
        [str(GPU_MAGIC), *argv],
        cwd=cwd or env.cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
    )


def as_json(done: subprocess.CompletedProcess):
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def submitted(env, code: str, **fields):
    """A job submitted the way a notebook cell submits it, waited for."""
    request = GPUJobRequest.create(code=code, cluster=env.cluster_name, **fields)
    return env.client.submit(request, {}, cwd=env.cwd).wait(120).job


def test_the_cli_reads_what_a_notebook_submitted(env, tmp_path):
    good = submitted(env, "print('hello from the cell')\ny = 42", outputs=("y",), name="good")
    bad = submitted(env, "raise ValueError('no luck')", name="bad")
    listed = {job["id"]: job for job in as_json(cli(env, "status", "--json"))}
    assert listed[good.id]["status"] == "completed" and listed[good.id]["name"] == "good"
    assert listed[bad.id]["status"] == "failed"
    one = cli(env, "status", "good", "--json")
    assert one.returncode == 0
    assert [h["status"] for h in json.loads(one.stdout)["history"]][-1] == "completed"
    assert cli(env, "status", bad.id).returncode == 1  # a job that failed
    assert "ValueError: no luck" in cli(env, "status", bad.id).stdout
    scheduler = env.client.clusters.scheduler_of(env.cluster_name)
    label = {"process": "process", "slurm": "slurm job"}[scheduler]  # what the id is, said so
    assert f"\n{label:<10} {good.scheduler_id}\n" in cli(env, "status", "good").stdout
    log = as_json(cli(env, "logs", good.id, "--json"))
    assert log["log"] == "hello from the cell\n" and log["status"] == "completed"
    fetched = as_json(cli(env, "fetch", good.id, "-o", str(tmp_path / "here"), "--json"))
    assert str(tmp_path / "here" / "outputs" / "y.pkl") in fetched["files"]
    assert (tmp_path / "here" / "outputs" / "y.pkl").is_file()
    assert cli(env, "fetch", bad.id).returncode == 1  # what it left comes, then exit 1


def test_a_job_submitted_from_the_cli_shows_in_the_notebook(env):
    script = env.cwd / "train.py"
    script.write_text("import os\nprint('epoch 1', os.environ['LR'])\n")
    done = cli(env, "submit", "train.py", "--cluster", env.cluster_name, "--env", "LR=3e-4",
               "--name", "from-cli", "--wait", "--json")  # fmt: skip
    job = as_json(done)
    assert job["status"] == "completed" and job["name"] == "from-cli"
    assert env.client.job(job["id"]).status == JobStatus.COMPLETED  # the notebook's client
    assert env.client.logs(job["id"]) == "epoch 1 3e-4\n"
    (env.cwd / "fail.sh").write_text("echo about to fail\nexit 3\n")
    failed = cli(env, "submit", "fail.sh", "--cluster", env.cluster_name, "--wait")
    assert failed.returncode == 1 and "failed" in failed.stdout  # a .sh file runs as bash


def test_cancel_from_the_cli_stops_a_notebooks_job(env):
    request = GPUJobRequest.create(code="import time\ntime.sleep(300)", cluster=env.cluster_name)
    handle = env.client.submit(request, {}, cwd=env.cwd)
    cancelled = cli(env, "cancel", handle.id)
    assert cancelled.returncode == 0, cancelled.stderr
    job = handle.wait(120).job  # the bound is for a busy machine; it ends in a second or two
    assert job.status == JobStatus.CANCELLED, (job.status, job.reason)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["status", "no-such-job"], "no job"),
        (["submit", "missing.py"], "cannot read missing.py"),
        (["submit", "x.py", "--template", "nope"], "unknown template 'nope'"),
        (["submit", "x.py", "--env", "NOEQUALS"], "--env expects KEY=VALUE"),
        (["submit", "x.py", "--gpus", "many"], "invalid int value: 'many'"),
        (["logs"], "the following arguments are required: job"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_code_2(process_env, argv, said):
    (process_env.cwd / "x.py").write_text("pass\n")
    done = cli(process_env, *argv)
    assert done.returncode == 2
    assert said in done.stderr.lower() or said in done.stderr
    assert "Traceback" not in done.stderr


def test_clusters_templates_storage_and_cleanup_answer_json(process_env):
    env = process_env
    job = submitted(env, "print(1)")
    base = SubmitOptions(cluster=env.cluster_name, gpus=0, env={"A": "1"})
    env.client.clusters.templates.save("base", base)
    clusters = as_json(cli(env, "clusters", "--json"))
    assert env.cluster_name in {c["name"] for c in clusters}
    assert as_json(cli(env, "templates", "--json"))["base"] == {
        "cluster": env.cluster_name,
        "gpus": 0,
        "env": {"A": "1"},
    }
    shown = as_json(cli(env, "templates", "show", "base", "--json"))
    assert shown["chain"] == ["base"] and shown["set_by"]["env"] == "base"
    usage = as_json(cli(env, "storage", "--json"))
    assert job.id in {row["id"] for row in usage["jobs"]} and usage["total"]["remote_bytes"] > 0
    plan = as_json(cli(env, "cleanup", "--keep-last", "0", "--dry-run", "--json"))
    assert job.id in {action["id"] for action in plan["actions"]} and plan["done"] == []
    assert Path(job.remote_dir).exists()  # a dry run deletes nothing


def test_the_shell_completes_job_ids_names_and_clusters(process_env, tmp_path):
    env = process_env
    job = submitted(env, "pass", name="resnet-run")
    script = cli(env, "completion", "bash")
    assert script.returncode == 0 and "complete" in script.stdout and "gpu-magic" in script.stdout
    offered = complete(env, tmp_path, "gpu-magic status res")
    assert offered == ["resnet-run"]
    assert job.id in complete(env, tmp_path, f"gpu-magic logs {job.id[:9]}")
    assert env.cluster_name in complete(env, tmp_path, "gpu-magic status --cluster ")


def complete(env, tmp_path: Path, line: str) -> list[str]:
    """What argcomplete offers for ``line`` (the way its bash hook asks the program)."""
    answer = tmp_path / "completions"
    extra = {
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
    }
    done = cli(env, extra=extra)
    assert done.returncode == 0, done.stderr
    return [word.strip() for word in answer.read_text().split("\n") if word.strip()]
