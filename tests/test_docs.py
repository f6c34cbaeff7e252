"""The documentation cannot drift from the code: the generated reference pages match what the
code prints now, every magic and ``%%gpu_submit`` flag is documented, the text in the magics
page is what a notebook prints for ``--help``, and the site builds with no warning."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    """``docs/generate.py`` as a module (docs/ is no package)."""
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _generator()


def test_generated_pages_match_the_code():
    stale = [str(p.relative_to(ROOT)) for p in generate.stale()]
    assert not stale, f"stale: {stale}; run .venv/bin/python docs/generate.py"


def test_check_mode_names_a_stale_page_and_exits_1(tmp_path, monkeypatch, capsys):
    """``--check`` compares, never writes: a page that differs is named and the exit is 1."""
    monkeypatch.setattr(generate, "REFERENCE", tmp_path)
    monkeypatch.setattr(generate, "ROOT", tmp_path.parent)
    for path, text in generate.outputs().items():
        path.write_text(text, encoding="utf-8")
    assert generate.main(["--check"]) == 0
    (tmp_path / "magics.md").write_text("edited by hand\n", encoding="utf-8")
    assert generate.main(["--check"]) == 1
    assert f"{tmp_path.name}/magics.md is stale" in capsys.readouterr().err
    assert (tmp_path / "magics.md").read_text(encoding="utf-8") == "edited by hand\n"


def test_every_magic_and_submit_flag_is_in_the_magics_page():
    page = (ROOT / "docs" / "reference" / "magics.md").read_text(encoding="utf-8")
    names = [name for name, _ in generate.magics()]
    assert "%%gpu_submit" in names and len(names) >= 12  # the registry was read, not empty
    for name in names:
        assert f"\n## {name}\n" in page, name
    flags = generate.submit_flags()
    from gpu_magic.submit_options import FLAGS

    assert {name for name, _ in FLAGS} <= set(flags)
    for flag in flags:
        assert flag in page, flag


def test_every_cli_command_is_in_the_cli_page():
    page = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    for name, _ in generate.cli_parsers():
        assert f"\n## {name}\n" in page, name


def test_every_setting_is_in_the_settings_page():
    from gpu_magic.config import Settings

    page = (ROOT / "docs" / "reference" / "settings.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"`{name.upper()}`" in page, name


def test_every_rest_route_is_documented():
    """Each route the server registers is in the OpenAPI document (so in the REST page), but
    the WebSocket, which the hand-written server chapter describes."""
    from gpu_magic.server.routes import JOB_ID, ROUTES

    paths = set(generate.openapi()["paths"])
    guide = (ROOT / "docs" / "guide" / "jupyterlab.md").read_text(encoding="utf-8")
    for pattern, _ in ROUTES:
        path = "/" + pattern.replace(JOB_ID, "{job_id}").replace("(?P<path>.+)", "{path}")
        if path.endswith("/logs/stream"):
            assert path in guide
        else:
            assert path in paths, path


HELP_IN_A_KERNEL = """
import contextlib, io, json, sys
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "gpu_magic")
printed = {}
for name in json.loads(sys.argv[1]):
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            if name.startswith("%%"):  # IPython refuses a cell magic with an empty cell
                shell.run_cell_magic(name[2:], "--help", "pass")
            else:
                shell.run_line_magic(name[1:], "--help")
    except Exception as exc:  # a magic whose --help fails: say how
        out.write(f"{name} --help raised {type(exc).__name__}: {exc}")
    printed[name] = out.getvalue()
print(json.dumps(printed))
"""


def test_magics_page_is_what_help_prints(tmp_path):
    """``%name --help`` typed in a fresh IPython at the pages' width prints the page's text,
    byte for byte (the magics module's help is fixed when it is imported, so a new process)."""
    names = [name for name, _ in generate.magics()]
    env = {**os.environ, "COLUMNS": str(generate.WIDTH), "IPYTHONDIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", HELP_IN_A_KERNEL, json.dumps(names)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    printed = json.loads(run.stdout.splitlines()[-1])
    differ = [name for name, f in generate.magics() if printed[name] != generate.magic_help(f)]
    assert not differ, "\n".join(printed[name][:300] for name in differ)


def test_site_builds_without_warnings(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "magics" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "openapi.json").is_file()
    assert not (tmp_path / "site" / "generate.py").exists()
