"""The server extension under a real ``jupyter server``: listing 1000 stored jobs, and how soon
a line the job prints reaches a WebSocket client.

Starts ``jupyter server`` (token auth, gpu_magic folders in a temporary directory), stores 1000
jobs, then times ``GET /gpu-jobs?limit=100`` and ``?limit=1000`` beside Jupyter's own
``GET /api/status`` (the same server, auth and loop: the floor any route pays), and the time from
a job writing a line (on the ``local`` cluster) to its arrival on ``/logs/stream``. Also the
server's start-up to its first answer, with and without the extension.

    .venv/bin/python bench/bench_server.py [--runs 30] [--lines 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from timing import summary, timed  # noqa: E402

from gpu_magic import Client, GPUJob, GPUJobRequest, JobStatus, Settings  # noqa: E402

TOKEN = "bench-token"
WAITER = """
import os, sys, time
stamp = sys.argv[0] + '.go'
for i in range({lines}):
    while not os.path.exists(stamp + str(i)):
        time.sleep(0.002)
    print(f'line {{i}} {{time.time()!r}}', flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, extension: bool) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    env = dict(os.environ, GPU_MAGIC_CONFIG_DIR=str(folder / "config"))
    env.update(GPU_MAGIC_DATA_DIR=str(folder / "data"), GPU_CLUSTER_BASE_PATH=str(folder / "jobs"))
    env["JUPYTER_CONFIG_DIR"] = str(folder / "jupyter")
    args = [sys.executable, "-m", "jupyter", "server", "--no-browser", f"--port={port}"]
    args += [f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={folder}", "--allow-root"]
    if not extension:
        args.append("--ServerApp.jpserver_extensions={'gpu_magic.server': False}")
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    path = "/gpu-jobs/clusters" if extension else "/api/status"
    while True:
        try:
            get(base + path)
            return proc, base, time.perf_counter() - started
        except OSError:
            if proc.poll() is not None or time.perf_counter() - started > 60:
                raise RuntimeError("jupyter server did not start") from None
            time.sleep(0.02)


def get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def store_jobs(settings: Settings, count: int) -> None:
    client = Client(settings)
    request = GPUJobRequest.create(code="print(1)", cluster="local", name="stored")
    for i in range(count):
        job = GPUJob(
            id=f"20261201-000000-{i:06x}", request=request, cluster="local", remote_dir="/x"
        )
        client.store.insert(job.model_copy(update={"status": JobStatus.COMPLETED}))
    client.close()


async def first_line_latency(base: str, client: Client, lines: int) -> list[float]:
    job = client.submit(GPUJobRequest.create(code=WAITER.format(lines=lines), cluster="local"))
    main = Path(job.job.remote_dir) / "code" / "main.py"
    url = base.replace("http", "ws") + f"/gpu-jobs/{job.id}/logs/stream?token={TOKEN}"
    ws = await websocket_connect(url)
    delays, seen = [], ""
    for i in range(lines):
        await asyncio.sleep(0.3)
        Path(f"{main}.go{i}").touch()
        while f"line {i} " not in seen:
            message = json.loads(await ws.read_message())
            seen += message.get("text", "")
        written = float(seen.split(f"line {i} ")[1].split()[0])
        delays.append((time.time() - written) * 1000)
    ws.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--lines", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gm-server-") as tmp:
        folder = Path(tmp)
        settings = Settings(
            _env_file=None,
            gpu_magic_config_dir=folder / "config",
            gpu_magic_data_dir=folder / "data",
            gpu_cluster_base_path=str(folder / "jobs"),
        )
        store_jobs(settings, 1000)
        plain, plain_base, plain_start = start_server(folder, extension=False)
        plain_status = timed(lambda: get(plain_base + "/api/status"), args.runs)
        plain.terminate()
        plain.wait()
        proc, base, start = start_server(folder, extension=True)
        try:
            status = timed(lambda: get(base + "/api/status"), args.runs)
            page = timed(lambda: get(base + "/gpu-jobs?limit=100"), args.runs)
            whole = timed(lambda: get(base + "/gpu-jobs?limit=1000"), args.runs)
            client = Client(settings)
            delays = asyncio.run(first_line_latency(base, client, args.lines))
            client.close()
        finally:
            proc.terminate()
            proc.wait()
    print(f"jupyter server, 1000 stored jobs, {args.runs} runs each")
    print(f"  start to first answer, without gpu_magic   {plain_start * 1000:7.0f} ms")
    print(f"  start to first answer, with gpu_magic      {start * 1000:7.0f} ms")
    print(f"  GET /api/status (no extension)             {summary(plain_status)}")
    print(f"  GET /api/status (Jupyter's own route)      {summary(status)}")
    print(f"  GET /gpu-jobs?limit=100                    {summary(page)}")
    print(f"  GET /gpu-jobs?limit=1000                   {summary(whole)}")
    print(f"  a printed line reaches the WebSocket       {summary(delays)}")


if __name__ == "__main__":
    main()
