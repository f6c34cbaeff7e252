"""Tell the user a job has ended, through a Slack-compatible incoming webhook.

Three layers, each usable alone: ``message_for`` builds the JSON body (Slack's ``text`` plus
``blocks``; Mattermost, Rocket.Chat, Discord's ``/slack`` endpoint and Teams' connectors show
only ``text``, so it stands alone), ``Webhook`` delivers one body with bounded retries, and
``Notifier`` decides when to send and does it off the thread that saw the job end.

A webhook URL is a credential (whoever has it can post to the channel), so it never appears in
an exception, a log record or a repr: only ``scheme://host/…`` does. The message carries the
job's id, name, state, cluster, run time and failure summary, never its code or env values.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import tenacity

from .errors import GPUMagicError
from .models import GPUJob, JobStatus

LOG = logging.getLogger(__name__)

ICONS = {
    JobStatus.COMPLETED: "✅",
    JobStatus.FAILED: "❌",
    JobStatus.CANCELLED: "🚫",
    JobStatus.TIMEOUT: "⏱️",
    JobStatus.LOST: "❓",
}
PHRASES = {
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "was cancelled",
    JobStatus.TIMEOUT: "timed out",
    JobStatus.LOST: "was lost",
}
DETAIL_LIMIT = 200
"""Characters of an error or failure explanation in ``text`` (one line in a phone alert)."""
BLOCK_LIMIT = 1400
"""Characters of an explanation or a fix in the blocks: two fit in one section (Slack refuses
a section's text over 3000)."""
SECTION_LIMIT = 3000
SECRET_MIN = 4
"""Env values at least this long are blanked wherever they appear (an error echoing a token);
shorter ones ("1", "cpu") are not secrets and blanking them would garble the message."""
MENTION = re.compile(r"@(?=\w)")
SPACES = re.compile(r"\s+")


# -- the message -------------------------------------------------------------------------------
def message_for(job: GPUJob, *, failure: dict | None = None) -> dict:
    """The webhook body for an ended ``job``; ``failure`` (``kind``, ``explanation``, ``fix``)
    says why it failed better than the job's one-line ``error`` when a diagnosis exists."""
    detail = _detail(job, failure)
    text = f"{ICONS.get(job.status, '🔔')} gpu_magic job {_headline(job)}"
    if detail:
        text += f": {_clean(detail, job, DETAIL_LIMIT)}"
    return {"text": text, "blocks": _blocks(job, failure)}


def elapsed(seconds: float) -> str:
    """``45s``, ``12m 03s``, ``2h 05m 09s``: readable at a glance in a chat line."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _headline(job: GPUJob) -> str:
    """``ID (name) completed on CLUSTER in 12m 03s``, escaped for Slack's mrkdwn."""
    name = f" ({_clean(job.name, job)})" if job.name else ""
    return f"{_clean(job.id, job)}{name} {_phrase(job)} on {_clean(job.cluster, job)}{_took(job)}"


def _phrase(job: GPUJob) -> str:
    return PHRASES.get(job.status, f"is {job.status.value}")


def _took(job: GPUJob) -> str:
    """How long it ran; nothing for a job that ended before it started."""
    seconds = job.runtime_seconds() if job.ended_at else None
    if seconds is None:
        return ""
    return f" {'in' if job.status == JobStatus.COMPLETED else 'after'} {elapsed(seconds)}"


def _detail(job: GPUJob, failure: dict | None) -> str | None:
    """Why it did not complete, best source first: the diagnosis, the remote error, the
    tracker's reason, the exit code."""
    if failure:
        kind, explanation = failure.get("kind"), failure.get("explanation")
        return " — ".join(str(p) for p in (kind, explanation) if p) or None
    if job.status == JobStatus.COMPLETED:
        return None
    if job.error or job.reason:
        return job.error or job.reason
    return f"exit code {job.exit_code}" if job.exit_code not in (None, 0) else None


def _blocks(job: GPUJob, failure: dict | None) -> list[dict]:
    job_id = f"`{_clean(job.id, job)}`"
    title = f"*{_clean(job.name, job)}* {job_id}" if job.name else job_id
    head = f"{ICONS.get(job.status, '🔔')} {title} {_phrase(job)} on *{_clean(job.cluster, job)}*"
    blocks = [_section(head + _took(job)), {"type": "section", "fields": _fields(job)}]
    why = _why(job, failure)
    return blocks + ([_section(why)] if why else [])


def _fields(job: GPUJob) -> list[dict]:
    seconds = job.runtime_seconds() if job.ended_at else None
    pairs = [
        ("Job", f"`{_clean(job.id, job)}`"),
        ("Status", job.status.value),
        ("Cluster", _clean(job.cluster, job)),
        ("Run time", "-" if seconds is None else elapsed(seconds)),
    ]
    if job.exit_code is not None:
        pairs.append(("Exit code", str(job.exit_code)))
    return [{"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in pairs]


def _why(job: GPUJob, failure: dict | None) -> str | None:
    """The diagnosis with its fix, or the remote error, for the block under the summary."""
    if failure:
        kind = _clean(failure.get("kind") or "failure", job)
        lines = [f"*{kind}* — {_clean(failure.get('explanation') or '', job, BLOCK_LIMIT)}"]
        if failure.get("fix"):
            lines.append(f"*Fix:* {_clean(failure['fix'], job, BLOCK_LIMIT)}")
        return "\n".join(lines)
    detail = _detail(job, None)
    return f"*Error:* {_clean(detail, job, BLOCK_LIMIT)}" if detail else None


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}


def _clean(value: Any, job: GPUJob, limit: int | None = None) -> str:
    """One line, env values blanked, cut to ``limit``, then made inert for chat markup: Slack
    reads ``<…>`` as links and ``<!channel>`` mentions, Mattermost and Discord ping on
    ``@channel``/``@everyone``, so a remote error can never alert a whole channel."""
    text = SPACES.sub(" ", str(value)).strip()
    for secret in job.request.env.values():
        if len(secret) >= SECRET_MIN:
            text = text.replace(secret, "***")
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return MENTION.sub("@\u200b", text)


# -- delivery ----------------------------------------------------------------------------------
class DeliveryError(GPUMagicError):
    """A notification was not delivered. The message names the webhook as ``scheme://host/…``
    only; ``retryable`` says whether trying again could help (429, 5xx, network)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.status, self.retryable, self.retry_after = status, retryable, retry_after


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: urllib would turn the POST into a bodiless
    GET that "succeeds", losing the notification silently. Refusing makes it an HTTP error."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
HEADERS = {"Content-Type": "application/json", "User-Agent": "gpu_magic-notify/1"}
"""A User-Agent of our own: some hosts (Discord's) refuse urllib's default one."""


def _open(request: urllib.request.Request, timeout: float) -> int:
    """The default sender: POST, read the (short) answer, return the HTTP status."""
    with _OPENER.open(request, timeout=timeout) as response:
        response.read(4096)
        return response.status


def shown(url: str) -> str:
    """``scheme://host[:port]/…``: enough to tell which webhook, nothing that grants posting
    (path, query and any user:password stay out)."""
    parts = urllib.parse.urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/…"


def check_url(url: str) -> str:
    """Refuse anything but an absolute http(s) URL, naming only its scheme (it is a secret)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except (ValueError, TypeError, AttributeError):
        raise ValueError("notification webhook URL is not a valid URL") from None
    if parts.scheme not in ("https", "http"):
        scheme = parts.scheme or "no scheme"
        raise ValueError(f"notification webhook must be an https:// or http:// URL (got {scheme})")
    if not parts.hostname:
        raise ValueError("notification webhook URL has no host")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("notification webhook URL contains spaces or control characters")
    return url


class Webhook:
    """One incoming webhook. ``post`` tries up to ``attempts`` times, each bounded by
    ``timeout`` seconds: again after network errors, timeouts, 429 and 5xx (waiting as the
    server's ``Retry-After`` asks, at most ``retry_after_max``, else exponential backoff with
    full jitter), never after another 4xx (a bad URL or payload does not get better).

    ``sender(request, timeout)`` does the HTTP call (default: ``urllib``); it raises urllib's
    errors. ``backoff``, ``backoff_max`` and ``retry_after_max`` may be set per instance."""

    backoff = 0.5
    backoff_max = 8.0
    retry_after_max = 15.0

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10,
        attempts: int = 3,
        sender: Callable[[urllib.request.Request, float], Any] | None = None,
    ):
        if timeout <= 0 or attempts < 1:
            raise ValueError("notification webhook: timeout must be > 0 and attempts >= 1")
        self._url = check_url(url)
        self.shown = shown(url)
        self.timeout, self.attempts = timeout, attempts
        self._sender = sender or _open

    def __repr__(self) -> str:
        return f"Webhook({self.shown!r})"

    def post(self, body: dict) -> None:
        """Deliver ``body`` as JSON, or raise ``DeliveryError`` (the last attempt's reason)."""
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: getattr(e, "retryable", False)),
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=self._wait,
            before_sleep=self._before_sleep,
        )
        try:
            retrying(self._attempt, data)
        except tenacity.RetryError as exc:
            last = exc.last_attempt.exception()
            raise DeliveryError(
                f"{last} (gave up after {self.attempts} attempts)",
                status=getattr(last, "status", None),
            ) from None

    def _attempt(self, data: bytes) -> None:
        request = urllib.request.Request(  # noqa: S310 - check_url admits http(s) only
            self._url, data=data, headers=HEADERS, method="POST"
        )
        try:
            self._sender(request, self.timeout)
        except urllib.error.HTTPError as exc:
            raise self._answered(exc) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            raise self._unreachable(exc) from None

    def _answered(self, exc: urllib.error.HTTPError) -> DeliveryError:
        """An HTTP error status; the body's first line says why (Slack: ``no_service``...)."""
        code, why = exc.code, _first_line(exc)
        text = self._scrub(f"{self.shown} answered HTTP {code}" + (f": {why}" if why else ""))
        retryable = code == 429 or code >= 500
        wait = _retry_after(exc.headers.get("Retry-After")) if retryable and exc.headers else None
        return DeliveryError(text, status=code, retryable=retryable, retry_after=wait)

    def _unreachable(self, exc: BaseException) -> DeliveryError:
        """Network trouble is worth another try; a certificate that fails to verify is not."""
        reason = getattr(exc, "reason", exc) if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, BaseException):
            reason = str(reason) or type(reason).__name__
        permanent = any(
            isinstance(e, ssl.CertificateError) for e in (exc, getattr(exc, "reason", None))
        )
        text = self._scrub(f"{self.shown} could not be reached: {reason}")
        return DeliveryError(text, retryable=not permanent)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        asked = getattr(state.outcome.exception(), "retry_after", None)
        if asked is not None:
            return min(asked, self.retry_after_max)
        jitter = tenacity.wait_random_exponential(multiplier=self.backoff, max=self.backoff_max)
        return jitter(state)

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        LOG.info(
            "gpu_magic: notification attempt %d failed (%s); trying again in %.1f s",
            state.attempt_number,
            state.outcome.exception(),
            state.next_action.sleep if state.next_action else 0,
        )

    def _scrub(self, text: str) -> str:
        """Belt and braces: some errors quote the request line (http.client's InvalidURL)."""
        parts = urllib.parse.urlsplit(self._url)
        for part in (self._url, parts.path + "?" + parts.query, parts.path, parts.query):
            if len(part) > 1 and part != "?":
                text = text.replace(part, "/…")
        return text


def _first_line(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read(300)
    except Exception:  # the answer's body is a courtesy; the status is what counts
        raw = b""
    finally:
        exc.close()
    text = raw.decode("utf-8", "replace").strip().splitlines()
    return text[0][:120] if text else ""


def _retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After``: a number, or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# -- when to send ------------------------------------------------------------------------------
class Notifier:
    """Sends a job's end notification when the job asked for one (``wanted``) or when every job
    should notify (``notify_all``), once per (job id, ended state) in this process.

    ``job_ended`` is meant for the tracker's ``on_ended`` listener: it runs on the thread that
    saw the job end (a poll, the monitor), so it never blocks and never raises; delivery runs
    on a daemon thread and a failure is one WARNING line. ``close`` waits for those threads,
    so a notification sent just before the kernel exits still arrives.

    ``url`` None: nothing is sent (a job that asked for a notification says so in the log). A
    URL that is not http(s) raises ``ValueError`` here, when the settings are read."""

    def __init__(
        self,
        url: str | None,
        *,
        notify_all: bool = False,
        webhook_factory: Callable[[str], Any] = Webhook,
        log: logging.Logger = LOG,
    ):
        self._webhook = webhook_factory(url) if url else None
        self.notify_all = notify_all
        self._log = log
        self._sent: set[tuple[str, JobStatus]] = set()
        self._threads: set[threading.Thread] = set()
        self._idle = threading.Condition()

    def job_ended(
        self, job: GPUJob, failure: dict | None = None, *, wanted: bool | None = None
    ) -> None:
        """Notify about ``job`` if it is wanted. ``wanted`` None: the request's ``notify``
        flag (False while the request has no such field)."""
        try:
            self._job_ended(job, failure, wanted)
        except Exception as exc:  # a listener must never break the tracker's poll
            job_id = getattr(job, "id", "?")
            self._log.warning(
                "gpu_magic: no notification for job %s: %s", job_id, type(exc).__name__
            )

    def close(self, timeout: float | None = 10.0) -> bool:
        """Wait up to ``timeout`` seconds for notifications in flight; True if none is left.
        Later ``job_ended`` calls still send (a job may end during shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._threads, timeout)

    def _job_ended(self, job: GPUJob, failure: dict | None, wanted: bool | None) -> None:
        if not (job.is_terminal and self._wants(job, wanted) and self._first(job)):
            return
        if self._webhook is None:
            self._log.warning(
                "gpu_magic: job %s asked for a notification, but no webhook URL is set", job.id
            )
            return
        self._start(job.id, message_for(job, failure=failure))

    def _wants(self, job: GPUJob, wanted: bool | None) -> bool:
        if wanted is None:
            wanted = bool(getattr(job.request, "notify", False))
        return self.notify_all or wanted

    def _first(self, job: GPUJob) -> bool:
        """True once per (id, state): the tracker and another kernel's monitor may both report."""
        key = (job.id, job.status)
        with self._idle:
            if key in self._sent:
                return False
            self._sent.add(key)
            return True

    def _start(self, job_id: str, body: dict) -> None:
        thread = threading.Thread(
            target=self._deliver, args=(job_id, body), name=f"gpu_magic-notify-{job_id}"
        )
        thread.daemon = True
        with self._idle:
            self._threads.add(thread)
        try:
            thread.start()
        except BaseException:
            self._finished(thread)
            raise

    def _deliver(self, job_id: str, body: dict) -> None:
        try:
            self._webhook.post(body)
        except DeliveryError as exc:
            self._log.warning(
                "gpu_magic: could not send the notification for job %s: %s", job_id, exc
            )
        except Exception as exc:  # another webhook_factory's error may quote its URL
            self._log.warning(
                "gpu_magic: could not send the notification for job %s: %s",
                job_id,
                type(exc).__name__,
            )
        else:
            self._log.debug("gpu_magic: sent the notification for job %s", job_id)
        finally:
            self._finished(threading.current_thread())

    def _finished(self, thread: threading.Thread) -> None:
        with self._idle:
            self._threads.discard(thread)
            self._idle.notify_all()
