"""``WS /gpu-jobs/{id}/logs/stream``: live lines while the job runs, resume by offset, an end."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

from gpu_magic import GPUJobRequest

pytestmark = pytest.mark.timeout(120)

CHATTY = """
import os, sys, time
for i in range(40):
    print(f'line {i} ' + 'é' * (i % 3), flush=True)
    time.sleep(0.01)
while not os.path.exists(sys.argv[0] + '.release'):  # the test releases the job
    time.sleep(0.02)
for i in range(40, 80):
    print(f'line {i}', flush=True)
"""


async def messages_until(ws, stop) -> list[dict]:
    got = []
    while True:
        raw = await ws.read_message()
        assert raw is not None, f"closed early after {got[-3:]}"
        got.append(json.loads(raw))
        if stop(got):
            return got


def texts(messages) -> str:
    return "".join(m["text"] for m in messages if m["type"] == "log")


async def test_a_client_that_drops_and_resumes_gets_every_byte_once(
    jp_ws_fetch, gpu_server, cluster
):
    job = gpu_server.submit(GPUJobRequest.create(code=CHATTY, cluster=cluster))
    main = f"{job.job.remote_dir}/code/main.py"
    transport = gpu_server.hosts.of(job.job).transport

    ws = await jp_ws_fetch("gpu-jobs", job.id, "logs", "stream")
    first = await messages_until(
        ws, lambda got: "line 39 " in texts(got) and any(m["type"] == "status" for m in got)
    )
    assert [m["status"] for m in first if m["type"] == "status"] == ["running"]
    ws.close()  # drops mid-job: the job still waits for its release

    transport.check("touch", main + ".release")
    offset = [m for m in first if m["type"] == "log"][-1]["offset"]
    ws = await jp_ws_fetch("gpu-jobs", job.id, "logs", "stream", params={"offset": offset})
    rest = await messages_until(ws, lambda got: got[-1]["type"] == "end")
    assert rest[-1] == {"type": "end", "status": "completed"}
    assert await ws.read_message() is None  # the server closed it

    host_log = transport.read_file(f"{job.job.remote_dir}/output.log")
    assert (texts(first) + texts(rest)).encode() == host_log
    assert len(texts(first).encode()) == offset


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
async def test_a_finished_job_streams_its_log_and_ends(jp_ws_fetch, gpu_server):
    job = gpu_server.submit(GPUJobRequest.create(code="print('only')", cluster="local")).wait(60)
    gpu_server.results.files(job.id)  # collected: the stream reads the local copy
    ws = await jp_ws_fetch("gpu-jobs", job.id, "logs", "stream")
    got = await messages_until(ws, lambda got: got[-1]["type"] == "end")
    assert texts(got) == "only\n" and got[-1]["status"] == "completed"


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
async def test_the_stream_needs_credentials_and_a_job(jp_ws_fetch, gpu_server):
    with pytest.raises(HTTPClientError) as info:
        await jp_ws_fetch("gpu-jobs", "20990101-000000-abcdef", "logs", "stream")
    assert info.value.code == 404
    job = gpu_server.submit(GPUJobRequest.create(code="print(1)", cluster="local"))
    with pytest.raises(HTTPClientError) as info:
        await jp_ws_fetch(
            "gpu-jobs", job.id, "logs", "stream", headers={"Authorization": "token wrong"}
        )
    assert info.value.code == 403


LEVELLED = """
import sys
print('INFO:root:starting', flush=True)
print('WARNING:root:slow', end='', flush=True)
print(' disk', flush=True)
print('plain', flush=True)
raise ValueError('boom')
"""


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
async def test_each_completed_line_comes_with_its_level(jp_ws_fetch, gpu_server):
    job = gpu_server.submit(GPUJobRequest.create(code=LEVELLED, cluster="local")).wait(60)
    ws = await jp_ws_fetch("gpu-jobs", job.id, "logs", "stream")
    got = await messages_until(ws, lambda got: got[-1]["type"] == "end")
    logs = [m for m in got if m["type"] == "log"]
    lines = texts(got).split("\n")[:-1]
    levels = [level for m in logs for level in m["levels"]]
    assert len(levels) == len(lines)  # one level per line, whatever the chunks
    by_line = dict(zip(lines, levels, strict=True))
    assert by_line["INFO:root:starting"] == "INFO"
    assert by_line["WARNING:root:slow disk"] == "WARNING"
    assert by_line["plain"] is None
    assert by_line["Traceback (most recent call last):"] == "ERROR"
    assert by_line["ValueError: boom"] == "ERROR"
