#!/usr/bin/env python3
"""Check a built gpu_magic wheel the way a user gets it (``make dist-check``).

Usage: ``python release/check_wheel.py [WHEEL] [--notebook NB] [--keep]``

WHEEL defaults to the one wheel in build/dist/. The wheel is refused unless it carries
everything the package needs at run time: the built JupyterLab extension (a production
build), the server-extension config, every module, the SQL migrations and the remote runner.
It is then installed into a fresh venv with no node, npm or yarn on the PATH (a release must
not need the JavaScript toolchain), and, with HOME, every Jupyter, IPython and gpu_magic
directory in a temp dir and the working directory outside the checkout, the script checks
that the magics load, that ``jupyter server extension list`` and ``jupyter labextension
list`` show gpu_magic enabled and OK, and that notebooks/01-quickstart.ipynb runs on the
built-in ``local`` cluster. One line per check, ``ok`` or ``FAILED: why``; exit status 1 on
any failure. Standard library only: everything else comes from the fresh venv.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB_NAME = "gpu-magic-labextension"  # labextension/package.json "name": the folder it installs to
SERVER_EXTENSION = "gpu_magic.server"
# Installed beside the wheel: what the check runs (Lab, nbconvert, a kernel) and what the
# quickstart imports (numpy); versions as the wheel's own ``test`` extra pins them.
CHECK_TOOLS = ("jupyterlab", "nbconvert", "ipykernel", "numpy")
# The JavaScript toolchain that must not be reachable: a wheel that needs it is not a release.
NODE_TOOLS = ("node", "nodejs", "npm", "npx", "yarn", "yarnpkg", "corepack", "pnpm")
SYSTEM_BIN = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
MAGICS = {
    "cell": ["gpu_submit"],
    "line": ["gpu_cluster", "gpu_status", "gpu_fetch", "gpu_logs"],
}


class CheckFailed(Exception):
    """Why a check failed, in one line (printed after ``FAILED:``)."""


# --- the wheel's files ------------------------------------------------------------------


def find_wheel(given: str | None) -> Path:
    """The wheel to check: the one named, else the only one in build/dist (two would be
    ambiguous: an old version left beside the new one)."""
    if given:
        return Path(given).resolve()
    wheels = sorted((REPO / "build" / "dist").glob("gpu_magic-*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one wheel in build/dist, found {len(wheels)}: run make dist")
    return wheels[0]


def data_dir(names: list[str]) -> str:
    """The wheel's ``NAME-VERSION.data/data`` folder: what pip installs under the prefix."""
    infos = {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")}
    if len(infos) != 1:
        raise CheckFailed(f"not one .dist-info folder in the wheel: {sorted(infos)}")
    return infos.pop().removesuffix(".dist-info") + ".data/data"


def package_sources() -> list[str]:
    """The checkout's gpu_magic files the wheel must carry (modules, SQL migrations, the
    remote runner the hosts run): hatch ships every file of the package except
    ``gpu_magic/labextension`` (shipped as shared data), so all of them must be there."""
    root = REPO / "gpu_magic"
    if not root.is_dir():  # the script copied out of the checkout: the minimum below only
        return []
    return sorted(
        p.relative_to(REPO).as_posix()
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix in (".py", ".sql")
        and "__pycache__" not in p.parts
        and not p.relative_to(root).as_posix().startswith("labextension/")
    )


def required_patterns(data: str) -> list[str]:
    """Glob patterns each of which some file in the wheel must match."""
    lab = f"{data}/share/jupyter/labextensions/{LAB_NAME}"
    return [
        f"{lab}/package.json",
        f"{lab}/install.json",  # makes Lab list it as "(python, gpu_magic)": pip uninstalls it
        f"{lab}/static/remoteEntry.*.js",
        f"{lab}/static/style.js",
        f"{lab}/schemas/{LAB_NAME}/plugin.json",
        f"{data}/etc/jupyter/jupyter_server_config.d/*.json",
        "gpu_magic/__init__.py",
        "gpu_magic/magics.py",
        "gpu_magic/server/*.py",
        "gpu_magic/migrations/__init__.py",
        "gpu_magic/migrations/0001_*.sql",
        "gpu_magic/remote/runner.py",
        "gpu_magic/remote/helper.py",
        *package_sources(),
    ]


def server_config_problem(wheel: zipfile.ZipFile, data: str) -> str | None:
    """Why the shipped server config would not enable the server extension, if it would not."""
    prefix = f"{data}/etc/jupyter/jupyter_server_config.d/"
    for name in wheel.namelist():
        if name.startswith(prefix) and name.endswith(".json"):
            config = json.loads(wheel.read(name))
            enabled = config.get("ServerApp", {}).get("jpserver_extensions", {})
            if enabled.get(SERVER_EXTENSION) is True:
                return None
    return f"no file in {prefix} enables {SERVER_EXTENSION}"


def dev_build_files(names: list[str], data: str) -> list[str]:
    """Files that only a development build of the extension has: the hook skips the npm
    build when ``gpu_magic/labextension`` already exists (``skip-if-exists``), so a wheel
    built in a checkout whose extension came from the editable install ships that."""
    lab = f"{data}/share/jupyter/labextensions/{LAB_NAME}/"
    return [n for n in names if n.startswith(lab) and n.endswith((".js.map", "build_log.json"))]


def check_contents(wheel_path: Path) -> str:
    """Refuse a wheel that lacks anything the package needs; says what it carries."""
    with zipfile.ZipFile(wheel_path) as wheel:
        names = [n for n in wheel.namelist() if not n.endswith("/")]
        data = data_dir(names)
        wanted = dict.fromkeys(required_patterns(data))  # in order, once each
        missing = [p for p in wanted if not fnmatch.filter(names, p)]
        if missing:
            raise CheckFailed(f"the wheel lacks {', '.join(missing)}")
        problem = server_config_problem(wheel, data)
    if problem:
        raise CheckFailed(problem)
    doubled = [n for n in names if n.startswith("gpu_magic/labextension/")]
    if doubled:
        raise CheckFailed(f"the extension is in the package too ({len(doubled)} files)")
    dev = dev_build_files(names, data)
    if dev:
        raise CheckFailed(
            f"a development build of the extension ({', '.join(Path(n).name for n in dev[:3])}"
            "...): remove gpu_magic/labextension and build again"
        )
    size = wheel_path.stat().st_size
    return f"{len(names)} files, {size / 1e3:.0f} kB"


# --- the sdist beside it -------------------------------------------------------------------

SDIST_NEEDS = (
    "pyproject.toml",
    "jupyter-config/server-config/gpu_magic.json",
    "gpu_magic/remote/runner.py",
    "gpu_magic/migrations/0001_*.sql",
    "labextension/package.json",
    "labextension/package-lock.json",  # npm installs exactly what was tested
    "labextension/install.json",
    "labextension/src/index.ts",
    # built: a wheel builds from the sdist with no node (the hook's skip-if-exists)
    "gpu_magic/labextension/package.json",
    "gpu_magic/labextension/static/remoteEntry.*.js",
)
# Never in an sdist: installs, caches, build output, test leftovers (hatch reads only the
# top .gitignore, and .hypothesis/ ignores itself with a .gitignore of its own).
SDIST_JUNK_PARTS = {
    "node_modules", ".venv", ".yarn", ".hypothesis", ".pytest_cache", ".ruff_cache",
    "__pycache__", ".ipynb_checkpoints", "test-artifacts", "demo_data", ".git",
}  # fmt: skip
SDIST_JUNK_FILES = ("*.pyc", "*.tsbuildinfo", "*.js.map", "*/build_log.json", "labextension/lib/*")


def find_sdist(wheel_path: Path) -> Path | None:
    """The sdist of the same version beside the wheel (``make dist`` writes both)."""
    name, version = wheel_path.name.split("-")[:2]
    sdist = wheel_path.with_name(f"{name}-{version}.tar.gz")
    return sdist if sdist.is_file() else None


def check_sdist(wheel_path: Path) -> str:
    """The sdist has the sources and the built extension, and nothing that is not the
    project's (an install, a cache, a test's leftovers, a development build)."""
    sdist = find_sdist(wheel_path)
    if sdist is None:
        return "no sdist beside the wheel: not checked"
    with tarfile.open(sdist) as archive:
        names = [m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name]
    missing = [p for p in SDIST_NEEDS if not fnmatch.filter(names, p)]
    junk = [n for n in names if SDIST_JUNK_PARTS & set(n.split("/"))]
    junk += [n for n in names if any(fnmatch.fnmatch(n, p) for p in SDIST_JUNK_FILES)]
    junk += [n for n in names if n.split("/", 1)[0] in ("build", "dist", "site")]  # site: mkdocs
    if missing:
        raise CheckFailed(f"{sdist.name} lacks {', '.join(missing)}")
    if junk:
        shown = sorted({"/".join(n.split("/")[:2]) for n in junk})[:6]
        raise CheckFailed(f"{sdist.name} has {len(junk)} files that are not the project's: {shown}")
    return f"{len(names)} files, {sdist.stat().st_size / 1e3:.0f} kB"


# --- the fresh venv ---------------------------------------------------------------------


def node_free_bin(where: Path) -> Path:
    """A folder of links to the system's programs less the JavaScript toolchain: the local
    cluster's jobs use sh, bash, setsid, nohup, tar, ... from there, and node lives in
    /usr/bin beside them, so the system folders cannot go on the PATH as they are."""
    where.mkdir()
    for folder in map(Path, SYSTEM_BIN):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            target = entry.resolve()
            if is_node_tool(entry, target) or (where / entry.name).exists():
                continue
            if target.is_file() and os.access(target, os.X_OK):
                (where / entry.name).symlink_to(target)
    return where


def is_node_tool(entry: Path, target: Path) -> bool:
    """Whether a program is (a link to) node, its package managers or their scripts."""
    return entry.name in NODE_TOOLS or target.name in NODE_TOOLS or "node_modules" in target.parts


def search_path(venv: Path, system_bin: Path) -> str:
    """The PATH of every command the check runs: the venv (as if activated), then the
    system's programs without node; asserted node-free."""
    path = os.pathsep.join([str(venv / "bin"), str(system_bin)])
    found = {t: shutil.which(t, path=path) for t in NODE_TOOLS}
    found = {t: w for t, w in found.items() if w}
    if found:
        raise CheckFailed(f"the JavaScript toolchain is on the check's PATH: {found}")
    return path


def test_extra_pins(wheel_path: Path) -> list[str]:
    """The requirements of CHECK_TOOLS as the wheel's ``test`` extra states them, so the check
    runs the Lab version the project is tested with."""
    with zipfile.ZipFile(wheel_path) as wheel:
        (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        lines = wheel.read(meta).decode().splitlines()
    pins = {}
    for line in lines:
        match = re.match(r"Requires-Dist: ([A-Za-z0-9_.-]+)([^;]*); extra == .test.", line)
        if match and match[1].lower() in CHECK_TOOLS:
            pins[match[1].lower()] = match[1] + match[2].strip()
    return [pins.get(tool, tool) for tool in CHECK_TOOLS]


def make_venv(tmp: Path) -> Path:
    """A fresh venv of the base interpreter (not of the dev venv this may run from)."""
    venv = tmp / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", str(venv)], env=None, cwd=tmp, timeout=300)
    return venv


def install(venv: Path, wheel_path: Path, path: str, cwd: Path) -> str:
    """pip installs the wheel and the check's tools from the configured indexes: the real HOME
    stays here (pip's config lives there), only PATH is the node-free one. pip itself is
    upgraded first: a user installs with a current pip, not the interpreter's bundled one
    (23.2 here, older than the wheel's metadata)."""
    env = clean_environ(os.environ) | {"PATH": path}
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    tools = test_extra_pins(wheel_path)
    run([*pip, "--upgrade", "pip"], env=env, cwd=cwd, timeout=300)
    run([*pip, str(wheel_path), *tools], env=env, cwd=cwd, timeout=900)
    return "with " + ", ".join(tools)


def clean_environ(environ: dict[str, str] | os._Environ) -> dict[str, str]:
    """The caller's environment less what would reach into the checkout or the dev venv."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE")
    return {k: v for k, v in environ.items() if k not in drop}


def isolated_env(tmp: Path, path: str) -> dict[str, str]:
    """An environment in which nothing of this machine's user is read: HOME and every
    Jupyter, IPython, gpu_magic and XDG folder in the temp dir."""
    home = tmp / "home"
    dirs = {
        "HOME": home,
        "JUPYTER_CONFIG_DIR": home / ".jupyter",
        "JUPYTER_DATA_DIR": home / ".local/share/jupyter",
        "JUPYTER_RUNTIME_DIR": home / ".local/share/jupyter/runtime",
        "IPYTHONDIR": home / ".ipython",
        "GPU_MAGIC_CONFIG_DIR": home / ".config/gpu_magic",
        "GPU_MAGIC_DATA_DIR": home / ".local/share/gpu_magic",
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local/share",
        "XDG_CACHE_HOME": home / ".cache",
        "TMPDIR": tmp / "tmp",
    }
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {k: str(v) for k, v in dirs.items()} | {
        "PATH": path,
        "LANG": "C.UTF-8",
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONNOUSERSITE": "1",
    }


# --- the checks in the venv ---------------------------------------------------------------

MAGICS_SCRIPT = """
import json, IPython
ip = IPython.InteractiveShell.instance()
ip.run_line_magic("load_ext", "gpu_magic")
import gpu_magic
magics = {kind: sorted(ip.magics_manager.magics[kind]) for kind in ("cell", "line")}
print(json.dumps({"file": gpu_magic.__file__, "magics": magics}))
"""


def check_magics(venv: Path, env: dict[str, str], cwd: Path) -> str:
    """``%load_ext gpu_magic`` in a plain IPython shell registers the magics, and gpu_magic
    is the installed one (not the checkout)."""
    out = run([str(venv / "bin" / "python"), "-c", MAGICS_SCRIPT], env=env, cwd=cwd, timeout=120)
    found = json.loads(out.strip().splitlines()[-1])
    if not Path(found["file"]).resolve().is_relative_to(venv.resolve()):
        raise CheckFailed(f"gpu_magic was imported from {found['file']}, not the fresh venv")
    missing = [m for kind, names in MAGICS.items() for m in names if m not in found["magics"][kind]]
    if missing:
        raise CheckFailed(f"magics not registered: {missing}")
    return f"{len(found['magics']['cell'])} cell, {len(found['magics']['line'])} line magics"


def check_server_extension(venv: Path, env: dict[str, str], cwd: Path) -> str:
    """The wheel's config enables the server extension in the venv, and it imports."""
    out = run([str(venv / "bin" / "jupyter"), "server", "extension", "list"], env, cwd, 120)
    block = config_block(out, venv / "etc" / "jupyter")
    wanted = [rf"^\s*{re.escape(SERVER_EXTENSION)} enabled\s*$", rf"^\s*{SERVER_EXTENSION}.*OK"]
    if not all(re.search(p, block, re.MULTILINE) for p in wanted):
        raise CheckFailed(f"{SERVER_EXTENSION} not shown enabled and OK:\n{out}")
    return f"{SERVER_EXTENSION} enabled, OK"


def config_block(out: str, config_dir: Path) -> str:
    """The part of ``jupyter server extension list`` under one ``Config dir:`` heading."""
    blocks = re.split(r"^Config dir: ", out, flags=re.MULTILINE)
    for block in blocks:
        if block.startswith(str(config_dir)):
            return block
    raise CheckFailed(f"no 'Config dir: {config_dir}' in:\n{out}")


def check_labextension(venv: Path, env: dict[str, str], cwd: Path) -> str:
    """Lab lists the extension as a prebuilt one, installed by the gpu_magic package into the
    venv, enabled and OK, with no rebuild asked for (there is no node to rebuild with)."""
    out = run([str(venv / "bin" / "jupyter"), "labextension", "list"], env, cwd, 120)
    prefix = str(venv / "share" / "jupyter" / "labextensions")
    section = out.split(prefix, 1)[1] if prefix in out else ""
    line = re.search(rf"^\s*{LAB_NAME} v\S+ enabled\s+OK\s+\(python, gpu_magic\)", section, re.M)
    if not line:
        raise CheckFailed(f"{LAB_NAME} not listed under {prefix} enabled, OK, prebuilt:\n{out}")
    if re.search(r"build (is )?recommended|needs? to be rebuilt|jupyter lab build", out, re.I):
        raise CheckFailed(f"Lab asks for a rebuild:\n{out}")
    return line[0].strip() + " (prebuilt)"


def check_jlpm_has_no_node(venv: Path, env: dict[str, str], cwd: Path) -> str:
    """JupyterLab puts its own ``jlpm`` in the venv: it must find no node to run."""
    jlpm = shutil.which("jlpm", path=env["PATH"])
    if not jlpm:
        return "no jlpm"
    done = subprocess.run(
        [jlpm, "--version"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    if done.returncode == 0:
        raise CheckFailed(f"jlpm runs (node found): {done.stdout.strip()}")
    if "node" not in (done.stdout + done.stderr).lower():
        raise CheckFailed(f"jlpm failed, not for want of node:\n{done.stderr.strip()[-500:]}")
    return "jlpm finds no node"


def check_quickstart(venv: Path, env: dict[str, str], cwd: Path, notebook: Path) -> str:
    """The quickstart runs top to bottom on the local cluster from the installed package: no
    cell raises unless tagged ``raises-exception`` (which must raise), and what nbval checks
    (``# NBVAL_CHECK_OUTPUT``) comes out as stored."""
    shutil.copy(notebook, cwd / notebook.name)
    out_dir = cwd / "executed"
    command = [
        str(venv / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
        notebook.name, "--output-dir", str(out_dir),
        "--ExecutePreprocessor.timeout=300", "--ExecutePreprocessor.kernel_name=python3",
        "--ExecutePreprocessor.store_widget_state=False",
    ]  # fmt: skip
    run(command, env, cwd, timeout=900)
    executed = json.loads((out_dir / notebook.name).read_text())
    stored = json.loads(notebook.read_text())
    problems = notebook_problems(executed["cells"], stored["cells"])
    if problems:
        raise CheckFailed("; ".join(problems))
    cells = sum(c["cell_type"] == "code" for c in executed["cells"])
    return f"{cells} code cells"


def notebook_problems(executed: list[dict], stored: list[dict]) -> list[str]:
    """What went wrong in an executed notebook, cell by cell."""
    problems = []
    for number, (cell, before) in enumerate(zip(executed, stored, strict=True), 1):
        if cell["cell_type"] != "code":
            continue
        errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
        expected = "raises-exception" in cell.get("metadata", {}).get("tags", [])
        if errors and not expected:
            problems.append(f"cell {number} raised {errors[0]['ename']}: {errors[0]['evalue']}")
        elif expected and not errors:
            problems.append(f"cell {number} is tagged raises-exception but did not raise")
        if "".join(cell["source"]).startswith("# NBVAL_CHECK_OUTPUT"):
            got, want = result_text(cell), result_text(before)
            if got != want:
                problems.append(f"cell {number} gave {got!r}, stored {want!r}")
    return problems


def result_text(cell: dict) -> str | None:
    """A cell's ``Out[]`` as text."""
    for output in cell.get("outputs", []):
        if output["output_type"] == "execute_result":
            return "".join(output["data"].get("text/plain", ""))
    return None


# --- running ----------------------------------------------------------------------------


def run(command: list[str], env: dict[str, str] | None, cwd: Path, timeout: float) -> str:
    """Run a command; its output (colours stripped), or CheckFailed with the end of it."""
    try:
        done = subprocess.run(
            command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        what = " ".join(Path(c).name for c in command[:3])
        raise CheckFailed(f"{what} took over {timeout:.0f} s") from exc
    out = ANSI.sub("", done.stdout + done.stderr)
    if done.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-25:])
        raise CheckFailed(f"{' '.join(command[:4])} exited {done.returncode}:\n{tail}")
    return out


# What a check's failure can raise besides CheckFailed: a file unreadable, a broken archive or
# notebook; anything else is a bug of this script and shows its traceback.
CHECK_ERRORS = (CheckFailed, OSError, ValueError, KeyError, zipfile.BadZipFile, tarfile.TarError)


class Report:
    """Prints one line per check as it ends and remembers whether any failed."""

    def __init__(self) -> None:
        self.failed = False

    def check(self, name: str, step: Callable[[], str | None]) -> bool:
        """Run one check; True when it passed."""
        started = time.monotonic()
        try:
            detail = step()
        except CHECK_ERRORS as exc:
            print(f"{name}: FAILED: {exc}", flush=True)
            self.failed = True
            return False
        took = time.monotonic() - started
        print(f"{name}: ok ({detail}; {took:.1f} s)" if detail else f"{name}: ok", flush=True)
        return True


def check_all(wheel_arg: str | None, notebook: Path, tmp: Path, report: Report) -> None:
    """The checks in order; those that need the installed venv stop when it cannot be had."""
    wheel, path, venv = Path(), "", tmp / "venv"

    def locate() -> str:
        nonlocal wheel
        wheel = find_wheel(wheel_arg)
        return str(wheel)

    if not report.check("wheel", locate):
        return
    contents = report.check("wheel contents", lambda: check_contents(wheel))
    if not report.check("sdist contents", lambda: check_sdist(wheel)) or not contents:
        return

    def prepare() -> str:
        nonlocal path
        path = search_path(venv, node_free_bin(tmp / "bin-without-node"))
        make_venv(tmp)
        return "PATH has no " + "/".join(NODE_TOOLS[:3])

    if not report.check("fresh venv", prepare):
        return
    if not report.check("pip install", lambda: install(venv, wheel, path, tmp)):
        return
    env, cwd = isolated_env(tmp, path), tmp / "work"
    cwd.mkdir()
    report.check("magics load", lambda: check_magics(venv, env, cwd))
    report.check("no node for jlpm", lambda: check_jlpm_has_no_node(venv, env, cwd))
    report.check("server extension", lambda: check_server_extension(venv, env, cwd))
    report.check("lab extension", lambda: check_labextension(venv, env, cwd))
    report.check("01-quickstart", lambda: check_quickstart(venv, env, cwd, notebook))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", nargs="?", help="the wheel (default: the one in build/dist)")
    parser.add_argument("--notebook", type=Path, default=REPO / "notebooks" / "01-quickstart.ipynb")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and say where")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every check; 1 when any failed."""
    args = parse_args(argv)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="gpu-magic-wheel-check-")).resolve()
    report = Report()
    try:
        check_all(args.wheel, args.notebook.resolve(), tmp, report)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    verdict = "FAILED" if report.failed else "all ok"
    print(f"release check {verdict} in {time.monotonic() - started:.0f} s")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
