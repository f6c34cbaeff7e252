"""The one exception tree of gpu_magic.

Foreign exceptions (paramiko, socket, OSError, sqlite3, pickle) are mapped into this tree once,
where they happen (transport, store, packaging), so callers and the magics only ever catch these::

    GPUMagicError
    ├── ConfigError                 bad settings or clusters file
    │   └── UnknownClusterError
    ├── InvalidRequestError         a request that can never run (bad --env, missing input, ...)
    ├── ClusterConnectionError      cannot talk to the host
    │   ├── HostUnreachableError    refused, DNS, timed out
    │   ├── AuthenticationError     key or agent rejected
    │   └── HostKeyError
    │       ├── UnknownHostKeyError
    │       └── ChangedHostKeyError
    ├── RemoteCommandError          a command on the host exited non-zero
    ├── TransferError               upload/download failed or checksum mismatch
    │   ├── TransferCancelled       stopped by the user (Ctrl-C, the bar's Stop)
    │   └── ResultNotFoundError     the job's results list no such file
    ├── SchedulerError              the scheduler refused the job
    ├── StoreError                  the local job database
    ├── JobNotFoundError
    ├── JobStateError               the job is not in a state that allows this
    ├── WaitTimeoutError
    └── RemoteJobError              the cell raised on the host; carries the remote traceback
"""

from __future__ import annotations

from collections.abc import Sequence


class GPUMagicError(Exception):
    """Base of every error gpu_magic raises on purpose.

    ``details``: lines to show under the message (the end of a job's log), kept apart from it
    so that a magic can show each as a line of its own while any value inside the message
    itself stays on its one line (``magics.user_errors``)."""

    def __init__(self, *args: object, details: Sequence[str] = ()):
        super().__init__(*args)
        self.details = tuple(details)

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        """The message, then the detail lines."""
        return [super().__str__(), *self.details]


class ConfigError(GPUMagicError):
    """Settings or the clusters file are invalid."""


class UnknownClusterError(ConfigError):
    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(
            f"unknown cluster {name!r}; known clusters: {', '.join(known) or 'none'}. "
            f"Add it with: %gpu_cluster add {name} --host HOST"
        )


class InvalidRequestError(GPUMagicError, ValueError):
    """The job request is wrong and nothing was sent."""


class ClusterConnectionError(GPUMagicError):
    """Cannot open or keep an SSH connection to the cluster."""


class HostUnreachableError(ClusterConnectionError):
    pass


class AuthenticationError(ClusterConnectionError):
    pass


class HostKeyError(ClusterConnectionError):
    pass


class UnknownHostKeyError(HostKeyError):
    pass


class ChangedHostKeyError(HostKeyError):
    pass


class RemoteCommandError(GPUMagicError):
    """A command on the host failed; keeps the command, exit code and output tail."""

    def __init__(self, command: str, exit_code: int, stderr: str = "", stdout: str = ""):
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr
        self.stdout = stdout
        tail = (stderr or stdout).strip().splitlines()[-10:]
        detail = ("\n  " + "\n  ".join(tail)) if tail else ""
        super().__init__(f"remote command failed with exit code {exit_code}: {command}{detail}")


class TransferError(GPUMagicError):
    pass


class TransferCancelled(TransferError):
    """The user stopped a transfer (Ctrl-C on ``%gpu_fetch``): not retried; what arrived stays
    in the partial files, and the next fetch resumes from there."""


class SchedulerError(GPUMagicError):
    pass


class StoreError(GPUMagicError):
    pass


class JobNotFoundError(GPUMagicError, LookupError):
    pass


class ResultNotFoundError(TransferError, LookupError):
    """The job's results list no such file (a typo, or a path that is not a result)."""


class JobStateError(GPUMagicError):
    pass


class WaitTimeoutError(GPUMagicError, TimeoutError):
    pass


class RemoteJobError(GPUMagicError):
    """The cell raised on the GPU host. ``remote_traceback`` is the traceback printed there."""

    def __init__(self, job_id: str, exc_type: str, message: str, remote_traceback: str):
        self.job_id = job_id
        self.exc_type = exc_type
        self.remote_message = message
        self.remote_traceback = remote_traceback
        super().__init__(
            f"job {job_id} raised {exc_type}: {message}\n\nRemote traceback:\n{remote_traceback}"
        )


def transient(exc: BaseException) -> bool:
    """A fault that time can mend: a lost or unreachable connection, a command or channel that
    timed out. Never a rejected key or host key (retrying cannot help, and retrying a changed
    host key would be asking an attacker again), nor a refused request."""
    if isinstance(exc, AuthenticationError | HostKeyError):
        return False
    return isinstance(exc, ClusterConnectionError | WaitTimeoutError)
