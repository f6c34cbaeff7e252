"""Layering rules from DESIGN.md that a refactor could silently break."""

import subprocess
import sys

import gpu_magic

BLOCK_UI = """
import sys
for name in ("IPython", "ipywidgets", "jupyter_server", "paramiko", "plotly"):
    sys.modules[name] = None
import gpu_magic.api
import gpu_magic
print("ok")
"""


def test_api_imports_without_ipython_widgets_server_or_paramiko():
    out = subprocess.run([sys.executable, "-c", BLOCK_UI], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_public_names_are_exactly_all():
    public = {n for n in vars(gpu_magic) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(gpu_magic, n)).__name__ == "module"}
    assert sorted(public - modules - {"annotations"}) == sorted(gpu_magic.__all__)


def test_remote_runner_imports_only_stdlib_and_cloudpickle():
    from pathlib import Path

    remote = Path(gpu_magic.__file__).parent / "remote"
    allowed = set(sys.stdlib_module_names) | {"cloudpickle", "gpu_magic"}
    # the callbacks import the library they are for when the job makes one (never at import)
    for_callbacks = {"lightning", "pytorch_lightning", "transformers", "keras"}
    for source in remote.rglob("*.py"):
        for line in source.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and not words[1].startswith("."):
                top = words[1].split(".")[0]
                lazy = (
                    source.name == "callbacks.py" and line.startswith(" ") and top in for_callbacks
                )
                assert top in allowed or lazy, f"{source.name}: {line}"
