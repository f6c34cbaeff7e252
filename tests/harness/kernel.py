"""A real IPython kernel (jupyter_client) to drive the magics the way a notebook does."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from jupyter_client.manager import start_new_kernel


@dataclass
class CellResult:
    stdout: str = ""
    results: list[str] = field(default_factory=list)
    displays: list[dict] = field(default_factory=list)  # mime bundles of display() calls
    error: str | None = None  # "EName: evalue"
    traceback: list[str] = field(default_factory=list)  # as the frontend shows it

    @property
    def text(self) -> str:
        shown = [d.get("text/plain", "") for d in self.displays]
        return "\n".join([self.stdout, *shown, *self.results])


def kernel_env(settings) -> dict[str, str]:
    """The environment that makes a kernel's gpu_magic use the same folders as ``settings``."""
    return {
        "GPU_MAGIC_CONFIG_DIR": str(settings.gpu_magic_config_dir),
        "GPU_MAGIC_DATA_DIR": str(settings.gpu_magic_data_dir),
        "SSH_CONFIG_PATH": str(settings.ssh_config_path),
        "KNOWN_HOSTS_PATH": str(settings.known_hosts_path),
    }


class Kernel:
    """Start with extra environment; ``run(code)`` returns what the cell printed and returned."""

    def __init__(self, env: dict[str, str], cwd: str):
        self.manager, self.client = start_new_kernel(
            kernel_name="python3", env={**os.environ, **env}, cwd=cwd
        )

    def run(self, code: str, timeout: float = 60) -> CellResult:
        result = CellResult()

        def hook(msg):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                result.stdout += content["text"]
            elif kind == "execute_result":
                result.results.append(content["data"].get("text/plain", ""))
            elif kind == "display_data":
                result.displays.append(content["data"])
            elif kind == "error":
                result.error = f"{content['ename']}: {content['evalue']}"
                result.traceback = content["traceback"]

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=hook)
        content = reply["content"]
        if content["status"] == "error" and result.error is None:  # UsageError: no error message
            result.error = f"{content['ename']}: {content['evalue']}"
        return result

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
