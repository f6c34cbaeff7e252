"""``%gpu_fetch`` in a real kernel on the built-in ``local`` cluster: ``--list``, ``FILE`` and the
download progress bar of a ``--fetch manual`` job."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness.kernel import CellResult, Kernel

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

PAYLOAD = bytes(range(256)) * 8192  # 2 MiB the job writes and the notebook fetches
JOB = """%%gpu_submit --name manual --fetch manual --outputs y --wait
import os
os.makedirs("../outputs", exist_ok=True)
with open("../outputs/weights.bin", "wb") as f:
    f.write(bytes(range(256)) * 8192)
with open("../outputs/optimizer.bin", "wb") as f:
    f.write(bytes(range(256)) * 4096)
y = 7
"""


def local_env(tmp_path: Path) -> dict[str, str]:
    return {
        "GPU_MAGIC_CONFIG_DIR": str(tmp_path / "config"),
        "GPU_MAGIC_DATA_DIR": str(tmp_path / "data"),
        "GPU_CLUSTER_BASE_PATH": str(tmp_path / "jobs"),
        "SSH_CONFIG_PATH": str(tmp_path / "no-ssh-config"),
        "KNOWN_HOSTS_PATH": str(tmp_path / "no-known-hosts"),
    }


def run_with_widgets(kernel: Kernel, code: str) -> tuple[CellResult, list[str]]:
    """Run a cell; also collect the string values its widgets were sent (comm messages)."""
    result, values = CellResult(), []

    def hook(msg):
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            result.stdout += content["text"]
        elif kind == "display_data":
            result.displays.append(content["data"])
        elif kind == "error":
            result.error = f"{content['ename']}: {content['evalue']}"
        elif kind == "comm_msg":
            state = content["data"].get("state", {})
            values.extend(v for v in state.values() if isinstance(v, str))

    reply = kernel.client.execute_interactive(code, timeout=60, output_hook=hook)
    if reply["content"]["status"] == "error" and result.error is None:
        result.error = f"{reply['content']['ename']}: {reply['content']['evalue']}"
    return result, values


def listed(stdout: str) -> dict[str, list[str]]:
    """``%gpu_fetch --list`` rows by path: [kind, size, unit, fetched]."""
    return {line.split()[0]: line.split()[1:] for line in stdout.splitlines()[2:]}


def test_fetch_lists_and_downloads_a_manual_jobs_file_with_a_progress_bar(tmp_path):
    kernel = Kernel(local_env(tmp_path), str(tmp_path))
    try:
        assert kernel.run("%load_ext gpu_magic").error is None
        submitted = kernel.run(JOB)
        assert submitted.error is None and "loaded y (int)" in submitted.stdout, submitted.text

        before = kernel.run("%gpu_fetch manual --list")
        assert before.error is None, before.text
        assert before.stdout.splitlines()[0].split() == ["path", "kind", "size", "fetched"]
        rows = listed(before.stdout)
        assert rows["outputs/weights.bin"] == ["other", "2.1", "MB", "no"]
        assert rows["outputs/y.pkl"][0] == "variable" and rows["outputs/y.pkl"][-1] == "yes"

        fetched, values = run_with_widgets(kernel, "%gpu_fetch manual weights.bin optimizer.bin")
        assert fetched.error is None, fetched.text
        path = Path(re.search(r"gpu_magic: weights\.bin → (.+)", fetched.stdout).group(1))
        assert path.read_bytes() == PAYLOAD
        other = Path(re.search(r"gpu_magic: optimizer\.bin → (.+)", fetched.stdout).group(1))
        assert other.read_bytes() == PAYLOAD[: len(PAYLOAD) // 2]
        (bar,) = fetched.displays  # one bar for both files
        assert "application/vnd.jupyter.widget-view+json" in bar
        done = [v for v in values if v.startswith("done: ")]
        assert done and re.fullmatch(r"done: 3\.1 MB in [\d.]+ s · 2 files", done[-1]), values[-5:]

        after = kernel.run("%gpu_fetch manual --list")
        assert listed(after.stdout)["outputs/weights.bin"][-1] == "yes"
        again = kernel.run("%gpu_fetch manual weights.bin")  # here already: no bar, same path
        assert again.displays == [] and str(path) in again.stdout
        missing = kernel.run("%gpu_fetch manual nothing.bin")
        assert missing.error.startswith("UsageError: job ") and "'nothing.bin'" in missing.error
        kernel.run("del y")
        assert kernel.run("%gpu_fetch manual").error is None
        assert kernel.run("y").results == ["7"]
    finally:
        kernel.shutdown()
