"""``pip install`` enables the extension: its config file lands in ``etc/jupyter``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)
JUPYTER = Path(sys.executable).with_name("jupyter")


def test_jupyter_lists_the_extension_enabled_and_valid():
    out = subprocess.run(
        [str(JUPYTER), "server", "extension", "list"], capture_output=True, text=True, check=True
    )
    listing = out.stdout + out.stderr
    assert "gpu_magic.server \x1b[32menabled" in listing or "gpu_magic.server enabled" in listing
    assert "gpu_magic.server  \x1b[32mOK" in listing or "gpu_magic.server  OK" in listing
    config = Path(sys.prefix, "etc/jupyter/jupyter_server_config.d/gpu_magic.json")
    assert '"gpu_magic.server": true' in config.read_text()


def test_jupyterlab_lists_the_lab_extension_enabled():
    out = subprocess.run(
        [str(JUPYTER), "labextension", "list"], capture_output=True, text=True, check=True
    )
    listing = out.stdout + out.stderr
    line = next((ln for ln in listing.splitlines() if "gpu-magic-labextension" in ln), "")
    assert "enabled" in line and "OK" in line, listing
