"""Hostile strings in the fields that are checked before anything runs: each value is either
refused in one line or reaches what we render (an ``#SBATCH`` line, run.sh, a cluster entry)
verbatim, never as something else; and every magic, given any line at all, answers with
its result or one ``UsageError`` line, never a traceback.

The host-side fields (``--env`` values, ``--args``, ``--secret-env`` values, shipped file
names) are ``test_hostile_input.py``'s, over the real sshd."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from harness.clients import local_settings
from harness.hostile import examples, hostile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from gpu_magic import Client, GitSource, GPUJobRequest
from gpu_magic.clusters import make_cluster
from gpu_magic.errors import ConfigError, InvalidRequestError
from gpu_magic.packaging.runscript import python_command, render_run_script
from gpu_magic.resources import SlurmDefaults
from gpu_magic.schedulers.slurm import request_resources
from gpu_magic.schedulers.slurm_script import SAFE_LINE, render_sbatch_script

pytestmark = pytest.mark.processes  # real local jobs or run.sh (harness/tiers.py)

JOB = "20261204-120000-abcdef"
SLURM_FIELDS = ("time", "mem", "partition", "account", "qos", "constraint", "gpu_type")


def _one_line(exc: BaseException) -> None:
    assert "\n" not in str(exc) and str(exc), repr(exc)


@settings(max_examples=examples(300), deadline=None)
@given(field=st.sampled_from(SLURM_FIELDS), value=hostile)
def test_slurm_fields_are_refused_or_land_verbatim_in_one_sbatch_line(field, value):
    try:
        request = GPUJobRequest.create(code="pass", gpus=1, resources={field: value})
        resources = request_resources(request, SlurmDefaults())
    except InvalidRequestError as exc:
        return _one_line(exc)
    script = render_sbatch_script(JOB, request, resources)
    header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert all(SAFE_LINE.fullmatch(line) for line in header)
    assert any(value in line for line in header)  # verbatim, on one line


@settings(max_examples=examples(200), deadline=None)
@given(key=hostile, value=hostile)
def test_extra_sbatch_options_are_refused_or_land_verbatim(key, value):
    try:
        request = GPUJobRequest.create(code="pass", resources={"sbatch": {key: value}})
        resources = request_resources(request, SlurmDefaults(allowed_sbatch=(key,)))
    except InvalidRequestError as exc:
        return _one_line(exc)
    header = render_sbatch_script(JOB, request, resources).splitlines()
    assert f"#SBATCH --{key}={value}" in header


@settings(max_examples=examples(300), deadline=None)
@given(url=hostile, ref=st.one_of(st.none(), hostile))
def test_git_sources_are_refused_or_quoted_whole_into_run_sh(url, ref):
    text = url if ref is None else f"{url}@{ref}"
    try:
        git = GitSource.parse(text)
        request = GPUJobRequest.create(code="pass", git=git)
    except InvalidRequestError as exc:
        return _one_line(exc)
    run_sh = render_run_script(JOB, request, "python3")
    assert shlex.quote(git.url) in run_sh
    if git.ref is not None:
        assert shlex.quote(git.ref) in run_sh


@settings(max_examples=examples(300), deadline=None)
@given(field=st.sampled_from(["venv", "python", "conda"]), value=hostile)
def test_interpreter_settings_are_refused_or_quoted_whole_into_run_sh(field, value):
    try:
        request = GPUJobRequest.create(code="pass", **{field: value})
    except InvalidRequestError as exc:
        return _one_line(exc)
    words = python_command(request, "python3")
    assert words in render_run_script(JOB, request, "python3")
    shell = subprocess.run(  # what bash makes of the words: the value, whole
        ["bash", "-c", f"printf '%s\\0' {words}"], env={"HOME": "/home/u"}, capture_output=True
    )
    seen = shell.stdout.decode().split("\0")[:-1]
    home = lambda p: "/home/u/" + p[2:] if p.startswith("~/") else p  # noqa: E731
    expected = {
        "python": [home(value)],
        "venv": [home(value.rstrip("/") + "/bin/python")],
        "conda": ["conda", "run", "--no-capture-output", "-n", value, "python"],
    }
    assert seen == expected[field]


@settings(max_examples=examples(300), deadline=None)
@given(field=st.sampled_from(["outputs_glob", "exclude", "inputs", "outputs", "secret_env"]),
       value=hostile)  # fmt: skip
def test_name_and_glob_lists_are_refused_or_kept_verbatim(field, value):
    try:
        request = GPUJobRequest.create(code="pass", **{field: (value,)})
    except InvalidRequestError as exc:
        return _one_line(exc)
    assert getattr(request, field) == (value,)
    assert GPUJobRequest.model_validate_json(request.model_dump_json()) == request


@settings(max_examples=examples(300), deadline=None)
@given(field=st.sampled_from(["name", "host", "user", "proxy_jump", "key", "base_path"]),
       value=hostile)  # fmt: skip
def test_cluster_fields_are_refused_or_kept_verbatim(field, value):
    fields = {"name": "c", "host": "h", field: value}
    try:
        cluster = make_cluster(**fields)
    except ConfigError as exc:
        return _one_line(exc)
    assert getattr(cluster, field) == value


# -- magic lines --------------------------------------------------------------------------------

LINE_MAGICS = ("gpu_status", "gpu_logs", "gpu_cancel", "gpu_fetch", "gpu_cluster",
               "gpu_storage", "gpu_cleanup", "gpu_archive", "gpu_audit")  # fmt: skip
WORDS = ["--help", "--json", "--tail", "3", "--level", "ERROR", "--grep", "(", "add", "list",
         "--host", "--verify", "--dry-run", "--keep-last", "-1", "--remote", "--local"]  # fmt: skip
magic_line = st.lists(st.one_of(st.sampled_from(WORDS), hostile), max_size=5).map(" ".join)


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """An in-process IPython with our magics over a client of its own folders."""
    from IPython.testing.globalipapp import get_ipython

    from gpu_magic.audit_magics import AuditMagics
    from gpu_magic.magics import GPUMagics
    from gpu_magic.storage_magics import StorageMagics

    ip = get_ipython()
    client = Client(local_settings(tmp_path_factory.mktemp("magics")))
    for magics in (GPUMagics, StorageMagics, AuditMagics):
        ip.register_magics(magics(ip, client=client))
    yield ip
    client.close()


@settings(
    max_examples=examples(400),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(magic=st.sampled_from(LINE_MAGICS), line=magic_line)
def test_any_line_gives_a_line_magic_its_answer_or_one_usage_line(shell, magic, line, capsys):
    try:
        shell.run_line_magic(magic, line)
    except UsageError as exc:
        _one_line(exc)
    capsys.readouterr()


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(line=st.lists(hostile, min_size=1, max_size=3).map(" ".join))
def test_any_line_gives_gpu_submit_a_job_or_one_usage_line(shell, line, capsys):
    try:
        shell.run_cell_magic("gpu_submit", f"--cluster nowhere {line}", "pass")
    except UsageError as exc:
        _one_line(exc)
    capsys.readouterr()


def test_a_failed_job_shows_its_log_tail_line_by_line_each_line_escaped(shell, tmp_path):
    """The end of the log comes under the one-line message as lines of their own (readable),
    and what a host wrote there cannot drive the terminal: control characters stay escaped.
    (A client of its own: the failed job must not be the newest of the other tests' store.)"""
    from gpu_magic.magics import GPUMagics

    client = Client(local_settings(tmp_path))
    cell = "printf '\\033[2Jwiped\\n'\necho second line\nexit 3"
    try:
        with pytest.raises(UsageError) as raised:
            GPUMagics(shell, client=client).gpu_submit("--bash --wait", cell)
    finally:
        client.close()
    lines = str(raised.value).split("\n")
    assert lines[0].endswith("ended failed (exit code 3)"), lines
    assert lines[1] == "Last lines of output.log:"
    assert "\\x1b[2Jwiped" in lines[2:] and "second line" in lines[2:], lines
    assert all(line.isprintable() for line in lines)
