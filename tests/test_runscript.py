"""run.sh: the rendered text, and its behaviour when started the way the schedulers start it.

Each behavioural test builds a job folder by hand (what the packager will produce), launches
``cd JOBDIR && setsid nohup bash run.sh </dev/null >/dev/null 2>&1 &`` and polls, with a deadline,
for ``state/exit_code``. This test process makes itself a child subreaper so that the job's
orphaned processes are reparented to it and can be reaped (this sandbox's PID 1 never reaps, and a
zombie still counts as a member of its process group for ``killpg(pgid, 0)``).
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cloudpickle
import pytest

from gpu_magic import jobdir
from gpu_magic.models import GitSource, GPUJobRequest
from gpu_magic.packaging import runscript
from gpu_magic.packaging.runscript import (
    EXIT_CANCELLED,
    EXIT_GIT_FAILED,
    EXIT_GPU_UNAVAILABLE,
    render_run_script,
)
from gpu_magic.remote import layout, sampler

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="run.sh targets Linux hosts"),
    pytest.mark.processes,  # run.sh for real (harness/tiers.py)
]

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "fakes"
NVIDIA_FIXTURES = ROOT / "tests" / "fixtures" / "nvidia_smi"
JOB_ID = "20261126-142501-3fa9c2"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DEADLINE_S = 60.0
PR_SET_CHILD_SUBREAPER = 36


# --------------------------------------------------------------------------- harness


@pytest.fixture(autouse=True)
def subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("cannot become a child subreaper")
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def reap(pgid: int) -> None:
    """Collect the exit status of every finished process of the job's group."""
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def poll(predicate, what: str, deadline_s: float = DEADLINE_S, pgid: int | None = None):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if pgid is not None:
            reap(pgid)
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")


class Job:
    def __init__(self, root: Path, request: GPUJobRequest):
        self.root = root
        self.request = request

    def state(self, name: str) -> Path:
        return self.root / jobdir.STATE / name

    @property
    def log(self) -> str:
        path = self.root / jobdir.OUTPUT_LOG
        return path.read_text() if path.exists() else ""

    @property
    def pgid(self) -> int:
        return int(self.state(jobdir.PID).read_text())

    def launch(self, env: dict[str, str] | None = None) -> Job:
        command = (
            f"cd {shlex.quote(str(self.root))} && "
            f"setsid nohup bash {jobdir.RUN_SCRIPT} </dev/null >/dev/null 2>&1 &"
        )
        subprocess.run(["/bin/sh", "-c", command], check=True, env=env or base_env())
        return self

    def wait_started(self) -> int:
        return int(poll(lambda: _read(self.state(jobdir.PID)), "state/pid"))

    def wait(self) -> int:
        pgid = self.wait_started()
        code = poll(lambda: _read(self.state(jobdir.EXIT_CODE)), "state/exit_code", pgid=pgid)
        return int(code)

    def wait_for_log(self, text: str) -> None:
        poll(lambda: text in self.log, f"{text!r} in output.log")

    def group_gone(self) -> bool:
        pgid = self.pgid

        def gone() -> bool:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return True
            return False

        return poll(gone, f"process group {pgid} to be gone", pgid=pgid)

    def output(self, name: str):
        with open(self.root / jobdir.OUTPUTS / f"{name}{jobdir.PICKLE_SUFFIX}", "rb") as f:
            return pickle.load(f)

    def error(self) -> dict:
        return json.loads(self.state(jobdir.ERROR_JSON).read_text())


def _read(path: Path) -> str | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return text if text.endswith("\n") else None


def base_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
        and not k.startswith(("GPU_MAGIC_", "FAKE_NVIDIA_SMI"))
    }
    env.update(extra)
    return env


def make_job(
    tmp_path: Path,
    code: str,
    *,
    inputs: dict | None = None,
    interpreter: str = sys.executable,
    kill_grace: float = 1,
    **fields,
) -> Job:
    inputs = inputs or {}
    request = GPUJobRequest(code=textwrap.dedent(code), inputs=tuple(inputs), **fields)
    root = tmp_path / "jobs $HOME `x`" / JOB_ID  # run.sh must cope with any folder name
    lib = root / jobdir.LIB / "gpu_magic"
    shutil.copytree(
        ROOT / "gpu_magic" / "remote",
        lib / "remote",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (lib / "__init__.py").write_text("")
    (root / jobdir.SPEC).write_text(request.model_dump_json())
    (root / jobdir.CODE).mkdir()
    (root / jobdir.CODE / jobdir.main_file(request.language)).write_text(request.code)
    (root / jobdir.INPUTS).mkdir()
    for name, value in inputs.items():
        (root / jobdir.INPUTS / f"{name}{jobdir.PICKLE_SUFFIX}").write_bytes(
            cloudpickle.dumps(value)
        )
    script = render_run_script(JOB_ID, request, interpreter, kill_grace=kill_grace)
    (root / jobdir.RUN_SCRIPT).write_text(script)
    return Job(root, request)


# --------------------------------------------------------------------------- rendering


def test_remote_layout_matches_jobdir():
    for name in (
        "SPEC",
        "CODE",
        "INPUTS",
        "OUTPUTS",
        "STATE",
        "ERROR_JSON",
        "PICKLE_SUFFIX",
        "PYTHON_MAIN",
    ):
        assert getattr(layout, name) == getattr(jobdir, name), name


def test_shipped_paths_exist():
    lib = ROOT  # the repository root has the same layout as JOBDIR/lib
    assert (lib / runscript.GPUS_SCRIPT.removeprefix(f"{jobdir.LIB}/")).is_file()
    assert (lib / (runscript.RUNNER_MODULE.replace(".", "/") + ".py")).is_file()
    assert (lib / runscript.SAMPLER_SCRIPT.removeprefix(f"{jobdir.LIB}/")).is_file()


ALL_OPTIONS = [
    {},
    {"language": "bash", "args": ("a b", "$(x)")},
    {"gpus": 2, "timeout": 1.5},
    {"git": GitSource(url="https://example.com/r.git", ref="v1.0")},
    {"git": GitSource(url="git@github.com:o/r.git")},
    {"env": {"A": "x'y\"z", "B": "$(rm -rf /)", "C": "line\nbreak"}},
    {"venv": "~/venvs/my env"},
    {"conda": "torch env"},
    {"python": "/opt/py;3/bin/python"},
]


@pytest.mark.parametrize("fields", ALL_OPTIONS)
def test_rendered_script_is_valid_bash_and_deterministic(fields):
    request = GPUJobRequest(code="pass", **fields)
    text = render_run_script(JOB_ID, request, "python3")
    assert text == render_run_script(JOB_ID, request, "python3")
    assert text.startswith("#!/usr/bin/env bash\n")
    proc = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert "@" not in re.sub(r"\[@\]|git@github", "", text)  # no unfilled placeholder


def test_user_values_are_quoted():
    request = GPUJobRequest(
        code="pass",
        env={"EVIL": "$(touch /tmp/x); `id`"},
        language="bash",
        args=("; rm -rf ~", "$HOME"),
        git=GitSource(url="https://h/r.git", ref="main"),
    )
    text = render_run_script(JOB_ID, request, "python 3")
    assert "export EVIL='$(touch /tmp/x); `id`'" in text
    assert "bash main.sh '; rm -rf ~' '$HOME'" in text
    assert "_gm_py=('python 3')" in text


def test_interpreter_choice():
    def py(**fields) -> str:
        return runscript.python_command(GPUJobRequest(code="", **fields), "python3")

    assert py() == "python3"
    assert py(python="/usr/bin/python3.12") == "/usr/bin/python3.12"
    assert py(venv="/opt/venv/") == "/opt/venv/bin/python"
    assert py(venv="~/v x") == "\"$HOME\"/'v x/bin/python'"
    assert py(conda="ml") == "conda run --no-capture-output -n ml python"


def test_state_names_come_from_jobdir():
    text = render_run_script(JOB_ID, GPUJobRequest(code="", timeout=5), "python3")
    for name in (jobdir.PID, jobdir.STARTED_AT, jobdir.ENDED_AT, jobdir.EXIT_CODE):
        assert f"_write_state {name} " in text
    assert f"{jobdir.STATE}/{jobdir.TIMED_OUT}" in text
    assert f"{jobdir.STATE}/{jobdir.CANCEL_REQUESTED}" in text
    # exit_code is the last thing written
    assert text.index("_write_state exit_code") > text.index("_write_state ended_at")


def test_sampler_is_stopped_before_the_end_is_recorded():
    text = render_run_script(JOB_ID, GPUJobRequest(code="", gpus=1), "python3")
    start = text.index(f'-S "$_gm_jobdir"/{runscript.SAMPLER_SCRIPT} --pid $$')
    assert text.index("_gm_devices=") < start < text.index("_gm_child=$!")
    finish = text[text.index("_finish() {") :]
    assert finish.index("_stop_sampler") < finish.index("_write_state ended_at")
    conda = render_run_script(JOB_ID, GPUJobRequest(code="", conda="ml"), "/opt/py 3")
    assert f"'/opt/py 3' -S \"$_gm_jobdir\"/{runscript.SAMPLER_SCRIPT}" in conda


def test_timeout_is_not_coreutils_timeout():
    text = render_run_script(JOB_ID, GPUJobRequest(code="", timeout=3600), "python3")
    assert "sleep 3600 &" in text
    assert not re.search(r"(^|\s)timeout\s", text)


def test_rejects_unsafe_job_id():
    with pytest.raises(ValueError):
        render_run_script("x; rm -rf /", GPUJobRequest(code=""), "python3")


# --------------------------------------------------------------------------- behaviour


def test_inputs_to_outputs_round_trip(tmp_path):
    np = pytest.importorskip("numpy")
    job = make_job(
        tmp_path,
        """
        import numpy as np
        doubled = arr * 2
        total = float(np.sum(arr)) + cfg["offset"]
        print("computed", total)
        """,
        inputs={"arr": np.arange(6, dtype=np.float32).reshape(2, 3), "cfg": {"offset": 1}},
        outputs=("doubled", "total"),
    ).launch()
    assert job.wait() == 0, job.log
    np.testing.assert_array_equal(job.output("doubled"), np.arange(6).reshape(2, 3) * 2)
    assert job.output("total") == 16.0
    assert "computed 16.0" in job.log
    assert job.pgid > 1
    assert ISO_UTC.match(job.state(jobdir.STARTED_AT).read_text().strip())
    assert ISO_UTC.match(job.state(jobdir.ENDED_AT).read_text().strip())
    assert not job.state(jobdir.ERROR_JSON).exists()
    assert (job.root / jobdir.CHECKPOINTS).is_dir()
    assert not [p.name for p in job.root.rglob("*.tmp")]
    assert job.group_gone()


def test_cell_functions_and_classes_come_back(tmp_path):
    job = make_job(
        tmp_path,
        """
        class Point:
            def __init__(self, x):
                self.x = x
        def square(v):
            return v * v
        p = Point(square(3))
        """,
        outputs=("p", "square"),
    ).launch()
    assert job.wait() == 0, job.log
    with open(job.root / jobdir.OUTPUTS / "p.pkl", "rb") as f:
        assert cloudpickle.load(f).x == 9
    assert job.output("square")(4) == 16


def test_cell_is_main_module_for_multiprocessing(tmp_path):
    job = make_job(
        tmp_path,
        """
        import multiprocessing
        def square(v):
            return v * v
        with multiprocessing.get_context("fork").Pool(2) as pool:
            squares = pool.map(square, [1, 2, 3])
        """,
        outputs=("squares",),
    ).launch()
    assert job.wait() == 0, job.log
    assert job.output("squares") == [1, 4, 9]


def test_exception_writes_error_json(tmp_path):
    job = make_job(
        tmp_path,
        """\
        a = 1
        b = a / 0
        """,
    ).launch()
    assert job.wait() == 1
    error = job.error()
    assert error["type"] == "ZeroDivisionError"
    assert error["message"] == "division by zero"
    tb = error["traceback"]
    assert tb.startswith("Traceback (most recent call last):\n")
    assert f'{jobdir.CODE}/{jobdir.PYTHON_MAIN}", line 2, in <module>' in tb
    assert "runner.py" not in tb
    assert "b = a / 0" in tb
    assert "ZeroDivisionError: division by zero" in job.log


def test_exception_type_of_library_error_is_qualified(tmp_path):
    job = make_job(tmp_path, "import json\njson.loads('{')\n").launch()
    assert job.wait() == 1
    assert job.error()["type"] == "json.decoder.JSONDecodeError"


def test_missing_output_is_named_and_the_others_are_saved(tmp_path):
    """A typo in one ``--outputs`` name fails the job, naming it, and loses no other output."""
    job = make_job(tmp_path, "x = 1\nimport os\n", outputs=("x", "y", "z")).launch()
    assert job.wait() == 1
    error = job.error()
    assert error["type"] == "NameError"
    assert error["message"] == (
        "output variables 'y', 'z' were not defined by the cell; saved: x; defined names: x"
    )
    assert "output variables 'y', 'z' were not defined" in job.log
    assert (job.root / jobdir.OUTPUTS / "x.pkl").exists()


def test_unpicklable_output_is_named(tmp_path):
    job = make_job(tmp_path, "gen = (i for i in range(3))\n", outputs=("gen",)).launch()
    assert job.wait() == 1
    error = job.error()
    assert "cannot pickle output variable 'gen'" in error["message"]
    assert "generator" in error["message"]
    assert not list((job.root / jobdir.OUTPUTS).iterdir())


def test_input_needing_a_missing_module_is_explained(tmp_path):
    blob = b"cno_such_module_x\nA\n."  # protocol 0: the global no_such_module_x.A
    job = make_job(tmp_path, "pass\n")
    job.root.joinpath(jobdir.SPEC).write_text(
        GPUJobRequest(code="pass\n", inputs=("obj",)).model_dump_json()
    )
    (job.root / jobdir.INPUTS / "obj.pkl").write_bytes(blob)
    job.launch()
    assert job.wait() == 1
    error = job.error()
    assert error["type"] == "ModuleNotFoundError"
    assert "cannot load input variable 'obj'" in error["message"]
    assert "no_such_module_x" in error["message"]


@pytest.mark.parametrize(("code", "expected"), [("3", 3), ("'bad thing'", 1)])
def test_sys_exit_code_propagates(tmp_path, code, expected):
    job = make_job(tmp_path, f"import sys\nsys.exit({code})\n").launch()
    assert job.wait() == expected
    assert job.error()["type"] == "SystemExit"


def test_sys_exit_zero_still_saves_outputs(tmp_path):
    job = make_job(tmp_path, "import sys\nr = 5\nsys.exit(0)\n", outputs=("r",)).launch()
    assert job.wait() == 0
    assert job.output("r") == 5
    assert not job.state(jobdir.ERROR_JSON).exists()


def test_env_args_and_paths_visible_to_python_cell(tmp_path):
    job = make_job(
        tmp_path,
        """
        import os, sys
        seen = {
            "argv": sys.argv,
            "foo": os.environ["FOO"],
            "job_id": os.environ["GPU_MAGIC_JOB_ID"],
            "job_dir": os.environ["GPU_MAGIC_JOB_DIR"],
            "outputs": os.environ["GPU_MAGIC_OUTPUTS"],
            "checkpoints": os.environ["GPU_MAGIC_CHECKPOINTS"],
            "pythonpath": os.environ["PYTHONPATH"].split(os.pathsep),
            "unbuffered": os.environ["PYTHONUNBUFFERED"],
            "cwd": os.getcwd(),
            "file": __file__,
            "name": __name__,
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        """,
        env={"FOO": "bar baz"},
        args=("--lr", "0.1"),
        outputs=("seen",),
    )
    job.launch(base_env(PYTHONPATH="/already/there", CUDA_VISIBLE_DEVICES="untouched"))
    assert job.wait() == 0, job.log
    seen = job.output("seen")
    real = str(job.root.resolve())
    assert seen["argv"] == ["main.py", "--lr", "0.1"]
    assert seen["foo"] == "bar baz"
    assert seen["job_id"] == JOB_ID
    assert seen["job_dir"] == real
    assert seen["outputs"] == f"{real}/outputs" and seen["checkpoints"] == f"{real}/checkpoints"
    assert seen["pythonpath"] == [f"{real}/{jobdir.LIB}", "/already/there"]
    assert seen["unbuffered"] == "1"
    assert seen["cwd"] == f"{real}/{jobdir.CODE}"
    assert seen["file"] == f"{real}/{jobdir.CODE}/{jobdir.PYTHON_MAIN}"
    assert seen["name"] == "__main__"
    assert seen["cuda"] == "untouched"  # gpus=0 leaves it alone


def test_bash_cell_with_args(tmp_path):
    job = make_job(
        tmp_path,
        """
        echo "argc=$#"
        printf '<%s>\\n' "$@"
        echo "job=$GPU_MAGIC_JOB_ID cwd=$(basename "$PWD")"
        exit 7
        """,
        language="bash",
        args=("one", "two words", ""),
    ).launch()
    assert job.wait() == 7
    log = job.log
    assert "argc=3\n<one>\n<two words>\n<>\n" in log
    assert f"job={JOB_ID} cwd={jobdir.CODE}" in log
    assert not job.state(jobdir.ERROR_JSON).exists()


def test_shell_metacharacters_arrive_literally(tmp_path):
    marker = tmp_path / "pwned"
    nasty = [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"'; touch {marker}; '",
        f'"; touch {marker}; "',
        f"x\ntouch {marker}",
        "${HOME}",
        "*",
    ]
    env = {f"V{i}": value for i, value in enumerate(nasty)}
    job = make_job(
        tmp_path,
        """
        printf '[%s]\\n' "$@"
        for i in 0 1 2 3 4 5 6; do v="V$i"; printf '{%s}\\n' "${!v}"; done
        """,
        language="bash",
        env=env,
        args=tuple(nasty),
    ).launch()
    assert job.wait() == 0, job.log
    for value in nasty:
        assert f"[{value}]" in job.log
        assert "{" + value + "}" in job.log
    assert not marker.exists()


def test_python_cell_sees_literal_values(tmp_path):
    marker = tmp_path / "pwned"
    value = f"$(touch {marker}) `touch {marker}` '\"; touch {marker}"
    job = make_job(
        tmp_path,
        "import os, sys\ngot = (os.environ['X'], sys.argv[1:])\n",
        env={"X": value},
        args=(value, "--flag=$HOME"),
        outputs=("got",),
    ).launch()
    assert job.wait() == 0, job.log
    assert job.output("got") == (value, [value, "--flag=$HOME"])
    assert not marker.exists()


def test_output_is_line_buffered(tmp_path):
    job = make_job(
        tmp_path,
        """
        import time
        print("first line")
        time.sleep(60)
        """,
    ).launch()
    job.wait_for_log("first line")  # printed while the cell still runs
    os.killpg(job.pgid, signal.SIGTERM)
    assert job.wait() == 143


def test_timeout_stops_the_whole_group(tmp_path):
    job = make_job(
        tmp_path,
        """
        sleep 300 &
        (sleep 300; echo never) &
        echo started
        wait
        """,
        language="bash",
        timeout=1,
    ).launch()
    assert job.wait() == 143
    assert job.state(jobdir.TIMED_OUT).exists()
    assert "timed out after 1 s" in job.log
    assert "never" not in job.log
    assert job.group_gone()


def test_timeout_of_python_cell(tmp_path):
    job = make_job(tmp_path, "import time\ntime.sleep(300)\n", timeout=0.5).launch()
    assert job.wait() == 143
    assert job.state(jobdir.TIMED_OUT).exists()
    assert not job.state(jobdir.ERROR_JSON).exists()
    assert job.group_gone()


def test_finishing_before_the_timeout_leaves_nothing_behind(tmp_path):
    job = make_job(tmp_path, "x = 1\n", timeout=300).launch()
    assert job.wait() == 0
    assert not job.state(jobdir.TIMED_OUT).exists()
    assert job.group_gone()  # the watchdog and its sleep are gone too
    assert "left running" not in job.log  # stopping its own watchdog is not news


def test_a_cell_that_ends_at_once_does_not_find_its_watchdog_left_running(tmp_path):
    """The watchdog is stopped while it may still be starting its sleep (a TERM before the
    sleep's pid is known left the sleep behind): 20 instant cells, none reports it."""
    for number in range(20):
        job = make_job(tmp_path / str(number), "true", language="bash", timeout=300).launch()
        assert job.wait() == 0
        assert "left running" not in job.log, job.log
        assert job.group_gone()


def test_processes_left_running_are_stopped(tmp_path):
    job = make_job(
        tmp_path,
        "sleep 300 >/dev/null 2>&1 &\necho done\n",
        language="bash",
    ).launch()
    assert job.wait() == 0
    assert "left running" in job.log
    assert job.group_gone()


def test_cancel_terminates_group_and_writes_exit_code(tmp_path):
    job = make_job(
        tmp_path,
        """
        import subprocess, time
        child = subprocess.Popen(["sleep", "300"])
        print("ready", flush=True)
        time.sleep(300)
        """,
    ).launch()
    job.wait_for_log("ready")
    pgid = job.pgid
    job.state(jobdir.CANCEL_REQUESTED).touch()
    os.killpg(pgid, signal.SIGTERM)  # what the client sends: kill -TERM -- -PGID
    assert job.wait() == 143
    assert ISO_UTC.match(job.state(jobdir.ENDED_AT).read_text().strip())
    assert "received SIGTERM" in job.log
    assert job.group_gone()


def test_cancel_kills_what_ignores_term(tmp_path):
    job = make_job(
        tmp_path,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(300)
        """,
        kill_grace=0.5,
    ).launch()
    job.wait_for_log("ready")
    job.state(jobdir.CANCEL_REQUESTED).touch()
    os.killpg(job.pgid, signal.SIGTERM)
    assert job.wait() == 137
    assert "sending KILL" in job.log
    assert job.group_gone()


def test_cancel_requested_before_start(tmp_path):
    job = make_job(tmp_path, "print('should not run')\n")
    (job.root / jobdir.STATE).mkdir()
    job.state(jobdir.CANCEL_REQUESTED).touch()
    job.launch()
    assert job.wait() == EXIT_CANCELLED
    assert "should not run" not in job.log
    assert "cancelled before the job started" in job.log


def test_stale_state_of_a_previous_attempt_is_removed(tmp_path):
    job = make_job(tmp_path, "import time\nprint('ready', flush=True)\ntime.sleep(300)\n")
    (job.root / jobdir.STATE).mkdir()
    for name in (jobdir.EXIT_CODE, jobdir.ENDED_AT, jobdir.TIMED_OUT, jobdir.ERROR_JSON):
        job.state(name).write_text("old\n")
    job.launch()
    job.wait_for_log("ready")
    for name in (jobdir.EXIT_CODE, jobdir.ENDED_AT, jobdir.TIMED_OUT, jobdir.ERROR_JSON):
        assert not job.state(name).exists(), name
    os.killpg(job.pgid, signal.SIGTERM)
    assert job.wait() == 143


def fake_gpu_env(**extra: str) -> dict[str, str]:
    return base_env(PATH=f"{FAKES}{os.pathsep}{os.environ['PATH']}", **extra)


def test_gpus_picks_the_idle_ones(tmp_path):
    job = make_job(
        tmp_path,
        "import os\ncuda = (os.environ['CUDA_VISIBLE_DEVICES'], os.environ['CUDA_DEVICE_ORDER'])\n",
        gpus=2,
        outputs=("cuda",),
    )
    job.launch(fake_gpu_env())
    assert job.wait() == 0, job.log
    assert job.output("cuda") == ("1,3", "PCI_BUS_ID")
    assert "CUDA_VISIBLE_DEVICES=1,3" in job.log


def test_gpus_respect_an_existing_cuda_visible_devices(tmp_path):
    job = make_job(tmp_path, 'echo "cuda=$CUDA_VISIBLE_DEVICES"\n', gpus=2, language="bash")
    job.launch(fake_gpu_env(CUDA_VISIBLE_DEVICES="0,1,2"))
    assert job.wait() == 0, job.log
    assert "cuda=1,2\n" in job.log
    assert "only 1 of the 2 requested GPU(s) are idle" in job.log


def test_gpus_without_nvidia_smi_fails_clearly(tmp_path):
    job = make_job(tmp_path, "print('should not run')\n", gpus=1)
    job.launch(base_env(GPU_MAGIC_NVIDIA_SMI=str(tmp_path / "no" / "nvidia-smi")))
    assert job.wait() == EXIT_GPU_UNAVAILABLE
    log = job.log
    assert "nvidia-smi was not found" in log
    assert "could not get 1 GPU(s)" in log
    assert "should not run" not in log


def test_more_gpus_than_the_host_has_fails_clearly(tmp_path):
    job = make_job(tmp_path, "print('should not run')\n", gpus=5)
    job.launch(fake_gpu_env())
    assert job.wait() == EXIT_GPU_UNAVAILABLE
    assert "asked for 5 GPU(s) but only 4 are visible" in job.log


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    path = tmp_path / "src-repo"
    path.mkdir()
    git("init", "-q", cwd=path)
    (path / "helper.py").write_text("VERSION = 'v1'\n")
    git("add", "helper.py", cwd=path)
    git("commit", "-q", "-m", "one", cwd=path)
    git("tag", "v1", cwd=path)
    (path / "helper.py").write_text("VERSION = 'v2'\n")
    git("commit", "-q", "-am", "two", cwd=path)
    return path


def test_git_source_at_a_tag(tmp_path, repo):
    job = make_job(
        tmp_path,
        "import helper\nversion = helper.VERSION\n",
        git=GitSource(url=str(repo), ref="v1"),
        outputs=("version",),
    ).launch()
    assert job.wait() == 0, job.log
    assert job.output("version") == "v1"
    assert (job.root / runscript.GIT_CHECKOUT / "helper.py").is_file()


def test_git_source_without_ref_is_the_default_branch(tmp_path, repo):
    job = make_job(
        tmp_path,
        "cat repo/helper.py\n",
        language="bash",
        git=GitSource(url=str(repo)),
    ).launch()
    assert job.wait() == 0, job.log
    assert "VERSION = 'v2'" in job.log


def test_git_failure_fails_the_job(tmp_path, repo):
    job = make_job(
        tmp_path, "print('should not run')\n", git=GitSource(url=str(repo), ref="nosuch")
    ).launch()
    assert job.wait() == EXIT_GIT_FAILED
    log = job.log
    assert "nosuch" in log
    assert "git checkout of nosuch failed" in log
    assert "should not run" not in log


def test_git_clone_failure_fails_the_job(tmp_path):
    job = make_job(tmp_path, "pass\n", git=GitSource(url=str(tmp_path / "missing"))).launch()
    assert job.wait() == EXIT_GIT_FAILED
    assert "git clone failed" in job.log


# --------------------------------------------------------------------------- GPU telemetry

SAMPLE_INTERVAL = 0.2
SAMPLE_LINE = re.compile(r"^(\d{10}\.\d\d), (\d+), (GPU-[0-9a-f-]+), [^,\n]+(, [^,\n]+){4}$")


def sampling_env(scenario: str = "h100x4", **extra: str) -> dict[str, str]:
    settings = {
        "FAKE_NVIDIA_SMI_DIR": str(NVIDIA_FIXTURES / scenario),
        sampler.INTERVAL_ENV: str(SAMPLE_INTERVAL),
    }
    return fake_gpu_env(**{**settings, **extra})


def wait_for_samples(lines: int) -> str:
    """A bash cell that ends once gpu.csv has ``lines`` lines (or after 30 s)."""
    return f"""
    for _ in $(seq 600); do
      [ "$(cat "$GPU_MAGIC_JOB_DIR/gpu.csv" 2>/dev/null | wc -l)" -ge {lines} ] && break
      sleep 0.05
    done
    """


def gpu_lines(job: Job) -> list[str]:
    path = job.root / jobdir.GPU_CSV
    text = path.read_text() if path.exists() else ""
    assert text == "" or text.endswith("\n")
    return text.splitlines()


def telemetry_marker(job: Job) -> str | None:
    return _read(job.state(runscript.GPU_TELEMETRY))


def telemetry_processes(pgid: int) -> list[str]:
    """Live (not zombie) sampler and nvidia-smi processes of the job's process group."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if (
            stat[0] not in "ZX"
            and int(stat[2]) == pgid
            and re.search("sampler|nvidia-smi", cmdline)
        ):
            found.append(f"{entry}: {cmdline}")
    return found


def assert_ticks(lines: list[str], fixture: Path, indices: list[str]) -> None:
    """Every line is a stamped fixture line of one of ``indices``; each tick has all of them."""
    expected = {line.split(", ")[0]: line for line in fixture.read_text().splitlines()}
    ticks: dict[str, list[str]] = {}
    for line in lines:
        match = SAMPLE_LINE.match(line)
        assert match, line
        stamp, rest = line.split(", ", 1)
        assert rest == expected[match.group(2)]
        ticks.setdefault(stamp, []).append(match.group(2))
    assert all(found == indices for found in list(ticks.values())[:-1]), ticks
    stamps = sorted(float(stamp) for stamp in ticks)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert SAMPLE_INTERVAL * 0.5 <= statistics.median(gaps) <= SAMPLE_INTERVAL * 10, gaps


def test_gpu_samples_only_the_chosen_gpus(tmp_path):
    job = make_job(tmp_path, wait_for_samples(8), language="bash", gpus=2)
    job.launch(sampling_env())
    assert job.wait() == 0, job.log
    assert not telemetry_processes(job.pgid)  # stopped before exit_code was written
    lines = gpu_lines(job)
    assert len(lines) >= 8
    assert_ticks(lines, NVIDIA_FIXTURES / "h100x4" / "query-sample.csv", ["1", "3"])
    assert telemetry_marker(job) is None
    assert "left running" not in job.log
    assert "sampler" not in job.log
    assert job.group_gone()
    time.sleep(SAMPLE_INTERVAL * 3)
    assert gpu_lines(job) == lines  # nothing sampled after the end


def test_gpu_samples_of_a_real_h100_capture(tmp_path):
    job = make_job(tmp_path, wait_for_samples(3), language="bash", gpus=1)
    job.launch(sampling_env("h100x1-real-busy"))
    assert job.wait() == 0, job.log
    lines = gpu_lines(job)
    assert len(lines) >= 3
    for line in lines:
        stamp, rest = line.split(", ", 1)
        assert re.fullmatch(r"\d{10}\.\d\d", stamp)
        assert rest == "0, GPU-827f571d-4f36-e59b-ebeb-8252ebf24cfb, 100, 1513, 81559, 64, 397.90"
    assert job.group_gone()


def test_gpu_samples_follow_cuda_visible_devices_without_gpus(tmp_path):
    job = make_job(tmp_path, wait_for_samples(6), language="bash")
    job.launch(sampling_env(CUDA_VISIBLE_DEVICES="GPU-e5d1a9f3,0"))
    assert job.wait() == 0, job.log
    assert_ticks(gpu_lines(job), NVIDIA_FIXTURES / "h100x4" / "query-sample.csv", ["0", "2"])


def test_no_gpus_means_no_telemetry(tmp_path):
    job = make_job(tmp_path, "echo cpu only\n", language="bash")
    job.launch(sampling_env())
    assert job.wait() == 0, job.log
    assert not (job.root / jobdir.GPU_CSV).exists()
    assert telemetry_marker(job) == runscript.NO_GPUS_REQUESTED + "\n"


@pytest.mark.parametrize(
    ("scenario", "nvidia_smi", "reason"),
    [
        ("h100x4", "/no/such/nvidia-smi", "/no/such/nvidia-smi was not found"),
        ("no-driver", "", "nvidia-smi exited with code 9: NVIDIA-SMI has failed"),
    ],
)
def test_telemetry_unavailable_is_not_an_error(tmp_path, scenario, nvidia_smi, reason):
    job = make_job(tmp_path, "sleep 0.5\necho done\n", language="bash")
    (job.root / jobdir.STATE).mkdir()
    job.state(runscript.GPU_TELEMETRY).write_text("stale\n")
    extra = {"GPU_MAGIC_NVIDIA_SMI": nvidia_smi} if nvidia_smi else {}
    job.launch(sampling_env(scenario, CUDA_VISIBLE_DEVICES="0", **extra))
    assert job.wait() == 0, job.log
    marker = poll(lambda: telemetry_marker(job), "state/gpu_telemetry")
    assert marker.startswith(f"{sampler.UNAVAILABLE}: {reason}"), marker
    assert not (job.root / jobdir.GPU_CSV).exists()
    assert "done" in job.log
    assert "nvidia-smi" not in job.log
    assert job.group_gone()


def test_stale_telemetry_marker_is_removed(tmp_path):
    job = make_job(tmp_path, wait_for_samples(2), language="bash", gpus=1)
    (job.root / jobdir.STATE).mkdir()
    job.state(runscript.GPU_TELEMETRY).write_text("unavailable: old attempt\n")
    job.launch(sampling_env())
    assert job.wait() == 0, job.log
    assert telemetry_marker(job) is None


def test_cancel_stops_the_sampler(tmp_path):
    job = make_job(tmp_path, "sleep 300\n", language="bash", gpus=1)
    job.launch(sampling_env())
    pgid = job.wait_started()
    poll(lambda: gpu_lines(job), "a GPU sample")
    assert telemetry_processes(pgid)
    job.state(jobdir.CANCEL_REQUESTED).touch()
    os.killpg(pgid, signal.SIGTERM)
    assert job.wait() == 143
    assert not telemetry_processes(pgid)
    assert "sending KILL" not in job.log
    assert job.group_gone()


def test_timeout_stops_the_sampler(tmp_path):
    job = make_job(tmp_path, "sleep 300\n", language="bash", gpus=1, timeout=1)
    job.launch(sampling_env())
    assert job.wait() == 143
    assert job.state(jobdir.TIMED_OUT).exists()
    assert gpu_lines(job)
    assert not telemetry_processes(job.pgid)
    assert job.group_gone()


def test_failure_after_the_sampler_started_stops_it(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text("#!/bin/sh\nsleep 1\necho 'fatal: no such repo' >&2\nexit 128\n")
    (bin_dir / "git").chmod(0o755)
    job = make_job(tmp_path, "pass\n", gpus=1, git=GitSource(url="https://h/r.git"))
    env = sampling_env(**{sampler.INTERVAL_ENV: "30"})  # its own check of run.sh: too late
    job.launch({**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"})
    assert job.wait() == EXIT_GIT_FAILED
    assert not telemetry_processes(job.pgid)
    assert job.group_gone()
