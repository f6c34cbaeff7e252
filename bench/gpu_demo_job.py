"""Run the demo job on a real GPU through the built-in ``local`` cluster and record telemetry.

Used by ``bench/gpu_device_check.sh`` on a machine with an NVIDIA GPU. It submits a small
PyTorch training job with ``gpus=1`` (so ``run.sh`` picks the GPU with ``nvidia-smi``), samples
``nvidia-smi`` every 0.5 s while it runs, captures fixture files while the GPU is busy, and
writes ``summary.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from gpu_magic import Client, GPUJobRequest, Settings

SELECT = "--query-gpu=index,uuid,utilization.gpu,memory.used,memory.total"
SAMPLE = SELECT + ",temperature.gpu,power.draw"
CSV = "--format=csv,noheader,nounits"

TRAIN = """
import os, time, torch
device = torch.device("cuda")
torch.manual_seed(0)
x = torch.randn(8192, 1024, device=device)
y = x @ torch.randn(1024, 1, device=device) + 0.01 * torch.randn(8192, 1, device=device)
model = torch.nn.Sequential(
    torch.nn.Linear(1024, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 1)
).to(device)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for step in range(1, steps + 1):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    if step % 50 == 0:
        print(f"step {step}/{steps} loss={loss.item():.4f}", flush=True)
a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
started = time.time()
while time.time() - started < burn_seconds:
    (a @ a).sum().item()
final_loss = loss.item()
gpu_name = torch.cuda.get_device_name(0)
visible = os.environ.get("CUDA_VISIBLE_DEVICES")
"""


def smi(*args: str) -> str:
    return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True).stdout


def capture(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "query-select.csv").write_text(smi(SELECT, CSV))
    (folder / "query-sample.csv").write_text(smi(SAMPLE, CSV))
    (folder / "list.txt").write_text(smi("-L"))


class Sampler(threading.Thread):
    def __init__(self, out: Path):
        super().__init__(daemon=True)
        self.out, self.stop, self.rows = out, threading.Event(), []

    def run(self) -> None:
        busy_captured = False
        while not self.stop.wait(0.5):
            text = smi(SAMPLE, CSV)
            for line in text.strip().splitlines():
                self.rows.append(f"{time.time():.2f}, {line}")
                if not busy_captured and int(line.split(", ")[2]) >= 50:
                    capture(self.out / "h100x1-busy")
                    busy_captured = True


def ssh_cluster(client: Client, work: Path, stack: contextlib.ExitStack) -> str:
    """Start a real sshd on 127.0.0.1 (the test harness) and register it as cluster ``ssh``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from harness.sshd import SSHServer

    server = stack.enter_context(SSHServer(work / "sshd"))
    client.settings.known_hosts_path.write_text(server.known_hosts_line() + "\n")
    client.clusters.add(server.cluster(work / "remote"))
    return "ssh"


def own_telemetry(client: Client, job_id: str) -> dict:
    """What gpu_magic itself saw: its sampler's gpu.csv and the parsed log, via the monitor."""
    feed = client.feed(job_id)
    utils = [s.utilization for s in feed.gpu_samples() if s.utilization is not None]
    return {
        "gpu_magic_gpu_samples": len(utils),
        "gpu_magic_utilization_max": max(utils, default=None),
        "gpu_magic_parsed_loss_points": len(feed.metric_series().get("loss", [])),
        "gpu_magic_progress": repr(feed.progress()),
    }


def login_env() -> dict[str, str]:
    """An SSH login gets a fresh environment; carry the driver paths a container sets."""
    return {k: os.environ[k] for k in ("PATH", "LD_LIBRARY_PATH") if os.environ.get(k)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--via", choices=["local", "ssh"], default="local")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--burn-seconds", type=float, default=8)
    args = parser.parse_args()
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    capture(args.out / "h100x1-idle")
    client = Client(
        Settings(
            _env_file=None,
            gpu_magic_config_dir=work / "config",
            gpu_magic_data_dir=work / "data",
            gpu_cluster_base_path=str(work / "jobs"),
            known_hosts_path=work / "known_hosts",
            ssh_config_path=work / "no-ssh-config",
        )
    )
    with contextlib.ExitStack() as stack:
        cluster = ssh_cluster(client, work, stack) if args.via == "ssh" else "local"
        run(client, cluster, args)


def run(client: Client, cluster: str, args) -> None:
    sampler = Sampler(args.out)
    sampler.start()
    request = GPUJobRequest.create(
        code=TRAIN,
        inputs=("steps", "burn_seconds"),
        outputs=("final_loss", "gpu_name", "visible"),
        gpus=1,
        name="h100-demo",
        cluster=cluster,
        env={**(login_env() if cluster == "ssh" else {}), "GPU_MAGIC_GPU_SAMPLE_INTERVAL": "0.5"},
    )
    t0 = time.perf_counter()
    job = client.submit(
        request, {"steps": args.steps, "burn_seconds": args.burn_seconds}, say=print
    )
    submit_s = time.perf_counter() - t0
    status_times = []
    while not job.job.is_terminal:
        t = time.perf_counter()
        client.job(job.id)
        status_times.append(time.perf_counter() - t)
        time.sleep(0.2)
    record = job.job
    sampler.stop.set()
    sampler.join()
    (args.out / f"samples-{cluster}.csv").write_text("\n".join(sampler.rows) + "\n")
    outputs = job.fetch() if record.status == "completed" else {}
    utils = [int(r.split(", ")[3]) for r in sampler.rows]
    mems = [int(r.split(", ")[4]) for r in sampler.rows]
    summary = {
        "cluster": cluster,
        "status": record.status.value,
        "exit_code": record.exit_code,
        "error": record.error,
        "runtime_s": record.runtime_seconds(),
        "submit_to_running_s": round(submit_s, 3),
        "status_query_ms_median": (
            round(statistics.median(status_times) * 1000, 2) if status_times else None
        ),
        "outputs": {k: v for k, v in outputs.items()},
        "samples": len(sampler.rows),
        "utilization_max": max(utils, default=None),
        "utilization_mean": round(statistics.mean(utils), 1) if utils else None,
        "memory_used_max_mib": max(mems, default=None),
        "log_tail": job.logs(tail=5),
        **own_telemetry(client, job.id),
    }
    (args.out / f"summary-{cluster}.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
