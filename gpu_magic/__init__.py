"""gpu_magic: run notebook cells on remote GPUs with ``%%gpu_submit``.

``%load_ext gpu_magic`` registers the magics. The API below works without IPython.
"""

from __future__ import annotations

from .api import Client, default_client, get_job
from .clusters import ClusterConfig
from .config import Settings
from .errors import GPUMagicError, RemoteJobError
from .handle import JobHandle
from .models import GitSource, GPUJob, GPUJobRequest, JobStatus

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ClusterConfig",
    "GPUJob",
    "GPUJobRequest",
    "GPUMagicError",
    "GitSource",
    "JobHandle",
    "JobStatus",
    "RemoteJobError",
    "Settings",
    "default_client",
    "get_job",
    "load_ipython_extension",
]


def load_ipython_extension(ipython) -> None:
    from .audit_magics import AuditMagics
    from .magics import GPUMagics, show_remote_error
    from .storage_magics import StorageMagics
    from .template_magics import TemplateMagics

    for magics in (GPUMagics, StorageMagics, AuditMagics, TemplateMagics):
        ipython.register_magics(magics)
    _report_workdir_dotenv()
    ipython.set_custom_exc((RemoteJobError,), show_remote_error)


def _report_workdir_dotenv() -> None:
    """Say that the working directory's ``.env`` was read, and what of it was ignored."""
    from .config import USER_SETTINGS, user_config_dir, workdir_dotenv

    found = workdir_dotenv()
    if found is None:
        return
    path, used, ignored = found
    line = f"gpu_magic: read {path}: {', '.join(used) or 'no settings'}"
    if ignored:
        line += (
            f"; ignored {', '.join(ignored)} (where to connect, whom to trust and where files "
            f"live come only from your environment or {user_config_dir() / USER_SETTINGS})"
        )
    print(line)
