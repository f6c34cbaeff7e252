"""The sbatch script renderer (golden files) and the validation of every value that reaches it.

Regenerate the golden files after an intended change:
``UPDATE_GOLDEN=1 pytest tests/test_slurm_script.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_magic import GPUJobRequest, Settings
from gpu_magic.clusters import ClusterRegistry, make_cluster
from gpu_magic.errors import ConfigError, InvalidRequestError
from gpu_magic.packaging.runscript import render_run_script
from gpu_magic.resources import Resources, SlurmDefaults, effective, parse_sbatch_options
from gpu_magic.schedulers.slurm import request_resources
from gpu_magic.schedulers.slurm_script import (
    render_array_script,
    render_sbatch_script,
    run_script_options,
    sbatch_line,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "slurm"
JOB = "20261126-142501-3fa9c2"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; UPDATE_GOLDEN=1 if intended"


def script(defaults: SlurmDefaults | None = None, **fields) -> str:
    request = GPUJobRequest.create(code="pass", **fields)
    defaults = defaults or SlurmDefaults()
    return render_sbatch_script(
        JOB, request, request_resources(request, defaults), defaults.gres_style
    )


def test_minimal_job():
    golden("minimal.sbatch", script())


def test_every_resource_with_gres_and_cluster_defaults():
    defaults = SlurmDefaults(partition="gpu", account="proj42", time="01:00:00", mem="8G")
    text = script(
        defaults,
        name="train",
        gpus=2,
        resources=Resources(
            time="02:00:00", mem="32G", cpus=8, qos="high", constraint="h100&ib",
            gpu_type="h100", sbatch={"exclusive": "", "mail-type": "END,FAIL"},
        ),
    )  # fmt: skip
    golden("full_gres.sbatch", text)
    assert "#SBATCH --account=proj42" in text  # cluster default kept
    assert "#SBATCH --time=02:00:00" in text  # request wins over the default


def test_gpus_style_multi_node_and_timeout_as_time_limit():
    defaults = SlurmDefaults(gres_style="gpus", partition="gpu")
    text = script(defaults, gpus=4, timeout=90, resources=Resources(nodes=2, gpu_type="a100"))
    golden("multinode_gpus.sbatch", text)
    assert "#SBATCH --time=3" in text  # 90 s → 2 min, plus one for run.sh to stop the cell


def test_job_array():
    request = GPUJobRequest.create(code="pass", gpus=1, resources=Resources(time="10"))
    folders = [f"/home/u/.gpu_magic/jobs/{JOB[:-1]}{i}" for i in range(3)]
    text = render_array_script("sweep-1", request, request.resources, folders, max_running=2)
    golden("array.sbatch", text)


def test_run_sh_under_slurm_lets_slurm_choose_gpus_and_srun_multi_node():
    request = GPUJobRequest.create(code="pass", gpus=2, resources=Resources(nodes=3))
    options = run_script_options(request, request.resources)
    text = render_run_script(JOB, request, "python3", **options)
    assert "gpus.py" not in text and "chosen by the scheduler" in text
    assert "srun --kill-on-bad-exit=1 " in text
    single = render_run_script(JOB, request, "python3", **run_script_options(request, Resources()))
    assert "srun" not in single


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("time", "1:00:00\n#SBATCH --uid=0"),
        ("time", "1 hour"),
        ("mem", "32G; rm -rf /"),
        ("partition", "gpu --qos=high"),
        ("account", "a#b"),
        ("qos", "x'y"),
        ("constraint", "a b"),
        ("gpu_type", "h100\n"),
        ("cpus", 0),
        ("nodes", 0),
    ],
)
def test_values_that_could_break_an_sbatch_line_are_refused(field, value):
    with pytest.raises(InvalidRequestError, match=field):
        GPUJobRequest.create(code="pass", resources={field: value})


@pytest.mark.parametrize(
    "option",
    ["output=/etc/passwd", "wrap=id", "uid=0", "array=1-9", "chdir=/", "mail-user=a b", "x=1\n2"],
)
def test_reserved_or_unsafe_sbatch_options_are_refused(option):
    with pytest.raises(InvalidRequestError):
        GPUJobRequest.create(code="pass", resources={"sbatch": parse_sbatch_options([option])})


def test_extra_options_must_be_allowed_by_the_cluster():
    request = Resources(sbatch={"reservation": "maint", "gres-flags": "enforce-binding"})
    with pytest.raises(ValueError, match="gres-flags are not allowed"):
        effective(request, SlurmDefaults(), None)
    allowed = effective(request, SlurmDefaults(allowed_sbatch=("gres-flags",)), None)
    assert allowed.sbatch == {"reservation": "maint", "gres-flags": "enforce-binding"}


def test_sbatch_line_checks_every_line_again():
    assert sbatch_line("exclusive") == "#SBATCH --exclusive"
    with pytest.raises(ValueError):
        sbatch_line("comment", "two words")
    with pytest.raises(ValueError):
        sbatch_line("comment", "x\n#SBATCH --uid=0")


def test_a_job_name_with_a_trailing_newline_is_refused():
    """``re.match`` with ``$`` accepts a final newline; the name goes into ``--job-name``."""
    with pytest.raises(InvalidRequestError, match="job name"):
        GPUJobRequest.create(code="pass", name="train\n")


def test_cluster_slurm_defaults_round_trip_through_toml(tmp_path):
    registry = ClusterRegistry(Settings(_env_file=None, gpu_magic_config_dir=tmp_path))
    slurm = {"partition": "gpu", "account": "proj42", "gres_style": "gpus", "time": "4:00:00",
             "allowed_sbatch": ("gres-flags",), "accounting": False}  # fmt: skip
    registry.add(make_cluster(name="hpc", host="login.hpc", scheduler="slurm", slurm=slurm))
    text = registry.path.read_text()
    assert "[clusters.hpc.slurm]" in text and 'partition = "gpu"' in text
    assert registry.get("hpc").slurm == SlurmDefaults(**slurm)
    registry.add(make_cluster(name="plain", host="gpu1"))
    assert "plain.slurm" not in registry.path.read_text()  # defaults are not written


@pytest.mark.parametrize(
    "slurm",
    [{"partition": "gpu\n#SBATCH --uid=0"}, {"gres_style": "both"}, {"allowed_sbatch": ["uid"]}],
)
def test_cluster_slurm_defaults_are_validated(slurm):
    with pytest.raises(ConfigError):
        make_cluster(name="hpc", host="login.hpc", scheduler="slurm", slurm=slurm)


def test_a_time_limit_gets_the_checkpoint_warning_and_retries_get_requeue():
    from gpu_magic.schedulers.slurm_script import attempt_lines

    timed = Resources(time="10")
    request = GPUJobRequest(code="x")
    assert attempt_lines(request, timed, 120) == ["#SBATCH --signal=B:USR2@120"]
    assert attempt_lines(request, Resources(), 120) == []  # no limit: nothing to warn of
    assert attempt_lines(request, timed, None) == []  # the cluster turned the warning off
    # never more than half the limit ahead: due at once, it would beat run.sh's trap
    assert attempt_lines(request, Resources(time="1"), 120) == ["#SBATCH --signal=B:USR2@30"]
    assert attempt_lines(request, Resources(time="0:1"), 120) == []
    retried = GPUJobRequest(code="x", retries=2)
    assert attempt_lines(retried, Resources(), 120) == ["#SBATCH --requeue"]


@pytest.mark.parametrize(
    ("time", "seconds"),
    [("90", 5400), ("1:30", 90), ("2:00:05", 7205), ("1-2", 93600), ("1-2:03", 93780),
     ("1-0:0:7", 86407), ("UNLIMITED", None), ("infinite", None)],
)  # fmt: skip
def test_slurm_time_limits_in_seconds_as_sbatch_reads_them(time, seconds):
    from gpu_magic.resources import time_limit_seconds

    assert time_limit_seconds(time) == seconds
