"""classify(): on real captured job tails, on tails built from the libraries' own message
formats (GPU, NCCL, Slurm; see each fixture's header), on the precedence between rules, and on
junk: it stays total (one kind, one-line texts) and fast.

Fixtures (``tests/fixtures/failures/NAME.log``): ``# key: value`` header lines, ``# ---``, then
the log tail. ``capture.py`` there makes the real ones again.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_magic.failures import (
    SHOWN_CHARS,
    DiskSpace,
    Evidence,
    Failure,
    FailureKind,
    classify,
)
from gpu_magic.models import JobStatus

pytestmark = pytest.mark.processes  # real local jobs or run.sh (harness/tiers.py)

FIXTURES = Path(__file__).parent / "fixtures" / "failures"
K = FailureKind
GB = 10**9


def header_and_tail(name: str) -> tuple[dict[str, str], str]:
    head, _, tail = (FIXTURES / f"{name}.log").read_text().partition("# ---\n")
    meta = dict(line[2:].split(": ", 1) for line in head.splitlines() if ": " in line)
    return meta, tail


def evidence(name: str, **changes) -> Evidence:
    """The fixture as the client would hand it over; ``changes`` replace fields."""
    meta, tail = header_and_tail(name)
    code = meta.get("exit_code", "")
    built = Evidence(
        status=meta["status"],
        exit_code=int(code) if code else None,
        scheduler_state=meta.get("scheduler_state"),
        error_type=json.loads(meta["error_type"]) if "error_type" in meta else None,
        error_message=json.loads(meta["error_message"]) if "error_message" in meta else None,
        log_tail=tail,
    )
    return replace(built, **changes)


def failed(**fields) -> Evidence:
    return Evidence(**{"status": "failed", "exit_code": 1, **fields})


def assert_one_line(failure: Failure) -> None:
    for text in (failure.explanation, failure.fix):
        assert text and "\n" not in text and "\r" not in text
        assert len(text) <= SHOWN_CHARS


# -- every fixture --------------------------------------------------------------------------------

EXPECTED = {
    # real captures
    "memory_error": K.HOST_OOM,
    "cgroup_oom": K.HOST_OOM,
    "kernel_oom": K.HOST_OOM,
    "sigkill": K.HOST_OOM,
    "sigterm": K.KILLED,
    "segfault": K.KILLED,
    "module_not_found": K.IMPORT_ERROR,
    "cannot_import_name": K.IMPORT_ERROR,
    "syntax_error": K.SYNTAX_ERROR,
    "value_error": K.USER_EXCEPTION,
    "sys_exit": K.USER_EXCEPTION,
    "bash_exit": K.USER_EXCEPTION,
    "no_gpus": K.USER_EXCEPTION,
    "disk_full_write": K.DISK_FULL,
    "disk_full_open": K.DISK_FULL,
    "disk_full_dd": K.DISK_FULL,
    "timed_out": K.TIMEOUT,
    "cancelled": K.CANCELLED,
    "slurm_time_limit": K.TIMEOUT,
    "slurm_scancel": K.CANCELLED,
    # built from the libraries' message formats
    "cuda_oom_torch_old": K.CUDA_OOM,
    "cuda_oom_torch_new": K.CUDA_OOM,
    "cuda_oom_subprocess": K.CUDA_OOM,
    "tf_oom": K.CUDA_OOM,
    "jax_oom": K.CUDA_OOM,
    "nccl_error": K.NCCL,
    "nccl_watchdog": K.NCCL,
    "slurm_oom": K.HOST_OOM,
    "slurm_preempted": K.PREEMPTED,
    "slurm_node_fail": K.NODE_FAILURE,
}


def fixture_evidence(name: str) -> Evidence:
    if name == "kernel_oom":  # dmesg's lines, as a launcher that appends them would show them
        return Evidence(status="failed", exit_code=137, log_tail=header_and_tail(name)[1])
    return evidence(name)


def test_every_fixture_is_in_the_table():
    on_disk = {p.stem for p in FIXTURES.glob("*.log")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_gets_its_kind_with_one_line_texts(name):
    failure = classify(fixture_evidence(name))
    assert failure is not None
    assert failure.kind is EXPECTED[name]
    assert_one_line(failure)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_headers_say_where_the_text_comes_from(name):
    meta, _ = header_and_tail(name)
    assert meta["source"].startswith(("real capture (capture.py", "built from library source"))
    assert meta["how"]


def test_a_completed_job_has_no_failure():
    assert classify(Evidence(status="completed", exit_code=0)) is None
    assert classify(evidence("value_error", status="completed")) is None
    assert classify(Evidence(status=JobStatus.COMPLETED, exit_code=0)) is None


# -- host memory ----------------------------------------------------------------------------------


def test_memory_error_names_the_cells_line_and_suggests_mem():
    failure = classify(evidence("memory_error"))
    assert failure.kind is K.HOST_OOM
    assert "MemoryError" in failure.explanation and "line 2 of the cell" in failure.explanation
    assert failure.detail["line"] == 2
    assert "--mem" in failure.fix


def test_the_kernels_oom_kill_is_host_oom_with_the_pid():
    _, text = header_and_tail("kernel_oom")
    pid = int(re.search(r"Killed process (\d+)", text)[1])
    failure = classify(Evidence(status="failed", exit_code=137, log_tail=text))
    assert failure.kind is K.HOST_OOM
    assert failure.detail["pid"] == pid
    assert f"killed process {pid} (python)" in failure.explanation


def test_an_unexplained_sigkill_reads_as_the_oom_killer_because_the_log_cannot_tell():
    """The cgroup's kill and a ``kill -9`` leave the same log (compare the two captures): with
    cancel and timeout ruled out the OOM killer is the likely sender, and the text says so."""
    oom, self_kill = classify(evidence("cgroup_oom")), classify(evidence("sigkill"))
    assert oom.kind is self_kill.kind is K.HOST_OOM
    assert oom.detail["signal"] == 9
    assert "most likely" in oom.explanation and "SIGKILL" in oom.explanation
    assert "--mem" in oom.fix


@pytest.mark.parametrize(
    "line",
    [
        'run.sh: line 179:  9883 Killed                  "${_gm_py[@]}" -u -m runner',
        "run.sh: line 147: 30233 Killed                  python",
        "/var/spool/slurmd/job42/slurm_script: line 4: 1153 Killed      python train.py",
        "Killed",
    ],
)
def test_the_shells_killed_line_in_its_forms(line):
    failure = classify(failed(exit_code=137, log_tail=f"step 3\n{line}\n"))
    assert failure.kind is K.HOST_OOM and failure.detail["signal"] == 9


def test_a_sigkill_without_the_shells_line_is_killed():
    for code in (137, -9):
        failure = classify(Evidence(status="failed", exit_code=code, log_tail="step 3\n"))
        assert failure.kind is K.KILLED
        assert "signal 9 (SIGKILL)" in failure.explanation
        assert failure.detail["signal"] == 9


def test_slurm_out_of_memory_beats_a_generic_exit_code():
    failure = classify(failed(exit_code=1, scheduler_state="OUT_OF_MEMORY"))
    assert failure.kind is K.HOST_OOM
    assert "OUT_OF_MEMORY" in failure.explanation and "--mem" in failure.fix


def test_slurmstepds_oom_kill_line_alone_is_host_oom():
    failure = classify(evidence("slurm_oom", scheduler_state=None))
    assert failure.kind is K.HOST_OOM
    assert failure.detail["events"] == 1
    # the older task/cgroup wording: "Detected %"PRIu64" oom-kill event(s) in step %s cgroup."
    older = "slurmstepd: error: Detected 3 oom-kill event(s) in step 77.0 cgroup.\n"
    assert classify(failed(exit_code=0, log_tail=older)).detail["events"] == 3


def test_a_dataloader_worker_killed_by_sigkill_is_host_oom():
    message = "DataLoader worker (pid 4242) is killed by signal: Killed. "
    failure = classify(failed(error_type="RuntimeError", error_message=message))
    assert failure.kind is K.HOST_OOM
    assert "pid 4242" in failure.explanation


def test_tensorflow_oom_on_the_cpu_is_host_oom():
    gpu = evidence("tf_oom")
    message = gpu.error_message.replace("device:GPU:0", "device:CPU:0")
    failure = classify(replace(gpu, error_message=message, log_tail=""))
    assert failure.kind is K.HOST_OOM
    assert "[65536,65536]" in failure.explanation


# -- GPU memory -----------------------------------------------------------------------------------


def test_old_pytorch_cuda_oom_gives_the_allocation_and_the_gpu():
    failure = classify(evidence("cuda_oom_torch_old"))
    assert failure.kind is K.CUDA_OOM
    assert dict(failure.detail) == {
        "framework": "pytorch",
        "tried": "2.00 GiB",
        "gpu": 0,
        "total": "15.78 GiB",
        "free": "1.06 GiB",
    }
    assert failure.explanation == (
        "CUDA out of memory on GPU 0 while allocating 2.00 GiB (1.06 GiB free of 15.78 GiB)"
    )
    assert "batch" in failure.fix and "mixed precision" in failure.fix


def test_new_pytorch_cuda_oom_from_the_traceback_alone():
    failure = classify(evidence("cuda_oom_torch_new"))  # no error.json: the tail's traceback
    assert failure.kind is K.CUDA_OOM
    assert failure.detail["tried"] == "20.00 MiB" and failure.detail["gpu"] == 0
    assert "6.12 MiB free of 79.15 GiB" in failure.explanation


def test_a_torch_oom_type_is_cuda_oom_whatever_its_message():
    for type_name in ("torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError"):
        failure = classify(failed(error_type=type_name, error_message="out of memory"))
        assert failure.kind is K.CUDA_OOM


def test_a_cuda_oom_line_beats_the_generic_exception_it_caused():
    failure = classify(evidence("cuda_oom_subprocess"))
    assert failure.kind is K.CUDA_OOM
    assert failure.detail["gpu"] == 1 and failure.detail["tried"] == "1.50 GiB"


def test_tensorflow_oom_names_the_shape_and_gpu():
    failure = classify(evidence("tf_oom"))
    assert failure.detail["framework"] == "tensorflow"
    assert failure.detail["gpu"] == 0 and failure.detail["shape"] == "[65536,65536]"


def test_jax_oom_gives_the_size_in_readable_units():
    failure = classify(evidence("jax_oom"))
    assert failure.detail["tried_bytes"] == 17179869184
    assert "17.2 GB" in failure.explanation


def test_cuda_driver_oom_names_count_in_the_exception_but_not_beside_one():
    raised = classify(
        failed(
            error_type="cupy_backends.cuda.api.runtime.CUDARuntimeError",
            error_message="cudaErrorMemoryAllocation: out of memory",
        )
    )
    assert raised.kind is K.CUDA_OOM
    logged = (
        "I tensorflow/stream_executor/cuda/cuda_driver.cc:775] failed to allocate 256.00M"
        " (268435456 bytes) from device: CUDA_ERROR_OUT_OF_MEMORY: out of memory\n"
    )
    failure = classify(evidence("value_error", log_tail=logged + header_and_tail("value_error")[1]))
    assert failure.kind is K.USER_EXCEPTION


def test_an_abort_after_a_cpp_cuda_oom_is_cuda_oom():
    # libstdc++'s terminate message around c10's OutOfMemoryError (same CUDA OOM format)
    tail = (
        "terminate called after throwing an instance of 'c10::OutOfMemoryError'\n"
        "  what():  CUDA out of memory. Tried to allocate 4.00 GiB. GPU 0 has a total capacity"
        " of 39.39 GiB of which 1.01 GiB is free.\n"
        "run.sh: line 147: 777 Aborted                 (core dumped) python train.py\n"
    )
    failure = classify(failed(exit_code=134, log_tail=tail))
    assert failure.kind is K.CUDA_OOM and failure.detail["tried"] == "4.00 GiB"


def test_a_cuda_oom_line_does_not_explain_an_outside_kill():
    _, tail = header_and_tail("cuda_oom_torch_new")
    assert classify(failed(exit_code=-9, log_tail=tail)).kind is K.KILLED
    assert classify(failed(exit_code=143, log_tail=tail)).kind is K.KILLED


# -- disk -----------------------------------------------------------------------------------------


def test_disk_full_beats_user_exception_for_oserror_28():
    failure = classify(evidence("disk_full_write"))
    assert failure.kind is K.DISK_FULL
    assert failure.detail["errno"] == 28
    assert "%gpu_cleanup" in failure.fix


def test_disk_full_with_the_measured_space():
    measured = DiskSpace("/scratch/u/gpu_jobs", free_bytes=0, total_bytes=GB)
    failure = classify(evidence("disk_full_write", disk_free=measured))
    assert failure.explanation == "/scratch/u/gpu_jobs is full: 0 B free of 1.0 GB"
    assert failure.detail["free_bytes"] == 0 and failure.detail["total_bytes"] == GB


def test_disk_full_names_the_file_from_the_message():
    disk = "/scratch/u/gpu_jobs/disk_full_open/disk"
    file = f"{disk}/shard_0007.npy"
    alone = classify(evidence("disk_full_open"))
    assert alone.detail["path"] == file and file in alone.explanation
    same_disk = classify(evidence("disk_full_open", disk_free=DiskSpace(disk, 0, 65536)))
    assert same_disk.explanation == f"{disk} is full: 0 B free of 65.5 kB (writing {file})"
    elsewhere = classify(evidence("disk_full_open", disk_free=DiskSpace("/home", 5 * GB, GB)))
    assert file in elsewhere.explanation and "/home has 5.0 GB free" in elsewhere.explanation


def test_disk_full_from_a_shell_tool_without_a_traceback():
    failure = classify(evidence("disk_full_dd"))
    assert failure.detail["path"] == "/scratch/u/gpu_jobs/disk_full_dd/disk/data.bin"


def test_disk_quota_exceeded_is_disk_full_and_says_quota():
    message = str(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/home/u/ckpt.pt"))
    failure = classify(failed(error_type="OSError", error_message=message))
    assert failure.kind is K.DISK_FULL and failure.detail["errno"] == 122
    assert "quota" in failure.explanation and "quota" in failure.fix


# -- NCCL -----------------------------------------------------------------------------------------


def test_nccl_error_names_the_nccl_error_and_version():
    failure = classify(evidence("nccl_error"))
    assert failure.detail["error"] == "ncclSystemError"
    assert failure.detail["nccl_version"] == "2.19.3"
    assert "unhandled system error" in failure.explanation
    assert "NCCL_DEBUG=INFO" in failure.fix


def test_the_nccl_watchdogs_abort_is_nccl_with_the_collective():
    failure = classify(evidence("nccl_watchdog"))
    assert dict(failure.detail) == {"op": "ALLREDUCE", "timeout_ms": 600000, "ran_ms": 600054}
    assert "ALLREDUCE" in failure.explanation


def test_a_harmless_nccl_warning_does_not_beat_the_cells_exception():
    warn = "node1:1:2 [0] misc/socket.cc:50 NCCL WARN Call to bind failed: Address already in use\n"
    failure = classify(evidence("value_error", log_tail=warn + header_and_tail("value_error")[1]))
    assert failure.kind is K.USER_EXCEPTION


# -- imports and syntax ---------------------------------------------------------------------------


def test_module_not_found_names_the_module_and_the_environment_options():
    failure = classify(evidence("module_not_found"))
    assert failure.detail["module"] == "flash_attn"
    assert "install flash_attn" in failure.fix
    assert "--venv" in failure.fix and "--conda" in failure.fix


def test_a_dotted_module_installs_its_top_level_package():
    message = "No module named 'foo.bar'"
    failure = classify(failed(error_type="ModuleNotFoundError", error_message=message))
    assert failure.detail["module"] == "foo.bar" and failure.detail["package"] == "foo"
    assert "install foo " in failure.fix


def test_cannot_import_name_names_both():
    failure = classify(evidence("cannot_import_name"))
    assert failure.detail["module"] == "collections" and failure.detail["name"] == "Mapping"


def test_syntax_error_gives_the_line_from_error_json_or_the_tail():
    for changes in ({}, {"error_type": None, "error_message": None}):
        failure = classify(evidence("syntax_error", **changes))
        assert failure.kind is K.SYNTAX_ERROR
        assert failure.detail["line"] == 2 and "line 2" in failure.explanation
        assert "fix line 2 of the cell" in failure.fix


@pytest.mark.parametrize(
    "source",
    ["def f():\nreturn 1\n", "if True:\n\tx = 1\n        y = 2\n"],
    ids=["IndentationError", "TabError"],
)
def test_indentation_and_tab_errors_are_syntax_errors(source):
    try:
        compile(source, "main.py", "exec")
    except SyntaxError as exc:  # the real messages of this Python
        error_type, message, line = type(exc).__name__, str(exc), exc.lineno
    failure = classify(failed(error_type=error_type, error_message=message))
    assert failure.kind is K.SYNTAX_ERROR and error_type in failure.explanation
    assert failure.detail["line"] == line and f"line {line}" in failure.fix


# -- exceptions, signals and exit codes -----------------------------------------------------------


def test_user_exception_quotes_the_exception_and_the_cells_line():
    for changes in ({}, {"error_type": None, "error_message": None}):
        failure = classify(evidence("value_error", **changes))
        assert (
            failure.explanation
            == "the cell raised ValueError: bad value: lr=-1 (line 3 of the cell)"
        )
        assert failure.detail["type"] == "ValueError" and failure.detail["line"] == 3


def test_sys_exit_is_reported_as_the_cells_own_exit():
    failure = classify(evidence("sys_exit"))
    assert failure.explanation == "the cell called sys.exit(3)"
    assert failure.detail["exit_code"] == 3
    chose_130 = classify(failed(exit_code=130, error_type="SystemExit", error_message="130"))
    assert chose_130.kind is K.USER_EXCEPTION  # not SIGINT: the cell chose the code


def test_sys_exit_with_a_message_quotes_it():
    failure = classify(failed(error_type="SystemExit", error_message="no data"))
    assert failure.explanation == "the cell called sys.exit('no data')"
    assert "exit_code" not in failure.detail


def test_keyboard_interrupt_is_killed_by_sigint():
    failure = classify(failed(error_type="KeyboardInterrupt", error_message=""))
    assert failure.kind is K.KILLED and failure.detail["signal"] == 2


def test_signals_are_named():
    term, segv = classify(evidence("sigterm")), classify(evidence("segfault"))
    assert "signal 15 (SIGTERM)" in term.explanation and term.detail["signal_name"] == "SIGTERM"
    assert "signal 11 (SIGSEGV)" in segv.explanation and "native" in segv.fix


def test_a_plain_non_zero_exit_says_the_code():
    failure = classify(evidence("bash_exit"))
    assert failure.explanation == "the cell exited with code 3"
    assert failure.detail["exit_code"] == 3


def test_run_sh_stopping_the_job_itself_gives_its_message():
    failure = classify(evidence("no_gpus"))
    assert failure.detail["exit_code"] == 97
    assert "could not get 2 GPU(s)" in failure.explanation
    assert "--gpus" in failure.fix


# -- the scheduler and the job's status -----------------------------------------------------------


def test_timeouts_name_the_limit():
    assert classify(evidence("timed_out")).detail["limit"] == "--timeout"
    slurm = classify(evidence("slurm_time_limit"))
    assert slurm.detail["limit"] == "--time" and "--time" in slurm.fix
    deadline = classify(failed(scheduler_state="DEADLINE"))
    assert deadline.kind is K.TIMEOUT and deadline.detail["limit"] == "--deadline"


def test_slurmstepds_lines_alone_say_what_slurm_did():
    blind = {"status": "failed", "scheduler_state": None}
    assert classify(evidence("slurm_time_limit", **blind)).kind is K.TIMEOUT
    assert classify(evidence("slurm_scancel", **blind)).kind is K.CANCELLED
    assert classify(evidence("slurm_preempted", **blind)).kind is K.PREEMPTED
    assert classify(evidence("slurm_node_fail", **blind)).detail["node"] == "gpu-node-03"


def test_preemption_and_node_failure_name_the_node():
    preempted = classify(evidence("slurm_preempted"))
    assert preempted.detail["node"] == "gpu-node-07" and "requeue" in preempted.fix
    node = classify(evidence("slurm_node_fail"))
    assert "gpu-node-03" in node.explanation and "exclude=gpu-node-03" in node.fix
    assert "boot" in classify(failed(scheduler_state="BOOT_FAIL")).explanation


def test_slurmstepds_reason_beats_a_bare_cancelled_state():
    failure = classify(evidence("slurm_preempted", scheduler_state="CANCELLED"))
    assert failure.kind is K.PREEMPTED


def test_a_slurm_timeout_status_names_slurms_limit():
    reason = "ran past its Slurm time limit (--time)"
    failure = classify(Evidence(status="timeout", exit_code=None, reason=reason))
    assert failure.detail["limit"] == "--time"


def test_sacct_states_with_a_suffix_are_understood():
    assert classify(failed(scheduler_state="CANCELLED by 1000")).kind is K.CANCELLED


def test_cancelled_beats_an_exception_in_the_tail():
    assert classify(evidence("value_error", status="cancelled")).kind is K.CANCELLED
    assert classify(evidence("cuda_oom_torch_new", status=JobStatus.CANCELLED)).kind is K.CANCELLED


def test_timeout_beats_what_the_stopped_cell_printed():
    assert classify(evidence("cuda_oom_torch_new", status="timeout")).kind is K.TIMEOUT


def test_lost_says_what_vanished():
    reason = "process group 123 vanished without writing an exit code"
    failure = classify(Evidence(status="lost", exit_code=None, reason=reason))
    assert failure.kind is K.LOST and reason in failure.explanation


def test_a_lost_job_is_explained_by_a_full_disk_but_not_by_an_ordinary_exception():
    lost = {"status": "lost", "exit_code": None}
    assert classify(evidence("disk_full_dd", **lost)).kind is K.DISK_FULL
    measured = DiskSpace("/scratch/u/gpu_jobs", free_bytes=0, total_bytes=GB)
    full = classify(Evidence(**lost, disk_free=measured))
    assert full.kind is K.DISK_FULL and "could not record" in full.explanation
    roomy = DiskSpace("/scratch/u/gpu_jobs", free_bytes=GB, total_bytes=2 * GB)
    assert classify(Evidence(**lost, disk_free=roomy)).kind is K.LOST
    assert classify(evidence("value_error", **lost)).kind is K.LOST


def test_nothing_to_go_on_is_lost_and_claims_nothing():
    failure = classify(Evidence(status="failed", exit_code=None, reason="Slurm: FAILED"))
    assert failure.kind is K.LOST
    assert "Slurm: FAILED" in failure.explanation and "nothing that says why" in failure.explanation


# -- the answer's shape ---------------------------------------------------------------------------


def test_to_dict_is_json_ready_and_round_trips():
    failure = classify(evidence("cuda_oom_torch_old"))
    data = json.loads(json.dumps(failure.to_dict()))
    assert data["kind"] == "cuda_oom" and data["detail"]["gpu"] == 0
    assert Failure.from_dict(data) == failure


def test_detail_cannot_be_changed():
    failure = classify(evidence("module_not_found"))
    with pytest.raises(TypeError):
        failure.detail["module"] = "other"  # type: ignore[index]


def test_long_and_multi_line_messages_become_one_line():
    message = "bad\nvalue\r\x1b[31m" + "x" * 5000
    failure = classify(failed(error_type="ValueError", error_message=message))
    assert_one_line(failure)
    assert failure.explanation.startswith("the cell raised ValueError: bad")


# -- linear time ----------------------------------------------------------------------------------

LONG = 100_000
ADVERSARIAL_LINES = [
    "a" * LONG,
    ":" * LONG,
    "'" * LONG,
    '  File "' + "x" * LONG,
    "CUDA out of memory. Tried to allocate " + "9" * LONG,
    "No space left on device: '" + "a" * LONG,
    "'" + "a" * LONG + "': No space left on device",
    "*** JOB " + "x " * (LONG // 2),
    "run.sh: line " + "1" * LONG,
    "Detected " + "1" * LONG,
    "NCCL error in: " + "," * LONG,
    "OOM when allocating tensor with shape[" + "1," * (LONG // 2),
    "DataLoader worker (pid " + "1, " * (LONG // 3),
    "A" * LONG + ": " + "b" * LONG,
    "\x1b[" + ";" * LONG,
]
JUNK_TAIL = "\n".join(f"{i} lorem ipsum 'quoted' : x" * 3 for i in range(2000))[: 64 * 1024]


@pytest.mark.parametrize("line", ADVERSARIAL_LINES, ids=range(len(ADVERSARIAL_LINES)))
def test_classify_is_fast_on_long_lines_and_junk(line):
    """A quadratic pattern takes minutes on these; linear ones take milliseconds. The bound is
    generous so a busy 2-core machine stays well inside it."""
    cases = [
        failed(exit_code=137, log_tail=line),
        failed(exit_code=134, log_tail=JUNK_TAIL + "\n" + line),
        failed(error_type="OSError", error_message=line, log_tail=line + "\n" + line),
        Evidence(status="lost", exit_code=None, log_tail=(line + "\n") * 3),
    ]
    for case in cases:
        start = time.perf_counter()
        failure = classify(case)
        assert time.perf_counter() - start < 1.0
        assert_one_line(failure)


# -- total ----------------------------------------------------------------------------------------

SIGNATURES = [
    "Traceback (most recent call last):",
    '  File "/j/code/main.py", line 3, in <module>',
    "    x()",
    "ValueError: bad value",
    "ModuleNotFoundError: No module named 'a.b'",
    "SyntaxError: invalid syntax (main.py, line 9)",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total"
    " capacity of 1.00 GiB of which 0 bytes is free.",
    "OSError: [Errno 28] No space left on device: '/x'",
    "slurmstepd: error: *** JOB 1 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT ***",
    "slurmstepd: error: Detected 2 oom_kill events in StepId=1.batch.",
    "run.sh: line 1: 2 Killed                  python",
    "[rank0]: Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, OpType=ALLGATHER",
    "h:1:2 [0] x.cc:1 NCCL WARN oops",
    "[gpu_magic] could not get 1 GPU(s) on this host; the cell did not run",
]
STATUSES = ["failed", "timeout", "cancelled", "lost", "completed", "running", "queued", "FAILED"]
STATES = ["OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "TIMEOUT", "CANCELLED"]
STATES += ["FAILED", "DEADLINE", "COMPLETED", "REVOKED"]


@st.composite
def any_evidence(draw) -> Evidence:
    lines = draw(st.lists(st.sampled_from(SIGNATURES) | st.text(max_size=80), max_size=30))
    disk = st.builds(
        DiskSpace, st.text(max_size=20), st.integers(-1, 10**15), st.integers(0, 10**15)
    )
    return Evidence(
        status=draw(st.sampled_from(STATUSES) | st.text(max_size=12)),
        exit_code=draw(st.none() | st.integers(-300, 300)),
        reason=draw(st.none() | st.text(max_size=60)),
        scheduler_state=draw(st.none() | st.sampled_from(STATES) | st.text(max_size=20)),
        error_type=draw(
            st.none() | st.sampled_from(["OSError", "SystemExit"]) | st.text(max_size=30)
        ),
        error_message=draw(st.none() | st.sampled_from(SIGNATURES) | st.text(max_size=200)),
        log_tail="\n".join(lines),
        disk_free=draw(st.none() | disk),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_evidence())
def test_classify_never_raises_and_gives_exactly_one_kind(case):
    failure = classify(case)
    if str(case.status).lower() == "completed":
        assert failure is None
        return
    assert isinstance(failure, Failure) and isinstance(failure.kind, FailureKind)
    assert_one_line(failure)
    assert all(isinstance(v, str | int) for v in failure.detail.values())
    json.dumps(failure.to_dict())
