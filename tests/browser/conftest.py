"""Fixtures for the browser tests: a real JupyterLab server and headless Debian Chromium.

These tests run in their own pytest process (``make test`` runs ``pytest tests/browser`` after
the main suite): Playwright's sync API and other event loops clash in one process. A session
that collects anything outside ``tests/browser`` leaves them out (``pytest_ignore_collect``).

- ``lab`` (session): ``jupyter lab`` from this virtualenv as a subprocess on a free
  127.0.0.1 port, no token, ``--allow-root``, its root dir, Jupyter config/data/runtime dirs,
  Lab settings and workspaces all under a tmp dir (the news popup is switched off through
  ``labconfig/default_setting_overrides.json`` in that tmp ``JUPYTER_CONFIG_DIR``), and
  ``GPU_MAGIC_CONFIG_DIR``/``GPU_MAGIC_DATA_DIR``/``GPU_CLUSTER_BASE_PATH`` in tmp too, so the
  kernel's jobs on the ``local`` cluster never touch the user's real dirs. Started with a
  bounded poll of ``/api/status``; at teardown its kernels are shut down over the REST API,
  jobs still running are stopped through their ``state/pid`` (each job is its own process
  group), and the server is stopped by its PID (TERM, then KILL).
- ``page`` (function): a Playwright page in Debian's ``/usr/bin/chromium`` (never a
  Playwright-downloaded browser), headless with the flags this machine needs. A missing
  Chromium or Playwright fails the test with what to install; it never skips.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTIFACTS = REPO / "build" / "test-artifacts"
HOST = "127.0.0.1"
LAB_START_TIMEOUT = 90.0
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1700}
ACTIVE = {"pending", "uploading", "queued", "running"}
"""Job states in which a job still runs (the ``jobs`` fixture cancels those at teardown)."""
KERNEL_STARTING = "'last_activity'"
"""What jupyter_server logs when it is asked to list a kernel it is still starting."""
SETTING_OVERRIDES = {
    # the "Would you like to get notified about official Jupyter news?" toast covers screenshots
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false"},
    # no "Select Kernel" dialog: a notebook starts its preferred kernel
    "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": True},
}


# -- keep these tests out of a session that runs anything else ---------------------------------
def pytest_ignore_collect(collection_path, config):
    """Collect tests/browser only when every path pytest was given lies inside it."""
    if collection_path == HERE:
        return None
    args = [a.split("::")[0] for a in config.args] or [str(config.rootpath)]
    inside = all(_within(Path(a).resolve(), HERE) for a in args)
    return None if inside else True


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


# -- Chromium ---------------------------------------------------------------------------------
def chromium_path() -> str:
    """Debian's Chromium, or $GPU_MAGIC_CHROMIUM; a clear failure when there is none."""
    wanted = os.environ.get("GPU_MAGIC_CHROMIUM")
    for candidate in ([wanted] if wanted else []) + list(CHROMIUM_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium")
    if found:
        return found
    pytest.fail(
        "browser tests need Debian's Chromium (/usr/bin/chromium): `apt-get install chromium` "
        "(`make test` does this when run as root), or set GPU_MAGIC_CHROMIUM to a Chromium "
        "binary. Never `playwright install`.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "browser tests need Playwright for Python: pip install -e '.[test]' (make test)",
            pytrace=False,
        )
    executable = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.browser_call_failed = report.failed
    return report


class BrowserLog:
    """The page's console messages, errors and websockets, timed from the page's start."""

    def __init__(self):
        self.start = time.monotonic()
        self.lines: list[str] = []

    def add(self, text: str) -> None:
        self.lines.append(f"{time.monotonic() - self.start:7.2f} {text}")

    def watch(self, ws) -> None:
        url = ws.url.split("?")[0]
        self.add(f"websocket open {url}")
        ws.on("socketerror", lambda error: self.add(f"websocket error {url}: {error}"))
        ws.on("close", lambda _ws: self.add(f"websocket close {url}"))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@pytest.fixture
def page(browser, request):
    """A fresh page; when the test fails, its screenshot, its console (with websocket events)
    and the Lab server's log go to the artifacts."""
    shot = ARTIFACTS / f"{request.node.name}-failed.png"
    log = ARTIFACTS / f"{request.node.name}-lab.log"
    console_log = ARTIFACTS / f"{request.node.name}-console.log"
    for stale in (shot, log, console_log):
        stale.unlink(missing_ok=True)
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    console = BrowserLog()
    page.on("console", lambda msg: console.add(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.add(f"pageerror: {exc}"))
    page.on("websocket", console.watch)
    try:
        yield page
        if getattr(request.node, "browser_call_failed", False):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            console_log.write_text(console.text())
            lab = request.node.funcargs.get("lab")
            if lab is not None:
                log.write_text(lab.log_tail(400))
    finally:
        context.close()


@pytest.fixture
def page_errors(page) -> list[str]:
    """The uncaught errors of the page's scripts, for the test to assert there were none."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


# -- JupyterLab -------------------------------------------------------------------------------
@dataclass
class Lab:
    url: str
    root_dir: Path
    jobs_dir: Path
    log_path: Path
    process: subprocess.Popen
    cookies: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def api(self, path: str, method: str = "GET", body: dict | None = None):
        """A REST call; writes carry the ``_xsrf`` cookie and header, as Lab's own do."""
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        headers = {"Content-Type": "application/json"}
        if method != "GET":
            xsrf = next((c.value for c in self.cookies if c.name == "_xsrf"), None)
            if xsrf is None:
                opener.open(self.url + "/lab", timeout=10).read()  # sets the _xsrf cookie
                xsrf = next((c.value for c in self.cookies if c.name == "_xsrf"), "")
            headers["X-XSRFToken"] = xsrf
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        with opener.open(request, timeout=10) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def kernels(self) -> list[dict]:
        return self.listing("/api/kernels")

    def sessions(self) -> list[dict]:
        return self.listing("/api/sessions")

    def listing(self, path: str, timeout: float = 10) -> list[dict]:
        """A list of kernels or sessions, asked again while a kernel is starting.

        jupyter_server registers a kernel one event-loop turn before it gives the kernel its
        ``last_activity``, and a list that describes kernels fails in that turn with 500 and a
        ``TraitError`` in the server log (the race in jupyter-server/enterprise_gateway#1395).
        That answer means "a kernel is starting"; any other failure is raised."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.api(path) or []
            except urllib.error.HTTPError as error:
                starting = error.code == 500 and KERNEL_STARTING in self.log_tail(80)
                if not starting or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def lab_environment(tmp: Path) -> dict[str, str]:
    config = tmp / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "default_setting_overrides.json").write_text(
        json.dumps(SETTING_OVERRIDES)
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"),
        "IPYTHONDIR": str(tmp / "ipython"),
        "GPU_MAGIC_CONFIG_DIR": str(tmp / "gpu-magic-config"),
        "GPU_MAGIC_DATA_DIR": str(tmp / "gpu-magic-data"),
        "GPU_CLUSTER_BASE_PATH": str(tmp / "jobs"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("GPU_CLUSTER_HOST", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "SSH_AUTH_SOCK"):
        env.pop(name, None)  # a developer's cluster, Jupyter paths or agent change nothing here
    return env


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    port = free_port()
    jupyter = Path(sys.executable).parent / "jupyter"
    command = [
        str(jupyter),
        "lab",
        "--no-browser",
        "--allow-root",
        f"--ip={HOST}",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log_path = tmp / "lab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=lab_environment(tmp),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Lab(f"http://{HOST}:{port}", root, tmp / "jobs", log_path, process)
    try:
        _wait_for_lab(server)
        yield server
    finally:
        _stop_lab(server)


def _wait_for_lab(server: Lab) -> None:
    deadline = time.monotonic() + LAB_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"jupyter lab exited with {server.process.returncode}:\n{server.log_tail()}",
                pytrace=False,
            )
        try:
            server.api("/api/status")
            return
        except (OSError, urllib.error.URLError, ValueError):
            time.sleep(0.25)
    pytest.fail(
        f"jupyter lab did not answer within {LAB_START_TIMEOUT:.0f} s:\n{server.log_tail()}",
        pytrace=False,
    )


def _stop_lab(server: Lab) -> None:
    if server.process.poll() is None:
        try:  # kernels first, so that no kernel outlives the server
            for kernel in server.kernels():
                server.api(f"/api/kernels/{kernel['id']}", method="DELETE")
        except (OSError, urllib.error.URLError, ValueError):
            pass
    stop_jobs(server.jobs_dir)
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


def stop_jobs(jobs_dir: Path) -> None:
    """TERM the process group of every job that has not written its exit code yet."""
    if not jobs_dir.is_dir():
        return
    for state in jobs_dir.glob("*/state"):
        pid_file = state / "pid"
        if (state / "exit_code").exists() or not pid_file.exists():
            continue
        with contextlib.suppress(ValueError, OSError):
            os.killpg(int(pid_file.read_text().strip()), signal.SIGTERM)


@pytest.fixture
def jobs(lab):
    """Submit jobs on the ``local`` cluster; those still active at the end are cancelled."""
    submitted: list[str] = []

    def submit(code: str, name: str) -> str:
        body = {"code": code, "cluster": "local", "name": name}
        job_id = lab.api("/gpu-jobs/submit", method="POST", body=body)["id"]
        submitted.append(job_id)
        return job_id

    yield submit
    for job_id in submitted:
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            if lab.api(f"/gpu-jobs/{job_id}/status")["status"] in ACTIVE:
                lab.api(f"/gpu-jobs/{job_id}/cancel", method="POST")


def forget_notebooks(lab) -> None:
    """No kernel, no open notebook: Lab starts on its launcher, as ``open_notebook`` expects
    (the Lab server is shared with the other browser tests)."""
    for session in lab.sessions():
        lab.api(f"/api/sessions/{session['id']}", method="DELETE")
    for kernel in lab.kernels():
        lab.api(f"/api/kernels/{kernel['id']}", method="DELETE")
    with contextlib.suppress(urllib.error.HTTPError):  # none saved yet
        lab.api("/lab/api/workspaces/default", method="DELETE")


@pytest.fixture
def fresh_lab(lab):
    forget_notebooks(lab)
    yield lab
    forget_notebooks(lab)
