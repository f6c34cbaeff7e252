"""The server extension's routes in a real Jupyter server: the local cluster and the real sshd."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from tornado.httpclient import HTTPClientError

from gpu_magic import GPUJobRequest, JobStatus

pytestmark = pytest.mark.timeout(120)

TRAIN = """
import json, os
for step in range(1, 4):
    print(f'step {step}/3 loss={1 / step}', flush=True)
os.makedirs('outputs', exist_ok=True)
json.dump({'done': True}, open('outputs/summary.json', 'w'))
answer = 42
"""


async def get(jp_fetch, *parts, **params):
    response = await jp_fetch("gpu-jobs", *parts, params=params or None)
    return json.loads(response.body)


async def post(jp_fetch, *parts, body: dict | None = None):
    response = await jp_fetch("gpu-jobs", *parts, method="POST", body=json.dumps(body or {}))
    return response.code, json.loads(response.body)


async def failing(fetch, *args, **kwargs) -> HTTPClientError:
    with pytest.raises(HTTPClientError) as info:
        await fetch(*args, **kwargs)
    return info.value


async def until_ended(jp_fetch, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = await get(jp_fetch, job_id, "status")
        if status["status"] in ("completed", "failed", "cancelled", "timeout", "lost"):
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)


async def test_submit_follow_and_read_a_job_through_every_route(jp_fetch, gpu_server, cluster):
    code, submitted = await post(
        jp_fetch,
        "submit",
        body={"code": TRAIN, "cluster": cluster, "name": "rest", "outputs": ["answer"]},
    )
    assert code == 201
    job_id = submitted["id"]
    status = await until_ended(jp_fetch, job_id)
    assert (
        status["status"] == "completed"
        and status["name"] == "rest"
        and status["cluster"] == cluster
    )
    states = [t["status"] for t in status["history"]]
    assert states[0] == "pending" and states[-1] == "completed" and "running" in states

    listed = await get(jp_fetch, cluster=cluster)
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    assert (await get(jp_fetch, name="nope"))["jobs"] == []

    whole = await get(jp_fetch, job_id, "logs")
    assert whole["text"].splitlines() == [f"step {i}/3 loss={1 / i}" for i in (1, 2, 3)]
    part = await get(jp_fetch, job_id, "logs", offset=len("step 1/3 loss=1.0\n"))
    assert part["text"] == whole["text"][len("step 1/3 loss=1.0\n") :]
    assert part["offset"] == len(whole["text"].encode()) and part["complete"]
    tail = await get(jp_fetch, job_id, "logs", tail=1, grep="loss")
    assert tail["text"] == "step 3/3 loss=0.3333333333333333\n"

    metrics = await get(jp_fetch, job_id, "metrics")
    assert [row["loss"] for row in metrics["rows"]] == [1.0, 0.5, 1 / 3]
    assert (await get(jp_fetch, job_id, "gpu"))["samples"] == []

    files = {f["path"]: f for f in (await get(jp_fetch, job_id, "results"))["files"]}
    assert files["outputs/summary.json"]["fetched"] and "outputs/answer.pkl" in files
    download = await jp_fetch("gpu-jobs", job_id, "results", "outputs/summary.json")
    assert json.loads(download.body) == {"done": True}

    assert (await get(jp_fetch, job_id, "error")) == {"error": None}  # it raised nothing

    clusters = {c["name"]: c for c in (await get(jp_fetch, "clusters"))["clusters"]}
    assert cluster in clusters and "key" not in clusters[cluster]
    spec = await get(jp_fetch, "openapi.json")
    assert spec["openapi"].startswith("3.") and "/gpu-jobs/{job_id}/logs" in spec["paths"]


async def test_cancel_and_bad_requests(jp_fetch, gpu_server, cluster):
    _, submitted = await post(
        jp_fetch, "submit", body={"code": "import time\ntime.sleep(300)", "cluster": cluster}
    )
    job_id = submitted["id"]
    cancelled = await post(jp_fetch, job_id, "cancel")
    assert cancelled[0] == 200
    assert (await until_ended(jp_fetch, job_id))["status"] == "cancelled"

    invalid = await failing(post, jp_fetch, "submit", body={"code": "x", "gpus": -1})
    assert invalid.code == 400 and "gpus" in invalid.response.body.decode()
    inputs = await failing(post, jp_fetch, "submit", body={"code": "x", "inputs": ["df"]})
    assert inputs.code == 400 and "kernel" in inputs.response.body.decode()
    templated = await failing(post, jp_fetch, "submit", body={"code": "x", "template": "base"})
    assert templated.code == 400 and "send the options" in templated.response.body.decode()
    not_json = await failing(jp_fetch, "gpu-jobs", "submit", method="POST", body="{")
    assert not_json.code == 400
    unknown = await failing(post, jp_fetch, "submit", body={"code": "x", "cluster": "nowhere"})
    assert unknown.code == 400 and "nowhere" in unknown.response.body.decode()
    bad_limit = await failing(get, jp_fetch, limit="many")
    assert bad_limit.code == 400


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
async def test_unknown_and_traversal_ids_are_refused_and_nothing_is_read(jp_fetch, gpu_server):
    assert (await failing(get, jp_fetch, "20990101-000000-abcdef", "status")).code == 404
    for hostile in ("..", "%2e%2e", ".hidden", "a%2f..%2f..", "%00"):
        error = await failing(jp_fetch, f"gpu-jobs/{hostile}/status")
        assert error.code in (400, 404), hostile
    job = gpu_server.submit(GPUJobRequest.create(code="print(1)", cluster="local")).wait(60)
    gpu_server.results.files(job.id)
    for path in ("../../etc/passwd", "%2e%2e/%2e%2e/x", "/etc/passwd", "run.sh", "spec.json"):
        error = await failing(jp_fetch, f"gpu-jobs/{job.id}/results/{path}")
        assert error.code == 404, path


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
async def test_no_credentials_no_access(jp_fetch, gpu_server):
    for path in ("gpu-jobs", "gpu-jobs/clusters", "gpu-jobs/openapi.json"):
        error = await failing(jp_fetch, path, headers={"Authorization": "token wrong"})
        assert error.code == 403, path
    error = await failing(
        jp_fetch, "gpu-jobs/submit", method="POST", body="{}", headers={"Authorization": ""}
    )
    assert error.code == 403


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
async def test_kernel_and_server_see_the_same_jobs(jp_fetch, gpu_server, tmp_path):
    """A kernel's Client and the server's share one store: each sees what the other submits."""
    from gpu_magic import Client

    kernel_side = Client()  # as a kernel starts it: the same environment, the same folders
    try:
        mine = kernel_side.submit(GPUJobRequest.create(code="print(1)", cluster="local"))
        listed = await get(jp_fetch)
        assert mine.id in [j["id"] for j in listed["jobs"]]
        _, submitted = await post(jp_fetch, "submit", body={"code": "print(2)", "cluster": "local"})
        assert kernel_side.store.get(submitted["id"]).request.code == "print(2)"
        assert kernel_side.wait(submitted["id"], 60).status == JobStatus.COMPLETED
    finally:
        kernel_side.close()


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
async def test_pages_follow_the_cursor(jp_fetch, gpu_server):
    ids = [gpu_server.submit(GPUJobRequest.create(code="1", cluster="local")).id for _ in range(5)]
    first = await get(jp_fetch, limit=2)
    second = await get(jp_fetch, limit=2, cursor=first["cursor"])
    third = await get(jp_fetch, limit=2, cursor=second["cursor"])
    seen = [j["id"] for page in (first, second, third) for j in page["jobs"]]
    assert seen == list(reversed(ids)) and third["cursor"] is None
    assert (await failing(get, jp_fetch, cursor="20990101-000000-abcdef")).code == 404


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
async def test_operational_figures_in_the_servers_metrics(jp_fetch, gpu_server):
    job = gpu_server.submit(GPUJobRequest.create(code="print(1)", cluster="local"))
    gpu_server.monitor.sync(job.id)  # a poll of the host, as the server's watch makes them
    gpu_server.wait(job.id, 60)
    gpu_server.results.files(job.id)  # a collection: bytes brought home
    text = (await jp_fetch("metrics")).body.decode()
    assert 'gpu_magic_jobs{cluster="local",status="completed"} 1.0' in text
    assert re.search(r'gpu_magic_poll_seconds_count\{cluster="local"\} [1-9]', text)
    moved = re.search(r"gpu_magic_transferred_bytes_total ([0-9.e+]+)", text)
    assert moved and float(moved.group(1)) > 0


async def test_a_failed_job_answers_its_remote_traceback(jp_fetch, gpu_server, cluster):
    code = "def train():\n    raise RuntimeError('CUDA out of memory')\ntrain()"
    job = gpu_server.submit(GPUJobRequest.create(code=code, cluster=cluster))
    assert (await until_ended(jp_fetch, job.id))["status"] == "failed"
    error = (await get(jp_fetch, job.id, "error"))["error"]
    assert error["type"] == "RuntimeError" and error["message"] == "CUDA out of memory"
    assert "in train" in error["traceback"] and "Traceback" in error["traceback"]
