"""Job-end notifications against a real local HTTP server (no network, no sleeps: every wait
is on an Event or a Condition with a timeout, so a busy machine only makes tests slower)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpu_magic.models import GPUJob, GPUJobRequest, JobStatus
from gpu_magic.notify import DeliveryError, Notifier, Webhook, _retry_after, elapsed, message_for

T0 = datetime(2026, 12, 3, 10, 15, tzinfo=timezone.utc)
TOKEN = "XyZsecretTOKEN42"
PATH = f"/services/T0001/B0002/{TOKEN}"
WAIT = 30  # seconds any wait may take before the test fails (never reached when all is well)


def make_job(status=JobStatus.COMPLETED, *, job_id="20261203-101500-ab12cd", seconds=723, **kw):
    request = GPUJobRequest(
        code="import torch; SECRET_CODE_LINE()",
        name=kw.pop("name", "train"),
        env=kw.pop("env", {"HF_TOKEN": "hf_envvalue_123"}),
    )
    return GPUJob(
        id=job_id,
        request=request,
        cluster="hpc",
        remote_dir=f"/jobs/{job_id}",
        status=status,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=seconds),
        **kw,
    )


# -- the recording server ----------------------------------------------------------------------
class Recorder:
    """What the server saw, and what it will answer next (``plan``; 200 "ok" when empty)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.plan: list[tuple] = []
        self.changed = threading.Condition()
        self.gate = threading.Event()  # cleared: hold answers until the test opens it
        self.gate.set()
        self.release = threading.Event()  # set at teardown: frees handlers told to hang
        self.answered = threading.Event()

    def record(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple:
        with self.changed:
            self.requests.append(
                {
                    "path": handler.path,
                    "headers": dict(handler.headers),
                    "body": body,
                    "at": time.monotonic(),
                }
            )
            self.changed.notify_all()
            return self.plan.pop(0) if self.plan else (200,)

    def wait_for(self, count: int) -> list[dict]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.requests) >= count, WAIT)
            return list(self.requests)


def handler_for(recorder: Recorder):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, *rest = recorder.record(self, body)
            if status == "hang":
                recorder.release.wait(WAIT)
                return
            assert recorder.gate.wait(WAIT)
            self.answer(status, rest[0] if rest else {})

        def answer(self, status: int, headers: dict):
            payload = b"ok" if status == 200 else b"no_service\nsecond line"
            recorder.answered.set()  # before writing: the client may be done right after
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def server():
    recorder = Recorder()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(recorder))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{httpd.server_address[1]}{PATH}?sig={TOKEN}"
    yield recorder
    recorder.release.set()
    recorder.gate.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(WAIT)


def quick(url: str, **kw) -> Webhook:
    """A webhook whose backoff is milliseconds, so retry tests take no time."""
    hook = Webhook(url, **kw)
    hook.backoff, hook.backoff_max = 0.01, 0.05
    return hook


def assert_no_secret(text: str) -> None:
    assert TOKEN not in text and "/services/" not in text


# -- the message -------------------------------------------------------------------------------
def test_message_text_stands_alone():
    body = message_for(make_job())
    assert body["text"] == (
        "✅ gpu_magic job 20261203-101500-ab12cd (train) completed on hpc in 12m 03s"
    )
    assert body["blocks"][0]["type"] == "section"
    assert "\n" not in body["text"]


def test_message_with_failure_names_the_kind():
    failure = {"kind": "cuda_oom", "explanation": "CUDA out of memory", "fix": "lower the batch"}
    body = message_for(make_job(JobStatus.FAILED, exit_code=1), failure=failure)
    assert body["text"].startswith("❌ gpu_magic job 20261203-101500-ab12cd (train) failed on hpc")
    assert "after 12m 03s: cuda_oom — CUDA out of memory" in body["text"]
    assert "lower the batch" in json.dumps(body, ensure_ascii=False)


def test_message_uses_the_job_error_and_never_env_or_code():
    job = make_job(JobStatus.FAILED, error="ValueError: bad token hf_envvalue_123 <!channel>")
    dumped = json.dumps(message_for(job), ensure_ascii=False)
    assert "ValueError: bad token ***" in dumped
    assert "hf_envvalue_123" not in dumped and "SECRET_CODE_LINE" not in dumped
    assert "<!channel>" not in dumped and "&lt;!channel&gt;" in dumped


@pytest.mark.parametrize(
    ("seconds", "text"), [(45, "45s"), (723, "12m 03s"), (7509, "2h 05m 09s"), (0, "0s")]
)
def test_elapsed(seconds, text):
    assert elapsed(seconds) == text


def test_retry_after_parsing():
    assert _retry_after("3") == 3.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _retry_after("soon") is None and _retry_after(None) is None


# -- delivery ----------------------------------------------------------------------------------
def test_post_sends_json(server):
    failure = {"kind": "cuda_oom", "explanation": "CUDA out of memory", "fix": "smaller batch"}
    job = make_job(JobStatus.FAILED, exit_code=1)
    Webhook(server.url).post(message_for(job, failure=failure))
    (request,) = server.wait_for(1)
    assert request["headers"]["Content-Type"] == "application/json"
    text = json.loads(request["body"])["text"]
    for part in (job.id, "failed", "hpc", "12m 03s", "cuda_oom"):
        assert part in text


def test_retries_500_then_succeeds(server):
    server.plan = [(500,), (503,)]
    quick(server.url, attempts=3).post({"text": "hi"})
    assert len(server.wait_for(3)) == 3


def test_gives_up_after_attempts(server):
    server.plan = [(500,)] * 5
    with pytest.raises(DeliveryError, match=r"HTTP 500.*after 2 attempts") as info:
        quick(server.url, attempts=2).post({"text": "hi"})
    assert len(server.requests) == 2
    assert_no_secret(str(info.value))


def test_no_retry_on_404(server):
    server.plan = [(404,)]
    with pytest.raises(DeliveryError, match="HTTP 404: no_service$") as info:
        quick(server.url, attempts=3).post({"text": "hi"})
    assert info.value.status == 404 and not info.value.retryable
    assert len(server.requests) == 1
    assert_no_secret(str(info.value))


def test_429_waits_as_retry_after_says(server):
    server.plan = [(429, {"Retry-After": "1"})]
    quick(server.url, attempts=2).post({"text": "hi"})
    first, second = server.wait_for(2)
    assert second["at"] - first["at"] >= 0.95


def test_retry_after_is_bounded(server):
    server.plan = [(429, {"Retry-After": "3600"})]
    hook = quick(server.url, attempts=2)
    hook.retry_after_max = 0.05
    started = time.monotonic()
    hook.post({"text": "hi"})
    assert len(server.wait_for(2)) == 2
    assert time.monotonic() - started < WAIT


def test_hanging_server_times_out(server):
    server.plan = [("hang",), ("hang",)]
    hook = quick(server.url, timeout=0.5, attempts=2)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="timed out.*after 2 attempts") as info:
        hook.post({"text": "hi"})
    took = time.monotonic() - started
    assert 2 * 0.5 * 0.95 <= took < 2 * 0.5 + WAIT
    assert len(server.requests) == 2  # a timeout is retried
    assert_no_secret(str(info.value))


def test_unreachable_host_is_retried_and_named_without_path():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = quick(f"http://127.0.0.1:{port}{PATH}", attempts=2)
    with pytest.raises(DeliveryError, match=rf"^http://127.0.0.1:{port}/… could not be reached"):
        hook.post({"text": "hi"})


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://hooks.example.com{PATH}",
        f"file://{PATH}",
        f"hooks.example.com{PATH}",
        f"https://{PATH}",
        f"https://hooks.example.com{PATH} x",
        f"https://hooks.example.com:port{PATH}",
    ],
)
def test_refuses_other_urls_without_quoting_them(url):
    with pytest.raises(ValueError, match="notification webhook") as info:
        Webhook(url)
    assert "\n" not in str(info.value)
    assert_no_secret(str(info.value))


def test_repr_hides_the_path(server):
    assert repr(Webhook(server.url)) == f"Webhook('{server.url.split('/services')[0]}/…')"


# -- when to send ------------------------------------------------------------------------------
def notifier(url, **kw) -> Notifier:
    return Notifier(url, webhook_factory=lambda u: quick(u, timeout=10, attempts=2), **kw)


def test_job_ended_returns_before_the_server_answers(server):
    server.gate.clear()
    sender = notifier(server.url)
    sender.job_ended(make_job(), wanted=True)
    assert not server.answered.is_set()  # the server cannot answer until the gate opens
    assert not sender.close(timeout=0.05)  # still in flight
    server.gate.set()
    assert sender.close(timeout=WAIT)
    assert server.answered.is_set()
    assert len(server.requests) == 1


def test_close_waits_for_delivery(server):
    server.gate.clear()
    sender = notifier(server.url, notify_all=True)
    sender.job_ended(make_job(JobStatus.TIMEOUT))
    server.wait_for(1)
    opener = threading.Timer(0, server.gate.set)  # opens the gate while close is waiting
    opener.start()
    assert sender.close(timeout=WAIT)
    assert server.answered.is_set()
    opener.join(WAIT)


def test_once_per_job_and_state(server):
    sender = notifier(server.url)
    job = make_job(JobStatus.FAILED)
    start = threading.Barrier(6)

    def report():
        start.wait(WAIT)
        sender.job_ended(job, wanted=True)

    threads = [threading.Thread(target=report) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    sender.job_ended(job, wanted=True)
    assert sender.close(timeout=WAIT)
    assert len(server.requests) == 1
    sender.job_ended(make_job(JobStatus.LOST), wanted=True)  # another ended state
    sender.job_ended(make_job(job_id="20261203-101501-ffffff"), wanted=True)
    assert sender.close(timeout=WAIT)
    assert len(server.requests) == 3


def test_sends_only_when_wanted_or_for_every_job(server):
    sender = notifier(server.url)
    sender.job_ended(make_job())  # the request has no notify flag: not wanted
    sender.job_ended(make_job(job_id="j2"), wanted=False)
    sender.job_ended(make_job(JobStatus.RUNNING, job_id="j3"), wanted=True)  # not ended
    assert sender.close(timeout=WAIT)
    assert server.requests == []
    every = notifier(server.url, notify_all=True)
    every.job_ended(make_job(job_id="j4"), wanted=False)
    assert every.close(timeout=WAIT)
    assert len(server.requests) == 1


def test_failed_delivery_is_one_warning_without_the_url(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.plan = [(404,)]
    sender = notifier(server.url)
    sender.job_ended(make_job(JobStatus.FAILED), wanted=True)
    assert sender.close(timeout=WAIT)
    assert len(server.requests) == 1
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "gpu_magic.notify" and warning.exc_info is None
    assert "20261203-101500-ab12cd" in warning.getMessage()
    assert "HTTP 404" in warning.getMessage()
    assert_no_secret(warning.getMessage())


def test_token_never_logged_or_raised(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.plan = [(500,), (500,), ("hang",), (404,)]
    sender = Notifier(server.url, webhook_factory=lambda u: quick(u, timeout=0.5, attempts=3))
    sender.job_ended(make_job(JobStatus.FAILED), wanted=True)
    sender.job_ended(make_job(JobStatus.FAILED, job_id="j2"), wanted=True)
    assert sender.close(timeout=WAIT)
    server.plan = [(404,)]
    errors = []
    for url in (server.url, server.url.replace("http:", "gopher:")):
        try:
            quick(url, attempts=1).post({"text": "hi"})
        except (DeliveryError, ValueError) as exc:
            errors.append(f"{exc} {exc!r}")
    assert len(errors) == 2
    logged = [f"{r.getMessage()} {r.args} {r.exc_text or ''}" for r in caplog.records]
    assert any("HTTP 500" in line for line in logged)
    for text in logged + errors + [repr(sender), repr(Webhook(server.url))]:
        assert_no_secret(text)


def test_no_url_means_a_warning_not_an_error(caplog):
    sender = Notifier(None)
    sender.job_ended(make_job(), wanted=True)
    assert sender.close(timeout=WAIT)
    assert "no webhook URL is set" in caplog.text


def test_job_ended_never_raises(caplog):
    class Broken:
        def post(self, body):
            raise RuntimeError(f"boom {PATH}")

    sender = Notifier("https://hooks.example.com/x", webhook_factory=lambda url: Broken())
    sender.job_ended(make_job(), wanted=True)
    sender.job_ended(object(), wanted=True)  # not even a job
    assert sender.close(timeout=WAIT)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for line in warnings:
        assert_no_secret(line)


def test_refuses_a_non_http_url_at_construction():
    with pytest.raises(ValueError, match="https:// or http://"):
        Notifier("ftp://hooks.example.com/x")


# -- through the client: a real job on the local host --------------------------------------
@pytest.mark.processes
def test_a_job_submitted_with_notify_posts_its_end_once(server, tmp_path):
    from harness.clients import local_settings

    from gpu_magic import Client

    settings = local_settings(tmp_path).model_copy(update={"gpu_magic_webhook_url": server.url})
    client = Client(settings)
    try:
        quiet = client.submit(GPUJobRequest.create(code="x = 1", cluster="local")).wait(60)
        loud = GPUJobRequest.create(code="import no_such_pkg", cluster="local", notify=True)
        job = client.submit(loud).wait(60).job
        (seen,) = server.wait_for(1)
        text = json.loads(seen["body"])["text"]
        assert job.id in text and "failed on local" in text and "import_error" in text
        assert quiet.id not in text
    finally:
        client.close()
    assert len(server.requests) == 1  # close() waited for delivery; nothing sent twice


def test_a_webhook_url_that_is_not_http_is_one_config_error(tmp_path):
    from harness.clients import local_settings

    from gpu_magic import Client
    from gpu_magic.errors import ConfigError

    settings = local_settings(tmp_path).model_copy(
        update={"gpu_magic_webhook_url": f"ftp://hooks.example/{TOKEN}"}
    )
    with pytest.raises(ConfigError, match="GPU_MAGIC_WEBHOOK_URL") as info:
        Client(settings)
    assert TOKEN not in str(info.value)
